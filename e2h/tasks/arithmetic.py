"""Arithmetic: evaluate a short integer expression such as "What is 3+4?".

This is the task the built-in tiny character-level model trains on, so questions are
short (a few dozen characters) and level 0 is really easy. Levels grow in operands,
digits and operators:

    level  operands  digits  operators
      0        2        1      +          e.g. "What is 3+4?"
      1        2        1        - *      (not +, so no level-0 question reappears)
      2        3        1      + - *
      3        3        2      + - *
      4        4        2      + - *      (training levels: 0-4)
      5        5        2      + - *      (held out)
      6        5        3      + - *
      7        6        3      + - *

One-digit operands are 0..9, d-digit operands (d >= 2) are 10^(d-1)..10^d - 1. Usual
precedence (* before + and -); the answer is the exact integer, possibly negative. An
answer is correct when it is that integer written in decimal (an optional sign, and a
trailing period, are tolerated).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from typing import Any

from e2h.tasks import base
from e2h.tasks.base import Task, TaskOptions

# level -> (operands, digits, operators)
LEVELS: dict[int, tuple[int, int, str]] = {
    0: (2, 1, "+"),
    1: (2, 1, "-*"),
    2: (3, 1, "+-*"),
    3: (3, 2, "+-*"),
    4: (4, 2, "+-*"),
    5: (5, 2, "+-*"),
    6: (5, 3, "+-*"),
    7: (6, 3, "+-*"),
}
_INTEGER_RE = re.compile(r"[+-]?\d{1,60}\.?")


def evaluate(operands: list[int], operators: list[str]) -> int:
    """Value of ``operands[0] operators[0] operands[1] ...`` with * before + and -."""
    total, term = 0, operands[0]
    sign = 1
    for op, value in zip(operators, operands[1:], strict=True):
        if op == "*":
            term *= value
        else:
            total += sign * term
            sign, term = (1 if op == "+" else -1), value
    return total + sign * term


class ArithmeticOptions(TaskOptions):
    levels: base.TrainingLevels = [0, 1, 2, 3, 4]
    heldout_levels: base.HeldoutLevels = [5]
    # Short on purpose: the tiny character-level model reads every character.
    system_prompt: base.SystemPrompt = ""
    user_template: base.UserTemplate = "{question} Give the integer in <answer></answer>."


class Arithmetic(Task):
    """Integer arithmetic ladder; see the module docstring."""

    name = "arithmetic"
    description = "Evaluate a short integer expression (level = operands, digits and operators)."
    available_levels = tuple(LEVELS)
    Options = ArithmeticOptions
    required_columns = ("answer",)

    def _generate_one(self, rng: random.Random, level: int) -> dict:
        count, digits, ops = LEVELS[level]
        low, high = (0, 9) if digits == 1 else (10 ** (digits - 1), 10**digits - 1)
        operands = [rng.randint(low, high) for _ in range(count)]
        operators = [rng.choice(ops) for _ in range(count - 1)]
        expression = str(operands[0]) + "".join(
            f"{o}{v}" for o, v in zip(operators, operands[1:], strict=True)
        )
        value = str(evaluate(operands, operators))
        return {
            "question": f"What is {expression}?",
            "answer": value,
            "solution": value,
            "expression": expression,
        }

    def score(self, answer: str, row: Mapping[str, Any]) -> float:
        text = answer.strip()
        if not _INTEGER_RE.fullmatch(text):
            return 0.0
        return 1.0 if int(text.rstrip(".")) == int(str(row["answer"]).strip()) else 0.0
