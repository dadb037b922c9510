"""A task's options on the launch form in a real browser (chromium through Playwright): drawn from the
task's options schema, the prompt template shown whole in a text area, and only what was changed sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2h.client import Client
from e2h.tasks import TASKS
from tests.dashboard.browser import wait_idle
from tests.dashboard.helpers import ApiServer, Dashboard

pytestmark = pytest.mark.slow


def test_blocksworld_options_are_fields_and_an_untouched_template_is_not_sent(
        api_server: ApiServer, api: Client, browser_page, tmp_path: Path) -> None:
    page = browser_page
    dashboard = Dashboard(tmp_path, api_server.url)

    def choose(label: str, option: str) -> None:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout  # installed: browser_page checked

        # Streamlit's select is a combobox whose list the arrow key opens; a keystroke that lands while the
        # form is still being redrawn opens nothing, so press again until the list is there.
        combo = page.get_by_test_id("stSelectbox").filter(has=page.get_by_text(label, exact=True)).get_by_role(
            "combobox")
        item = page.get_by_role("option", name=option, exact=True)
        for _ in range(5):
            combo.focus()
            page.keyboard.press("ArrowDown")
            try:
                item.wait_for(timeout=2_000)
                break
            except PlaywrightTimeout:
                continue
        item.click()

    try:
        page.goto(f"{dashboard.url}/launch")
        submit = page.get_by_role("button", name="Submit run")
        submit.wait_for()
        choose("Task", "blocksworld")
        page.get_by_label("Rules", exact=True).wait_for()
        wait_idle(page)
        # E2H's prompt, many lines, as the task has it.
        template = page.get_by_label("User Template", exact=True)
        assert template.input_value() == TASKS["blocksworld"].options()["user_template"]
        choose("Rules", "seed")
        page.get_by_label("Tags", exact=True).fill("browser-options")
        submit.click()
        page.get_by_text("queued.").wait_for()
        run = api.get(api.list_runs(tag="browser-options").data[0].id)
        assert run.config["task"]["name"] == "blocksworld"
        assert run.config["task"]["options"] == {"rules": "seed"}  # the prompts, untouched, are not sent
    finally:
        dashboard.stop()
