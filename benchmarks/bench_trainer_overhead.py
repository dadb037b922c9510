"""Curriculum overhead: plain TRL GRPOTrainer vs CurriculumGRPOTrainer (VREx) on the same tiny config.

Runs alternate (plain, curriculum, plain, ...) so machine load hits both alike; prints the
median seconds per step of each and their ratio. Target: the curriculum costs under 3%.
Generation dominates a step, so both trainers generate the same number of tokens: the
completion length is fixed (EOS suppressed) to take sampling luck out of the comparison.

Run: python benchmarks/bench_trainer_overhead.py [--pairs 3] [--steps 8]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback
from trl import GRPOConfig, GRPOTrainer

from e2h.config import compose
from e2h.models import load_model, load_tokenizer
from e2h.plan import grpo_config_kwargs
from e2h.train import build_datasets, build_task, make_scheduler_for
from e2h.trainer import CurriculumGRPOTrainer


class StepTimer(TrainerCallback):
    def __init__(self):
        self.times: list[float] = []
        self._t = None

    def on_step_begin(self, args, state, control, **kw):
        self._t = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self.times.append(time.perf_counter() - self._t)


def one_run(curriculum: bool, steps: int) -> float:
    config = compose(["algorithm.per_device_train_batch_size=16", "algorithm.num_generations=8",
                      f"algorithm.max_steps={steps}", "scheduler.params.warmup_steps=1",
                      "scheduler.params.update_interval=1", "task.train_size_per_level=200",
                      "task.test_size_per_level=1"])
    task = build_task(config)
    tok = load_tokenizer("builtin:tiny")
    train_ds, _ = build_datasets(config, task, tok)
    with tempfile.TemporaryDirectory() as out:
        kwargs = grpo_config_kwargs(config, out, use_cpu=True)
        kwargs.update(save_strategy="no", disable_tqdm=True, logging_steps=1,
                      generation_kwargs={"min_new_tokens": config.algorithm.max_completion_length})
        args = GRPOConfig(**kwargs)
        common = dict(model=load_model("builtin:tiny", "float32"), reward_funcs=[task.as_reward_func()], args=args,
                      train_dataset=train_ds, processing_class=tok)
        if curriculum:
            trainer = CurriculumGRPOTrainer(**common, scheduler=make_scheduler_for(config, task),
                                            level_values=list(config.task.train_levels), on_snapshot=lambda s: None)
        else:
            trainer = GRPOTrainer(**common)
        trainer.remove_callback(PrinterCallback)  # keep the output to the figures
        timer = StepTimer()
        trainer.add_callback(timer)
        trainer.train()
    return statistics.median(timer.times[1:])  # the first step warms up


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--steps", type=int, default=8)
    ns = p.parse_args()
    plain, curr = [], []
    for i in range(ns.pairs):
        plain.append(one_run(False, ns.steps))
        curr.append(one_run(True, ns.steps))
        print(f"pair {i + 1}: plain {plain[-1]:.3f} s/step, curriculum {curr[-1]:.3f} s/step")
    p_med, c_med = statistics.median(plain), statistics.median(curr)
    print(f"median s/step: plain GRPOTrainer {p_med:.3f}, CurriculumGRPOTrainer {c_med:.3f}")
    print(f"steps/s ratio curriculum/plain: {p_med / c_med:.3f}  (overhead {100 * (c_med / p_med - 1):+.1f}%)")


if __name__ == "__main__":
    main()
