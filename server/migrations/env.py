"""Alembic environment: targets SQLModel.metadata, batch mode so SQLite can alter tables.

The server calls this through ``server.core.db.migrate`` with its own connection; the
``alembic`` command line builds an engine from E2H_DATABASE_URL (server settings).
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlmodel import SQLModel

import server.models  # noqa: F401  (registers the tables on SQLModel.metadata)

config = context.config
target_metadata = SQLModel.metadata

# Any constant: serialises concurrent migrations by several servers on one PostgreSQL.
_PG_MIGRATION_LOCK = 0x45324853


def _url() -> str:
    from server.core.config import Settings

    return config.get_main_option("sqlalchemy.url") or Settings().resolved_database_url


def _configure(**kwargs) -> None:
    context.configure(target_metadata=target_metadata, render_as_batch=True, compare_type=True, **kwargs)


def run_migrations_offline() -> None:
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run(connection) -> None:
    # SQLite DDL is transactional once BEGIN is ours (server.core.db): all or nothing.
    _configure(connection=connection, transactional_ddl=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from server.core.db import make_engine

    engine = make_engine(_url())
    try:
        with engine.connect() as conn:
            _run(conn.execution_options(e2h_write=True))
            conn.commit()
    finally:
        engine.dispose()


if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
