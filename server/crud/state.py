"""The run state machine: which status may follow which, who holds a running run, and the one
function that changes a run's status.

    queued  -> running                          a worker claims it
    queued  -> cancelled                        cancelled before it ran
    running -> succeeded | failed | cancelled   the worker's outcome, or a lost lease
    running -> queued                           handed back, or its lease expired: a new attempt

A worker holds a run while the run is running with its worker_id and attempt: every worker
write checks that (:func:`fenced_run`), so a worker whose lease was lost gets 409. Every status
change goes through :func:`move`, which checks it against :data:`TRANSITIONS` and sets the
fields it implies (lease, worker, attempt, timestamps), so no caller writes ``run.status``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, select

from e2h.schemas import RunStatus
from server.core.errors import Conflict, NotFound
from server.models import Run

TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.queued: frozenset({RunStatus.running, RunStatus.cancelled}),
    RunStatus.running: frozenset({RunStatus.succeeded, RunStatus.failed, RunStatus.cancelled, RunStatus.queued}),
    RunStatus.succeeded: frozenset(),
    RunStatus.failed: frozenset(),
    RunStatus.cancelled: frozenset(),
}


@dataclass(frozen=True)
class Fence:
    """Who claims to hold a run: worker writes are refused unless it still does.

    ``attempt`` is always given (a write that does not say which attempt it belongs to
    could be a stale one); ``worker_id`` may be left out on snapshot, eval and log posts.
    """

    worker_id: str | None
    attempt: int


def get_run(session: Session, run_id: int) -> Run:
    run = session.get(Run, run_id, populate_existing=True)
    if run is None:
        raise NotFound(f"run {run_id} not found")
    return run


def locked_run(session: Session, run_id: int) -> Run:
    """The run, locked for the rest of the transaction (``FOR UPDATE`` on PostgreSQL)."""
    run = session.exec(
        select(Run).where(Run.id == run_id).with_for_update(), execution_options={"populate_existing": True}
    ).first()
    if run is None:
        raise NotFound(f"run {run_id} not found")
    return run


def check_fence(run, fence: Fence) -> None:
    """409 unless ``fence`` still holds ``run`` (a row or a Core result with the same fields)."""
    if run.status != RunStatus.running:
        raise Conflict(f"run {run.id} is {run.status}, not running: this worker no longer holds its lease")
    if fence.worker_id is not None and run.worker_id != fence.worker_id:
        raise Conflict(f"run {run.id} is leased to worker {run.worker_id!r}, not {fence.worker_id!r}")
    if run.attempt != fence.attempt:
        raise Conflict(f"attempt {fence.attempt} of run {run.id} is stale: the run is on attempt {run.attempt}")


def fenced_run(session: Session, run_id: int, fence: Fence) -> Run:
    """The run, locked, after checking that ``fence`` holds it: every worker write starts here."""
    run = locked_run(session, run_id)
    check_fence(run, fence)
    return run


def touched(run: Run, now: datetime) -> None:
    """Something a status stream shows changed (status, cancel request): bump the version."""
    run.updated_at = now
    run.state_version += 1


def move(run: Run, to: RunStatus, now: datetime, *, worker_id: str | None = None,
         lease_expires_at: datetime | None = None) -> None:
    """Change ``run``'s status to ``to``, checked against :data:`TRANSITIONS`, with what it implies:

    - to running: the claiming ``worker_id`` and its lease, no report yet; ``started_at`` on the first
      start only (a resumed run keeps the time it first started);
    - running to queued: a new attempt (fencing off the old one's writes), no worker, no lease;
    - to a final status: ``finished_at``, no lease (the worker that finished stays named).
    """
    current = RunStatus(run.status)
    if to not in TRANSITIONS[current]:
        raise Conflict(f"run {run.id} is {current}; it cannot become {to}")
    run.status = to.value
    if to == RunStatus.running:
        run.worker_id = worker_id
        run.lease_expires_at = lease_expires_at
        run.started_at = run.started_at or now
        run.report = None  # what the previous attempt's worker reported is not this one's
    else:
        run.lease_expires_at = None
        if to == RunStatus.queued:
            run.attempt += 1
            run.worker_id = None
        else:
            run.finished_at = now
    touched(run, now)
