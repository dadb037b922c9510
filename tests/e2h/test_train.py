"""Real GRPO training (TRL's GRPOTrainer) of the built-in tiny model on a CPU, a few steps each."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from e2h.config import compose
from e2h.outputs import read_completions, read_jsonl
from e2h.schemas import CompletionIn
from e2h.trainer import COMPLETIONS_PER_LEVEL

pytestmark = pytest.mark.slow

FAST = [
    "model=tiny",
    "task=arithmetic",
    "algorithm.per_device_train_batch_size=8",
    "algorithm.num_generations=4",
    "algorithm.max_completion_length=40",
    "task.train_size_per_level=64",
    "task.test_size_per_level=4",
]


def _env():
    env = dict(os.environ)
    env.update(TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return env


def two_process_launch() -> list[str]:
    """The launch plan's command prefix for 2 training processes on the CPU (accelerate, gloo)."""
    from e2h.plan import free_port, launcher_command

    return launcher_command(compose(["algorithm.num_processes=2"]), sys.executable, free_port, on_gpu=False)


def _check_snapshots(snaps, k, steps):
    assert [s["step"] for s in snaps] == steps
    for s in snaps:
        probs = [lv["probability"] for lv in s["levels"]]
        assert len(probs) == k
        assert abs(sum(probs) - 1) < 1e-9
        assert {"loss", "reward"} <= s["metrics"].keys()


def test_e2h_train_cli_writes_the_output_dir(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "e2h.cli", "train", "model=tiny", "task=arithmetic",
           "algorithm=grpo_variance_regularized", "algorithm.max_steps=5",
           "scheduler.params.warmup_steps=2", "scheduler.params.update_interval=2",
           *FAST[2:], "algorithm.eval_steps=3", "algorithm.save_steps=5", "--output-dir", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    snaps = read_jsonl(out / "snapshots.jsonl")
    _check_snapshots(snaps, 5, [1, 2, 3, 4, 5])
    assert snaps[0]["levels"][0]["components"] is None  # warmup: uniform, no breakdown yet
    comps = snaps[-1]["levels"][0]["components"]
    for name in ("deficit", "variance", "exploration", "groupdro", "vrex", "score", "pi"):
        assert name in comps
    evals = read_jsonl(out / "evals.jsonl")
    assert [(e["step"], e["name"]) for e in evals] == [(3, "eval"), (5, "test")]
    results = json.loads((out / "test_results.json").read_text())
    assert {f"level_{i}" for i in range(6)} <= results.keys()  # held-out level 5 included
    assert results["overall"]["support"] == sum(results[f"level_{i}"]["support"] for i in range(6))
    assert json.loads((out / "config.json").read_text())["scheduler"]["name"] == "variance_regularized"
    assert (out / "checkpoint-5" / "curriculum_state.json").is_file()
    assert (out / "final" / "config.json").is_file() and (out / "final" / "tokenizer.json").is_file()
    metrics = snaps[-1]["metrics"]
    assert {"gpu/mem_allocated_peak_gib", "gpu/mem_reserved_peak_gib"} <= metrics.keys()
    assert metrics["gpu/mem_allocated_peak_gib"] is None  # a CPU run: the keys are there, without a value
    assert snaps[0]["metrics"]["throughput/tokens_per_second"] is None
    assert metrics["throughput/tokens_per_second"] > 0
    assert [s["step"] for s in snaps if "eval/seconds" in s["metrics"]] == [3]  # the step that evaluated
    assert (out / "train.log").stat().st_size > 0
    _check_completions(out, snaps)


def _check_completions(out, snaps):
    """Each logged step's sample: the levels that step trained on, a few each, as the server takes them."""
    sample = read_completions(out)
    assert sorted({c["step"] for c in sample}) == [s["step"] for s in snaps]
    counts = [0] * len(snaps[0]["levels"])
    for snap in snaps:
        at_step = read_completions(out, snap["step"])
        levels = {c["level"] for c in at_step}
        # The levels whose count grew at this step: the completions are labelled with their own level.
        grew = {lv["level"] for lv in snap["levels"] if (lv.get("count") or 0) > counts[lv["level"]]}
        counts = [lv.get("count") or 0 for lv in snap["levels"]]
        assert levels == grew
        for level in levels:
            mine = [c for c in at_step if c["level"] == level]
            assert [c["index"] for c in mine] == list(range(len(mine))) and len(mine) <= COMPLETIONS_PER_LEVEL
            totals = [c["reward"] for c in mine]
            assert totals == sorted(totals, reverse=True)  # best first
    for c in sample:
        CompletionIn.model_validate(c)
        assert c["prompt"].startswith("<|user|>What is ")
        assert c["rewards"] == {"arithmetic_reward": c["reward"]}
    assert any(c["completion"] for c in sample)  # an empty one is possible: the model may stop at once


def _probabilities(path):
    return {s["step"]: [lv["probability"] for lv in s["levels"]] for s in read_jsonl(path)}


def test_resume_gives_the_same_future_probabilities(tmp_path):
    from e2h.train import run

    overrides = [*FAST, "scheduler=sec", "scheduler.params.temperature=0.05", "algorithm.max_steps=6",
                 "algorithm.save_steps=3", "algorithm.eval_steps=100"]
    config = compose(overrides)
    run(config, tmp_path / "straight")
    run(config, tmp_path / "resumed", should_stop=lambda step: step >= 3)
    assert sorted(_probabilities(tmp_path / "resumed" / "snapshots.jsonl")) == [1, 2, 3]
    run(config, tmp_path / "resumed")
    straight = _probabilities(tmp_path / "straight" / "snapshots.jsonl")
    resumed = _probabilities(tmp_path / "resumed" / "snapshots.jsonl")
    assert sorted(resumed) == [1, 2, 3, 4, 5, 6]
    # The sampled completions were cut back to the checkpoint too: each step's sample once.
    keys = [(c["step"], c["level"], c["index"]) for c in read_completions(tmp_path / "resumed")]
    assert len(keys) == len(set(keys)) and sorted({k[0] for k in keys}) == [1, 2, 3, 4, 5, 6]
    for step in (4, 5, 6):
        np.testing.assert_allclose(resumed[step], straight[step], rtol=0, atol=1e-12)
    # The schedule did move, so equality is not trivial.
    assert max(abs(a - b) for a, b in zip(straight[6], straight[1], strict=True)) > 1e-3


def test_sec_floors_follow_the_prompts_of_an_optimizer_step(tmp_path):
    # 2 prompts per generation batch (8 completions of 4). With gradient accumulation 2 and one
    # micro-step per generation, TRL feeds 2 batches back under each step: 4 prompts per step, so
    # sec's floors are 16/4 = 4 times min_prob and settled_prob; without accumulation, 8 times.
    from e2h.train import run

    floors = {}
    for ga in (1, 2):
        overrides = [*FAST, "scheduler=sec", "algorithm.max_steps=4", "algorithm.eval_steps=100",
                     "algorithm.save_steps=100", f"algorithm.gradient_accumulation_steps={ga}",
                     "algorithm.steps_per_generation=1"]
        run(compose(overrides), tmp_path / f"ga{ga}")
        snaps = read_jsonl(tmp_path / f"ga{ga}" / "snapshots.jsonl")
        floors[ga] = {round(lv["components"]["floor"], 9) for s in snaps if s["step"] >= 3 for lv in s["levels"]}
    assert floors[1] <= {0.04, 0.08} and 0.04 in floors[1]
    assert floors[2] <= {0.02, 0.04} and 0.02 in floors[2]


def test_two_processes_record_identical_curricula(tmp_path):
    out = tmp_path / "ddp"
    # accelerate's --cpu flag uses its single-process launcher (several CPU processes need MPI);
    # --multi_gpu runs torchrun, and with no GPU the Accelerator joins the processes over gloo.

    cmd = [*two_process_launch(), "-m", "e2h.train", *FAST, "scheduler=sec",
           "algorithm.max_steps=3", "algorithm.num_processes=2",
           "algorithm.per_device_train_batch_size=4", "algorithm.eval_steps=2", "algorithm.save_steps=100",
           "--output-dir", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0 = [{k: v for k, v in s.items() if k != "time"} for s in read_jsonl(out / "snapshots.jsonl")]
    rank1 = read_jsonl(out / "snapshots.rank1.jsonl")
    assert len(rank0) == 3
    assert [s["levels"] for s in rank0] == [s["levels"] for s in rank1]
    # Feedback came from both ranks: each step's counts grow by the whole gathered batch (8 completions).
    assert sum(lv["count"] for lv in rank0[0]["levels"]) == 8
    # Both ranks evaluated (each its share of the questions); rank 0 reported the gathered results.
    evals = read_jsonl(out / "evals.jsonl")
    assert [(e["step"], e["name"]) for e in evals] == [(2, "eval"), (3, "test")]
    assert evals[-1]["results"] == json.loads((out / "test_results.json").read_text())
    # Rank 0 alone writes the completion sample, drawn from the batch gathered from both ranks.
    assert not list(out.glob("completions.rank*")) and len({c["step"] for c in read_completions(out)}) == 3
    levels_trained = {lv["level"] for lv in rank0[0]["levels"] if lv.get("count")}
    assert {c["level"] for c in read_completions(out, 1)} == levels_trained
