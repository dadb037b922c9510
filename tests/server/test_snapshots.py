"""Snapshot ingestion (validation, idempotency, limits), bucketed history, evals and logs."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from e2h.schemas import SNAPSHOT_LIST, RunCreate
from server import crud
from server.core.db import new_session
from server.crud.history import _bucket_firsts
from server.models import Snapshot
from tests.server.helpers import WORKER, claim, post_snapshots, snapshot, submit

MAX_STEPS = 2000
FENCE = {"worker_id": "w1", "attempt": 1}


@pytest.fixture
def run_id(client: TestClient) -> int:
    run = submit(client, config={"algorithm": {"max_steps": MAX_STEPS}})
    claim(client)
    return run["id"]


def test_snapshots_are_stored_once_per_step(client: TestClient, run_id: int) -> None:
    r = post_snapshots(client, run_id, [snapshot(s) for s in range(10)], worker_id="w1", attempt=1)
    assert r.status_code == 202 and r.json() == {"accepted": 10, "duplicates": 0}
    # A retried batch overlapping the last one, with a repeat inside the batch itself.
    r = post_snapshots(client, run_id, [snapshot(s) for s in (8, 9, 10, 11, 11)])
    assert r.json() == {"accepted": 2, "duplicates": 3}
    assert post_snapshots(client, run_id, []).json() == {"accepted": 0, "duplicates": 0}
    series = client.get(f"/runs/{run_id}/snapshots").json()
    assert series["steps"] == list(range(12)) and series["total"] == 12

    run = client.get(f"/runs/{run_id}").json()
    assert (run["step"], run["snapshot_count"]) == (11, 12) and run["probabilities"] == [0.2] * 5
    assert run["metrics"] == {"loss": 1 / 12, "reward": 0.5}
    # A step arriving late (a retried old batch) does not replace the latest values.
    latest = snapshot(50)
    latest["levels"][0]["probability"], latest["levels"][1]["probability"] = 0.4, 0.0
    assert post_snapshots(client, run_id, [latest]).status_code == 202
    assert post_snapshots(client, run_id, [snapshot(40)]).status_code == 202
    run = client.get(f"/runs/{run_id}").json()
    assert (run["step"], run["snapshot_count"]) == (50, 14) and run["probabilities"] == [0.4, 0.0, 0.2, 0.2, 0.2]


def _bad(mutate) -> dict:
    s = snapshot(1)
    mutate(s)
    return s


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (_bad(lambda s: s["levels"].pop()), "1.levels"),  # 4 levels for a 5-level run
        (_bad(lambda s: s["levels"][0].update(probability=0.5)), "1.levels"),  # sums to 1.3
        (_bad(lambda s: s["levels"][0].update(probability=-0.1)), "1.levels.0.probability"),
        (_bad(lambda s: s["levels"][1].update(level=0)), "1.levels"),  # a level twice
        (_bad(lambda s: s.pop("step")), "1.step"),
        (_bad(lambda s: s.update(step=-1)), "1.step"),
        (_bad(lambda s: s["metrics"].update(loss="high")), "1.metrics.loss"),
        (_bad(lambda s: s.update(extra=1)), "1.extra"),
        (_bad(lambda s: s.update(step=MAX_STEPS + 1)), "1.step"),  # past algorithm.max_steps
        (_bad(lambda s: s["levels"][4].update(level=5)), "1.levels.4.level"),  # the run has levels 0..4
        (_bad(lambda s: s["metrics"].update({f"m{i}": 0.0 for i in range(300)})), "1.metrics"),  # > 256 keys
        (_bad(lambda s: s["metrics"].update({"x" * 201: 0.0})), "1.metrics"),  # a 201-character name
        (_bad(lambda s: s["levels"][0].update(components={f"c{i}": 0.0 for i in range(300)})), "1.levels.0.components"),
    ],
)
def test_an_invalid_snapshot_rejects_the_whole_batch(client: TestClient, run_id: int, bad: dict, field: str) -> None:
    r = post_snapshots(client, run_id, [snapshot(0), bad, snapshot(2)])
    assert r.status_code == 422, r.text
    assert field in [e["field"] for e in r.json()["detail"]], r.json()
    assert client.get(f"/runs/{run_id}/snapshots").json()["steps"] == []  # nothing partially written


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_rejected_and_null_is_fine(client: TestClient, run_id: int, token: str) -> None:
    body = json.dumps([snapshot(1)]).replace('"reward_var": 0.25', f'"reward_var": {token}', 1)
    headers = {**WORKER, "Content-Type": "application/json"}
    r = client.post(f"/runs/{run_id}/snapshots", content=body, params=FENCE, headers=headers)
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "0.levels.0.reward_var"
    s = snapshot(1)
    s["levels"][0]["reward_var"] = None
    s["metrics"]["kl"] = None
    assert post_snapshots(client, run_id, [s]).json()["accepted"] == 1


def test_probabilities_may_be_off_by_at_most_1e_6(client: TestClient, run_id: int) -> None:
    ok, off = snapshot(1), snapshot(2)
    ok["levels"][0]["probability"] += 9e-7
    off["levels"][0]["probability"] += 2e-6
    assert post_snapshots(client, run_id, [ok]).status_code == 202
    assert post_snapshots(client, run_id, [off]).status_code == 422


def test_more_than_1000_snapshots_in_one_request_is_413(client: TestClient, run_id: int) -> None:
    r = post_snapshots(client, run_id, [snapshot(s) for s in range(1001)])
    assert r.status_code == 413 and "at most 1000" in r.json()["detail"]
    assert post_snapshots(client, run_id, [snapshot(s) for s in range(1000)]).json()["accepted"] == 1000


def test_snapshots_only_while_running(client: TestClient) -> None:
    run = submit(client)
    assert post_snapshots(client, run["id"], [snapshot(0)]).status_code == 409  # queued
    assert post_snapshots(client, 999, [snapshot(0)]).status_code == 404


def _fill(engine: Engine, steps: list[int]) -> int:
    """A running run with snapshots at ``steps``, written straight through crud (fast)."""
    with new_session(engine) as s:
        run_id = crud.create_run(s, RunCreate(config={"algorithm": {"max_steps": max(*steps, 1000)}})).id
        crud.claim_run(s, "w", [], 600)
        snaps = SNAPSHOT_LIST.validate_python([snapshot(step) for step in steps])
        for i in range(0, len(snaps), 1000):
            crud.add_snapshots(s, run_id, snaps[i : i + 1000], crud.Fence("w", 1), 1000)
    return run_id


@pytest.mark.parametrize(
    ("steps", "max_points"),
    [
        (list(range(5000)), 100),
        (list(range(0, 30000, 3)), 7),
        ([0, 1, 2, 3, 500, 501, 9999], 3),  # gaps: buckets are ranges of step numbers
        (list(range(50)), 2),
        (list(range(10)), 10),  # fits: everything comes back
        (list(range(12_000)), 11_000),  # above MAX_LISTED_STEPS: the kept steps are chosen in SQL
    ],
)
def test_history_is_bucketed_keeping_first_and_last(engine: Engine, steps: list[int], max_points: int) -> None:
    run_id = _fill(engine, steps)
    with new_session(engine) as s:
        got = crud.snapshot_series(s, run_id, None, max_points)
    kept = got["steps"]
    assert got["total"] == len(steps)
    assert len(kept) <= max_points and kept[0] == steps[0] and kept[-1] == steps[-1]
    assert kept == sorted(set(kept)) and set(kept) <= set(steps)
    if len(steps) <= max_points:
        assert kept == steps
    else:  # spread over the whole range: no two kept steps closer than a bucket allows twice over
        span = (steps[-1] - steps[0] + 1) / (max_points - 1)
        assert all(b - a <= 2 * span + 1 for a, b in zip(kept, kept[1:], strict=False)), kept
    for level in got["levels"]:
        assert len(level["probability"]) == len(level["count"]) == len(kept)
        assert level["count"] == [step * (level["level"] + 1) for step in kept]  # the snapshots' own values
    with new_session(engine) as s:  # the arithmetic shortcut for dense runs agrees with SQL's grouping
        where = [Snapshot.run_id == run_id]
        lo, hi, buckets = steps[0], steps[-1], max_points - 1
        assert _bucket_firsts(s, where, lo, hi, len(steps), buckets) == _bucket_firsts(
            s, where, lo, hi, None, buckets
        )


def test_history_is_columnar_and_incremental(client: TestClient, run_id: int) -> None:
    post_snapshots(client, run_id, [snapshot(s) for s in range(3)])
    s3 = snapshot(3)
    s3["levels"][2]["components"] = {"vrex": 0.7}
    s3["metrics"] = {"kl": 0.01}
    post_snapshots(client, run_id, [s3])
    got = client.get(f"/runs/{run_id}/snapshots").json()
    assert got["steps"] == [0, 1, 2, 3] and got["time"] == [1000.0, 1001.0, 1002.0, 1003.0]
    level2 = got["levels"][2]
    assert level2["level"] == 2 and level2["probability"] == [0.2] * 4
    assert level2["reward_mean"] == [None, 0.5, 0.5, 0.5]
    assert level2["components"] == {
        "deficit": [None, 0.2, 0.2, None],
        "score": [None, 0.2, 0.2, None],
        "vrex": [None, None, None, 0.7],
    }
    assert got["metrics"] == {
        "loss": [1.0, 0.5, 1 / 3, None],
        "reward": [0.5, 0.5, 0.5, None],
        "kl": [None, None, None, 0.01],
    }
    newer = client.get(f"/runs/{run_id}/snapshots", params={"after_step": 1}).json()
    assert newer["steps"] == [2, 3] and newer["total"] == 2
    assert client.get(f"/runs/{run_id}/snapshots", params={"after_step": 3}).json()["steps"] == []
    assert client.get(f"/runs/{run_id}/snapshots", params={"max_points": 1}).status_code == 422
    assert client.get(f"/runs/{run_id}/snapshots", params={"max_points": 100_001}).status_code == 422


def test_evals_are_idempotent_per_name_and_step(client: TestClient, run_id: int) -> None:
    results = {"overall": {"accuracy": 0.5, "support": 10}, "level_0": {"accuracy": 1.0, "support": 2}}
    url = f"/runs/{run_id}/evals"
    assert client.post(url, json={"step": 50, "results": results}, params=FENCE, headers=WORKER).json() == {
        "accepted": 1,
        "duplicates": 0,
    }
    batch = [
        {"step": 50, "results": results},
        {"step": 100, "results": results},
        {"step": 100, "name": "test", "results": {}},
    ]
    assert client.post(url, json=batch, params=FENCE, headers=WORKER).json() == {"accepted": 2, "duplicates": 1}
    got = client.get(url).json()
    assert [(e["name"], e["step"]) for e in got] == [("eval", 50), ("eval", 100), ("test", 100)]
    assert got[0]["results"] == results and got[0]["created_at"].endswith("Z")
    assert client.post(url, json={"results": {}}, params=FENCE, headers=WORKER).status_code == 422
    # Without the attempt the write could be a stale worker's: refused, nothing stored.
    r = client.post(url, json={"step": 150, "results": results}, params={"worker_id": "w1"}, headers=WORKER)
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "attempt"
    assert len(client.get(url).json()) == 3


def test_logs_page_by_id(client: TestClient, run_id: int) -> None:
    url = f"/runs/{run_id}/logs"
    lines = {"lines": [f"line {i}" for i in range(5)]}
    assert client.post(url, json=lines, params=FENCE, headers=WORKER).json()["accepted"] == 5
    first = client.get(url, params={"limit": 3}).json()
    assert [x["line"] for x in first["data"]] == ["line 0", "line 1", "line 2"]
    rest = client.get(url, params={"after": first["next_after"]}).json()
    assert [x["line"] for x in rest["data"]] == ["line 3", "line 4"]
    assert client.get(url, params={"after": rest["next_after"]}).json() == {
        "data": [],
        "next_after": rest["next_after"],
    }
    assert client.post(url, json={"lines": ["x"] * 1001}, params=FENCE, headers=WORKER).status_code == 413
    assert client.post(url, json={"lines": ["x"]}, headers=WORKER).status_code == 422  # no attempt
