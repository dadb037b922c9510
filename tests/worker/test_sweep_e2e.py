"""End to end: a real sweep of 3 schedulers x 2 seeds on the tiny model, drained by two `e2h worker --burst`
processes (real GRPO training in child processes), then its summary from the evals the workers posted."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys

import pytest

from tests.server.helpers import WORKER_TOKEN
from tests.worker.test_worker import tiny_config

pytestmark = pytest.mark.slow

SCHEDULERS = ["balanced", "gaussian", "sec"]


def test_a_sweep_drained_by_a_burst_worker_has_its_summary(server, api, tmp_path) -> None:
    config = tiny_config(max_steps=2)
    config["task"].update(train_size_per_level=16, test_size_per_level=2)
    sweep = api.submit_sweep(config, {"scheduler.name": SCHEDULERS}, seeds=[42, 7], name="e2e")
    assert len(sweep.run_ids) == 6 and sweep.status == "queued"

    # Two burst workers, as two GPUs would take them: each exits once the queue is empty.
    env = {**os.environ, "E2H_WORKER_TOKEN": WORKER_TOKEN}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "e2h.cli", "worker", "--server", server.url, "--burst", "--heartbeat", "1",
             "--work-dir", str(tmp_path / f"work{i}")],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        for i in range(2)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=500)
        assert worker.returncode == 0, err[-3000:]

    done = api.sweep(sweep.id)
    assert done.status == "finished" and done.counts == {"succeeded": 6}, [r.error for r in done.runs]
    assert sorted((r.group, r.seed) for r in done.runs) == [(g, s) for g in range(3) for s in (7, 42)]
    for run in done.runs:
        stored = api.get(run.id)
        assert stored.attempt == 1 and stored.sweep_id == sweep.id  # each claimed once, by one worker
        assert stored.config["scheduler"]["name"] == SCHEDULERS[run.group]
        assert stored.config["algorithm"]["seed"] == run.seed
        (test,) = [e for e in api.evals(run.id) if e.name == "test"]
        assert run.results["level_5"] == {m: test.results["level_5"][m] for m in ("accuracy", "reward_mean")}

    summary = done.summary
    assert [g.finished for g in summary.groups] == [2, 2, 2]
    assert [lv.key for lv in summary.levels if lv.heldout] == ["level_5"]
    cells = {(c.group, c.level, c.metric): c for c in summary.cells}
    for g in range(3):
        values = [r.results["level_5"]["reward_mean"] for r in done.runs if r.group == g]
        cell = cells[g, "level_5", "reward_mean"]
        assert cell.n == 2 and cell.mean == pytest.approx(statistics.fmean(values))
        assert cell.ci_low <= cell.mean <= cell.ci_high
    verdicts = [cells[g, "level_5", "accuracy"].verdict for g in range(3)]
    assert verdicts.count("winner") == 1 and set(verdicts) <= {"winner", "tied", "behind"}
    assert {(d.group, d.baseline) for d in summary.differences} == {(1, 0), (2, 0)}
    frame = api.sweep_frame(sweep.id)
    assert len(frame) == 6 * 7 and set(frame["scheduler.name"]) == set(SCHEDULERS)  # 6 runs x (6 levels + overall)
