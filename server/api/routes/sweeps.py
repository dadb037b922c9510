"""Sweep endpoints: a base config x a grid x seeds queued as runs, listed, summarised, cancelled, deleted."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status

from e2h.schemas import INT32_MAX, ErrorMessage
from e2h.sweeps import SweepCreate, SweepDetail, SweepPublic, SweepsPublic
from server import sweeps
from server.api.deps import ApiAuth, NotifierDep, SessionDep, SettingsDep
from server.api.responses import errors

router = APIRouter(prefix="/sweeps", tags=["sweeps"])

SweepId = Annotated[int, Path(ge=1, le=INT32_MAX, description="The sweep's id.")]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorMessage, "description": "No sweep with this id."}}
_FINISHED = {409: {"model": ErrorMessage, "description": "The sweep is in the wrong state for this."}}


@router.post("", status_code=status.HTTP_201_CREATED, dependencies=[ApiAuth], responses=errors(401, 413, 422))
def create_sweep(body: SweepCreate, session: SessionDep, settings: SettingsDep, notifier: NotifierDep) -> SweepPublic:
    """Queue every grid point x seed as a run (seed-major: each group's first seed first). Each run is
    validated as POST /runs validates it; one invalid point rejects the sweep, naming the point."""
    sweep, run_ids = sweeps.create_sweep(session, body, settings.run_ceilings, settings.allow_trust_remote_code)
    for run_id in run_ids:
        notifier.notify(run_id)
    return sweeps.public(session, sweep)


@router.get("", responses=errors(422))
def list_sweeps(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=INT32_MAX)] = 0,
) -> SweepsPublic:
    """Newest first, with each sweep's run ids and runs per status (GET /sweeps/{id} has the summary)."""
    data, count = sweeps.list_sweeps(session, limit, offset)
    return SweepsPublic(data=data, count=count)


@router.get("/{sweep_id}", response_model=SweepDetail, responses={**_NOT_FOUND, **errors(422)})
def get_sweep(
    sweep_id: SweepId,
    session: SessionDep,
    baseline: Annotated[
        int | None, Query(ge=0, le=INT32_MAX, description="Group index to take differences against.")
    ] = None,
) -> Response:
    """The sweep, its runs (group, seed, status, final test figures) and its summary: per group and
    level the mean and 95% t interval over finished seeds, paired differences to the baseline group,
    and winner / tied / behind per level."""
    # Serialised directly: the model was built and validated just now, and validating a hundred
    # runs and their summary again as the response model would double the time it takes.
    return Response(sweeps.detail(session, sweep_id, baseline).model_dump_json(), media_type="application/json")


@router.post("/{sweep_id}/cancel", dependencies=[ApiAuth], responses={**_NOT_FOUND, **_FINISHED, **errors(401, 422)})
def cancel_sweep(sweep_id: SweepId, session: SessionDep, notifier: NotifierDep) -> SweepPublic:
    """Queued runs are cancelled at once, running ones asked to stop; 409 when every run has finished."""
    sweep, run_ids = sweeps.cancel_sweep(session, sweep_id)
    for run_id in run_ids:
        notifier.notify(run_id)
    return sweeps.public(session, sweep)


@router.delete(
    "/{sweep_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[ApiAuth],
    responses={**_NOT_FOUND, **_FINISHED, **errors(401, 422)},
)
def delete_sweep(sweep_id: SweepId, session: SessionDep, notifier: NotifierDep) -> Response:
    """Delete a finished sweep with its runs; 409 while any run is queued or running."""
    for run_id in sweeps.delete_sweep(session, sweep_id):
        notifier.notify(run_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
