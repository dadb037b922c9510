"""Issue 22's dashboard bugs, each in a real browser (chromium through Playwright) against a real
server and the dashboard as ``e2h dashboard`` starts it. Each test failed before its fix.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from e2h.client import Client
from tests.dashboard.browser import TIMEOUT_MS, chart, number, wait_idle
from tests.dashboard.helpers import ApiServer, Dashboard
from tests.dashboard.simulate import FakeWorker, started_run

pytestmark = pytest.mark.slow

WAIT_MS = 15_000  # a few of the run page's 2 s polls


@pytest.fixture(scope="module")
def dashboard(api_server: ApiServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    app = Dashboard(tmp_path_factory.mktemp("dashboard"), api_server.url)
    try:
        yield app
    finally:
        app.stop()


def _expect():
    from playwright.sync_api import expect

    return expect


def test_metrics_chart_fills_in_when_the_page_was_opened_before_the_first_snapshot(
        api: Client, worker: FakeWorker, dashboard: Dashboard, browser_page) -> None:
    page = browser_page
    run, sim = started_run(api, worker, {"algorithm": {"max_steps": 100}, "scheduler": {"name": "cosine"}},
                           steps=0, name="opened before its first step")
    page.goto(f"{dashboard.url}/run?run={run['id']}")
    metrics = chart(page, "Training metrics")
    metrics.wait_for(timeout=2 * TIMEOUT_MS)  # the first render of a page, on a loaded machine
    assert metrics.locator(".scatterlayer .trace").count() == 0  # nothing reported yet
    worker.report(run, sim, 20)
    page.get_by_text("step 20 / 100").wait_for()
    # loss, kl and reward, one panel each, without a reload
    try:
        _expect()(metrics.locator(".scatterlayer .trace")).to_have_count(3, timeout=WAIT_MS)
    finally:
        worker.finish(run)


def test_evaluation_chart_shows_the_final_test(api: Client, worker: FakeWorker, dashboard: Dashboard,
                                               browser_page) -> None:
    page = browser_page
    run, sim = started_run(api, worker, {"algorithm": {"max_steps": 50}, "scheduler": {"name": "cosine"}},
                           steps=50, eval_every=1000, name="only a final test")
    task = run["config"]["task"]
    test = sim.evaluation(task["train_levels"], sorted(set(task["test_levels"]) - set(task["train_levels"])))
    worker.client.post_evals(run["id"], [{**test, "name": "test"}], worker.worker_id, run["attempt"])
    worker.finish(run)
    page.goto(f"{dashboard.url}/run?run={run['id']}")
    page.get_by_text("Final test results (step 50)").wait_for()
    evals = chart(page, "Evaluation accuracy per level")
    evals.wait_for()
    wait_idle(page)
    assert page.get_by_text("No evaluations yet").count() == 0
    assert evals.locator(".scatterlayer .trace").count() == len(task["test_levels"])
    low, high = evals.evaluate("el => el._fullLayout.xaxis.range")
    assert low <= 0 and high >= 50, (low, high)  # the run's steps, not 49..51 around one point


def test_launch_form_reports_every_problem_at_once(dashboard: Dashboard, browser_page) -> None:
    page = browser_page
    page.goto(f"{dashboard.url}/launch")
    submit = page.get_by_role("button", name="Submit run")
    submit.wait_for()
    page.get_by_text("Algorithm", exact=True).click()  # its expander starts closed
    number(page, "Max Steps", "60")
    number(page, "Num Generations", "3")  # does not divide the generation batch of 16
    number(page, "Warmup Steps", "100")  # not shorter than the run
    submit.click()
    page.get_by_text("The server rejected this config (2 problems)").wait_for()
    main = page.get_by_test_id("stMain")
    main.get_by_text("must divide the generation batch", exact=False).first.wait_for()
    main.get_by_text("warmup_steps=100 is not shorter than the run", exact=False).first.wait_for()


def test_started_is_the_first_attempts_start_after_a_resume(api: Client, worker: FakeWorker,
                                                            dashboard: Dashboard, browser_page) -> None:
    page = browser_page
    run, sim = started_run(api, worker, {"algorithm": {"max_steps": 100}, "scheduler": {"name": "cosine"}},
                           steps=10, name="resumed once")
    first = api.get(run["id"]).started_at
    time.sleep(1.1)  # the second claim's clock second differs from the first's
    worker.client.release(run["id"], worker.worker_id, run["attempt"])
    second = worker.claim()
    assert second["id"] == run["id"] and second["attempt"] == run["attempt"] + 1
    assert api.get(run["id"]).started_at == first
    page.goto(f"{dashboard.url}/run?run={run['id']}")
    page.get_by_text("Attempt: 2", exact=False).wait_for()
    page.get_by_text(f"started {first:%Y-%m-%d %H:%M:%S} UTC", exact=False).wait_for()
    worker.finish(second)

