"""The run state machine and every database read and write the API makes.

States: queued -> running -> succeeded | failed | cancelled. A running run whose lease
expires goes back to queued with attempt + 1, or fails once max_attempts leases were
lost. A worker that shuts down releases its run: back to queued, attempt + 1, no penalty.
A worker holds a run while the run is running with its worker_id and attempt: every
worker write checks that ("fencing"), so a worker whose lease was lost gets 409.

Each write is one transaction (``write_transaction``): any error rolls all of it back.
Rows a write depends on are read with ``FOR UPDATE`` (PostgreSQL; SQLite's writes are
serialised by ``BEGIN IMMEDIATE``), and claims skip rows another claim has locked.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from pydantic_core import from_json
from sqlalchemy import BigInteger, Connection, Table, bindparam, cast, delete, func, or_, update
from sqlalchemy import insert as generic_insert
from sqlalchemy import select as sa_select
from sqlmodel import Session, select

from e2h.config import RunConfig
from server.core.db import write_transaction
from server.core.errors import Conflict, Invalid, NotFound, TooLarge, error_entry, invalid_from
from server.models import (
    INT64_MAX,
    SNAPSHOT,
    TERMINAL,
    Eval,
    EvalIn,
    LogLine,
    Run,
    RunClone,
    RunCreate,
    RunPublic,
    RunStatus,
    RunTag,
    Snapshot,
    SnapshotIn,
    Worker,
    utcnow,
)


@dataclass(frozen=True)
class Fence:
    """Who claims to hold a run: worker writes are refused unless it still does.

    ``attempt`` is always given (a write that does not say which attempt it belongs to
    could be a stale one); ``worker_id`` may be left out on snapshot, eval and log posts.
    """

    worker_id: str | None
    attempt: int


# -- runs -------------------------------------------------------------------------------


def get_run(session: Session, run_id: int) -> Run:
    run = session.get(Run, run_id, populate_existing=True)
    if run is None:
        raise NotFound(f"run {run_id} not found")
    return run


def _locked_run(session: Session, run_id: int) -> Run:
    run = session.exec(
        select(Run).where(Run.id == run_id).with_for_update(), execution_options={"populate_existing": True}
    ).first()
    if run is None:
        raise NotFound(f"run {run_id} not found")
    return run


def _changed(run: Run, now: datetime) -> None:
    run.updated_at = now
    run.state_version += 1


TRUST_REMOTE_CODE_REFUSED = (
    "trust_remote_code=true would run the model repository's Python code on the workers; this server "
    "refuses it (set E2H_ALLOW_TRUST_REMOTE_CODE=1 on the server, and on the workers, to allow it)"
)


def _check_remote_code(config: RunConfig, allow_trust_remote_code: bool) -> None:
    if config.model.trust_remote_code and not allow_trust_remote_code:
        raise Invalid([error_entry(["body", "config", "model", "trust_remote_code"], TRUST_REMOTE_CODE_REFUSED)])


def create_run(
    session: Session, body: RunCreate, now: datetime | None = None, *, allow_trust_remote_code: bool = False
) -> Run:
    _check_remote_code(body.config, allow_trust_remote_code)
    return _insert_run(session, body.config, body.name, body.priority, body.tags, now or utcnow())


def _insert_run(
    session: Session, config: RunConfig, name: str | None, priority: int, tags: list[str], now: datetime
) -> Run:
    tags = list(dict.fromkeys(tags))
    run = Run(
        name=name or config.output_name(),
        priority=priority,
        tags=tags,
        config=config.model_dump(mode="json"),
        num_levels=config.num_levels,
        max_steps=config.algorithm.max_steps,
        created_at=now,
        updated_at=now,
    )
    with write_transaction(session):
        session.add(run)
        session.flush()
        session.add_all(RunTag(run_id=run.id, tag=tag) for tag in tags)
    return run


def list_runs(
    session: Session, statuses: list[str] | None, tag: str | None, limit: int, offset: int
) -> tuple[list[Run], int]:
    conditions = []
    if statuses:
        conditions.append(Run.status.in_(statuses))
    if tag:
        conditions.append(select(RunTag.run_id).where(RunTag.run_id == Run.id, RunTag.tag == tag).exists())
    count = session.exec(select(func.count()).select_from(Run).where(*conditions)).one()
    runs = session.exec(select(Run).where(*conditions).order_by(Run.id.desc()).offset(offset).limit(limit))
    return list(runs), count


def cancel_run(session: Session, run_id: int, now: datetime | None = None) -> Run:
    """Queued runs are cancelled at once; running ones are asked to stop via the heartbeat."""
    now = now or utcnow()
    with write_transaction(session):
        run = _locked_run(session, run_id)
        if run.status == RunStatus.queued:
            run.status = RunStatus.cancelled.value
            run.finished_at = now
            _changed(run, now)
        elif run.status == RunStatus.running:
            if not run.cancel_requested:
                run.cancel_requested = True
                _changed(run, now)
        else:
            raise Conflict(f"run {run_id} is already {run.status}; only queued or running runs can be cancelled")
    return run


def delete_run(session: Session, run_id: int) -> None:
    with write_transaction(session):
        run = _locked_run(session, run_id)
        if run.status not in TERMINAL:
            raise Conflict(f"run {run_id} is {run.status}; cancel it and wait until it has finished to delete it")
        # The database cascades to snapshots, evals, logs and tags (foreign keys ON DELETE CASCADE).
        session.exec(delete(Run).where(Run.id == run_id))
        session.expunge(run)


def clone_run(
    session: Session, run_id: int, body: RunClone, now: datetime | None = None, *, allow_trust_remote_code: bool = False
) -> Run:
    source = get_run(session, run_id)
    config = merge_overrides(source.config, body.overrides)
    try:
        validated = RunConfig.model_validate(config)
    except ValidationError as e:
        raise invalid_from(e, ("config",)) from None
    _check_remote_code(validated, allow_trust_remote_code)
    return _insert_run(
        session,
        validated,
        body.name or f"{source.name} (clone)"[:200],
        source.priority if body.priority is None else body.priority,
        source.tags if body.tags is None else body.tags,
        now or utcnow(),
    )


def merge_overrides(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge nested or dotted overrides into a copy of a stored (complete) config.

    A stored config has its task's levels and its scheduler's params filled in; when an
    override switches the task or the scheduler and does not give those too, they are
    dropped so the new task's or scheduler's defaults apply.
    """
    merged = copy.deepcopy(config)
    expanded: dict[str, Any] = {}
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = expanded
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    _deep_merge(merged, expanded)
    for section, switch, dependents in (
        ("task", "name", ("train_levels", "test_levels")),
        ("scheduler", "name", ("params",)),
    ):
        given = expanded.get(section)
        if isinstance(given, dict) and switch in given and given[switch] != config.get(section, {}).get(switch):
            for dep in dependents:
                if dep not in given:
                    merged[section].pop(dep, None)
    return merged


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


# -- the worker protocol ----------------------------------------------------------------


CLAIM_SCAN = 200  # queued runs looked at for one that fits a worker's GPUs


def fits(config: dict, gpus_free: int | None) -> bool:
    """Whether a run with ``config`` can be placed on a worker with ``gpus_free`` GPUs (None: any)."""
    if gpus_free is None:
        return True
    from e2h.config import RunConfig
    from e2h.plan import gpus_needed

    try:
        parsed = RunConfig.model_validate(config)
    except ValueError:
        return True  # the worker refuses it with the reason, which fails it instead of leaving it queued
    if gpus_free == 0:
        return not parsed.algorithm.use_vllm
    return gpus_needed(parsed) <= gpus_free


def claim_run(
    session: Session, worker_id: str, labels: list[str], lease_seconds: float, now: datetime | None = None,
    gpus_free: int | None = None,
) -> Run | None:
    """Hand the next queued run (highest priority, then oldest) that fits the worker's GPUs to
    ``worker_id``: exactly once."""
    now = now or utcnow()
    with write_transaction(session):
        query = select(Run).where(Run.status == RunStatus.queued)
        if gpus_free is not None:
            rows = session.exec(select(Run.id, Run.config).where(Run.status == RunStatus.queued)
                                .order_by(Run.priority.desc(), Run.id).limit(CLAIM_SCAN)).all()
            fitting = next((run_id for run_id, config in rows if fits(config or {}, gpus_free)), None)
            query = query.where(Run.id == fitting)  # None: nothing fits, nothing is claimed
        run = session.exec(
            query.order_by(Run.priority.desc(), Run.id).limit(1).with_for_update(skip_locked=True),
            execution_options={"populate_existing": True},
        ).first()
        if run is not None:
            run.status = RunStatus.running.value
            run.worker_id = worker_id
            run.lease_expires_at = now + timedelta(seconds=lease_seconds)
            run.started_at = now
            _changed(run, now)
        _upsert_worker(session, worker_id, now, run.id if run else None, labels)
    return run


def _check_fence(run: Run, fence: Fence) -> None:
    if run.status != RunStatus.running:
        raise Conflict(f"run {run.id} is {run.status}, not running: this worker no longer holds its lease")
    if fence.worker_id is not None and run.worker_id != fence.worker_id:
        raise Conflict(f"run {run.id} is leased to worker {run.worker_id!r}, not {fence.worker_id!r}")
    if run.attempt != fence.attempt:
        raise Conflict(f"attempt {fence.attempt} of run {run.id} is stale: the run is on attempt {run.attempt}")


def heartbeat(
    session: Session,
    run_id: int,
    fence: Fence,
    lease_seconds: float,
    step: int | None = None,
    output_dir: str | None = None,
    now: datetime | None = None,
) -> Run:
    """Extend the lease; the reply tells the worker whether a cancel was requested."""
    now = now or utcnow()
    with write_transaction(session):
        run = _locked_run(session, run_id)
        _check_fence(run, fence)
        run.lease_expires_at = now + timedelta(seconds=lease_seconds)
        if step is not None:
            run.step = max(run.step, step)
        if output_dir is not None:
            run.output_dir = output_dir
        run.updated_at = now
        _upsert_worker(session, run.worker_id, now, run.id)
    return run


def finish_run(
    session: Session,
    run_id: int,
    fence: Fence,
    status: RunStatus,
    error: str | None = None,
    output_dir: str | None = None,
    now: datetime | None = None,
) -> Run:
    """The worker's outcome; a run whose cancel was requested ends cancelled whatever it reports."""
    now = now or utcnow()
    with write_transaction(session):
        run = _locked_run(session, run_id)
        if run.cancel_requested and status != RunStatus.cancelled:
            note = f"cancel requested; the worker then reported {status.value}"
            error = f"{note}: {error}" if error else note
            status = RunStatus.cancelled
        if (
            run.status == status
            and run.worker_id == fence.worker_id
            and run.attempt == fence.attempt
            and run.finished_at is not None
        ):
            return run  # a retried finish whose first reply was lost
        _check_fence(run, fence)
        run.status = status.value
        run.error = error
        if output_dir is not None:
            run.output_dir = output_dir
        run.lease_expires_at = None
        run.finished_at = now
        _changed(run, now)
        _upsert_worker(session, run.worker_id, now, None)
    return run


def release_run(
    session: Session, run_id: int, fence: Fence, output_dir: str | None = None, now: datetime | None = None
) -> Run:
    """A worker hands its run back (it is shutting down): queued again, resuming from output_dir.

    A new attempt, so the releasing worker's leftovers are fenced off; a run whose cancel
    was requested is cancelled instead.
    """
    now = now or utcnow()
    with write_transaction(session):
        run = _locked_run(session, run_id)
        _check_fence(run, fence)
        holder = run.worker_id
        if output_dir is not None:
            run.output_dir = output_dir
        if run.cancel_requested:
            run.status = RunStatus.cancelled.value
            run.finished_at = now
        else:
            run.status = RunStatus.queued.value
            run.attempt += 1
            run.worker_id = None
        run.lease_expires_at = None
        _changed(run, now)
        _upsert_worker(session, holder, now, None)
    return run


def reap_expired(session: Session, max_attempts: int, now: datetime | None = None) -> list[int]:
    """Requeue running runs whose lease expired (attempt + 1); the max_attempts-th loss fails the run.

    A run whose cancel was requested is cancelled rather than requeued. Returns the ids changed.
    """
    now = now or utcnow()
    with write_transaction(session):
        expired = session.exec(
            select(Run)
            .where(Run.status == RunStatus.running, Run.lease_expires_at < now)
            .with_for_update(skip_locked=True),
            execution_options={"populate_existing": True},
        ).all()
        changed = []
        for run in expired:
            lost = f"worker {run.worker_id!r} stopped heartbeating (lease expired at {run.lease_expires_at})"
            run.leases_lost += 1
            if run.cancel_requested:
                run.status = RunStatus.cancelled.value
                run.finished_at = now
                run.error = f"cancelled; {lost}"
            elif run.leases_lost >= max_attempts:
                run.status = RunStatus.failed.value
                run.finished_at = now
                run.error = f"lease lost {run.leases_lost} times (max_attempts={max_attempts}); last: {lost}"
            else:
                run.status = RunStatus.queued.value
                run.attempt += 1
                run.worker_id = None
            run.lease_expires_at = None
            _changed(run, now)
            changed.append(run.id)
    return changed


def _insert_ignoring_conflicts(session: Session, table: Table, rows: list[dict[str, Any]], keys: list[str]) -> None:
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:  # callers already filtered out existing keys under a lock
        session.exec(generic_insert(table), params=rows)
        return
    session.exec(insert(table).on_conflict_do_nothing(index_elements=keys), params=rows)


# The ingestion path runs a hundred times a second: Core statements built once, run on the
# session's connection, skip the ORM's per-statement work (about a third of the request).
_runs, _snapshots, _logs = Run.__table__, Snapshot.__table__, LogLine.__table__
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


def _upsert_worker(
    session: Session, worker_id: str, now: datetime, run_id: int | None, labels: list[str] | None = None
) -> None:
    worker = session.get(Worker, worker_id, with_for_update=True)
    if worker is None:
        # Two first claims by the same new worker id can race on PostgreSQL; one insert wins.
        row = {"id": worker_id, "labels": labels or [], "run_id": run_id, "first_seen_at": now, "last_seen_at": now}
        _insert_ignoring_conflicts(session, Worker.__table__, [row], ["id"])
        return
    worker.last_seen_at = now
    worker.run_id = run_id
    if labels is not None:
        worker.labels = list(labels)


def list_workers(session: Session) -> list[Worker]:
    return list(session.exec(select(Worker).order_by(Worker.last_seen_at.desc())))


# -- snapshots, evals, logs --------------------------------------------------------------


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
        _check_fence(run, fence)
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


def snapshot_series(session: Session, run_id: int, after_step: int | None, max_points: int) -> dict[str, Any]:
    """Columnar history of a run, at most ``max_points`` steps (bucketed; first and last kept).

    Steps are split into ``max_points - 1`` equal ranges of step numbers; each contributes
    its first stored step, and the last step is always added. Values are those snapshots'
    own (no averaging), chosen in SQL so only the kept rows are read and parsed.
    """
    run = get_run(session, run_id)
    where = [Snapshot.run_id == run_id]
    if after_step is None:
        total = run.snapshot_count
    else:
        where.append(Snapshot.step > after_step)
        total = session.exec(select(func.count()).select_from(Snapshot).where(*where)).one()
    if not total:
        return {"steps": [], "time": [], "levels": [], "metrics": {}, "total": 0}
    query = select(Snapshot.step, Snapshot.data).order_by(Snapshot.step)
    if total <= max_points:
        rows = session.exec(query.where(*where)).all()
    else:
        # Separate queries: alone, each is one index lookup.
        lo = session.exec(select(func.min(Snapshot.step)).where(*where)).one()
        hi = session.exec(select(func.max(Snapshot.step)).where(*where)).one()
        buckets = max_points - 1
        if max_points <= MAX_LISTED_STEPS:
            kept = sorted(_bucket_firsts(session, where, lo, hi, total, buckets) | {hi})
            rows = session.exec(
                query.where(Snapshot.run_id == run_id, Snapshot.step.in_(bindparam("kept", expanding=True))),
                params={"kept": kept},
            ).all()
        else:  # too many steps to list as parameters (SQLite allows 32,766): let SQL pick them
            firsts = select(func.min(Snapshot.step)).where(*where).group_by(_bucket(lo, hi, buckets))
            rows = session.exec(
                query.where(or_(Snapshot.step.in_(firsts.scalar_subquery()), Snapshot.step == hi)).where(
                    Snapshot.run_id == run_id
                )
            ).all()
    return _columns([step for step, _ in rows], [from_json(data) for _, data in rows], total)


# Above this many points the kept steps are chosen inside one SQL statement instead.
MAX_LISTED_STEPS = 10_000


def _bucket(lo: int, hi: int, buckets: int):
    # Integer division; BigInteger so (step - lo) * buckets cannot overflow 32 bits.
    return cast(Snapshot.step - lo, BigInteger) * buckets // (hi - lo + 1)


def _bucket_firsts(session: Session, where: list, lo: int, hi: int, total: int, buckets: int) -> set[int]:
    """The first stored step of each of ``buckets`` equal ranges of [lo, hi]."""
    span = hi - lo + 1
    if total == span:
        # Every step is there (logging every step, the usual case): bucket b starts at the
        # first step s with (s - lo) * buckets >= b * span, so no scan is needed.
        return {lo - (-b * span // buckets) for b in range(buckets)}
    return set(session.exec(select(func.min(Snapshot.step)).where(*where).group_by(_bucket(lo, hi, buckets))))


def _columns(steps: list[int], docs: list[dict[str, Any]], total: int) -> dict[str, Any]:
    """Snapshot dicts -> one list per field; a field missing from a snapshot is None there."""
    n = len(docs)

    def put(columns: dict[str, list], values: dict[str, Any] | None, i: int) -> None:
        for name, value in (values or {}).items():
            column = columns.get(name)
            if column is None:
                column = columns[name] = [None] * n
            column[i] = value

    metrics: dict[str, list] = {}
    for i, doc in enumerate(docs):
        put(metrics, doc.get("metrics"), i)
    levels = []
    for j, first in enumerate(docs[0]["levels"]):
        probability, reward_mean, reward_var, count = [], [], [], []
        components: dict[str, list] = {}
        for i, doc in enumerate(docs):
            entry = doc["levels"][j]
            probability.append(entry["probability"])
            reward_mean.append(entry.get("reward_mean"))
            reward_var.append(entry.get("reward_var"))
            count.append(entry.get("count"))
            put(components, entry.get("components"), i)
        levels.append(
            {
                "level": first["level"],
                "probability": probability,
                "reward_mean": reward_mean,
                "reward_var": reward_var,
                "count": count,
                "components": components,
            }
        )
    return {"steps": steps, "time": [d.get("time") for d in docs], "levels": levels, "metrics": metrics, "total": total}


def add_evals(
    session: Session, run_id: int, evals: list[EvalIn], fence: Fence, max_batch: int, now: datetime | None = None
) -> tuple[int, int]:
    """Idempotent on (run, name, step). -> (accepted, duplicates)."""
    _check_batch_size(len(evals), max_batch, "evals")
    now = now or utcnow()
    with write_transaction(session):
        run = _locked_run(session, run_id)
        _check_fence(run, fence)
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
            _insert_ignoring_conflicts(session, Eval.__table__, rows, ["run_id", "name", "step"])
            run.updated_at = now
    return len(rows), len(evals) - len(rows)


def list_evals(session: Session, run_id: int) -> list[Eval]:
    get_run(session, run_id)
    return list(session.exec(select(Eval).where(Eval.run_id == run_id).order_by(Eval.step, Eval.id)))


def add_logs(
    session: Session, run_id: int, lines: list[str], fence: Fence, max_batch: int, now: datetime | None = None
) -> int:
    _check_batch_size(len(lines), max_batch, "log lines")
    now = now or utcnow()
    with write_transaction(session):
        run = _locked_run(session, run_id)
        _check_fence(run, fence)
        if lines:
            rows = [{"run_id": run_id, "time": now, "line": line} for line in lines]
            session.exec(generic_insert(LogLine.__table__), params=rows)
    return len(lines)


def list_logs(session: Session, run_id: int, after: int, limit: int) -> tuple[list[LogLine], int]:
    get_run(session, run_id)
    lines = list(
        session.exec(
            select(LogLine).where(LogLine.run_id == run_id, LogLine.id > after).order_by(LogLine.id).limit(limit)
        )
    )
    return lines, (lines[-1].id if lines else after)


# -- the event stream ---------------------------------------------------------------------


@dataclass(frozen=True)
class EventCursor:
    """Where a stream stands: last snapshot row id, last log line id, last run state sent.

    Every event's SSE id is the cursor after it, so Last-Event-ID resumes exactly there.
    """

    snapshot: int = 0
    log: int = 0
    version: int = 0

    def encode(self) -> str:
        return f"{self.snapshot}.{self.log}.{self.version}"

    @classmethod
    def decode(cls, text: str | None) -> EventCursor | None:
        try:
            snapshot, log, version = (int(x) for x in (text or "").split("."))
        except ValueError:
            return None
        # Row ids are compared in SQL: a value no column holds would overflow there.
        if not all(0 <= x <= INT64_MAX for x in (snapshot, log, version)):
            return None
        return cls(snapshot, log, version)


def start_cursor(session: Session, run_id: int) -> EventCursor:
    """A new stream starts now: the run's state, then snapshots and logs written from here on."""
    get_run(session, run_id)
    snapshot = session.exec(select(func.max(Snapshot.id)).where(Snapshot.run_id == run_id)).one()
    log = session.exec(select(func.max(LogLine.id)).where(LogLine.run_id == run_id)).one()
    return EventCursor(snapshot or 0, log or 0, 0)


_EVENTS_STATE = sa_select(_runs.c.state_version, _runs.c.status).where(_runs.c.id == bindparam("run_id"))
_EVENTS_SNAPSHOTS = (
    sa_select(_snapshots.c.id, _snapshots.c.data)
    .where(_snapshots.c.run_id == bindparam("run_id"), _snapshots.c.id > bindparam("after"))
    .order_by(_snapshots.c.id)
    .limit(bindparam("limit"))
)
_EVENTS_LOGS = (
    sa_select(_logs.c.id, _logs.c.time, _logs.c.line)
    .where(_logs.c.run_id == bindparam("run_id"), _logs.c.id > bindparam("after"))
    .order_by(_logs.c.id)
    .limit(bindparam("limit"))
)


def read_events(
    session: Session, run_id: int, cursor: EventCursor, limit: int = 500
) -> tuple[list[tuple[str, str, str]], EventCursor, bool]:
    """Events after ``cursor`` as (event, id, data) -> (events, new cursor, stream finished)."""
    conn = session.connection()
    state = conn.execute(_EVENTS_STATE, {"run_id": run_id}).first()
    if state is None:  # deleted while streaming
        return [], cursor, True
    version, status = state
    after = {"run_id": run_id, "limit": limit}
    snaps = conn.execute(_EVENTS_SNAPSHOTS, {**after, "after": cursor.snapshot}).all()
    logs = conn.execute(_EVENTS_LOGS, {**after, "after": cursor.log}).all()
    tail = f".{cursor.log}.{cursor.version}"
    events = [("snapshot", f"{snapshot_id}{tail}", data) for snapshot_id, data in snaps]
    if snaps:
        cursor = replace(cursor, snapshot=snaps[-1][0])
    for line in logs:
        cursor = replace(cursor, log=line.id)
        payload = json.dumps({"id": line.id, "time": line.time.isoformat(), "line": line.line})
        events.append(("log", cursor.encode(), payload))
    if version != cursor.version:
        run = get_run(session, run_id)
        cursor = replace(cursor, version=run.state_version)
        events.append(("status", cursor.encode(), RunPublic.model_validate(run).model_dump_json()))
        status = run.status
    done = status in TERMINAL and len(snaps) < limit and len(logs) < limit
    return events, cursor, done
