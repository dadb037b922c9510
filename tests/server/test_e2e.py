"""End to end on a real uvicorn (127.0.0.1): a worker's whole conversation, watched over SSE."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from server.core.config import Settings
from server.main import RequestGuard, check_listen_address
from tests.server.helpers import REPO, WORKER, LiveServer, snapshot
from tests.server.test_events import parse_sse


class Watcher(threading.Thread):
    """Reads a run's SSE stream in the background; events land on a queue."""

    def __init__(self, url: str, last_event_id: str | None = None):
        super().__init__(daemon=True)
        self.url, self.last_event_id = url, last_event_id
        self.events: queue.Queue = queue.Queue()
        self.ended = threading.Event()
        self.start()

    def run(self) -> None:
        headers = {"Last-Event-ID": self.last_event_id} if self.last_event_id else {}
        with httpx.stream("GET", self.url, headers=headers, timeout=httpx.Timeout(5, read=60)) as r:
            block: list[str] = []
            for line in r.iter_lines():
                block.append(line)
                if not line:
                    for event in parse_sse(block):
                        self.events.put(event)
                    block = []
        self.ended.set()

    def take(self, n: int, timeout: float = 20) -> list[dict]:
        deadline = time.monotonic() + timeout
        return [self.events.get(timeout=max(0.01, deadline - time.monotonic())) for _ in range(n)]


@pytest.mark.slow
def test_a_worker_run_end_to_end_over_http_and_sse(live_server: LiveServer) -> None:
    api = httpx.Client(base_url=live_server.url, timeout=10)
    config = {"scheduler": {"name": "cosine"}, "algorithm": {"max_steps": 300}}
    run = api.post("/runs", json={"config": config, "tags": ["e2e"]}).json()
    rid = run["id"]
    watcher = Watcher(f"{live_server.url}/runs/{rid}/events")
    (first,) = watcher.take(1)
    assert first["event"] == "status" and json.loads(first["data"])["status"] == "queued"

    claimed = api.post("/workers/claim", json={"worker_id": "e2e", "labels": []}, headers=WORKER).json()
    assert claimed["run"]["id"] == rid and claimed["run"]["config"]["scheduler"]["name"] == "cosine"
    assert watcher.take(1)[0]["event"] == "status"  # now running
    fence = {"worker_id": "e2e", "attempt": claimed["run"]["attempt"]}

    hb = api.post(f"/runs/{rid}/heartbeat", json={**fence, "step": 0}, headers=WORKER).json()
    assert hb["cancel_requested"] is False
    for start in range(0, 300, 100):
        r = api.post(
            f"/runs/{rid}/snapshots",
            params=fence,
            json=[snapshot(s, scheduler="cosine") for s in range(start, start + 100)],
            headers=WORKER,
        )
        assert r.status_code == 202 and r.json() == {"accepted": 100, "duplicates": 0}
    api.post(f"/runs/{rid}/logs", params=fence, json={"lines": ["step 299"]}, headers=WORKER)

    live = watcher.take(301)
    assert [json.loads(e["data"])["step"] for e in live[:300]] == list(range(300))
    assert live[300]["event"] == "log"

    # A second watcher resumes after step 149 while the run is still going.
    resumed = Watcher(f"{live_server.url}/runs/{rid}/events", last_event_id=live[149]["id"])
    again = resumed.take(151)
    assert [e["id"] for e in again] == [e["id"] for e in live[150:]]

    assert api.post(f"/runs/{rid}/cancel", headers={"Content-Type": "application/json"}).status_code == 200
    assert api.post(f"/runs/{rid}/heartbeat", json=fence, headers=WORKER).json()["cancel_requested"] is True
    done = api.post(f"/runs/{rid}/finish", json={**fence, "status": "cancelled", "output_dir": "/o"}, headers=WORKER)
    assert done.status_code == 200
    for w in (watcher, resumed):
        statuses = [json.loads(e["data"])["status"] for e in w.take(2) if e["event"] == "status"]
        assert statuses[-1] == "cancelled"
        assert w.ended.wait(10), "the stream should end once the run has finished"

    history = api.get(f"/runs/{rid}/snapshots", params={"max_points": 50}).json()
    assert len(history["steps"]) <= 50 and history["steps"][0] == 0 and history["steps"][-1] == 299
    assert api.get("/runs", params={"tag": "e2e", "status": "cancelled"}).json()["count"] == 1
    assert api.post("/workers/claim", json={"worker_id": "e2e"}).status_code == 401
    log = live_server.log_path.read_text()
    assert "Traceback" not in log and "ERROR" not in log, log


def test_the_server_never_imports_torch() -> None:
    code = (
        "import server.main, sys; assert 'torch' not in sys.modules, 'torch imported'; "
        "assert 'transformers' not in sys.modules and 'trl' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


def test_no_listening_beyond_loopback_without_a_worker_token(tmp_path: Path) -> None:
    open_settings = Settings(data_dir=tmp_path, worker_token=None, api_token=None)
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_listen_address(host, open_settings)
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.org"):
        with pytest.raises(ValueError, match="E2H_WORKER_TOKEN"):
            check_listen_address(host, open_settings)
    check_listen_address("0.0.0.0", Settings(data_dir=tmp_path, worker_token="t"))


@pytest.mark.parametrize(
    ("server_host", "loopback_only", "status"),
    [
        ("10.1.2.3", True, 403),
        ("127.0.0.1", True, 200),
        ("10.1.2.3", False, 200),
    ],
)
def test_request_guard_answers_only_loopback_connections_without_a_token(
    server_host: str, loopback_only: bool, status: int
) -> None:
    import asyncio

    sent: list[dict] = []

    async def app(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "server": (server_host, 8000), "headers": [], "method": "GET", "path": "/runs"}
    asyncio.run(RequestGuard(app, max_body_bytes=1024, loopback_only=loopback_only)(scope, receive, send))
    assert sent[0]["status"] == status
