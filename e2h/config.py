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
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from e2h.schedulers import SCHEDULERS, make_scheduler

CONF_DIR = Path(__file__).parent / "conf"
PRESET_GROUPS = ("model", "task", "algorithm", "scheduler")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraConfig(_Section):
    r: int = Field(32, ge=1, description="LoRA rank (E2H: 32).")
    alpha: int = Field(64, ge=1, description="LoRA alpha (E2H: 64).")
    dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout.")
    target_modules: list[str] = Field(["q_proj", "v_proj"], description="Modules that get adapters.")


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


class TaskConfig(_Section):
    name: str = Field("arithmetic", description="Task name (see GET /tasks).")
    train_levels: list[int] | None = Field(
        None, max_length=64, description="Levels trained on, easiest first (default: the task's)."
    )
    test_levels: list[int] | None = Field(
        None, max_length=64, description="Levels evaluated, held-out ones included (default: the task's)."
    )
    train_size_per_level: int = Field(1000, ge=1, le=1_000_000, description="Training rows per level.")
    test_size_per_level: int = Field(50, ge=1, le=100_000, description="Evaluation rows per level.")
    format_reward: float | None = Field(None, ge=0, description="Weight of the format reward (default: the task's).")
    correctness_reward: float | None = Field(
        None, ge=0, description="Weight of the correctness reward (default: the task's)."
    )
    options: dict[str, Any] = Field({}, description="Task-specific options (e.g. path for the dataset task).")


class AlgorithmConfig(_Section):
    name: str = Field("grpo", description="Algorithm preset name (recorded in the output dir name).")
    max_steps: int = Field(200, ge=1, le=10_000_000, description="Optimizer steps.")
    learning_rate: float = Field(1e-4, gt=0, description="AdamW learning rate.")
    per_device_train_batch_size: int = Field(16, ge=1, description="Completions per device per step.")
    num_generations: int = Field(8, ge=2, description="Completions per prompt (GRPO group size).")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
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
    beta: float = Field(0.0, ge=0, description="KL coefficient (0 skips the reference model).")
    max_prompt_length: int | None = Field(128, ge=1, description="Prompt tokens kept (left-truncated).")
    max_completion_length: int = Field(48, ge=1, description="Tokens generated per completion.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature for generation.")
    logging_steps: int = Field(1, ge=1, description="Log (and snapshot the curriculum) every N steps.")
    eval_steps: int | None = Field(50, ge=1, description="Evaluate per level every N steps (None: at the end).")
    save_steps: int = Field(50, ge=1, description="Checkpoint every N steps.")
    seed: int = Field(42, description="Seed for sampling, data order and initialisation.")
    num_processes: int = Field(1, ge=1, le=64, description="Processes (GPUs) for accelerate launch.")
    use_vllm: bool = Field(False, description="Generate with vLLM (GPU only).")
    vllm_mode: Literal["server", "colocate"] = Field("colocate", description="vLLM server or colocated.")
    bf16: bool = Field(False, description="bfloat16 mixed precision (GPU).")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory (large models).")
    grpo_kwargs: dict[str, Any] = Field({}, description="Other trl.GRPOConfig fields, passed through.")

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
    name: str = Field("variance_regularized", description="Scheduler name (see GET /schedulers).")
    params: dict[str, Any] = Field({}, description="Scheduler parameters (see its JSON schema).")


class RunConfig(_Section):
    """A whole training run. Validation raises with the dotted field name and the fix."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        self._fill_task_levels()
        self._check_batch()
        self._check_scheduler()
        return self

    def _fill_task_levels(self) -> None:
        from e2h.tasks import TASKS, get_task

        if self.task.name not in TASKS:
            raise ValueError(f"task.name: unknown task {self.task.name!r}; choose one of {sorted(TASKS)}")
        if self.task.name == "dataset":
            if self.task.train_levels is None:
                raise ValueError("task.train_levels: the dataset task needs the list of training levels")
            self.task.test_levels = self.task.test_levels or list(self.task.train_levels)
        else:
            task = get_task(self.task.name)
            known = list(task.available_levels)
            self.task.train_levels = self.task.train_levels or list(task.levels)
            self.task.test_levels = self.task.test_levels or sorted(set(task.test_levels) | set(self.task.train_levels))
            for field in ("train_levels", "test_levels"):
                for level in getattr(self.task, field):
                    if level not in known:
                        raise ValueError(
                            f"task.{field}: task {self.task.name!r} has no level {level}; levels are {known}"
                        )
        if not self.task.train_levels:
            raise ValueError("task.train_levels: at least one training level is needed")
        if len(set(self.task.train_levels)) != len(self.task.train_levels):
            raise ValueError(f"task.train_levels: duplicate levels in {self.task.train_levels}")

    def _check_batch(self) -> None:
        a = self.algorithm
        spg = "steps_per_generation" if a.steps_per_generation else "gradient_accumulation_steps"
        if a.generation_batch_size % a.num_generations:
            raise ValueError(
                f"algorithm.num_generations: {a.num_generations} must divide the generation batch "
                f"(per_device_train_batch_size x num_processes x {spg} = {a.generation_batch_size}); "
                f"change num_generations, per_device_train_batch_size or {spg}"
            )
        for key in ("steps_per_generation", "num_iterations", "generation_batch_size"):
            if key in a.grpo_kwargs:
                field = "steps_per_generation" if key == "generation_batch_size" else key
                raise ValueError(
                    f"algorithm.grpo_kwargs.{key}: set algorithm.{field} instead (the curriculum follows it)"
                )

    def _check_scheduler(self) -> None:
        name = self.scheduler.name
        if name not in SCHEDULERS:
            raise ValueError(f"scheduler.name: unknown scheduler {name!r}; choose one of {sorted(SCHEDULERS)}")
        try:
            SCHEDULERS[name].Params(**self.scheduler.params)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            raise ValueError(f"scheduler.params.{where}: {err['msg']}") from None
        try:
            make_scheduler(name, self.num_levels, self.algorithm.max_steps, **self.scheduler.params)
        except ValueError as e:
            raise ValueError(f"scheduler.params: {e}") from None

    @property
    def num_levels(self) -> int:
        return len(self.task.train_levels or [])

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
