"""Run a launch plan on this machine, as ``e2h train`` does: the vLLM server first, then training.

The worker supervises the same plan itself (heartbeats, cancels, log shipping); both start the
processes the plan lists with the environment it gives them, and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

from e2h.outputs import VLLM_LOG_FILE
from e2h.plan import LaunchPlan
from e2h.processes import die_with_parent
from e2h.vllm_server import DEFAULT_HEALTH_DEADLINE_S, ManagedVLLMServer, VLLMServerError


def child_env(plan_env: Mapping[str, str], base_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a planned process: ``base_env`` (default: this one) with the plan's on top."""
    return {**(os.environ if base_env is None else base_env), **plan_env}


def run_plan(plan: LaunchPlan, output_dir: str | Path, base_env: Mapping[str, str] | None = None,
             health_deadline_s: float = DEFAULT_HEALTH_DEADLINE_S) -> int:
    """Start the plan's processes, wait for training to end, stop the rest; training's exit code."""
    output_dir = Path(output_dir)
    with contextlib.ExitStack() as stack:
        vllm = plan.process("vllm")
        if vllm is not None:
            server = stack.enter_context(ManagedVLLMServer(vllm, output_dir / VLLM_LOG_FILE, base_env))
            server.wait_healthy(health_deadline_s)
        train = plan.process("train")
        assert train is not None, "a plan always has a training process"
        # torchrun (several processes) stops its workers on SIGTERM; a plain child is simply killed.
        death = signal.SIGTERM if "accelerate.commands.launch" in train.command else signal.SIGKILL
        proc = subprocess.Popen(train.command, env=child_env(train.env, base_env), preexec_fn=die_with_parent(death))
        try:
            return proc.wait()
        except KeyboardInterrupt:  # Ctrl-C reached the child too (same process group): let it checkpoint
            return proc.wait()


def parse_gpus(text: str | None) -> list[int] | None:
    """``--gpus``: a count ("4": devices 0-3), a list ("0,2"), "none" (the CPU), or None (what is visible)."""
    if text is None:
        return None
    text = text.strip()
    if text.lower() in ("none", "cpu", ""):
        return []
    if text.isdigit():
        return list(range(int(text)))
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(f"--gpus: {text!r} is not a count, a comma-separated list of GPU indices, or none") from None


def launch(overrides: list[str], config_file: str | None = None, output_dir: str | None = None,
           gpus: str | None = None, dry_run: bool = False) -> int:
    """``e2h train``: compose the run's config, plan it on this machine's GPUs and run the plan
    (``dry_run``: print the plan as JSON and start nothing). ValueError: a config or --gpus problem."""
    import json
    import sys

    from e2h.config import compose, load_config_file
    from e2h.outputs import CONFIG_FILE
    from e2h.plan import build_plan, plan_summary, visible_gpus

    base = load_config_file(config_file) if config_file else None
    config = compose(overrides, base=base)
    out = Path(output_dir or Path("outputs") / config.output_name()).resolve()
    chosen = parse_gpus(gpus)
    plan = build_plan(config, out, out / CONFIG_FILE, visible_gpus() if chosen is None else chosen)
    if dry_run:
        sys.stdout.write(json.dumps(plan_summary(plan), indent=2) + "\n")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_FILE).write_text(config.model_dump_json(indent=2))
    try:
        return run_plan(plan, out)
    except VLLMServerError as e:
        sys.stderr.write(f"error: {e}\n")
        return 1
