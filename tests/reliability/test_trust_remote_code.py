"""``model.trust_remote_code`` runs the model repository's Python code on a worker, so it is
off unless allowed: the server answers 422 naming E2H_ALLOW_TRUST_REMOTE_CODE (on submit and
on clone), and a worker whose own environment does not allow it fails such a run at once,
without starting training. Allowed on both, the run trains.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from e2h.client import Client
from server.core.config import Settings
from server.main import create_app
from tests.reliability.conftest import cheapest_config
from tests.server.helpers import WORKER_TOKEN, LiveServer, serving
from worker.main import Worker

FIELD = "config.model.trust_remote_code"
REMOTE = {"model": {"trust_remote_code": True}}


def _client(tmp_path: Path, allow: bool) -> TestClient:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'e2h.db'}", data_dir=tmp_path,
                        worker_token=WORKER_TOKEN, allow_trust_remote_code=allow)
    return TestClient(create_app(settings))


def _refused(r) -> None:
    assert r.status_code == 422, r.text
    [error] = [e for e in r.json()["detail"] if e["field"] == FIELD]
    assert "E2H_ALLOW_TRUST_REMOTE_CODE" in error["msg"], error


def test_the_setting_is_off_by_default_and_read_from_the_environment(monkeypatch) -> None:
    monkeypatch.delenv("E2H_ALLOW_TRUST_REMOTE_CODE", raising=False)
    assert Settings().allow_trust_remote_code is False
    monkeypatch.setenv("E2H_ALLOW_TRUST_REMOTE_CODE", "1")
    assert Settings().allow_trust_remote_code is True


def test_refused_unless_the_server_allows_it(tmp_path: Path) -> None:
    with _client(tmp_path, allow=False) as client:
        _refused(client.post("/runs", json={"config": REMOTE}))
        assert client.get("/runs").json()["count"] == 0
        run = client.post("/runs", json={}).json()  # the default (False) is fine
        assert run["config"]["model"]["trust_remote_code"] is False
        # Clone cannot switch it on either, nested or dotted.
        _refused(client.post(f"/runs/{run['id']}/clone", json={"overrides": REMOTE}))
        _refused(client.post(f"/runs/{run['id']}/clone", json={"overrides": {"model.trust_remote_code": True}}))
        assert client.get("/runs").json()["count"] == 1


def test_accepted_when_the_server_allows_it(tmp_path: Path) -> None:
    with _client(tmp_path, allow=True) as client:
        r = client.post("/runs", json={"config": REMOTE})
        assert r.status_code == 201, r.text
        assert r.json()["config"]["model"]["trust_remote_code"] is True
        r = client.post(f"/runs/{r.json()['id']}/clone", json={"overrides": {"model.trust_remote_code": True}})
        assert r.status_code == 201 and r.json()["config"]["model"]["trust_remote_code"] is True


@pytest.fixture
def permissive_server(tmp_path: Path) -> Iterator[LiveServer]:
    env = {"E2H_DATABASE_URL": f"sqlite:///{tmp_path / 'e2h.db'}", "E2H_DATA_DIR": str(tmp_path),
           "E2H_WORKER_TOKEN": WORKER_TOKEN, "E2H_API_TOKEN": "", "E2H_ALLOW_TRUST_REMOTE_CODE": "1"}
    with serving(env, tmp_path / "server.log") as server:
        yield server


def _submit_and_work(server: LiveServer, work_dir: Path) -> tuple[dict, float]:
    with Client(server.url, token=WORKER_TOKEN) as api:
        run = api.submit({**cheapest_config(1), **REMOTE}, name="remote-code")
        start = time.monotonic()
        done = Worker(server.url, WORKER_TOKEN, work_dir=work_dir, burst=True, max_jobs=1, heartbeat_s=1).run()
        assert done == 1
        return api.get(run.id), time.monotonic() - start


@pytest.mark.slow
def test_a_worker_that_does_not_allow_it_fails_the_run_without_training(
    permissive_server: LiveServer, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("E2H_ALLOW_TRUST_REMOTE_CODE", raising=False)
    run, elapsed = _submit_and_work(permissive_server, tmp_path / "work")
    assert run.status == "failed", run
    assert "E2H_ALLOW_TRUST_REMOTE_CODE" in run.error and "worker" in run.error, run.error
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())  # nothing started
    assert elapsed < 10, elapsed  # no torch import, no training


@pytest.mark.slow
def test_a_worker_that_allows_it_trains_the_run(permissive_server: LiveServer, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("E2H_ALLOW_TRUST_REMOTE_CODE", "1")
    run, _ = _submit_and_work(permissive_server, tmp_path / "work")
    assert run.status == "succeeded", run
    assert run.config["model"]["trust_remote_code"] is True
