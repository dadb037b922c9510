"""The dashboard tests' server fixtures, also used by tests elsewhere that need a dashboard's view
of a real server: one real API server per test module (fresh SQLite database) on loopback, a
client for it, a worker stand-in that posts through the client, and the in-process app's
environment pointed at the server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import streamlit as st

from e2h.client import Client
from tests.dashboard.helpers import WORKER_TOKEN, ApiServer
from tests.dashboard.simulate import FakeWorker


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    server = ApiServer(tmp_path_factory.mktemp("api"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def api(api_server: ApiServer) -> Iterator[Client]:
    with Client(api_server.url) as client:
        yield client


@pytest.fixture(scope="module")
def worker(api_server: ApiServer) -> Iterator[FakeWorker]:
    fake = FakeWorker(api_server.url, WORKER_TOKEN)
    yield fake
    fake.close()


@pytest.fixture
def dashboard_env(api_server: ApiServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the in-process app (AppTest) at this module's server, with no stale caches."""
    monkeypatch.setenv("E2H_SERVER_URL", api_server.url)
    monkeypatch.delenv("E2H_API_TOKEN", raising=False)
    st.cache_data.clear()
    st.cache_resource.clear()
    return api_server.url
