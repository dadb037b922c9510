"""Coding: write a Python function that transforms a list of integers, checked by unit tests.

Level = how many list transformations the function composes (training 1-4, held out 5;
up to 6 available). Transformations are drawn from a catalogue ("add 3 to every
number", "keep only the even numbers", "reverse the list", prefix sums ...); two
neighbours are never the same kind. Each problem has ``num_tests`` hidden tests (random
lists of -20..20, one of them short or empty); the question shows the first one as an
example. Problems whose tests cannot tell the function from the identity, or whose
outputs are mostly empty, are redrawn.

The answer is Python code defining ``solve(xs)`` (a ```python fence is stripped). It
runs in the sandbox (``e2h.tasks.sandbox``: separate process, timeout, memory/CPU
limits, no network, empty working directory); correctness = fraction of tests passed,
so reward = format_reward + correctness_reward * passed / total.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import Field, StrictInt

from e2h.tasks import base
from e2h.tasks.base import Task, TaskOptions
from e2h.tasks.sandbox import MIN_MEMORY_MB, NETWORK_NAMESPACES, SandboxLimits, score_many

FUNC_NAME = "solve"
_FENCE_RE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def _prefix_sums(xs: list[int]) -> list[int]:
    out, total = [], 0
    for x in xs:
        total += x
        out.append(total)
    return out


# kind -> (parameter choices or None, description, code line, implementation)
TRANSFORMS: dict[str, tuple[Sequence[int] | None, str, str, Any]] = {
    "add": (range(1, 10), "add {k} to every number", "xs = [x + {k} for x in xs]",
            lambda xs, k: [x + k for x in xs]),
    "subtract": (range(1, 10), "subtract {k} from every number", "xs = [x - {k} for x in xs]",
                 lambda xs, k: [x - k for x in xs]),
    "multiply": (range(2, 6), "multiply every number by {k}", "xs = [x * {k} for x in xs]",
                 lambda xs, k: [x * k for x in xs]),
    "keep_even": (None, "keep only the even numbers", "xs = [x for x in xs if x % 2 == 0]",
                  lambda xs, k: [x for x in xs if x % 2 == 0]),
    "keep_odd": (None, "keep only the odd numbers", "xs = [x for x in xs if x % 2 != 0]",
                 lambda xs, k: [x for x in xs if x % 2 != 0]),
    "keep_greater": (range(-5, 6), "keep only the numbers greater than {k}",
                     "xs = [x for x in xs if x > {k}]", lambda xs, k: [x for x in xs if x > k]),
    "keep_less": (range(-5, 6), "keep only the numbers less than {k}", "xs = [x for x in xs if x < {k}]",
                  lambda xs, k: [x for x in xs if x < k]),
    "reverse": (None, "reverse the order of the list", "xs = xs[::-1]", lambda xs, k: xs[::-1]),
    "sort": (None, "sort the list in ascending order", "xs = sorted(xs)", lambda xs, k: sorted(xs)),
    "sort_desc": (None, "sort the list in descending order", "xs = sorted(xs, reverse=True)",
                  lambda xs, k: sorted(xs, reverse=True)),
    "dedupe": (None, "remove repeated numbers, keeping the first occurrence of each value",
               "xs = list(dict.fromkeys(xs))", lambda xs, k: list(dict.fromkeys(xs))),
    "take": (range(1, 6), "keep only the first {k} numbers", "xs = xs[:{k}]", lambda xs, k: xs[:k]),
    "drop": (range(1, 4), "remove the first {k} numbers", "xs = xs[{k}:]", lambda xs, k: xs[k:]),
    "square": (None, "replace every number by its square", "xs = [x * x for x in xs]",
               lambda xs, k: [x * x for x in xs]),
    "abs": (None, "replace every number by its absolute value", "xs = [abs(x) for x in xs]",
            lambda xs, k: [abs(x) for x in xs]),
    "negate": (None, "replace every number by its negative", "xs = [-x for x in xs]",
               lambda xs, k: [-x for x in xs]),
    "prefix_sums": (None, "replace every number by the sum of all numbers up to and including it",
                    "xs = [sum(xs[:i + 1]) for i in range(len(xs))]", lambda xs, k: _prefix_sums(xs)),
    "modulo": (range(2, 8), "replace every number by its remainder when divided by {k} (from 0 to {k1})",
               "xs = [x % {k} for x in xs]", lambda xs, k: [x % k for x in xs]),
}  # fmt: skip


def extract_code(answer: str) -> str:
    """The code of an answer: the first fenced block if there is one, else the whole text."""
    match = _FENCE_RE.search(answer)
    return match.group(1) if match else answer


class CodingOptions(TaskOptions):
    levels: base.TrainingLevels = [1, 2, 3, 4]
    heldout_levels: base.HeldoutLevels = [5]
    user_template: base.UserTemplate = (
        "{question}\nShow your work in <think> </think> tags. And return only the Python code of the "
        "function in <answer> </answer> tags."
    )
    num_tests: StrictInt = Field(6, ge=2, description="Hidden unit tests per problem (the question shows one).")
    timeout_s: float = Field(SandboxLimits.timeout_s, strict=True, gt=0, title="Timeout (s)",
                             description="Wall-clock limit of one answer's tests in the sandbox, in seconds.")
    memory_mb: StrictInt = Field(SandboxLimits.memory_mb, ge=MIN_MEMORY_MB, title="Memory (MB)",
                                 description="Address-space limit of the sandbox process, in MB.")
    max_workers: Annotated[StrictInt, Field(ge=1)] | None = Field(
        None, description="Sandbox processes at once (None: one per CPU, at most 8).")
    network_namespace: Literal[NETWORK_NAMESPACES] = Field(
        SandboxLimits.network_namespace, description="auto: a private network namespace when unshare works; "
        "require: fail without one; off: the audit hook only (see e2h/tasks/sandbox.py).")


class Coding(Task):
    """Function-writing problems with unit tests; see the module docstring."""

    name = "coding"
    description = "Write solve(xs) composing list transformations, scored by unit tests (level = steps)."
    available_levels = (1, 2, 3, 4, 5, 6)
    Options = CodingOptions
    required_columns = ("tests",)

    def _configure(self, opts: CodingOptions) -> None:
        self.num_tests = opts.num_tests
        self.max_workers = opts.max_workers
        self.limits = SandboxLimits(
            timeout_s=opts.timeout_s, memory_mb=opts.memory_mb, network_namespace=opts.network_namespace
        )

    def _generate_one(self, rng: random.Random, level: int) -> dict:
        while True:
            steps = self._draw_steps(rng, level)
            inputs = [
                [rng.randint(-20, 20) for _ in range(rng.randint(3, 8))] for _ in range(self.num_tests - 1)
            ]
            inputs.insert(
                rng.randrange(1, self.num_tests), [rng.randint(-20, 20) for _ in range(rng.randint(0, 2))]
            )
            outputs = [self._apply(steps, xs) for xs in inputs]
            nonempty = sum(1 for out in outputs if out)
            if any(out != xs for out, xs in zip(outputs, inputs, strict=True)) and 2 * nonempty >= len(
                outputs
            ):
                break
        descriptions = [TRANSFORMS[kind][1].format(k=k, k1=(k or 0) - 1) for kind, k in steps]
        lines = "\n".join(f"{i}. {d}" for i, d in enumerate(descriptions, 1))
        question = (
            f"Write a Python function `{FUNC_NAME}(xs)` that takes a list of integers and returns the list "
            f"obtained by applying these steps in order:\n{lines}\n"
            f"For example, {FUNC_NAME}({inputs[0]}) returns {outputs[0]}."
        )
        body = "\n".join("    " + TRANSFORMS[kind][2].format(k=k) for kind, k in steps)
        code = f"def {FUNC_NAME}(xs):\n    xs = list(xs)\n{body}\n    return xs\n"
        tests = [{"args": [xs], "output": out} for xs, out in zip(inputs, outputs, strict=True)]
        return {
            "question": question,
            "answer": code,
            "solution": code,
            "func_name": FUNC_NAME,
            "steps": descriptions,
            "tests": json.dumps(tests),
        }

    @staticmethod
    def _draw_steps(rng: random.Random, level: int) -> list[tuple[str, int | None]]:
        kinds = list(TRANSFORMS)
        steps: list[tuple[str, int | None]] = []
        while len(steps) < level:
            kind = rng.choice(kinds)
            if steps and steps[-1][0] == kind:
                continue
            choices = TRANSFORMS[kind][0]
            steps.append((kind, rng.choice(choices) if choices is not None else None))
        return steps

    @staticmethod
    def _apply(steps: list[tuple[str, int | None]], xs: list[int]) -> list[int]:
        for kind, k in steps:
            xs = TRANSFORMS[kind][3](xs, k)
        return xs

    def question_key(self, row: Mapping) -> str:
        # The steps, not the example: the same function with another example is the same problem.
        steps = row.get("steps")
        return "\n".join(steps) if isinstance(steps, list) and steps else str(row["question"])

    @staticmethod
    def _tests(row: Mapping[str, Any]) -> list[dict]:
        tests = row["tests"]
        if isinstance(tests, str):
            tests = json.loads(tests)
        if not isinstance(tests, list) or not tests:
            raise ValueError("tests must be a non-empty list of {'args': [...], 'output': ...}")
        return [{"args": list(t["args"]), "output": t["output"]} for t in tests]

    def score(self, answer: str, row: Mapping[str, Any]) -> float:
        return self.score_batch([answer], [row])[0]

    def score_batch(self, answers: Sequence[str | None], rows: Sequence[Mapping[str, Any]]) -> list[float]:
        # Completions of one GRPO group often repeat; run each distinct (code, tests) once.
        scores = [0.0] * len(answers)
        jobs: dict[tuple[str, str, str], list[int]] = {}
        for i, (answer, row) in enumerate(zip(answers, rows, strict=True)):
            if answer is None:
                continue
            try:
                tests = self._tests(row)
                func = str(row.get("func_name") or FUNC_NAME)
            except (ValueError, KeyError, TypeError):
                continue
            key = (extract_code(answer), func, json.dumps(tests))
            jobs.setdefault(key, []).append(i)
        keys = list(jobs)
        results = score_many(
            [(code, func, json.loads(tests)) for code, func, tests in keys], self.limits, self.max_workers
        )
        for key, result in zip(keys, results, strict=True):
            for i in jobs[key]:
                scores[i] = result.fraction
        return scores

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["timeout_s"] = self.limits.timeout_s
        return out
