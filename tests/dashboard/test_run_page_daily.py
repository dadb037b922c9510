"""Run page (AppTest, real server) for issue 22's frictions: the VREx warmup, a run with no
learning signal, too few distinct test questions, readable log lines, a run that ended before
its first snapshot, the breakdown table."""

from __future__ import annotations

import pytest

from dashboard import nav
from e2h.signals import NO_SIGNAL_STEPS
from tests.dashboard.apptest import assert_clean, open_page, texts
from tests.dashboard.simulate import started_run

pytestmark = pytest.mark.slow


def _post(worker, run, snaps) -> None:
    worker.client.post_snapshots(run["id"], snaps, worker.worker_id, run["attempt"])
    worker.client.heartbeat(run["id"], worker.worker_id, run["attempt"], step=snaps[-1]["step"])


def test_vrex_warmup_says_until_when(dashboard_env: str, api, worker) -> None:
    run, _ = started_run(api, worker, {"algorithm": {"max_steps": 60}}, steps=5)  # VREx, warmup unset
    at = open_page(nav.RUN, run=str(run["id"]))
    assert "Uniform until step 12 (the scheduler's warmup)" in texts(at)  # a fifth of 60 steps
    worker.finish(run)


def test_no_learning_signal_is_a_warning(dashboard_env: str, api, worker) -> None:
    run, sim = started_run(api, worker, {"algorithm": {"max_steps": 100}, "scheduler": {"name": "cosine"}}, steps=0)
    snaps = sim.advance(NO_SIGNAL_STEPS + 5)
    for snap in snaps:
        snap["metrics"].update(loss=0.0, frac_reward_zero_std=1.0)
    _post(worker, run, snaps)
    at = open_page(nav.RUN, run=str(run["id"]))
    assert f"No learning signal for the last {NO_SIGNAL_STEPS + 5} steps" in texts(at)
    more = sim.advance(1)
    more[0]["metrics"]["frac_reward_zero_std"] = 0.5  # a group with different rewards
    _post(worker, run, more)
    at = open_page(nav.RUN, run=str(run["id"]))
    assert "No learning signal" not in texts(at)
    worker.finish(run)


def test_too_few_distinct_questions_next_to_the_test_table(dashboard_env: str, api, worker) -> None:
    run, sim = started_run(api, worker, {"algorithm": {"max_steps": 20}, "scheduler": {"name": "cosine"},
                                         "task": {"train_levels": [0, 1], "test_levels": [0, 1],
                                                  "test_size_per_level": 50}}, steps=20, eval_every=1000)
    results = {"level_0": {"accuracy": 0.5, "support": 7}, "level_1": {"accuracy": 0.2, "support": 50},
               "overall": {"accuracy": 0.3, "support": 57}}
    worker.client.post_evals(run["id"], [{"step": 20, "name": "test", "results": results}], worker.worker_id,
                             run["attempt"])
    worker.finish(run)
    at = open_page(nav.RUN, run=str(run["id"]))
    page = texts(at)
    assert "Too few distinct test questions: level 0: 7 (asked for 50)." in page
    assert "level 1:" not in page.split("Too few distinct test questions")[1].split("\n")[0]


def test_log_lines_are_readable_and_the_raw_log_is_one_click_away(dashboard_env: str, api, worker) -> None:
    run, _ = started_run(api, worker, {"algorithm": {"max_steps": 20}, "scheduler": {"name": "cosine"}}, steps=2)
    noise = ["/venv/lib/python3.11/site-packages/transformers/training_args.py:1541: FutureWarning: "
             "`gradient_checkpointing` is deprecated", "  warnings.warn(f\"`{old}` is deprecated\", FutureWarning)",
             " 40%|████      | 8/20 [00:05<00:07,  1.61it/s]",
             "{'loss': 0.0, 'grad_norm': 0.0, 'learning_rate': 1e-06, 'reward': 0.1, 'epoch': 0.01}",
             "2026-12-02 16:52:15,123 INFO e2h.train: final test evaluation took 1.2 s"]
    worker.client.post_logs(run["id"], noise, worker.worker_id, run["attempt"])
    worker.finish(run)
    at = open_page(nav.RUN, run=str(run["id"]))
    readable = next(c.value for c in at.code if "metrics: loss=0 reward=0.1" in c.value)
    assert "FutureWarning" not in readable and "it/s" not in readable and "{'loss'" not in readable
    assert "16:52:15 INFO e2h.train: final test evaluation took 1.2 s" in readable
    raw = [e for e in at.expander if e.label.startswith("Raw log")]
    assert raw and any("FutureWarning" in c.value for c in raw[0].code)


def test_a_run_that_failed_before_its_first_snapshot(dashboard_env: str, api, worker) -> None:
    run, _ = started_run(api, worker, {"algorithm": {"max_steps": 20}, "scheduler": {"name": "cosine"}}, steps=0)
    worker.finish(run, "failed", error="CUDA out of memory")
    at = open_page(nav.RUN, run=str(run["id"]))
    page = texts(at)
    assert "This run failed before it reported a logged step" in page
    assert "the charts fill in" not in page


def test_breakdown_table_drops_pi_when_it_equals_the_score(dashboard_env: str, api, worker) -> None:
    run, _ = started_run(api, worker, {"algorithm": {"max_steps": 100},
                                       "scheduler": {"params": {"warmup_steps": 5, "update_interval": 5}}},
                         steps=30)
    at = open_page(nav.RUN, run=str(run["id"]))
    assert_clean(at)
    table = next(d.value for d in at.dataframe if "probability" in d.value.columns and "score" in d.value.columns)
    assert "pi" not in table.columns  # temperature 1, weights summing to 1: pi is the score
    assert "deficit (raw)" in table.columns and "(raw)" in texts(at)
    worker.finish(run)
