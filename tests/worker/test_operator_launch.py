"""The worker and its operator's launch settings (issue 18): accelerate configs from
E2H_ACCELERATE_CONFIGS, W&B only with E2H_ALLOW_WANDB and the operator's WANDB_* settings reaching
only a run allowed to report to wandb. No W&B upload runs here (wandb is not installed)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from e2h.config import RunConfig
from e2h.plan import build_plan
from tests.worker.test_worker import make_worker, tiny_config
from worker.settings import WorkerSettings, child_environment, secret_values

OPERATOR_ENV = {
    "PATH": "/usr/bin", "WANDB_API_KEY": "wandb-key-0123456789", "WANDB_PROJECT": "curricula",
    "WANDB_ENTITY": "lab", "WANDB_MODE": "offline", "WANDB_LOG_MODEL": "checkpoint", "WANDB_DIR": "/elsewhere",
}
OPERATOR_WANDB = {"WANDB_API_KEY", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_MODE"}
# 1 training process through accelerate on the CPU: enough to show the worker starts the plan's command.
CPU_CONFIG = "compute_environment: LOCAL_MACHINE\ndistributed_type: 'NO'\nuse_cpu: true\nnum_machines: 1\n"


def _wandb_vars(env: dict[str, str]) -> set[str]:
    return {k for k in env if k.startswith("WANDB_")}


def test_the_operators_wandb_settings_reach_only_an_allowed_wandb_run(tmp_path):
    allowed = WorkerSettings(allow_wandb=True)
    assert _wandb_vars(child_environment(WorkerSettings(), OPERATOR_ENV, tmp_path, wandb=True)) == set()
    assert _wandb_vars(child_environment(allowed, OPERATOR_ENV, tmp_path, wandb=False)) == set()
    env = child_environment(allowed, OPERATOR_ENV, tmp_path, wandb=True)
    assert _wandb_vars(env) == OPERATOR_WANDB  # never WANDB_LOG_MODEL (uploads checkpoints) nor WANDB_DIR
    assert env["WANDB_API_KEY"] == OPERATOR_ENV["WANDB_API_KEY"] and env["PATH"] == "/usr/bin"
    # The key is still a secret of the worker's: redacted from everything it posts.
    assert OPERATOR_ENV["WANDB_API_KEY"] in secret_values(allowed, OPERATOR_ENV)


def test_the_worker_plans_with_its_operators_settings_and_the_runs_name_and_tags(tmp_path):
    (tmp_path / "cpu-one.yaml").write_text(CPU_CONFIG)
    settings = WorkerSettings(accelerate_configs=tmp_path)
    worker = make_worker("http://127.0.0.1:9", tmp_path, gpus=[], settings=settings)
    config = RunConfig.model_validate(tiny_config(distributed="config:cpu-one"))
    run = SimpleNamespace(name="my run", tags=["t1"])
    plan = worker.plan(config, tmp_path / "out", tmp_path / "out" / "config.json", run)
    train = plan.process("train")
    assert train.command[train.command.index("--config_file") + 1] == str((tmp_path / "cpu-one.yaml").resolve())
    assert plan.grpo_config["run_name"] == "my run" and train.env["E2H_RUN_NAME"] == "my run"
    with pytest.raises(ValueError, match="E2H_ACCELERATE_CONFIGS is not set"):
        make_worker("http://127.0.0.1:9", tmp_path, gpus=[], settings=WorkerSettings()).plan(
            config, tmp_path / "out", tmp_path / "out" / "config.json", run)


def _masked(command: list[str]) -> list[str]:
    """A command with its rendezvous port masked (a free port, picked at each plan)."""
    out = list(command)
    if "--main_process_port" in out:
        out[out.index("--main_process_port") + 1] = "PORT"
    return out


@pytest.mark.slow
def test_the_worker_launches_exactly_the_plans_command_with_the_operators_config(server, api, tmp_path):
    configs = tmp_path / "accelerate-configs"
    configs.mkdir()
    (configs / "cpu-one.yaml").write_text(CPU_CONFIG)
    (configs / "broken.yaml").write_text("distributed_type: NOT_A_TYPE\n")
    settings = WorkerSettings(accelerate_configs=configs)
    good = api.submit(tiny_config(max_steps=2, distributed="config:cpu-one"), name="operator config", tags=["op"])
    broken = api.submit(tiny_config(max_steps=2, distributed="config:broken"))
    unknown = api.submit(tiny_config(max_steps=2, distributed="config:zero9"))
    wandb = api.submit(tiny_config(max_steps=2, report_to=["wandb"]))
    assert make_worker(server.url, tmp_path, burst=True, gpus=[], settings=settings).run() == 4

    final = api.get(good.id)
    assert final.status == "succeeded", final.error
    out = Path(final.output_dir)
    expected = build_plan(RunConfig.model_validate(final.config), out, out / "config.json", [], launch=settings,
                          run_name="operator config", tags=["op"]).process("train")
    reported = final.report.processes[-1]
    assert _masked(reported.command) == _masked(expected.command)
    config_file = reported.command[reported.command.index("--config_file") + 1]
    assert config_file == str((configs / "cpu-one.yaml").resolve())
    assert reported.env == expected.env
    # The child built its GRPOConfig with the run's name (the Trainer saves its arguments with each checkpoint).
    import torch

    saved = sorted(out.glob("**/training_args.bin"))
    assert saved, sorted(p.name for p in out.iterdir())
    assert torch.load(saved[-1], weights_only=False).run_name == "operator config"
    # The file is what accelerate read: the operator's broken one fails that run in accelerate itself.
    failed = api.get(broken.id)
    assert failed.status == "failed" and "NOT_A_TYPE" in failed.error, failed.error
    refused = api.get(unknown.id)
    assert refused.status == "failed" and refused.error.startswith("algorithm.distributed: 'config:zero9'")
    assert "it provides config:broken, config:cpu-one" in refused.error
    assert refused.report is None or refused.report.processes is None  # nothing was started
    refused = api.get(wandb.id)
    assert refused.status == "failed" and refused.error.startswith("algorithm.report_to: wandb")
    assert "E2H_ALLOW_WANDB=1" in refused.error
