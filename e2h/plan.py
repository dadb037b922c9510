"""A run's launch plan: which processes start, on which devices, with which command and environment.

One function, :func:`build_plan`, decides everything a GPU run depends on, from the RunConfig
and the devices a worker (or ``e2h train``) gives the run; the worker and ``e2h train`` launch
exactly what it returns, and ``e2h train --dry-run`` prints it. No torch here.

Layout (E2H's ``run.sh``): with ``algorithm.use_vllm`` in ``server`` mode the first
``algorithm.vllm_gpus`` devices serve generation (``trl vllm-serve``, on a free loopback port
and a free communicator port, never the API's 8000), the next ``algorithm.num_processes``
train. Every training process sees exactly its own devices through ``CUDA_VISIBLE_DEVICES``,
so a single-process run sees one GPU (transformers would wrap a model that sees several in
``nn.DataParallel``, which TRL's GRPOTrainer refuses).

What a run may use beyond its config is this machine's operator's call (:class:`e2h.settings.LaunchSettings`,
``E2H_*``): an accelerate config of the operator's (``algorithm.distributed=config:NAME`` is
``<E2H_ACCELERATE_CONFIGS>/NAME.yaml``; a run names a file, never a path) and W&B
(``algorithm.report_to=[wandb]`` only with ``E2H_ALLOW_WANDB``; the operator's WANDB_* variables reach
that run's child, see ``worker.settings.child_environment``). A run they do not allow fails here,
naming the field, the variable and the fix.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from e2h.config import (
    CONF_DIR,
    DISTRIBUTED_PRESETS,
    GRPO_KWARGS_ALLOWED,
    OPERATOR_CONFIG_NAME,
    RunConfig,
    operator_config_name,
)
from e2h.outputs import STOP_FILE
from e2h.settings import ACCELERATE_CONFIGS_ENV, ALLOW_WANDB_ENV, LaunchSettings

ACCELERATE_CONF_DIR = CONF_DIR / "accelerate"
LAUNCHERS = DISTRIBUTED_PRESETS
VLLM_SERVE_COMMAND_ENV = "E2H_VLLM_SERVE_COMMAND"
DEFAULT_VLLM_SERVE_COMMAND = f"{shlex.quote(sys.executable)} -m trl.cli.main vllm-serve"  # TRL's `trl vllm-serve`
# The training child learns the managed vLLM server's ports from these.
VLLM_PORT_ENV = "E2H_VLLM_SERVER_PORT"
VLLM_GROUP_PORT_ENV = "E2H_VLLM_GROUP_PORT"
# The run's name (the server's, when a worker trains it), GRPOConfig's run_name in the child.
RUN_NAME_ENV = "E2H_RUN_NAME"


@dataclass
class ProcessPlan:
    role: str  # "train" or "vllm"
    command: list[str]
    env: dict[str, str]
    port: int | None = None  # the vLLM server's HTTP port (its health check)


@dataclass
class LaunchPlan:
    run_config: dict
    grpo_config: dict
    peft_config: dict | None
    devices: list[int]
    processes: list[ProcessPlan] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def process(self, role: str) -> ProcessPlan | None:
        return next((p for p in self.processes if p.role == role), None)


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def visible_gpus() -> list[int]:
    """The GPU indices this process may use: CUDA_VISIBLE_DEVICES if set, else what nvidia-smi lists."""
    declared = os.environ.get("CUDA_VISIBLE_DEVICES")
    if declared is not None:
        return [int(x) for x in declared.split(",") if x.strip().isdigit()]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [i for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def processes_here(config: RunConfig) -> int:
    """Training processes on this machine (``algorithm.num_processes`` counts every machine's)."""
    return config.algorithm.num_processes // config.algorithm.num_machines


def gpus_needed(config: RunConfig) -> int:
    """Devices a run needs on this machine: one per training process here, plus the vLLM server's."""
    a = config.algorithm
    return processes_here(config) + (a.vllm_gpus if a.use_vllm and a.vllm_mode == "server" else 0)


def vllm_serve_command() -> list[str]:
    return shlex.split(os.environ.get(VLLM_SERVE_COMMAND_ENV) or DEFAULT_VLLM_SERVE_COMMAND)


def grpo_config_kwargs(
    config: RunConfig, output_dir: str | Path, use_cpu: bool, vllm_ports: dict[str, int] | None = None,
    run_name: str | None = None,
) -> dict[str, Any]:
    """Translate the algorithm section into trl.GRPOConfig keyword arguments.

    ``vllm_ports`` (``vllm_server_port``, ``vllm_group_port``) are the managed vLLM server's, from
    the launch plan (``e2h.plan``); the server always listens on loopback. ``run_name``: the run's
    name (trackers show it; default: the config's output name).
    """
    a = config.algorithm
    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir),
        max_steps=a.max_steps,
        learning_rate=a.learning_rate,
        per_device_train_batch_size=a.per_device_train_batch_size,
        num_generations=a.num_generations,
        gradient_accumulation_steps=a.gradient_accumulation_steps,
        steps_per_generation=a.effective_steps_per_generation,
        num_iterations=a.num_iterations,
        beta=a.beta,
        max_completion_length=a.max_completion_length,
        temperature=a.temperature,
        logging_steps=a.logging_steps,
        save_strategy="steps",
        save_steps=a.save_steps,
        eval_strategy="no",  # per-level evaluation is ours (EvalCallback)
        seed=a.seed,
        bf16=a.bf16,
        use_vllm=a.use_vllm,
        vllm_mode=a.vllm_mode,
        gradient_checkpointing=a.gradient_checkpointing,
        tf32=None if use_cpu else True,
        save_total_limit=a.save_total_limit,
        report_to=[r for r in a.report_to if r != "none"] or "none",
        run_name=run_name or config.output_name(),
        # The curriculum sampler restores its own position; the Trainer must not skip batches by
        # drawing them again (that would advance the curriculum).
        ignore_data_skip=True,
        use_cpu=use_cpu,
        dataloader_num_workers=0,
        disable_tqdm=False,
    )
    # A validated RunConfig holds only allowlisted keys, none of them set above; checked again
    # here because a config can be built without validation (model_construct).
    refused = sorted(set(a.grpo_kwargs) - GRPO_KWARGS_ALLOWED | set(a.grpo_kwargs) & set(kwargs))
    if refused:
        raise ValueError(f"algorithm.grpo_kwargs: {refused} may not be set (see e2h.config.GrpoKwargs)")
    kwargs.update(a.grpo_kwargs)
    if a.use_vllm and a.vllm_mode == "server":
        if not vllm_ports:
            raise ValueError("algorithm.vllm_mode: server mode needs the managed vLLM server's ports from the "
                             "launch plan; start the run with `e2h train` or a worker")
        kwargs.update(vllm_server_host="127.0.0.1", vllm_server_timeout=60.0, **vllm_ports)
    return kwargs


def planned_vllm_ports() -> dict[str, int] | None:
    """The managed vLLM server's ports, as the launch plan passed them to this process."""
    if VLLM_PORT_ENV not in os.environ:
        return None
    return {"vllm_server_port": int(os.environ[VLLM_PORT_ENV]),
            "vllm_group_port": int(os.environ[VLLM_GROUP_PORT_ENV])}


def planned_run_name() -> str | None:
    """The run's name, as the launch plan passed it to this process."""
    return os.environ.get(RUN_NAME_ENV) or None


def accelerate_config_file(config: RunConfig, launch: LaunchSettings) -> Path | None:
    """The accelerate config file of ``algorithm.distributed`` (None: ddp, which needs none).

    ``config:NAME`` is the file NAME.yaml in the operator's directory (``E2H_ACCELERATE_CONFIGS``);
    ValueError naming the field, the variable and the fix when the operator provides no such file.
    """
    distributed = config.algorithm.distributed
    name = operator_config_name(distributed)
    if name is None:
        if distributed not in DISTRIBUTED_PRESETS:
            raise ValueError(f"algorithm.distributed: unknown value {distributed!r}")  # only without validation
        return None if distributed == "ddp" else ACCELERATE_CONF_DIR / f"{distributed}.yaml"
    fix = f"name a file this machine provides or use a preset ({', '.join(DISTRIBUTED_PRESETS)})"
    if not OPERATOR_CONFIG_NAME.fullmatch(name):  # checked again: a config built without validation
        raise ValueError(f"algorithm.distributed: {distributed!r} is not config:NAME (letters, digits, '_', '-'); "
                         + fix)
    if launch.accelerate_configs is None:
        raise ValueError(
            f"algorithm.distributed: {distributed!r} names an operator's accelerate config and this machine's "
            f"operator provides none ({ACCELERATE_CONFIGS_ENV} is not set); the operator sets {ACCELERATE_CONFIGS_ENV} "
            f"to a directory holding {name}.yaml, or the run uses a preset ({', '.join(DISTRIBUTED_PRESETS)})"
        )
    directory = Path(launch.accelerate_configs).expanduser().resolve()
    path = directory / f"{name}.yaml"
    if not path.is_file():
        offered = sorted(p.stem for p in directory.glob("*.yaml") if OPERATOR_CONFIG_NAME.fullmatch(p.stem)) \
            if directory.is_dir() else []
        raise ValueError(
            f"algorithm.distributed: {distributed!r}: this machine's operator provides no accelerate config "
            f"{name}.yaml in {ACCELERATE_CONFIGS_ENV}; "
            + (f"it provides {', '.join(f'config:{o}' for o in offered)}; " if offered else "")
            + fix
        )
    return path


def check_report_to(config: RunConfig, launch: LaunchSettings) -> None:
    """ValueError naming algorithm.report_to when the run reports to a tracker this machine does not allow."""
    if "wandb" not in config.algorithm.report_to:
        return
    if not launch.allow_wandb:
        raise ValueError(
            "algorithm.report_to: wandb would send the run's metrics to Weights & Biases with this machine's "
            f"account, and its operator does not allow it; the operator sets {ALLOW_WANDB_ENV}=1 (with "
            "WANDB_API_KEY, WANDB_PROJECT ... in the worker's or `e2h train`'s environment), or the run drops "
            "wandb from algorithm.report_to"
        )
    if importlib.util.find_spec("wandb") is None:
        raise ValueError("algorithm.report_to: wandb is not installed on this machine; `pip install wandb` in the "
                         "environment that trains, or drop wandb from algorithm.report_to")


def wandb_tags(tags: Sequence[str]) -> str:
    """The run's tags as WANDB_TAGS (W&B splits it at commas, so a tag's own commas become spaces)."""
    return ",".join(t.replace(",", " ").strip() for t in tags if t.replace(",", " ").strip())


def peft_config_dict(config: RunConfig) -> dict | None:
    """The LoRA settings as peft.LoraConfig keyword arguments, or None (no adapters)."""
    lora = config.model.lora
    if lora is None:
        return None
    return dict(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                target_modules=list(lora.target_modules), task_type="CAUSAL_LM")


def build_plan(
    config: RunConfig,
    output_dir: str | Path,
    config_path: str | Path,
    gpus: Sequence[int],
    port: Callable[[], int] = free_port,
    python: str = sys.executable,
    launch: LaunchSettings | None = None,
    run_name: str | None = None,
    tags: Sequence[str] = (),
) -> LaunchPlan:
    """Plan ``config`` on ``gpus`` (physical indices given to this run; empty: the CPU).

    ``launch``: what this machine's operator allows (default: read from the environment);
    ``run_name``/``tags``: the run's, as trackers show them. Raises ValueError naming the field
    when the run cannot be placed on them or uses what the operator does not provide.
    """
    a = config.algorithm
    launch = LaunchSettings() if launch is None else launch
    config_file = accelerate_config_file(config, launch)
    check_report_to(config, launch)
    output_dir, gpus = Path(output_dir), list(gpus)
    server = a.use_vllm and a.vllm_mode == "server"
    if not gpus and a.use_vllm:
        raise ValueError("algorithm.use_vllm: vLLM generates on GPUs and none is available here; "
                         "set algorithm.use_vllm=false to generate with transformers on the CPU")
    if gpus and len(gpus) < gpus_needed(config):
        raise ValueError(
            f"algorithm.num_processes: the run needs {gpus_needed(config)} GPUs ({processes_here(config)} training"
            + (f" + {a.vllm_gpus} for the vLLM server" if server else "")
            + f") and {len(gpus)} are given ({gpus}); lower algorithm.num_processes"
            + (" or algorithm.vllm_gpus" if server else "")
        )
    vllm_devices = gpus[: a.vllm_gpus] if server else []
    train_devices = gpus[len(vllm_devices) : len(vllm_devices) + processes_here(config)]
    processes: list[ProcessPlan] = []
    vllm_ports: dict[str, int] = {}
    if server:
        vllm_ports = {"vllm_server_port": port(), "vllm_group_port": port()}
        command = [*vllm_serve_command(), "--model", config.model.name_or_path, "--host", "127.0.0.1",
                   "--port", str(vllm_ports["vllm_server_port"]), "--tensor-parallel-size", str(len(vllm_devices))]
        processes.append(ProcessPlan("vllm", command, {"CUDA_VISIBLE_DEVICES": _devices(vllm_devices)},
                                     port=vllm_ports["vllm_server_port"]))
    grpo = grpo_config_kwargs(config, output_dir, use_cpu=not gpus, vllm_ports=vllm_ports, run_name=run_name)
    env = {"CUDA_VISIBLE_DEVICES": _devices(train_devices)}
    if run_name:
        env[RUN_NAME_ENV] = run_name
    if "wandb" in a.report_to and wandb_tags(tags):
        env["WANDB_TAGS"] = wandb_tags(tags)
    if server:
        env[VLLM_PORT_ENV] = str(vllm_ports["vllm_server_port"])
        env[VLLM_GROUP_PORT_ENV] = str(vllm_ports["vllm_group_port"])
    train_args = ["-m", "e2h.train", "--config", str(config_path), "--output-dir", str(output_dir),
                  "--stop-file", str(output_dir / STOP_FILE)]
    command = [*launcher_command(config, python, port, bool(gpus), config_file), *train_args]
    processes.append(ProcessPlan("train", command, env))
    return LaunchPlan(config.model_dump(mode="json"), grpo, peft_config_dict(config), gpus, processes)


def _devices(devices: list[int]) -> str:
    return ",".join(str(d) for d in devices)


def launcher_command(config: RunConfig, python: str, port: Callable[[], int], on_gpu: bool,
                     config_file: Path | None = None) -> list[str]:
    """The command prefix that starts the training processes: plain Python, or accelerate launch
    (with ``config_file``, :func:`accelerate_config_file`'s, unless the run is ddp)."""
    a = config.algorithm
    if config_file is None and a.distributed != "ddp":
        config_file = accelerate_config_file(config, LaunchSettings())
    if a.num_processes == 1 and config_file is None and a.num_machines == 1:
        return [python]
    command = [python, "-m", "accelerate.commands.launch"]
    if config_file is None:
        # --multi_gpu launches through torchrun; without GPUs the processes join over gloo on the CPU
        # (accelerate's --cpu flag would start a single process).
        command += ["--multi_gpu"]
    else:
        command += ["--config_file", str(config_file)]
    command += ["--num_processes", str(a.num_processes), "--num_machines", str(a.num_machines),
                "--mixed_precision", "bf16" if a.bf16 and on_gpu else "no", "--dynamo_backend", "no"]
    if a.num_machines > 1:
        command += ["--machine_rank", str(a.machine_rank), "--main_process_ip", str(a.main_process_ip),
                    "--main_process_port", str(a.main_process_port)]
    else:
        # Concurrent runs on one node must not share torchrun's default rendezvous port.
        command += ["--main_process_port", str(port())]
    return command


def plan_summary(plan: LaunchPlan) -> dict[str, Any]:
    """The plan as printed by ``e2h train --dry-run``: run config, GRPOConfig kwargs, PEFT, processes."""
    d = plan.to_dict()
    return {"run_config": d["run_config"], "grpo_config": d["grpo_config"], "peft_config": d["peft_config"],
            "processes": [{"role": p["role"], "command": p["command"], "env": p["env"]} for p in d["processes"]]}
