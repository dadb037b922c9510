"""POST /runs and the operator's launch settings (issue 18): the server can check only a name's
shape (``algorithm.distributed=config:NAME``, report_to wandb); whether the worker provides the
config or allows W&B is the worker's call, at plan time (tests/e2h/test_plan_operator.py)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.server.helpers import submit

FIELD = "config.algorithm.distributed"


@pytest.mark.parametrize("value", ["config:../../etc/passwd", "config:sub/name", "config:name.yaml",
                                   "/etc/accelerate.yaml", "config:", "config:" + "x" * 65, "zero4"])
def test_a_distributed_value_with_path_characters_is_a_422_naming_the_field(client: TestClient, value) -> None:
    r = client.post("/runs", json={"config": {"algorithm": {"distributed": value}}, "name": "bad"})
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]
    assert [e["field"] for e in errors] == [FIELD], errors
    assert "config:NAME" in errors[0]["msg"] or "at most 80" in errors[0]["msg"], errors
    assert client.get("/runs").json()["count"] == 0


def test_an_operator_config_name_and_wandb_are_accepted_for_the_worker_to_decide(client: TestClient) -> None:
    run = submit(client, config={"algorithm": {"distributed": "config:zero3-offload", "num_processes": 2,
                                               "report_to": ["wandb"]}})
    assert run["config"]["algorithm"]["distributed"] == "config:zero3-offload"
    assert run["config"]["algorithm"]["report_to"] == ["wandb"]


def test_the_schema_tells_clients_the_shape(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    prop = schema["AlgorithmConfig"]["properties"]["distributed"]
    assert prop["pattern"].startswith("^(ddp|deepspeed_zero2|deepspeed_zero3|fsdp|config:")
    assert "wandb" in str(schema["AlgorithmConfig"]["properties"]["report_to"])
