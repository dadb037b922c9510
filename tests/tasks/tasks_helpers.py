"""Helpers shared by the task tests (imported as a plain module from this directory)."""

from __future__ import annotations

from fractions import Fraction
from itertools import permutations

GENERATED_TASKS = ("countdown", "arithmetic", "blocksworld", "coding")


def columns(rows: list[dict]) -> dict[str, list]:
    """Rows -> the column kwargs TRL passes to a reward function."""
    return {key: [row[key] for row in rows] for key in rows[0]}


def completion(answer: str, think: str = "some reasoning") -> str:
    """A well-formatted completion (the prompt already ends with "<think>")."""
    return f"{think}</think>\n<answer>{answer}</answer>"


def wrong_answer(task_name: str, row: dict) -> str:
    """A well-formatted but wrong ANSWER for a generated row."""
    if task_name == "arithmetic":
        return str(int(row["answer"]) + 1)
    if task_name == "countdown":
        numbers, target = row["numbers"], row["target"]
        for order in permutations(numbers):
            for op in " + ", " * ", " - ":
                text = op.join(map(str, order))
                if eval(text) != Fraction(target):  # trusted test text of digits and one operator
                    return text
        raise AssertionError(f"no wrong answer found for {row}")
    if task_name == "blocksworld":
        # A legal prefix of the optimal plan: one action short of the goal.
        return "\n".join(row["solution"].splitlines()[:-1]) or "put down the nonexistent block"
    if task_name == "coding":
        return "def solve(xs):\n    return [123456789]\n"
    raise KeyError(task_name)
