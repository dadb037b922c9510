"""SQL helpers the ingest path and the worker table share."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy import insert as generic_insert
from sqlmodel import Session


def insert_ignoring_conflicts(session: Session, table: Table, rows: list[dict[str, Any]], keys: list[str]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING on ``keys`` (SQLite, PostgreSQL)."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:  # callers already filtered out existing keys under a lock
        session.exec(generic_insert(table), params=rows)
        return
    session.exec(insert(table).on_conflict_do_nothing(index_elements=keys), params=rows)
