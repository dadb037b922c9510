"""Run one training job from a RunConfig, end to end, without any server.

``python -m e2h.train --config FILE --output-dir DIR`` (what the worker spawns) or
``e2h train group=preset key=value ...``. The output dir receives ``config.json``,
``snapshots.jsonl``, ``evals.jsonl``, ``completions.jsonl``, ``test_results.json``, ``checkpoint-*/``, ``final/``
(the trained model or LoRA adapter, with its tokenizer) and ``train.log``. A job whose
output dir holds a checkpoint resumes from the latest complete one.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from transformers import TrainerCallback

from e2h.config import RunConfig
from e2h.evaluation import evaluate_in_trainer
from e2h.outputs import (
    CONFIG_FILE,
    FINAL_DIR,
    LOG_FILE,
    STEP_RECORD_FILES,
    TEST_RESULTS_FILE,
    FileReporter,
    truncate_after_step,
)
from e2h.plan import grpo_config_kwargs, peft_config_dict, planned_run_name, planned_vllm_ports

logger = logging.getLogger("e2h.train")



def build_task(config: RunConfig):
    from e2h.tasks import get_task

    options = dict(config.task.options)
    options["levels"] = list(config.task.train_levels)
    options["heldout_levels"] = sorted(set(config.task.test_levels) - set(config.task.train_levels))
    for name in ("format_reward", "correctness_reward"):
        if getattr(config.task, name) is not None:
            options[name] = getattr(config.task, name)
    return get_task(config.task.name, **options)


def build_datasets(config: RunConfig, task, tokenizer):
    """Train rows for the training levels and test rows for every test level, prompts included."""
    from datasets import Dataset

    from e2h.tasks import build_dataset

    data = build_dataset(
        task,
        train_levels=config.task.train_levels,
        test_levels=config.task.test_levels,
        train_size=config.task.train_size_per_level,
        test_size=config.task.test_size_per_level,
        seed=config.algorithm.seed,
        tokenizer=tokenizer,
        max_prompt_length=config.algorithm.max_prompt_length,  # refused or dropped, never cut
    )
    if any(data.dropped.values()):
        logger.warning("left out %d train and %d test rows whose prompts are over algorithm.max_prompt_length=%s "
                       "tokens", data.dropped["train"], data.dropped["test"], config.algorithm.max_prompt_length)
    return Dataset.from_list(data.train), data.test


def make_scheduler_for(config: RunConfig, task):
    from e2h.schedulers import SCHEDULERS, make_scheduler

    params = dict(config.scheduler.params)
    if "reward_max" in SCHEDULERS[config.scheduler.name].Params.model_fields:
        params.setdefault("reward_max", task.max_reward)
    return make_scheduler(
        config.scheduler.name,
        config.num_levels,
        config.algorithm.max_steps,
        num_generations=config.algorithm.num_generations,
        **params,
    )


def peft_config_for(config: RunConfig):
    kwargs = peft_config_dict(config)
    if kwargs is None:
        return None
    from peft import LoraConfig

    return LoraConfig(**kwargs)


def run(
    config: RunConfig,
    output_dir: str | Path,
    reporter: FileReporter | None = None,
    should_stop: Callable[[int], bool] | None = None,
    resume: bool = True,
) -> dict:
    """Train ``config`` into ``output_dir``; returns the final per-level test results."""
    import torch
    from trl import GRPOConfig

    from e2h.models import load_model, load_tokenizer
    from e2h.trainer import CurriculumGRPOTrainer, last_complete_checkpoint

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if not torch.cuda.is_available():
        # Small models on a CPU run fastest on one thread per process, and a second process (another
        # rank, another run) then does not oversubscribe the cores: measured 0.4 s/step with one thread
        # against 15-25 s/step with torch's default when two trainings share two cores.
        torch.set_num_threads(int(os.environ.get("E2H_CPU_THREADS", "1")))
    reporter = reporter or FileReporter(output_dir)
    (output_dir / CONFIG_FILE).write_text(config.model_dump_json(indent=2))
    task = build_task(config)
    tokenizer = load_tokenizer(config.model.name_or_path, config.model.trust_remote_code)
    train_ds, test_rows = build_datasets(config, task, tokenizer)
    scheduler = make_scheduler_for(config, task)
    args = GRPOConfig(**grpo_config_kwargs(config, output_dir, use_cpu=not torch.cuda.is_available(),
                                           vllm_ports=planned_vllm_ports(), run_name=planned_run_name()))
    model = load_model(config.model.name_or_path, config.model.dtype, config.model.trust_remote_code,
                       config.model.attn_implementation)
    trainer = CurriculumGRPOTrainer(
        model=model,
        reward_funcs=[task.as_reward_func()],
        args=args,
        train_dataset=train_ds,
        processing_class=tokenizer,
        peft_config=peft_config_for(config),
        scheduler=scheduler,
        level_values=list(config.task.train_levels),
        on_snapshot=reporter.snapshot,
        on_completions=reporter.completions,
    )
    trainer.add_callback(
        EvalCallback(trainer, task, test_rows, config.algorithm.eval_steps, reporter,
                     config.algorithm.max_completion_length)
    )
    if should_stop is not None:
        trainer.add_callback(StopCallback(should_stop))
    checkpoint = last_complete_checkpoint(output_dir) if resume and output_dir.is_dir() else None
    if checkpoint:
        step = int(Path(checkpoint).name.split("-")[-1])
        logger.info("resuming from %s (step %d)", checkpoint, step)
        for name in STEP_RECORD_FILES:
            truncate_after_step(output_dir / name, step)
    trainer.train(resume_from_checkpoint=checkpoint)
    # The trained model (or LoRA adapter) with its tokenizer; every rank takes part (ZeRO-3 gathers).
    trainer.save_model(str(output_dir / FINAL_DIR))
    started = time.perf_counter()
    results = evaluate_in_trainer(trainer, task, test_rows, config.algorithm.max_completion_length)
    if trainer.is_world_process_zero():
        reporter.eval({"step": trainer.state.global_step, "name": "test", "results": results})
        logger.info("final test evaluation took %.1f s", time.perf_counter() - started)
        (output_dir / TEST_RESULTS_FILE).write_text(json.dumps(results, indent=2))
    _shut_down_processes(trainer)
    return results


def _shut_down_processes(trainer) -> None:
    """Let every rank leave together: a rank that exits while another still evaluates aborts in gloo."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        trainer.accelerator.wait_for_everyone()
        dist.destroy_process_group()


class EvalCallback(TrainerCallback):
    """Per-level evaluation every ``eval_steps`` (all ranks), reported as an evals record by the main one."""

    def __init__(self, trainer, task, rows, eval_steps, reporter, max_new_tokens):
        self.trainer, self.task, self.rows = trainer, task, rows
        self.eval_steps, self.reporter, self.max_new_tokens = eval_steps, reporter, max_new_tokens

    def on_step_end(self, args, state, control, **kwargs):
        if not self.eval_steps or state.global_step % self.eval_steps or state.global_step >= args.max_steps:
            return
        started = time.perf_counter()  # every rank evaluates its share of the questions
        results = evaluate_in_trainer(self.trainer, self.task, self.rows, self.max_new_tokens)
        # The step's snapshot (logged right after this) carries the time as metrics["eval/seconds"].
        self.trainer.eval_seconds = time.perf_counter() - started
        if state.is_world_process_zero:
            self.reporter.eval({"step": state.global_step, "name": "eval", "results": results})


class StopCallback(TrainerCallback):
    """Ends training gracefully (with a checkpoint) when ``should_stop(step)`` turns true."""

    def __init__(self, should_stop: Callable[[int], bool]):
        self.should_stop = should_stop

    def on_step_end(self, args, state, control, **kwargs):
        if self.should_stop(state.global_step):
            control.should_save = True
            control.should_training_stop = True


def setup_logging(output_dir: Path, to_file: bool = True) -> None:
    """Log to stderr, and to train.log unless a supervisor already captures stderr there."""
    output_dir.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if to_file:
        handlers.append(logging.FileHandler(output_dir / LOG_FILE))
    root = logging.getLogger()
    for handler in handlers:
        handler.setFormatter(fmt)
        root.addHandler(handler)
    root.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    """``python -m e2h.train [--config FILE] [--output-dir DIR] [overrides...]``."""
    import argparse

    from e2h.config import compose, load_config_file

    parser = argparse.ArgumentParser(prog="python -m e2h.train", description=__doc__)
    parser.add_argument("overrides", nargs="*", help="group=preset or dotted.key=value")
    parser.add_argument("--config", help="RunConfig JSON/YAML file")
    parser.add_argument("--output-dir", help="default: outputs/<name from the seed's rule>")
    parser.add_argument("--stop-file", help="stop gracefully (checkpoint first) once this file exists")
    ns = parser.parse_args(argv)
    try:
        base = load_config_file(ns.config) if ns.config else None
        config = compose(ns.overrides, base=base)
    except ValueError as e:
        # One readable line: the worker reports the tail of this output as the run's error.
        sys.stderr.write(f"error: invalid config: {e}\n")
        return 2
    output_dir = Path(ns.output_dir or Path("outputs") / config.output_name())
    setup_logging(output_dir, to_file=not os.environ.get("E2H_TRAIN_LOG_CAPTURED"))
    stop_file = Path(ns.stop_file) if ns.stop_file else None
    results = run(config, output_dir, should_stop=(lambda step: stop_file.exists()) if stop_file else None)
    if results:
        logger.info("test results: %s", json.dumps(results.get("overall", {})))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
