"""Countdown: tricky answers, expression evaluation, and the generator's guarantees."""

from __future__ import annotations

from fractions import Fraction

import pytest

from e2h.tasks import get_task
from e2h.tasks.countdown import evaluate_expression
from tests.tasks.tasks_helpers import completion

TASK = get_task("countdown")
SEED = get_task("countdown", rules="seed")
ROW = {"numbers": [3, 5, 7, 2], "target": 22}  # 7 * 2 + 5 + 3


def reward(answer: str, row: dict = ROW, task=TASK) -> float:
    return task.reward([completion(answer)], numbers=[row["numbers"]], target=[row["target"]])[0]


@pytest.mark.parametrize(
    ("answer", "e2h", "seed"),
    [
        ("(3 + 5) * 2 + 7 - 1", 0.1, 0.1),  # 1 is not one of the numbers
        ("(7 - 5 + 3) * 2 * 2", 0.1, 0.1),  # 2 used twice
        ("3 * 5 + 7", 0.1, 0.1),  # 2 missing
        ("3 * 5 + 7 * 2 / 2", 0.1, 0.1),  # 2 used twice, right value
        ("(3 + 5 + 7 - 2) * 2 - 4", 0.1, 0.1),  # extra numbers
        ("3 * 5 + 7 + 2 - 2", 0.1, 0.1),  # 2 used twice
        ("7 * 2 + 5 + 3", 1.0, 1.0),  # 22, every number once
        ("(5 - 3) * 7 + 2 * 4", 0.1, 0.1),  # 4 is not given
        ("2 * (7 + 5 - 3) + 3", 0.1, 0.1),  # 3 twice
        ("7*2+5+3", 1.0, 1.0),  # no spaces
        ("  (7 * 2) + (5 + 3)  ", 1.0, 1.0),  # redundant parentheses, spaces
        ("7 * 2 + 5 + 3 = 22", 0.1, 1.0),  # E2H: 22 is a number the answer uses; the seed tolerates "= target"
        ("7 * 2 + 5 + 3 = 23", 0.1, 0.1),  # a wrong right-hand side
        ("7 * 2 + 5 + 3 = 22 = 22", 0.1, 0.1),
        ("3 / (5 - 5) + 7 * 2", 0.1, 0.1),  # 5 twice (E2H checks the numbers before it evaluates)
        ("7 / (2 - 2) + 5 + 3", 0.1, 0.1),  # division by zero, and 2 twice
        ("__import__('os').system('echo hi')", 0.1, 0.1),
        ("10**10**10", 0.1, 0.1),  # wrong numbers: never evaluated
        ("7 ** 2 + 5 + 3 + 2", 0.1, 0.1),
        ("7 * 2 - -5 + 3", 1.0, 0.1),  # unary minus: E2H's eval takes it
        ("-7 * 2 + 5 + 3", 0.1, 0.1),  # unary minus, wrong value
        ("7.0 * 2 + 5 + 3", 0.1, 0.1),  # the 0 of 7.0 counts as a number
        ("7 * 2 + 5 + 3.", 1.0, 0.1),  # "3." is 3.0 to E2H's eval
        ("7 * 2 + 5 + 3j", 0.1, 0.1),  # complex literal: a character E2H refuses
        ("7 * 2 + 5 + 0x3", 0.1, 0.1),
        ("7 * 2 + 5 + 0_3", 0.1, 0.1),
        ("7 * 2 + 5 + 03", 0.0, 0.1),  # E2H: a SyntaxError in eval, no reward at all
        ("7 * 2 + 5 + 3 +", 0.0, 0.1),  # does not parse
        ("7 * 2 + 5 + True + 2", 0.1, 0.1),  # a bool is not a number here
        ("x + 7 * 2 + 5 + 3", 0.1, 0.1),  # a name
        ("(lambda: 22)()", 0.1, 0.1),
        ("[7, 2, 5, 3]", 0.1, 0.1),
        ("7 * 2 + 5 + 3; import os", 0.1, 0.1),
        ("7 * 2 + 5 + 3 % 1", 0.1, 0.1),  # modulo is not allowed
        ("7 // 2 + 5 + 3", 0.1, 0.1),  # floor division: 11
        ("9" * 400, 0.1, 0.1),  # huge literal
        ("(" * 300 + "7" + ")" * 300, 0.1, 0.1),  # deep nesting
        ("", 0.0, 0.0),  # an empty answer is a format error
        ("7 * 2 + 5 + 3\x00", 0.1, 0.1),
        ("7 * 2 + 5 +\n3", 0.0, 0.1),  # E2H's eval stops at the newline
    ],
)
def test_tricky_answers(answer, e2h, seed):
    assert reward(answer) == pytest.approx(e2h)
    assert reward(answer, task=SEED) == pytest.approx(seed)


@pytest.mark.parametrize(
    ("row", "answer", "e2h", "seed"),
    [
        ({"numbers": [2, 3, 4], "target": 12}, "2 ** 3 + 4", 1.0, 0.1),  # powers count in E2H
        ({"numbers": [7, 2, 5], "target": 8}, "7 // 2 + 5", 1.0, 0.1),  # so does floor division
        ({"numbers": [4, 4, 2], "target": 1}, "2 / (4 - 4)", 0.0, 0.1),  # ZeroDivisionError: no reward at all
        ({"numbers": [3, 5], "target": 15}, "(3)(5)", 0.0, 0.1),  # E2H's eval: a TypeError
        ({"numbers": [7], "target": 7}, "(" * 300 + "7" + ")" * 300, 0.0, 0.1),  # too deep for Python's parser
        # within E2H's 1e-5 of the target without being it
        ({"numbers": [7, 1, 100, 99, 98], "target": 7}, "7 + 1 / (100 * 99 * 98)", 1.0, 0.1),
        ({"numbers": [9, 9, 9], "target": 1}, "9 ** 9 ** 9", 0.0, 0.1),  # refused, never computed
    ],
)
def test_e2h_arithmetic_is_pythons(row, answer, e2h, seed):
    assert reward(answer, row) == pytest.approx(e2h)
    assert reward(answer, row, SEED) == pytest.approx(seed)


def test_fractional_intermediates_are_fine():
    row = {"numbers": [1, 3, 4, 6], "target": 24}
    for task in (TASK, SEED):
        assert reward("6 / (1 - 3 / 4)", row, task) == pytest.approx(1.0)


def test_duplicate_numbers_are_a_multiset():
    row = {"numbers": [5, 5, 2], "target": 12}
    assert reward("5 + 5 + 2", row) == pytest.approx(1.0)
    assert reward("5 * 2 + 2", row) == pytest.approx(0.1)


def test_malformed_row_values_never_raise():
    # E2H: sorted(None) raises (no reward at all); "x" is a list of one letter, not the answer's numbers
    rewards = TASK.reward([completion("1 + 2")] * 2, numbers=[None, "x"], target=[3, 3])
    assert rewards == [0.0, pytest.approx(0.1)]
    # the seed's check raises on both, and an error while checking now voids the reward in every task
    assert SEED.reward([completion("1 + 2")] * 2, numbers=[None, "x"], target=[3, 3]) == [0.0, 0.0]


def test_evaluate_expression_is_exact():
    assert evaluate_expression("1 / 3 + 1 / 3 + 1 / 3") == (Fraction(1), [1, 3, 1, 3, 1, 3])
    with pytest.raises(ValueError, match="not allowed"):
        evaluate_expression("2 ** 3")
    with pytest.raises(ZeroDivisionError):
        evaluate_expression("1 / (2 - 2)")


@pytest.mark.parametrize("level", TASK.available_levels)
def test_generated_problems_follow_the_rules(level):
    for row in TASK.generate(level, 300, seed=level):
        assert len(row["numbers"]) == level
        assert all(1 <= n <= 100 for n in row["numbers"])
        value, used = evaluate_expression(row["solution"])
        assert value == row["target"] and sorted(used) == sorted(row["numbers"])
        assert 1 <= row["target"] <= TASK.max_target
        assert row["answer"] == str(row["target"])
        assert str(row["numbers"]) in row["question"] and str(row["target"]) in row["question"]


def test_number_range_option():
    task = get_task("countdown", min_number=1, max_number=9, max_target=100)
    rows = task.generate(4, 200, seed=0)
    assert all(1 <= n <= 9 for r in rows for n in r["numbers"])
    with pytest.raises(ValueError, match="min_number"):
        get_task("countdown", min_number=0)


def test_question_key_ignores_number_order():
    a = {"numbers": [1, 2, 3], "target": 6, "question": "x"}
    b = {"numbers": [3, 1, 2], "target": 6, "question": "y"}
    assert TASK.question_key(a) == TASK.question_key(b)
