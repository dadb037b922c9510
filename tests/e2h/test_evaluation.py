"""Per-level evaluation: sharded over ranks with the same greedy results, stops at </answer>, pass@k."""

import json
import subprocess
import sys

import pytest

from e2h.evaluation import _shard, summarise

from .test_train import _env, two_process_launch

OVERRIDES = ["task.test_size_per_level=12", "algorithm.max_completion_length=24"]


def test_shards_cover_every_row_once_and_run_equal_batches():
    for n, world in [(10, 3), (7, 2), (1, 4), (12, 4)]:
        shards = [_shard(n, rank, world) for rank in range(world)]
        assert len({len(s) for s in shards}) == 1
        assert sorted({i for s in shards for i in s}) == list(range(n))


def test_summary_has_mean_and_pass_at_k():
    class Task:
        format_reward = 0.1

    rows = [{"level": 0}, {"level": 0}, {"level": 1}]
    results = summarise(Task(), rows, {0: [1.0, 0.1], 1: [0.1, 0.1], 2: [1.0, 1.0]}, num_samples=2)
    assert results["level_0"]["mean@2"] == 0.25 and results["level_0"]["pass@2"] == 0.5
    assert results["level_1"]["pass@2"] == 1.0 and results["overall"]["support"] == 3


@pytest.mark.slow
def test_two_processes_give_the_same_greedy_evaluation_as_one(tmp_path):
    outputs = {}
    for n in (1, 2):
        out = tmp_path / f"eval{n}.json"
        launch = [sys.executable] if n == 1 else two_process_launch()
        cmd = [*launch, "-m", "tests.e2h.eval_ranks", str(out), *OVERRIDES]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outputs[n] = json.loads(out.read_text())
    assert [outputs[1]["world"], outputs[2]["world"]] == [1, 2]
    assert outputs[2]["results"] == outputs[1]["results"]
    assert outputs[1]["results"]["overall"]["support"] == sum(
        v["support"] for k, v in outputs[1]["results"].items() if k != "overall"
    )
