"""A run's sampled completions: the worker posts them (worker token, fenced), anyone reads them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from e2h.schemas import INT32_MAX, MAX_LEVEL, CompletionIn, CompletionsPublic, IngestResult
from server import crud
from server.api.deps import RunId, SessionDep, SettingsDep
from server.api.responses import errors
from server.api.routes.workers import FenceDep, ingest

router = APIRouter()


@ingest(router, "/runs/{run_id}/completions", tags=["workers"])
def post_completions(
    run_id: RunId, completions: list[CompletionIn], fence: FenceDep, session: SessionDep, settings: SettingsDep
) -> IngestResult:
    """A JSON array of sampled completions (lines of the output dir's ``completions.jsonl``), at most
    E2H_MAX_BATCH; idempotent on (step, level, index). The run keeps its latest
    E2H_MAX_COMPLETION_STEPS steps."""
    accepted, duplicates = crud.add_completions(
        session, run_id, completions, fence, settings.max_batch, settings.max_completion_steps)
    return IngestResult(accepted=accepted, duplicates=duplicates)


@router.get("/runs/{run_id}/completions", tags=["runs"], responses=errors(404, 422))
def get_completions(
    run_id: RunId,
    session: SessionDep,
    level: Annotated[int | None, Query(ge=0, le=MAX_LEVEL, description="Only this level (scheduler index).")] = None,
    step: Annotated[int | None, Query(ge=0, le=INT32_MAX, description="This step; default: the latest stored "
                                      "(of the level, when one is given).")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Most completions returned.")] = 100,
) -> CompletionsPublic:
    """What the model wrote at a step, with its rewards: the sample the trainer kept (a few per level),
    by level then index, and the steps that have one."""
    return CompletionsPublic.model_validate(crud.list_completions(session, run_id, level, step, limit))
