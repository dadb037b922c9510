"""What a submitter may put in a run config, tried as an attacker would against a real server
(uvicorn on 127.0.0.1, SQLite file): grpo_kwargs that would run remote code, upload with the
worker's hub account, send traffic elsewhere or name worker files; free-form JSON nested
hundreds of levels deep or megabytes large; resource fields above the server's ceilings; and
a run list that many large runs would make tens of MB. Each is refused with a 422 naming the
field and the reason, nothing is stored, and the list stays small and keeps working.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from e2h.config import MAX_JSON_BYTES, MAX_JSON_DEPTH
from tests.server.helpers import WORKER_TOKEN, LiveServer, serving

CEILINGS = {"algorithm.max_completion_length": 256, "algorithm.num_processes": 2, "model.lora.r": 64}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("config-limits")
    env = {"E2H_DATABASE_URL": f"sqlite:///{tmp / 'e2h.db'}", "E2H_DATA_DIR": str(tmp),
           "E2H_WORKER_TOKEN": WORKER_TOKEN, "E2H_API_TOKEN": "", "E2H_RUN_CEILINGS": json.dumps(CEILINGS)}
    with serving(env, tmp / "server.log") as s:
        yield s


@pytest.fixture
def api(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def _count(api: httpx.Client) -> int:
    r = api.get("/runs")
    assert r.status_code == 200, r.text
    return r.json()["count"]


def _refused(r: httpx.Response, field: str, *words: str) -> str:
    assert r.status_code == 422, r.text
    errors = [e for e in r.json()["detail"] if e["field"] == field]
    assert errors, r.json()
    for word in words:
        assert word in errors[0]["msg"], errors[0]
    return errors[0]["msg"]


GRPO = "config.algorithm.grpo_kwargs"
# (what, grpo_kwargs, the field named, words the reason must hold)
GRPO_ATTACKS = [
    ("remote code", {"trust_remote_code": True}, "trust_remote_code", ["Python code on the worker"]),
    ("remote code via model kwargs", {"model_init_kwargs": {"trust_remote_code": True, "revision": "evil"}},
     "model_init_kwargs", ["loads the model", "model.trust_remote_code"]),
    ("upload with the worker's hub login", {"push_to_hub": True, "hub_token": "hf_attacker_token",
                                            "hub_model_id": "attacker/stolen"},
     "push_to_hub", ["Hugging Face account", "also refused: hub_token, hub_model_id"]),
    ("a stored hub token", {"hub_token": "hf_attacker_token"}, "hub_token", ["is a secret"]),
    ("generation traffic elsewhere", {"vllm_server_base_url": "http://203.0.113.7:8000"},
     "vllm_server_base_url", ["another host"]),
    ("write worker files", {"output_dir": "/home/worker/.ssh"}, "output_dir", ["file path on the worker"]),
    ("read worker files", {"deepspeed": "/etc/passwd"}, "deepspeed", ["file path on the worker"]),
    ("metrics to a tracker", {"report_to": ["wandb"]}, "report_to", ["outside service"]),
    ("a first-class field", {"steps_per_generation": 4}, "steps_per_generation",
     ["set algorithm.steps_per_generation instead"]),
    ("lengths past the ceiling", {"generation_kwargs": {"max_new_tokens": 100_000}}, "generation_kwargs",
     ["ceilings"]),
]


@pytest.mark.parametrize("what,kwargs,key,words", GRPO_ATTACKS, ids=[a[0] for a in GRPO_ATTACKS])
def test_grpo_kwargs_outside_the_allowlist_are_refused_naming_the_key(api: httpx.Client, what, kwargs, key,
                                                                       words) -> None:
    before = _count(api)
    r = api.post("/runs", json={"config": {"algorithm": {"grpo_kwargs": kwargs}}})
    _refused(r, f"{GRPO}.{key}", *words)
    assert "hf_attacker_token" not in r.text  # a refused secret is not echoed either
    # Clone cannot add it to an accepted run.
    run = api.post("/runs", json={"config": {"algorithm": {"grpo_kwargs": {"loss_type": "dr_grpo"}}}})
    assert run.status_code == 201, run.text
    _refused(api.post(f"/runs/{run.json()['id']}/clone", json={"overrides": {"algorithm.grpo_kwargs": kwargs}}),
             f"{GRPO}.{key}", *words)
    assert _count(api) == before + 1
    assert "hf_attacker_token" not in api.get("/runs", params={"limit": 500}).text


def test_allowlisted_grpo_kwargs_are_accepted_with_their_values_checked(api: httpx.Client) -> None:
    kwargs = {"loss_type": "dapo", "epsilon_high": 0.28, "scale_rewards": "none", "top_p": 0.9, "top_k": 20,
              "mask_truncated_completions": True, "weight_decay": 0.01, "lr_scheduler_type": "cosine"}
    r = api.post("/runs", json={"config": {"algorithm": {"grpo_kwargs": kwargs}}})
    assert r.status_code == 201, r.text
    assert api.get(f"/runs/{r.json()['id']}").json()["config"]["algorithm"]["grpo_kwargs"] == kwargs
    _refused(api.post("/runs", json={"config": {"algorithm": {"grpo_kwargs": {"top_p": 7}}}}), f"{GRPO}.top_p",
             "less than or equal to 1")


def _nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize("field", ["task.options", "scheduler.params", "algorithm.grpo_kwargs"])
def test_json_hundreds_of_levels_deep_is_refused_and_the_list_keeps_working(api: httpx.Client, field) -> None:
    before = _count(api)
    section, name = field.split(".")
    body = f'{{"config": {{"{section}": {{"{name}": {_nested(300)}}}}}}}'
    r = api.post("/runs", content=body, headers={"Content-Type": "application/json"})
    _refused(r, f"config.{field}", f"nested more than {MAX_JSON_DEPTH} levels deep")
    # Deeper than the JSON parser goes: refused before validation, never a 500.
    body = f'{{"config": {{"{section}": {{"{name}": {_nested(5000)}}}}}}}'
    r = api.post("/runs", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 422) and "detail" in r.json(), r.text
    assert _count(api) == before
    assert api.get("/healthz").status_code == 200


@pytest.mark.parametrize("field", ["task.options", "scheduler.params", "algorithm.grpo_kwargs"])
def test_oversize_free_form_json_is_refused(api: httpx.Client, field) -> None:
    before = _count(api)
    section, name = field.split(".")
    big = {f"k{i}": "v" * 1000 for i in range(1000)}  # 1 MB: far below the body limit, far above the field's
    r = api.post("/runs", json={"config": {section: {name: big}}})
    _refused(r, f"config.{field}", f"above the limit of {MAX_JSON_BYTES} bytes")
    run = api.post("/runs", json={}).json()
    _refused(api.post(f"/runs/{run['id']}/clone", json={"overrides": big}), "overrides", "bytes")
    assert _count(api) == before + 1


# (field, value over this server's ceiling, the ceiling)
OVER_CEILING = [("algorithm.max_completion_length", 257, 256), ("algorithm.num_processes", 4, 2),
                ("model.lora.r", 128, 64), ("algorithm.max_steps", 200_000, 100_000)]


@pytest.mark.parametrize("field,value,limit", OVER_CEILING, ids=[c[0] for c in OVER_CEILING])
def test_resource_fields_over_the_server_ceiling_are_refused(api: httpx.Client, field, value, limit) -> None:
    before = _count(api)
    section, *rest = field.split(".")
    config: dict = {section: {}}
    node = config[section]
    for part in rest[:-1]:
        node = node.setdefault(part, {})
    node[rest[-1]] = value
    msg = _refused(api.post("/runs", json={"config": config}), f"config.{field}", f"{value}",
                   f"ceiling of {limit}", f"set it to at most {limit}", "E2H_RUN_CEILINGS")
    assert msg.startswith(field)
    run = api.post("/runs", json={}).json()
    _refused(api.post(f"/runs/{run['id']}/clone", json={"overrides": {field: value}}), f"config.{field}",
             f"ceiling of {limit}")
    assert _count(api) == before + 1
    assert api.get("/limits").json()["ceilings"][field] == limit


def test_the_list_returns_summaries_and_stays_small_with_many_large_runs(api: httpx.Client) -> None:
    # Each run as large as the limits allow: 15 KB of task options (a long prompt template, an
    # option the task's options model accepts) and 32 tags.
    padding = {"user_template": "{question} " + "x" * (MAX_JSON_BYTES - 1024)}
    runs = 120
    for i in range(runs):
        r = api.post("/runs", json={"name": f"big-{i}", "tags": [f"t{j}" for j in range(32)],
                                    "config": {"task": {"options": padding}}})
        assert r.status_code == 201, r.text
    started = time.monotonic()
    r = api.get("/runs", params={"limit": 500})
    elapsed = time.monotonic() - started
    assert r.status_code == 200
    items = r.json()["data"]
    assert len(items) >= runs and all("config" not in item for item in items)
    big = next(item for item in items if item["name"] == f"big-{runs - 1}")
    assert (big["model"], big["task"], big["scheduler"]) == ("builtin:tiny", "arithmetic", "variance_regularized")
    # With configs the page would be 120 x 15 KB = 1.8 MB; summaries are well under 1 KB each.
    assert len(r.content) < 1024 * len(items), len(r.content)
    assert elapsed < 5.0, elapsed
    assert api.get(f"/runs/{big['id']}").json()["config"]["task"]["options"] == padding


def test_the_server_log_shows_no_tracebacks(server: LiveServer) -> None:
    """Every refusal above was a 4xx chosen by the server, not an exception it survived."""
    log = Path(server.log_path).read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]
