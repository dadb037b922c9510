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


def main(argv: list[str] | None = None) -> int:
    """``e2h train [overrides...] [--config FILE] [--output-dir DIR] [--gpus N|LIST] [--dry-run]``."""
    import argparse
    import json
    import sys

    from e2h.config import compose, load_config_file
    from e2h.outputs import CONFIG_FILE
    from e2h.plan import build_plan, plan_summary, visible_gpus

    parser = argparse.ArgumentParser(prog="e2h train", description="Plan a run and launch it on this machine.")
    parser.add_argument("overrides", nargs="*", help="group=preset or dotted.key=value")
    parser.add_argument("--config", help="RunConfig JSON/YAML file")
    parser.add_argument("--output-dir", help="default: outputs/<name from the seed's rule>")
    parser.add_argument("--gpus", help="GPUs to use: a count, a list like 0,2, or none (default: every visible one)")
    parser.add_argument("--dry-run", action="store_true", help="print the launch plan as JSON and start nothing")
    ns = parser.parse_args(argv)
    base = load_config_file(ns.config) if ns.config else None
    config = compose(ns.overrides, base=base)
    output_dir = Path(ns.output_dir or Path("outputs") / config.output_name()).resolve()
    gpus = parse_gpus(ns.gpus)
    plan = build_plan(config, output_dir, output_dir / CONFIG_FILE, visible_gpus() if gpus is None else gpus)
    if ns.dry_run:
        sys.stdout.write(json.dumps(plan_summary(plan), indent=2) + "\n")
        return 0
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / CONFIG_FILE).write_text(config.model_dump_json(indent=2))
    try:
        return run_plan(plan, output_dir)
    except VLLMServerError as e:
        sys.stderr.write(f"error: {e}\n")
        return 1
