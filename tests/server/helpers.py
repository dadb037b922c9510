"""Small builders shared by the server tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

REPO = Path(__file__).resolve().parents[2]
WORKER_TOKEN = "test-worker-token"
WORKER = {"Authorization": f"Bearer {WORKER_TOKEN}"}


def snapshot(step: int, k: int = 5, scheduler: str = "variance_regularized", **extra: Any) -> dict[str, Any]:
    """A valid snapshot for a K-level run (the default config has K=5)."""
    probs = [1.0 / k] * k
    levels = [
        {
            "level": i,
            "probability": probs[i],
            "count": step * (i + 1),
            "reward_mean": 0.5 if step else None,
            "reward_var": 0.25 if step else None,
            "components": {"deficit": 0.1 * i, "score": 0.2} if step else None,
        }
        for i in range(k)
    ]
    return {
        "step": step,
        "time": 1000.0 + step,
        "scheduler": scheduler,
        "levels": levels,
        "metrics": {"loss": 1.0 / (step + 1), "reward": 0.5},
        **extra,
    }


def submit(client: TestClient, **body: Any) -> dict[str, Any]:
    r = client.post("/runs", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def claim(client: TestClient, worker_id: str = "w1") -> dict[str, Any] | None:
    r = client.post("/workers/claim", json={"worker_id": worker_id, "labels": ["cpu"]}, headers=WORKER)
    if r.status_code == 204:
        return None
    assert r.status_code == 200, r.text
    return r.json()["run"]


def post_snapshots(
    client: TestClient, run_id: int, snaps: list[dict], worker_id: str | None = None, attempt: int | None = 1
):
    params = {k: v for k, v in {"worker_id": worker_id, "attempt": attempt}.items() if v is not None}
    return client.post(f"/runs/{run_id}/snapshots", json=snaps, params=params, headers=WORKER)


def finish(
    client: TestClient, run_id: int, worker_id: str = "w1", status: str = "succeeded", attempt: int = 1, **extra: Any
):
    return client.post(
        f"/runs/{run_id}/finish",
        json={"worker_id": worker_id, "attempt": attempt, "status": status, **extra},
        headers=WORKER,
    )


def server_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A live server's environment: a fresh SQLite file and data dir under ``tmp_path``, the test
    worker token, no API token; ``extra`` adds or overrides settings (``E2H_LEASE_SECONDS="4"``)."""
    return {"E2H_DATABASE_URL": f"sqlite:///{tmp_path / 'e2h.db'}", "E2H_DATA_DIR": str(tmp_path),
            "E2H_WORKER_TOKEN": WORKER_TOKEN, "E2H_API_TOKEN": "", **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """A real uvicorn running ``server.main:app`` on 127.0.0.1, ready when /healthz answers.

    ``stop()`` then ``start()`` restarts it on the same port and database (outage tests)."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.start(wait=False)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "uvicorn", "server.main:app", "--host", "127.0.0.1", "--port", str(self.port)]

    def start(self, wait: bool = True) -> None:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(),
            cwd=REPO,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"server not ready after {timeout}s:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()


@contextmanager
def serving(env: dict[str, str], log_path: Path) -> Iterator[LiveServer]:
    """A ready LiveServer for the duration of the block, stopped after it."""
    server = LiveServer(env, log_path)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def stop_process(proc: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if ``proc`` has not exited within ``timeout`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
