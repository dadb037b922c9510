"""Arithmetic: the level ladder, exact answers and tricky completions."""

from __future__ import annotations

import ast

import pytest

from e2h.tasks import get_task
from e2h.tasks.arithmetic import LEVELS, evaluate
from tests.tasks.tasks_helpers import completion

TASK = get_task("arithmetic")


def reward(answer: str, gold: str = "7") -> float:
    return TASK.reward([completion(answer)], answer=[gold])[0]


@pytest.mark.parametrize(
    ("answer", "gold", "expected"),
    [
        ("7", "7", 1.0),
        (" 7 ", "7", 1.0),
        ("+7", "7", 1.0),
        ("7.", "7", 1.0),
        ("-12", "-12", 1.0),
        ("007", "7", 1.0),
        ("8", "7", 0.1),
        ("-7", "7", 0.1),
        ("7.0", "7", 0.1),  # an integer answer is asked for
        ("3+4", "7", 0.1),  # the expression is not the answer
        ("seven", "7", 0.1),
        ("7 apples", "7", 0.1),
        ("1_000", "1000", 0.1),
        ("1,000", "1000", 0.1),
        ("9" * 100, "7", 0.1),  # absurdly long numbers are not parsed
        ("", "7", 0.0),  # empty answer: format error
    ],
)
def test_tricky_answers(answer, gold, expected):
    assert reward(answer, gold) == pytest.approx(expected)


def test_level_zero_is_single_digit_addition_and_questions_are_short():
    for row in TASK.generate(0, 200, seed=0):
        left, right = row["expression"].split("+")
        assert 0 <= int(left) <= 9 and 0 <= int(right) <= 9
        assert row["question"] == f"What is {row['expression']}?"
    for level in TASK.available_levels:
        assert max(len(r["question"]) for r in TASK.generate(level, 200, seed=0)) <= 40


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_generated_answers_are_exact_and_follow_the_ladder(level):
    count, digits, ops = LEVELS[level]
    for row in TASK.generate(level, 300, seed=level):
        tree = ast.parse(row["expression"], mode="eval")
        numbers = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)]
        assert len(numbers) == count
        assert all(len(str(n)) == digits for n in numbers)
        assert set(c for c in row["expression"] if not c.isdigit()) <= set(ops)
        # Python's own precedence agrees with the generator's evaluation.
        assert int(row["answer"]) == eval(compile(tree, "<expr>", "eval"))  # trusted generated digits and ops


def test_levels_get_harder():
    # Mean absolute answer size grows with the level (a proxy for difficulty).
    sizes = [sum(len(r["answer"]) for r in TASK.generate(lv, 300, seed=0)) for lv in sorted(LEVELS)]
    assert sizes == sorted(sizes)


def test_evaluate_precedence():
    assert evaluate([2, 3, 4], ["+", "*"]) == 14
    assert evaluate([2, 3, 4], ["*", "-"]) == 2
    assert evaluate([9, 3, 2, 5], ["-", "*", "+"]) == 8
