"""Countdown: combine the given numbers with + - * / and parentheses to reach a target.

Level = number of operands (E2H trains on 2, 3, 4, 5 and holds out 6). Numbers are drawn
from 1..100; the target is built by repeatedly combining two random items of the pool
(like a player would), keeping every intermediate value a positive integer no larger
than ``max_target``, so the target is reachable and the generating expression is the
``solution``.

Scoring follows E2H's ``CountdownCorrectnessReward`` (``rules="e2h"``, the default): the
integers in the answer (every run of digits) must be the given numbers, each once; the answer
may hold only digits, ``+ - * / ( ) .`` and whitespace; its value must be within 1e-5 of the
target. Python's own arithmetic gives the value (so ``**``, ``//``, unary signs and decimals
count as they do in E2H's ``eval``), computed by walking Python's ``ast``, never ``eval``: an
answer that does not parse, divides by zero or is not a number voids the whole reward (E2H's
exception path); a power with an exponent above ``MAX_EXPONENT``, or an integer power of
more than ``MAX_POWER_BITS`` bits, is refused the same way (E2H
would compute it, for as long as that takes).

``rules="seed"`` is this project's earlier, deliberately different check (off by default):
binary + - * / and parentheses only, exact rational arithmetic, no unary signs, decimals or
powers, and an optional trailing "= target"; a wrong expression scores the format reward.
"""

from __future__ import annotations

import ast
import operator
import random
import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any, Literal

from pydantic import Field, StrictInt, model_validator

from e2h.errors import FieldProblem
from e2h.tasks import base
from e2h.tasks.base import E2H_SYSTEM_PROMPT, SCORE_ERROR, Task, TaskOptions

MAX_EXPRESSION_CHARS = 500
MAX_LITERAL = 10**6
_DECIMAL_RE = re.compile(r"[0-9]+")
_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
RULES = ("e2h", "seed")
MAX_EXPONENT = 4096
MAX_POWER_BITS = 1 << 20
MAX_E2H_ANSWER_CHARS = 10_000
_E2H_CHARS = re.compile(r"^[\d+\-*/().\s]+$")  # E2H's allowed characters (str.isdigit-style \d included)
_DIGIT_RUNS = re.compile(r"\d+")
_PY_BINOPS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Pow: operator.pow, ast.Mod: operator.mod,
}
_PY_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def python_value(text: str):
    """What Python's ``eval`` gives for an arithmetic expression of number literals, computed
    without ``eval``. Raises (ValueError, ArithmeticError, SyntaxError ...) wherever ``eval`` of
    such text would raise, and ValueError for anything but literals, unary and binary arithmetic."""
    tree = ast.parse(text, mode="eval")
    return _python_eval(tree.body)


def _python_eval(node: ast.AST):
    if isinstance(node, ast.Constant) and type(node.value) in (int, float, complex):
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _PY_UNARY:
        return _PY_UNARY[type(node.op)](_python_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _PY_BINOPS:
        left, right = _python_eval(node.left), _python_eval(node.right)
        if type(node.op) is ast.Pow and isinstance(right, int) and (
            abs(right) > MAX_EXPONENT or (isinstance(left, int) and abs(left).bit_length() * right > MAX_POWER_BITS)
        ):
            raise ValueError("power too large")
        return _PY_BINOPS[type(node.op)](left, right)
    raise ValueError(f"not arithmetic: {type(node).__name__}")  # E2H's eval: a TypeError, a NameError ...


def e2h_score(answer: str, numbers: Any, target: Any) -> float:
    """E2H's Countdown check of a stripped ANSWER: 1.0, 0.0, or SCORE_ERROR (E2H: no reward at all)."""
    try:
        if sorted(int(n) for n in _DIGIT_RUNS.findall(answer)) != sorted(numbers):
            return 0.0
    except TypeError:  # numbers that are not a list of numbers: E2H's sorted() raises
        return SCORE_ERROR
    if not _E2H_CHARS.match(answer):
        return 0.0
    if len(answer) > MAX_E2H_ANSWER_CHARS:
        return SCORE_ERROR
    try:
        value = python_value(answer)
        return 1.0 if abs(value - target) < 1e-5 else 0.0
    except (Exception, RecursionError):  # whatever eval would raise: E2H's reward is 0
        return SCORE_ERROR


def evaluate_expression(text: str) -> tuple[Fraction, list[int]]:
    """Value and the integer literals (in order) of a + - * / expression.

    Raises ValueError for anything else (including text that does not parse) and
    ZeroDivisionError for a division by zero."""
    node, literals = parse_expression(text)
    return _evaluate(node), literals


def parse_expression(text: str) -> tuple[ast.AST, list[int]]:
    """The checked syntax tree and integer literals of an expression (ValueError if not allowed)."""
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        raise ValueError(f"not an expression: {exc}") from None
    literals: list[int] = []
    _collect(tree.body, literals)
    # Only plain decimal numerals stand for the given numbers (not 0x3, 1_0 or 3e0).
    for node in ast.walk(tree.body):
        if isinstance(node, ast.Constant) and not _DECIMAL_RE.fullmatch(
            ast.get_source_segment(text.strip(), node) or ""
        ):
            raise ValueError("numbers must be written as plain decimal numerals")
    return tree.body, literals


def _collect(node: ast.AST, literals: list[int]) -> None:
    # Check the whole tree before computing anything, so no work is spent on junk.
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        _collect(node.left, literals)
        _collect(node.right, literals)
    elif isinstance(node, ast.Constant) and type(node.value) is int and 0 <= node.value <= MAX_LITERAL:
        literals.append(node.value)
    else:
        raise ValueError(f"not allowed in a countdown expression: {ast.dump(node)[:80]}")


def _evaluate(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Constant):
        return Fraction(node.value)
    assert isinstance(node, ast.BinOp)
    left, right = _evaluate(node.left), _evaluate(node.right)
    op = type(node.op)
    if op is ast.Add:
        return left + right
    if op is ast.Sub:
        return left - right
    if op is ast.Mult:
        return left * right
    return left / right


class CountdownOptions(TaskOptions):
    levels: base.TrainingLevels = [2, 3, 4, 5]
    heldout_levels: base.HeldoutLevels = [6]
    system_prompt: base.SystemPrompt = E2H_SYSTEM_PROMPT
    user_template: base.UserTemplate = (
        "{question} You can use basic arithmetic operations (+, -, *, /) and each number can only "
        "be used once. Show your work in <think> </think> tags. And return the final answer in "
        "<answer> </answer> tags, for example <answer> (1 + 2) / 3 </answer>."
    )
    min_number: StrictInt = Field(1, ge=1, description="Smallest number drawn.")
    max_number: StrictInt = Field(100, ge=1, description="Largest number drawn (at least min_number).")
    max_target: StrictInt = Field(1000, ge=1, description="Largest target and intermediate value (at least "
                                                          "max_number).")
    rules: Literal[RULES] = Field("e2h", description="How answers are checked: e2h (E2H's check) or seed (the "
                                                     "earlier one; see e2h/tasks/countdown.py).")

    @model_validator(mode="after")
    def _ranges(self) -> CountdownOptions:
        if self.min_number > self.max_number:
            raise FieldProblem(f"must be >= min_number ({self.min_number}), got {self.max_number}",
                               "max_number")
        if self.max_target < self.max_number:
            raise FieldProblem(f"must be >= max_number ({self.max_number}), got {self.max_target}",
                               "max_target")
        return self


class Countdown(Task):
    """Countdown numbers game; see the module docstring."""

    name = "countdown"
    description = "Reach the target with the given numbers, + - * / and parentheses (level = operands)."
    available_levels = (2, 3, 4, 5, 6, 7)
    Options = CountdownOptions
    required_columns = ("numbers", "target")

    def _configure(self, opts: CountdownOptions) -> None:
        self.rules = opts.rules
        self.min_number, self.max_number, self.max_target = opts.min_number, opts.max_number, opts.max_target

    def _generate_one(self, rng: random.Random, level: int) -> dict:
        numbers = [rng.randint(self.min_number, self.max_number) for _ in range(level)]
        # (value, text, is_compound)
        pool: list[tuple[int, str, bool]] = [(v, str(v), False) for v in numbers]
        while len(pool) > 1:
            i, j = rng.sample(range(len(pool)), 2)
            a, b = pool[i], pool[j]
            if a[0] < b[0]:
                a, b = b, a
            x, y = a[0], b[0]
            choices = []
            if x + y <= self.max_target:
                choices.append((x + y, "+"))
            if x * y <= self.max_target:
                choices.append((x * y, "*"))
            if x != y:
                choices.append((x - y, "-"))
            if x % y == 0:
                choices.append((x // y, "/"))
            # x != y gives "-", x == y gives "/", so there is always a choice.
            value, op = rng.choice(choices)
            text = f"{_wrap(a)} {op} {_wrap(b)}"
            pool = [item for k, item in enumerate(pool) if k not in (i, j)] + [(value, text, True)]
        target, expression, _ = pool[0]
        return {
            "question": f"Using the numbers {numbers}, create an equation that equals {target}.",
            "answer": str(target),
            "solution": expression,
            "numbers": numbers,
            "target": target,
        }

    def question_key(self, row: Mapping) -> str:
        return f"{sorted(int(n) for n in row['numbers'])}={int(row['target'])}"

    def score(self, answer: str, row: Mapping[str, Any]) -> float:
        if self.rules == "e2h":
            target = row["target"]
            if isinstance(target, str):  # a CSV cell; E2H's rows hold integers
                target = int(target) if target.strip().lstrip("-").isdigit() else float(target)
            return e2h_score(answer.strip(), row["numbers"], target)
        numbers = sorted(int(n) for n in row["numbers"])
        target = Fraction(int(row["target"]))
        text = answer.strip()
        if "=" in text:
            text, _, rhs = text.partition("=")
            if "=" in rhs or rhs.strip() != str(int(target)):
                return 0.0
        try:
            node, used = parse_expression(text)
            return 1.0 if sorted(used) == numbers and _evaluate(node) == target else 0.0
        except (ValueError, ZeroDivisionError):
            return 0.0


def _wrap(item: tuple[int, str, bool]) -> str:
    return f"({item[1]})" if item[2] else item[1]
