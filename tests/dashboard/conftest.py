"""Fixtures: one real API server per test module (fresh SQLite database) on loopback, and a
worker stand-in that posts snapshots, evaluations and logs through the client."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dashboard.browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, WIDTH, require_browser
from tests.dashboard.fixtures import api, api_server, dashboard_env, worker  # noqa: F401  (the fixtures)


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
