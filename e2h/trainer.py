"""CurriculumGRPOTrainer: TRL's GRPOTrainer whose batches follow a curriculum scheduler.

Two overrides and two callbacks, nothing re-implemented:
- ``_get_train_sampler`` returns a :class:`TaskSampler` (TRL's RepeatSampler contract);
- ``_calculate_rewards`` passes the rewards TRL gathered from every process, with the
  gathered ``level`` column, to ``scheduler.update`` (every rank applies the same update,
  so every rank keeps sampling the same indices);
- a callback turns each logged step into a snapshot (DESIGN.md section 7);
- a callback writes a bounded sample of each logged step's completions per level (prompt, text,
  rewards), read from TRL's own completion log (``_logs``, kept whatever ``log_completions`` says)
  with the level added as one of its extra columns;
- a callback saves the scheduler and sampler state into every checkpoint.

Which optimizer step a generation batch is drawn at, fed back under and trained in comes
from one :class:`~e2h.geometry.BatchGeometry` (``self.geometry``), for the sampler, the
feedback, the snapshots and the resume point alike.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.utils import gather_object
from transformers import TrainerCallback
from transformers.trainer import TRAINER_STATE_NAME
from trl import GRPOTrainer

from e2h.geometry import BatchGeometry
from e2h.outputs import CURRICULUM_STATE_FILE, rank_snapshots_file
from e2h.sampler import TaskSampler
from e2h.schedulers import Scheduler
from e2h.schemas import COMPLETION_TEXT_CHARS
from e2h.signals import NoSignalWatch

logger = logging.getLogger(__name__)


class CurriculumGRPOTrainer(GRPOTrainer):
    """GRPOTrainer that samples each generation batch across levels from ``scheduler``.

    Args:
        scheduler: the curriculum; ``num_levels`` must equal ``len(level_values)``.
        level_values: the dataset's ``level`` values in difficulty order (level value
            ``level_values[i]`` is scheduler level ``i``).
        on_snapshot: called with one snapshot dict per logged step (main process only).
        on_completions: called with each logged step's sample of completions (a list of
            ``e2h.schemas.CompletionIn`` dicts; main process only).
        All other arguments are GRPOTrainer's.
    """

    def __init__(
        self,
        *args: Any,
        scheduler: Scheduler,
        level_values: list[int],
        on_snapshot: Callable[[dict], None] | None = None,
        on_completions: Callable[[list[dict]], None] | None = None,
        **kwargs: Any,
    ):
        self.scheduler = scheduler
        self.level_values = list(level_values)
        self.level_index = {v: i for i, v in enumerate(self.level_values)}
        self.curriculum_sampler: TaskSampler | None = None
        # One record per generation batch fed back: {"step" (1-based, as snapshots number steps),
        # "batch", "counts" (completions per level), "global_step" (TRL's count when it was
        # generated)}. Kept in checkpoints; tests read it.
        self.trained_levels: list[dict] = []
        self.eval_seconds: float | None = None  # set by an evaluation during the step, for its snapshot
        self._pending_sampler_state: dict | None = None
        self._rng_checkpoint: str | None = None
        self.generations = 0  # training generation batches scored so far (in this process's life)
        super().__init__(*args, **kwargs)
        if "level" not in self.train_dataset.column_names:
            raise ValueError("the training dataset needs a 'level' column for the curriculum")
        self.add_callback(CurriculumSnapshotCallback(self, on_snapshot))
        self.add_callback(CompletionSampleCallback(self, on_completions))
        self.add_callback(CurriculumCheckpointCallback(self))

    # -- sampling ---------------------------------------------------------------------

    @property
    def geometry(self) -> BatchGeometry:
        return BatchGeometry(
            self.args.gradient_accumulation_steps, self.args.steps_per_generation, self.num_iterations
        )

    def _get_train_sampler(self, dataset=None) -> TaskSampler:
        dataset = self.train_dataset if dataset is None else dataset
        sampler = TaskSampler(
            dataset["level"],
            self.scheduler,
            batch_size=self.args.generation_batch_size // self.num_generations,
            num_generations=self.num_generations,
            geometry=self.geometry,
            num_batches=self.geometry.num_batches(self.args.max_steps),
            level_values=self.level_values,
            seed=self.args.seed,
        )
        if self._pending_sampler_state is not None:
            sampler.load_state_dict(self._pending_sampler_state)
            self._pending_sampler_state = None
        self.curriculum_sampler = sampler
        return sampler

    # -- feedback -----------------------------------------------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        # The level of each completion joins TRL's completion log as an extra column (TRL gathers it
        # with the prompts; every rank calls this, as the gather needs): the sample per level reads it.
        self._log_completion_extra("level", [self.level_index.get(int(x["level"])) for x in inputs])
        if self.model.training:
            self.generations += 1
        # TRL generates at a batch's first micro-step, and once more right after a resume that
        # stopped part-way through a batch: that batch's rewards were fed back before the stop.
        first_time = self._step % self.geometry.generate_every == 0
        if self.model.training and first_time:
            weights = self.reward_weights.to(rewards_per_func.device)
            rewards = (rewards_per_func * weights.unsqueeze(0)).nansum(dim=1)
            unscorable = torch.isnan(rewards_per_func).all(dim=1)
            rewards[unscorable] = torch.nan
            levels = gather_object([self.level_index[int(x["level"])] for x in inputs])
            batch = self.geometry.batch_of_micro(self._step)
            step = self.geometry.step_of_batch(batch)
            self.scheduler.update(step, levels, rewards.cpu().tolist())
            counts = np.bincount(levels, minlength=self.scheduler.num_levels).tolist()
            self.trained_levels.append(
                {"step": step + 1, "batch": batch, "counts": counts, "global_step": self.state.global_step}
            )
        return rewards_per_func

    def curriculum_snapshot(self, steps_done: int) -> dict:
        """The snapshot of step ``steps_done`` (1-based): what that step was trained with.

        ``probability`` is the mean, over the step's micro-steps, of the probabilities each
        micro-step's generation batch was drawn with; ``components`` are the score breakdown
        behind the last of them; counts and rewards are the feedback received so far.
        """
        geometry = self.geometry
        first = (steps_done - 1) * geometry.gradient_accumulation_steps
        micro = range(first, first + geometry.gradient_accumulation_steps)
        records = [self.curriculum_sampler.draw_record(geometry.batch_of_micro(m)) for m in micro]
        probs = np.mean([r["probs"] for r in records], axis=0)
        return self.scheduler.snapshot(steps_done, probs=probs, components=records[-1]["components"])

    # -- checkpoint state ------------------------------------------------------------------

    def curriculum_state(self) -> dict:
        """Scheduler and sampler state at the current optimizer step, for a checkpoint."""
        batch, used = self.geometry.resume_point(self.state.global_step)
        sampler = self.curriculum_sampler.state_dict(batch, used) if self.curriculum_sampler else None
        return {
            "global_step": self.state.global_step,
            "geometry": dataclasses.asdict(self.geometry),
            "scheduler": self.scheduler.state_dict(),
            "sampler": sampler,
            "trained_levels": self.trained_levels,
        }

    def load_curriculum_state(self, checkpoint_dir: str | Path) -> None:
        path = Path(checkpoint_dir) / CURRICULUM_STATE_FILE
        if not path.is_file():
            raise ValueError(f"checkpoint {checkpoint_dir} has no {CURRICULUM_STATE_FILE}; cannot resume")
        state = json.loads(path.read_text())
        if state.get("geometry") != dataclasses.asdict(self.geometry):
            raise ValueError(
                f"checkpoint {checkpoint_dir} was trained with batch geometry {state.get('geometry')}, "
                f"this run has {dataclasses.asdict(self.geometry)}; resume with the same algorithm settings"
            )
        self.scheduler.load_state_dict(state["scheduler"])
        self._pending_sampler_state = state["sampler"]
        self.trained_levels = state["trained_levels"]
        # TRL counts micro-steps from 0 in a new trainer; continue its count so that generation
        # happens at the same micro-steps as in an uninterrupted run.
        self._step = state["global_step"] * self.args.gradient_accumulation_steps

    def train(self, resume_from_checkpoint: str | None = None, **kwargs: Any):
        if resume_from_checkpoint:
            self.load_curriculum_state(resume_from_checkpoint)
            self._rng_checkpoint = resume_from_checkpoint
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self._rng_checkpoint is not None:
            # With ignore_data_skip the Trainer does not restore the RNG state on resume; restore it
            # right before the first generation so sampling continues exactly as without the stop.
            self._load_rng_state(self._rng_checkpoint)
            self._rng_checkpoint = None
        return super().training_step(model, inputs, num_items_in_batch)


class CurriculumSnapshotCallback(TrainerCallback):
    """One snapshot per logged training step: the scheduler's view plus TRL's metrics."""

    def __init__(self, trainer: CurriculumGRPOTrainer, sink: Callable[[dict], None] | None):
        self.trainer = trainer
        self.sink = sink
        self._last_tokens: tuple[float, float] | None = None  # (num_tokens, time) at the last log
        self._signal = NoSignalWatch()

    def _throughput(self, logs: dict, now: float) -> dict[str, float | None]:
        """Tokens (prompt and completion, all processes) per second since the previous log."""
        tokens = logs.get("num_tokens")
        if not isinstance(tokens, int | float):
            return {}
        last, self._last_tokens = self._last_tokens, (float(tokens), now)
        if last is None or now <= last[1]:
            return {"throughput/tokens_per_second": None}
        return {"throughput/tokens_per_second": (float(tokens) - last[0]) / (now - last[1])}

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" not in logs and "reward" not in logs:  # eval or end-of-training summaries
            return
        snap = self.trainer.curriculum_snapshot(state.global_step)
        snap["time"] = time.time()
        metrics = {
            k: float(v) for k, v in logs.items() if isinstance(v, int | float) and math.isfinite(float(v))
        }
        metrics["curriculum/dropped_rewards"] = float(self.trainer.scheduler.dropped_rewards)
        metrics.update(self._throughput(logs, snap["time"]))
        if self.trainer.eval_seconds is not None:
            metrics["eval/seconds"], self.trainer.eval_seconds = self.trainer.eval_seconds, None
        metrics.update(device_memory(self.trainer.accelerator))  # every rank: it gathers
        snap["metrics"] = metrics
        warning = self._signal.update(state.global_step, metrics)
        if warning and state.is_world_process_zero:
            logger.warning("step %d: %s", state.global_step, warning)
        if state.is_world_process_zero and self.sink is not None:
            self.sink(snap)

    def on_step_end(self, args, state, control, **kwargs):
        # Only the main process logs; the others keep their own record of the curriculum so that
        # identical curricula across ranks can be checked.
        if state.is_world_process_zero or state.global_step % args.logging_steps:
            return
        rank = self.trainer.accelerator.process_index
        with open(Path(args.output_dir) / rank_snapshots_file(rank), "a") as f:
            f.write(json.dumps(self.trainer.curriculum_snapshot(state.global_step)) + "\n")


COMPLETIONS_PER_LEVEL = 4  # completions kept per level and logged step


class CompletionSampleCallback(TrainerCallback):
    """At each training log, what the model wrote in the latest generation batch: at most
    ``COMPLETIONS_PER_LEVEL`` completions per level (:func:`sample_completions`), to ``sink``.

    Read from TRL's completion log (the last generation batch's prompts, completions, rewards per
    function and advantages, gathered from every process), which TRL keeps whether or not
    ``log_completions`` prints and saves it; main process only. A step trained on an already
    sampled generation batch (``steps_per_generation x num_iterations`` above one) adds nothing."""

    def __init__(self, trainer: CurriculumGRPOTrainer, sink: Callable[[list[dict]], None] | None):
        self.trainer = trainer
        self.sink = sink
        self._sampled = 0  # trainer.generations at the last sample

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if self.sink is None or not state.is_world_process_zero or ("loss" not in logs and "reward" not in logs):
            return
        if self.trainer.generations == self._sampled:
            return
        self._sampled = self.trainer.generations
        log = self.trainer._logs
        levels = log["extra"].get("level")
        if not levels:
            return
        names = list(self.trainer.reward_func_names)
        # The columns are deques of one generation batch; aligned from their ends, newest last.
        n = min([len(log["prompt"]), len(log["completion"]), len(log["advantages"]), len(levels)]
                + [len(log["rewards"][name]) for name in names])
        if n == 0:
            return
        records = sample_completions(
            state.global_step,
            list(log["prompt"])[-n:],
            list(log["completion"])[-n:],
            {name: list(log["rewards"][name])[-n:] for name in names},
            list(log["advantages"])[-n:],
            list(levels)[-n:],
            self.trainer.reward_weights.tolist(),
        )
        self.sink(records)


def sample_completions(
    step: int,
    prompts: list,
    completions: list,
    rewards: dict[str, list[float | None]],
    advantages: list[float | None],
    levels: list[int | None],
    weights: list[float],
    per_level: int = COMPLETIONS_PER_LEVEL,
    max_chars: int = COMPLETION_TEXT_CHARS,
) -> list[dict]:
    """At most ``per_level`` completions of each level, spread over that level's reward ranking
    (best first, the worst last, the others evenly between), texts cut to ``max_chars``.

    One entry per completion in each list (rewards: one list per reward function, weighed by
    ``weights`` into the total as TRL does; NaN means the function did not score it). Completions
    of no training level (level None) are left out. -> ``e2h.schemas.CompletionIn`` dicts, by
    level then rank."""
    names = list(rewards)
    by_level: dict[int, list[int]] = {}
    for i, level in enumerate(levels):
        if level is not None:
            by_level.setdefault(int(level), []).append(i)
    records = []
    for level in sorted(by_level):
        parts = {i: {name: _finite(rewards[name][i]) for name in names} for i in by_level[level]}
        totals = {i: _total(parts[i], names, weights) for i in by_level[level]}
        ranked = sorted(by_level[level], key=lambda i: (totals[i] is None, -(totals[i] or 0.0), i))
        k = min(per_level, len(ranked))
        picks = [ranked[round(j * (len(ranked) - 1) / (k - 1))] for j in range(k)] if k > 1 else ranked[:k]
        for index, i in enumerate(picks):
            prompt, cut_prompt = cut_middle(completion_text(prompts[i]), max_chars)
            text, cut_text = cut_middle(completion_text(completions[i]), max_chars)
            records.append({
                "step": step, "level": level, "index": index, "prompt": prompt, "completion": text,
                "reward": totals[i], "rewards": parts[i], "advantage": _finite(advantages[i]),
                "truncated": cut_prompt or cut_text,
            })
    return records


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _total(parts: dict[str, float | None], names: list[str], weights: list[float]) -> float | None:
    scored = [(parts[name], w) for name, w in zip(names, weights, strict=True) if parts[name] is not None]
    return float(sum(r * w for r, w in scored)) if scored else None


def completion_text(value: Any) -> str:
    """A prompt or completion as TRL logs it (text, or a conversation: a list of messages) as text."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(f"{m.get('role', '')}: {_content(m.get('content'))}" if isinstance(m, dict) else str(m)
                         for m in value)
    return str(value)


def _content(content: Any) -> str:
    if isinstance(content, list):  # multimodal parts: their text
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def cut_middle(text: str, limit: int) -> tuple[str, bool]:
    """``text`` in at most ``limit`` characters: its start and end with a note of what was cut
    between them (a prompt's question and a completion's answer are at their ends). -> (text, cut?)"""
    if len(text) <= limit:
        return text, False
    keep = max(limit - len(_cut_note(len(text))), 0)
    head = keep - keep // 2
    return text[:head] + _cut_note(len(text) - keep) + text[len(text) - keep // 2:], True


def _cut_note(n: int) -> str:
    return f"\n[... {n} characters cut ...]\n"


GPU_MEMORY_KEYS = ("gpu/mem_allocated_peak_gib", "gpu/mem_reserved_peak_gib")


def device_memory(accelerator) -> dict[str, float | None]:
    """Peak GPU memory since the previous call: the largest over the processes and each one's
    (``gpu/<rank>/...``). On a CPU the keys are there with no value. Every process must call it."""
    if not torch.cuda.is_available():
        return dict.fromkeys(GPU_MEMORY_KEYS)
    device = accelerator.device
    mine = [torch.cuda.max_memory_allocated(device) / 2**30, torch.cuda.max_memory_reserved(device) / 2**30]
    torch.cuda.reset_peak_memory_stats(device)
    peaks = gather_object([mine]) if accelerator.num_processes > 1 else [mine]
    out: dict[str, float | None] = {}
    for i, key in enumerate(GPU_MEMORY_KEYS):
        out[key] = max(p[i] for p in peaks)
        for rank, p in enumerate(peaks):
            out[key.replace("gpu/", f"gpu/{rank}/")] = p[i]
    return out


class CurriculumCheckpointCallback(TrainerCallback):
    """Write the curriculum state next to the weights in every checkpoint."""

    def __init__(self, trainer: CurriculumGRPOTrainer):
        self.trainer = trainer

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            ckpt.mkdir(parents=True, exist_ok=True)
            # Written last and renamed into place: its presence marks the checkpoint complete.
            tmp = ckpt / f"{CURRICULUM_STATE_FILE}.tmp"
            tmp.write_text(json.dumps(self.trainer.curriculum_state()))
            tmp.replace(ckpt / CURRICULUM_STATE_FILE)


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The newest ``checkpoint-N`` that was saved to the end, or None.

    A process killed while saving (OOM killer, a SIGKILLed worker) leaves a torn checkpoint:
    weights but no trainer or curriculum state. Resuming from it fails on every later attempt,
    so it is skipped; the curriculum state is written last (``CurriculumCheckpointCallback``).
    """
    found = []
    for path in Path(output_dir).glob("checkpoint-*"):
        suffix = path.name.removeprefix("checkpoint-")
        if suffix.isdigit() and path.is_dir():
            found.append((int(suffix), path))
    for _, path in sorted(found, reverse=True):
        if (path / TRAINER_STATE_NAME).is_file() and (path / CURRICULUM_STATE_FILE).is_file():
            return str(path)
        logger.warning("skipping %s: incomplete, its process was stopped while saving it", path)
    return None
