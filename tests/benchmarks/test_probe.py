"""The arithmetic probe measures the shipped tiny model per level, split by train/test question."""

from __future__ import annotations

import pytest

from benchmarks.curriculum.probe import distinct_questions, probe, table
from e2h.tasks import get_task


def test_distinct_questions_are_distinct_and_bounded():
    task = get_task("arithmetic")
    rows = distinct_questions(task, 0, 500)
    keys = [task.question_key(r) for r in rows]
    assert len(keys) == len(set(keys)) == 100  # level 0: a+b with one-digit operands


@pytest.mark.slow
def test_probe_tells_the_easiest_level_from_a_hard_one():
    results = probe("builtin:tiny", [0, 2], questions=40, samples=2, temperature=1.0)
    by_level = {r["level"]: r for r in results}
    for r in results:
        assert r["greedy_train_n"] + r["greedy_test_n"] == 40
        assert r["sampled_train_n"] + r["sampled_test_n"] == 80
        for key in ("greedy_train_accuracy", "sampled_train_accuracy"):
            assert 0.0 <= r[key] <= 1.0
        # The reward is the format reward plus the correctness reward, so it is never below 0.9 x accuracy.
        assert r["sampled_train_reward"] >= 0.9 * r["sampled_train_accuracy"] - 1e-9
    # The warm start solves level 0 sometimes and level 2 (three operands) almost never.
    assert by_level[0]["greedy_train_accuracy"] > by_level[2]["greedy_train_accuracy"] + 0.2
    assert "| builtin:tiny | 0 |" in table(results)
