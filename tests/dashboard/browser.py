"""Driving the dashboard in a real browser: Debian's chromium, headless, through Playwright.

Needs ``scripts/install_browser.sh`` (chromium + the playwright package). Tests that use the
``browser_page`` fixture (conftest.py) are skipped without them, except in CI (CI=true) or with
E2H_REQUIRE_BROWSER=1, where that is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("E2H_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 30_000
WIDTH = 1440


def require_browser():
    required = os.environ.get("CI") == "true" or os.environ.get("E2H_REQUIRE_BROWSER") == "1"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "the playwright package is not installed (scripts/install_browser.sh installs it)"
    else:
        if Path(CHROMIUM).is_file():
            return sync_playwright
        reason = f"no chromium at {CHROMIUM} (scripts/install_browser.sh installs Debian's)"
    if required:
        pytest.fail(f"browser test required here but {reason}")
    pytest.skip(reason)


# A live fragment may be rerunning at the moment of the shot; Streamlit then dims the elements
# it is about to replace. Shown undimmed, the picture is what the page shows between polls.
UNDIM = "[data-stale='true'], .stale-element { opacity: 1 !important; transition: none !important; }"


def screenshot(page, path: Path) -> None:
    """The whole page: Streamlit scrolls inside its main container, so grow the viewport to fit it."""
    page.add_style_tag(content=UNDIM)
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": WIDTH, "height": max(800, min(int(height) + 40, 8000))})
    page.wait_for_timeout(800)  # plotly redraws at the new size
    wait_idle(page)
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": WIDTH, "height": 1000})


def wait_idle(page) -> None:
    """Until Streamlit has finished running the script (its status widget gone)."""
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')")


def chart(page, title: str):
    return page.locator(".js-plotly-plot").filter(has=page.locator(".gtitle", has_text=title))


def number(page, label: str, value: str) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(value)
    field.press("Tab")
