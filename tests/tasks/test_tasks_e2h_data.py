"""E2H's data tasks (issue 19): MATH, GSM8K and AQuA from local files the test writes, E2H's prompts, and the
answer checks (math-verify for MATH, E2H's number rule for GSM8K, the exact option letter for AQuA)."""

from __future__ import annotations

import json

import pytest

from e2h.config import compose
from e2h.tasks import build_dataset, get_task
from e2h.tasks.e2h_data import RECIPES
from tests.tasks.tasks_helpers import completion

MATH_ROWS = [  # (question, gold answer, level)
    ("What is $\\frac{1}{4} + \\frac{1}{4}$?", "\\frac{1}{2}", 0),
    ("Simplify $\\sqrt{8}$.", "2\\sqrt{2}", 1),
    ("A square has side $10$ cm. What is its side in cm?", "10", 1),
    ("Expand $(x+1)^2 - 2x$.", "x^2+1", 2),
    ("Find the point where $y = 2x$ meets $x = 1$.", "(1,2)", 3),
    ("What is $0.75$ as a fraction?", "\\frac{3}{4}", 4),
]
GSM8K_ROWS = [("Tom has 1,200 apples and buys 34 more. How many?", "1234", 0),
              ("A pen costs $2.50. What do 3 pens cost in dollars?", "7.5", 1),
              ("It is 5 degrees and drops 9. What is it now?", "-4", 2)]
AQUA_ROWS = [("Two trains... Options: A)10 B)12 C)15 D)20 E)25", "C", 0),
             ("A shop sells... Options: A)1 B)2 C)3 D)4 E)5", "E", 1)]


def _write_splits(directory, rows, suffix: str = "jsonl"):
    directory.mkdir()
    records = [{"question": q, "answer": a, "level": lv, "solution": a} for q, a, lv in rows]
    for split, part in (("train", records), ("test", [{**r, "question": r["question"] + " (test)"} for r in records])):
        if suffix == "jsonl":
            (directory / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(part), directory / f"{split}.parquet")
    return directory


def _reward(task, answer: str, gold: str) -> float:
    return task.reward([completion(answer)], answer=[gold])[0]


@pytest.fixture
def math_task(tmp_path):
    path = _write_splits(tmp_path / "math", MATH_ROWS)
    return get_task("dataset", path=str(path), test_split="test", recipe="math", levels=[0, 1, 2, 3],
                    heldout_levels=[4])


@pytest.mark.parametrize(
    ("answer", "gold", "correct"),
    [
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}", True),
        ("\\boxed{0.5}", "\\frac{1}{2}", True),  # equal by math-verify, not by the normalized strings
        ("\\boxed{\\dfrac{1}{2}}", "\\frac{1}{2}", True),
        ("\\boxed{\\frac12}", "\\frac{1}{2}", True),  # E2H's shorthand rule
        ("\\boxed{0.6}", "\\frac{1}{2}", False),
        ("\\boxed{\\sqrt{8}}", "2\\sqrt{2}", True),
        ("\\boxed{10 \\text{ cm}}", "10", True),  # units dropped by E2H's normalization
        ("$10$ cm", "10", True),
        ("\\boxed{11}", "10", False),
        ("\\boxed{1 + x^2}", "x^2+1", True),
        ("\\boxed{(1, 2)}", "(1,2)", True),
        ("\\boxed{(2, 1)}", "(1,2)", False),
        ("\\boxed{\\frac{6}{8}}", "\\frac{3}{4}", True),
        ("x = \\boxed{\\frac{3}{4}}", "\\frac{3}{4}", True),
        ("no idea", "\\frac{3}{4}", False),
    ],
)
def test_math_answers(math_task, answer, gold, correct):
    assert _reward(math_task, answer, gold) == pytest.approx(1.0 if correct else 0.1)


def test_math_verify_alone_is_an_option(tmp_path):
    path = _write_splits(tmp_path / "math", MATH_ROWS)
    task = get_task("dataset", path=str(path), test_split="test", recipe="math", scorer="math_verify",
                    levels=[0, 1, 2, 3], heldout_levels=[4])
    assert _reward(task, "\\boxed{0.5}", "\\frac{1}{2}") == pytest.approx(1.0)
    assert _reward(task, "\\boxed{0.4}", "\\frac{1}{2}") == pytest.approx(0.1)


def test_math_rows_prompts_and_levels(math_task):
    data = build_dataset(math_task, train_levels=[0, 1, 2, 3], test_levels=[0, 1, 2, 3, 4], train_size=10,
                         test_size=10, seed=0)
    assert sorted(r["question"] for r in data.train) == sorted(q for q, _, lv in MATH_ROWS if lv < 4)
    assert {r["level"] for r in data.test} == {0, 1, 2, 3, 4} and all("(test)" in r["question"] for r in data.test)
    row = data.test[0]
    expected_user = RECIPES["math"]["user_template"].format(question=row["question"])
    assert expected_user.startswith("Solve the following math problem\n") and "\\boxed{}" in expected_user
    assert expected_user in row["prompt"] and row["prompt"].endswith("Let me solve this step by step.\n<think>")
    # the gold answer, boxed as the prompt asks, earns the full reward on every row
    gold = [completion("\\boxed{" + r["answer"] + "}") for r in data.train + data.test]
    assert math_task.reward(gold, answer=[r["answer"] for r in data.train + data.test]) == [1.0] * len(gold)


@pytest.mark.parametrize(
    ("answer", "gold", "correct"),
    [("1234", "1234", True), ("1,234 apples", "1234", True), ("$7.50", "7.5", True), ("7.5 dollars", "7.5", True),
     ("-4", "-4", True), ("4 degrees below zero", "-4", False), ("about 1233 or 1234", "1234", False),
     ("none", "1234", False), ("\\boxed{1234}", "1234", True)],
)
def test_gsm8k_answers(tmp_path, answer, gold, correct):
    path = _write_splits(tmp_path / "gsm8k", GSM8K_ROWS, "parquet")
    task = get_task("dataset", path=str(path), test_split="test", recipe="gsm8k", levels=[0, 1, 2])
    assert _reward(task, answer, gold) == pytest.approx(1.0 if correct else 0.1)
    rows = task.sample(1, 5, 0, "test")
    assert rows and rows[0]["question"].endswith("(test)")  # the test split's own rows
    assert RECIPES["gsm8k"]["user_template"].format(question="Q").startswith("Solve the following math problem\nQ\n\n")


@pytest.mark.parametrize(("answer", "correct"), [("C", True), ("(C)", False), ("c", False), ("C)", False),
                                                 ("Option C", False), ("D", False), (" C ", True)])
def test_aqua_answers_are_the_exact_letter(tmp_path, answer, correct):
    path = _write_splits(tmp_path / "aqua", AQUA_ROWS)
    task = get_task("dataset", path=str(path), test_split="test", recipe="aqua", levels=[0, 1])
    assert _reward(task, answer, "C") == pytest.approx(1.0 if correct else 0.1)  # " C " is stripped, as in E2H


def test_the_presets_take_a_local_copy(tmp_path):
    path = _write_splits(tmp_path / "math", MATH_ROWS)
    c = compose(["task=math", f"task.options.path={path}", "algorithm.max_prompt_length=null"])
    assert c.task.options == {"path": str(path), "test_split": "test", "recipe": "math"}
    heldout = sorted(set(c.task.test_levels) - set(c.task.train_levels))
    task = get_task(c.task.name, **c.task.options, levels=c.task.train_levels, heldout_levels=heldout)
    assert (task.levels, task.heldout_levels, task.scorer.name) == ([0, 1, 2, 3], [4], "math")


def test_a_missing_level_names_the_levels_present(tmp_path):
    path = _write_splits(tmp_path / "aqua", AQUA_ROWS)
    with pytest.raises(ValueError, match=r"unknown level 2 .*available levels: \[0, 1\]"):
        get_task("dataset", path=str(path), test_split="test", recipe="aqua", levels=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="recipe: Input should be 'math', 'gsm8k' or 'aqua'"):
        get_task("dataset", path=str(path), recipe="svamp", levels=[0])
