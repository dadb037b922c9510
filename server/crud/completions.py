"""A run's sampled completions (e2h.schemas.CompletionIn): stored as workers post them, read back
by step and level. Storage is bounded per run: only the latest ``max_steps`` steps are kept."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete
from sqlmodel import Session, select

from e2h.schemas import CompletionIn
from server.core.db import write_transaction
from server.core.errors import Invalid, TooLarge, error_entry
from server.crud.sql import insert_ignoring_conflicts
from server.crud.state import Fence, fenced_run, get_run
from server.models import Completion

KEY = ["run_id", "step", "level", "index"]


def add_completions(
    session: Session, run_id: int, completions: list[CompletionIn], fence: Fence, max_batch: int, max_steps: int
) -> tuple[int, int]:
    """Store new (step, level, index) entries, skip those already stored; then drop the run's
    steps older than its latest ``max_steps``. -> (accepted, duplicates)."""
    if len(completions) > max_batch:
        raise TooLarge(f"{len(completions)} completions in one request; send at most {max_batch} per request "
                       "(E2H_MAX_BATCH)")
    with write_transaction(session):
        run = fenced_run(session, run_id, fence)
        errors = _errors_for_run(run, completions)
        if errors:
            raise Invalid(errors)
        unique: dict[tuple[int, int, int], CompletionIn] = {}
        for c in completions:
            unique.setdefault((c.step, c.level, c.index), c)
        steps = {key[0] for key in unique}
        existing = set(session.exec(
            select(Completion.step, Completion.level, Completion.index)
            .where(Completion.run_id == run_id, Completion.step.in_(steps))
        )) if steps else set()
        rows = [{"run_id": run_id, **c.model_dump()} for key, c in unique.items() if key not in existing]
        if rows:
            insert_ignoring_conflicts(session, Completion.__table__, rows, KEY)
            _keep_latest(session, run_id, max_steps)
    return len(rows), len(completions) - len(rows)


def _errors_for_run(run: Any, completions: list[CompletionIn]) -> list[dict[str, Any]]:
    errors = []
    for i, c in enumerate(completions):
        if c.step > run.max_steps:
            msg = f"step {c.step} is past the run's last step, algorithm.max_steps={run.max_steps}"
            errors.append(error_entry(["body", i, "step"], msg))
        if c.level >= run.num_levels:
            msg = (f"level {c.level} is not one of run {run.id}'s levels 0..{run.num_levels - 1} "
                   "(scheduler indices into task.train_levels)")
            errors.append(error_entry(["body", i, "level"], msg))
    return errors


def _keep_latest(session: Session, run_id: int, max_steps: int) -> None:
    # The oldest step to keep: the max_steps-th newest distinct step (none to drop with fewer).
    oldest = session.exec(
        select(Completion.step).where(Completion.run_id == run_id).distinct()
        .order_by(Completion.step.desc()).offset(max_steps - 1).limit(1)
    ).first()
    if oldest is not None:
        session.exec(delete(Completion).where(Completion.run_id == run_id, Completion.step < oldest))


def list_completions(
    session: Session, run_id: int, level: int | None, step: int | None, limit: int
) -> dict[str, Any]:
    """The completions of one step (``step``, else the latest stored, of ``level`` when given) and
    every stored step, for a picker. -> CompletionsPublic's fields."""
    get_run(session, run_id)
    where = [Completion.run_id == run_id]
    if level is not None:
        where.append(Completion.level == level)
    steps = list(session.exec(select(Completion.step).where(*where).distinct().order_by(Completion.step)))
    if step is None:
        step = steps[-1] if steps else None
    data = []
    if step is not None:
        data = list(session.exec(
            select(Completion).where(*where, Completion.step == step)
            .order_by(Completion.level, Completion.index).limit(limit)
        ))
    return {"step": step, "steps": steps, "data": data}
