"""The full, unbucketed history export: GET /runs/{id}/snapshots.ndjson (issue 22)."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from e2h.client import Client
from server import crud
from tests.server.helpers import WORKER_TOKEN, claim, post_snapshots, snapshot, submit

STEPS = 2500  # more than one export batch (crud.history.EXPORT_BATCH = 2000)


def _run_with_history(client: TestClient, steps: int = STEPS) -> int:
    run = submit(client, config={"algorithm": {"max_steps": steps}})
    claim(client)
    for start in range(0, steps, 1000):
        r = post_snapshots(client, run["id"], [snapshot(s) for s in range(start, min(start + 1000, steps))])
        assert r.status_code == 202, r.text
    return run["id"]


def test_every_stored_snapshot_streams_in_step_order(client: TestClient) -> None:
    run_id = _run_with_history(client)
    r = client.get(f"/runs/{run_id}/snapshots.ndjson")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    assert f"run-{run_id}-snapshots.ndjson" in r.headers["content-disposition"]
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert [s["step"] for s in lines] == list(range(STEPS))  # unbucketed, across batches
    assert lines[7] == json.loads(json.dumps(snapshot(7)))  # as stored
    later = client.get(f"/runs/{run_id}/snapshots.ndjson", params={"after_step": STEPS - 3}).text.splitlines()
    assert [json.loads(line)["step"] for line in later] == [STEPS - 2, STEPS - 1]
    one = [json.loads(line) for line in client.get(f"/runs/{run_id}/snapshots.ndjson", params={"level": 3}).text
           .splitlines()]
    assert len(one) == STEPS and all([lv["level"] for lv in s["levels"]] == [3] for s in one)
    assert one[10]["metrics"] == snapshot(10)["metrics"]  # a level's lines keep the step's metrics


def test_unknown_run_and_bad_parameters_are_refused(client: TestClient) -> None:
    assert client.get("/runs/999/snapshots.ndjson").status_code == 404
    run_id = _run_with_history(client, 3)
    r = client.get(f"/runs/{run_id}/snapshots.ndjson", params={"level": -1})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "level"


def test_the_export_reads_one_bounded_batch_at_a_time(client: TestClient, engine) -> None:
    run_id = _run_with_history(client)
    sizes = [len(rows) for rows in crud.snapshot_export(engine, run_id, batch=1000)]
    assert sizes == [1000, 1000, 500]


def test_the_client_builds_a_tidy_frame_from_the_stream(live_server) -> None:
    with Client(live_server.url, token=WORKER_TOKEN) as api:
        run = api.submit({"algorithm": {"max_steps": 30}})
        api.claim("w1")
        api.post_snapshots(run.id, [snapshot(s) for s in range(30)], "w1", 1)
        frame = api.snapshots_frame(run.id)
        assert len(frame) == 30 * 5 and list(frame["step"].unique()) == list(range(30))
        assert {"probability", "reward_mean", "deficit", "loss"} <= set(frame.columns)
        assert set(api.snapshots_frame(run.id, level=2)["level"]) == {2}
