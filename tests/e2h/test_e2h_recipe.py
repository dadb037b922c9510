"""E2H's recipe (issue 19): `e2h train model=qwen15 task=countdown2345 algorithm=e2h --dry-run` plans E2H's values.

The table is E2H's, read from divelab/E2H-Reasoning (config/algorithm/grpo.yaml, config/model/qwen1.5b.yaml,
config/task/countdown.yaml, run.sh): (E2H's key, where our dry run shows it, E2H's value).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from e2h.config import compose

# (E2H key, dry-run path, E2H value)
E2H_COUNTDOWN_QWEN15 = [
    # config/algorithm/grpo.yaml
    ("algorithm.args.num_generations", "grpo_config.num_generations", 8),
    ("algorithm.args.per_device_train_batch_size", "grpo_config.per_device_train_batch_size", 16),
    ("algorithm.args.gradient_accumulation_steps", "grpo_config.gradient_accumulation_steps", 4),
    ("algorithm.args.steps_per_generation", "grpo_config.steps_per_generation", 1),
    ("algorithm.args.beta", "grpo_config.beta", 0.001),
    ("algorithm.args.loss_type", "grpo_config.loss_type", "grpo"),
    ("algorithm.args.learning_rate", "grpo_config.learning_rate", 1e-6),
    ("algorithm.args.lr_scheduler_type", "grpo_config.lr_scheduler_type", "cosine"),
    ("algorithm.args.bf16", "grpo_config.bf16", True),
    ("algorithm.args.tf32", "grpo_config.tf32", True),
    ("algorithm.args.gradient_checkpointing", "grpo_config.gradient_checkpointing", True),
    ("algorithm.args.logging_steps", "grpo_config.logging_steps", 10),
    ("algorithm.args.eval_steps", "run_config.algorithm.eval_steps", 400),
    ("algorithm.args.seed", "grpo_config.seed", 42),
    ("algorithm.args.use_vllm", "grpo_config.use_vllm", True),
    ("algorithm.args.vllm_mode", "grpo_config.vllm_mode", "server"),
    ("algorithm.args.max_steps (task.args.max_steps)", "grpo_config.max_steps", 1600),
    ("algorithm.args.max_completion_length (task)", "grpo_config.max_completion_length", 512),
    ("algorithm.args.max_prompt_length (task)", "run_config.algorithm.max_prompt_length", 1000),
    ("TRL 0.19.1 defaults: temperature", "grpo_config.temperature", 1.0),
    ("TRL 0.19.1: no vLLM importance-sampling correction", "grpo_config.vllm_importance_sampling_correction", False),
    ("run.sh --gradient_clipping 1", "grpo_config.max_grad_norm", 1.0),
    ("algorithm.e2h_args.curriculum_schedule", "run_config.scheduler.name", "cosine"),
    # config/model/qwen1.5b.yaml
    ("model.args.model_name_or_path", "run_config.model.name_or_path", "Qwen/Qwen2.5-1.5B-Instruct"),
    ("model.args.torch_dtype", "run_config.model.dtype", "bfloat16"),
    ("model.args.lora_r", "peft_config.r", 32),
    ("model.args.lora_alpha", "peft_config.lora_alpha", 64),
    ("model.args.lora_dropout", "peft_config.lora_dropout", 0.1),
    ("model.args.lora_target_modules", "peft_config.target_modules", ["q_proj", "v_proj"]),
    ("model.args.lora_task_type", "peft_config.task_type", "CAUSAL_LM"),
    # config/task/countdown.yaml (E2H's levels 0-3 and held-out 4 are 2-5 and 6 operands here)
    ("task.args.train_levels", "run_config.task.train_levels", [2, 3, 4, 5]),
    ("task.args.test_levels", "run_config.task.test_levels", [2, 3, 4, 5, 6]),
    ("task.args.format_reward", "run_config.task.format_reward", 0.1),
    ("task.args.correctness_reward", "run_config.task.correctness_reward", 0.9),
    ("task.args.train_size (327680 over 4 levels)", "run_config.task.train_size_per_level", 81920),
]


def _get(tree, path: str):
    for part in path.split("."):
        tree = tree[part]
    return tree


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("e2h") / "run"
    cmd = [sys.executable, "-m", "e2h.cli", "train", "model=qwen15", "task=countdown2345", "algorithm=e2h",
           "--dry-run", "--gpus", "3", "--output-dir", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not out.exists()  # a dry run starts nothing
    return json.loads(proc.stdout)


@pytest.mark.parametrize(("e2h_key", "ours", "value"), E2H_COUNTDOWN_QWEN15, ids=[r[0] for r in E2H_COUNTDOWN_QWEN15])
def test_the_dry_run_plans_e2hs_value(dry_run, e2h_key, ours, value):
    assert _get(dry_run, ours) == value, e2h_key


def test_the_dry_run_places_processes_as_run_sh(dry_run):
    # run.sh: `trl vllm-serve` on GPU 0, `accelerate launch --use_deepspeed --zero_stage 3 --num_processes 2
    # --mixed_precision bf16` on GPUs 1 and 2
    vllm, train = (next(p for p in dry_run["processes"] if p["role"] == role) for role in ("vllm", "train"))
    assert vllm["env"]["CUDA_VISIBLE_DEVICES"] == "0"
    assert vllm["command"][vllm["command"].index("--tensor-parallel-size") + 1] == "1"
    assert train["env"]["CUDA_VISIBLE_DEVICES"] == "1,2"
    command = train["command"]
    assert command[command.index("--num_processes") + 1] == "2"
    assert command[command.index("--mixed_precision") + 1] == "bf16"
    assert command[command.index("--config_file") + 1].endswith("deepspeed_zero3.yaml")
    # 16 completions x 2 processes x 4 micro-steps = 128 = 16 prompts x 8 per optimizer step (E2H's
    # accelerator_config.split_batches halves what each process gets; README, "E2H's keys and ours")
    grpo = dry_run["grpo_config"]
    assert grpo["per_device_train_batch_size"] * 2 * grpo["gradient_accumulation_steps"] == 16 * 8


@pytest.mark.parametrize(
    ("preset", "steps", "prompt", "completion", "weights", "train_levels", "test_levels"),
    [  # config/task/*.yaml
        ("countdown2345", 1600, 1000, 512, (0.1, 0.9), [2, 3, 4, 5], [2, 3, 4, 5, 6]),
        ("blocksworld", 1200, 1600, 512, (1.0, 2.0), [1, 2, 4, 6], [1, 2, 4, 6, 8]),
        ("math", 1200, 1600, 1600, (0.1, 0.9), [0, 1, 2, 3], [0, 1, 2, 3, 4]),
        ("gsm8k", 1600, 1600, 512, (0.1, 0.9), [0, 1, 2, 3], [0, 1, 2, 3]),
        ("aqua", 1600, 512, 512, (0.1, 0.9), [0, 1, 2, 3], [0, 1, 2, 3]),
    ],
)
def test_task_presets_carry_e2hs_budgets(preset, steps, prompt, completion, weights, train_levels, test_levels):
    c = compose(["model=qwen15", f"task={preset}", "algorithm=e2h"])
    assert (c.algorithm.max_steps, c.algorithm.max_prompt_length, c.algorithm.max_completion_length) == (
        steps, prompt, completion)
    assert (c.task.format_reward, c.task.correctness_reward) == weights
    assert (c.task.train_levels, c.task.test_levels) == (train_levels, test_levels)
    # the order of the groups does not matter: lengths live in the task preset only
    again = compose([f"task={preset}", "algorithm=e2h", "model=qwen15"])
    assert again.model_dump() == c.model_dump()


@pytest.mark.parametrize("preset", ["math", "gsm8k", "aqua"])
def test_data_recipes_are_dataset_runs_with_e2hs_hub_ids(preset):
    c = compose([f"task={preset}"])
    # the dataset task: a worker's data policy (E2H_DATA_ROOTS, E2H_ALLOW_HUB_DATASETS) applies to it
    assert c.task.name == "dataset"
    assert c.task.options == {"path": f"divelab/{preset}", "test_split": "test", "recipe": preset}


def test_the_seeds_names_keep_working():
    c = compose(["task=countdown2345", "algorithm=grpo_variance_regularized"])
    assert c.task.name == "countdown" and c.scheduler.name == "variance_regularized"
    assert compose(["model=qwen15"]).model.lora.dropout == 0.1
