"""Fixtures: one real API server per test module (fresh SQLite database) on loopback, and a
worker stand-in that posts snapshots, evaluations and logs through the client."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st

from e2h.client import Client
from tests.dashboard.browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, WIDTH, require_browser
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


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator:
    sync_playwright = require_browser()
    profile = tmp_path / "chromium-profile"  # fresh user data dir every time
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": WIDTH, "height": 1000})
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    out = Path(os.environ.get("E2H_SCREENSHOT_DIR") or tmp_path / "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out
