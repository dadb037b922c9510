"""Processes the dashboard tests run on loopback: the API server and the Streamlit app."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.server.helpers import stop_process

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "dashboard" / "streamlit_app.py"
WORKER_TOKEN = "dashboard-test-worker-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen | None = None,
              log: Path | None = None, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}\n{log.read_text() if log else ''}")
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what}: not ready after {timeout} s\n{log.read_text() if log else ''}")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


class Process:
    """A child process with its output in a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path):
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(args, cwd=REPO, env={**os.environ, **env}, stdout=self._out,
                                     stderr=subprocess.STDOUT)

    def stop(self) -> None:
        stop_process(self.proc)
        self._out.close()


class ApiServer(Process):
    """``uvicorn server.main:app`` on 127.0.0.1 with its own SQLite database."""

    def __init__(self, tmp: Path, port: int | None = None, api_token: str = ""):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            "E2H_DATA_DIR": str(tmp),
            "E2H_DATABASE_URL": f"sqlite:///{tmp / 'e2h.db'}",
            "E2H_WORKER_TOKEN": WORKER_TOKEN,
            "E2H_API_TOKEN": api_token,
        }
        super().__init__([sys.executable, "-m", "uvicorn", "server.main:app", "--host", "127.0.0.1",
                          "--port", str(self.port)], env, tmp / "server.log")
        wait_for(lambda: _answers(f"{self.url}/healthz"), 60, "API server", self.proc, self.log)


class Dashboard(Process):
    """The dashboard as ``e2h dashboard`` starts it (dashboard.launch.command)."""

    def __init__(self, tmp: Path, server_url: str):
        from dashboard.launch import command

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(command(server_url, self.port), {}, tmp / "streamlit.log")
        wait_for(lambda: _answers(f"{self.url}/_stcore/health"), 60, "dashboard", self.proc, self.log)
