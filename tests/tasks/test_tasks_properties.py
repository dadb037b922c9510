"""Property tests: no reward function ever raises or leaves [0, max_reward]."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2h.tasks import get_task, parse_completion
from tests.tasks.tasks_helpers import columns

FAST_TASKS = ("countdown", "arithmetic", "blocksworld")
TASKS = {name: get_task(name) for name in FAST_TASKS}
CODING = get_task("coding", timeout_s=2.0)
ROWS = {
    name: task.generate(task.levels[-1], 1, seed=0)[0] for name, task in {**TASKS, "coding": CODING}.items()
}

# Answers drawn from each task's own vocabulary hit the scorer's deep paths, not just the format check.
VOCAB = {
    "countdown": st.text(alphabet="0123456789+-*/() =.x_", max_size=60),
    "arithmetic": st.text(alphabet="0123456789+-. ", max_size=30),
    "blocksworld": st.lists(
        st.sampled_from(
            [
                "pick up the red block",
                "put down the red block",
                "unstack the red block from on top of the blue block",
                "stack the blue block on top of the red block",
                "1. pick up the blue block.",
                "[PLAN]",
                "fly",
                "",
            ]
            + [f"pick up the {b} block" for b in ROWS["blocksworld"]["blocks"]]
            + [f"put down the {b} block" for b in ROWS["blocksworld"]["blocks"]]
        ),
        max_size=12,
    ).map("\n".join),
}
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ANY_TEXT = st.text(max_size=300)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["role", "content", "text"]), inner)
    ),
    max_leaves=12,
)


def assert_in_range(task, rewards, n):
    assert len(rewards) == n
    assert all(isinstance(r, float) and 0.0 <= r <= task.max_reward for r in rewards)


@pytest.mark.parametrize("name", FAST_TASKS)
@PROPERTY
@given(text=ANY_TEXT)
def test_arbitrary_text(name, text):
    task = TASKS[name]
    rewards = task.reward([text, "x</think>" + text, text + "</answer>"], **columns([ROWS[name]] * 3))
    assert_in_range(task, rewards, 3)


@pytest.mark.parametrize("name", FAST_TASKS)
@PROPERTY
@given(data=st.data())
def test_well_formatted_arbitrary_answers(name, data):
    task = TASKS[name]
    answer = data.draw(st.one_of(ANY_TEXT, VOCAB[name]))
    completion = f"reasoning</think>\n<answer>{answer}</answer>"
    [reward] = task.reward([completion], **columns([ROWS[name]]))
    assert 0.0 <= reward <= task.max_reward
    # Well formatted means at least the format reward; anything else means exactly 0.
    assert reward >= task.format_reward if parse_completion(completion).format_ok else reward == 0.0


@pytest.mark.parametrize("name", FAST_TASKS)
@PROPERTY
@given(completion=JSONISH)
def test_arbitrary_objects_as_completions(name, completion):
    task = TASKS[name]
    assert_in_range(task, task.reward([completion], **columns([ROWS[name]])), 1)


@pytest.mark.parametrize("name", FAST_TASKS)
@PROPERTY
@given(value=JSONISH)
def test_arbitrary_row_values_score_zero_rather_than_raise(name, value):
    task = TASKS[name]
    row = {key: value for key in task.required_columns}
    [reward] = task.reward([f"r</think>\n<answer>{ROWS[name]['solution']}</answer>"], **columns([row]))
    assert 0.0 <= reward <= task.max_reward


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answer=st.one_of(ANY_TEXT, st.text(alphabet="def solve(xs):\n return[]+*1 ", max_size=80)))
def test_coding_arbitrary_answers(answer):
    rewards = CODING.reward(
        [answer, f"r</think>\n<answer>{answer}</answer>"], tests=[ROWS["coding"]["tests"]] * 2
    )
    assert_in_range(CODING, rewards, 2)
    assert rewards[0] == 0.0 or parse_completion(answer).format_ok


def test_coding_malformed_tests_column_scores_zero():
    gold = f"r</think>\n<answer>{ROWS['coding']['solution']}</answer>"
    rewards = CODING.reward([gold] * 4, tests=["not json", json.dumps([]), None, json.dumps([{"args": 1}])])
    assert rewards == [CODING.format_reward] * 4
