"""Sampled completions: ingestion (idempotent, fenced, limits), bounded storage and the read filters."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func
from sqlmodel import select

from e2h.schemas import COMPLETION_TEXT_CHARS
from server.core.config import Settings
from server.core.db import new_session
from server.main import create_app
from server.models import Completion
from tests.server.helpers import WORKER, claim, finish, submit

FENCE = {"worker_id": "w1", "attempt": 1}


def completion(step: int, level: int = 0, index: int = 0, **extra: Any) -> dict[str, Any]:
    return {"step": step, "level": level, "index": index, "prompt": f"What is {step}+{level}?",
            "completion": f"<answer>{step + level}</answer> #{index}", "reward": 1.0 - 0.25 * index,
            "rewards": {"arithmetic_reward": 1.0 - 0.25 * index}, "advantage": 0.5, **extra}


def sample(step: int, levels: int = 5, per_level: int = 2) -> list[dict[str, Any]]:
    return [completion(step, lv, i) for lv in range(levels) for i in range(per_level)]


def post(client: TestClient, run_id: int, body: Any, params: dict | None = None):
    return client.post(f"/runs/{run_id}/completions", json=body, params=FENCE if params is None else params,
                       headers=WORKER)


@pytest.fixture
def run_id(client: TestClient) -> int:
    run = submit(client, config={"algorithm": {"max_steps": 50}})
    claim(client)
    return run["id"]


def test_completions_are_stored_once_and_read_back_by_step_and_level(client: TestClient, run_id: int) -> None:
    r = post(client, run_id, sample(1) + sample(2))
    assert r.status_code == 202 and r.json() == {"accepted": 20, "duplicates": 0}
    # A retried batch (the worker resends what the server did not acknowledge), with a repeat inside it.
    r = post(client, run_id, sample(2) + [completion(3), completion(3)])
    assert r.json() == {"accepted": 1, "duplicates": 11}

    latest = client.get(f"/runs/{run_id}/completions").json()
    assert latest["step"] == 3 and latest["steps"] == [1, 2, 3]
    assert [(c["level"], c["index"]) for c in latest["data"]] == [(0, 0)]
    assert latest["data"][0] == {**completion(3), "truncated": False}

    step1_level2 = client.get(f"/runs/{run_id}/completions", params={"step": 1, "level": 2}).json()
    assert step1_level2["step"] == 1
    assert [(c["step"], c["level"], c["index"]) for c in step1_level2["data"]] == [(1, 2, 0), (1, 2, 1)]
    assert step1_level2["data"][1]["reward"] == 0.75
    # Of level 3, the latest step is 2 (step 3 sampled only level 0).
    level3 = client.get(f"/runs/{run_id}/completions", params={"level": 3}).json()
    assert level3["step"] == 2 and level3["steps"] == [1, 2]
    step2 = client.get(f"/runs/{run_id}/completions", params={"step": 2, "limit": 3}).json()
    assert [(c["level"], c["index"]) for c in step2["data"]] == [(0, 0), (0, 1), (1, 0)]
    assert client.get(f"/runs/{run_id}/completions", params={"step": 40}).json()["data"] == []


def test_a_run_without_completions_and_an_unknown_run(client: TestClient, run_id: int) -> None:
    assert client.get(f"/runs/{run_id}/completions").json() == {"step": None, "steps": [], "data": []}
    r = client.get("/runs/999/completions")
    assert r.status_code == 404 and "run 999 not found" in r.json()["detail"]
    assert post(client, 999, [completion(1)]).status_code == 404


@pytest.mark.parametrize(("params", "field"), [
    ({"level": -1}, "level"), ({"level": 256}, "level"), ({"step": -1}, "step"),
    ({"limit": 0}, "limit"), ({"limit": 1001}, "limit"), ({"step": "latest"}, "step"),
])
def test_bad_read_filters_are_422_naming_the_parameter(client: TestClient, run_id: int, params, field) -> None:
    r = client.get(f"/runs/{run_id}/completions", params=params)
    assert r.status_code == 422 and [e["field"] for e in r.json()["detail"]] == [field], r.text


def test_only_the_worker_holding_the_run_may_post(client: TestClient, run_id: int) -> None:
    assert post(client, run_id, [completion(1)], {"worker_id": "w2", "attempt": 1}).status_code == 409
    assert post(client, run_id, [completion(1)], {"worker_id": "w1", "attempt": 2}).status_code == 409
    r = post(client, run_id, [completion(1)], {"worker_id": "w1"})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "attempt"
    no_token = client.post(f"/runs/{run_id}/completions", json=[completion(1)], params=FENCE)
    assert no_token.status_code == 401
    assert finish(client, run_id).status_code == 200
    r = post(client, run_id, [completion(1)])
    assert r.status_code == 409 and "no longer holds its lease" in r.json()["detail"]
    assert client.get(f"/runs/{run_id}/completions").json()["steps"] == []


@pytest.mark.parametrize(("bad", "field"), [
    ({"prompt": "x" * (COMPLETION_TEXT_CHARS + 1)}, "0.prompt"),
    ({"completion": "x" * (COMPLETION_TEXT_CHARS + 1)}, "0.completion"),
    ({"rewards": {f"r{i}": 0.0 for i in range(17)}}, "0.rewards"),
    ({"rewards": {"": 0.0}}, "0.rewards."),
    ({"reward": float("nan")}, "0.reward"),
    ({"level": 5}, "0.level"),  # the run has 5 levels, 0..4
    ({"step": 51}, "0.step"),  # past algorithm.max_steps=50
    ({"index": -1}, "0.index"),
    ({"surprise": 1}, "0.surprise"),
])
def test_bad_completions_are_422_naming_the_field(client: TestClient, run_id: int, bad, field) -> None:
    body = [{**completion(1), **bad}]
    # NaN is not JSON: sent as the text Python writes for it, which the server refuses.
    r = client.post(f"/runs/{run_id}/completions", content=json.dumps(body), params=FENCE,
                    headers={**WORKER, "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    fields = [e["field"] for e in r.json()["detail"]]
    assert any(f.startswith(field) for f in fields), fields
    assert client.get(f"/runs/{run_id}/completions").json()["steps"] == []


def test_a_body_that_is_not_a_list_is_422(client: TestClient, run_id: int) -> None:
    r = post(client, run_id, completion(1))
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == ""


def test_batches_over_the_ceiling_are_413(settings: Settings) -> None:
    with TestClient(create_app(settings.model_copy(update={"max_batch": 10}))) as client:
        run = submit(client)
        claim(client)
        r = post(client, run["id"], sample(1, per_level=3))  # 15 > E2H_MAX_BATCH=10
        assert r.status_code == 413 and "at most 10 per request (E2H_MAX_BATCH)" in r.json()["detail"]
        assert post(client, run["id"], sample(1, per_level=2)).status_code == 202


def test_a_run_keeps_the_completions_of_its_latest_steps(settings: Settings) -> None:
    with TestClient(create_app(settings.model_copy(update={"max_completion_steps": 3}))) as client:
        run = submit(client, config={"algorithm": {"max_steps": 50}})
        claim(client)
        for step in range(1, 6):
            assert post(client, run["id"], sample(step, levels=2)).status_code == 202
        kept = client.get(f"/runs/{run['id']}/completions").json()
        assert kept["steps"] == [3, 4, 5] and len(kept["data"]) == 4
        # A late replay of a dropped step comes back only as long as it is among the latest.
        assert post(client, run["id"], sample(1, levels=2)).json()["accepted"] == 4
        assert client.get(f"/runs/{run['id']}/completions").json()["steps"] == [3, 4, 5]


def test_deleting_a_run_deletes_its_completions(client: TestClient, run_id: int, engine: Engine) -> None:
    other = submit(client)
    claim(client, "w2")
    assert post(client, run_id, sample(1)).status_code == 202
    assert post(client, other["id"], sample(1), {"worker_id": "w2", "attempt": 1}).status_code == 202

    def stored() -> dict[int, int]:
        with new_session(engine) as session:
            return dict(session.exec(select(Completion.run_id, func.count()).group_by(Completion.run_id)).all())

    assert stored() == {run_id: 10, other["id"]: 10}
    assert finish(client, run_id).status_code == 200
    assert client.delete(f"/runs/{run_id}", headers={"Content-Type": "application/json"}).status_code == 204
    assert client.get(f"/runs/{run_id}/completions").status_code == 404
    assert stored() == {other["id"]: 10}  # the database cascaded, to that run's rows only


def test_nul_in_model_output_is_kept_visibly_and_refused_in_a_reward_name(client: TestClient, run_id: int) -> None:
    # PostgreSQL text cannot hold NUL: a model's output keeps its place, shown as U+FFFD.
    assert post(client, run_id, [completion(1, completion="a\x00b", prompt="p\x00")]).status_code == 202
    [stored] = client.get(f"/runs/{run_id}/completions").json()["data"]
    assert (stored["completion"], stored["prompt"]) == ("a\ufffdb", "p\ufffd")
    r = post(client, run_id, [completion(2, rewards={"r\x00": 1.0})])
    assert r.status_code == 422 and r.json()["detail"][0]["field"].startswith("0.rewards"), r.text
