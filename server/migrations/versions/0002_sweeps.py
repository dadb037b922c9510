"""Sweeps: the sweeps table and runs.sweep_id (the sweep that queued a run).

Revision ID: 0002_sweeps
Revises: 0001
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_sweeps"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Stored as naive UTC on SQLite (server.models.UTCDateTime), timestamptz on PostgreSQL.
UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("grid", sa.JSON(), nullable=False),
        sa.Column("groups", sa.JSON(), nullable=False),
        sa.Column("seeds", sa.JSON(), nullable=False),
        sa.Column("baseline", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sweeps"),
    )
    # A plain column, no foreign key: adding one on SQLite rebuilds the runs table, and with foreign
    # keys on, dropping the old table would cascade into every run's snapshots, evals and logs.
    op.add_column("runs", sa.Column("sweep_id", sa.Integer(), nullable=True))
    op.create_index("ix_runs_sweep_id", "runs", ["sweep_id"])


def downgrade() -> None:
    op.drop_index("ix_runs_sweep_id", table_name="runs")
    # SQLite (3.35+) drops a column in place; one without constraints needs no table rebuild.
    op.drop_column("runs", "sweep_id")
    op.drop_table("sweeps")
