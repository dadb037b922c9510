"""Build a run's train and test splits from a task: several levels, unique questions,
a ``prompt`` column, and no question shared between the splits.

How the splits stay apart: a level only one split uses gets its questions freely. A
level both splits use (a training level that is also evaluated) has its question space
partitioned by a hash of ``task.question_key(row)``: a question whose hash falls below
``test_fraction`` can only ever be a test question, whatever the seed or sizes, so
changing the seed never leaks a test question into training. Small question spaces
(arithmetic level 0 has 100 questions) are exhausted gracefully: a level gets as many
unique questions as exist, with a warning, and an empty level is an error. A user
dataset with its own test split is filtered instead: test questions seen in training
are dropped.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from e2h.tasks.base import Task, prompt_token_counts

logger = logging.getLogger(__name__)


@dataclass
class TaskDataset:
    """The rows of a run. ``train_levels`` are in difficulty order: scheduler level i is
    ``train_levels[i]`` (``level_values``). ``dropped`` counts, per split, the rows left out for
    a prompt longer than ``max_prompt_length`` (``task.long_prompts="drop"``)."""

    train: list[dict] = field(default_factory=list)
    test: list[dict] = field(default_factory=list)
    train_levels: list[int] = field(default_factory=list)
    test_levels: list[int] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=lambda: {"train": 0, "test": 0})

    @property
    def level_values(self) -> list[int]:
        return list(self.train_levels)

    def __getitem__(self, split: str) -> list[dict]:
        if split not in ("train", "test"):
            raise KeyError(f"no split {split!r}; splits: train, test")
        return self.train if split == "train" else self.test

    def to_hf(self):
        """A ``datasets.DatasetDict`` with the two splits (imports ``datasets``)."""
        import datasets

        return datasets.DatasetDict(
            {
                name: datasets.Dataset.from_list(rows)
                for name, rows in (("train", self.train), ("test", self.test))
            }
        )


DEFAULT_TEST_FRACTION = 0.1  # share of a level's question space kept for testing


def in_test_partition(key: str, test_fraction: float) -> bool:
    """Whether a question belongs to the test side of a shared level (stable across runs)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_fraction


def _levels(task: Task, what: str, values: Sequence[int] | None, default: list[int]) -> list[int]:
    if values is None:
        return list(default)
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"{what} must be a list of level values, got {values!r}")
    out = [task.check_level(v) for v in values]
    if len(set(out)) != len(out):
        raise ValueError(f"{what} has duplicates: {list(values)}")
    return sorted(out)


def _size(what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be an integer >= 0, got {value!r}")
    return value


def collect(
    task: Task,
    level: int,
    n: int,
    seed: int | str,
    split: str,
    side: str | None = None,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    exclude: set[str] | None = None,
) -> list[dict]:
    """Up to ``n`` rows of ``level`` with distinct question keys. ``side`` ("train" /
    "test") keeps only that side of the hash partition; ``exclude`` drops known keys."""
    rows: list[dict] = []
    seen: set[str] = set(exclude or ())
    share = 1.0 if side is None else (test_fraction if side == "test" else 1.0 - test_fraction)
    budget = 20 * math.ceil(n / share) + 200
    drawn = 0
    round_ = 0
    while len(rows) < n and drawn < budget:
        chunk = min(budget - drawn, max(16, math.ceil((n - len(rows)) / share * 1.2)))
        batch = task.sample(level, chunk, f"{seed}/{split}/{round_}", split)
        drawn += chunk
        round_ += 1
        fresh = 0
        for row in batch:
            key = task.question_key(row)
            if key in seen or (
                side is not None and in_test_partition(key, test_fraction) != (side == "test")
            ):
                continue
            seen.add(key)
            rows.append(row)
            fresh += 1
            if len(rows) == n:
                break
        if fresh == 0 and (len(batch) < chunk or drawn >= 1000):
            break  # the question space (or the user's data) is exhausted
    return rows


def build_dataset(
    task: Task,
    *,
    train_levels: Sequence[int] | None = None,
    test_levels: Sequence[int] | None = None,
    train_size: int = 1000,
    test_size: int = 100,
    seed: int = 0,
    tokenizer: Any = None,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    max_prompt_length: int | None = None,
) -> TaskDataset:
    """Train and test rows of ``task``, each with a ``prompt`` column.

    A prompt is never cut: with ``max_prompt_length`` and a tokenizer, one longer than that many
    tokens (counted as training tokenizes it) fails the build with a ValueError naming the count
    and the fix, or, with the task's ``long_prompts="drop"``, its row is left out and counted in
    ``dropped`` (and logged).

    Args:
        train_levels: default ``task.levels``; test_levels: default ``task.test_levels``
            (the training levels plus the held-out ones).
        train_size / test_size: unique questions per level (fewer when a level has fewer;
            a level with none raises ValueError).
        seed: the same seed gives the same rows.
        tokenizer: its chat template builds the prompts; None gives plain text prompts.
        test_fraction: share of a shared level's question space reserved for testing.
    """
    train_levels = _levels(task, "train_levels", train_levels, task.levels)
    test_levels = _levels(task, "test_levels", test_levels, task.test_levels)
    if not train_levels:
        raise ValueError("train_levels must not be empty")
    train_size, test_size = _size("train_size", train_size), _size("test_size", test_size)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction!r}")
    shared = set(train_levels) & set(test_levels) if not task.separate_test_split else set()
    out = TaskDataset(train_levels=train_levels, test_levels=test_levels)
    train_keys: set[str] = set()
    for split, levels, size in (("train", train_levels, train_size), ("test", test_levels, test_size)):
        if size == 0:
            continue
        for level in levels:
            side = split if level in shared else None
            exclude = train_keys if split == "test" else None
            rows = collect(task, level, size, seed, split, side, test_fraction, exclude)
            if not rows:
                raise ValueError(
                    f"{task.name}: level {level} has no {split} questions left (train and test never "
                    "share a question): give the level more questions, a larger test_fraction or a "
                    "separate test split"
                )
            if len(rows) < size:
                logger.warning(
                    "%s: level %s has only %d unique %s questions (asked for %d)",
                    task.name, level, len(rows), split, size,
                )  # fmt: skip
            for row in rows:
                row["prompt"] = task.build_prompt(row, tokenizer)
            rows = _fit_prompts(task, rows, tokenizer, max_prompt_length, split, level, out)
            for row in rows:
                if split == "train":
                    train_keys.add(task.question_key(row))
            out[split].extend(rows)
    return out


def _fit_prompts(task: Task, rows: list[dict], tokenizer: Any, limit: int | None, split: str, level: int,
                 out: TaskDataset) -> list[dict]:
    """``rows`` whose prompts fit ``limit`` tokens; the others refused or dropped (``task.long_prompts``)."""
    if limit is None or tokenizer is None or not rows:
        return rows
    lengths = prompt_token_counts([row["prompt"] for row in rows], tokenizer)
    long = [n for n in lengths if n > limit]
    if not long:
        return rows
    if task.long_prompts == "refuse":
        raise ValueError(
            f"algorithm.max_prompt_length: {len(long)} of {len(rows)} {split} prompts of {task.name} level {level} "
            f"are longer than {limit} tokens (the longest has {max(long)}); prompts are never cut, so raise "
            f"algorithm.max_prompt_length to at least {max(long)}, or set task.options.long_prompts=drop to "
            "leave those rows out"
        )
    out.dropped[split] += len(long)
    logger.warning("%s: dropped %d of %d %s rows of level %s with prompts over %d tokens (the longest has %d)",
                   task.name, len(long), len(rows), split, level, limit, max(long))
    kept = [row for row, n in zip(rows, lengths, strict=True) if n <= limit]
    if not kept:
        raise ValueError(
            f"algorithm.max_prompt_length: every {split} prompt of {task.name} level {level} is longer than {limit} "
            f"tokens (the longest has {max(long)}); raise algorithm.max_prompt_length to at least {min(long)}"
        )
    return kept
