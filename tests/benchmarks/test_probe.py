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
    results = probe("builtin:tiny", [0, 2], questions=40, samples=4, temperature=1.0)
    by_level = {r["level"]: r for r in results}
    for r in results:
        assert r["greedy_train_n"] + r["greedy_test_n"] == 40
        assert r["sampled_train_n"] + r["sampled_test_n"] == 160
        for key in ("greedy_train_accuracy", "sampled_train_accuracy"):
            assert 0.0 <= r[key] <= 1.0
        # The reward is the format reward plus the correctness reward, so it is never below 0.9 x accuracy.
        assert r["sampled_train_reward"] >= 0.9 * r["sampled_train_accuracy"] - 1e-9
        # Only a completion in the answer format is scored, so accuracy never exceeds the format share.
        assert r["sampled_train_accuracy"] <= r["sampled_train_format"] <= 1.0
    # The warm start solves level 0 sometimes and level 2 (three operands) almost never
    # (shipped model, 8 samples on every question: mean reward 0.13 and 0.01).
    assert by_level[0]["sampled_train_reward"] > by_level[2]["sampled_train_reward"] + 0.05
    assert "| builtin:tiny | 0 |" in table(results)
