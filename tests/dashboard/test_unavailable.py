"""A server that is down, slow or refusing: every page says so and offers no traceback."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import streamlit as st

from dashboard import nav
from tests.dashboard.apptest import assert_clean, button, open_page
from tests.dashboard.helpers import ApiServer, free_port

pytestmark = pytest.mark.slow

PAGES = [None, nav.LAUNCH, nav.RUN, nav.COMPARE]


@pytest.fixture
def point_at(monkeypatch: pytest.MonkeyPatch):
    def point(url: str) -> None:
        monkeypatch.setenv("E2H_SERVER_URL", url)
        st.cache_data.clear()
        st.cache_resource.clear()

    return point


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections (the kernel's backlog) and never answers: a hung server."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize("page", PAGES)
def test_server_down(point_at, page: str | None) -> None:
    point_at(f"http://127.0.0.1:{free_port()}")
    at = open_page(page, run="1", runs="1,2")
    assert len(at.warning) == 1
    assert at.warning[0].value.startswith("Cannot reach the server at http://127.0.0.1:")
    assert "Retrying every 5 s" in at.warning[0].value


def test_server_slow(point_at, silent_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("E2H_DASHBOARD_TIMEOUT", "0.5")
    point_at(silent_server)
    at = open_page(nav.LAUNCH)
    assert "is not answering (no reply within 0.5 s)" in at.warning[0].value


def test_api_token_is_needed_for_writes(point_at, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = ApiServer(tmp_path, api_token="secret-api-token")
    try:
        point_at(server.url)
        at = open_page(nav.LAUNCH)
        button(at, "Submit run").click().run()
        assert_clean(at)
        assert at.error[0].value.startswith("Not submitted (401)")
        monkeypatch.setenv("E2H_API_TOKEN", "secret-api-token")
        st.cache_resource.clear()
        button(at, "Submit run").click().run()
        assert "queued" in at.success[0].value
    finally:
        server.stop()
