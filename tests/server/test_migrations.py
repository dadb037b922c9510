"""Alembic is the only way the schema is made: upgrade an empty database and check it."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect
from sqlmodel import SQLModel

from server.core.db import make_engine, migrate
from tests.server.helpers import REPO

TABLES = {"runs", "run_tags", "snapshots", "evals", "log_lines", "workers", "sweeps", "completions", "alembic_version"}


def _alembic(*args: str, db: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "E2H_DATABASE_URL": f"sqlite:///{db}"}
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )


def test_alembic_upgrade_head_on_an_empty_sqlite_file(tmp_path: Path) -> None:
    db = tmp_path / "fresh.db"
    _alembic("upgrade", "head", db=db)

    conn = sqlite3.connect(db)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == TABLES
    assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0004_completions",)]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'") if r[0]}
    assert {"ix_runs_queue", "ix_log_lines_run_id_id", "ix_run_tags_tag"} <= indexes
    # The (run_id, step) unique index serves idempotent ingestion and history queries.
    unique = [r for r in conn.execute("PRAGMA index_list('snapshots')") if r[2] == 1]
    assert [[c[2] for c in conn.execute(f"PRAGMA index_info('{u[1]}')")] for u in unique] == [["run_id", "step"]]
    fks = conn.execute("PRAGMA foreign_key_list('snapshots')").fetchall()
    assert [(fk[2], fk[6]) for fk in fks] == [("runs", "CASCADE")]
    # Sampled completions: idempotent on (run, step, level, index), deleted with their run.
    unique = [r for r in conn.execute("PRAGMA index_list('completions')") if r[2] == 1]
    assert [[c[2] for c in conn.execute(f"PRAGMA index_info('{u[1]}')")] for u in unique] == [
        ["run_id", "step", "level", "index"]]
    fks = conn.execute("PRAGMA foreign_key_list('completions')").fetchall()
    assert [(fk[2], fk[6]) for fk in fks] == [("runs", "CASCADE")]
    conn.close()

    # The models and the migrations agree (nothing left for autogenerate to do).
    assert "No new upgrade operations detected" in _alembic("check", db=db).stdout
    _alembic("downgrade", "base", db=db)
    conn = sqlite3.connect(db)
    assert {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} == {"alembic_version"}
    conn.close()


def test_0004_adds_completions_to_a_0003_database_with_runs_and_takes_them_away_again(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    _alembic("upgrade", "0003_run_report", db=db)
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO runs (id, name, status, priority, tags, config, num_levels, max_steps, step, "
                 "snapshot_count, attempt, leases_lost, cancel_requested, state_version, created_at, updated_at) "
                 "VALUES (1, 'old', 'running', 0, '[]', '{}', 5, 10, 0, 0, 1, 0, 0, 1, '2026-12-01', '2026-12-01')")
    conn.commit()
    conn.close()
    _alembic("upgrade", "head", db=db)
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO completions (run_id, step, level, \"index\", prompt, completion, rewards, truncated) "
                 "VALUES (1, 1, 0, 0, 'p', 'c', '{}', 0)")
    conn.commit()
    assert conn.execute("SELECT name FROM runs").fetchall() == [("old",)]  # the run is untouched
    conn.close()
    _alembic("downgrade", "0003_run_report", db=db)
    conn = sqlite3.connect(db)
    assert "completions" not in {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert conn.execute("SELECT name FROM runs").fetchall() == [("old",)]
    conn.close()


def test_migrate_makes_the_schema_the_models_describe(engine: Engine) -> None:
    """On SQLite and PostgreSQL: the server's own upgrade at start, then no drift."""
    assert set(inspect(engine).get_table_names()) == TABLES
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata)
    assert diff == []
    migrate(engine)  # idempotent: a second server start finds the schema at head


def test_sqlite_connections_have_wal_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'sub' / 'e2h.db'}")  # the parent folder is created
    migrate(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    engine.dispose()
