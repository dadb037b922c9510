"""`e2h up` as a user runs it: three services, a run through the client, a clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import psutil
import pytest

from e2h.client import Client
from tests.server.helpers import free_port
from tests.worker.conftest import wait_for

pytestmark = pytest.mark.slow


def test_up_serves_trains_and_stops_cleanly(tmp_path):
    server_port, dashboard_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("E2H_WORKER_TOKEN", "E2H_API_TOKEN")}
    cmd = [sys.executable, "-m", "e2h.cli", "up", "--data-dir", str(tmp_path / "data"),
           "--server-port", str(server_port), "--dashboard-port", str(dashboard_port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{server_port}"

        def healthy():
            try:
                return (httpx.get(f"{url}/healthz").status_code == 200 and
                        httpx.get(f"http://127.0.0.1:{dashboard_port}/_stcore/health").status_code == 200)
            except httpx.TransportError:
                return False

        wait_for(healthy, 120, "server and dashboard health")
        with Client(url) as client:
            run = client.submit({"algorithm": {"max_steps": 2, "per_device_train_batch_size": 8, "num_generations": 4,
                                               "eval_steps": 100},
                                 "task": {"train_size_per_level": 16, "test_size_per_level": 2},
                                 "scheduler": {"name": "cosine"}})
            final = client.wait(run.id, timeout=300, poll=0.5)
        assert final.status == "succeeded", final.error
        assert (tmp_path / "data" / "worker_token").is_file()
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 3
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, output
        assert "stopped" in output
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"left running: {[p.cmdline() for p in alive]}"
    finally:
        if proc.poll() is None:
            proc.kill()
