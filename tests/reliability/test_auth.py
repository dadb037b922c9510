"""Authentication: every write operation in the OpenAPI document refuses requests without
its token, and the server refuses to listen beyond loopback without a worker token.

The operations are read from the schema, not listed here, so a write route added without
a token check fails this test. Which token a route needs follows from its router
(DESIGN.md section 5): routes tagged ``workers`` need E2H_WORKER_TOKEN; every other write
needs E2H_API_TOKEN when it is set; reads (GET) are public. A route with a tag this test
does not know fails it too, so a new router has to be classified here first.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from fastapi.testclient import TestClient

from server.core.config import Settings
from server.main import create_app
from tests.server.helpers import REPO, WORKER_TOKEN, free_port

API_TOKEN = "auth-api-token"
WRITE_METHODS = {"post", "put", "patch", "delete"}
# router tag -> token its writes need
TOKEN_FOR_TAG = {"workers": "worker", "runs": "api", "meta": "api", "sweeps": "api"}
SCHEME = {"worker": "WorkerToken", "api": "ApiToken"}
TOKENS = {"worker": WORKER_TOKEN, "api": API_TOKEN}


def required_token(method: str, operation: dict) -> str | None:
    tags = operation.get("tags", [])
    unknown = [t for t in tags if t not in TOKEN_FOR_TAG]
    assert len(tags) == 1 and not unknown, f"classify the tag(s) {tags} in TOKEN_FOR_TAG"
    if method not in WRITE_METHODS:
        return None
    return TOKEN_FOR_TAG[tags[0]]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def operations(schema: dict) -> list[tuple[str, str, dict]]:
    return [(method, path, op) for path, item in schema["paths"].items() for method, op in item.items()]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'e2h.db'}", data_dir=tmp_path,
                        worker_token=WORKER_TOKEN, api_token=API_TOKEN)
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def finished_run(client: TestClient) -> int:
    # A finished run: its event stream ends at once, and nothing here can start it.
    run = client.post("/runs", json={}, headers=bearer(API_TOKEN)).json()
    assert client.post(f"/runs/{run['id']}/cancel", headers=bearer(API_TOKEN)).status_code == 200
    return run["id"]


def test_every_write_route_needs_its_token_and_reads_need_none(client: TestClient, finished_run: int) -> None:
    schema = client.get("/openapi.json").json()
    walked = {"worker": [], "api": [], None: []}
    for method, path, op in operations(schema):
        needed = required_token(method, op)
        label = f"{method.upper()} {path}"
        walked[needed].append(label)
        url = path.replace("{run_id}", str(finished_run))
        declared = {name for requirement in op.get("security", []) for name in requirement}

        def send(headers: dict[str, str], method: str = method, url: str = url) -> httpx.Response:
            return client.request(method, url, headers=headers, json={} if method != "get" else None)

        if needed is None:
            assert not declared, f"{label} is a read (public) but declares {declared}"
            assert send({}).status_code not in (401, 403), label
            continue
        assert declared == {SCHEME[needed]}, f"{label} should declare {SCHEME[needed]} in OpenAPI, has {declared}"
        other = "api" if needed == "worker" else "worker"
        refused = {
            "no header": {},
            "wrong token": bearer("not-the-token"),
            "the other token": bearer(TOKENS[other]),
            "empty bearer": {"Authorization": "Bearer "},
            "not bearer": {"Authorization": f"Basic {TOKENS[needed]}"},
            "token with a suffix": bearer(TOKENS[needed] + "x"),
        }
        for what, headers in refused.items():
            r = send(headers)
            assert r.status_code == 401, f"{label} with {what}: {r.status_code} {r.text}"
            assert r.json()["detail"].startswith("missing or wrong bearer token"), r.text
            assert r.headers.get("www-authenticate") == "Bearer"
        r = send(bearer(TOKENS[needed]))
        assert r.status_code not in (401, 403), f"{label} refused its own token: {r.text}"
    print(f"auth-report: {sum(map(len, walked.values()))} operations walked: {len(walked['worker'])} worker "
          f"writes, {len(walked['api'])} API writes (each refused 6 ways), {len(walked[None])} public reads")
    # The walk saw what DESIGN.md section 5 lists, so it cannot pass by walking nothing.
    assert {"POST /workers/claim", "POST /runs/{run_id}/snapshots", "POST /runs/{run_id}/finish",
            "POST /runs/{run_id}/completions"} <= set(walked["worker"])
    assert {"POST /runs", "POST /runs/{run_id}/cancel", "POST /runs/{run_id}/clone", "DELETE /runs/{run_id}"} <= set(
        walked["api"])
    assert {"GET /runs", "GET /runs/{run_id}/events", "GET /runs/{run_id}/completions"} <= set(walked[None])


def test_the_walk_catches_a_write_route_without_a_token_check(tmp_path: Path) -> None:
    # The control: add an unprotected write route and the same checks refuse it.
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'e2h.db'}", data_dir=tmp_path,
                        worker_token=WORKER_TOKEN, api_token=API_TOKEN)
    app = create_app(settings)

    @app.post("/runs/{run_id}/pin", tags=["runs"])
    def pin(run_id: int) -> dict:
        return {"pinned": run_id}

    with TestClient(app) as client:
        schema = client.get("/openapi.json").json()
        op = schema["paths"]["/runs/{run_id}/pin"]["post"]
        assert required_token("post", op) == "api"
        assert not op.get("security")  # the declared-scheme check fails ...
        assert client.post("/runs/1/pin", json={}).status_code == 200  # ... and so does the 401 check


def test_without_an_api_token_user_writes_are_open_but_worker_routes_are_not(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'e2h.db'}", data_dir=tmp_path,
                        worker_token=WORKER_TOKEN, api_token=None)
    with TestClient(create_app(settings)) as client:
        assert client.post("/runs", json={}).status_code == 201
        assert client.post("/workers/claim", json={"worker_id": "w"}).status_code == 401
        assert client.post("/workers/claim", json={"worker_id": "w"}, headers=bearer(WORKER_TOKEN)).status_code == 200


# -- refusing to listen on a public address ------------------------------------------


def _server_env(tmp_path: Path, **tokens: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("E2H_WORKER_TOKEN", "E2H_API_TOKEN")}
    return {**env, "E2H_DATA_DIR": str(tmp_path), "E2H_DATABASE_URL": f"sqlite:///{tmp_path / 'e2h.db'}", **tokens}


@pytest.mark.slow
@pytest.mark.parametrize("tokens", [{}, {"E2H_API_TOKEN": API_TOKEN}, {"E2H_WORKER_TOKEN": ""}],
                         ids=["no tokens", "api token only", "empty worker token"])
def test_e2h_server_refuses_0_0_0_0_without_a_worker_token(tmp_path: Path, tokens: dict[str, str]) -> None:
    port = free_port()
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "e2h.cli", "server", "--host", "0.0.0.0", "--port", str(port)],
                          cwd=REPO, env=_server_env(tmp_path, **tokens), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done
    assert "refusing to listen on '0.0.0.0' without E2H_WORKER_TOKEN" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    with pytest.raises(httpx.TransportError):  # nothing was listening, not even briefly
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
    print(f"auth-report: e2h server --host 0.0.0.0 with {tokens or 'no tokens'}: exit 2 in "
          f"{time.monotonic() - start:.1f}s")


def _local_non_loopback_ipv4() -> str | None:
    """An address of this machine other than loopback: a connection to it arrives on it."""
    for addresses in psutil.net_if_addrs().values():
        for a in addresses:
            if a.family == socket.AF_INET and not ipaddress.ip_address(a.address).is_loopback:
                return a.address
    return None


def _start(cmd: list[str], env: dict[str, str], log: Path, port: int) -> subprocess.Popen:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc
        except httpx.TransportError:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("api_token", [API_TOKEN, None], ids=["both tokens", "worker token only"])
def test_e2h_server_listens_on_0_0_0_0_with_a_worker_token(tmp_path: Path, api_token: str | None) -> None:
    port = free_port()
    tokens = {"E2H_WORKER_TOKEN": WORKER_TOKEN, **({"E2H_API_TOKEN": api_token} if api_token else {})}
    log = tmp_path / "server.log"
    cmd = [sys.executable, "-m", "e2h.cli", "server", "--host", "0.0.0.0", "--port", str(port)]
    proc = _start(cmd, _server_env(tmp_path, **tokens), log, port)
    try:
        outside = _local_non_loopback_ipv4()
        for host in ["127.0.0.1", *([outside] if outside else [])]:
            assert httpx.get(f"http://{host}:{port}/healthz", timeout=5).status_code == 200, host
            assert httpx.post(f"http://{host}:{port}/workers/claim", json={"worker_id": "w"}, timeout=5).status_code \
                == 401
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = log.read_text()
    assert f"Uvicorn running on http://0.0.0.0:{port}" in text, text
    # Only the worker token set: it starts, but says that user writes are open.
    assert ("without E2H_API_TOKEN" in text) == (api_token is None), text


@pytest.mark.slow
def test_uvicorn_on_0_0_0_0_without_tokens_answers_loopback_only(tmp_path: Path) -> None:
    # ``uvicorn server.main:app --host 0.0.0.0`` skips e2h server's check; the app itself
    # then answers only connections that arrived on a loopback address.
    outside = _local_non_loopback_ipv4()
    if outside is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect to")
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "server.main:app", "--host", "0.0.0.0", "--port", str(port)]
    proc = _start(cmd, _server_env(tmp_path), tmp_path / "server.log", port)
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        for method, path in [("GET", "/healthz"), ("GET", "/runs"), ("POST", "/runs"), ("POST", "/workers/claim")]:
            r = httpx.request(method, f"http://{outside}:{port}{path}", json={}, timeout=5)
            assert r.status_code == 403, (method, path, r.text)
            assert "loopback" in r.json()["detail"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
