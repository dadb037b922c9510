"""Public run endpoints: submit, list, inspect, cancel, clone, delete, history and live events."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from pydantic_core import from_json, to_json
from sqlalchemy import Engine

from e2h.config import RunConfig, ceiling_errors
from e2h.schemas import (
    INT32_MAX,
    INT64_MAX,
    MAX_LEVEL,
    NO_NUL_PATTERN,
    SERIES_PATTERN,
    EvalPublic,
    LogsPublic,
    RunClone,
    RunCreate,
    RunPublic,
    RunResults,
    RunsPublic,
    RunStatus,
    RunSummary,
    SnapshotSeries,
)
from e2h.sweeps import heldout_keys
from server import crud
from server.api.deps import ApiAuth, EngineDep, NotifierDep, RunId, SessionDep, SettingsDep
from server.api.responses import errors
from server.core.db import new_session
from server.core.errors import Invalid, error_entry
from server.core.events import Notifier

router = APIRouter(prefix="/runs", tags=["runs"])
ExportAfterStep = Annotated[
    int | None, Query(ge=-1, le=INT32_MAX, description="Only steps after this one.")
]

EVENTS_PER_READ = 500


def _statuses(status: str | None) -> list[str] | None:
    if not status:
        return None
    wanted = [s.strip() for s in status.split(",") if s.strip()]
    known = {s.value for s in RunStatus}
    if unknown := [s for s in wanted if s not in known]:
        raise Invalid([error_entry(["query", "status"], f"unknown status {unknown}; use {sorted(known)}")])
    return wanted


def _check_ceilings(config: RunConfig, ceilings: dict[str, float]) -> None:
    """422 for each resource field above this server's ceiling (E2H_RUN_CEILINGS)."""
    if found := ceiling_errors(config, ceilings, "E2H_RUN_CEILINGS"):
        raise Invalid([error_entry(["body", "config"], msg, named=field.split(".")) for field, msg in found])


@router.post("", status_code=status.HTTP_201_CREATED, dependencies=[ApiAuth], responses=errors(401, 413, 422))
def create_run(body: RunCreate, session: SessionDep, settings: SettingsDep, notifier: NotifierDep) -> RunPublic:
    _check_ceilings(body.config, settings.run_ceilings)
    run = crud.create_run(session, body, allow_trust_remote_code=settings.allow_trust_remote_code)
    notifier.notify(run.id)
    return run


@router.get("", responses=errors(422))
def list_runs(
    session: SessionDep,
    status: Annotated[str | None, Query(max_length=200, description="One status or several, comma-separated.")] = None,
    tag: Annotated[str | None, Query(max_length=64, pattern=NO_NUL_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=INT32_MAX)] = 0,
) -> RunsPublic:
    """Newest first, as summaries: GET /runs/{id} has a run's config."""
    runs, count = crud.list_runs(session, _statuses(status), tag, limit, offset)
    tests = crud.final_tests(session, [run.id for run in runs])
    return RunsPublic(count=count, data=[
        RunSummary.from_run(run, RunResults.from_test(tests[run.id], heldout_keys(run.config)) if run.id in tests
                            else None) for run in runs])


@router.get("/{run_id}", responses=errors(404, 422))
def get_run(run_id: RunId, session: SessionDep) -> RunPublic:
    return crud.get_run(session, run_id)


@router.post("/{run_id}/cancel", dependencies=[ApiAuth], responses=errors(401, 404, 409, 422))
def cancel_run(run_id: RunId, session: SessionDep, notifier: NotifierDep) -> RunPublic:
    run = crud.cancel_run(session, run_id)
    notifier.notify(run_id)
    return run


@router.post(
    "/{run_id}/clone",
    status_code=status.HTTP_201_CREATED,
    dependencies=[ApiAuth],
    responses=errors(401, 404, 413, 422),
)
def clone_run(run_id: RunId, session: SessionDep, settings: SettingsDep, body: RunClone | None = None) -> RunPublic:
    body = body or RunClone()
    source = crud.get_run(session, run_id)
    try:
        config = RunConfig.model_validate(crud.merge_overrides(source.config, body.overrides))
    except ValidationError:
        pass  # crud.clone_run reports it as a 422 naming the field
    else:
        # Today's ceilings apply to a clone, whatever they were when its source was submitted.
        _check_ceilings(config, settings.run_ceilings)
    return crud.clone_run(session, run_id, body, allow_trust_remote_code=settings.allow_trust_remote_code)


@router.delete(
    "/{run_id}", status_code=status.HTTP_204_NO_CONTENT, dependencies=[ApiAuth], responses=errors(401, 404, 409, 422)
)
def delete_run(run_id: RunId, session: SessionDep, notifier: NotifierDep) -> Response:
    crud.delete_run(session, run_id)
    notifier.notify(run_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{run_id}/snapshots", response_model=SnapshotSeries, responses=errors(404, 422))
def get_snapshots(
    run_id: RunId,
    session: SessionDep,
    after_step: Annotated[
        int | None,
        Query(ge=-INT32_MAX - 1, le=INT32_MAX, description="Only steps after this one (incremental polling)."),
    ] = None,
    max_points: Annotated[int, Query(ge=2, le=100_000, description="Most steps returned (bucketed).")] = 1000,
) -> Response:
    series = crud.snapshot_series(session, run_id, after_step, max_points)
    # Serialised directly: validating a megabyte of lists against the response model
    # would take longer than the query. The shape is SnapshotSeries by construction.
    return Response(to_json(series), media_type="application/json")


@router.get(
    "/{run_id}/snapshots.ndjson",
    response_class=StreamingResponse,
    responses={200: {"description": "One stored snapshot per line, in step order",
                     "content": {"application/x-ndjson": {"schema": {"type": "string"}}}}, **errors(404, 422)},
)
def export_snapshots(
    run_id: RunId,
    engine: EngineDep,
    after_step: ExportAfterStep = None,
    level: Annotated[int | None, Query(ge=0, le=MAX_LEVEL, description="Only this level (scheduler index).")] = None,
) -> StreamingResponse:
    """The full history of a run, unbucketed: every stored snapshot as one JSON line (DESIGN.md
    section 7), streamed in batches so the server's memory stays bounded by one batch. ``level``
    keeps one level per line (its metrics stay)."""
    return _download(engine, run_id, lambda: _ndjson(crud.snapshot_export(engine, run_id, after_step), level),
                     "application/x-ndjson", f"run-{run_id}-snapshots.ndjson")


@router.get(
    "/{run_id}/snapshots.csv",
    response_class=StreamingResponse,
    responses={200: {"description": "One series of the full history: a row per stored step",
                     "content": {"text/csv": {"schema": {"type": "string"}}}}, **errors(404, 422)},
)
def export_series(
    run_id: RunId,
    engine: EngineDep,
    series: Annotated[str, Query(pattern=SERIES_PATTERN, description=(
        "probability, count, reward_mean or reward_var (a column per level), components.NAME "
        "(a level's score component, a column per level) or metrics.NAME (one column)."))],
    after_step: ExportAfterStep = None,
) -> StreamingResponse:
    """One series of a run's full history, unbucketed, as CSV (``step`` then ``level_N`` per
    level, or the metric's name; an empty cell where a snapshot has no value): the values are
    read out of the stored JSON by the database, a batch at a time."""
    return _download(engine, run_id, lambda: _csv(*crud.series_export(engine, run_id, series, after_step)),
                     "text/csv", f"run-{run_id}-{series.replace('/', '_')}.csv")


def _download(engine: Engine, run_id: int, chunks, media_type: str, filename: str) -> StreamingResponse:
    """A streamed attachment of a run's records; ``chunks()`` makes its body once the run is known
    (an unknown run is a plain 404, before streaming starts)."""
    with new_session(engine) as session:
        crud.get_run(session, run_id)
    return StreamingResponse(chunks(), media_type=media_type,
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _csv(header: list[str], batches):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    yield out.getvalue()
    for rows in batches:
        out.seek(0)
        out.truncate()
        writer.writerows(rows)
        yield out.getvalue()


def _ndjson(batches, level: int | None):
    for rows in batches:
        if level is None:  # stored as validated JSON text: sent as it is
            yield "".join(f"{data}\n" for _, data in rows)
            continue
        out = []
        for _, data in rows:
            snap = from_json(data)
            snap["levels"] = [lv for lv in snap["levels"] if lv["level"] == level]
            out.append(to_json(snap).decode() + "\n")
        yield "".join(out)


@router.get("/{run_id}/evals", responses=errors(404, 422))
def list_evals(run_id: RunId, session: SessionDep) -> list[EvalPublic]:
    return crud.list_evals(session, run_id)


@router.get("/{run_id}/logs", responses=errors(404, 422))
def list_logs(
    run_id: RunId,
    session: SessionDep,
    after: Annotated[int, Query(ge=0, le=INT64_MAX, description="Last log line id already seen.")] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> LogsPublic:
    lines, next_after = crud.list_logs(session, run_id, after, limit)
    return LogsPublic(data=lines, next_after=next_after)


def _stream_start(
    run_id: RunId, engine: EngineDep, last_event_id: Annotated[str | None, Header()] = None
) -> crud.EventCursor:
    # Resolved before the stream starts, so an unknown run is a plain 404. Its own short
    # session: a request-scoped one would hold a read transaction open for the whole
    # stream, and on SQLite that stops WAL checkpoints.
    with new_session(engine) as session:
        start = crud.start_cursor(session, run_id)
    return crud.EventCursor.decode(last_event_id) or start


def _read_events(engine: Engine, run_id: int, cursor: crud.EventCursor):
    with new_session(engine) as session:
        return crud.read_events(session, run_id, cursor, EVENTS_PER_READ)


# One Server-Sent Event as a client parses it; ``data`` is one line of JSON.
SSE_EVENT_SCHEMA = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["snapshot", "log", "status"]},
        "id": {"type": "string", "description": "A cursor; send it back as Last-Event-ID to resume."},
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
}


@router.get(
    "/{run_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"description": "An event stream", "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}}},
        **errors(404, 422),
    },
)
async def run_events(
    run_id: RunId,
    cursor: Annotated[crud.EventCursor, Depends(_stream_start)],
    engine: EngineDep,
    settings: SettingsDep,
    notifier: NotifierDep,
) -> StreamingResponse:
    """Server-Sent Events: ``snapshot`` (the snapshot JSON), ``log`` ({id, time, line}) and
    ``status`` (the Run). A new stream starts with the run's status, then what is written
    from then on; send ``Last-Event-ID`` to resume after an event. The stream ends after
    a finished run's last event; a comment line every 15 s keeps an idle stream open."""
    stream = _event_stream(run_id, cursor, engine, notifier, settings.events_poll_seconds)
    return StreamingResponse(stream, media_type="text/event-stream", headers=_SSE_HEADERS)


_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
PING_SECONDS = 15.0


async def _event_stream(
    run_id: int, cursor: crud.EventCursor, engine: Engine, notifier: Notifier, poll_seconds: float
) -> AsyncIterator[str]:
    # Formatted by hand and sent one chunk per database read: at thousands of snapshots a
    # second, per-event framework overhead would cost more than the ingestion itself.
    # Every data payload is one line of JSON, as SSE requires.
    last_sent = time.monotonic()
    while True:
        seen = notifier.version(run_id)
        events, cursor, done = await run_in_threadpool(_read_events, engine, run_id, cursor)
        if events:
            yield "".join(f"event: {event}\nid: {event_id}\ndata: {data}\n\n" for event, event_id, data in events)
            last_sent = time.monotonic()
        elif time.monotonic() - last_sent > PING_SECONDS:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        if done:
            return
        if not events:
            await notifier.wait(run_id, seen, poll_seconds)
