"""The event stream of a run: where a stream stands (its cursor) and what follows it."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from sqlalchemy import bindparam, func
from sqlalchemy import select as sa_select
from sqlmodel import Session, select

from e2h.schemas import INT64_MAX, RunPublic, RunStatus
from server.crud.state import get_run
from server.models import LogLine, Run, Snapshot

_runs, _snapshots, _logs = Run.__table__, Snapshot.__table__, LogLine.__table__


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
    done = RunStatus(status).terminal and len(snaps) < limit and len(logs) < limit
    return events, cursor, done

