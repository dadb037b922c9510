"""The run page's "Sample completions" section (AppTest) against a real server: per level, per step."""

from __future__ import annotations

import pytest

from dashboard import nav
from tests.dashboard.apptest import assert_clean, open_page, widget
from tests.dashboard.simulate import started_run

pytestmark = pytest.mark.slow


def shown_codes(at) -> list[str]:
    return [c.value for c in at.code]


def test_the_run_page_shows_what_the_model_wrote_per_level_and_step(dashboard_env: str, api, worker) -> None:
    run, sim = started_run(api, worker, {"algorithm": {"max_steps": 50}, "task": {"train_levels": [2, 3, 4, 5, 6]}},
                           steps=10)
    at_10 = sim.completions()
    worker.client.post_completions(run["id"], at_10, worker.worker_id, run["attempt"])
    worker.report(run, sim, 5)
    at_15 = sim.completions()
    worker.client.post_completions(run["id"], at_15, worker.worker_id, run["attempt"])

    at = open_page(nav.RUN, run=str(run["id"]))
    assert "Sample completions" in [h.value for h in at.subheader]
    level = widget(at.selectbox, f"completions.level.{run['id']}")
    # The task's level values label the levels, as the charts do (scheduler level 0 is level 2).
    assert level.options == ["level 2", "level 3", "level 4", "level 5", "level 6"] and level.value == 0
    step = widget(at.selectbox, f"completions.step.{run['id']}.0")
    assert step.options == ["latest (step 15)", "step 15", "step 10"]

    def expected(sample: list[dict], lv: int) -> list[dict]:
        return [c for c in sample if c["level"] == lv]

    latest0 = expected(at_15, 0)
    labels = [e.label for e in at.expander if e.label.startswith("#")]
    assert labels == [f"#{c['index'] + 1} · reward {c['reward']:.3f} · advantage {c['advantage']:+.3f}"
                      for c in latest0]
    codes = shown_codes(at)
    for c in latest0:  # each completion with its prompt, verbatim
        assert c["completion"] in codes and c["prompt"] in codes
    assert "arithmetic_reward = " in " ".join(t.value for t in at.text)

    level.set_value(3).run()
    assert_clean(at)
    codes = shown_codes(at)
    assert all(c["completion"] in codes for c in expected(at_15, 3))
    assert not any(c["completion"] in codes for c in latest0 if c not in expected(at_15, 3))
    widget(at.selectbox, f"completions.step.{run['id']}.3").set_value(10).run()
    assert_clean(at)
    codes = shown_codes(at)
    assert [c["completion"] for c in expected(at_10, 3)] == [c for c in codes if c in
                                                              {x["completion"] for x in expected(at_10, 3)}]
    assert "at step 10" in " ".join(c.value for c in at.caption)


def test_a_run_without_completions_says_so(dashboard_env: str, api, worker) -> None:
    run, _ = started_run(api, worker, {"algorithm": {"max_steps": 50}}, steps=3)
    at = open_page(nav.RUN, run=str(run["id"]))
    assert "Sample completions" in [h.value for h in at.subheader]
    assert any("No sampled completions yet" in c.value for c in at.caption)
    assert not [e for e in at.expander if e.label.startswith("#")]
