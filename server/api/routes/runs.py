"""Public run endpoints: submit, list, inspect, cancel, clone, delete, history and live events."""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.sse import EventSourceResponse, ServerSentEvent
from sqlalchemy import Engine

from server import crud
from server.api.deps import ApiAuth, EngineDep, NotifierDep, SessionDep, SettingsDep
from server.core.db import new_session
from server.core.errors import Invalid, error_entry
from server.models import (
    EvalPublic,
    LogsPublic,
    RunClone,
    RunCreate,
    RunPublic,
    RunsPublic,
    RunStatus,
    SnapshotSeries,
)

router = APIRouter(prefix="/runs", tags=["runs"])

EVENTS_PER_READ = 500


def _statuses(status: str | None) -> list[str] | None:
    if not status:
        return None
    wanted = [s.strip() for s in status.split(",") if s.strip()]
    known = {s.value for s in RunStatus}
    if unknown := [s for s in wanted if s not in known]:
        raise Invalid([error_entry(["query", "status"], f"unknown status {unknown}; use {sorted(known)}")])
    return wanted


@router.post("", status_code=status.HTTP_201_CREATED, dependencies=[ApiAuth])
def create_run(body: RunCreate, session: SessionDep, notifier: NotifierDep) -> RunPublic:
    run = crud.create_run(session, body)
    notifier.notify(run.id)
    return run


@router.get("")
def list_runs(
    session: SessionDep,
    status: Annotated[str | None, Query(description="One status or several, comma-separated.")] = None,
    tag: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> RunsPublic:
    runs, count = crud.list_runs(session, _statuses(status), tag, limit, offset)
    return RunsPublic(data=runs, count=count)


@router.get("/{run_id}")
def get_run(run_id: int, session: SessionDep) -> RunPublic:
    return crud.get_run(session, run_id)


@router.post("/{run_id}/cancel", dependencies=[ApiAuth])
def cancel_run(run_id: int, session: SessionDep, notifier: NotifierDep) -> RunPublic:
    run = crud.cancel_run(session, run_id)
    notifier.notify(run_id)
    return run


@router.post("/{run_id}/clone", status_code=status.HTTP_201_CREATED, dependencies=[ApiAuth])
def clone_run(run_id: int, session: SessionDep, body: RunClone | None = None) -> RunPublic:
    return crud.clone_run(session, run_id, body or RunClone())


@router.delete("/{run_id}", status_code=status.HTTP_204_NO_CONTENT, dependencies=[ApiAuth])
def delete_run(run_id: int, session: SessionDep, notifier: NotifierDep) -> Response:
    crud.delete_run(session, run_id)
    notifier.notify(run_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{run_id}/snapshots")
def get_snapshots(
    run_id: int,
    session: SessionDep,
    after_step: Annotated[int | None, Query(description="Only steps after this one (incremental polling).")] = None,
    max_points: Annotated[int, Query(ge=2, le=100_000, description="Most steps returned (bucketed).")] = 1000,
) -> SnapshotSeries:
    return crud.snapshot_series(session, run_id, after_step, max_points)


@router.get("/{run_id}/evals")
def list_evals(run_id: int, session: SessionDep) -> list[EvalPublic]:
    return crud.list_evals(session, run_id)


@router.get("/{run_id}/logs")
def list_logs(
    run_id: int,
    session: SessionDep,
    after: Annotated[int, Query(ge=0, description="Last log line id already seen.")] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> LogsPublic:
    lines, next_after = crud.list_logs(session, run_id, after, limit)
    return LogsPublic(data=lines, next_after=next_after)


def _stream_start(
    run_id: int, session: SessionDep, last_event_id: Annotated[str | None, Header()] = None
) -> crud.EventCursor:
    # Resolved before the stream starts, so an unknown run is a plain 404.
    return crud.EventCursor.decode(last_event_id) or crud.start_cursor(session, run_id)


def _read_events(engine: Engine, run_id: int, cursor: crud.EventCursor):
    with new_session(engine) as session:
        return crud.read_events(session, run_id, cursor, EVENTS_PER_READ)


@router.get("/{run_id}/events", response_class=EventSourceResponse)
async def run_events(
    run_id: int,
    cursor: Annotated[crud.EventCursor, Depends(_stream_start)],
    engine: EngineDep,
    settings: SettingsDep,
    notifier: NotifierDep,
) -> AsyncIterable[ServerSentEvent]:
    """Server-Sent Events: ``snapshot`` (the snapshot JSON), ``log`` ({id, time, line}) and
    ``status`` (the Run). A new stream starts with the run's status, then what is written
    from then on; send ``Last-Event-ID`` to resume after an event. The stream ends after
    a finished run's last event."""
    while True:
        seen = notifier.version(run_id)
        events, cursor, done = await run_in_threadpool(_read_events, engine, run_id, cursor)
        for event, event_id, data in events:
            yield ServerSentEvent(raw_data=data, event=event, id=event_id)
        if done:
            return
        if not events:
            await notifier.wait(run_id, seen, settings.events_poll_seconds)
