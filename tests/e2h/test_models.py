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


def test_warm_start_rows_hand_in_the_answer_in_tags_or_in_prose():
    from e2h.models import WARMSTART_PROSE_SHARE, build_char_tokenizer, warmstart_rows
    from e2h.tasks import get_task
    from e2h.tasks.base import parse_completion

    tok = build_char_tokenizer()
    task = get_task("arithmetic")
    rows = warmstart_rows(tok, n_per_level=500, seed=0)
    assert rows == warmstart_rows(tok, n_per_level=500, seed=0)  # reproducible
    tagged = [r for r in rows if "<answer>" in r["completion"]]
    prose = [r for r in rows if "The answer is " in r["completion"]]
    assert len(tagged) + len(prose) == len(rows)
    assert abs(len(prose) / len(rows) - WARMSTART_PROSE_SHARE) < 0.05
    for r in rows:
        assert r["completion"].endswith(tok.eos_token)
        text = r["completion"].removesuffix(tok.eos_token)
        # The reward scores the tagged completions as correct and gives the prose ones 0.
        assert parse_completion(text).format_ok == (r in tagged)
    question = tagged[0]["prompt"].split("What is ")[1].split("?")[0]
    assert task.reward([tagged[0]["completion"].removesuffix(tok.eos_token)],
                       answer=[str(eval(question))]) == [1.0]  # noqa: S307 - a one-digit expression


def test_build_tiny_cli_shows_progress_and_writes_a_loadable_model(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "e2h.cli", "model", "build-tiny", "--steps", "3",
                           "--output-dir", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "3/3" in proc.stderr  # the SFT progress bar
    assert len(load_tokenizer(str(tmp_path))) == len(build_char_tokenizer())
    assert sum(p.numel() for p in load_model(str(tmp_path)).parameters()) < 2_000_000
