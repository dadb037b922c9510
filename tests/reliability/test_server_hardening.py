"""Issue 16, the server's part: it cannot be driven cross-site, breaks for no one, and tells
the truth about faults. Each test attacks a real uvicorn server on 127.0.0.1 (SQLite file
in the test's tmp dir) the way an attacker or a broken machine would, and asserts what must
happen instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, event
from sqlalchemy.exc import OperationalError

from e2h.client import Client, ValidationFailed
from server.core.config import Settings
from server.core.errors import storage_fault
from server.main import create_app
from tests.reliability.conftest import FaultServer, cheapest_config, wait_for
from tests.server.helpers import WORKER, WORKER_TOKEN, LiveServer, server_env, serving, snapshot

EVIL = "https://evil.example"


def _count(url: str) -> int:
    return httpx.get(f"{url}/runs", timeout=10).json()["count"]


# -- cross-site writes, foreign origins, DNS rebinding ----------------------------------------


def test_a_cross_site_form_cannot_cancel_or_clone_a_run(fault_server: FaultServer) -> None:
    """An HTML form on any site posts text/plain, urlencoded or multipart bodies (no preflight):
    refused with 415 before any route runs. The run stays as it was; e2h.client still works."""
    url = fault_server.url
    api = Client(url)  # no token: a loopback server without E2H_API_TOKEN, the case the attack targets
    run = api.submit(cheapest_config(), name="victim")
    rid = run.id
    form_types = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None]
    for path, body in ((f"/runs/{rid}/cancel", b"x=1"), (f"/runs/{rid}/clone", b'{"overrides": {}}')):
        for content_type in form_types:
            headers = {"Content-Type": content_type} if content_type else {}
            r = httpx.post(f"{url}{path}", content=body, headers=headers, timeout=10)
            assert r.status_code == 415, (path, content_type, r.text)
            assert "application/json" in r.json()["detail"]
        # The same post from the attacker's page, as a browser sends it (its Origin): 403.
        r = httpx.post(f"{url}{path}", content=body, headers={"Content-Type": "text/plain", "Origin": EVIL})
        assert r.status_code == 403 and EVIL in r.json()["detail"]
    r = httpx.delete(f"{url}/runs/{rid}", headers={"Content-Type": "text/plain"}, timeout=10)
    assert r.status_code == 415

    after = api.get(rid)
    assert (after.status, after.cancel_requested, after.updated_at) == ("queued", False, run.updated_at)
    assert _count(url) == 1  # no clone was made

    # The real client (dashboard, CLI, worker) sends JSON, also on bodiless cancel and delete.
    clone = api.clone(rid)
    assert clone.id != rid and api.cancel(rid).status == "cancelled"
    api.cancel(clone.id)
    api.delete(clone.id)
    assert _count(url) == 1
    api.close()


def test_with_both_tokens_set_a_form_post_is_told_it_needs_the_token(tmp_path: Path) -> None:
    """Every write then needs a bearer token, which no form can send: the route's 401 refuses it."""
    env = {
        "E2H_DATABASE_URL": f"sqlite:///{tmp_path / 'e2h.db'}",
        "E2H_DATA_DIR": str(tmp_path),
        "E2H_WORKER_TOKEN": WORKER_TOKEN,
        "E2H_API_TOKEN": "api-secret",
    }
    with serving(env, tmp_path / "server.log") as server, Client(server.url, token="api-secret") as api:
        rid = api.submit(cheapest_config()).id
        for path in (f"/runs/{rid}/cancel", f"/runs/{rid}/clone"):
            r = httpx.post(f"{server.url}{path}", content=b"x=1", headers={"Content-Type": "text/plain"}, timeout=10)
            assert r.status_code == 401 and "E2H_API_TOKEN" in r.json()["detail"], r.text
        assert api.get(rid).status == "queued" and api.list_runs().count == 1


def test_a_foreign_origin_is_refused_and_the_servers_own_is_answered(fault_server: FaultServer) -> None:
    url = fault_server.url
    for origin in (EVIL, "null", "http://127.0.0.1:1", f"{url}.evil.example", "file://"):
        assert httpx.get(f"{url}/runs", headers={"Origin": origin}, timeout=10).status_code == 403, origin
        r = httpx.post(f"{url}/runs", json={"config": cheapest_config()}, headers={"Origin": origin}, timeout=10)
        assert r.status_code == 403 and "E2H_ALLOWED_ORIGINS" in r.json()["detail"], origin
    assert _count(url) == 0
    # Its own origin (a page the server served) and the allowed ones (default: the dashboard's) are answered.
    for origin in (url, "http://localhost:8501", "http://127.0.0.1:8501"):
        r = httpx.post(f"{url}/runs", json={"config": cheapest_config()}, headers={"Origin": origin}, timeout=10)
        assert r.status_code == 201, (origin, r.text)
    assert _count(url) == 3


def test_a_foreign_host_is_refused_on_loopback_dns_rebinding(fault_server: FaultServer) -> None:
    """A page on evil.example whose DNS is re-pointed to 127.0.0.1 reaches the server with its
    own name in Host: 421, for reads and writes. Loopback names, with any port, are answered."""
    url, port = fault_server.url, fault_server.port
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.evil.example:{port}", "localhost.evil.example"):
        r = httpx.get(f"{url}/runs", headers={"Host": host}, timeout=10)
        assert r.status_code == 421 and "E2H_ALLOWED_HOSTS" in r.json()["detail"], host
        r = httpx.post(f"{url}/runs", json={"config": cheapest_config()}, headers={"Host": host}, timeout=10)
        assert r.status_code == 421, host
    assert _count(url) == 0
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}", "LOCALHOST:1"):
        assert httpx.get(f"{url}/runs", headers={"Host": host}, timeout=10).status_code == 200, host
    assert httpx.get(f"http://localhost:{port}/healthz", timeout=10).status_code == 200


# -- the worker protocol: snapshots against the run, attempt required, cancel wins -------------


@pytest.fixture
def claimed(fault_api: Client) -> dict:
    fault_api.submit(cheapest_config(max_steps=3))
    return fault_api.claim("w1").run


def test_snapshots_the_run_cannot_have_are_refused(fault_api: Client, claimed: dict) -> None:
    rid, k = claimed.id, claimed.num_levels

    def bad(step: int = 1, **changes) -> dict:
        s = snapshot(step, k)
        for change in changes.values():
            change(s)
        return s

    cases = {
        "step past max_steps=3": (bad(4), "0.step"),
        "a level the run lacks": (bad(levels=lambda s: s["levels"][-1].update(level=k)), f"0.levels.{k - 1}.level"),
        "300 metric keys": (bad(m=lambda s: s["metrics"].update({f"m/{i}": 0.0 for i in range(300)})), "0.metrics"),
        "a 10 kB metric name": (bad(m=lambda s: s["metrics"].update({"x" * 10_000: 1.0})), "0.metrics"),
        "300 component keys": (
            bad(c=lambda s: s["levels"][0].update(components={f"c{i}": 0.0 for i in range(300)})),
            "0.levels.0.components",
        ),
    }
    for what, (snap, field) in cases.items():
        with pytest.raises(ValidationFailed) as e:
            fault_api.post_snapshots(rid, [snap], "w1", 1)
        assert field in [err["field"] for err in e.value.detail], (what, e.value.detail)
    assert fault_api.get(rid).snapshot_count == 0 and fault_api.history(rid).steps == []
    assert fault_api.post_snapshots(rid, [snapshot(0, k), snapshot(3, k)], "w1", 1).accepted == 2
    assert fault_api.history(rid).steps == [0, 3]


def test_worker_writes_without_their_attempt_are_refused(fault_server: FaultServer, claimed: dict) -> None:
    url, rid = fault_server.url, claimed.id
    k = claimed.num_levels
    who = {"worker_id": "w1"}
    writes = [
        ("heartbeat", {"json": {**who, "step": 2, "output_dir": "/elsewhere"}}),
        ("snapshots", {"json": [snapshot(1, k)], "params": who}),
        ("evals", {"json": {"step": 1, "results": {"overall": {"accuracy": 1.0}}}, "params": who}),
        ("logs", {"json": {"lines": ["forged"]}, "params": who}),
        ("finish", {"json": {**who, "status": "succeeded"}}),
        ("release", {"json": who}),
    ]
    for name, kwargs in writes:
        r = httpx.post(f"{url}/runs/{rid}/{name}", headers=WORKER, timeout=10, **kwargs)
        assert r.status_code == 422, (name, r.text)
        assert "attempt" in [e["field"] for e in r.json()["detail"]], name
    with Client(url, token=WORKER_TOKEN) as api:
        run = api.get(rid)
        assert (run.status, run.step, run.output_dir, run.snapshot_count) == ("running", 0, None, 0)
        assert api.logs(rid).data == [] and api.evals(rid) == []
        assert api.finish(rid, "w1", 1, "succeeded").status == "succeeded"  # with it: accepted


def test_a_run_whose_cancel_was_requested_ends_cancelled_though_the_worker_says_succeeded(
    fault_server: FaultServer, fault_api: Client, claimed: dict
) -> None:
    rid = claimed.id
    with Client(fault_server.url) as user:
        assert user.cancel(rid).cancel_requested is True
    assert fault_api.heartbeat(rid, "w1", 1, step=1).cancel_requested is True
    finished = fault_api.finish(rid, "w1", 1, "succeeded")
    assert finished.status == "cancelled" and "reported succeeded" in finished.error
    assert fault_api.finish(rid, "w1", 1, "succeeded").status == "cancelled"  # a retry changes nothing
    assert fault_api.get(rid).status == "cancelled"


# -- storage faults: 503 JSON naming the cause, reads go on ------------------------------------


def _chattr(flag: str, *paths: Path) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True)


def _can_make_immutable(tmp_path: Path) -> str | None:
    """Why files cannot be made immutable here, or None. Root ignores chmod, so the read-only
    file is made with the immutable attribute (root with CAP_LINUX_IMMUTABLE on ext4/xfs/btrfs)."""
    if shutil.which("chattr") is None:
        return "chattr is not installed"
    probe = tmp_path / "immutable-probe"
    probe.write_text("x")
    try:
        _chattr("+i", probe)
    except subprocess.CalledProcessError as e:
        return f"cannot set the immutable attribute here: {e.stderr.decode().strip()}"
    _chattr("-i", probe)
    probe.unlink()
    return None


def _assert_503_json(r: httpx.Response, *words: str) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/json", r.headers
    detail = r.json()["detail"]
    assert any(w in detail for w in words), detail


@pytest.mark.parametrize("how", ["file made read-only under the running server", "server started read-only"])
def test_a_read_only_database_answers_503_json_and_reads_go_on(
    fault_server: FaultServer, tmp_path: Path, how: str
) -> None:
    url, db = fault_server.url, fault_server.db_path
    with Client(url, token=WORKER_TOKEN) as api:
        rid = api.submit(cheapest_config(max_steps=3)).id
        api.submit(cheapest_config())
        api.claim("w1")
    frozen: list[Path] = []
    if how.startswith("file"):
        if os.geteuid() != 0:
            pytest.skip("not root: chmod does not stop writes through the server's open file handles")
        if reason := _can_make_immutable(tmp_path):
            pytest.skip(reason)
        # The WAL index (-shm) is memory-mapped: left writable, as SQLite needs it even to read.
        frozen = [p for p in (db, db.with_name(db.name + "-wal"), db.parent) if p.exists()]
        _chattr("+i", *frozen)
    else:
        # The database as a read-only file (what SQLite gets for a file it may only read).
        fault_server.stop()
        fault_server.env["E2H_DATABASE_URL"] = f"sqlite:///file:{db}?mode=ro&uri=true"
        fault_server.start()
    try:
        r = httpx.post(f"{url}/runs", json={"config": cheapest_config()}, timeout=10)
        _assert_503_json(r, "read-only")
        r = httpx.post(f"{url}/runs/{rid}/heartbeat", json={"worker_id": "w1", "attempt": 1}, headers=WORKER)
        _assert_503_json(r, "read-only")
        r = httpx.post(f"{url}/runs/{rid}/cancel", json={}, timeout=10)
        _assert_503_json(r, "read-only")
        # Reads need no writes: the list, a run and its history are served.
        runs = httpx.get(f"{url}/runs", timeout=10)
        assert runs.status_code == 200 and runs.json()["count"] == 2
        assert httpx.get(f"{url}/runs/{rid}", timeout=10).json()["status"] == "running"
        assert httpx.get(f"{url}/runs/{rid}/snapshots", timeout=10).status_code == 200
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    finally:
        if frozen:
            _chattr("-i", *frozen)
    if frozen:  # fixed under the running server: writes work again, nothing was lost
        r = httpx.post(f"{url}/runs", json={"config": cheapest_config()}, timeout=10)
        assert r.status_code == 201, r.text
        assert _count(url) == 3


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs: a real disk that fills up (needs root with CAP_SYS_ADMIN, else skipped)."""
    mount = tmp_path / "tiny-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_answers_503_json_and_reads_go_on(tiny_disk: Path, tmp_path: Path) -> None:
    env = {
        "E2H_DATABASE_URL": f"sqlite:///{tiny_disk / 'e2h.db'}",
        "E2H_DATA_DIR": str(tmp_path),
        "E2H_WORKER_TOKEN": WORKER_TOKEN,
        "E2H_API_TOKEN": "",
    }
    with serving(env, tmp_path / "server.log") as server:
        url, created, refused = server.url, 0, None
        deadline = time.monotonic() + 120
        while refused is None:
            assert time.monotonic() < deadline, "the 2 MiB disk never filled"
            body = {"name": f"filler {created}", "config": cheapest_config(), "tags": [f"t{i}" for i in range(30)]}
            r = httpx.post(f"{url}/runs", json=body, timeout=30)
            if r.status_code == 201:
                created += 1
            else:
                refused = r
        _assert_503_json(refused, "full")
        assert created > 0
        runs = httpx.get(f"{url}/runs", params={"limit": 500}, timeout=10)
        assert runs.status_code == 200 and runs.json()["count"] == created
        # Later writes fit in what the failed one gave back, or are refused the same way: never a 500.
        for _ in range(5):
            r = httpx.post(f"{url}/runs", json=body, timeout=30)
            if r.status_code != 201:
                _assert_503_json(r, "full", "could not be written")


def test_a_database_at_its_size_limit_answers_503_json(tmp_path: Path) -> None:
    """The same fault with no mount needed: SQLite's own size limit (max_page_count) fills the database."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'e2h.db'}", data_dir=tmp_path, worker_token=WORKER_TOKEN)
    app = create_app(settings)
    with TestClient(app) as client:
        engine = app.state.engine
        with engine.connect() as conn:
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar()

        @event.listens_for(engine, "connect")
        def _full(dbapi_conn, _record) -> None:
            dbapi_conn.execute(f"PRAGMA max_page_count={pages + 1}")

        engine.dispose()  # pooled connections go; new ones have the limit
        statuses = []
        for i in range(200):
            r = client.post("/runs", json={"name": f"r{i}", "config": cheapest_config(), "tags": ["t"] * 1})
            statuses.append(r.status_code)
            if r.status_code != 201:
                break
        _assert_503_json(r, "full")
        assert client.get("/runs").json()["count"] == statuses.count(201)


def test_an_unopenable_database_is_named_as_such() -> None:
    """The message a missing directory or a file without permission gives, from SQLite itself."""
    with pytest.raises(OperationalError) as e:
        create_engine("sqlite:////nonexistent-e2h-dir/sub/e2h.db").connect()
    assert "cannot be opened" in storage_fault(e.value)
    assert storage_fault(OperationalError("SELECT 1", {}, Exception("no such table: runs"))) is None


# -- slow and greedy clients ---------------------------------------------------------------------


class CliServer(LiveServer):
    """``e2h server`` (server.main.serve, with its uvicorn options), not plain uvicorn."""

    def command(self) -> list[str]:
        return [sys.executable, "-m", "e2h.cli", "server", "--host", "127.0.0.1", "--port", str(self.port)]


@pytest.fixture
def cli_server(tmp_path: Path) -> Iterator[CliServer]:
    env = server_env(tmp_path, E2H_HEADER_TIMEOUT_SECONDS="1", E2H_BODY_TIMEOUT_SECONDS="1",
                     E2H_KEEP_ALIVE_SECONDS="1", E2H_MAX_EVENT_STREAMS="2")
    server = CliServer(env, tmp_path / "server.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def _closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed ``sock`` (recv gives b""), None if still open after ``seconds``."""
    start = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return time.monotonic() - start


def test_slow_clients_are_cut_off(cli_server: CliServer) -> None:
    port = cli_server.port
    # A request head that never completes (slowloris): closed after E2H_HEADER_TIMEOUT_SECONDS.
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert _closed_within(s, 8) is not None, "a half-sent request head held the connection"
    # Trickling a byte at a time does not reset the clock.
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(0.3)
        start = time.monotonic()
        with pytest.raises((BrokenPipeError, ConnectionResetError, TimeoutError, OSError)):
            for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 100:
                s.sendall(bytes([byte]))
                time.sleep(0.2)
                if s.recv(1) == b"":
                    raise ConnectionResetError("closed by the server")
        assert time.monotonic() - start < 8
    # A connection that sends nothing at all.
    with socket.create_connection(("127.0.0.1", port)) as s:
        assert _closed_within(s, 8) is not None, "an idle new connection was kept"
    # An idle keep-alive connection after a complete request: E2H_KEEP_ALIVE_SECONDS.
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        s.settimeout(5)
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        assert _closed_within(s, 8) is not None
    # A body that stops arriving: 408 with a JSON detail once E2H_BODY_TIMEOUT_SECONDS pass.
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(
            b"POST /runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"config":'
        )
        s.settimeout(8)
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 408") and b"E2H_BODY_TIMEOUT_SECONDS" in reply, reply
    # Prompt clients are served as before.
    assert httpx.get(f"{cli_server.url}/runs", timeout=10).status_code == 200


def test_event_streams_over_the_cap_are_refused(cli_server: CliServer) -> None:
    url = cli_server.url
    with Client(url, token=WORKER_TOKEN) as api:
        rid = api.submit(cheapest_config()).id
    with httpx.Client(base_url=url, timeout=10) as http:
        opened = []
        for _ in range(2):  # E2H_MAX_EVENT_STREAMS=2
            stream = http.stream("GET", f"/runs/{rid}/events")
            response = stream.__enter__()
            assert response.status_code == 200
            lines = response.iter_lines()  # kept: dropping the iterator would close the stream
            assert next(lines) == "event: status"  # the stream is being served
            opened.append((stream, lines))
        r = http.get(f"/runs/{rid}/events")
        assert r.status_code == 503 and "E2H_MAX_EVENT_STREAMS" in r.json()["detail"], r.text
        assert http.get(f"/runs/{rid}").status_code == 200  # other requests are not affected
        opened.pop()[0].__exit__(None, None, None)

        def a_stream_is_served_again() -> bool:
            with http.stream("GET", f"/runs/{rid}/events") as again:
                return again.status_code == 200

        wait_for(a_stream_is_served_again, 10, "a freed stream slot")
        for stream, _ in opened:
            stream.__exit__(None, None, None)
