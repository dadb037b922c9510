"""The Experiments page in a real browser (Debian's chromium, headless, Playwright): launch a sweep of
3 schedulers x 3 seeds from the form, a worker stand-in reports every run, the page follows live to the
summary with its winner, curves averaged over seeds with a band per group, and the CSV export; the run
page links back to its sweep, and the finished sweep is deleted from the page.
Screenshot: $E2H_SCREENSHOT_DIR/experiments.png."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from e2h.client import Client
from tests.dashboard.browser import chart, number, screenshot, wait_idle
from tests.dashboard.helpers import WORKER_TOKEN, ApiServer, Dashboard
from tests.dashboard.simulate import FakeWorker
from tests.dashboard.sweep_data import report_runs

pytestmark = pytest.mark.slow


def test_launch_a_sweep_watch_it_and_read_its_summary(tmp_path: Path, browser_page, shots: Path) -> None:
    page = browser_page
    (tmp_path / "api").mkdir()
    server = ApiServer(tmp_path / "api")
    dashboard = Dashboard(tmp_path, server.url)
    api, worker = Client(server.url), FakeWorker(server.url, WORKER_TOKEN)
    try:
        page.goto(f"{dashboard.url}/experiments")
        submit = page.get_by_role("button", name="Submit sweep")
        submit.wait_for()
        page.get_by_label("Sweep name", exact=True).fill("which schedule wins")
        number(page, "Max steps", "300")
        page.get_by_label("Seeds", exact=True).fill("1,2,3")
        submit.click()
        page.get_by_text("queued: 9 runs.").wait_for()
        (listed,) = api.list_sweeps().data
        assert listed.name == "which schedule wins" and listed.seeds == [1, 2, 3]
        assert listed.groups == [{"scheduler.name": s} for s in ("balanced", "gaussian", "sec")]
        assert api.get(listed.run_ids[0]).config["algorithm"]["max_steps"] == 300
        page.locator("td[role='gridcell']", has_text="queued 0/300").first.wait_for(state="attached")

        # The worker reports every run; the page follows without a reload.
        report_runs(api, worker, listed, steps=300, eval_every=50)
        page.get_by_text("finished: 9 runs (9 succeeded)").wait_for()
        summary = api.sweep(listed.id).summary
        winner = next(c for c in summary.cells if (c.level, c.metric, c.verdict) == ("level_5", "accuracy", "winner"))
        row = page.locator("tr", has=page.locator("td[role='gridcell']", has_text="winner"))
        row.first.wait_for(state="attached")
        assert summary.groups[winner.group].label in row.first.inner_text()
        for title in ("Hardest training level: mean reward", "Hardest training level: accuracy",
                      "Held-out level: accuracy"):
            figure = chart(page, title)
            figure.wait_for()
            assert figure.locator(".legendtext").count() == 3  # one line (and band) per group
            assert figure.locator(".scatterlayer .trace").count() == 6
        assert page.locator("[data-testid='stException']").count() == 0
        wait_idle(page)
        screenshot(page, shots / "experiments.png")

        with page.expect_download() as download:
            page.get_by_role("button", name="Export runs CSV").click()
        rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
        assert len(rows) == 9 * 7 and {r["scheduler.name"] for r in rows} == {"balanced", "gaussian", "sec"}

        page.goto(f"{dashboard.url}/run?run={listed.run_ids[0]}")
        page.get_by_role("link", name=f"Part of sweep #{listed.id}").click()
        page.wait_for_url(f"**/experiments?sweep={listed.id}")
        page.get_by_text("finished: 9 runs (9 succeeded)").wait_for()
        assert page.get_by_role("button", name="Cancel sweep").is_disabled()
        page.get_by_role("button", name="Delete sweep").click()
        page.get_by_text(f"Sweep #{listed.id} deleted.").wait_for()
        page.get_by_text("No sweeps yet").wait_for()
        assert api.list_sweeps().count == 0 and api.list_runs().count == 0
    finally:
        worker.close()
        api.close()
        dashboard.stop()
        server.stop()
    assert (shots / "experiments.png").stat().st_size > 10_000
