"""Runs page (AppTest) against a real server: the table, filters, and cancel / clone / delete."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.dashboard.apptest import assert_clean, button, open_page, texts
from tests.dashboard.simulate import started_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(api, worker) -> dict[str, dict]:
    running, _ = started_run(api, worker, {"algorithm": {"max_steps": 100},
                                           "scheduler": {"params": {"warmup_steps": 10}}}, steps=40, tags=["vr"])
    done, _ = started_run(api, worker, {"algorithm": {"max_steps": 60}, "scheduler": {"name": "cosine"},
                                        "task": {"train_levels": [0, 1], "test_levels": [0, 1, 4, 5]}},
                          steps=60, tags=["fixed"])
    results = {"level_0": {"accuracy": 1.0, "support": 10}, "level_1": {"accuracy": 0.5, "support": 10},
               "level_4": {"accuracy": 0.5, "support": 10}, "level_5": {"accuracy": 0.2, "support": 40},
               "overall": {"accuracy": 0.4, "reward_mean": 0.55, "support": 70}}
    worker.client.post_evals(done["id"], [{"step": 60, "name": "test", "results": results}], worker.worker_id,
                             done["attempt"])
    worker.finish(done)
    queued = api.submit({"scheduler": {"name": "balanced"}}, tags=["fixed", "later"])
    return {"running": running, "done": api.get(done["id"]).model_dump(mode="json"),
            "queued": queued.model_dump(mode="json")}


def table(at) -> list[dict]:
    return at.dataframe[0].value.to_dict("records")


def test_table_shows_every_run_with_progress(dashboard_env: str, runs: dict) -> None:
    at = open_page()
    assert at.title[0].value == "Runs"
    rows = {r["id"]: r for r in table(at)}
    assert set(rows) >= {r["id"] for r in runs.values()}
    running = rows[runs["running"]["id"]]
    assert running["status"] == "running" and running["progress"] == pytest.approx(0.4)
    assert running["step"] == "40 / 100" and running["worker"] == "sim-worker" and running["attempt"] == 1
    assert running["task"] == "arithmetic" and running["scheduler"] == "variance_regularized"
    assert running["model"] == "builtin:tiny" and running["started"] is not None
    assert running["eta"]  # a pace is known once a step has been made
    done = rows[runs["done"]["id"]]
    assert done["status"] == "succeeded" and done["progress"] == 1.0
    # The final test's figures; held-out = levels 4 and 5, weighted by support: (0.5 * 10 + 0.2 * 40) / 50.
    assert (done["test accuracy"], done["held-out accuracy"], done["test reward"]) == pytest.approx((0.4, 0.26, 0.55))
    assert pd.isna(running["test accuracy"])  # no final test yet
    assert rows[runs["queued"]["id"]]["status"] == "queued" and rows[runs["queued"]["id"]]["eta"] == ""
    assert {w.label for w in at.multiselect} >= {"Status"} and {w.label for w in at.selectbox} >= {"Tag", "Run"}
    assert [b.label for b in at.button] == ["Open", "Cancel", "Clone", "Clone and edit", "Delete"]


def test_filters_by_status_and_tag(dashboard_env: str, runs: dict) -> None:
    at = open_page()
    at.multiselect(key="runs.status").set_value(["succeeded", "queued"]).run()
    assert_clean(at)
    assert {r["status"] for r in table(at)} <= {"succeeded", "queued"}
    assert runs["running"]["id"] not in {r["id"] for r in table(at)}
    at.multiselect(key="runs.status").set_value([]).run()
    assert "later" in at.selectbox(key="runs.tag").options
    at.selectbox(key="runs.tag").select("fixed").run()
    assert {r["id"] for r in table(at)} == {runs["done"]["id"], runs["queued"]["id"]}
    at.selectbox(key="runs.tag").select("later").run()
    assert [r["id"] for r in table(at)] == [runs["queued"]["id"]]


def test_cancel_clone_and_delete(dashboard_env: str, api, runs: dict) -> None:
    at = open_page()
    queued = runs["queued"]["id"]
    at.selectbox(key="runs.selected").select(queued).run()
    button(at, "Cancel").click().run()
    assert_clean(at)
    assert api.get(queued).status == "cancelled"
    assert f"Run #{queued} cancelled." in texts(at)

    done = runs["done"]["id"]
    at.selectbox(key="runs.selected").select(done).run()
    before = api.list_runs().count
    button(at, "Clone").click().run()
    assert_clean(at)
    assert api.list_runs().count == before + 1
    clone = api.get(api.list_runs().data[0].id)
    assert clone.config == runs["done"]["config"] and clone.status == "queued"
    assert f"cloned as #{clone.id}" in texts(at)

    # A running run cannot be deleted: the button is disabled.
    at.selectbox(key="runs.selected").select(runs["running"]["id"]).run()
    assert button(at, "Delete").disabled and not button(at, "Cancel").disabled
    at.selectbox(key="runs.selected").select(queued).run()  # cancelled now: finished
    button(at, "Delete").click().run()
    assert "Delete run" in at.warning[0].value
    button(at, "Yes, delete").click().run()
    assert_clean(at)
    assert queued not in {r.id for r in api.list_runs().data}
    assert f"Run #{queued} deleted." in texts(at)


def test_open_goes_to_the_run_page(dashboard_env: str, runs: dict) -> None:
    at = open_page()
    at.selectbox(key="runs.selected").select(runs["running"]["id"]).run()
    button(at, "Open").click().run()
    assert_clean(at)
    assert at.title[0].value == f"Run #{runs['running']['id']}"
    assert at.query_params["run"] == str(runs["running"]["id"])
