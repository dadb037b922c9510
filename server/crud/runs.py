"""Runs: creating, listing, cancelling, deleting and cloning them, and the worker protocol
(claim, heartbeat, finish, release, reaping expired leases). Status changes go through
:func:`server.crud.state.move`.

Each write is one transaction (``write_transaction``): any error rolls all of it back.
Rows a write depends on are read with ``FOR UPDATE`` (PostgreSQL; SQLite's writes are
serialised by ``BEGIN IMMEDIATE``), and claims skip rows another claim has locked.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, func
from sqlmodel import Session, select

from e2h.config import RunConfig, dotted_expand
from e2h.schemas import RunClone, RunCreate, RunReport, RunStatus
from server.core.db import write_transaction
from server.core.errors import Conflict, Invalid, error_entry, invalid_from
from server.crud.sql import insert_ignoring_conflicts
from server.crud.state import Fence, check_fence, fenced_run, get_run, locked_run, move, touched
from server.models import Run, RunTag, Worker, utcnow

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
        name=name or config.display_name(),  # short and readable; the output dir keeps output_name()
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
        run = locked_run(session, run_id)
        if run.status == RunStatus.queued:
            move(run, RunStatus.cancelled, now)
        elif run.status == RunStatus.running:
            if not run.cancel_requested:
                run.cancel_requested = True
                touched(run, now)
        else:
            raise Conflict(f"run {run_id} is already {run.status}; only queued or running runs can be cancelled")
    return run


def delete_run(session: Session, run_id: int) -> None:
    with write_transaction(session):
        run = locked_run(session, run_id)
        if not RunStatus(run.status).terminal:
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
    expanded = dotted_expand(overrides)
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
            lease = now + timedelta(seconds=lease_seconds)
            move(run, RunStatus.running, now, worker_id=worker_id, lease_expires_at=lease)
        _upsert_worker(session, worker_id, now, run.id if run else None, labels)
    return run


def heartbeat(
    session: Session,
    run_id: int,
    fence: Fence,
    lease_seconds: float,
    report: RunReport | None = None,
    now: datetime | None = None,
) -> Run:
    """Extend the lease and keep what the worker reports; the reply tells the worker whether a
    cancel was requested."""
    now = now or utcnow()
    report = report or RunReport()
    with write_transaction(session):
        run = fenced_run(session, run_id, fence)
        run.lease_expires_at = now + timedelta(seconds=lease_seconds)
        if report.step is not None:
            run.step = max(run.step, report.step)
        if report.output_dir is not None:
            run.output_dir = report.output_dir
        given = report.model_dump(mode="json", exclude_none=True)
        if given:
            run.report = {**(run.report or {}), **given}
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
        run = locked_run(session, run_id)
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
        check_fence(run, fence)
        run.error = error
        if output_dir is not None:
            run.output_dir = output_dir
        move(run, status, now)
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
        run = fenced_run(session, run_id, fence)
        holder = run.worker_id
        if output_dir is not None:
            run.output_dir = output_dir
        move(run, RunStatus.cancelled if run.cancel_requested else RunStatus.queued, now)
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
                run.error = f"cancelled; {lost}"
                move(run, RunStatus.cancelled, now)
            elif run.leases_lost >= max_attempts:
                run.error = f"lease lost {run.leases_lost} times (max_attempts={max_attempts}); last: {lost}"
                move(run, RunStatus.failed, now)
            else:
                move(run, RunStatus.queued, now)
            changed.append(run.id)
    return changed



def _upsert_worker(
    session: Session, worker_id: str, now: datetime, run_id: int | None, labels: list[str] | None = None
) -> None:
    worker = session.get(Worker, worker_id, with_for_update=True)
    if worker is None:
        # Two first claims by the same new worker id can race on PostgreSQL; one insert wins.
        row = {"id": worker_id, "labels": labels or [], "run_id": run_id, "first_seen_at": now, "last_seen_at": now}
        insert_ignoring_conflicts(session, Worker.__table__, [row], ["id"])
        return
    worker.last_seen_at = now
    worker.run_id = run_id
    if labels is not None:
        worker.labels = list(labels)


def list_workers(session: Session) -> list[Worker]:
    return list(session.exec(select(Worker).order_by(Worker.last_seen_at.desc())))

