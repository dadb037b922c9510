"""Blocksworld: E2H's plan rules (the default), the seed's lenient ones, and optimal generated levels."""

from __future__ import annotations

from collections import deque

import pytest

from e2h.tasks import get_task
from e2h.tasks.blocksworld import parse_plan, parse_state
from tests.tasks.tasks_helpers import completion

TASK = get_task("blocksworld")
SEED = get_task("blocksworld", rules="seed")
# blue on the table with red on it, orange on the table; goal: red on orange.
ROW = {
    "init_stacks": [["blue", "red"], ["orange"]],
    "init_holding": "",
    "goal_stacks": [["orange", "red"], ["blue"]],
    "question": "the red block is clear, the orange block is clear, the hand is empty, the red block is on top of "
                "the blue block, the blue block is on the table and the orange block is on the table",
    "answer": "the red block is on top of the orange block, the orange block is on the table and the blue block is "
              "on the table",
}
UNSTACK = "unstack the red block from on top of the blue block"
STACK = "stack the red block on top of the orange block"
OPTIMAL = f"{UNSTACK}\n{STACK}"
ROW["solution"] = OPTIMAL
HOLDING = {"init_stacks": [["blue"]], "init_holding": "red", "goal_stacks": [["blue", "red"]],
           "question": "the blue block is clear, the hand is holding the red block and the blue block is on the table",
           "solution": "stack the red block on top of the blue block"}


def plan(*lines: str) -> str:
    return "\n".join(lines)


def reward(answer: str, row: dict = ROW, task=TASK) -> float:
    return task.reward([completion(answer)], **{k: [v] for k, v in row.items()})[0]


DETOUR = plan(UNSTACK, "put down the red block", "pick up the red block", STACK)  # 4 actions, optimal is 2


@pytest.mark.parametrize(
    ("answer", "e2h", "seed"),
    [
        (OPTIMAL, 3.0, 3.0),
        (DETOUR, 1.0 + 1.0 + 2 / 4, 3.0),  # E2H: 1 + 1 + m/n for a longer plan; the seed: any valid plan
        (plan("1. " + UNSTACK, "2. " + STACK), 1.0, 3.0),  # E2H reads no numbering
        (f"Unstack the Red block from on top of the blue block; {STACK}.", 1.0, 3.0),  # nor ";"
        (plan("Unstack the Red block from on top of the BLUE block!", STACK + "."), 3.0, 1.0),  # seed: "." only
        (plan(OPTIMAL, "[PLAN END]"), 3.0, 3.0),
        (plan("[PLAN]", OPTIMAL, "[PLAN END]"), 1.0, 3.0),
        (plan(f"- {UNSTACK}.", "", f"- {STACK}."), 1.0, 3.0),
        (plan(UNSTACK, "", "   ", STACK), 3.0, 3.0),  # blank lines are skipped
        ("unstack the red block from on top of the  blue block\n" + STACK, 1.0, 3.0),  # E2H: single spaces
        (plan("pick up the red block", STACK), 1.0, 1.0),  # red is not on the table
        (STACK, 1.0, 1.0),  # not holding red
        (plan("unstack the red block from on top of the orange block", STACK), 1.0, 1.0),
        (plan("unstack the blue block from on top of the red block", STACK), 1.0, 1.0),
        (plan(UNSTACK, "stack the red block on top of the purple block"), 1.0, 1.0),  # no such block
        # E2H lets a block go onto a block the problem does not have, and back
        (plan(UNSTACK, "stack the red block on top of the purple block",
              "unstack the red block from on top of the purple block", STACK), 2.5, 1.0),
        (plan(UNSTACK, "stack the red block on top of the red block"), 1.0, 1.0),
        (UNSTACK, 1.0, 1.0),  # stops early
        (plan(OPTIMAL, "unstack the red block from on top of the orange block"), 1.0, 1.0),  # ends holding it
        (plan(OPTIMAL, "pick up the blue block"), 1.0, 1.0),
        (plan(UNSTACK, "think about it", STACK), 1.0, 1.0),  # not an action
        ("move the red block onto the orange block", 1.0, 1.0),
        (plan("pick up the blue block", "put down the blue block", OPTIMAL), 1.0, 1.0),  # blue is not clear
        (plan(UNSTACK, "unstack the orange block from on top of the x block"), 1.0, 1.0),
        ("", 0.0, 0.0),
    ],
)
def test_tricky_plans(answer, e2h, seed):
    assert reward(answer) == pytest.approx(e2h)
    assert reward(answer, task=SEED) == pytest.approx(seed)


def test_a_held_block_starts_odd_levels():
    for task in (TASK, SEED):
        assert reward("stack the red block on top of the blue block", HOLDING, task) == pytest.approx(3.0)
        assert reward("put down the red block", HOLDING, task) == pytest.approx(1.0)
        assert reward(
            "pick up the red block\nstack the red block on top of the blue block", HOLDING, task
        ) == pytest.approx(1.0)


def test_numbered_blocks_and_states_read_as_e2h_reads_them():
    state = parse_state("the Block 3 is clear, the hand is holding the red block and the block 3 is on the table")
    assert state == {"3": "table", "red": "hand"}
    row = {"question": "the block 1 is clear, the hand is empty and the block 1 is on the table",
           "solution": "pick up the block 1\nput down the block 1"}
    assert reward("pick up the 1 block\nput down the block 1", row) == pytest.approx(3.0)


def test_bad_rules_name_the_option():
    with pytest.raises(ValueError, match="rules: Input should be 'e2h' or 'seed'"):
        get_task("blocksworld", rules="strict")


def test_parse_plan_rejects_unknown_lines_and_huge_plans():
    assert parse_plan("pick up the red block") == [("pick-up", "red", None)]
    assert parse_plan("pick up the red block\nfly") is None
    assert parse_plan("pick up the red block\nput down the red block\n" * 200) is None


def _bfs_distance(row: dict) -> int:
    """Independent BFS over (positions, held) states: the optimal plan length."""

    def key(below, held):
        return (tuple(sorted(below.items())), held)

    below = {b: (s[k - 1] if k else "") for s in row["init_stacks"] for k, b in enumerate(s)}
    goal = {b: (s[k - 1] if k else "") for s in row["goal_stacks"] for k, b in enumerate(s)}
    start = key(below, row["init_holding"] or None)
    target = key(goal, None)
    dist = {start: 0}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        if state == target:
            return dist[state]
        items, held = state
        below = dict(items)
        clear = [b for b in below if b not in below.values()]
        nexts = []
        if held is None:
            for b in clear:
                rest = {k: v for k, v in below.items() if k != b}
                nexts.append(key(rest, b))
        else:
            nexts.append(key({**below, held: ""}, None))
            nexts.extend(key({**below, held: b}, None) for b in clear)
        for nxt in nexts:
            if nxt not in dist:
                dist[nxt] = dist[state] + 1
                queue.append(nxt)
    raise AssertionError("goal unreachable")


@pytest.mark.parametrize("level", TASK.available_levels)
def test_generated_level_is_the_optimal_plan_length(level):
    rows = TASK.generate(level, 15, seed=level)
    for row in rows:
        assert len(row["solution"].splitlines()) == level
        assert _bfs_distance(row) == level
        assert bool(row["init_holding"]) == (level % 2 == 1)
        blocks = sorted(b for s in row["init_stacks"] for b in s) + (
            [row["init_holding"]] if row["init_holding"] else []
        )
        assert sorted(blocks) == row["blocks"] == sorted(b for s in row["goal_stacks"] for b in s)
        assert len(row["blocks"]) in TASK.block_counts(level)
        assert "the hand is" in row["question"] and "the hand" not in row["answer"]
        # E2H's row: the initial state, the goal state and the plan; the plan reaches the goal under E2H's rules
        assert reward(row["solution"], row) == pytest.approx(TASK.max_reward)
        assert parse_state(row["answer"]) == {
            b: (s[k - 1] if k else "table") for s in row["goal_stacks"] for k, b in enumerate(s)
        }
