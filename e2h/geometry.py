"""Batch geometry: which optimizer step each generation batch belongs to.

TRL's GRPOTrainer counts three things. A *micro-step* is one ``training_step`` call (one
per-device batch); ``gradient_accumulation_steps`` (GA) micro-steps make one optimizer
*step*. A *generation batch* is generated at once and then trained on for
``steps_per_generation * num_iterations`` micro-steps (TRL's ``generate_every``): its
completions are shuffled, cut into ``steps_per_generation`` slices, and the slices are
trained ``num_iterations`` times over. So generation batch ``g`` is generated at micro-step
``g * generate_every`` and trained during micro-steps ``[g * generate_every, (g + 1) *
generate_every)``.

This module is the one place that turns these counts into each other. The curriculum
follows one rule: batch ``g`` is drawn with the scheduler's probabilities of the optimizer
step in which it is generated, ``step_of_batch(g)``, and its rewards are fed back to the
scheduler under that same step. When one generation batch spans several optimizer steps
(``generate_every > GA``), the later steps train on completions drawn at the first one;
when one step holds several generation batches (``generate_every < GA``), each of them is
drawn at that step. No torch here: the config validates with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class BatchGeometry:
    """The counts that fix how generation batches map onto optimizer steps.

    Steps here are 0-based (the Trainer's ``global_step`` while the step runs): step ``t``
    is the ``t+1``-th optimizer step, reported as step ``t + 1`` once it has finished.
    """

    gradient_accumulation_steps: int
    steps_per_generation: int
    num_iterations: int = 1

    def __post_init__(self) -> None:
        for name in ("gradient_accumulation_steps", "steps_per_generation", "num_iterations"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    @property
    def generate_every(self) -> int:
        """Micro-steps trained on one generation batch (TRL's ``generate_every``)."""
        return self.steps_per_generation * self.num_iterations

    def step_of_micro(self, micro_step: int) -> int:
        return micro_step // self.gradient_accumulation_steps

    def step_of_batch(self, batch: int) -> int:
        """The optimizer step (0-based) in which generation batch ``batch`` is generated and fed back."""
        return self.step_of_micro(batch * self.generate_every)

    def batch_of_micro(self, micro_step: int) -> int:
        """The generation batch trained on at ``micro_step``."""
        return micro_step // self.generate_every

    def batches_of_step(self, step: int) -> range:
        """Generation batches trained on during optimizer step ``step`` (0-based), in order."""
        first = step * self.gradient_accumulation_steps
        last = first + self.gradient_accumulation_steps - 1
        return range(self.batch_of_micro(first), self.batch_of_micro(last) + 1)

    def batches_generated_in(self, step: int) -> range:
        """Generation batches generated (and fed back) during optimizer step ``step``."""
        start = math.ceil(step * self.gradient_accumulation_steps / self.generate_every)
        stop = math.ceil((step + 1) * self.gradient_accumulation_steps / self.generate_every)
        return range(start, stop)

    def num_batches(self, max_steps: int) -> int:
        """Generation batches needed for ``max_steps`` optimizer steps."""
        return max(1, math.ceil(max_steps * self.gradient_accumulation_steps / self.generate_every))

    def resume_point(self, steps_done: int) -> tuple[int, int]:
        """Where training stands after ``steps_done`` finished steps: (batch, micro-steps of it used).

        The batch is the one the next micro-step trains on; when the second number is not 0, that
        batch was generated (and fed back) before the stop and is part-way through training.
        """
        micro = steps_done * self.gradient_accumulation_steps
        return self.batch_of_micro(micro), micro % self.generate_every

    def describe_lag(self) -> str:
        """How feedback and schedule relate under this geometry, in one sentence."""
        ga, every = self.gradient_accumulation_steps, self.generate_every
        if every == ga:
            return "one generation batch per optimizer step"
        if every < ga and ga % every == 0:
            return f"{ga // every} generation batches per optimizer step, each drawn at that step"
        if every > ga and every % ga == 0:
            return (
                f"one generation batch every {every // ga} optimizer steps; the steps after the first "
                "train on completions drawn at the first"
            )
        return (
            f"a generation batch every {every} micro-steps and an optimizer step every {ga}: "
            "each batch is drawn at the step in which it is generated, and may be trained in the next"
        )
