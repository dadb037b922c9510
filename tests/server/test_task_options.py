"""Task options through the API: GET /tasks gives each task's options schema, and POST /runs (and a
clone's overrides) check task.options against the chosen task's model: a 422 naming
``config.task.options.<name>`` with the fix, nothing stored, never a 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from e2h.tasks import TASKS
from tests.server.helpers import submit

DATASET = {"name": "dataset", "train_levels": [0]}

# (task section, the field named, what its message says)
BAD_OPTIONS = [
    ({"name": "countdown", "options": {"rules": 5}}, "rules", "Input should be 'e2h' or 'seed'"),
    ({"name": "countdown", "options": {"max_target": "1000"}}, "max_target", "valid integer"),
    ({"name": "countdown", "options": {"min_number": True}}, "min_number", "valid integer"),
    ({"name": "countdown", "options": {"max_number": 50, "max_target": 20}}, "max_target",
     "must be >= max_number (50), got 20"),
    ({"name": "arithmetic", "options": {"bogus": 1}}, "bogus",
     "unknown option for task 'arithmetic'; options: levels, heldout_levels"),
    ({"name": "arithmetic", "options": {"user_template": ["{question}"]}}, "user_template", "valid string"),
    ({"name": "coding", "options": {"memory_mb": 8}}, "memory_mb", "greater than or equal to 64"),
    ({"name": "coding", "options": {"timeout_s": 0}}, "timeout_s", "greater than 0"),
    ({"name": "coding", "options": {"network_namespace": "none"}}, "network_namespace", "'auto', 'off' or 'require'"),
    ({"name": "countdown", "options": {"levels": [2, 3]}}, "levels", "set task.train_levels instead"),
    ({"name": "blocksworld", "options": {"format_reward": 2}}, "format_reward", "set task.format_reward instead"),
    ({**DATASET, "options": {}}, "path", "the dataset task needs path=..."),
    ({**DATASET, "options": {"path": "x", "scorer": "chess"}}, "scorer", "must be one of ['aqua', 'arithmetic'"),
    ({**DATASET, "options": {"path": "x", "recipe": "svamp"}}, "recipe", "Input should be 'math', 'gsm8k' or 'aqua'"),
    ({**DATASET, "options": {"path": "x", "data_files": {"train": 5}}}, "data_files", "must be a path, a list of"),
]


@pytest.mark.parametrize(("task", "option", "needle"), BAD_OPTIONS, ids=[f"{t['name']}.{o}" for t, o, _ in BAD_OPTIONS])
def test_a_bad_option_is_a_422_naming_task_options_and_the_option(client: TestClient, task, option, needle) -> None:
    r = client.post("/runs", json={"config": {"task": task}})
    assert r.status_code == 422, r.text
    errors = {e["field"]: e["msg"].removeprefix("Value error, ") for e in r.json()["detail"]}
    field = f"config.task.options.{option}"
    assert field in errors, errors
    assert errors[field].startswith(f"task.options.{option}: ") and needle in errors[field], errors[field]
    assert client.get("/runs").json()["count"] == 0


def test_every_problem_is_reported_at_once_and_a_clone_is_checked_too(client: TestClient) -> None:
    r = client.post("/runs", json={"config": {"task": {"name": "countdown", "options": {
        "rules": "strict", "long_prompts": "cut", "bogus": 1}}}})
    assert r.status_code == 422, r.text
    fields = sorted(e["field"] for e in r.json()["detail"])
    assert fields == [f"config.task.options.{name}" for name in ("bogus", "long_prompts", "rules")]

    run = submit(client, config={"task": {"name": "countdown", "options": {"rules": "seed", "max_target": 500}}})
    assert run["config"]["task"]["options"] == {"rules": "seed", "max_target": 500}  # stored as given
    r = client.post(f"/runs/{run['id']}/clone", json={"overrides": {"task.options.max_number": 0}})
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["detail"]] == ["config.task.options.max_number"], r.text
    assert client.get("/runs").json()["count"] == 1


def test_get_tasks_gives_each_options_schema(client: TestClient) -> None:
    described = {t["name"]: t for t in client.get("/tasks").json()}
    assert set(described) == set(TASKS)
    for name, cls in TASKS.items():
        schema = described[name]["options_schema"]
        assert schema == cls.options_schema()
        assert sorted(schema["properties"]) == described[name]["options"] == sorted(cls.options())
        assert schema["additionalProperties"] is False  # an unknown option is refused, as POST /runs does
    countdown = described["countdown"]["options_schema"]["properties"]
    assert countdown["max_target"]["default"] == 1000 and countdown["rules"]["enum"] == ["e2h", "seed"]
