"""RunConfig: the one schema for a training run, plus preset composition.

The same model validates ``POST /runs`` on the server, drives the dashboard form and
configures the trainer. Every field has a default, so ``{}`` is a valid config: the
built-in tiny model on the arithmetic task with the variance-regularized scheduler.

Presets live in ``e2h/conf/<group>/<name>.yaml`` (groups: model, task, algorithm,
scheduler, mirroring the seed's Hydra layout) and are merged in the order given, then
dotted ``key=value`` overrides are applied (OmegaConf's dotlist: YAML values).
No torch here: the server imports this module.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
    with_config,
)
from pydantic_core import InitErrorDetails
from typing_extensions import TypedDict

from e2h.errors import FieldProblem, named_field
from e2h.schedulers import SCHEDULERS, make_scheduler

CONF_DIR = Path(__file__).parent / "conf"
PRESET_GROUPS = ("model", "task", "algorithm", "scheduler")
INT32_MAX = 2**31 - 1

# -- free-form JSON -------------------------------------------------------------------
# A run config is untrusted input (DESIGN.md section 8). Its free-form parts (task options,
# scheduler params, grpo_kwargs; the server's clone overrides) are bounded in depth and
# size: deeply nested JSON breaks serialisers and recursive code long before the body limit.

MAX_JSON_DEPTH = 8
MAX_JSON_BYTES = 16 * 1024


def json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of a JSON value (a scalar is 0, ``{"a": 1}`` is 1), counted without recursion;
    past ``limit`` the walk stops and returns ``limit + 1``."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list | tuple):
            children = node
        else:
            deepest = max(deepest, depth)
            continue
        deepest = max(deepest, depth + 1)
        if depth + 1 > limit:  # deep enough to refuse: stop walking
            return depth + 1
        stack.extend((child, depth + 1) for child in children)
    return deepest


def check_free_json(value: Any) -> Any:
    """Refuse free-form JSON deeper than MAX_JSON_DEPTH or larger than MAX_JSON_BYTES (as JSON text)."""
    if (depth := json_depth(value)) > MAX_JSON_DEPTH:
        raise ValueError(f"nested more than {MAX_JSON_DEPTH} levels deep (found {depth}+); flatten it")
    try:
        size = len(json.dumps(value, ensure_ascii=False, default=str).encode())
    except ValueError as e:  # circular structures (Python callers only)
        raise ValueError(f"not JSON: {e}") from None
    if size > MAX_JSON_BYTES:
        raise ValueError(f"{size} bytes as JSON, above the limit of {MAX_JSON_BYTES} bytes; make it smaller")
    return value


FreeJson = Annotated[dict[str, Any], BeforeValidator(check_free_json)]


# -- algorithm.grpo_kwargs: the allowlist ---------------------------------------------
# trl.GRPOConfig has ~200 fields; some load remote code, upload with the worker's hub login,
# send traffic to other hosts or name files on the worker. A submitter may set only these:
# loss, advantage, clipping, sampling and optimizer knobs, which change how a run learns and
# never what the worker reads, runs, uploads or contacts. Decided field by field against
# TRL 1.16 / transformers 5 (tests/e2h/test_config.py checks each is a real GRPOConfig field).

_NonNeg = Annotated[float, Field(ge=0, le=100)]
_Positive = Annotated[float, Field(gt=0, le=100)]
_Unit = Annotated[float, Field(ge=0, le=1)]
_IsBound = Annotated[float, Field(ge=0, le=10_000)]


@with_config(ConfigDict(extra="forbid"))
class GrpoKwargs(TypedDict, total=False):
    """The trl.GRPOConfig fields ``algorithm.grpo_kwargs`` may set, with their accepted values."""

    # loss, clipping, importance sampling
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"]
    epsilon: _NonNeg
    epsilon_high: _NonNeg | None
    delta: _Positive | None
    importance_sampling_level: Literal["token", "sequence"]
    sapo_temperature_neg: _Positive
    sapo_temperature_pos: _Positive
    vespo_k_pos: _NonNeg
    vespo_lambda_pos: _NonNeg
    vespo_k_neg: _NonNeg
    vespo_lambda_neg: _NonNeg
    off_policy_mask_threshold: _IsBound | None
    mask_truncated_completions: bool
    top_entropy_quantile: _Unit
    use_bias_correction_kl: bool
    entropy_coef: _NonNeg
    use_adaptive_entropy: bool
    entropy_coef_min: _NonNeg
    entropy_coef_max: _NonNeg
    entropy_coef_delta: _Unit
    entropy_target: _NonNeg
    vllm_importance_sampling_correction: bool
    vllm_importance_sampling_mode: Literal["token_truncate", "token_mask", "sequence_truncate", "sequence_mask"]
    vllm_importance_sampling_clip_max: _IsBound | None
    vllm_importance_sampling_clip_min: _IsBound | None
    vllm_importance_sampling_cap: _IsBound | None
    # advantages and the reference model
    scale_rewards: Literal["group", "batch", "none"] | bool
    sync_ref_model: bool
    ref_model_mixup_alpha: _Unit
    ref_model_sync_steps: Annotated[int, Field(ge=1, le=10_000_000)]
    disable_dropout: bool
    cast_lm_head_to_fp32: bool
    router_aux_loss_coef: _NonNeg | None
    # sampling
    top_p: Annotated[float, Field(gt=0, le=1)]
    top_k: Annotated[int, Field(ge=0, le=1_000_000)]
    min_p: _Unit | None
    repetition_penalty: _Positive
    vllm_gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)]
    # optimizer and learning-rate schedule
    optim: Literal["adamw_torch", "adamw_torch_fused", "adafactor", "sgd", "adagrad", "rmsprop"]
    lr_scheduler_type: Literal[
        "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
        "inverse_sqrt", "cosine_with_min_lr", "cosine_warmup_with_min_lr", "warmup_stable_decay",
    ]
    lr_scheduler_kwargs: Annotated[
        dict[Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,64}$")], float | bool], Field(max_length=8)
    ]
    warmup_steps: Annotated[float, Field(ge=0, le=10_000_000)]
    weight_decay: _NonNeg
    max_grad_norm: Annotated[float, Field(ge=0, le=1_000_000)]
    adam_beta1: Annotated[float, Field(ge=0, lt=1)]
    adam_beta2: Annotated[float, Field(ge=0, lt=1)]
    adam_epsilon: Annotated[float, Field(gt=0, le=1)]
    gradient_checkpointing_kwargs: dict[Literal["use_reentrant"], bool]


GRPO_KWARGS_ADAPTER = TypeAdapter(GrpoKwargs)
GRPO_KWARGS_ALLOWED: frozenset[str] = frozenset(GrpoKwargs.__annotations__)

# GRPOConfig fields that RunConfig sets from a field of its own.
GRPO_KWARGS_FIRST_CLASS: dict[str, str] = {
    "max_steps": "algorithm.max_steps",
    "learning_rate": "algorithm.learning_rate",
    "per_device_train_batch_size": "algorithm.per_device_train_batch_size",
    "num_generations": "algorithm.num_generations",
    "gradient_accumulation_steps": "algorithm.gradient_accumulation_steps",
    "steps_per_generation": "algorithm.steps_per_generation",
    "generation_batch_size": "algorithm.steps_per_generation",
    "num_iterations": "algorithm.num_iterations",
    "beta": "algorithm.beta",
    "max_completion_length": "algorithm.max_completion_length",
    "temperature": "algorithm.temperature",
    "logging_steps": "algorithm.logging_steps",
    "eval_steps": "algorithm.eval_steps",
    "save_steps": "algorithm.save_steps",
    "seed": "algorithm.seed",
    "use_vllm": "algorithm.use_vllm",
    "vllm_mode": "algorithm.vllm_mode",
    "bf16": "algorithm.bf16",
    "gradient_checkpointing": "algorithm.gradient_checkpointing",
    "save_total_limit": "algorithm.save_total_limit",
    "activation_checkpointing": "algorithm.gradient_checkpointing",
    "reward_weights": "task.format_reward and task.correctness_reward",
}

_REMOTE_CODE = ("would run the model repository's Python code on the worker; model.trust_remote_code is the "
                "one switch, and the server's and the worker's policy decide it")
_HUB = "would upload with the worker's Hugging Face account; a run's outputs stay on its worker"
_TRACKING = "would send the run's metrics to an outside service with the worker's credentials"
_NETWORK = "would send generation traffic to another host; the worker's launch plan places vLLM"
_PATH = "is a file path on the worker; the worker decides where a run reads and writes"
_E2H = "is set by e2h (the curriculum sampler, checkpoints, resume and evaluation rely on it)"
_LIMITS = ("would bypass the sampling and length fields and their ceilings; use top_p, top_k, min_p, "
           "repetition_penalty and algorithm.max_completion_length")
# GRPOConfig fields refused with a reason of their own; any other field not allowed gets _NOT_ALLOWED.
GRPO_KWARGS_REFUSED: dict[str, str] = {
    "trust_remote_code": _REMOTE_CODE,
    "model_init_kwargs": "decides how the worker loads the model, trust_remote_code included; use model.dtype "
                         "and model.trust_remote_code",
    "hub_token": "is a secret: a run config is readable by anyone who can reach the server, and a run never "
                 "uploads (" + _HUB + ")",
    **dict.fromkeys(("push_to_hub", "hub_model_id", "hub_strategy", "hub_private_repo", "hub_always_push",
                     "hub_revision", "log_completions_hub_repo"), _HUB),
    **dict.fromkeys(("report_to", "project", "trackio_space_id", "trackio_bucket_id", "trackio_static_space_id"),
                    _TRACKING),
    **dict.fromkeys(("vllm_server_base_url", "vllm_server_host", "vllm_server_port", "vllm_group_port",
                     "vllm_server_timeout"), _NETWORK),
    **dict.fromkeys(("output_dir", "resume_from_checkpoint", "deepspeed", "fsdp", "fsdp_config",
                     "accelerator_config"), _PATH),
    **dict.fromkeys(("save_strategy", "eval_strategy", "logging_strategy", "ignore_data_skip", "use_cpu",
                     "num_train_epochs", "shuffle_dataset", "remove_unused_columns", "dataloader_num_workers",
                     "auto_find_batch_size", "save_only_model", "disable_tqdm"), _E2H),
    "generation_kwargs": _LIMITS,
}
# Secrets a config held before the allowlist existed: never returned (server.models.RunPublic).
GRPO_KWARGS_SECRETS = ("hub_token",)
_NOT_ALLOWED = "is not on the allowlist of GRPOConfig fields a run may set; allowed: " + ", ".join(
    sorted(GRPO_KWARGS_ALLOWED)
)


def grpo_kwargs_refusal(key: str) -> str | None:
    """Why ``key`` may not be set in algorithm.grpo_kwargs, or None when it may."""
    if key in GRPO_KWARGS_ALLOWED:
        return None
    if key in GRPO_KWARGS_FIRST_CLASS:
        return f"set {GRPO_KWARGS_FIRST_CLASS[key]} instead (the curriculum follows it)"
    return f"refused: it {GRPO_KWARGS_REFUSED.get(key, _NOT_ALLOWED)}"


def check_grpo_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The allowlisted kwargs with their values checked, or ValueError naming the first bad key."""
    refused = [(key, why) for key in kwargs if (why := grpo_kwargs_refusal(key)) is not None]
    if refused:
        key, why = refused[0]
        also = f" (also refused: {', '.join(k for k, _ in refused[1:])})" if refused[1:] else ""
        raise FieldProblem(f"{key}: {why}{also}", key)
    try:
        return GRPO_KWARGS_ADAPTER.validate_python(kwargs)
    except ValidationError as e:
        err = e.errors(include_url=False, include_input=False)[0]
        path = ".".join(str(p) for p in err["loc"])
        raise FieldProblem(f"{path}: {err['msg']}", path) from None


# -- resource ceilings ----------------------------------------------------------------
# RunConfig's own bounds are generous (they are also the form's schema); a server or worker
# caps resource fields lower with these ceilings (its operator's policy, e.g. E2H_RUN_CEILINGS).

DEFAULT_CEILINGS: dict[str, float] = {
    "model.lora.r": 256,
    "model.lora.alpha": 1024,
    "task.train_size_per_level": 100_000,
    "task.test_size_per_level": 10_000,
    "algorithm.max_steps": 100_000,
    "algorithm.learning_rate": 0.01,
    "algorithm.per_device_train_batch_size": 256,
    "algorithm.num_generations": 64,
    "algorithm.gradient_accumulation_steps": 64,
    "algorithm.steps_per_generation": 64,
    "algorithm.num_iterations": 16,
    "algorithm.max_prompt_length": 8192,
    "algorithm.max_completion_length": 8192,
    "algorithm.num_processes": 8,
    # A multi-node run has torchrun connect to algorithm.main_process_ip, which the submitter
    # names: single-machine unless the operator raises it.
    "algorithm.num_machines": 1,
    "algorithm.vllm_gpus": 8,
}
# A ceiling on these also refuses null, which means "no limit".
_NULL_IS_UNBOUNDED = frozenset({"algorithm.max_prompt_length"})


def checked_ceilings(value: Mapping[str, float]) -> dict[str, float]:
    """An operator's ceilings (E2H_RUN_CEILINGS on a server or a worker): known fields, positive limits."""
    if unknown := sorted(set(value) - set(DEFAULT_CEILINGS)):
        raise ValueError(f"unknown fields {unknown}; ceilings exist for {sorted(DEFAULT_CEILINGS)}")
    if bad := sorted(k for k, limit in value.items() if not limit > 0):
        raise ValueError(f"ceilings must be positive numbers: {bad}")
    return dict(value)


def ceiling_errors(config: RunConfig, ceilings: Mapping[str, float], setting: str) -> list[tuple[str, str]]:
    """(dotted field, message) for each field of ``config`` above its ceiling; ``setting`` names
    where the ceilings come from, for the message (e.g. ``E2H_RUN_CEILINGS``)."""
    errors = []
    for field, limit in ceilings.items():
        value: Any = config
        for part in field.split("."):
            value = None if value is None else getattr(value, part)
        if value is None:  # unset (no LoRA, steps_per_generation following GA) or no limit
            if field in _NULL_IS_UNBOUNDED:
                errors.append((field, f"{field}: null means no limit, and this server's ceiling is {limit:g}; "
                                      f"set it to at most {limit:g}"))
        elif value > limit:
            errors.append((field, f"{field}: {value:g} is above this server's ceiling of {limit:g}; set it to at "
                                  f"most {limit:g} (the operator sets ceilings with {setting})"))
    return errors


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraConfig(_Section):
    r: int = Field(32, ge=1, le=4096, description="LoRA rank (E2H: 32).")
    alpha: int = Field(64, ge=1, le=16384, description="LoRA alpha (E2H: 64).")
    dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout.")
    target_modules: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = Field(
        ["q_proj", "v_proj"], max_length=64, description="Modules that get adapters."
    )


class ModelConfig(_Section):
    name_or_path: str = Field(
        "builtin:tiny",
        min_length=1,
        max_length=500,
        description="A Hugging Face model id or local path, or builtin:tiny (the shipped CPU model).",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "float32", description="Weights dtype when loading."
    )
    trust_remote_code: bool = Field(False, description="Run model code from the hub (off unless allowed).")
    lora: LoraConfig | None = Field(None, description="Train LoRA adapters (peft) instead of all weights.")
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = Field(
        "sdpa", description="Attention kernel (flash_attention_2 needs the flash-attn package and a GPU)."
    )


Level = Annotated[int, Field(ge=0, le=INT32_MAX)]


class TaskConfig(_Section):
    name: str = Field("arithmetic", max_length=64, description="Task name (see GET /tasks).")
    train_levels: list[Level] | None = Field(
        None, max_length=64, description="Levels trained on, easiest first (default: the task's)."
    )
    test_levels: list[Level] | None = Field(
        None, max_length=64, description="Levels evaluated, held-out ones included (default: the task's)."
    )
    train_size_per_level: int = Field(1000, ge=1, le=1_000_000, description="Training rows per level.")
    test_size_per_level: int = Field(50, ge=1, le=100_000, description="Evaluation rows per level.")
    format_reward: float | None = Field(
        None, ge=0, le=1000, description="Weight of the format reward (default: the task's)."
    )
    correctness_reward: float | None = Field(
        None, ge=0, le=1000, description="Weight of the correctness reward (default: the task's)."
    )
    options: FreeJson = Field({}, description=(
        "The task's options (e.g. path for the dataset task), checked against its options_schema (GET /tasks)."))


# Task options a RunConfig sets with a field of its own (build_task passes them to the task).
TASK_OPTIONS_FIRST_CLASS: dict[str, str] = {
    "levels": "task.train_levels",
    "heldout_levels": "task.test_levels (the held-out levels are the test levels not trained on)",
    "format_reward": "task.format_reward",
    "correctness_reward": "task.correctness_reward",
}


# algorithm.distributed: a shipped preset (e2h/conf/accelerate/<preset>.yaml, ddp needs none) or
# config:NAME, an accelerate config file NAME.yaml that this machine's operator put in the directory
# E2H_ACCELERATE_CONFIGS (e2h.settings.LaunchSettings; e2h.plan resolves it). A run names a file, never a path.
DISTRIBUTED_PRESETS = ("ddp", "deepspeed_zero2", "deepspeed_zero3", "fsdp")
OPERATOR_CONFIG_PREFIX = "config:"
OPERATOR_CONFIG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_DISTRIBUTED_PATTERN = (f"^({'|'.join(DISTRIBUTED_PRESETS)}|{OPERATOR_CONFIG_PREFIX}"
                        f"{OPERATOR_CONFIG_NAME.pattern})$")


def operator_config_name(distributed: str) -> str | None:
    """NAME of ``config:NAME`` (an operator's accelerate config), or None for a preset."""
    return distributed.removeprefix(OPERATOR_CONFIG_PREFIX) if distributed.startswith(OPERATOR_CONFIG_PREFIX) else None


def check_distributed(value: str) -> str:
    name = operator_config_name(value)
    if value in DISTRIBUTED_PRESETS or (name is not None and OPERATOR_CONFIG_NAME.fullmatch(name)):
        return value
    raise ValueError(
        f"{value[:80]!r} is neither a preset ({', '.join(DISTRIBUTED_PRESETS)}) nor config:NAME, NAME being 1-64 "
        "letters, digits, '_' or '-' (no path: the file NAME.yaml in the directory the machine's operator sets "
        "in E2H_ACCELERATE_CONFIGS)"
    )


class AlgorithmConfig(_Section):
    name: str = Field(
        "grpo", max_length=64, description="Algorithm preset name (recorded in the output dir name)."
    )
    max_steps: int = Field(200, ge=1, le=10_000_000, description="Optimizer steps.")
    learning_rate: float = Field(1e-4, gt=0, le=1, description="AdamW learning rate.")
    per_device_train_batch_size: int = Field(16, ge=1, le=65536, description="Completions per device per step.")
    num_generations: int = Field(8, ge=2, le=4096, description="Completions per prompt (GRPO group size).")
    gradient_accumulation_steps: int = Field(1, ge=1, le=4096, description="Micro-batches per optimizer step.")
    steps_per_generation: int | None = Field(
        None,
        ge=1,
        le=1024,
        description=(
            "Micro-batches trained on each generation batch (TRL; None: gradient_accumulation_steps, "
            "one generation per optimizer step; E2H: 1). The generation batch is per_device_train_batch_size "
            "x num_processes x steps_per_generation completions."
        ),
    )
    num_iterations: int = Field(
        1,
        ge=1,
        le=64,
        description="Passes over each generation batch before generating again (GRPO's mu; TRL num_iterations).",
    )
    beta: float = Field(0.0, ge=0, le=1000, description="KL coefficient (0 skips the reference model).")
    max_prompt_length: int | None = Field(
        128, ge=1, le=1_048_576,
        description="Longest prompt in tokens; prompts are never cut: a longer one fails the dataset build "
        "(task.options.long_prompts=drop leaves its row out instead). None: no limit.",
    )
    max_completion_length: int = Field(48, ge=1, le=1_048_576, description="Tokens generated per completion.")
    temperature: float = Field(1.0, gt=0, le=100, description="Sampling temperature for generation.")
    logging_steps: int = Field(
        1, ge=1, le=10_000_000, description="Log (and snapshot the curriculum) every N steps."
    )
    eval_steps: int | None = Field(
        50, ge=1, le=10_000_000, description="Evaluate per level every N steps (None: at the end)."
    )
    save_steps: int = Field(50, ge=1, le=10_000_000, description="Checkpoint every N steps.")
    seed: int = Field(42, ge=0, le=2**32 - 1, description="Seed for sampling, data order and initialisation.")
    num_processes: int = Field(
        1, ge=1, le=64, description="Training processes (one GPU each), over all machines; several use accelerate."
    )
    distributed: Annotated[str, AfterValidator(check_distributed)] = Field(
        "ddp",
        max_length=80,
        description="How several training processes share the model: ddp (each a full copy), deepspeed_zero2, "
        "deepspeed_zero3 (E2H's), fsdp (accelerate configs in e2h/conf/accelerate/), or config:NAME, the "
        "accelerate config NAME.yaml the machine's operator provides (E2H_ACCELERATE_CONFIGS).",
        json_schema_extra={"pattern": _DISTRIBUTED_PATTERN, "examples": [*DISTRIBUTED_PRESETS, "config:NAME"]},
    )
    num_machines: int = Field(1, ge=1, le=64, description="Machines of a multi-node run (num_processes spans them).")
    machine_rank: int = Field(0, ge=0, le=63, description="This machine's rank in a multi-node run.")
    main_process_ip: str | None = Field(
        None, max_length=255, pattern=r"^[A-Za-z0-9.:-]+$", description="Machine 0's address (multi-node)."
    )
    main_process_port: int | None = Field(None, ge=1024, le=65535, description="Machine 0's rendezvous port.")
    vllm_gpus: int = Field(
        1, ge=1, le=8, description="GPUs of the managed vLLM server (vllm_mode=server), before training's (E2H: 1)."
    )
    save_total_limit: int | None = Field(
        3, ge=1, le=10_000, description="Checkpoints kept, oldest deleted first (never the newest); None: all."
    )
    report_to: list[Literal["none", "tensorboard", "wandb"]] = Field(
        ["none"], max_length=3, description="Loggers besides the server: tensorboard writes to <output dir>/runs; "
        "wandb sends metrics to Weights & Biases with the machine's account, only where its operator allows it "
        "(E2H_ALLOW_WANDB)."
    )
    use_vllm: bool = Field(False, description="Generate with vLLM (GPU only).")
    vllm_mode: Literal["server", "colocate"] = Field("colocate", description="vLLM server or colocated.")
    bf16: bool = Field(False, description="bfloat16 mixed precision (GPU).")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory (large models).")
    grpo_kwargs: Annotated[FreeJson, AfterValidator(check_grpo_kwargs)] = Field(
        {},
        description="Other trl.GRPOConfig fields, from an allowlist of loss, advantage, clipping, sampling and "
        "optimizer knobs (e.g. loss_type, epsilon_high, scale_rewards, top_p, weight_decay; "
        "e2h.config.GrpoKwargs); any other key is refused, naming the reason.",
    )

    @property
    def effective_steps_per_generation(self) -> int:
        return self.steps_per_generation or self.gradient_accumulation_steps

    @property
    def generation_batch_size(self) -> int:
        """Completions generated at once, over all processes (TRL's generation_batch_size)."""
        return self.per_device_train_batch_size * self.num_processes * self.effective_steps_per_generation

    def geometry(self):
        """How this run's generation batches map onto optimizer steps (:mod:`e2h.geometry`)."""
        from e2h.geometry import BatchGeometry

        return BatchGeometry(self.gradient_accumulation_steps, self.effective_steps_per_generation,
                             self.num_iterations)


class SchedulerConfig(_Section):
    name: str = Field("variance_regularized", max_length=64, description="Scheduler name (see GET /schedulers).")
    params: FreeJson = Field({}, description="Scheduler parameters (see its JSON schema).")


class RunConfig(_Section):
    """A whole training run. Validation raises with the dotted field name and the fix."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        # Every cross-field problem at once (fixing one should not just reveal the next); the
        # scheduler is built only on levels that checked out, since its checks depend on them.
        problems: list[FieldProblem] = []
        for check in (self._fill_task_levels, self._check_batch, self._check_launch):
            try:
                check()
            except FieldProblem as e:
                problems.append(e)
        levels_ok = not any(p.path.startswith("task.") for p in problems)
        problems += self._task_option_problems()
        problems += self._scheduler_problems(build=levels_ok)
        if problems:
            # Each at the config's loc, naming its field as data (the API's ``field``, the form's place).
            raise ValidationError.from_exception_data("RunConfig", [
                InitErrorDetails(type="value_error", loc=(), input=None, ctx={"error": p}) for p in problems])
        return self

    def _fill_task_levels(self) -> None:
        from e2h.tasks import TASKS, get_task

        if self.task.name not in TASKS:
            raise FieldProblem(f"task.name: unknown task {self.task.name!r}; choose one of {sorted(TASKS)}",
                               "task.name")
        if self.task.name == "dataset":
            if self.task.train_levels is None:
                raise FieldProblem("task.train_levels: the dataset task needs the list of training levels",
                                   "task.train_levels")
            self.task.test_levels = self.task.test_levels or list(self.task.train_levels)
        else:
            task = get_task(self.task.name)
            known = list(task.available_levels)
            self.task.train_levels = self.task.train_levels or list(task.levels)
            self.task.test_levels = self.task.test_levels or sorted(set(task.test_levels) | set(self.task.train_levels))
            for field in ("train_levels", "test_levels"):
                for level in getattr(self.task, field):
                    if level not in known:
                        raise FieldProblem(
                            f"task.{field}: task {self.task.name!r} has no level {level}; levels are {known}",
                            f"task.{field}"
                        )
        if not self.task.train_levels:
            raise FieldProblem("task.train_levels: at least one training level is needed", "task.train_levels")
        if len(set(self.task.train_levels)) != len(self.task.train_levels):
            raise FieldProblem(f"task.train_levels: duplicate levels in {self.task.train_levels}",
                               "task.train_levels")

    def _task_option_problems(self) -> list[FieldProblem]:
        """Each problem of task.options against the task's options model (nothing is loaded or built)."""
        from e2h.tasks import TASKS

        task = TASKS.get(self.task.name)
        if task is None:
            return []  # task.name says so
        problems = [FieldProblem(f"task.options.{key}: set {TASK_OPTIONS_FIRST_CLASS[key]} instead",
                                 f"task.options.{key}") for key in self.task.options if key in TASK_OPTIONS_FIRST_CLASS]
        rest = {k: v for k, v in self.task.options.items() if k not in TASK_OPTIONS_FIRST_CLASS}
        return problems + [p.under("task.options", f"task.options.{p}") for p in task.check_options(rest)]

    def _check_launch(self) -> None:
        a, m = self.algorithm, self.model
        if m.lora is None and m.dtype in ("bfloat16", "float16"):
            raise FieldProblem(
                f"model.dtype: full fine-tuning of {m.dtype} weights updates them in {m.dtype} (at small learning "
                "rates most never change); load them in float32 and set algorithm.bf16=true (mixed precision "
                "keeps float32 master weights), or train LoRA adapters (model.lora)",
                "model.dtype"
            )
        if a.num_processes % a.num_machines:
            raise FieldProblem(f"algorithm.num_processes: {a.num_processes} processes do not split evenly over "
                               f"{a.num_machines} machines; make it a multiple of algorithm.num_machines",
                               "algorithm.num_processes")
        if a.machine_rank >= a.num_machines:
            raise FieldProblem(f"algorithm.machine_rank: {a.machine_rank} must be below "
                               f"num_machines={a.num_machines}", "algorithm.machine_rank")
        if a.num_machines > 1 and (a.main_process_ip is None or a.main_process_port is None):
            raise FieldProblem("algorithm.main_process_ip: a multi-node run needs main_process_ip and "
                               "main_process_port (machine 0's address and rendezvous port)",
                               "algorithm.main_process_ip")

    def _check_batch(self) -> None:
        a = self.algorithm
        spg = "steps_per_generation" if a.steps_per_generation else "gradient_accumulation_steps"
        if a.generation_batch_size % a.num_generations:
            raise FieldProblem(
                f"algorithm.num_generations: {a.num_generations} must divide the generation batch "
                f"(per_device_train_batch_size x num_processes x {spg} = {a.generation_batch_size}); "
                f"change num_generations, per_device_train_batch_size or {spg}",
                "algorithm.num_generations"
            )

    def _scheduler_problems(self, build: bool) -> list[FieldProblem]:
        """Each scheduler parameter's problem, then (``build``, parameters valid) what building it says."""
        name = self.scheduler.name
        if name not in SCHEDULERS:
            return [FieldProblem(f"scheduler.name: unknown scheduler {name!r}; choose one of {sorted(SCHEDULERS)}",
                                 "scheduler.name")]
        try:
            SCHEDULERS[name].Params(**self.scheduler.params)
        except ValidationError as e:
            problems = []
            for err in e.errors(include_url=False):
                path = ".".join(["scheduler", "params", *(str(x) for x in err["loc"])])
                problems.append(FieldProblem(f"{path}: {err['msg']}", path))
            return problems
        if not build:
            return []
        try:
            make_scheduler(name, self.num_levels, self.algorithm.max_steps, **self.scheduler.params)
        except FieldProblem as e:
            return [e.under("scheduler.params", f"scheduler.params: {e}")]
        except ValueError as e:
            return [FieldProblem(f"scheduler.params: {e}", "scheduler.params")]
        return []

    @property
    def num_levels(self) -> int:
        return len(self.task.train_levels or [])

    def display_name(self, max_params: int = 3) -> str:
        """A short readable run name (the runs table, ``e2h runs ls``, the run picker): scheduler,
        task, model, steps and the first few scheduler parameters that differ from the scheduler's
        defaults, e.g.
        ``variance_regularized countdown2345 tiny 500 steps (min_prob=0.05)``. The output
        directory keeps the seed's longer rule (:meth:`output_name`)."""
        model = self.model.name_or_path.rstrip("/").split("/")[-1].replace("builtin:", "")
        name = f"{self.scheduler.name} {self.task.name} {model} {self.algorithm.max_steps} steps"
        known = SCHEDULERS.get(self.scheduler.name)
        defaults = known.Params().model_dump() if known else {}
        params = sorted((k, v) for k, v in self.scheduler.params.items() if k not in defaults or defaults[k] != v)
        shown = [f"{k}={_compact(v)}"[:24] for k, v in params[:max_params]]
        if len(params) > max_params:
            shown.append(f"+{len(params) - max_params}")
        return f"{name} ({', '.join(shown)})" if shown else name

    def output_name(self) -> str:
        """The seed's rule: {model}_{task}_{algorithm}_{scheduler}_{params}_{max_steps}."""
        model = self.model.name_or_path.rstrip("/").split("/")[-1].replace("builtin:", "")
        params = "-".join(f"{k}{_compact(v)}" for k, v in sorted(self.scheduler.params.items())) or "default"
        name = f"{model}_{self.task.name}_{self.algorithm.name}_{self.scheduler.name}_{params}"
        return re.sub(r"[^A-Za-z0-9._=-]+", "", f"{name}_{self.algorithm.max_steps}")


def _compact(value: Any) -> str:
    if isinstance(value, dict):
        return "-".join(f"{k}{_compact(v)}" for k, v in sorted(value.items()))
    return str(value)


# -- dotted keys ----------------------------------------------------------------------
# "scheduler.params.min_prob" names a field of a (dumped) RunConfig: overrides, clones, sweep
# grids and the launch form all speak this way.


def dotted_get(data: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    """The value at ``dotted`` in nested mappings, ``default`` when absent."""
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def dotted_set(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``dotted`` in nested dicts, making (or replacing non-dict) parents on the way."""
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[leaf] = value


def dotted_expand(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"scheduler.name": "sec"}`` -> ``{"scheduler": {"name": "sec"}}``."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        dotted_set(out, key, value)
    return out


# -- presets --------------------------------------------------------------------------


def list_presets() -> dict[str, list[str]]:
    """Preset names per group, e.g. {"model": ["llama3b", "qwen15", ...], ...}."""
    return {g: sorted(p.stem for p in (CONF_DIR / g).glob("*.yaml")) for g in PRESET_GROUPS}


def load_preset(group: str, name: str) -> dict:
    """The partial RunConfig dict a preset holds."""
    from omegaconf import OmegaConf

    if group not in PRESET_GROUPS:
        raise ValueError(f"unknown preset group {group!r}; groups are {list(PRESET_GROUPS)}")
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown {group} preset {name!r}; choose one of {list_presets()[group]}")
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)


def error_lines(exc: ValidationError) -> list[str]:
    """A config's validation errors as the API reports them, one ``field: message`` each (no
    pydantic boilerplate, input values or documentation links): for the CLI and log lines."""
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        msg = str(err["msg"]).removeprefix("Value error, ")
        where = ".".join([*(str(part) for part in err["loc"]), *named_field(err)])
        head, rest = msg.split(": ", 1) if ": " in msg else ("", msg)
        if not where or (head and where.startswith(head)):
            lines.append(msg)  # it already names its field (or the part above a parameter)
        elif head and where.endswith("." + head):
            lines.append(f"{where}: {rest}")  # it names the last part only: name all of it, once
        else:
            lines.append(f"{where}: {msg}")
    return lines


def describe_error(exc: BaseException) -> str:
    """``exc`` for a person: a validation error's ``field: message`` lines, anything else as is."""
    return "\n".join(error_lines(exc)) if isinstance(exc, ValidationError) else str(exc)


def compose(overrides: list[str] | tuple[str, ...] = (), base: dict | None = None) -> RunConfig:
    """Compose ``group=preset`` and ``dotted.key=value`` overrides onto ``base`` and validate.

    Presets are merged first, in the order given; dotted overrides are applied after them.
    """
    from omegaconf import OmegaConf

    merged = OmegaConf.create(base or {})
    dotted = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not key=value")
        if key in PRESET_GROUPS:
            merged = OmegaConf.merge(merged, load_preset(key, value))
        else:
            dotted.append(item)
    if dotted:
        merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(dotted))
    return RunConfig.model_validate(OmegaConf.to_container(merged, resolve=True))


def load_config_file(path: str | Path) -> dict:
    """Read a RunConfig JSON or YAML file (the same body ``POST /runs`` takes as ``config``)."""
    from omegaconf import OmegaConf

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {str(path)!r} does not exist")
    if path.suffix == ".json":
        return json.loads(path.read_text())
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)
