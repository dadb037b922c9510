"""Public run endpoints: submit, list, get, cancel, clone, delete; errors; tokens; meta."""

from __future__ import annotations

from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from e2h.schedulers import SCHEDULERS
from server.core.config import Settings
from server.main import create_app
from tests.server.helpers import WORKER, claim, finish, post_snapshots, snapshot, submit

# Writes without a body still say they are JSON (server/main.py refuses form-like posts).
JSON = {"Content-Type": "application/json"}


def test_submit_an_empty_config_gets_every_default(client: TestClient) -> None:
    run = submit(client, tags=["smoke", "smoke", "cpu"], priority=3)
    assert run["status"] == "queued"
    assert run["name"] == "variance_regularized arithmetic tiny 200 steps"  # RunConfig.display_name
    assert run["config"]["task"]["train_levels"] == [0, 1, 2, 3, 4]  # filled in from the task
    assert run["config"]["scheduler"]["name"] == "variance_regularized"
    assert (run["num_levels"], run["max_steps"], run["step"], run["attempt"]) == (5, 200, 0, 1)
    assert run["tags"] == ["smoke", "cpu"] and run["priority"] == 3
    assert run["probabilities"] is None and run["worker_id"] is None
    created = datetime.fromisoformat(run["created_at"])
    assert run["created_at"].endswith("Z") and created.utcoffset().total_seconds() == 0
    assert client.get(f"/runs/{run['id']}").json() == run


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"scheduler": {"params": {"min_prob": 0.3}}}, "config.scheduler.params.min_prob"),  # K * min_prob > 1
        ({"scheduler": {"params": {"temperature": -1}}}, "config.scheduler.params.temperature"),
        ({"scheduler": {"name": "nope"}}, "config.scheduler.name"),
        ({"algorithm": {"max_steps": 0}}, "config.algorithm.max_steps"),
        ({"model": {"nmae_or_path": "x"}}, "config.model.nmae_or_path"),
        ({"task": {"name": "arithmetic", "train_levels": [0, 99]}}, "config.task.train_levels"),
    ],
)
def test_an_invalid_config_is_a_422_naming_the_field_and_writes_nothing(
    client: TestClient, config: dict, field: str
) -> None:
    r = client.post("/runs", json={"config": config, "name": "bad"})
    assert r.status_code == 422, r.text
    assert field in [e["field"] for e in r.json()["detail"]], r.json()
    assert client.get("/runs").json()["count"] == 0


def test_list_filters_by_status_and_tag_with_paging(client: TestClient) -> None:
    ids = [submit(client, name=f"r{i}", tags=["even" if i % 2 == 0 else "odd"])["id"] for i in range(6)]
    running = claim(client)  # the oldest
    assert running["id"] == ids[0]

    page = client.get("/runs", params={"limit": 2, "offset": 1}).json()
    assert page["count"] == 6 and [r["id"] for r in page["data"]] == [ids[4], ids[3]]  # newest first
    assert [r["id"] for r in client.get("/runs", params={"tag": "even"}).json()["data"]] == [ids[4], ids[2], ids[0]]
    assert client.get("/runs", params={"status": "running"}).json()["count"] == 1
    assert client.get("/runs", params={"status": "queued,running", "tag": "odd"}).json()["count"] == 3
    r = client.get("/runs", params={"status": "done"})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "status"
    assert client.get("/runs", params={"limit": 0}).status_code == 422


def test_unknown_runs_are_404_with_a_detail(client: TestClient) -> None:
    for method, path in [
        ("GET", "/runs/999"),
        ("POST", "/runs/999/cancel"),
        ("POST", "/runs/999/clone"),
        ("DELETE", "/runs/999"),
        ("GET", "/runs/999/snapshots"),
        ("GET", "/runs/999/events"),
        ("GET", "/runs/999/evals"),
        ("GET", "/runs/999/logs"),
    ]:
        r = client.request(method, path, headers=None if method == "GET" else JSON)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json() == {"detail": "run 999 not found"}
    r = client.post("/runs/999/heartbeat", json={"worker_id": "w1", "attempt": 1}, headers=WORKER)
    assert r.status_code == 404


def test_cancel_queued_now_running_on_request_finished_409(client: TestClient) -> None:
    queued = submit(client)
    r = client.post(f"/runs/{queued['id']}/cancel", headers=JSON)
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["finished_at"]
    assert client.post(f"/runs/{queued['id']}/cancel", headers=JSON).status_code == 409

    running = submit(client)
    claim(client)
    r = client.post(f"/runs/{running['id']}/cancel", headers=JSON)
    assert r.status_code == 200 and r.json()["status"] == "running" and r.json()["cancel_requested"]
    assert client.post(f"/runs/{running['id']}/cancel", headers=JSON).status_code == 200  # asking again is fine
    hb = client.post(f"/runs/{running['id']}/heartbeat", json={"worker_id": "w1", "attempt": 1}, headers=WORKER).json()
    assert hb["cancel_requested"] is True
    assert finish(client, running["id"], status="cancelled").json()["status"] == "cancelled"
    r = client.post(f"/runs/{running['id']}/cancel", headers=JSON)
    assert r.status_code == 409 and "already cancelled" in r.json()["detail"]


def test_delete_only_finished_runs_and_everything_of_theirs(client: TestClient) -> None:
    run = submit(client)
    assert client.delete(f"/runs/{run['id']}", headers=JSON).status_code == 409  # queued
    claim(client)
    assert client.delete(f"/runs/{run['id']}", headers=JSON).status_code == 409  # running
    assert post_snapshots(client, run["id"], [snapshot(s) for s in range(5)]).status_code == 202
    client.post(f"/runs/{run['id']}/logs", json={"lines": ["hello"]}, headers=WORKER)
    client.post(f"/runs/{run['id']}/evals", json={"step": 4, "results": {"overall": {}}}, headers=WORKER)
    finish(client, run["id"])
    r = client.delete(f"/runs/{run['id']}", headers=JSON)
    assert r.status_code == 204 and r.content == b""
    assert client.get(f"/runs/{run['id']}").status_code == 404
    assert client.get("/runs", params={"tag": "x"}).json()["count"] == 0
    # The snapshots went with it: a new run gets a clean history.
    again = submit(client)
    assert client.get(f"/runs/{again['id']}/snapshots").json()["steps"] == []


def test_clone_applies_nested_and_dotted_overrides(client: TestClient) -> None:
    src = submit(client, name="base", priority=2, tags=["a"])
    r = client.post(
        f"/runs/{src['id']}/clone",
        json={"overrides": {"scheduler.params.min_prob": 0.05, "algorithm": {"max_steps": 500}}},
    )
    assert r.status_code == 201, r.text
    clone = r.json()
    assert clone["id"] != src["id"] and clone["name"] == "base (clone)" and clone["status"] == "queued"
    assert (clone["priority"], clone["tags"], clone["max_steps"]) == (2, ["a"], 500)
    assert clone["config"]["scheduler"]["params"] == {"min_prob": 0.05}
    assert clone["config"]["algorithm"]["learning_rate"] == src["config"]["algorithm"]["learning_rate"]

    # Switching task or scheduler drops the old one's levels and params.
    other = client.post(
        f"/runs/{src['id']}/clone", json={"overrides": {"task.name": "countdown", "scheduler": {"name": "cosine"}}}
    ).json()
    assert other["config"]["task"]["train_levels"] == [2, 3, 4, 5] and other["num_levels"] == 4
    assert other["config"]["scheduler"] == {"name": "cosine", "params": {}}

    r = client.post(f"/runs/{src['id']}/clone", json={"overrides": {"scheduler.params.min_prob": 0.5}})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "config.scheduler.params.min_prob"
    assert client.post(f"/runs/{src['id']}/clone", headers=JSON).status_code == 201  # no body: a plain copy
    assert client.get("/runs").json()["count"] == 4


def test_worker_endpoints_need_the_worker_token(client: TestClient) -> None:
    run = submit(client)
    body = {"worker_id": "w1"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dGVzdA=="}):
        r = client.post("/workers/claim", json=body, headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", r.text
        assert client.post(f"/runs/{run['id']}/snapshots", json=[], headers=headers).status_code == 401
        assert client.post(f"/runs/{run['id']}/finish", json=body, headers=headers).status_code == 401
    assert client.get(f"/runs/{run['id']}").json()["status"] == "queued"


def test_api_token_guards_every_other_write_when_set(settings: Settings) -> None:
    settings = settings.model_copy(update={"api_token": SecretStr("api-secret")})
    with TestClient(create_app(settings)) as c:
        assert c.post("/runs", json={}).status_code == 401
        api = {"Authorization": "Bearer api-secret"}
        run = c.post("/runs", json={}, headers=api).json()
        assert c.post(f"/runs/{run['id']}/cancel", headers=JSON).status_code == 401
        assert c.post(f"/runs/{run['id']}/clone", headers=JSON).status_code == 401
        assert c.delete(f"/runs/{run['id']}", headers=JSON).status_code == 401
        assert c.post(f"/runs/{run['id']}/cancel", headers=WORKER).status_code == 401  # not the worker's
        assert c.get("/runs").status_code == 200 and c.get(f"/runs/{run['id']}").status_code == 200
        assert c.post(f"/runs/{run['id']}/cancel", headers=api).json()["status"] == "cancelled"


def test_bodies_over_the_byte_limit_are_413(settings: Settings) -> None:
    settings = settings.model_copy(update={"max_body_bytes": 4096})
    with TestClient(create_app(settings)) as c:
        r = c.post("/runs", json={"name": "x" * 5000})
        assert r.status_code == 413 and "detail" in r.json()
        assert c.get("/runs").json()["count"] == 0


def test_meta_endpoints_describe_what_the_form_needs(client: TestClient) -> None:
    schedulers = client.get("/schedulers").json()
    assert [s["name"] for s in schedulers] == list(SCHEDULERS)
    vrex = next(s for s in schedulers if s["name"] == "variance_regularized")
    assert vrex["params_schema"]["properties"]["min_prob"]["default"] == 0.1 and vrex["description"]

    tasks = {t["name"]: t for t in client.get("/tasks").json()}
    assert tasks["countdown"]["levels"] == [2, 3, 4, 5] and tasks["countdown"]["heldout_levels"] == [6]
    assert tasks["blocksworld"]["max_reward"] == 3.0

    presets = client.get("/presets").json()
    assert set(presets) == {"model", "task", "algorithm", "scheduler"}
    assert presets["task"]["countdown2345"]["task"]["name"] == "countdown"

    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["database"] in {"sqlite", "postgresql"}
    assert client.get("/docs").status_code == 200
    openapi = client.get("/openapi.json").json()
    assert "/runs/{run_id}/events" in openapi["paths"] and "RunConfig" in openapi["components"]["schemas"]


def test_chunked_bodies_over_the_byte_limit_are_413_too(settings: Settings) -> None:
    settings = settings.model_copy(update={"max_body_bytes": 4096})
    with TestClient(create_app(settings)) as c:
        chunks = iter([b'{"name": "', b"x" * 3000, b"x" * 3000, b'"}'])  # no Content-Length: streamed
        r = c.post("/runs", content=chunks, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "over the limit" in r.json()["detail"]


# -- what a submitter may put in a config (issue 16) ------------------------------------------


def test_the_list_holds_summaries_and_a_run_its_config(client: TestClient) -> None:
    run = submit(client, name="s", tags=["t"], config={"task": {"name": "countdown"}, "scheduler": {"name": "sec"}})
    claim(client)
    assert finish(client, run["id"], status="failed", error="ValueError: boom\n  at line 2\n" + "x" * 10_000)
    item = client.get("/runs").json()["data"][0]
    assert "config" not in item and "output_dir" not in item and "metrics" not in item
    assert (item["model"], item["task"], item["scheduler"]) == ("builtin:tiny", "countdown", "sec")
    assert item["error"] == "ValueError: boom" and item["status"] == "failed" and item["tags"] == ["t"]
    assert {"id", "name", "step", "max_steps", "attempt", "worker_id", "created_at", "started_at"} <= set(item)
    full = client.get(f"/runs/{run['id']}").json()
    assert full["config"]["task"]["name"] == "countdown" and full["error"].endswith("x" * 10_000)


def test_rows_stored_before_the_limits_are_listed_and_readable(client: TestClient, engine) -> None:
    """Rows an older server stored: a config that no longer validates, one nested too deep to
    serialise, one that is not even an object. The list shows what it can; nothing breaks."""
    from sqlmodel import Session

    from server.models import Run

    deep: dict = {}
    for _ in range(300):
        deep = {"a": deep}
    legacy = {"model": {"name_or_path": "m"}, "task": {"name": "arithmetic"},
              "algorithm": {"grpo_kwargs": {"push_to_hub": True, "hub_token": "hf_secret"}}}
    configs = [legacy, {"task": {"name": "arithmetic", "options": deep}}, [], {"model": 5}]
    with Session(engine) as session:
        rows = [Run(name=f"old{i}", config=c, num_levels=5, max_steps=10) for i, c in enumerate(configs)]
        session.add_all(rows)
        session.commit()
        ids = [r.id for r in rows]
    submit(client, name="new")
    listing = client.get("/runs")
    assert listing.status_code == 200, listing.text
    items = {r["name"]: r for r in listing.json()["data"]}
    assert set(items) == {"old0", "old1", "old2", "old3", "new"}
    assert (items["old0"]["model"], items["old0"]["task"]) == ("m", "arithmetic")
    assert items["old2"]["task"] is None and items["old3"]["model"] is None
    old = client.get(f"/runs/{ids[0]}").json()
    assert old["config"]["algorithm"]["grpo_kwargs"]["hub_token"].startswith("[redacted")
    assert "hf_secret" not in client.get(f"/runs/{ids[0]}").text
    assert "nested more than" in client.get(f"/runs/{ids[1]}").json()["config"]["unreadable"]
    r = client.post(f"/runs/{ids[0]}/clone", json={})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "config.algorithm.grpo_kwargs.push_to_hub"


def test_resource_ceilings_are_the_servers_and_apply_to_clones(settings: Settings) -> None:
    settings = settings.model_copy(update={"run_ceilings": {**settings.run_ceilings,
                                                            "algorithm.max_completion_length": 64}})
    with TestClient(create_app(settings)) as c:
        at = c.post("/runs", json={"config": {"algorithm": {"max_completion_length": 64}}})
        assert at.status_code == 201, at.text
        r = c.post("/runs", json={"config": {"algorithm": {"max_completion_length": 65}}})
        assert r.status_code == 422
        [error] = r.json()["detail"]
        assert error["field"] == "config.algorithm.max_completion_length"
        assert "ceiling of 64; set it to at most 64" in error["msg"] and "E2H_RUN_CEILINGS" in error["msg"]
        r = c.post(f"/runs/{at.json()['id']}/clone", json={"overrides": {"algorithm.max_completion_length": 65}})
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "config.algorithm.max_completion_length"
        assert c.get("/runs").json()["count"] == 1
        limits = c.get("/limits").json()
        assert limits["ceilings"]["algorithm.max_completion_length"] == 64
        assert "loss_type" in limits["grpo_kwargs"] and "push_to_hub" not in limits["grpo_kwargs"]


def test_ceilings_come_from_the_environment_merged_with_the_defaults(monkeypatch) -> None:
    from pydantic import ValidationError

    from e2h.config import DEFAULT_CEILINGS

    monkeypatch.setenv("E2H_RUN_CEILINGS", '{"algorithm.num_processes": 2}')
    assert Settings().run_ceilings == {**DEFAULT_CEILINGS, "algorithm.num_processes": 2}
    monkeypatch.setenv("E2H_RUN_CEILINGS", '{"algorithm.nonsense": 2}')
    with pytest.raises(ValidationError, match="unknown fields"):
        Settings()


def test_clone_overrides_are_bounded_free_form_json(client: TestClient) -> None:
    run = submit(client)
    deep: dict = {"x": 1}
    for _ in range(300):
        deep = {"a": deep}
    r = client.post(f"/runs/{run['id']}/clone", json={"overrides": deep})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "overrides", r.text
    r = client.post(f"/runs/{run['id']}/clone", json={"overrides": {"task.options": {"k": "v" * 20_000}}})
    assert r.status_code == 422 and "bytes" in r.json()["detail"][0]["msg"]
    assert client.get("/runs").json()["count"] == 1
