"""Blocksworld: write a plan that rearranges stacks of blocks into a goal configuration.

Level = optimal plan length in actions (E2H trains on 1, 2, 4, 6 and holds out 8). A
problem has 3-5 blocks (4-5 from level 7 on). The start state is random; when the level
is odd the hand starts holding a block (every action picks up or puts down, so from an
empty hand only even lengths end with an empty hand). The goal comes from a random walk
of ``level`` actions that never revisits a state: each step moves to a neighbour one
breadth-first-search layer further from the start, so the BFS distance confirms the
walk's end is exactly ``level`` actions away and the walk is an optimal plan (the
``solution``). The goal lists where every block is, with the hand empty.

Rows are E2H's (``divelab/blocksworld``): ``question`` is the initial state, ``answer`` the goal
state (every block's place, hand empty) and ``solution`` the optimal plan, one action per line;
the prompt is E2H's. Plans are checked by E2H's ``BlocksworldCorrectnessReward`` rules
(``rules="e2h"``, the default), reimplemented here on parsed states:
    pick up the X block
    unstack the X block from on top of the Y block
    put down the X block
    stack the X block on top of the Y block
one per line (case ignored, "block 3" read as "3 block", trailing punctuation allowed, lines
holding "[plan end]" and blank lines skipped; numbering or any other line makes the plan
wrong). Every action must be legal in turn (E2H lets a block be stacked on a block the problem
does not have) and the final state must be the one the reference plan reaches. A reaching plan
of n actions, against the reference's m, earns ``correctness_reward * (1 + f) / 2`` with f = 1
when n <= m and m / n otherwise: with E2H's weights (1.0 + 2.0) that is E2H's reward, 1 + 1 + f.

``rules="seed"`` is this project's earlier, deliberately more lenient check (off by default):
numbering like "1." and ";" between actions are accepted, and any valid plan reaching the goal
scores the full correctness reward whatever its length.
"""

from __future__ import annotations

import functools
import random
import re
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import Field

from e2h.tasks import base
from e2h.tasks.base import Task, TaskOptions

COLORS = (
    "red", "blue", "orange", "yellow", "white", "magenta",
    "black", "cyan", "green", "violet", "silver", "gold",
)  # fmt: skip
MAX_PLAN_ACTIONS = 200
MAX_PLAN_CHARS = 20_000
# E2H's prompt (config/task/blocksworld.yaml, as YAML reads it).
_E2H_RULE_LINES = (
    "I am playing with a set of blocks where I need to arrange the blocks into stacks. Here are the actions I can do",
    "", "Pick up a block", "Unstack a block from on top of another block", "Put down a block",
    "Stack a block on top of another block", "", "I have the following restrictions on my actions:",
    "I can only pick up or unstack one block at a time.", "I can only pick up or unstack a block if my hand is empty.",
    "I can only pick up a block if the block is on the table and the block is clear.",
    "A block is clear if the block has no other blocks on top of it and if the block is not picked up.",
    "I can only unstack a block from on top of another block if the block I am unstacking was really on top of "
    "the other block.",
    "I can only unstack a block from on top of another block if the block I am unstacking is clear.",
    "Once I pick up or unstack a block, I am holding the block.", "I can only put down a block that I am holding.",
    "I can only stack a block on top of another block if I am holding the block being stacked.",
    "I can only stack a block on top of another block if the block onto which I am stacking the block is clear.",
    "Once I put down or stack a block, my hand becomes empty.", "", "Here is the format of the actions:",
    "pick up the [block_name] block", "unstack the [block_name] block from on top of the [another_block_name] block",
    "put down the [block_name] block", "stack the [block_name] block on top of the [another_block_name] block", "",
    "[Problem]", "Here is the initial state of the blocks: {question}",
    "Here is the goal state of the blocks: {answer}. Show your work in <think> </think> tags. After that, provide "
    "the final answer in <answer> </answer> tags, for example:",
    "<answer>", "unstack the cyan block from on top of the emerald block", "put down the cyan block", "</answer>",
)
E2H_USER_TEMPLATE = "\n ".join(_E2H_RULE_LINES) + "\n"
PLAN_RULES = ("e2h", "seed")

# A state is (stacks, held): stacks a sorted tuple of bottom-to-top tuples of block ids,
# held the id of the block in hand or -1.
State = tuple[tuple[tuple[int, ...], ...], int]
Action = tuple[str, int, int]  # (kind, block, other block or -1)

# The four actions of the plan grammar; the seed's parser matches them whole, E2H's allows trailing punctuation.
_ACTION_PHRASES = {
    "unstack": r"unstack the (\w+) block from on top of the (\w+) block",
    "stack": r"stack the (\w+) block on top of the (\w+) block",
    "pick-up": r"pick up the (\w+) block",
    "put-down": r"put down the (\w+) block",
}
_ACTION_RES = [(kind, re.compile(phrase)) for kind, phrase in _ACTION_PHRASES.items()]
_NUMBERING_RE = re.compile(r"^\s*(?:step\s*)?(?:\d+\s*[.):]|[-*\u2022])\s*", re.IGNORECASE)


def _successors(state: State) -> list[tuple[Action, State]]:
    stacks, held = state
    out = []
    if held < 0:
        for i, stack in enumerate(stacks):
            top = stack[-1]
            rest = stacks[:i] + ((stack[:-1],) if len(stack) > 1 else ()) + stacks[i + 1 :]
            action = ("pick-up", top, -1) if len(stack) == 1 else ("unstack", top, stack[-2])
            out.append((action, (tuple(sorted(rest)), top)))
    else:
        out.append((("put-down", held, -1), (tuple(sorted(stacks + ((held,),))), -1)))
        for i, stack in enumerate(stacks):
            rest = stacks[:i] + (stack + (held,),) + stacks[i + 1 :]
            out.append((("stack", held, stack[-1]), (tuple(sorted(rest)), -1)))
    return out


class _Graph:
    """Every state of ``n`` blocks with its moves, and BFS distances on demand."""

    def __init__(self, n: int):
        start: State = (tuple((i,) for i in range(n)), -1)
        self.index: dict[State, int] = {start: 0}
        self.states: list[State] = [start]
        queue = deque([start])
        while queue:
            for _, nxt in _successors(queue.popleft()):
                if nxt not in self.index:
                    self.index[nxt] = len(self.states)
                    self.states.append(nxt)
                    queue.append(nxt)
        self.moves: list[list[tuple[Action, int]]] = [
            [(action, self.index[nxt]) for action, nxt in _successors(s)] for s in self.states
        ]
        self.empty_hand = [i for i, s in enumerate(self.states) if s[1] < 0]
        self.holding = [i for i, s in enumerate(self.states) if s[1] >= 0]
        self.distances = functools.lru_cache(maxsize=4096)(self._bfs)

    def _bfs(self, source: int) -> list[int]:
        dist = [-1] * len(self.states)
        dist[source] = 0
        queue = deque([source])
        while queue:
            u = queue.popleft()
            for _, v in self.moves[u]:
                if dist[v] < 0:
                    dist[v] = dist[u] + 1
                    queue.append(v)
        return dist


@functools.cache
def _graph(n: int) -> _Graph:
    return _Graph(n)


def action_text(action: Action, names: Sequence[str]) -> str:
    kind, x, y = action
    if kind == "pick-up":
        return f"pick up the {names[x]} block"
    if kind == "put-down":
        return f"put down the {names[x]} block"
    if kind == "unstack":
        return f"unstack the {names[x]} block from on top of the {names[y]} block"
    return f"stack the {names[x]} block on top of the {names[y]} block"


def parse_plan(text: str) -> list[tuple[str, str, str | None]] | None:
    """Actions of a plan as (kind, block, other block or None), or None if any line is not
    an action of the grammar."""
    if len(text) > MAX_PLAN_CHARS:
        return None
    actions = []
    for line in text.splitlines():
        for piece in line.split(";"):
            piece = _NUMBERING_RE.sub("", piece).strip().rstrip(".").strip().lower()
            piece = " ".join(piece.split())
            if not piece or piece in ("[plan]", "[plan end]"):
                continue
            for kind, pattern in _ACTION_RES:
                match = pattern.fullmatch(piece)
                if match:
                    actions.append((kind, match.group(1), match.group(2) if pattern.groups == 2 else None))
                    break
            else:
                return None
            if len(actions) > MAX_PLAN_ACTIONS:
                return None
    return actions


def plan_reaches_goal(
    actions: Sequence[tuple[str, str, str | None]],
    init_stacks: Sequence[Sequence[str]],
    init_holding: str,
    goal_stacks: Sequence[Sequence[str]],
) -> bool:
    """Simulate ``actions`` from the initial state; True if each is legal and the goal holds."""
    below: dict[str, str] = {}  # block -> block under it, or "" for the table
    for stack in init_stacks:
        for k, block in enumerate(stack):
            below[str(block)] = str(stack[k - 1]) if k else ""
    held = str(init_holding) if init_holding else None
    blocks = set(below) | ({held} if held else set())

    def clear(block: str) -> bool:
        return block in below and all(under != block for under in below.values())

    for kind, x, y in actions:
        if x not in blocks or (y is not None and y not in blocks):
            return False
        if kind in ("pick-up", "unstack"):
            if held is not None or not clear(x) or below[x] != ("" if kind == "pick-up" else y):
                return False
            del below[x]
            held = x
        elif kind == "put-down":
            if held != x:
                return False
            below[x], held = "", None
        else:  # stack
            if held != x or y == x or not clear(y):
                return False
            below[x], held = y, None
    goal: dict[str, str] = {}
    for stack in goal_stacks:
        for k, block in enumerate(stack):
            goal[str(block)] = str(stack[k - 1]) if k else ""
    return held is None and below == goal


def join_facts(facts: Sequence[str]) -> str:
    """Facts as E2H writes a state: "a, b and c"."""
    return facts[0] if len(facts) == 1 else ", ".join(facts[:-1]) + " and " + facts[-1]


# -- E2H's rules on parsed states -------------------------------------------------------

_STATE_FACTS = [
    ("empty", re.compile(r"the hand is empty", re.IGNORECASE), True),
    ("holding", re.compile(r"the hand is holding the (.+?)(?: block)?$", re.IGNORECASE), False),
    ("clear", re.compile(r"the (.+?)(?: block)? is clear$", re.IGNORECASE), False),
    ("on", re.compile(r"the (.+?)(?: block)? is on top of the (.+?)(?: block)?$", re.IGNORECASE), False),
    ("table", re.compile(r"the (.+?)(?: block)? is on the table$", re.IGNORECASE), False),
]
# E2H's patterns: anchored at the start (the phrases begin with distinct words, so order does not matter).
_E2H_ACTIONS = [(kind, re.compile(f"^{phrase}" + r"[^\w\s]*\s*$")) for kind, phrase in _ACTION_PHRASES.items()]
_NUMBERED_BLOCK = re.compile(r"\bblock (\d+)\b", re.IGNORECASE)


class IllegalAction(ValueError):
    pass


def _block_name(text: str) -> str:
    name = text.strip().lower()
    return name[:-6].strip() if name.endswith(" block") else name


def parse_state(text: str) -> dict[str, str | None]:
    """Where each block is ("table", the block under it, "hand", or None when only said to be clear),
    read from a state description the way E2H reads it (unknown facts are ignored)."""
    places: dict[str, str | None] = {}
    text = _NUMBERED_BLOCK.sub(r"\1 block", text)
    for fact in (f.strip() for f in text.replace(" and ", ", ").split(",")):
        for kind, pattern, whole in _STATE_FACTS:
            m = pattern.fullmatch(fact) if whole else pattern.match(fact)
            if m is None:
                continue
            if kind == "holding":
                places[_block_name(m.group(1))] = "hand"
            elif kind == "clear":
                places.setdefault(_block_name(m.group(1)), None)
            elif kind == "on":
                places[_block_name(m.group(1))] = _block_name(m.group(2))
            elif kind == "table":
                places[_block_name(m.group(1))] = "table"
            break
    return places


def parse_e2h_action(line: str) -> tuple[str, str, str | None]:
    line = _NUMBERED_BLOCK.sub(r"\1 block", line).lower().strip()
    for kind, pattern in _E2H_ACTIONS:
        m = pattern.match(line)
        if m:
            return kind, _block_name(m.group(1)), _block_name(m.group(2)) if pattern.groups == 2 else None
    raise IllegalAction("not an action")


def _clear(block: str, places: dict[str, str | None]) -> bool:
    return places.get(block) != "hand" and all(under != block for under in places.values())


def apply_action(places: dict[str, str | None], action: tuple[str, str, str | None]) -> None:
    """Apply one action in place, or raise IllegalAction (E2H's preconditions)."""
    kind, x, y = action
    holding = next((b for b, where in places.items() if where == "hand"), None)
    if kind in ("unstack", "pick-up"):
        if places.get(x) != (y if kind == "unstack" else "table") or not _clear(x, places) or holding is not None:
            raise IllegalAction(kind)
        places[x] = "hand"
    elif kind == "stack":
        if holding != x or not _clear(y, places):
            raise IllegalAction(kind)
        places[x] = y
    else:
        if holding != x:
            raise IllegalAction(kind)
        places[x] = "table"


def plan_lines(plan: str) -> list[str]:
    """A plan's action lines as E2H counts them: stripped, non-empty, without "[plan end]" lines."""
    return [line.strip() for line in plan.strip().split("\n") if line.strip() and "[plan end]" not in line.lower()]


def e2h_plan_score(initial: str, predicted: str, reference: str) -> float:
    """E2H's Blocksworld reward of a plan, divided by 2: 0, or (1 + f) / 2 for a plan reaching the
    reference plan's final state (f = 1 up to the reference's length, then reference / actions)."""
    lines = plan_lines(predicted)
    if not lines:
        return 0.0
    try:
        goal = parse_state(initial)
        reference_lines = plan_lines(reference)
        for line in reference_lines:
            apply_action(goal, parse_e2h_action(line))
        places = parse_state(initial)
        for line in lines:
            apply_action(places, parse_e2h_action(line))
    except IllegalAction:
        return 0.0
    if set(places.items()) != set(goal.items()) or not (places or goal):
        return 0.0
    n, m = len(lines), len(reference_lines)
    if n > m and m == 0:
        return 0.0  # E2H divides by the reference length here (and scores 0 on the error)
    factor = 1.0 if n <= m else 1.0 / (1.0 + (n - m) / m)
    return (1.0 + factor) / 2.0


def _describe(stacks: Sequence[Sequence[str]], holding: str) -> list[str]:
    facts = []
    for stack in stacks:
        facts.append(f"the {stack[-1]} block is clear")
    facts.append(f"the hand is holding the {holding} block" if holding else "the hand is empty")
    facts.extend(_positions(stacks))
    return facts


def _positions(stacks: Sequence[Sequence[str]]) -> list[str]:
    facts = []
    for stack in stacks:
        for k in range(len(stack) - 1, -1, -1):
            if k:
                facts.append(f"the {stack[k]} block is on top of the {stack[k - 1]} block")
            else:
                facts.append(f"the {stack[k]} block is on the table")
    return facts


class BlocksworldOptions(TaskOptions):
    levels: base.TrainingLevels = [1, 2, 4, 6]
    heldout_levels: base.HeldoutLevels = [8]
    format_reward: base.FormatWeight = 1.0
    correctness_reward: base.CorrectnessWeight = 2.0
    # E2H's blocksworld system prompt ("think", unlike its other tasks' E2H_SYSTEM_PROMPT).
    system_prompt: base.SystemPrompt = (
        "You are a helpful assistant. You first think about the reasoning process in the mind and then provides "
        "the user with the answer.\n"
    )
    user_template: base.UserTemplate = E2H_USER_TEMPLATE
    rules: Literal[PLAN_RULES] = Field("e2h", description="How plans are checked: e2h (E2H's rules) or seed (the "
                                                          "earlier, lenient check; see e2h/tasks/blocksworld.py).")


class Blocksworld(Task):
    """Blocksworld planning; see the module docstring."""

    name = "blocksworld"
    description = "Plan block moves to reach a goal configuration (level = optimal plan length)."
    available_levels = tuple(range(1, 13))
    Options = BlocksworldOptions
    required_columns = ("question", "solution")

    def _configure(self, opts: BlocksworldOptions) -> None:
        self.rules = opts.rules
        if opts.rules == "seed":
            self.required_columns = ("init_stacks", "init_holding", "goal_stacks")

    @staticmethod
    def block_counts(level: int) -> tuple[int, ...]:
        # 3 blocks reach at most 8 actions; 4-5 blocks reach every level up to 12 from most starts.
        return (3, 4, 5) if level <= 6 else (4, 5)

    def _generate_one(self, rng: random.Random, level: int) -> dict:
        while True:
            n = rng.choice(self.block_counts(level))
            graph = _graph(n)
            start = rng.choice(graph.holding if level % 2 else graph.empty_hand)
            dist = graph.distances(start)
            walk = self._walk(rng, graph, start, dist, level)
            if walk is not None:
                break
        names = rng.sample(COLORS, n)
        goal = walk[-1][1]
        plan = [action_text(action, names) for action, _ in walk]
        init_stacks = [[names[b] for b in stack] for stack in graph.states[start][0]]
        held = graph.states[start][1]
        init_holding = names[held] if held >= 0 else ""
        goal_stacks = [[names[b] for b in stack] for stack in graph.states[goal][0]]
        rng.shuffle(init_stacks)
        rng.shuffle(goal_stacks)
        solution = "\n".join(plan)
        return {
            "question": join_facts(_describe(init_stacks, init_holding)),
            "answer": join_facts(_positions(goal_stacks)),
            "solution": solution,
            "blocks": sorted(names),
            "init_stacks": init_stacks,
            "init_holding": init_holding,
            "goal_stacks": goal_stacks,
        }

    @staticmethod
    def _walk(
        rng: random.Random, graph: _Graph, start: int, dist: list[int], length: int
    ) -> list[tuple[Action, int]] | None:
        walk, here = [], start
        for step in range(length):
            onward = [(a, v) for a, v in graph.moves[here] if dist[v] == step + 1]
            if not onward:
                return None
            action, here = rng.choice(onward)
            walk.append((action, here))
        return walk

    def score(self, answer: str, row: Mapping[str, Any]) -> float:
        if self.rules == "e2h":
            return e2h_plan_score(str(row["question"]), answer, str(row["solution"]))
        actions = parse_plan(answer)
        if actions is None:
            return 0.0
        ok = plan_reaches_goal(actions, row["init_stacks"], row["init_holding"], row["goal_stacks"])
        return 1.0 if ok else 0.0
