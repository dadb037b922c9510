"""The run page's derived view (dashboard.derived.RunView), built from a simulated scheduler's
series, evaluations and log lines, without Streamlit or a server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from dashboard import derived
from dashboard import series as S
from e2h.signals import NO_SIGNAL_STEPS, ZERO_STD_METRIC
from tests.dashboard.simulate import Simulation
from tests.dashboard.test_series_charts import as_series, as_series_slice

RUN = {"id": 3, "status": "running", "step": 40, "max_steps": 100, "num_levels": 4, "attempt": 2,
       "worker_id": "w1", "tags": ["x"], "created_at": "2026-01-01T11:00:00Z",
       "config": {"model": {"name_or_path": "builtin:tiny"},
                  "task": {"name": "arithmetic", "train_levels": [2, 3, 4, 5], "test_levels": [2, 3, 4, 5, 6],
                           "test_size_per_level": 10},
                  "scheduler": {"name": "variance_regularized", "params": {"warmup_steps": 10, "update_interval": 2}}}}
EVALS = [
    {"step": 20, "name": "eval", "results": {"level_2": {"accuracy": 0.25}, "level_6": {"accuracy": 0.0}}},
    {"step": 40, "name": "eval", "results": {"level_2": {"accuracy": 0.5}, "level_6": {"accuracy": 0.125}}},
    {"step": 40, "name": "test", "results": {"level_2": {"accuracy": 0.75, "support": 10},
                                             "level_6": {"accuracy": 0.25, "support": 4},
                                             "overall": {"accuracy": 0.5, "support": 14}}},
]


def plain(column: pd.Series) -> list:
    return [None if v is pd.NA else v for v in column.tolist()]


@pytest.fixture(scope="module")
def vrex() -> dict:
    return as_series(Simulation("variance_regularized", 4, 100, {"warmup_steps": 10, "update_interval": 2}).advance(40))


def test_frames_hold_the_series_values_by_step_and_level_label(vrex: dict) -> None:
    view = derived.derive(RUN, vrex, EVALS, [])
    assert view.labels == ("level 2", "level 3", "level 4", "level 5") and view.heldout == (6,)
    for frame, field in ((view.probability, "probability"), (view.reward_mean, "reward_mean"),
                         (view.reward_var, "reward_var"), (view.count, "count")):
        assert list(frame.columns) == list(view.labels) and frame.index.tolist() == vrex["steps"]
        for label, lv in zip(view.labels, vrex["levels"], strict=True):
            assert plain(frame[label]) == lv[field]  # exactly as reported (missing: NA): no rounding here
    assert str(view.count.dtypes.iloc[0]) == "Int64"
    assert view.metrics["loss"].tolist() == vrex["metrics"]["loss"]
    assert view.default_metrics == ("loss", "kl", "reward")
    # Components appear after the warmup: missing before it, not zero.
    deficit = view.components["deficit"]["level 2"]
    assert deficit.isna().sum() == 9 and deficit.iloc[9] == vrex["levels"][0]["components"]["deficit"][9]
    assert list(view.components) == [*view.component_names, *view.combined_names]
    assert set(view.raw) == set(view.component_names)


def test_breakdown_step_is_the_last_one_with_components_at_or_before_the_pick(vrex: dict) -> None:
    view = derived.derive(RUN, vrex, [], [])
    assert view.breakdown_steps[0] == 10 and view.breakdown_steps[-1] == 40
    assert view.breakdown_step() == 40
    assert view.breakdown_step(25) == 25 and view.breakdown_step(3) == 10
    gaps = derived.derive(RUN, {**vrex, "steps": [s * 10 for s in vrex["steps"]]}, [], [])  # steps 10, 20, ...
    assert gaps.breakdown_step(255) == 250 and gaps.breakdown_step(5) == 100


def test_evaluations_and_the_final_test(vrex: dict) -> None:
    view = derived.derive(RUN, vrex, EVALS, [])
    acc = view.accuracy
    assert list(acc.columns) == list(derived.ACCURACY_COLUMNS)
    level2 = acc[acc["level"] == 2]
    assert level2["step"].tolist() == [20, 40, 40] and level2["kind"].tolist() == ["eval", "eval", "test"]
    assert level2["accuracy"].tolist() == [0.25, 0.5, 0.75]
    assert view.test["step"] == 40
    table = view.test_table
    assert dict(zip(table["level"], table["accuracy"], strict=True)) == {
        "level 2": 0.75, "level 6 (held-out)": 0.25, "overall": 0.5}
    assert view.few_questions == (("level 6", 4),) and view.test_size == 10
    assert derived.derive(RUN, vrex, EVALS[:2], []).test_table is None


def test_warmup_and_no_signal_warnings() -> None:
    sim = Simulation("variance_regularized", 4, 100, {"warmup_steps": 10, "update_interval": 2})
    early = as_series(sim.advance(5))
    assert derived.derive(RUN, early, [], []).warmup_until == 10
    cosine = {**RUN, "config": {**RUN["config"], "scheduler": {"name": "cosine", "params": {}}}}
    assert derived.derive(cosine, early, [], []).warmup_until is None  # no warmup to wait for
    later = as_series(sim.advance(10))
    assert derived.derive(RUN, later, [], []).warmup_until is None  # components reported: past it
    snaps = Simulation("cosine", 4, 100).advance(NO_SIGNAL_STEPS + 3)
    for snap in snaps:
        snap["metrics"][ZERO_STD_METRIC] = 1.0
    flat = as_series(snaps)
    assert derived.derive(cosine, flat, [], []).no_signal_streak == NO_SIGNAL_STEPS + 3
    assert derived.derive(cosine, as_series_slice(flat, 0, NO_SIGNAL_STEPS - 1), [], []).no_signal_streak is None


def test_header_facts_log_lines_and_an_empty_series() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    run = {**RUN, "started_at": (now - timedelta(seconds=40)).isoformat().replace("+00:00", "Z")}
    logs = ["/x.py:1: UserWarning: careful", "  warn()", "{'loss': 0.5, 'reward': 0.25}", "step 1"]
    view = derived.derive(run, S.empty(), [], logs, now=now)
    assert view.progress == 0.4
    assert dict(view.facts) == {"Task": "arithmetic", "Scheduler": "variance_regularized", "Model": "builtin:tiny",
                                "Attempt": 2, "Worker": "w1", "ETA": "1 min 00 s", "Tags": "x"}
    assert view.times == ("created 2026-01-01 11:00:00 UTC", "started 2026-01-01 11:59:20 UTC")
    assert view.readable_log == ("metrics: loss=0.5 reward=0.25", "step 1") and view.logs == tuple(logs)
    assert view.steps == () and view.probability.shape == (0, 0) and view.metrics.empty
    assert not view.has_breakdown and view.accuracy.empty and view.default_metrics == ()
    other = derived.derive(run, {**S.empty(), "steps": [1], "metrics": {"a": [1.0], "b": [2.0], "c": [3.0],
                                                                      "d": [4.0]}}, [], [])
    assert other.default_metrics == ("a", "b", "c")  # none of loss, kl, reward: the first three
    assert isinstance(other.metrics, pd.DataFrame) and other.metrics.loc[1, "d"] == 4.0
