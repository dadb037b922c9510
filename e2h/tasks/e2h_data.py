"""E2H's data tasks, MATH, GSM8K and AQuA: their prompts and answer checks.

They are recipes of the ``dataset`` task (``task.options.recipe``; presets ``task=math``,
``task=gsm8k``, ``task=aqua``): rows ``question``, ``answer``, ``level`` from E2H's hub datasets
(``divelab/math``, ``divelab/gsm8k``, ``divelab/aqua``, splits ``train`` and ``test``) or the same
columns in local JSONL/Parquet files, read and policed like any ``dataset`` run. A recipe gives
E2H's system prompt and user prompt (``config/task/*.yaml``) and a scorer (``task.options.scorer``
picks another):

- ``math``: E2H's ``MathCorrectnessReward``. Both answers are normalized as in appendix D of
  Lewkowycz et al. (2022) (``normalize_final_answer``); equal strings are correct, otherwise
  ``math-verify`` (Hugging Face's maintained verifier) decides whether they are equivalent,
  where E2H asked sympy's LaTeX parser. (In E2H's pinned environment, antlr4-python3-runtime
  4.9.3 with sympy 1.13, that parser refuses to load, and E2H's code turns that ImportError into
  a reward of 0, format included, for every answer whose normalized string differs.)
- ``math_verify``: ``math-verify`` alone, on the raw answer and the gold answer.
- ``gsm8k``: E2H's ``Gsm8kCorrectnessReward``: commas dropped, the first number in the answer
  within 1e-5 of the gold number.
- ``aqua``: E2H's ``AquaCorrectnessReward``: the answer is exactly the gold option letter.

A check returns 1.0 or 0.0; an error while checking is ``SCORE_ERROR`` (E2H: no reward at all).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

from e2h.tasks.base import E2H_SYSTEM_PROMPT, SCORE_ERROR

# -- MATH: E2H's normalization (Lewkowycz et al. 2022, appendix D) --------------------------

INVALID_ANSWER = "[invalidanswer]"
# (text, replacement), applied in order.
_SUBSTITUTIONS = (
    ("an ", ""), ("a ", ""), (".$", "$"), ("\\$", ""), (r"\ ", ""), (" ", ""), ("mbox", "text"),
    (",\\text{and}", ","), ("\\text{and}", ","), ("\\text{m}", "\\text{}"),
)
# Removed wherever they appear, in order.
_REMOVED = (
    "square", "ways", "integers", "dollars", "mph", "inches", "ft", "hours", "km", "units", "\\ldots", "sue",
    "points", "feet", "minutes", "digits", "cents", "degrees", "cm", "gm", "pounds", "meters", "meals", "edges",
    "students", "childrentickets", "multiples", "\\text{s}", "\\text{.}", "\\text{\ns}", "\\text{}^2",
    "\\text{}^3", "\\text{\n}", "\\text{}", r"\mathrm{th}", r"^\circ", r"^{\circ}", r"\;", r",\!", "{,}", '"',
    "\\dots",
)
_UNWRAP = (
    (re.compile(r"(.*?)(\$)(.*?)(\$)(.*)"), "$\\3$"),  # the first $...$
    (re.compile(r"(\\text\{)(.*?)(\})"), "\\2"),
    (re.compile(r"(\\textbf\{)(.*?)(\})"), "\\2"),
    (re.compile(r"(\\overline\{)(.*?)(\})"), "\\2"),
    (re.compile(r"(\\boxed\{)(.*)(\})"), "\\2"),  # greedy: the outermost box
    (re.compile(r"(frac)([^{])(.)"), "frac{\\2}{\\3}"),  # \fracab -> \frac{a}{b}
    (re.compile(r"(sqrt)([^{])"), "sqrt{\\2}"),  # \sqrta -> \sqrt{a}
)


def normalize_final_answer(answer: str) -> str:
    """A final answer normalized the way E2H (after Lewkowycz et al.) compares MATH answers."""
    text = answer.split("=")[-1]
    for before, after in _SUBSTITUTIONS:
        text = text.replace(before, after)
    for removed in _REMOVED:
        text = text.replace(removed, "")
    for pattern, replacement in _UNWRAP:
        text = pattern.sub(replacement, text)
    text = text.replace("$", "")
    if text.replace(",", "").isdigit():
        text = text.replace(",", "")
    return text


def _timeouts() -> dict[str, int | None]:
    # math-verify's timeouts use SIGALRM, which only the main thread may set.
    on_main = threading.current_thread() is threading.main_thread()
    return {"parsing_timeout": 5 if on_main else None, "timeout_seconds": 5 if on_main else None}


def math_verify_equal(gold: str, predicted: str) -> bool:
    """Whether ``math-verify`` finds ``predicted`` equivalent to ``gold``."""
    from math_verify import parse, verify

    t = _timeouts()
    gold_parsed = parse(gold, parsing_timeout=t["parsing_timeout"])
    predicted_parsed = parse(predicted, parsing_timeout=t["parsing_timeout"])
    if not gold_parsed or not predicted_parsed:
        return False
    return bool(verify(gold_parsed, predicted_parsed, timeout_seconds=t["timeout_seconds"]))


def _as_math(text: str) -> str:
    return text if "$" in text or "\\boxed" in text else f"${text}$"


class MathScorer:
    name = "math"
    required_columns = ("answer",)

    def score(self, answer: str, row: Mapping[str, Any]) -> float:
        predicted, gold = normalize_final_answer(answer), normalize_final_answer(str(row["answer"]))
        if predicted == INVALID_ANSWER:
            return 0.0
        if predicted.strip() == gold.strip():
            return 1.0
        try:
            return 1.0 if math_verify_equal(_as_math(gold), _as_math(predicted)) else 0.0
        except Exception:  # E2H's equivalence check counts any failure as not equal
            return 0.0


class MathVerifyScorer:
    name = "math_verify"
    required_columns = ("answer",)

    def score(self, answer: str, row: Mapping[str, Any]) -> float:
        try:
            return 1.0 if math_verify_equal(_as_math(str(row["answer"])), _as_math(answer)) else 0.0
        except Exception:
            return 0.0


_FIRST_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _gold_number(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError("a bool is not a number")
    if isinstance(value, int | float):
        return float(value)
    return float(str(value).replace(",", "").strip())  # our rows hold text; E2H's hold numbers


class Gsm8kScorer:
    name = "gsm8k"
    required_columns = ("answer",)

    def score(self, answer: str, row: Mapping[str, Any]) -> float:
        found = _FIRST_NUMBER.search(answer.replace(",", ""))
        if found is None:
            return 0.0
        try:
            return 1.0 if abs(_gold_number(row["answer"]) - float(found.group(0))) < 1e-5 else 0.0
        except (TypeError, ValueError):  # E2H: abs() of a non-number raises, no reward at all
            return SCORE_ERROR


class AquaScorer:
    name = "aqua"
    required_columns = ("answer",)

    def score(self, answer: str, row: Mapping[str, Any]) -> float:
        return 1.0 if answer == row["answer"] else 0.0


SCORERS = {cls.name: cls for cls in (MathScorer, MathVerifyScorer, Gsm8kScorer, AquaScorer)}

# -- recipes: E2H's prompts and checks -----------------------------------------------------

_SHOW_WORK = "Show your work in <think> </think> tags. And return the final answer in <answer> </answer> tags"
RECIPES: dict[str, dict[str, str]] = {
    "math": {
        "system_prompt": E2H_SYSTEM_PROMPT,
        "user_template": "Solve the following math problem\n{question}\n\nShow your work in <think> </think> tags. "
                         "And return the final answer in \\boxed{{}}, wrapped in <answer> </answer> tags, for example "
                         "<answer>\\boxed{{500}}</answer>.",
        "scorer": "math",
    },
    "gsm8k": {
        "system_prompt": E2H_SYSTEM_PROMPT,
        "user_template": "Solve the following math problem\n{question}\n\n " + _SHOW_WORK
                         + ", for example <answer> 500 </answer>.",
        "scorer": "gsm8k",
    },
    "aqua": {
        "system_prompt": E2H_SYSTEM_PROMPT,
        "user_template": "Solve the following math problem and choose an answer from the given options\n{question}"
                         "\n\n " + _SHOW_WORK + ", for example <answer> C </answer>.",
        "scorer": "aqua",
    },
}
