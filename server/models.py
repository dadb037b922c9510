"""Database tables (SQLModel); the API's request/response shapes are ``e2h.schemas``.

Times are stored as UTC and come back timezone-aware, so the API writes ISO 8601 with Z.
A snapshot is one row per (run, step) holding the validated snapshot as JSON text: one
indexed row per step keeps 100,000-step runs cheap to insert, bucket and stream.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlmodel
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlmodel import SQLModel

from e2h.schemas import RunStatus

# Named constraints let Alembic's batch mode (SQLite) find and alter them.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every backend (SQLite has no time zones: store naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


# -- tables ---------------------------------------------------------------------------


class Run(SQLModel, table=True):
    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_queue", "status", "priority", "id"),)

    id: int | None = sqlmodel.Field(default=None, primary_key=True)
    name: str = sqlmodel.Field(sa_type=String(200))
    status: str = sqlmodel.Field(default=RunStatus.queued.value, sa_type=String(16))
    priority: int = 0
    tags: list[str] = sqlmodel.Field(default_factory=list, sa_type=JSON)
    config: dict[str, Any] = sqlmodel.Field(sa_type=JSON)
    num_levels: int
    max_steps: int
    step: int = 0
    # Kept exact under the run's row lock, so the history query need not count 100,000 rows.
    snapshot_count: int = 0
    attempt: int = 1
    # Lease expiries so far: the run fails when this reaches max_attempts. A release
    # (graceful hand-back) starts a new attempt without counting here.
    leases_lost: int = 0
    worker_id: str | None = sqlmodel.Field(default=None, sa_type=String(200))
    lease_expires_at: datetime | None = sqlmodel.Field(default=None, sa_type=UTCDateTime)
    cancel_requested: bool = False
    error: str | None = sqlmodel.Field(default=None, sa_type=Text)
    output_dir: str | None = sqlmodel.Field(default=None, sa_type=Text)
    probabilities: list[float] | None = sqlmodel.Field(default=None, sa_type=JSON)
    metrics: dict[str, float | None] | None = sqlmodel.Field(default=None, sa_type=JSON)
    # The latest value of each e2h.schemas.RunReport field the worker has sent.
    report: dict[str, Any] | None = sqlmodel.Field(default=None, sa_type=JSON)
    # Bumped on every state change; the SSE stream sends a status event when it moves.
    state_version: int = 1
    created_at: datetime = sqlmodel.Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = sqlmodel.Field(default_factory=utcnow, sa_type=UTCDateTime)
    started_at: datetime | None = sqlmodel.Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = sqlmodel.Field(default=None, sa_type=UTCDateTime)
    # The sweep that queued this run (server.sweeps). No foreign key: adding one to an existing
    # SQLite table rebuilds it, and dropping the old runs table would cascade into its snapshots,
    # evals and logs; a sweep is deleted only after its runs (server.sweeps.delete_sweep).
    sweep_id: int | None = sqlmodel.Field(default=None, index=True)


class RunTag(SQLModel, table=True):
    __tablename__ = "run_tags"

    run_id: int = sqlmodel.Field(sa_column=Column(Integer, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True))
    tag: str = sqlmodel.Field(sa_type=String(64), primary_key=True, index=True)


class Snapshot(SQLModel, table=True):
    __tablename__ = "snapshots"
    # (run_id, step): idempotency, history and bucketing. (run_id, id): the event stream
    # reads in insertion order; without it every read scans and sorts the run's snapshots.
    __table_args__ = (UniqueConstraint("run_id", "step"), Index("ix_snapshots_run_id_id", "run_id", "id"))

    id: int | None = sqlmodel.Field(default=None, sa_column=Column(BigIntId, primary_key=True, autoincrement=True))
    run_id: int = sqlmodel.Field(sa_column=Column(Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False))
    step: int
    data: str = sqlmodel.Field(sa_type=Text)


class Eval(SQLModel, table=True):
    __tablename__ = "evals"
    __table_args__ = (UniqueConstraint("run_id", "name", "step"),)

    id: int | None = sqlmodel.Field(default=None, primary_key=True)
    run_id: int = sqlmodel.Field(sa_column=Column(Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False))
    name: str = sqlmodel.Field(sa_type=String(64))
    step: int
    results: dict[str, Any] = sqlmodel.Field(sa_type=JSON)
    created_at: datetime = sqlmodel.Field(default_factory=utcnow, sa_type=UTCDateTime)


class LogLine(SQLModel, table=True):
    __tablename__ = "log_lines"
    __table_args__ = (Index("ix_log_lines_run_id_id", "run_id", "id"),)

    id: int | None = sqlmodel.Field(default=None, sa_column=Column(BigIntId, primary_key=True, autoincrement=True))
    run_id: int = sqlmodel.Field(sa_column=Column(Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False))
    time: datetime = sqlmodel.Field(default_factory=utcnow, sa_type=UTCDateTime)
    line: str = sqlmodel.Field(sa_type=Text)


class Completion(SQLModel, table=True):
    """One completion of a logged step's sample (e2h.schemas.CompletionIn): what the model wrote,
    with its rewards. A run keeps the sample of its latest steps only (E2H_MAX_COMPLETION_STEPS)."""

    __tablename__ = "completions"
    # (run_id, step, level, index): idempotent ingestion, and every read (a run's steps, one step).
    __table_args__ = (UniqueConstraint("run_id", "step", "level", "index"),)

    id: int | None = sqlmodel.Field(default=None, sa_column=Column(BigIntId, primary_key=True, autoincrement=True))
    run_id: int = sqlmodel.Field(sa_column=Column(Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False))
    step: int
    level: int
    index: int
    prompt: str = sqlmodel.Field(sa_type=Text)
    completion: str = sqlmodel.Field(sa_type=Text)
    reward: float | None = None
    rewards: dict[str, float | None] = sqlmodel.Field(default_factory=dict, sa_type=JSON)
    advantage: float | None = None
    truncated: bool = False


class Worker(SQLModel, table=True):
    __tablename__ = "workers"

    id: str = sqlmodel.Field(sa_type=String(200), primary_key=True)
    labels: list[str] = sqlmodel.Field(default_factory=list, sa_type=JSON)
    run_id: int | None = None
    first_seen_at: datetime = sqlmodel.Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_seen_at: datetime = sqlmodel.Field(default_factory=utcnow, sa_type=UTCDateTime)


# The sweeps table lives with its logic; imported here so everything that reads this metadata
# (Alembic, the server, tests) sees it.
from server import sweeps as _sweeps  # noqa: E402, F401
