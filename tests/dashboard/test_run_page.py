"""Run page (AppTest) against a real server: live charts, breakdown, evaluations, logs, errors,
and incremental, bucketed fetching."""

from __future__ import annotations

import pytest

from dashboard import nav, state
from e2h.client import Client
from tests.dashboard.apptest import assert_clean, button, figures, open_page, texts
from tests.dashboard.simulate import started_run

pytestmark = pytest.mark.slow

RUN_FIGURES = {"Task probabilities per level", "Task probabilities (heatmap)", "Mean reward per level",
               "Reward variance per level", "Training metrics", "Evaluation accuracy per level",
               "Samples per level (cumulative)"}
VR = {"algorithm": {"max_steps": 200}, "task": {"test_levels": [0, 1, 2, 3, 4, 5]},
      "scheduler": {"params": {"warmup_steps": 20, "update_interval": 5}}}


@pytest.fixture
def history_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Every GET /runs/{id}/snapshots the page makes, with its parameters."""
    calls: list[dict] = []
    original = Client.history

    def recording(self, run_id, after_step=None, max_points=1000):
        calls.append({"run_id": run_id, "after_step": after_step, "max_points": max_points})
        return original(self, run_id, after_step, max_points)

    monkeypatch.setattr(Client, "history", recording)
    return calls


def test_adaptive_run_in_progress(dashboard_env: str, api, worker) -> None:
    run, sim = started_run(api, worker, VR, steps=120)
    at = open_page(nav.RUN, run=str(run["id"]))
    assert at.title[0].value == f"Run #{run['id']}"
    figs = figures(at)
    assert set(figs) >= RUN_FIGURES
    area = figs["Task probabilities per level"]
    assert [t["name"] for t in area["data"]] == [f"level {i}" for i in range(5)]
    assert area["data"][0]["x"][-1] == 120
    bars = figs["Score breakdown per level at step 120"]
    assert [t["name"] for t in bars["data"] if t["type"] == "bar"] == ["deficit", "variance", "exploration",
                                                                       "groupdro", "vrex"]
    assert "Components over steps" in figs
    evals = figs["Evaluation accuracy per level"]
    assert "level 5 (held-out)" in [t["name"] for t in evals["data"]]
    metrics = figs["Training metrics"]
    assert [t["name"] for t in metrics["data"]] == ["loss", "kl", "reward"]
    page = texts(at)
    assert "step 120: reward=" in page  # the last log lines
    assert '"warmup_steps": 20' in page  # the config
    assert "badge[running]" in page
    assert at.get("progress")[0].proto.text == "step 120 / 200"
    assert "Placement: train on GPU 0" in [e.label for e in at.expander]  # what the worker reported
    [download] = [b for b in at.get("link_button") if "full history" in b.proto.label]
    assert download.proto.url.endswith(f"/runs/{run['id']}/snapshots.ndjson") and "120 steps" in download.proto.label
    picker = at.selectbox(key=f"series_csv_{run['id']}")
    assert "metrics.kl" in picker.options and picker.value == "probability"
    picker.set_value("metrics.kl").run()
    [series] = [b for b in at.get("link_button") if "(CSV)" in b.proto.label]
    assert series.proto.url.endswith(f"/runs/{run['id']}/snapshots.csv?series=metrics.kl")

    # Pick an earlier step for the breakdown.
    at.toggle(key=f"bd.latest.{run['id']}").set_value(False).run()
    at.slider(key=f"bd.step.{run['id']}").set_value(60).run()
    assert_clean(at)
    assert "Score breakdown per level at step 60" in figures(at)


def test_live_updates_fetch_only_new_steps(dashboard_env: str, api, worker, history_calls: list[dict]) -> None:
    run, sim = started_run(api, worker, VR, steps=30)
    at = open_page(nav.RUN, run=str(run["id"]))
    assert [c["after_step"] for c in history_calls if c["run_id"] == run["id"]] == [None]
    worker.report(run, sim, 15)
    at.run()  # what the fragment's timer does every few seconds
    assert_clean(at)
    calls = [c for c in history_calls if c["run_id"] == run["id"]]
    assert calls[-1]["after_step"] == 30
    area = figures(at)["Task probabilities per level"]
    assert area["data"][0]["x"] == list(range(1, 46))
    assert at.get("progress")[0].proto.text == "step 45 / 200"


def test_long_run_is_bucketed(dashboard_env: str, api, worker, history_calls: list[dict],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "MAX_POINTS", 100)
    run, sim = started_run(api, worker, {"algorithm": {"max_steps": 5000}, "scheduler": {"name": "cosine"}},
                           steps=1500, eval_every=500)
    at = open_page(nav.RUN, run=str(run["id"]))
    steps = figures(at)["Task probabilities per level"]["data"][0]["x"]
    assert len(steps) <= 100 and steps[0] == 1 and steps[-1] == 1500
    worker.report(run, sim, 150)
    at.run()
    steps = figures(at)["Task probabilities per level"]["data"][0]["x"]
    assert 100 < len(steps) <= 200 and steps[-1] == 1650 and steps == sorted(steps)  # the new steps appended
    calls = [c for c in history_calls if c["run_id"] == run["id"]]
    assert [c["after_step"] for c in calls] == [None, 1500]
    worker.report(run, sim, 150)
    at.run()
    steps = figures(at)["Task probabilities per level"]["data"][0]["x"]
    assert len(steps) <= 100 and steps[-1] == 1800  # past twice the budget: fetched bucketed again
    calls = [c for c in history_calls if c["run_id"] == run["id"]]
    assert [c["after_step"] for c in calls] == [None, 1500, 1650, None]
    assert all(c["max_points"] == 100 for c in calls)


def test_fixed_schedule_has_no_breakdown(dashboard_env: str, api, worker) -> None:
    run, _ = started_run(api, worker, {"algorithm": {"max_steps": 80}, "scheduler": {"name": "cosine"}}, steps=80)
    worker.finish(run)
    at = open_page(nav.RUN, run=str(run["id"]))
    figs = figures(at)
    assert set(figs) >= RUN_FIGURES
    assert not [t for t in figs if t.startswith("Score breakdown") or t == "Components over steps"]
    assert not at.toggle
    assert [b.label for b in at.button if b.disabled] == ["Cancel"]
    [compare] = [b for b in at.button if b.label == "Compare"]
    compare.click().run()
    assert at.title[0].value == "Compare runs" and at.multiselect(key="compare.runs").value == [run["id"]]


def test_failed_run_shows_its_error(dashboard_env: str, api, worker) -> None:
    run, _ = started_run(api, worker, {"algorithm": {"max_steps": 50}, "scheduler": {"name": "sec"}}, steps=10)
    worker.finish(run, "failed", "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB")
    at = open_page(nav.RUN, run=str(run["id"]))
    assert "The run failed:" in [e.value for e in at.error]
    assert "CUDA out of memory" in texts(at)
    assert "Score breakdown per level at step 10" in figures(at)  # sec reports components too


def test_queued_run_and_unknown_run(dashboard_env: str, api) -> None:
    queued = api.submit({}, priority=-5)
    at = open_page(nav.RUN, run=str(queued.id))
    assert "No snapshots yet" in texts(at)
    at = open_page(nav.RUN, run="999999")
    assert "Not found" in at.warning[0].value


def test_final_test_table_marks_held_out_levels(dashboard_env: str, api, worker) -> None:
    """E2H's mode=test results per level on a finished run's page, held-out levels marked."""
    run, _ = started_run(api, worker, {"algorithm": {"max_steps": 20}, "scheduler": {"name": "cosine"},
                                       "task": {"train_levels": [0, 1], "test_levels": [0, 1, 4]}},
                         steps=20, eval_every=1000)
    results = {"level_0": {"accuracy": 0.9, "support": 8}, "level_1": {"accuracy": 0.5, "support": 8},
               "level_4": {"accuracy": 0.125, "support": 8}, "overall": {"accuracy": 0.5, "support": 24}}
    worker.client.post_evals(run["id"], [{"step": 20, "name": "test", "results": results}], worker.worker_id,
                             run["attempt"])
    worker.finish(run)
    at = open_page(nav.RUN, run=str(run["id"]))
    [table] = [d.value for d in at.dataframe if "accuracy" in d.value.columns and "support" in d.value.columns]
    assert dict(zip(table["level"], table["accuracy"], strict=True)) == {
        "level 0": 0.9, "level 1": 0.5, "level 4 (held-out)": 0.125, "overall": 0.5}


def test_delete_from_the_run_page_asks_first(dashboard_env: str, api, worker) -> None:
    run, _ = started_run(api, worker, {"algorithm": {"max_steps": 20}, "scheduler": {"name": "cosine"}}, steps=5)
    at = open_page(nav.RUN, run=str(run["id"]))
    assert button(at, "Delete").disabled  # running
    worker.finish(run)
    at = open_page(nav.RUN, run=str(run["id"]))
    button(at, "Delete").click().run()
    assert f"Delete run #{run['id']} and all its history?" in [w.value for w in at.warning]
    button(at, "Keep it").click().run()
    assert not [b for b in at.button if b.label == "Yes, delete"] and api.get(run["id"]).id == run["id"]
    button(at, "Delete").click().run()
    button(at, "Yes, delete").click().run()
    assert_clean(at)
    assert at.title[0].value == "Runs" and f"Run #{run['id']} deleted." in texts(at)
    assert run["id"] not in {r.id for r in api.list_runs().data}
