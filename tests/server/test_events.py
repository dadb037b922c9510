"""The SSE stream: snapshot, log and status events, Last-Event-ID resume, end of stream."""

from __future__ import annotations

import json
from collections.abc import Iterable

from fastapi.testclient import TestClient

from tests.server.helpers import WORKER, claim, finish, post_snapshots, snapshot, submit


def parse_sse(lines: Iterable[str]) -> list[dict]:
    """SSE wire format -> [{"event", "id", "data"}] (comments and keep-alives skipped)."""
    events, current = [], {}
    for line in lines:
        if not line:
            if "data" in current:
                events.append(current)
            current = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(":")
            current[key] = value[1:] if value.startswith(" ") else value
    return events


def stream(client: TestClient, run_id: int, last_event_id: str | None = None) -> list[dict]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    with client.stream("GET", f"/runs/{run_id}/events", headers=headers) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        return parse_sse(r.iter_lines())


def test_a_finished_runs_stream_replays_from_last_event_id_and_ends(client: TestClient) -> None:
    run = submit(client)
    claim(client)
    post_snapshots(client, run["id"], [snapshot(s) for s in range(5)])
    r = client.post(
        f"/runs/{run['id']}/logs", json={"lines": ["loading model", "step 1"]}, params={"attempt": 1}, headers=WORKER
    )
    assert r.status_code == 202, r.text
    finish(client, run["id"])

    events = stream(client, run["id"], "0.0.0")
    assert [e["event"] for e in events] == ["snapshot"] * 5 + ["log"] * 2 + ["status"]
    assert [json.loads(e["data"])["step"] for e in events[:5]] == list(range(5))
    assert json.loads(events[5]["data"])["line"] == "loading model"
    assert json.loads(events[-1]["data"])["status"] == "succeeded"
    assert len({e["id"] for e in events}) == len(events)

    # Resuming after the third snapshot gives exactly what followed it.
    resumed = stream(client, run["id"], events[2]["id"])
    assert [(e["event"], e["id"]) for e in resumed] == [(e["event"], e["id"]) for e in events[3:]]
    assert stream(client, run["id"], events[-1]["id"]) == []  # nothing after the last event

    # A new stream (no Last-Event-ID) starts now: the run's state only.
    fresh = stream(client, run["id"])
    assert [e["event"] for e in fresh] == ["status"]
    # A Last-Event-ID that is not ours is ignored rather than an error.
    assert [e["event"] for e in stream(client, run["id"], "garbage")] == ["status"]


def test_a_cancelled_queued_run_streams_its_status_and_ends(client: TestClient) -> None:
    run = submit(client)
    assert client.post(f"/runs/{run['id']}/cancel", headers={"Content-Type": "application/json"}).status_code == 200
    (event,) = stream(client, run["id"])
    assert event["event"] == "status" and json.loads(event["data"])["status"] == "cancelled"
