"""TaskSampler: draws each generation batch across difficulty levels from a scheduler.

It keeps the contract of TRL's ``RepeatSampler`` so ``GRPOTrainer`` can use it as is:
each prompt index is yielded ``num_generations`` times in a row (one GRPO group), and
the whole generation batch of ``batch_size`` prompts is yielded ``repeat_count`` times
(``num_iterations * steps_per_generation`` in TRL). Every process builds the sampler
with the same seed and feeds the scheduler the same gathered rewards, so every process
yields the same global stream and accelerate splits it, exactly as with RepeatSampler.

Generation batch ``g`` is drawn with ``scheduler.probs(geometry.step_of_batch(g))``: the
probabilities of the optimizer step in which TRL generates it (``e2h.geometry``). They are
asked of the scheduler when the batch is drawn, not ahead of time, so an adaptive scheduler
sees the latest feedback, and what was asked is kept with the batch (:meth:`draw_record`) so
a snapshot reports the probabilities a step was really trained with. The data loader
(accelerate prefetches one batch to detect the end) draws the next batch one micro-step
before it is trained on: when a generation batch is trained for a single micro-step
(``steps_per_generation * num_iterations == 1``), feedback reaches sampling one generation
batch late; otherwise the next batch is drawn after the current one's rewards came back.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Sequence

import numpy as np
import torch.utils.data

from e2h.geometry import BatchGeometry
from e2h.schedulers import Scheduler


class TaskSampler(torch.utils.data.Sampler[int]):
    """Sample dataset indices level by level, following ``scheduler.probs(step)``.

    Args:
        levels: the level value of every dataset row (any integers, e.g. 2, 3, 4, 5).
        scheduler: decides the probability of each level; ``num_levels`` must match.
        batch_size: unique prompts per generation batch.
        num_generations: times each prompt index repeats in a row (GRPO group size).
        geometry: how generation batches map onto optimizer steps; each whole generation
            batch is yielded ``geometry.generate_every`` times (one per micro-step trained on
            it) and batch ``g`` is drawn at ``geometry.step_of_batch(g)``. Default: one
            generation batch per optimizer step.
        num_batches: generation batches per pass over the sampler (``len`` follows).
        level_values: the level values in difficulty order; default: sorted unique
            values of ``levels``. Level value ``level_values[i]`` is scheduler level ``i``.
        seed: the same seed gives the same stream on every process.
    """

    def __init__(
        self,
        levels: Sequence[int],
        scheduler: Scheduler,
        batch_size: int,
        num_generations: int = 1,
        geometry: BatchGeometry | None = None,
        num_batches: int = 1,
        level_values: Sequence[int] | None = None,
        seed: int = 0,
    ):
        for name, value in (
            ("batch_size", batch_size),
            ("num_generations", num_generations),
            ("num_batches", num_batches),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        column = np.asarray(levels)
        if column.ndim != 1 or column.size == 0:
            raise ValueError("levels must be a non-empty 1-D sequence of level values, one per row")
        values = sorted(set(column.tolist())) if level_values is None else list(level_values)
        if len(set(values)) != len(values):
            raise ValueError(f"level_values has duplicates: {values}")
        unknown = sorted(set(column.tolist()) - set(values))
        if unknown:
            raise ValueError(f"rows have level {unknown[0]!r}, which is not in level_values {values}")
        if scheduler.num_levels != len(values):
            raise ValueError(
                f"scheduler has {scheduler.num_levels} levels but the data has {len(values)}: {values}"
            )
        self.level_values: list[int] = values
        self.level_index = {v: i for i, v in enumerate(values)}
        self._rows_by_level = [np.flatnonzero(column == v) for v in values]
        for v, rows in zip(values, self._rows_by_level, strict=True):
            if rows.size == 0:
                raise ValueError(f"level {v!r} has no rows")
        self.scheduler = scheduler
        self.batch_size = int(batch_size)
        self.num_generations = int(num_generations)
        self.geometry = geometry or BatchGeometry(1, 1)
        self.repeat_count = self.geometry.generate_every
        self.num_batches = int(num_batches)
        self.seed = int(seed)
        self._rng = np.random.default_rng(seed)
        self._buckets = [self._rng.permutation(rows) for rows in self._rows_by_level]
        self._positions = [0] * len(values)
        self._reshuffles = [0] * len(values)
        self.batches_drawn = 0
        self.last_levels: list[int] = []
        # Recently drawn batches with what they were drawn with: the data loader prefetches, so a
        # checkpoint taken after batch g trained may already have drawn g+1; resume replays it
        # instead of losing it. Enough are kept to cover every batch of the current step.
        keep = 8 + 2 * math.ceil(self.geometry.gradient_accumulation_steps / self.geometry.generate_every)
        self._recent: deque[tuple[int, list[int], dict]] = deque(maxlen=keep)
        self._replay: deque[tuple[int, list[int], dict]] = deque()
        self._replay_used = 0  # micro-steps of the first replayed batch trained before a stop

    def __len__(self) -> int:
        return self.num_batches * self.batch_size * self.num_generations * self.repeat_count

    def __iter__(self) -> Iterator[int]:
        for _ in range(self.num_batches):
            # A batch part-way through training at a stop is yielded only for its remaining micro-steps.
            skip, self._replay_used = (self._replay_used, 0) if self._replay else (0, 0)
            batch = self.draw_batch()
            for _ in range(self.repeat_count - skip):
                for index in batch:
                    for _ in range(self.num_generations):
                        yield index

    def draw_batch(self) -> list[int]:
        """Draw the next generation batch: one level per slot, then one row from its bucket."""
        if self._replay:
            g, batch, record = self._replay.popleft()
            self._recent.append((g, batch, record))
            return batch
        g = self.batches_drawn
        step = self.geometry.step_of_batch(g)
        probs = self.scheduler.probs(step)
        record = {"step": step, "probs": probs.tolist(), "components": self.scheduler.components()}
        slots = self._rng.choice(len(probs), size=self.batch_size, p=probs)
        self.batches_drawn += 1
        self.last_levels = slots.tolist()
        batch = [self._take(int(level)) for level in slots]
        self._recent.append((g, batch, record))
        return batch

    def draw_record(self, batch: int) -> dict:
        """What generation batch ``batch`` was drawn with: its step, probabilities and score breakdown."""
        for g, _, record in reversed(self._recent):
            if g == batch:
                return record
        raise KeyError(f"generation batch {batch} is not among the recently drawn ones")

    def _take(self, level: int) -> int:
        if self._positions[level] >= len(self._buckets[level]):
            # A fresh permutation, so a small level is not replayed in the same order.
            self._buckets[level] = self._rng.permutation(self._rows_by_level[level])
            self._positions[level] = 0
            self._reshuffles[level] += 1
        index = int(self._buckets[level][self._positions[level]])
        self._positions[level] += 1
        return index

    def state_dict(self, next_batch: int | None = None, used: int = 0) -> dict:
        """State to continue the stream from batch ``next_batch``, ``used`` of its micro-steps trained.

        Batches ``>= next_batch`` already drawn are kept, with their draw records, for replay.
        """
        pending = [] if next_batch is None else [
            {"index": g, "batch": b, "draw": r} for g, b, r in self._recent if g >= next_batch
        ]
        if next_batch is not None and next_batch + len(pending) < self.batches_drawn:
            raise ValueError(f"batch {next_batch} was drawn too long ago to resume from")
        if used and not pending:
            raise ValueError(f"batch {next_batch} is part-trained but was never drawn")
        return {
            "pending": pending,
            "used": int(used),
            "rng": self._rng.bit_generator.state,
            "buckets": [b.tolist() for b in self._buckets],
            "positions": list(self._positions),
            "reshuffles": list(self._reshuffles),
            "batches_drawn": self.batches_drawn,
            "level_values": list(self.level_values),
        }

    def load_state_dict(self, state: dict) -> None:
        if list(state["level_values"]) != self.level_values:
            raise ValueError(f"state has levels {state['level_values']}, this sampler {self.level_values}")
        self._rng.bit_generator.state = state["rng"]
        self._buckets = [np.asarray(b, dtype=np.int64) for b in state["buckets"]]
        self._positions = list(state["positions"])
        self._reshuffles = list(state["reshuffles"])
        self.batches_drawn = int(state["batches_drawn"])
        self._replay = deque((int(p["index"]), list(p["batch"]), p["draw"]) for p in state["pending"])
        self._replay_used = int(state["used"])
