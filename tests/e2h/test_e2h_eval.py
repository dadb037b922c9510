"""`e2h eval` (issue 19): E2H's mode=test on a full checkpoint of the tiny model and on a LoRA checkpoint."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from e2h.cli import app
from e2h.config import compose

RUNNER = CliRunner()
EVAL = ["task.test_size_per_level=4", "--batch-size", "16"]


def _run_dir(tmp_path, name: str, overrides: list[str]):
    """A run's output dir as e2h.train leaves it: config.json and final/."""
    run = tmp_path / name
    (run / "final").mkdir(parents=True)
    config = compose(overrides)
    (run / "config.json").write_text(config.model_dump_json(indent=2))
    return run, config


def _e2h_eval(*args: str) -> dict:
    out = RUNNER.invoke(app, ["eval", *args])
    assert out.exit_code == 0, out.output
    return out


def _rows_and_task(config):
    from e2h.eval_cli import test_rows
    from e2h.models import load_tokenizer
    from e2h.train import build_task

    task = build_task(config)
    return test_rows(config, task, load_tokenizer("builtin:tiny")), task


def _check_e2h_format(results: dict, levels: list[int], heldout: set[int]) -> None:
    assert list(results) == ["overall"] + [f"level_{lv}" for lv in levels]  # E2H's order
    assert results["overall"]["support"] == sum(results[f"level_{lv}"]["support"] for lv in levels)
    for lv in levels:
        entry = results[f"level_{lv}"]
        assert 0 <= entry["accuracy"] <= 1 and entry["support"] > 0
        assert entry["heldout"] == (lv in heldout)


def test_eval_of_the_tiny_models_checkpoint(tmp_path):
    from e2h.evaluation import evaluate
    from e2h.models import load_model, load_tokenizer

    run, config = _run_dir(tmp_path, "run", ["model=tiny", "task=arithmetic", "task.test_levels=[0,1,5]"])
    model, tok = load_model("builtin:tiny", "float32"), load_tokenizer("builtin:tiny")
    model.save_pretrained(run / "final")
    tok.save_pretrained(run / "final")
    _e2h_eval(str(run / "final"), *EVAL, "--samples", "2")
    results = json.loads((run / "final" / "test_results.json").read_text())
    _check_e2h_format(results, [0, 1, 5], heldout={5})  # the run's config: held-out level 5
    # the same figures as evaluating the model on the run's test rows directly (greedy: deterministic)
    rows, task = _rows_and_task(compose(["model=tiny", "task=arithmetic", "task.test_levels=[0,1,5]",
                                         "task.test_size_per_level=4"]))
    direct = evaluate(model, tok, task, rows, config.algorithm.max_completion_length)
    for key in direct:
        assert results[key]["accuracy"] == direct[key]["accuracy"]
        assert results[key]["reward_mean"] == pytest.approx(direct[key]["reward_mean"])
    assert results["overall"]["accuracy"] > 0  # the warmed tiny model answers some easy questions
    sampled = results["overall"]["sampled"]
    assert sampled["samples"] == 2 and sampled["temperature"] == config.algorithm.temperature
    assert 0 <= sampled["mean@2"] <= sampled["pass@2"] <= 1


def test_eval_of_a_lora_checkpoint_merges_the_adapter(tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model

    from e2h.evaluation import evaluate
    from e2h.models import load_model, load_tokenizer

    run, config = _run_dir(tmp_path, "lora", ["model=tiny", "task=arithmetic", "task.train_levels=[0]",
                                              "task.test_levels=[0,5]", "model.lora={r: 4, alpha: 8}"])
    tok = load_tokenizer("builtin:tiny")
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    peft_model = get_peft_model(load_model("builtin:tiny", "float32"), lora)
    torch.manual_seed(0)
    with torch.no_grad():  # an adapter that changes the model (a fresh one is the identity: B = 0)
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 2.0)
    peft_model.save_pretrained(run / "final")
    tok.save_pretrained(run / "final")
    assert (run / "final" / "adapter_config.json").is_file() and not (run / "final" / "config.json").exists()
    out = tmp_path / "results" / "lora.json"
    _e2h_eval(str(run / "final"), *EVAL, "--output", str(out))
    results = json.loads(out.read_text())
    _check_e2h_format(results, [0, 5], heldout={5})
    rows, task = _rows_and_task(compose(["model=tiny", "task=arithmetic", "task.train_levels=[0]",
                                         "task.test_levels=[0,5]", "task.test_size_per_level=4"]))
    merged = peft_model.merge_and_unload()
    direct = evaluate(merged, tok, task, rows, config.algorithm.max_completion_length)
    base = evaluate(load_model("builtin:tiny", "float32"), tok, task, rows, config.algorithm.max_completion_length)
    for key in direct:
        assert results[key]["reward_mean"] == pytest.approx(direct[key]["reward_mean"])
    assert results["overall"]["reward_mean"] != pytest.approx(base["overall"]["reward_mean"])  # the adapter counts


def test_eval_names_what_is_wrong(tmp_path):
    out = RUNNER.invoke(app, ["eval", "builtin:tiny", "task.test_levels=[99]"])
    assert out.exit_code == 2 and "task.test_levels: task 'arithmetic' has no level 99" in out.output
    assert "pydantic" not in out.output  # field: message, not the validation library's dump
    out = RUNNER.invoke(app, ["eval", "builtin:tiny", "--samples", "0", "--output", str(tmp_path / "x.json")])
    assert out.exit_code == 2 and "--samples" in out.output
