"""Engine, sessions, atomic write transactions and schema migration.

SQLite is the embedded default (WAL, busy timeout, foreign keys on); any SQLAlchemy URL
works, PostgreSQL being the one several machines share.

Writes go through :func:`write_transaction`. On SQLite it holds a per-engine lock and
starts with ``BEGIN IMMEDIATE``: threads of this process queue on the lock instead of
hitting SQLite's busy handler (whose sleeps grow to 100 ms) and a transaction never has
to upgrade a read lock to a write lock halfway (which fails with SQLITE_BUSY). Other
processes are kept out by the database lock itself, waiting up to the busy timeout.
On PostgreSQL, rows are locked with ``SELECT ... FOR UPDATE`` in ``crud``.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from importlib import resources
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlmodel import Session

# Shipped inside the package (wheel or editable install alike); Alembic reads it as a directory.
MIGRATIONS_DIR = Path(str(resources.files("server") / "migrations"))
SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_PAGE_SIZE = 16_384

_write_locks: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout, foreign keys and explicit BEGIN."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)

    if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        pool_size=10,
        max_overflow=20,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        # The driver's own transaction handling defers BEGIN and runs DDL outside
        # transactions; turn it off and emit BEGIN ourselves (SQLAlchemy's documented recipe).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        # Only takes effect while the file is still empty, so it must come before WAL.
        # A snapshot row is ~2.5 kB of JSON: 4 kB pages hold one each (40% slack, and
        # every commit writes more pages); 16 kB pages hold six.
        cur.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        # Durable at every checkpoint, not every commit: WAL keeps the database consistent
        # after a crash and ingesting thousands of snapshots per second needs it.
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("e2h_write") else "BEGIN")

    _write_locks[engine] = threading.Lock()
    return engine


def new_session(engine: Engine) -> Session:
    # Objects stay readable after commit: responses are built from them without reloading.
    return Session(engine, expire_on_commit=False)


@contextmanager
def write_transaction(session: Session) -> Iterator[Session]:
    """One atomic write: commit at the end, roll everything back on any error."""
    if session.in_transaction():
        session.commit()  # end a read-only transaction so the write one starts as a writer
    engine = session.get_bind()
    with _write_locks.get(engine) or nullcontext():
        session.connection(execution_options={"e2h_write": True})
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the schema to ``revision`` with Alembic (the only way the schema changes)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with _write_locks.get(engine) or nullcontext(), engine.connect() as conn:
        conn = conn.execution_options(e2h_write=True)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        conn.commit()
