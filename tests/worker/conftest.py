"""A real server on loopback (uvicorn, SQLite file) that can be stopped and restarted on the same port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from e2h.client import Client
from tests.server.helpers import REPO, WORKER_TOKEN, free_port


class RestartableServer:
    def __init__(self, tmp_path: Path, **settings: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "E2H_DATABASE_URL": f"sqlite:///{tmp_path / 'e2h.db'}",
            "E2H_DATA_DIR": str(tmp_path),
            "E2H_WORKER_TOKEN": WORKER_TOKEN,
            **settings,
        }
        self.env.pop("E2H_API_TOKEN", None)
        self.log_path = tmp_path / "server.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "server.main:app", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"server not ready:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RestartableServer]:
    s = RestartableServer(tmp_path, E2H_LEASE_SECONDS="4", E2H_REAPER_INTERVAL_SECONDS="0.5")
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def api(server: RestartableServer) -> Iterator[Client]:
    with Client(server.url, token=WORKER_TOKEN) as c:
        yield c


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
