"""Input limits: every bounded input one past its bound is refused with 413 or 422 and a
message naming the bound, and just at the bound it is accepted. A 50 MB body sent to a
real uvicorn gets 413 from its headers alone while /healthz keeps answering, and the
server does not buffer it.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from fastapi.testclient import TestClient

from server.core.config import Settings
from server.main import create_app
from tests.server.helpers import WORKER, WORKER_TOKEN, LiveServer, snapshot

MAX_BATCH = 50
MAX_BODY = 256 * 1024
HOLDER = "limits-worker"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'e2h.db'}", data_dir=tmp_path,
                        worker_token=WORKER_TOKEN, max_batch=MAX_BATCH, max_body_bytes=MAX_BODY)
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def held_run(client: TestClient) -> int:
    run = client.post("/runs", json={"config": {"algorithm": {"max_steps": 1000}}}).json()
    r = client.post("/workers/claim", json={"worker_id": HOLDER}, headers=WORKER)
    assert r.status_code == 200 and r.json()["run"]["id"] == run["id"]
    return run["id"]


def _one_error(r: httpx.Response, field: str, *words: str) -> None:
    assert r.status_code == 422, r.text
    errors = [e for e in r.json()["detail"] if e["field"] == field]
    assert errors, r.text
    for word in words:
        assert word in errors[0]["msg"], errors[0]


# (what, body at the bound, body one past it, field, words the message must hold)
RUN_LIMITS = [
    ("name 200 chars", {"name": "n" * 200}, {"name": "n" * 201}, "name", ["200 characters"]),
    ("tag 64 chars", {"tags": ["t" * 64]}, {"tags": ["t" * 65]}, "tags.0", ["64 characters"]),
    ("32 tags", {"tags": [f"t{i}" for i in range(32)]}, {"tags": [f"t{i}" for i in range(33)]}, "tags",
     ["32 items"]),
    ("model path 500 chars", {"config": {"model": {"name_or_path": "m" * 500}}},
     {"config": {"model": {"name_or_path": "m" * 501}}}, "config.model.name_or_path", ["500 characters"]),
    ("64 train levels", None, {"config": {"task": {"name": "dataset", "options": {"path": "x"},
                                                  "train_levels": list(range(65))}}},
     "config.task.train_levels", ["64 items"]),
    ("priority", {"priority": 1_000_000}, {"priority": 1_000_001}, "priority", ["1000000"]),
]


@pytest.mark.parametrize("what,ok,over,field,words", RUN_LIMITS, ids=[x[0] for x in RUN_LIMITS])
def test_run_inputs_at_and_past_their_bound(client: TestClient, what, ok, over, field, words) -> None:
    if ok is not None:
        r = client.post("/runs", json=ok)
        # A model path of 500 chars validates; it only fails later, when the worker loads it.
        assert r.status_code == 201, r.text
    _one_error(client.post("/runs", json=over), field, *words)


def test_clone_tags_are_bounded_too(client: TestClient) -> None:
    run = client.post("/runs", json={}).json()
    _one_error(client.post(f"/runs/{run['id']}/clone", json={"tags": ["x"] * 33}), "tags", "32 items")
    _one_error(client.post(f"/runs/{run['id']}/clone", json={"name": "n" * 201}), "name", "200 characters")


WORKER_LIMITS: list[tuple[str, str, Any, Any, str, list[str]]] = [
    ("worker id 200 chars", "/workers/claim", {"worker_id": "w" * 200}, {"worker_id": "w" * 201}, "worker_id",
     ["200 characters"]),
    ("32 labels", "/workers/claim", {"worker_id": "w", "labels": ["l"] * 32},
     {"worker_id": "w", "labels": ["l"] * 33}, "labels", ["32 items"]),
    ("output dir 4096 chars", "/runs/{id}/heartbeat", {"worker_id": HOLDER, "attempt": 1, "output_dir": "d" * 4096},
     {"worker_id": HOLDER, "attempt": 1, "output_dir": "d" * 4097}, "output_dir", ["4096 characters"]),
    ("log line 20000 chars", "/runs/{id}/logs?attempt=1&worker_id=" + HOLDER, {"lines": ["l" * 20_000]},
     {"lines": ["l" * 20_001]}, "lines.0", ["20000 characters"]),
    ("eval name 64 chars", "/runs/{id}/evals?attempt=1&worker_id=" + HOLDER,
     {"step": 1, "name": "e" * 64, "results": {}},
     {"step": 1, "name": "e" * 65, "results": {}}, "name", ["64 characters"]),
    ("scheduler name 64 chars", "/runs/{id}/snapshots?attempt=1&worker_id=" + HOLDER,
     [snapshot(1, scheduler="s" * 64)], [snapshot(1, scheduler="s" * 65)], "0.scheduler", ["64 characters"]),
    ("256 levels in a snapshot", "/runs/{id}/snapshots?attempt=1&worker_id=" + HOLDER, None,
     [{"step": 1, "scheduler": "s", "levels": [{"level": i, "probability": 1 / 257} for i in range(257)]}],
     "0.levels", ["256 items"]),
    ("levels = the run's", "/runs/{id}/snapshots?attempt=1&worker_id=" + HOLDER, [snapshot(2, k=5)], [snapshot(2, k=6)],
     "0.levels", ["6 levels given", "has 5"]),
]


@pytest.mark.parametrize("what,path,ok,over,field,words", WORKER_LIMITS, ids=[x[0] for x in WORKER_LIMITS])
def test_worker_inputs_at_and_past_their_bound(client: TestClient, held_run: int, what, path, ok, over, field,
                                               words) -> None:
    url = path.replace("{id}", str(held_run))
    if ok is not None:
        r = client.post(url, json=ok, headers=WORKER)
        assert r.status_code < 300, r.text
    _one_error(client.post(url, json=over, headers=WORKER), field, *words)


def test_the_finish_error_text_is_bounded(client: TestClient, held_run: int) -> None:
    body = {"worker_id": HOLDER, "attempt": 1, "status": "failed", "error": "e" * 100_001}
    _one_error(client.post(f"/runs/{held_run}/finish", json=body, headers=WORKER), "error", "100000 characters")


@pytest.mark.parametrize("kind", ["snapshots", "evals", "logs"])
def test_batches_over_e2h_max_batch_are_413_naming_it(client: TestClient, held_run: int, kind: str) -> None:
    def batch(n: int) -> Any:
        if kind == "snapshots":
            return [snapshot(step) for step in range(n)]
        if kind == "evals":
            return [{"step": step, "results": {}} for step in range(n)]
        return {"lines": ["x"] * n}

    url = f"/runs/{held_run}/{kind}"
    params = {"worker_id": HOLDER, "attempt": 1}
    assert client.post(url, json=batch(MAX_BATCH), params=params, headers=WORKER).status_code == 202
    r = client.post(url, json=batch(MAX_BATCH + 1), params=params, headers=WORKER)
    assert r.status_code == 413, r.text
    assert f"at most {MAX_BATCH}" in r.json()["detail"] and "E2H_MAX_BATCH" in r.json()["detail"]


def test_bodies_over_e2h_max_body_bytes_are_413_naming_it(client: TestClient, held_run: int) -> None:
    r = client.post("/runs", json={"name": "x" * MAX_BODY})
    assert r.status_code == 413 and "E2H_MAX_BODY_BYTES" in r.json()["detail"], r.text
    # Streamed without Content-Length: refused once the bytes read pass the limit.
    chunks = iter([b'{"lines": ["', *[b"x" * 65536] * 5, b'"]}'])
    r = client.post(f"/runs/{held_run}/logs", content=chunks, params={"worker_id": HOLDER},
                    headers={**WORKER, "Content-Type": "application/json"})
    assert r.status_code == 413 and "E2H_MAX_BODY_BYTES" in r.json()["detail"], r.text


# -- a 50 MB body against a real server --------------------------------------------------

BIG = 50 * 2**20
LIVE_LIMIT = 4 * 2**20
CHUNK = 2**20


class BigUpload(threading.Thread):
    """Sends a 50 MB POST /runs body over a raw socket, about 1 MB every 40 ms (2 s in all),
    and records when the response arrived relative to how much had been sent."""

    def __init__(self, port: int, chunked: bool):
        super().__init__(daemon=True)
        self.port, self.chunked = port, chunked
        self.sent = 0
        self.sent_when_answered: int | None = None
        self.response = b""
        self.error: BaseException | None = None

    def _poll_response(self, sock: socket.socket) -> None:
        if self.sent_when_answered is None and select.select([sock], [], [], 0)[0]:
            self.response = sock.recv(65536)
            self.sent_when_answered = self.sent

    def run(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        framing = b"Transfer-Encoding: chunked" if self.chunked else f"Content-Length: {BIG}".encode()
        body_start = b'{"name": "'
        try:
            sock.sendall(b"POST /runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         + framing + b"\r\n\r\n")
            while self.sent < BIG:
                piece = (body_start + b"x" * (CHUNK - len(body_start))) if self.sent == 0 else b"x" * CHUNK
                piece = piece[: BIG - self.sent]
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if self.chunked else piece)
                self.sent += len(piece)
                self._poll_response(sock)
                time.sleep(0.04)
            if self.chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError as e:  # the server may close the connection after answering: fine
            self.error = e
        try:
            if self.sent_when_answered is None:
                sock.settimeout(10)
                self.response = sock.recv(65536)
                self.sent_when_answered = self.sent
        finally:
            sock.close()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer({"E2H_DATABASE_URL": f"sqlite:///{tmp_path / 'e2h.db'}", "E2H_DATA_DIR": str(tmp_path),
                         "E2H_WORKER_TOKEN": WORKER_TOKEN, "E2H_MAX_BODY_BYTES": str(LIVE_LIMIT)},
                        tmp_path / "server.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_50mb_body_gets_413_and_the_server_stays_responsive(live: LiveServer, chunked: bool) -> None:
    server_process = psutil.Process(live.proc.pid)
    rss_before = peak_rss = server_process.memory_info().rss
    upload = BigUpload(live.port, chunked)
    latencies = []
    with httpx.Client(base_url=live.url, timeout=10) as http:
        upload.start()
        while upload.is_alive():
            start = time.monotonic()
            assert http.get("/healthz").status_code == 200
            latencies.append(time.monotonic() - start)
            peak_rss = max(peak_rss, server_process.memory_info().rss)
            time.sleep(0.02)
    upload.join()
    latencies.sort()
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    growth_mb = (peak_rss - rss_before) / 2**20
    print(f"limits-report: {'chunked' if chunked else 'content-length'} 50 MB upload, {upload.sent / 2**20:.0f} MB "
          f"sent, answered after {upload.sent_when_answered / 2**20:.0f} MB; /healthz x{len(latencies)} meanwhile: "
          f"p95 {p95 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms; server RSS +{growth_mb:.1f} MB")
    assert upload.response.startswith(b"HTTP/1.1 413"), upload.response[:300]
    assert b"E2H_MAX_BODY_BYTES" in upload.response
    if chunked:  # refused as soon as the bytes read pass the limit (plus what was in flight)
        assert upload.sent_when_answered <= LIVE_LIMIT + 4 * CHUNK
    else:  # refused from the headers alone, before the body
        assert upload.sent_when_answered <= 2 * CHUNK
    assert len(latencies) >= 10, "the upload ended before /healthz could be measured"
    assert p95 < 1.0, latencies
    assert growth_mb < 20, "the server buffered the body"
    assert httpx.get(f"{live.url}/healthz", timeout=5).status_code == 200
