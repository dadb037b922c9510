"""What workers post about a run they hold: snapshots, evals and log lines.

Every post is fenced (the worker must still hold the run) and idempotent where a retry could
repeat it: snapshots on (run, step), evals on (run, name, step).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, update
from sqlalchemy import insert as generic_insert
from sqlalchemy import select as sa_select
from sqlmodel import Session, select

from e2h.schemas import SNAPSHOT, EvalIn, SnapshotIn
from server.core.db import write_transaction
from server.core.errors import Invalid, NotFound, TooLarge, error_entry
from server.crud.sql import insert_ignoring_conflicts
from server.crud.state import Fence, check_fence, fenced_run
from server.models import Eval, LogLine, Run, Snapshot, utcnow

# The ingestion path runs a hundred times a second: Core statements built once, run on the
# session's connection, skip the ORM's per-statement work (about a third of the request).
_runs, _snapshots = Run.__table__, Snapshot.__table__
_RUN_FOR_INGEST = (
    sa_select(
        _runs.c.id,
        _runs.c.status,
        _runs.c.worker_id,
        _runs.c.attempt,
        _runs.c.num_levels,
        _runs.c.max_steps,
        _runs.c.step,
        _runs.c.probabilities,
    )
    .where(_runs.c.id == bindparam("run_id"))
    .with_for_update()
)
_RUN_COUNT = (
    update(_runs)
    .where(_runs.c.id == bindparam("run_id"))
    .values(snapshot_count=_runs.c.snapshot_count + bindparam("b_added"), updated_at=bindparam("b_now"))
)
_RUN_LATEST = _RUN_COUNT.values(
    probabilities=bindparam("b_probabilities"), metrics=bindparam("b_metrics"), step=bindparam("b_step")
)
_INSERT_SNAPSHOTS: dict[str, Any] = {}


def _insert_new(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    """Insert snapshot rows whose (run_id, step) is new; -> the steps inserted.

    One multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING step, so duplicates cost no
    separate lookup. Other databases: look up existing steps first (the run row is locked).
    """
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        stmt = _INSERT_SNAPSHOTS.get(dialect)
        if stmt is None:
            if dialect == "sqlite":
                from sqlalchemy.dialects.sqlite import insert
            else:
                from sqlalchemy.dialects.postgresql import insert
            stmt = insert(_snapshots).on_conflict_do_nothing(index_elements=["run_id", "step"])
            stmt = _INSERT_SNAPSHOTS[dialect] = stmt.returning(_snapshots.c.step)
        return list(conn.execute(stmt, rows).scalars())
    run_id = rows[0]["run_id"]
    steps = [r["step"] for r in rows]
    existing = set(
        conn.execute(
            sa_select(_snapshots.c.step).where(_snapshots.c.run_id == run_id, _snapshots.c.step.in_(steps))
        ).scalars()
    )
    fresh = [r for r in rows if r["step"] not in existing]
    if fresh:
        conn.execute(generic_insert(_snapshots), fresh)
    return [r["step"] for r in fresh]


def _check_batch_size(n: int, max_batch: int, what: str) -> None:
    if n > max_batch:
        raise TooLarge(f"{n} {what} in one request; send at most {max_batch} per request (E2H_MAX_BATCH)")


def add_snapshots(
    session: Session,
    run_id: int,
    snapshots: list[SnapshotIn],
    fence: Fence,
    max_batch: int,
    now: datetime | None = None,
) -> tuple[int, int]:
    """Store new steps, skip steps already stored (idempotent on run + step). -> (accepted, duplicates)."""
    _check_batch_size(len(snapshots), max_batch, "snapshots")
    now = now or utcnow()
    with write_transaction(session):
        conn = session.connection()
        run = conn.execute(_RUN_FOR_INGEST, {"run_id": run_id}).first()
        if run is None:
            raise NotFound(f"run {run_id} not found")
        check_fence(run, fence)
        errors = _snapshot_errors_for_run(run, snapshots)
        if errors:
            raise Invalid(errors)
        by_step: dict[int, SnapshotIn] = {}
        for s in snapshots:
            by_step.setdefault(s["step"], s)
        dump = SNAPSHOT.dump_json
        rows = [{"run_id": run_id, "step": step, "data": dump(s).decode()} for step, s in by_step.items()]
        new = [by_step[step] for step in _insert_new(conn, rows)] if rows else []
        if new:
            latest = max(new, key=lambda s: s["step"])
            params = {"run_id": run_id, "b_added": len(new), "b_now": now}
            if latest["step"] >= run.step or run.probabilities is None:
                params["b_probabilities"] = [lv["probability"] for lv in latest["levels"]]
                params["b_metrics"] = dict(latest.get("metrics", {}))
                params["b_step"] = max(run.step, latest["step"])
                conn.execute(_RUN_LATEST, params)
            else:
                conn.execute(_RUN_COUNT, params)
    return len(new), len(snapshots) - len(new)


def _snapshot_errors_for_run(run: Any, snapshots: list[SnapshotIn]) -> list[dict[str, Any]]:
    """What only the run can say about a snapshot: its step range and its levels."""
    errors = []
    for i, s in enumerate(snapshots):
        if s["step"] > run.max_steps:
            msg = f"step {s['step']} is past the run's last step, algorithm.max_steps={run.max_steps}"
            errors.append(error_entry(["body", i, "step"], msg))
        if len(s["levels"]) != run.num_levels:
            msg = (
                f"{len(s['levels'])} levels given, run {run.id} has {run.num_levels} "
                "(one per training level, task.train_levels)"
            )
            errors.append(error_entry(["body", i, "levels"], msg))
        for j, level in enumerate(s["levels"]):
            if level["level"] >= run.num_levels:
                msg = (
                    f"level {level['level']} is not one of run {run.id}'s levels 0..{run.num_levels - 1} "
                    "(scheduler indices into task.train_levels)"
                )
                errors.append(error_entry(["body", i, "levels", j, "level"], msg))
    return errors



def add_evals(
    session: Session, run_id: int, evals: list[EvalIn], fence: Fence, max_batch: int, now: datetime | None = None
) -> tuple[int, int]:
    """Idempotent on (run, name, step). -> (accepted, duplicates)."""
    _check_batch_size(len(evals), max_batch, "evals")
    now = now or utcnow()
    with write_transaction(session):
        run = fenced_run(session, run_id, fence)
        unique: dict[tuple[str, int], EvalIn] = {}
        for e in evals:
            unique.setdefault((e.name, e.step), e)
        existing = set(
            session.exec(
                select(Eval.name, Eval.step).where(Eval.run_id == run_id, Eval.step.in_({k[1] for k in unique}))
            )
        )
        rows = [
            {"run_id": run_id, "name": e.name, "step": e.step, "results": e.results, "created_at": now}
            for key, e in unique.items()
            if key not in existing
        ]
        if rows:
            insert_ignoring_conflicts(session, Eval.__table__, rows, ["run_id", "name", "step"])
            run.updated_at = now
    return len(rows), len(evals) - len(rows)



def add_logs(
    session: Session, run_id: int, lines: list[str], fence: Fence, max_batch: int, now: datetime | None = None
) -> int:
    _check_batch_size(len(lines), max_batch, "log lines")
    now = now or utcnow()
    with write_transaction(session):
        fenced_run(session, run_id, fence)
        if lines:
            rows = [{"run_id": run_id, "time": now, "line": line} for line in lines]
            session.exec(generic_insert(LogLine.__table__), params=rows)
    return len(lines)

