"""runs.report: the latest value of each field the worker holding a run reports (e2h.schemas.RunReport).

One JSON column, so a field added to RunReport needs no further migration.

Revision ID: 0003_run_report
Revises: 0002_sweeps
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_run_report"
down_revision: str | None = "0002_sweeps"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("report", sa.JSON(), nullable=True))


def downgrade() -> None:
    # In place (SQLite 3.35+): a batch rebuild of runs would cascade into its snapshots, evals and logs.
    op.drop_column("runs", "report")
