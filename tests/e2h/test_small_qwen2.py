"""The GPU recipe's training features on a CPU: a locally built Qwen2-architecture model with LoRA,
gradient checkpointing and bf16 autocast, trained, checkpointed, resumed and saved to final/, with
TensorBoard logging."""

import json

import pytest

from e2h.config import compose
from e2h.models import build_small_qwen2
from e2h.outputs import read_jsonl

pytestmark = pytest.mark.slow


def test_lora_gradient_checkpointing_bf16_train_resume_and_final(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from e2h.outputs import FINAL_DIR
    from e2h.train import run

    base = build_small_qwen2(tmp_path / "qwen2")
    config = compose([
        f"model.name_or_path={base}", "model.dtype=float32",
        "model.lora={r: 8, alpha: 16, dropout: 0.0, target_modules: [q_proj, v_proj]}",
        "algorithm.bf16=true", "algorithm.gradient_checkpointing=true", "scheduler=balanced",
        "algorithm.max_steps=4", "algorithm.save_steps=2", "algorithm.eval_steps=100",
        "algorithm.per_device_train_batch_size=4", "algorithm.num_generations=2",
        "algorithm.max_completion_length=8", "task.train_size_per_level=16", "task.test_size_per_level=1",
        "algorithm.report_to=[tensorboard]",
    ])
    out = tmp_path / "run"
    run(config, out, should_stop=lambda step: step >= 2)
    assert (out / "checkpoint-2" / "adapter_config.json").is_file()
    run(config, out)  # resumes from checkpoint-2
    assert [s["step"] for s in read_jsonl(out / "snapshots.jsonl")] == [1, 2, 3, 4]
    assert list(out.glob("runs/**/events.out.tfevents.*")), "report_to=tensorboard wrote no event file"
    adapter = json.loads((out / FINAL_DIR / "adapter_config.json").read_text())
    assert adapter["r"] == 8 and sorted(adapter["target_modules"]) == ["q_proj", "v_proj"]
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), out / FINAL_DIR)
    tokenizer = AutoTokenizer.from_pretrained(out / FINAL_DIR)
    ids = tokenizer("1+1=", return_tensors="pt", add_special_tokens=False)
    assert model.generate(**ids, max_new_tokens=3, do_sample=False).shape[1] == ids["input_ids"].shape[1] + 3
