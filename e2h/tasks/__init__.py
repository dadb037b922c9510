"""Reasoning tasks with difficulty levels: generators, prompts and TRL reward functions.

``TASKS`` maps a task name to its class; ``get_task(name, **options)`` builds one, its options
checked against the task's pydantic model ``Options`` (``options_schema()`` is its JSON schema). Every
task has ``levels`` (training level values, easiest first: scheduler level i is
``levels[i]``), ``heldout_levels`` (out-of-distribution levels, evaluated only),
``test_levels`` (levels + held-out), ``max_reward``, ``format_reward``,
``generate(level, n, seed)`` and ``reward(completions, **columns)``. ``build_dataset``
makes a run's train/test rows with prompts. Nothing here imports torch.
"""

from __future__ import annotations

from typing import Any

from e2h.tasks.arithmetic import Arithmetic
from e2h.tasks.base import (
    ASSISTANT_PREFIX,
    ParsedCompletion,
    Task,
    completion_text,
    extract_answer,
    format_ok,
    parse_completion,
)
from e2h.tasks.blocksworld import Blocksworld
from e2h.tasks.coding import Coding
from e2h.tasks.countdown import Countdown
from e2h.tasks.data import TaskDataset, build_dataset
from e2h.tasks.dataset import DatasetTask

TASKS: dict[str, type[Task]] = {
    cls.name: cls for cls in (Arithmetic, Countdown, Blocksworld, Coding, DatasetTask)
}


def get_task(name: str, **options: Any) -> Task:
    """Build the task ``name`` with its options (``TASKS[name].Options``; a FieldProblem names a bad one)."""
    cls = TASKS.get(str(name).strip().lower()) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return cls(**options)


def describe_tasks() -> list[dict[str, Any]]:
    """What ``GET /tasks`` shows: each task with its default levels and rewards, its option names and
    their JSON schema (``options_schema``, what the launch form draws). The ``dataset`` task's levels
    come from the data, so they are empty here."""
    out = []
    for name, cls in TASKS.items():
        if cls is DatasetTask:
            defaults = cls.options()
            described = {
                "name": name,
                "description": cls.description,
                "levels": [],
                "heldout_levels": [],
                "test_levels": [],
                "available_levels": [],
                "max_reward": defaults["format_reward"] + defaults["correctness_reward"],
                "format_reward": defaults["format_reward"],
                "correctness_reward": defaults["correctness_reward"],
            }
        else:
            described = cls().describe()
        out.append({**described, "options": sorted(cls.options()), "options_schema": cls.options_schema()})
    return out


def build_prompt(task: Task, row: dict, tokenizer: Any = None) -> str:
    """``task.build_prompt(row, tokenizer)``."""
    return task.build_prompt(row, tokenizer)


__all__ = [
    "ASSISTANT_PREFIX",
    "TASKS",
    "Arithmetic",
    "Blocksworld",
    "Coding",
    "Countdown",
    "DatasetTask",
    "ParsedCompletion",
    "Task",
    "TaskDataset",
    "build_dataset",
    "build_prompt",
    "completion_text",
    "describe_tasks",
    "extract_answer",
    "format_ok",
    "get_task",
    "parse_completion",
]
