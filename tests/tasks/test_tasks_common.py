"""Contract tests every generated task must pass, at every level it can generate."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from e2h.tasks import TASKS, get_task
from tests.tasks.tasks_helpers import GENERATED_TASKS, columns, completion, wrong_answer

CASES = [(name, level) for name in GENERATED_TASKS for level in TASKS[name].available_levels]


@pytest.fixture(scope="module")
def tasks():
    return {name: get_task(name) for name in GENERATED_TASKS}


@pytest.mark.parametrize(("name", "level"), CASES)
def test_gold_wrong_and_badly_formatted(tasks, name, level):
    task = tasks[name]
    rows = task.generate(level, 3 if name == "coding" else 20, seed=7)
    cols = columns(rows)
    gold = task.reward([completion(r["solution"]) for r in rows], **cols)
    assert gold == [task.max_reward] * len(rows)
    wrong = task.reward([completion(wrong_answer(name, r)) for r in rows], **cols)
    assert wrong == [task.format_reward] * len(rows)
    # The gold answer without the format earns nothing.
    bad = task.reward([f"<answer>{r['solution']}</answer>" for r in rows], **cols)
    assert bad == [0.0] * len(rows)


@pytest.mark.parametrize(("name", "level"), CASES)
def test_rows_have_the_contract_columns(tasks, name, level):
    task = tasks[name]
    for row in task.generate(level, 5, seed=1):
        assert row["level"] == level
        for key in ("question", "answer", "solution"):
            assert isinstance(row[key], str) and row[key], key
        json.dumps(row)  # JSON-able, so it can go into datasets / JSONL


@pytest.mark.parametrize("name", GENERATED_TASKS)
def test_generation_is_deterministic_for_a_seed(tasks, name):
    task = tasks[name]
    level = task.levels[-1]
    assert task.generate(level, 30, seed=3) == get_task(name).generate(level, 30, seed=3)
    assert task.generate(level, 30, seed=3) != task.generate(level, 30, seed=4)


def test_generation_does_not_touch_the_global_random_state(tasks):
    import random

    random.seed(1234)
    expected = random.random()
    random.seed(1234)
    for name in GENERATED_TASKS:
        tasks[name].generate(tasks[name].levels[0], 5, seed=0)
    assert random.random() == expected


@pytest.mark.parametrize("name", GENERATED_TASKS)
def test_chat_message_completions_score_like_strings(tasks, name):
    task = tasks[name]
    rows = task.generate(task.levels[0], 2, seed=0)
    messages = [[{"role": "assistant", "content": completion(r["solution"])}] for r in rows]
    parts = [
        [{"role": "assistant", "content": [{"type": "text", "text": completion(r["solution"])}]}]
        for r in rows
    ]
    cols = columns(rows)
    assert task.reward(messages, **cols) == [task.max_reward] * 2
    assert task.reward(parts, **cols) == [task.max_reward] * 2


@pytest.mark.parametrize("name", GENERATED_TASKS)
def test_reward_ignores_extra_kwargs_and_needs_its_columns(tasks, name):
    task = tasks[name]
    rows = task.generate(task.levels[0], 2, seed=0)
    cols = columns(rows)
    comps = [completion(r["solution"]) for r in rows]
    extra = {
        "prompts": ["p", "q"],
        "trainer_state": object(),
        "completion_ids": [[1], [2]],
        "other": [1, 2, 3],
    }
    assert task.reward(comps, **cols, **extra) == [task.max_reward] * 2
    needed = task.required_columns[0]
    without = {k: v for k, v in cols.items() if k != needed}
    with pytest.raises(ValueError, match=needed):
        task.reward(comps, **without)
    with pytest.raises(ValueError, match=needed):
        task.reward(comps, **{**cols, needed: cols[needed][:1]})


@pytest.mark.parametrize("name", GENERATED_TASKS)
def test_as_reward_func_is_named_for_trl(tasks, name):
    func = tasks[name].as_reward_func()
    assert func.__name__ == f"{name}_reward"
    rows = tasks[name].generate(tasks[name].levels[0], 1, seed=0)
    assert func([completion(rows[0]["solution"])], **columns(rows)) == [tasks[name].max_reward]


@pytest.mark.parametrize(
    ("name", "levels", "heldout", "format_reward", "correctness_reward"),
    [
        ("countdown", [2, 3, 4, 5], [6], 0.1, 0.9),
        ("blocksworld", [1, 2, 4, 6], [8], 1.0, 2.0),
        ("arithmetic", [0, 1, 2, 3, 4], [5], 0.1, 0.9),
        ("coding", [1, 2, 3, 4], [5], 0.1, 0.9),
    ],
)
def test_defaults_match_e2h(name, levels, heldout, format_reward, correctness_reward):
    task = get_task(name)
    assert task.levels == task.level_values == levels
    assert task.heldout_levels == heldout
    assert task.test_levels == sorted(levels + heldout)
    assert (task.format_reward, task.correctness_reward) == (format_reward, correctness_reward)
    assert task.max_reward == pytest.approx(format_reward + correctness_reward)
    assert [task.level_index(v) for v in levels] == list(range(len(levels)))


def test_training_on_the_default_held_out_level_removes_it_from_held_out():
    task = get_task("countdown", levels=[2, 3, 4, 5, 6])
    assert task.heldout_levels == [] and task.test_levels == [2, 3, 4, 5, 6]


def test_weights_and_levels_are_options():
    task = get_task("countdown", levels=[5, 3], heldout_levels=[7], format_reward=0.5, correctness_reward=2.0)
    assert task.levels == [3, 5] and task.heldout_levels == [7] and task.max_reward == 2.5
    row = task.generate(3, 1, seed=0)[0]
    assert task.reward([completion(row["solution"])], **columns([row])) == [2.5]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: get_task("chess"),
            "unknown task 'chess'; known tasks: arithmetic, blocksworld, coding, countdown",
        ),
        (lambda: get_task("countdown", levle=[2]), "levle: unknown option for task 'countdown'; options: levels, "),
        (lambda: get_task("countdown").generate(9, 1, seed=0), "unknown level 9 for task 'countdown'"),
        (lambda: get_task("countdown", levels=[2, 9]), "unknown level 9"),
        (lambda: get_task("countdown", levels=[]), "levels: must not be empty"),
        (lambda: get_task("countdown", levels=[2, 2]), "duplicates"),
        (
            lambda: get_task("countdown", levels=[2, 6], heldout_levels=[6]),
            "level 6 is both a training level and a held-out level",
        ),
        (lambda: get_task("countdown", format_reward=-1), "format_reward: Input should be greater than or equal to 0"),
        (lambda: get_task("countdown", format_reward=0, correctness_reward=0), "must be > 0"),
        (lambda: get_task("arithmetic").generate(0, -1, seed=0), "n must be >= 0"),
        (lambda: get_task("arithmetic").generate("0", 1, seed=0), "unknown level '0'"),
        (lambda: get_task("arithmetic").level_index(5), "level 5 is not a training level"),
        (lambda: get_task("coding", num_tests=1), "num_tests: Input should be greater than or equal to 2"),
        (lambda: get_task("coding", timeout_s=0), "timeout_s: Input should be greater than 0"),
    ],
)
def test_bad_input_raises_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_describe_lists_levels_and_held_out_levels():
    from e2h.tasks import describe_tasks

    described = {d["name"]: d for d in describe_tasks()}
    assert set(described) == set(TASKS)
    assert described["countdown"]["levels"] == [2, 3, 4, 5]
    assert described["countdown"]["heldout_levels"] == [6]
    assert described["blocksworld"]["max_reward"] == 3.0
    assert "path" in described["dataset"]["options"]
    json.dumps(described)


def test_importing_tasks_stays_light():
    code = (
        "import sys, e2h.tasks\n"
        "print([m for m in ('torch', 'transformers', 'datasets', 'trl') if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("name", GENERATED_TASKS)
def test_ten_thousand_rows_take_seconds_not_minutes(name):
    import time

    task = get_task(name)
    level = task.heldout_levels[0]  # the hardest default level
    start = time.perf_counter()
    rows = task.generate(level, 10_000, seed=0)
    elapsed = time.perf_counter() - start
    assert len(rows) == 10_000
    assert elapsed < 30, f"{name} level {level}: {elapsed:.1f}s for 10,000 rows"  # ~1 s on a 2-core VM
