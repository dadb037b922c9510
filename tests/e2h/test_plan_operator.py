"""What a run's launch may use beyond its config is the operator's call (issue 18): accelerate
configs from the operator's directory (E2H_ACCELERATE_CONFIGS) and W&B (E2H_ALLOW_WANDB).

A run names an operator's accelerate config (``algorithm.distributed=config:NAME``), never a
path; the plan resolves the name in the operator's directory or fails naming the field, the
variable and the fix. wandb is not installed here: the "installed" case puts an empty ``wandb``
package on sys.path, which is all the plan looks for (no W&B upload runs in these tests).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from e2h.config import compose
from e2h.plan import ACCELERATE_CONF_DIR, build_plan
from e2h.settings import LaunchSettings

from .test_train import _env

OUT = Path("/runs/r1")
ZERO3_OFFLOAD = """\
compute_environment: LOCAL_MACHINE
distributed_type: DEEPSPEED
deepspeed_config:
  zero_stage: 3
  offload_optimizer_device: cpu
"""


def _plan(overrides, gpus=(0, 1), **launch):
    config = compose(overrides)
    return build_plan(config, OUT, OUT / "config.json", list(gpus), launch=LaunchSettings(**launch))


def _flag(command, name):
    return command[command.index(name) + 1]


@pytest.fixture
def operator_dir(tmp_path):
    d = tmp_path / "accelerate-configs"
    d.mkdir()
    (d / "zero3-offload.yaml").write_text(ZERO3_OFFLOAD)
    return d


def test_an_operator_config_is_launched_from_the_operators_directory(operator_dir):
    plan = _plan(["algorithm.num_processes=2", "algorithm.distributed=config:zero3-offload"],
                 accelerate_configs=operator_dir)
    train = plan.process("train")
    assert train.command[1:3] == ["-m", "accelerate.commands.launch"]
    assert Path(_flag(train.command, "--config_file")) == (operator_dir / "zero3-offload.yaml").resolve()
    assert "--multi_gpu" not in train.command and _flag(train.command, "--num_processes") == "2"


def test_one_process_with_an_operator_config_still_goes_through_accelerate(operator_dir):
    plan = _plan(["algorithm.distributed=config:zero3-offload"], gpus=[0], accelerate_configs=operator_dir)
    command = plan.process("train").command
    assert "accelerate.commands.launch" in command and _flag(command, "--num_processes") == "1"


def test_the_presets_are_unchanged_whatever_the_operator_directory(operator_dir):
    (operator_dir / "deepspeed_zero3.yaml").write_text("distributed_type: NO\n")  # cannot shadow a preset
    plan = _plan(["algorithm.num_processes=2", "algorithm.distributed=deepspeed_zero3"],
                 accelerate_configs=operator_dir)
    assert Path(_flag(plan.process("train").command, "--config_file")) == ACCELERATE_CONF_DIR / "deepspeed_zero3.yaml"


def test_without_the_variable_an_operator_config_is_refused_naming_field_variable_and_fix():
    with pytest.raises(ValueError) as info:
        _plan(["algorithm.num_processes=2", "algorithm.distributed=config:zero3-offload"])
    text = str(info.value)
    assert text.startswith("algorithm.distributed: 'config:zero3-offload'")
    assert "E2H_ACCELERATE_CONFIGS is not set" in text and "zero3-offload.yaml" in text and "preset" in text


def test_a_name_the_operator_did_not_provide_is_refused_listing_what_is_there(operator_dir):
    (operator_dir / "notes.txt").write_text("not a config")
    with pytest.raises(ValueError) as info:
        _plan(["algorithm.num_processes=2", "algorithm.distributed=config:zero2"], accelerate_configs=operator_dir)
    text = str(info.value)
    assert text.startswith("algorithm.distributed: 'config:zero2'") and "no accelerate config zero2.yaml" in text
    assert "it provides config:zero3-offload;" in text and "notes" not in text


def test_a_directory_that_does_not_exist_refuses_every_name(tmp_path):
    with pytest.raises(ValueError, match="algorithm.distributed: .*no accelerate config x.yaml"):
        _plan(["algorithm.distributed=config:x"], gpus=[0], accelerate_configs=tmp_path / "missing")


@pytest.mark.parametrize("value", ["config:../zero3-offload", "config:sub/zero3-offload", "config:zero3.yaml",
                                   "config:", "config:-rf", "/etc/accelerate.yaml", "zero3-offload"])
def test_names_with_path_characters_are_refused_by_the_config(value):
    from e2h.config import RunConfig

    with pytest.raises(ValueError, match=r"algorithm.distributed\n.*neither a preset .* nor config:NAME"):
        RunConfig.model_validate({"algorithm": {"distributed": value}})


def test_e2h_train_dry_run_obeys_the_same_variable(tmp_path, operator_dir):
    cmd = [sys.executable, "-m", "e2h.cli", "train", "algorithm.num_processes=2",
           "algorithm.distributed=config:zero3-offload", "--gpus", "2", "--dry-run",
           "--output-dir", str(tmp_path / "o")]
    env = {k: v for k, v in _env().items() if k not in ("E2H_ACCELERATE_CONFIGS", "E2H_ALLOW_WANDB")}
    refused = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert refused.returncode == 2 and "E2H_ACCELERATE_CONFIGS is not set" in refused.stderr, refused.stderr
    allowed = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                             env={**env, "E2H_ACCELERATE_CONFIGS": str(operator_dir)})
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    train = json.loads(allowed.stdout)["processes"][-1]
    assert Path(_flag(train["command"], "--config_file")) == (operator_dir / "zero3-offload.yaml").resolve()


# -- W&B -----------------------------------------------------------------------------------------


@pytest.fixture
def wandb_importable(tmp_path, monkeypatch):
    """An empty ``wandb`` package on sys.path: the plan only checks that one is importable."""
    (tmp_path / "site" / "wandb").mkdir(parents=True)
    (tmp_path / "site" / "wandb" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))


def test_wandb_without_the_operators_permission_is_refused(wandb_importable):
    with pytest.raises(ValueError) as info:
        _plan(["algorithm.report_to=[wandb]"], gpus=[0])
    text = str(info.value)
    assert text.startswith("algorithm.report_to: wandb") and "E2H_ALLOW_WANDB=1" in text
    assert "drops wandb from algorithm.report_to" in text


def test_wandb_allowed_but_not_installed_says_pip_install_wandb(monkeypatch):
    import importlib.util

    assert importlib.util.find_spec("wandb") is None, "these tests assume wandb is not installed"
    with pytest.raises(ValueError, match=r"algorithm.report_to: wandb is not installed .*`pip install wandb`"):
        _plan(["algorithm.report_to=[wandb]"], gpus=[0], allow_wandb=True)


def test_an_allowed_wandb_run_reports_to_wandb_under_its_name_and_tags(wandb_importable):
    config = compose(["algorithm.report_to=[tensorboard,wandb]"])
    plan = build_plan(config, OUT, OUT / "config.json", [0], launch=LaunchSettings(allow_wandb=True),
                      run_name="vrex on countdown", tags=["sweep-7", "a,b"])
    assert plan.grpo_config["report_to"] == ["tensorboard", "wandb"]
    assert plan.grpo_config["run_name"] == "vrex on countdown"
    train = plan.process("train")
    assert train.env["E2H_RUN_NAME"] == "vrex on countdown" and train.env["WANDB_TAGS"] == "sweep-7,a b"
    # The plan is printed and reported to the server: it never holds the operator's W&B settings.
    assert not {k for k in train.env if k.startswith("WANDB_")} - {"WANDB_TAGS"}


def test_the_child_builds_the_same_run_name_from_the_plan(monkeypatch):
    from e2h.plan import grpo_config_kwargs, planned_run_name

    config = compose([])
    plan = build_plan(config, OUT, OUT / "config.json", [], launch=LaunchSettings(), run_name="my run")
    monkeypatch.setenv("E2H_RUN_NAME", plan.process("train").env["E2H_RUN_NAME"])
    assert grpo_config_kwargs(config, OUT, use_cpu=True, run_name=planned_run_name()) == plan.grpo_config
    monkeypatch.delenv("E2H_RUN_NAME")
    assert grpo_config_kwargs(config, OUT, use_cpu=True, run_name=planned_run_name())["run_name"] == \
        config.output_name()


def test_a_run_without_wandb_gets_no_wandb_tags():
    plan = build_plan(compose([]), OUT, OUT / "config.json", [], launch=LaunchSettings(), tags=["x"])
    assert "WANDB_TAGS" not in plan.process("train").env and plan.grpo_config["report_to"] == "none"


def test_wandb_in_grpo_kwargs_stays_refused():
    with pytest.raises(ValueError, match="report_to: refused"):
        compose(["algorithm.grpo_kwargs={report_to: [wandb]}"])
