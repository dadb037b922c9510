"""A real server on loopback (uvicorn, SQLite file) that can be stopped and restarted on the same port."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.helpers import LiveServer, server_env, serving


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    env = server_env(tmp_path, E2H_LEASE_SECONDS="4", E2H_REAPER_INTERVAL_SECONDS="0.5")
    with serving(env, tmp_path / "server.log") as s:
        yield s


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
