"""End to end in a real browser: Debian's chromium, headless, driven by Playwright.

The dashboard starts before the API server (it must say so and recover by itself), then:
submit the launch form, see the run in the table, open it, and watch the probability chart
render and move as a worker reports steps. Screenshots of every page with the run in
progress go to $E2H_SCREENSHOT_DIR (default: the test's tmp dir).

Needs ``scripts/install_browser.sh`` (chromium + the playwright package). Skipped without
them, except in CI (CI=true) or with E2H_REQUIRE_BROWSER=1, where that is a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from e2h.client import Client
from tests.dashboard.browser import chart, number, screenshot, wait_idle
from tests.dashboard.helpers import WORKER_TOKEN, ApiServer, Dashboard, free_port
from tests.dashboard.simulate import FakeWorker, Simulation, started_run

pytestmark = pytest.mark.slow

def test_launch_watch_and_compare_in_a_browser(tmp_path: Path, browser_page, shots: Path) -> None:
    page = browser_page
    api_port = free_port()
    dashboard = Dashboard(tmp_path, f"http://127.0.0.1:{api_port}")
    server = None
    try:
        # The server is not up yet: a clear message, no traceback.
        page.goto(f"{dashboard.url}/launch")
        page.get_by_text("Cannot reach the server at").wait_for()
        assert page.locator("[data-testid='stException']").count() == 0

        (tmp_path / "api").mkdir()
        server = ApiServer(tmp_path / "api", port=api_port)
        api, worker = Client(server.url), FakeWorker(server.url, WORKER_TOKEN)
        baseline, base_sim = started_run(api, worker, {"algorithm": {"max_steps": 200}, "scheduler": {"name": "cosine"},
                                                "task": {"test_levels": [0, 1, 2, 3, 4, 5]}},
                                  steps=200, name="cosine baseline", tags=["e2e"])
        final = base_sim.evaluation(baseline["config"]["task"]["train_levels"], [5])  # Compare shows it
        worker.client.post_evals(baseline["id"], [{**final, "name": "test"}], worker.worker_id, baseline["attempt"])
        worker.finish(baseline)

        # ... and the page recovers by itself once it answers.
        submit = page.get_by_role("button", name="Submit run")
        submit.wait_for()
        page.get_by_label("Run name", exact=True).fill("e2e vrex run")
        page.get_by_label("Tags", exact=True).fill("e2e")
        number(page, "Warmup Steps", "20")
        number(page, "Update Interval", "5")
        submit.click()
        page.get_by_text("queued.").wait_for()
        run = api.get(api.list_runs(tag="e2e").data[0].id)  # list items carry no config
        assert run.name == "e2e vrex run" and run.status == "queued"
        assert run.config["scheduler"]["params"] == {"warmup_steps": 20, "update_interval": 5}
        screenshot(page, shots / "launch.png")

        # A worker picks it up and reports 120 steps.
        claimed = worker.claim()
        assert claimed["id"] == run.id
        sim = Simulation("variance_regularized", claimed["num_levels"], claimed["max_steps"],
                         claimed["config"]["scheduler"]["params"], seed=1)
        worker.report(claimed, sim, 120)

        # The table lists it; open it.
        page.locator("[data-testid='stSidebarNav'] a", has_text="Runs").click()
        page.locator("td[role='gridcell']", has_text="e2e vrex run").wait_for(state="attached")
        page.locator("td[role='gridcell']", has_text="120 / 200").wait_for(state="attached")
        wait_idle(page)
        screenshot(page, shots / "runs.png")
        page.get_by_test_id("stSelectbox").filter(has=page.get_by_text("Run", exact=True)).click()
        page.get_by_role("option", name=f"#{run.id} e2e vrex run (running)").click()
        page.locator("[data-testid='stButton'] button").filter(has_text="Open").click()
        page.wait_for_url(f"**/run?run={run.id}")

        # The probability chart renders: one filled area per level.
        area = chart(page, "Task probabilities per level")
        area.wait_for()
        assert area.locator(".scatterlayer .trace").count() == 5
        assert area.locator(".legendtext", has_text="level 4").count() == 1
        chart(page, "Score breakdown per level at step 120").wait_for()
        # Live: the worker reports more, the page follows without a reload.
        worker.report(claimed, sim, 40)
        page.get_by_text("step 160 / 200").wait_for()
        chart(page, "Score breakdown per level at step 160").wait_for()
        # What the model wrote at step 160, level 0 first: the best completion open, with its prompt.
        sample = sim.completions()
        worker.client.post_completions(claimed["id"], sample, worker.worker_id, claimed["attempt"])
        page.get_by_text("of the completions of level 0 at step 160").wait_for(timeout=30_000)
        best = sample[0]
        page.locator("[data-testid='stExpander'] summary", has_text=f"#1 · reward {best['reward']:.3f}").wait_for()
        page.locator("pre", has_text=best["completion"].split("\n")[0]).first.wait_for()
        page.locator("pre", has_text=best["prompt"].split("<think>")[0]).first.wait_for()
        assert page.locator("[data-testid='stException']").count() == 0
        wait_idle(page)
        screenshot(page, shots / "run.png")

        page.goto(f"{dashboard.url}/compare?runs={run.id},{baseline['id']}")
        chart(page, "Probability evolution per run").wait_for()
        chart(page, "Held-out level: accuracy").wait_for()
        page.get_by_text("Final test accuracy per level").wait_for()
        wait_idle(page)
        screenshot(page, shots / "compare.png")
        assert page.locator("[data-testid='stException']").count() == 0
        worker.close()
        api.close()
    finally:
        if server is not None:
            server.stop()
        dashboard.stop()
    for name in ("launch", "runs", "run", "compare"):
        assert (shots / f"{name}.png").stat().st_size > 10_000
    if os.environ.get("E2H_KEEP_LOGS"):
        shutil.copy(dashboard.log, shots / "streamlit.log")


def test_hostile_strings_are_text_in_a_browser(tmp_path: Path, browser_page, listener) -> None:
    """Issue 16: a run named (and tagged, and claimed by a worker named) with Markdown image and
    link syntax, raw HTML and Streamlit directives. The page shows the characters; the image's
    URL is a loopback listener that must see no connection; no link to the attacker's host."""
    page = browser_page
    name = (f"![x](http://127.0.0.1:{listener.port}/pixel.png) <img src=http://127.0.0.1:{listener.port}/i.png> "
            "[click](http://evil.example/) **bold** :red[red] :material/warning: $x$")
    tag = f"![t](http://127.0.0.1:{listener.port}/t.png)"
    worker_id = "[w](http://evil.example/w) <b>w</b> :blue-badge[ok]"
    (tmp_path / "api").mkdir()
    server = ApiServer(tmp_path / "api")
    dashboard = Dashboard(tmp_path, server.url)
    api, worker = Client(server.url), FakeWorker(server.url, WORKER_TOKEN, worker_id=worker_id)
    try:
        run, _ = started_run(api, worker, {"algorithm": {"max_steps": 50}, "scheduler": {"name": "cosine"}},
                             steps=5, name=name, tags=[tag])
        page.goto(f"{dashboard.url}/run?run={run['id']}")
        main = page.get_by_test_id("stMain")
        main.get_by_text(name, exact=True).wait_for()
        main.get_by_text(f"Worker: {worker_id}").wait_for()
        main.get_by_text(f"Tags: {tag}").wait_for()
        chart(page, "Task probabilities per level").wait_for()
        wait_idle(page)
        shown = main.inner_text()
        assert "bold" not in shown.replace("**bold**", "")  # only as typed, never in bold

        page.locator("[data-testid='stSidebarNav'] a", has_text="Runs").click()
        page.get_by_role("heading", name="Act on a run").wait_for()  # the Runs page, not the one it replaces
        wait_idle(page)
        page.get_by_test_id("stSelectbox").filter(has=page.get_by_text("Run", exact=True)).click()
        page.get_by_role("option", name=f"#{run['id']} {name} (running)", exact=True).click()
        page.locator("[data-testid='stButton'] button").filter(has_text="Clone").first.click()
        page.get_by_text(f"Run #{run['id']} cloned as #{run['id'] + 1}.", exact=True).wait_for()
        wait_idle(page)
        page.wait_for_timeout(1000)  # an image the page asked for would have connected by now

        assert page.locator(f"img[src*='127.0.0.1:{listener.port}']").count() == 0
        links = page.locator("a[href*='evil.example']")
        assert links.count() == 0, [links.nth(i).evaluate("e => e.parentElement.parentElement.outerHTML")
                                    for i in range(links.count())]
        assert page.locator("[data-testid='stException']").count() == 0
        assert not listener.accepted(), "the dashboard made the browser fetch a submitter's image"
    finally:
        worker.close()
        api.close()
        dashboard.stop()
        server.stop()
