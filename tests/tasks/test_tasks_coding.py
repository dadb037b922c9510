"""Coding: generated problems are consistent, answers are extracted and partially credited."""

from __future__ import annotations

import json

import pytest

from e2h.tasks import get_task
from e2h.tasks.coding import TRANSFORMS, extract_code
from tests.tasks.tasks_helpers import completion

TASK = get_task("coding", timeout_s=2.0)


@pytest.mark.parametrize("level", TASK.available_levels)
def test_reference_code_matches_the_tests_and_the_question(level):
    for row in TASK.generate(level, 200, seed=level):
        namespace: dict = {}
        exec(row["solution"], namespace)  # trusted: the generator's own code
        tests = json.loads(row["tests"])
        assert len(tests) == TASK.num_tests
        for test in tests:
            assert namespace["solve"](*test["args"]) == test["output"]
        assert any(t["output"] != t["args"][0] for t in tests)  # never the identity on its tests
        assert len(row["steps"]) == level
        assert all(step in row["question"] for step in row["steps"])
        assert f"solve({tests[0]['args'][0]}) returns {tests[0]['output']}" in row["question"]


def test_every_transform_is_reachable_and_neighbours_differ():
    seen = set()
    for row in TASK.generate(4, 400, seed=0):
        seen.update(row["steps"])
        assert all(a != b for a, b in zip(row["steps"], row["steps"][1:], strict=False))
    kinds = {desc.split("{")[0] for _, desc, _, _ in TRANSFORMS.values()}
    assert all(any(step.startswith(kind) for step in seen) for kind in kinds)


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ("def solve(xs):\n    return xs", "def solve(xs):\n    return xs"),
        ("```python\ndef solve(xs):\n    return xs\n```", "def solve(xs):\n    return xs\n"),
        ("Here:\n```py\ndef solve(xs): return xs\n```\nDone.", "def solve(xs): return xs\n"),
        ("```\ndef solve(xs): return xs\n```", "def solve(xs): return xs\n"),
    ],
)
def test_extract_code(answer, code):
    assert extract_code(answer) == code


def test_partial_credit_fenced_answers_and_duplicates():
    row = TASK.generate(1, 1, seed=3)[0]
    tests = json.loads(row["tests"])
    # Right only on the empty-or-short input: passes exactly the tests whose output it matches.
    constant = "def solve(xs):\n    return []\n"
    expected_fraction = sum(t["output"] == [] for t in tests) / len(tests)
    fenced = f"```python\n{row['solution']}```"
    comps = [completion(fenced), completion(constant), completion(fenced), completion("not python at all")]
    rewards = TASK.reward(comps, tests=[row["tests"]] * 4)
    assert rewards[0] == rewards[2] == TASK.max_reward
    assert rewards[1] == pytest.approx(TASK.format_reward + TASK.correctness_reward * expected_fraction)
    assert rewards[3] == TASK.format_reward


def test_tests_column_may_be_a_list_and_func_name_a_column():
    tests = [{"args": [[1, 2]], "output": 3}, {"args": [[]], "output": 0}]
    code = completion("def total(xs):\n    return sum(xs)")
    assert TASK.reward([code], tests=[tests], func_name=["total"]) == [TASK.max_reward]
    assert TASK.reward([code], tests=[tests]) == [TASK.format_reward]  # no solve() defined


def test_question_key_is_the_steps():
    a, b = TASK.generate(2, 2, seed=0)
    assert TASK.question_key(a) == "\n".join(a["steps"])
    assert TASK.question_key({**a, "question": "other example"}) == TASK.question_key(a)
