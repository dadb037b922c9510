"""Launch plans (issue 18): what runs where, decided without a GPU and printed by `e2h train --dry-run`."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from e2h.config import compose
from e2h.plan import build_plan, gpus_needed

from .test_train import _env

API_PORT = 8000  # the project's own API: no planned port may take it


def _plan(overrides, gpus, out=Path("/runs/r1")):
    config = compose(overrides)
    return config, build_plan(config, out, out / "config.json", gpus)


def _flag(command, name):
    return command[command.index(name) + 1]


def test_a_single_process_run_sees_exactly_one_of_eight_gpus():
    _, plan = _plan(["model=qwen15", "task=arithmetic"], list(range(8)))
    assert [p.role for p in plan.processes] == ["train"]
    train = plan.processes[0]
    assert train.env["CUDA_VISIBLE_DEVICES"] == "0"  # one device: no nn.DataParallel
    assert train.command[1:3] == ["-m", "e2h.train"]
    assert plan.grpo_config["use_cpu"] is False and plan.grpo_config["bf16"] is True
    assert plan.grpo_config["tf32"] is True and plan.grpo_config["save_total_limit"] == 3
    assert plan.peft_config == {"r": 32, "lora_alpha": 64, "lora_dropout": 0.1,  # E2H's
                                "target_modules": ["q_proj", "v_proj"], "task_type": "CAUSAL_LM"}


def test_one_gpu():
    _, plan = _plan(["model=tiny"], [3])
    assert plan.processes[0].env["CUDA_VISIBLE_DEVICES"] == "3"


def test_a_cpu_run_sees_no_gpu():
    _, plan = _plan(["model=tiny"], [])
    assert plan.processes[0].env["CUDA_VISIBLE_DEVICES"] == ""
    assert plan.grpo_config["use_cpu"] is True and plan.grpo_config["tf32"] is None


def test_two_process_ddp():
    _, plan = _plan(["model=qwen15", "algorithm.num_processes=2"], [0, 1, 2, 3])
    train = plan.process("train")
    assert train.env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert "--multi_gpu" in train.command and _flag(train.command, "--num_processes") == "2"
    assert _flag(train.command, "--mixed_precision") == "bf16"
    assert int(_flag(train.command, "--main_process_port")) != 29500  # concurrent runs: own rendezvous port


def test_e2h_layout_vllm_server_on_one_gpu_zero3_training_on_two():
    overrides = ["model=qwen15", "algorithm.use_vllm=true", "algorithm.vllm_mode=server",
                 "algorithm.num_processes=2", "algorithm.distributed=deepspeed_zero3"]
    config, plan = _plan(overrides, [0, 1, 2])
    assert gpus_needed(config) == 3
    vllm, train = plan.process("vllm"), plan.process("train")
    assert vllm.env["CUDA_VISIBLE_DEVICES"] == "0" and train.env["CUDA_VISIBLE_DEVICES"] == "1,2"
    assert vllm.command[-6:] == ["--host", "127.0.0.1", "--port", str(vllm.port), "--tensor-parallel-size", "1"]
    ports = {plan.grpo_config["vllm_server_port"], plan.grpo_config["vllm_group_port"]}
    assert plan.grpo_config["vllm_server_port"] == vllm.port and API_PORT not in ports and len(ports) == 2
    assert plan.grpo_config["vllm_server_host"] == "127.0.0.1"
    assert train.env["E2H_VLLM_SERVER_PORT"] == str(vllm.port)
    assert train.env["E2H_VLLM_GROUP_PORT"] == str(plan.grpo_config["vllm_group_port"])
    config_file = Path(_flag(train.command, "--config_file"))
    assert config_file.name == "deepspeed_zero3.yaml" and "zero_stage: 3" in config_file.read_text()


def test_two_nodes():
    overrides = ["model=qwen15", "algorithm.num_processes=8", "algorithm.num_machines=2", "algorithm.machine_rank=1",
                 "algorithm.main_process_ip=10.0.0.1", "algorithm.main_process_port=29400",
                 "algorithm.distributed=fsdp"]
    _, plan = _plan(overrides, list(range(4)))
    train = plan.process("train")
    assert train.env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"  # 4 of the 8 processes run on this machine
    assert [_flag(train.command, f) for f in ("--num_processes", "--num_machines", "--machine_rank",
                                              "--main_process_ip", "--main_process_port")] == \
        ["8", "2", "1", "10.0.0.1", "29400"]
    assert Path(_flag(train.command, "--config_file")).name == "fsdp.yaml"


@pytest.mark.parametrize(
    ("overrides", "gpus", "needle"),
    [
        (["algorithm.num_processes=2"], [0], "needs 2 GPUs .* lower algorithm.num_processes"),
        (["algorithm.use_vllm=true", "algorithm.vllm_mode=server"], [0], "needs 2 GPUs .*vllm_gpus"),
        (["algorithm.use_vllm=true"], [], "algorithm.use_vllm: vLLM generates on GPUs"),
    ],
)
def test_plans_that_do_not_fit_name_the_field(overrides, gpus, needle):
    with pytest.raises(ValueError, match=needle):
        _plan(["model=tiny", *overrides], gpus)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["algorithm.num_processes=3", "algorithm.num_machines=2", "algorithm.main_process_ip=h",
          "algorithm.main_process_port=2000"], "do not split evenly"),
        (["algorithm.num_machines=2", "algorithm.num_processes=2"], "main_process_ip"),
        (["model.dtype=bfloat16"], "model.dtype: full fine-tuning of bfloat16"),
    ],
)
def test_launch_fields_are_validated(overrides, needle):
    with pytest.raises(ValueError, match=needle):
        compose(overrides)


def test_dry_run_prints_the_plan_and_starts_nothing(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "e2h.cli", "train", "model=qwen15", "algorithm.use_vllm=true",
           "algorithm.vllm_mode=server", "algorithm.num_processes=2", "algorithm.distributed=deepspeed_zero3",
           "--gpus", "3", "--dry-run", "--output-dir", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    plan = json.loads(proc.stdout)
    assert set(plan) == {"run_config", "grpo_config", "peft_config", "processes"}
    assert [p["role"] for p in plan["processes"]] == ["vllm", "train"]
    assert [p["env"]["CUDA_VISIBLE_DEVICES"] for p in plan["processes"]] == ["0", "1,2"]
    assert plan["grpo_config"]["output_dir"] == str(out) and plan["run_config"]["algorithm"]["num_processes"] == 2
    assert not out.exists()


def test_dry_run_refuses_a_plan_that_does_not_fit(tmp_path):
    cmd = [sys.executable, "-m", "e2h.cli", "train", "algorithm.num_processes=4", "--gpus", "2", "--dry-run"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and "needs 4 GPUs" in proc.stderr


def test_a_multi_node_run_is_over_the_default_ceiling():
    from e2h.config import DEFAULT_CEILINGS, ceiling_errors

    config = compose(["algorithm.num_processes=2", "algorithm.num_machines=2", "algorithm.main_process_ip=10.0.0.1",
                      "algorithm.main_process_port=29400"])
    errors = ceiling_errors(config, DEFAULT_CEILINGS, "E2H_RUN_CEILINGS")
    assert [field for field, _ in errors] == ["algorithm.num_machines"]
    assert not ceiling_errors(config, {**DEFAULT_CEILINGS, "algorithm.num_machines": 2}, "E2H_RUN_CEILINGS")
