"""The full, unbucketed history export: GET /runs/{id}/snapshots.ndjson, and one series of it as
CSV, GET /runs/{id}/snapshots.csv (issue 22)."""

from __future__ import annotations

import csv
import io
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


def _csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_one_level_series_is_a_column_per_level_for_every_step(client: TestClient) -> None:
    run_id = _run_with_history(client)
    r = client.get(f"/runs/{run_id}/snapshots.csv", params={"series": "count"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert f"run-{run_id}-count.csv" in r.headers["content-disposition"]
    rows = _csv_rows(r.text)
    assert rows[0] == ["step", "level_0", "level_1", "level_2", "level_3", "level_4"]
    assert len(rows) == 1 + STEPS  # unbucketed, across batches
    assert rows[2101] == ["2100", *(str(float(2100 * (i + 1))) for i in range(5))]
    # A component, None (an empty cell) where a snapshot has none; a metric is one column.
    deficit = _csv_rows(client.get(f"/runs/{run_id}/snapshots.csv", params={"series": "components.deficit"}).text)
    assert deficit[1] == ["0", "", "", "", "", ""]
    assert [float(v) for v in deficit[5][1:]] == [0.1 * i for i in range(5)]
    loss = _csv_rows(client.get(f"/runs/{run_id}/snapshots.csv",
                                params={"series": "metrics.loss", "after_step": STEPS - 3}).text)
    assert loss == [["step", "loss"], [str(STEPS - 2), str(1.0 / (STEPS - 1))], [str(STEPS - 1), str(1.0 / STEPS)]]


def test_series_levels_are_matched_by_number_not_position(client: TestClient) -> None:
    run = submit(client, config={"algorithm": {"max_steps": 10}})
    claim(client)
    shuffled = snapshot(1)
    shuffled["levels"].reverse()
    assert post_snapshots(client, run["id"], [snapshot(0), shuffled]).status_code == 202
    rows = _csv_rows(client.get(f"/runs/{run['id']}/snapshots.csv", params={"series": "count"}).text)
    assert rows[2] == ["1", "1.0", "2.0", "3.0", "4.0", "5.0"]


def test_series_of_a_run_without_snapshots_is_a_header(client: TestClient) -> None:
    run = submit(client)
    assert _csv_rows(client.get(f"/runs/{run['id']}/snapshots.csv", params={"series": "metrics.loss"}).text) == [
        ["step", "loss"]]
    assert _csv_rows(client.get(f"/runs/{run['id']}/snapshots.csv", params={"series": "probability"}).text) == [
        ["step"]]


def test_bad_series_names_are_refused(client: TestClient) -> None:
    assert client.get("/runs/999/snapshots.csv", params={"series": "probability"}).status_code == 404
    run_id = _run_with_history(client, 3)
    for bad in ["", "levels", "metrics.", "components.a'b", "metrics.x\"y", "probability.x"]:
        r = client.get(f"/runs/{run_id}/snapshots.csv", params={"series": bad})
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "series", (bad, r.text)
    assert client.get(f"/runs/{run_id}/snapshots.csv").status_code == 422  # series is required


def test_the_client_reads_one_series_as_a_frame(live_server) -> None:
    with Client(live_server.url, token=WORKER_TOKEN) as api:
        run = api.submit({"algorithm": {"max_steps": 30}})
        api.claim("w1")
        api.post_snapshots(run.id, [snapshot(s) for s in range(30)], "w1", 1)
        probability = api.series_frame(run.id, "probability")
        assert list(probability.index) == list(range(30))
        assert list(probability.columns) == [f"level_{i}" for i in range(5)]
        assert (probability == 0.2).all().all()
        reward = api.series_frame(run.id, "reward_mean", after_step=27)
        assert list(reward.index) == [28, 29] and (reward == 0.5).all().all()
        assert api.series_frame(run.id, "components.score")["level_0"].isna().tolist()[:2] == [True, False]
