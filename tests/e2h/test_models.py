import pytest

from e2h.models import TINY_DIR, build_char_tokenizer, load_model, load_tokenizer, resolve_model_path
from e2h.tasks import ASSISTANT_PREFIX, get_task


def test_char_tokenizer_round_trips_and_has_a_chat_template():
    tok = build_char_tokenizer()
    text = "What is 3+4?</think>\n<answer>7</answer>"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)
    assert tok.decode(ids) == text
    task = get_task("arithmetic")
    prompt = task.build_prompt(task.generate(0, 1, seed=1)[0], tok)
    assert prompt.endswith(ASSISTANT_PREFIX)
    assert prompt.startswith("<|user|>")


def test_builtin_tiny_loads_through_from_pretrained():
    assert resolve_model_path("builtin:tiny") == str(TINY_DIR)
    assert resolve_model_path("Qwen/Qwen2.5-1.5B-Instruct") == "Qwen/Qwen2.5-1.5B-Instruct"
    tok = load_tokenizer("builtin:tiny")
    model = load_model("builtin:tiny", "float32")
    assert model.config.vocab_size == len(tok)
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    assert (TINY_DIR / "model.safetensors").stat().st_size < 8 * 2**20


def test_unknown_builtin_is_rejected():
    with pytest.raises(ValueError, match="builtin:huge"):
        resolve_model_path("builtin:huge")
