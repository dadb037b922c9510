"""Worker protocol (bearer E2H_WORKER_TOKEN): claim, heartbeat, report, finish.

A worker identifies itself on every write: ``attempt`` (from the claimed run, always
required) and ``worker_id``, in the body, or as query parameters on the snapshot, eval and
log posts (where ``worker_id`` may be left out).
Writes from a worker that no longer holds the run (its lease expired and the run was
requeued or handed to another attempt) get 409.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from e2h.schemas import (
    INT32_MAX,
    NO_NUL_PATTERN,
    SNAPSHOT_LIST,
    ClaimRequest,
    ClaimResponse,
    EvalIn,
    FinishRequest,
    HeartbeatRequest,
    HeartbeatResponse,
    IngestResult,
    LogLinesIn,
    ReleaseRequest,
    RunPublic,
    SnapshotIn,
    WorkerPublic,
    snapshot_errors,
)
from server import crud
from server.api.deps import NotifierDep, RunId, SessionDep, SettingsDep, WorkerAuth
from server.api.responses import errors

router = APIRouter(tags=["workers"])

# The snapshot body's schema for OpenAPI; main adds its $defs to the document's components.
SNAPSHOTS_SCHEMA = SNAPSHOT_LIST.json_schema(ref_template="#/components/schemas/{model}")
SNAPSHOT_SCHEMA_DEFS = SNAPSHOTS_SCHEMA.pop("$defs")


def parse_snapshots(body: bytes, max_keys: int = 256, max_key_length: int = 200) -> list[SnapshotIn]:
    """Validate a JSON array of snapshots; errors are located like FastAPI's (``body``, index, ...)."""
    try:
        snapshots = SNAPSHOT_LIST.validate_json(body)
        errors = snapshot_errors(snapshots) + key_errors(snapshots, max_keys, max_key_length)
    except ValidationError as e:
        errors = e.errors(include_url=False, include_input=False)
    if errors:
        raise RequestValidationError([{**err, "loc": ("body", *err["loc"])} for err in errors])
    return snapshots


def key_errors(snapshots: list[SnapshotIn], max_keys: int, max_key_length: int) -> list[dict]:
    """Metric names and component names are free text a worker chooses: bounded in number and length,
    so one run cannot make every history read of it huge (E2H_MAX_SNAPSHOT_KEYS, ..._KEY_LENGTH)."""
    errors = []

    def check(names: dict | None, loc: tuple) -> None:
        if not names:
            return
        if len(names) > max_keys:
            msg = f"{len(names)} keys, at most {max_keys} are kept per snapshot (E2H_MAX_SNAPSHOT_KEYS)"
            errors.append({"loc": loc, "msg": f"Value error, {msg}", "type": "value_error"})
        if long := [name for name in names if len(name) > max_key_length]:
            msg = (
                f"key {long[0][:40]!r}... is {len(long[0])} characters, at most {max_key_length} "
                "(E2H_MAX_SNAPSHOT_KEY_LENGTH)"
            )
            errors.append({"loc": loc, "msg": f"Value error, {msg}", "type": "value_error"})

    for i, snapshot in enumerate(snapshots):
        check(snapshot.get("metrics"), (i, "metrics"))
        for j, level in enumerate(snapshot["levels"]):
            check(level.get("components"), (i, "levels", j, "components"))
    return errors


async def _fence(
    attempt: Annotated[int, Query(ge=1, le=INT32_MAX, description="The attempt it claimed (required).")],
    worker_id: Annotated[
        str | None, Query(max_length=200, pattern=NO_NUL_PATTERN, description="The worker that claimed the run.")
    ] = None,
) -> crud.Fence:
    return crud.Fence(worker_id, attempt)


FenceDep = Annotated[crud.Fence, Depends(_fence)]


def ingest(to: APIRouter, path: str, **extra: Any) -> Callable:
    """Declare a worker's ingest POST on ``to``: the worker token, 202 with an IngestResult, and the
    errors every fenced write can answer with. The route takes its fence as ``fence: FenceDep``."""
    return to.post(path, status_code=status.HTTP_202_ACCEPTED, dependencies=[WorkerAuth],
                   responses=errors(401, 404, 409, 413, 422), **extra)


@router.post(
    "/workers/claim",
    dependencies=[WorkerAuth],
    responses={204: {"description": "The queue is empty."}, **errors(401, 413, 422)},
)
def claim(body: ClaimRequest, session: SessionDep, settings: SettingsDep, notifier: NotifierDep) -> ClaimResponse:
    run = crud.claim_run(session, body.worker_id, body.labels, settings.lease_seconds, gpus_free=body.gpus_free)
    if run is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    notifier.notify(run.id)
    return ClaimResponse(run=run, lease_expires_at=run.lease_expires_at)


@router.get("/workers")
def list_workers(session: SessionDep) -> list[WorkerPublic]:
    return crud.list_workers(session)


@router.post("/runs/{run_id}/heartbeat", dependencies=[WorkerAuth], responses=errors(401, 404, 409, 413, 422))
def heartbeat(run_id: RunId, body: HeartbeatRequest, session: SessionDep, settings: SettingsDep) -> HeartbeatResponse:
    fence = crud.Fence(body.worker_id, body.attempt)
    run = crud.heartbeat(session, run_id, fence, settings.lease_seconds, body.report())
    return HeartbeatResponse(cancel_requested=run.cancel_requested, lease_expires_at=run.lease_expires_at)


async def _raw_body(request: Request) -> bytes:
    # The body is read raw (validated by pydantic from the bytes), so FastAPI checks nothing else
    # of the request: a query parameter the route does not have is refused here, naming it.
    if unknown := sorted(set(request.query_params) - {"worker_id", "attempt"}):
        raise RequestValidationError([{"type": "extra_forbidden", "loc": ("query", unknown[0]),
                                       "msg": "Extra inputs are not permitted: this route takes worker_id and attempt",
                                       "input": None}])
    return await request.body()


@ingest(
    router,
    "/runs/{run_id}/snapshots",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": SNAPSHOTS_SCHEMA}}}},
)
def post_snapshots(
    run_id: RunId,
    body: Annotated[bytes, Depends(_raw_body)],
    fence: FenceDep,
    session: SessionDep,
    settings: SettingsDep,
    notifier: NotifierDep,
) -> IngestResult:
    """A JSON array of snapshots (DESIGN.md section 7), at most 1,000; idempotent on step."""
    # Parsed and validated straight from the bytes by pydantic: half the cost of
    # json.loads followed by validation, on the path that carries thousands per second.
    snapshots = parse_snapshots(body, settings.max_snapshot_keys, settings.max_snapshot_key_length)
    accepted, duplicates = crud.add_snapshots(session, run_id, snapshots, fence, settings.max_batch)
    notifier.notify(run_id)
    return IngestResult(accepted=accepted, duplicates=duplicates)


@ingest(router, "/runs/{run_id}/evals")
def post_evals(
    run_id: RunId, evals: EvalIn | list[EvalIn], fence: FenceDep, session: SessionDep, settings: SettingsDep
) -> IngestResult:
    batch = evals if isinstance(evals, list) else [evals]
    accepted, duplicates = crud.add_evals(session, run_id, batch, fence, settings.max_batch)
    return IngestResult(accepted=accepted, duplicates=duplicates)


@ingest(router, "/runs/{run_id}/logs")
def post_logs(
    run_id: RunId,
    body: LogLinesIn,
    fence: FenceDep,
    session: SessionDep,
    settings: SettingsDep,
    notifier: NotifierDep,
) -> IngestResult:
    accepted = crud.add_logs(session, run_id, body.lines, fence, settings.max_batch)
    notifier.notify(run_id)
    return IngestResult(accepted=accepted, duplicates=0)


@router.post("/runs/{run_id}/release", dependencies=[WorkerAuth], responses=errors(401, 404, 409, 413, 422))
def release(run_id: RunId, body: ReleaseRequest, session: SessionDep, notifier: NotifierDep) -> RunPublic:
    """Hand the run back to the queue (graceful shutdown); the next attempt resumes from output_dir."""
    run = crud.release_run(session, run_id, crud.Fence(body.worker_id, body.attempt), body.output_dir)
    notifier.notify(run_id)
    return run


@router.post("/runs/{run_id}/finish", dependencies=[WorkerAuth], responses=errors(401, 404, 409, 413, 422))
def finish(run_id: RunId, body: FinishRequest, session: SessionDep, notifier: NotifierDep) -> RunPublic:
    fence = crud.Fence(body.worker_id, body.attempt)
    run = crud.finish_run(session, run_id, fence, body.status, body.error, body.output_dir)
    notifier.notify(run_id)
    return run
