"""The worker's managed vLLM server (issue 18), with a stand-in for `trl vllm-serve` (which needs CUDA).

The worker is told it has two GPUs (``gpus=[0, 1]``); the plan puts the server on GPU 0 and
training on GPU 1. Real training with vLLM cannot run on a CPU, so these check the server's
lifecycle around it: waited for while the lease is kept, stopped on failure, on cancel and when
the worker is SIGKILLed, and a server that never gets healthy fails the run within its deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2h.test_vllm_server import _gone
from tests.server.helpers import WORKER_TOKEN
from tests.worker.conftest import wait_for
from tests.worker.test_worker import _run_in_thread, make_worker, tiny_config
from worker.settings import WorkerSettings

pytestmark = pytest.mark.slow

STANDIN = f"{sys.executable} -m tests.e2h.vllm_standin"


@pytest.fixture
def standin(tmp_path, monkeypatch):
    record = tmp_path / "standin.json"
    monkeypatch.setenv("E2H_VLLM_SERVE_COMMAND", STANDIN)
    monkeypatch.setenv("VLLM_STANDIN_RECORD", str(record))
    return record


def vllm_config(**algorithm) -> dict:
    return tiny_config(use_vllm=True, vllm_mode="server", **algorithm)


def _standin_pid(record: Path) -> int:
    return wait_for(lambda: record.is_file() and json.loads(record.read_text())["pid"], 60, "the vLLM stand-in")


def test_a_server_that_exits_fails_the_run_with_its_reason(server, api, tmp_path, standin, monkeypatch):
    monkeypatch.setenv("VLLM_STANDIN", "exit")
    run = api.submit(vllm_config())
    make_worker(server.url, tmp_path, burst=True, gpus=[0, 1]).run()
    final = api.get(run.id)
    assert final.status == "failed" and "vLLM server exited with code 3" in final.error
    record = json.loads(standin.read_text())
    assert record["cuda"] == "0" and "--port" in record["argv"] and "8000" not in record["argv"]


def test_a_server_that_never_gets_healthy_fails_within_the_deadline(server, api, tmp_path, standin, monkeypatch):
    monkeypatch.setenv("VLLM_STANDIN", "unhealthy")
    run = api.submit(vllm_config())
    settings = WorkerSettings(vllm_health_deadline_s=3)
    started = time.monotonic()
    make_worker(server.url, tmp_path, burst=True, gpus=[0, 1], settings=settings).run()
    assert time.monotonic() - started < 60
    final = api.get(run.id)
    assert final.status == "failed" and "not healthy" in final.error and "after 3 s" in final.error
    assert _gone(_standin_pid(standin))


def test_cancel_while_the_server_starts_stops_it(server, api, tmp_path, standin, monkeypatch):
    monkeypatch.setenv("VLLM_STANDIN", "unhealthy")
    run = api.submit(vllm_config())
    thread = _run_in_thread(make_worker(server.url, tmp_path, burst=True, gpus=[0, 1]))
    pid = _standin_pid(standin)
    time.sleep(6)  # longer than the 4 s lease: the worker heartbeats while it waits
    assert api.get(run.id).status == "running"
    api.cancel(run.id)
    wait_for(lambda: api.get(run.id).status == "cancelled", 60, "the run to be cancelled")
    thread.join(30)
    assert _gone(pid)


def test_a_healthy_server_gets_training_its_ports_and_is_stopped_after(server, api, tmp_path, standin, monkeypatch):
    monkeypatch.setenv("VLLM_STANDIN", "healthy")
    run = api.submit(vllm_config())
    make_worker(server.url, tmp_path, burst=True, gpus=[0, 1]).run()
    # Training itself needs vLLM and a GPU, so on a CPU it fails; it got its device and the server's port.
    final = api.get(run.id)
    assert final.status == "failed"
    port = json.loads(standin.read_text())["argv"]
    port = port[port.index("--port") + 1]
    assert _gone(_standin_pid(standin))
    log = (Path(tmp_path / "work" / f"run-{run.id}") / "train.log").read_text()
    assert "vllm" in log.lower(), log[-2000:]
    assert port != "8000"


def test_the_server_dies_with_a_sigkilled_worker(server, tmp_path, api, standin):
    run = api.submit(vllm_config())
    env = dict(os.environ, VLLM_STANDIN="unhealthy", E2H_WORKER_TOKEN=WORKER_TOKEN)
    worker = subprocess.Popen([sys.executable, "-m", "e2h.cli", "worker", "--server", server.url, "--gpus", "0,1",
                               "--work-dir", str(tmp_path / "work"), "--heartbeat", "1"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pid = _standin_pid(standin)
        wait_for(lambda: api.get(run.id).status == "running", 30, "the claim")
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        assert _gone(pid)
    finally:
        if worker.poll() is None:
            worker.kill()
