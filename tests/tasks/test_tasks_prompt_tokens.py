"""Prompts in tokens, never cut, with exactly one BOS (issue 19).

Tokenizers in the shapes of Qwen2.5's (no BOS token; ChatML turns) and Llama 3's (the chat template
writes <|begin_of_text|> and the tokenizer adds it again) are built here, character-level like the
tiny model's, so nothing is downloaded. TRL's GRPOTrainer tokenizes training prompts itself
(`_tokenize_prompts`, called here on a real trainer) and e2h.evaluation tokenizes evaluation prompts.
"""

from __future__ import annotations

import string

import pytest

from e2h.tasks import build_dataset, get_task
from e2h.tasks.base import adds_bos

LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
QWEN25_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _char_tokenizer(specials: list[str], bos: str | None, eos: str, pad: str, template: str):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set(string.printable) - set("\x0b\x0c\r"))
    vocab = {tok: i for i, tok in enumerate(["<unk>", *specials, *chars])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    if bos is not None:  # Llama 3: the tokenizer puts BOS first whenever it adds special tokens
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                           special_tokens=[(bos, vocab[bos])])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad,
                                   unk_token="<unk>")
    fast.add_special_tokens({"additional_special_tokens": [s for s in specials if s not in (bos, eos, pad)]})
    fast.chat_template = template
    fast.padding_side = "left"
    return fast


def llama3_tokenizer():
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    return _char_tokenizer(specials, "<|begin_of_text|>", "<|eot_id|>", "<|end_of_text|>", LLAMA3_TEMPLATE)


def qwen25_tokenizer():
    return _char_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], None, "<|im_end|>", "<|endoftext|>",
                           QWEN25_TEMPLATE)


TOKENIZERS = {"llama3": llama3_tokenizer, "qwen25": qwen25_tokenizer}
TASK = get_task("countdown")
ROW = TASK.generate(3, 1, seed=0)[0]


def _bos_count(ids, tok) -> int:
    return 0 if tok.bos_token_id is None else list(ids).count(tok.bos_token_id)


def test_the_llama_shape_would_get_two_bos_from_its_template_text():
    tok = llama3_tokenizer()
    text = tok.apply_chat_template(TASK.build_messages(ROW), tokenize=False, continue_final_message=True)
    assert text.startswith("<|begin_of_text|>") and adds_bos(tok)
    assert _bos_count(tok(text)["input_ids"], tok) == 2  # what training got before
    assert not adds_bos(qwen25_tokenizer())


@pytest.mark.parametrize("shape", TOKENIZERS)
def test_a_prompt_tokenizes_to_its_template_with_one_bos(shape):
    tok = TOKENIZERS[shape]()
    prompt = TASK.build_prompt(ROW, tok)
    ids = tok(prompt)["input_ids"]  # how TRL and the evaluation tokenize it
    template = tok.apply_chat_template(TASK.build_messages(ROW), tokenize=True, continue_final_message=True)
    template = template["input_ids"] if isinstance(template, dict) or hasattr(template, "keys") else template
    assert list(ids) == list(template)  # exactly the chat template's tokens, no more
    assert _bos_count(ids, tok) == (1 if shape == "llama3" else 0)
    if shape == "llama3":
        assert ids[0] == tok.bos_token_id
    assert prompt.endswith("Let me solve this step by step.\n<think>")


@pytest.fixture(scope="module")
def llama_trainer(tmp_path_factory):
    """A real TRL GRPOTrainer on a tiny random Llama with the Llama-3-shaped tokenizer."""
    import torch
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    tok = llama3_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                         pad_token_id=tok.pad_token_id))
    rows = TASK.generate(2, 4, seed=1)
    data = Dataset.from_list([{"prompt": TASK.build_prompt(r, tok), "numbers": r["numbers"], "target": r["target"]}
                              for r in rows])
    args = GRPOConfig(output_dir=str(tmp_path_factory.mktemp("grpo")), per_device_train_batch_size=2,
                      num_generations=2, max_completion_length=4, max_steps=1, use_cpu=True, report_to="none",
                      save_strategy="no")
    trainer = GRPOTrainer(model=model, reward_funcs=[TASK.as_reward_func()], args=args, train_dataset=data,
                          processing_class=tok)
    return trainer, tok, data


def test_training_prompts_get_exactly_one_bos(llama_trainer):
    trainer, tok, data = llama_trainer
    prompt_ids, _, _ = trainer._tokenize_prompts(list(data["prompt"]))  # TRL's own tokenization
    assert [_bos_count(ids, tok) for ids in prompt_ids] == [1] * len(data)
    assert all(ids[0] == tok.bos_token_id for ids in prompt_ids)


def test_evaluation_prompts_get_exactly_one_bos(llama_trainer):
    from e2h.evaluation import evaluate

    trainer, tok, data = llama_trainer
    model, seen = trainer.model, []
    generate = model.generate

    def recording_generate(**kwargs):
        seen.extend(kwargs["input_ids"].tolist())
        return generate(**kwargs)

    model.generate = recording_generate
    try:
        rows = [{"prompt": p, "numbers": n, "target": t, "level": 2}
                for p, n, t in zip(data["prompt"], data["numbers"], data["target"], strict=True)]
        results = evaluate(model, tok, TASK, rows, max_new_tokens=2, batch_size=2)
    finally:
        model.generate = generate
    assert results["overall"]["support"] == len(rows)
    unpadded = [[i for i in ids if i != tok.pad_token_id] for ids in seen]
    assert [_bos_count(ids, tok) for ids in unpadded] == [1] * len(rows)
    assert all(ids[0] == tok.bos_token_id for ids in unpadded)


# -- max_prompt_length: tokens, never cut ---------------------------------------------------


def _prompt_lengths(data, tok) -> list[int]:
    return [len(tok(r["prompt"])["input_ids"]) for r in data.train + data.test]


@pytest.mark.parametrize("shape", TOKENIZERS)
def test_max_prompt_length_counts_tokens_and_a_longer_prompt_is_refused(shape):
    tok = TOKENIZERS[shape]()
    full = build_dataset(TASK, train_levels=[2, 3], test_levels=[2, 3], train_size=20, test_size=5, seed=0,
                         tokenizer=tok)
    lengths = _prompt_lengths(full, tok)
    longest = max(lengths)
    # exactly the longest fits: the limit is in tokens (special tokens are one token and many characters)
    fits = build_dataset(TASK, train_levels=[2, 3], test_levels=[2, 3], train_size=20, test_size=5, seed=0,
                         tokenizer=tok, max_prompt_length=longest)
    assert [r["prompt"] for r in fits.train] == [r["prompt"] for r in full.train]
    assert max(len(r["prompt"]) for r in full.train + full.test) > longest
    expected = (rf"max_prompt_length: \d+ of \d+ \w+ prompts .* longer than {longest - 1} tokens "
                rf"\(the longest has {longest}\).*at least {longest}.*long_prompts=drop")
    with pytest.raises(ValueError, match=expected):
        build_dataset(TASK, train_levels=[2, 3], test_levels=[2, 3], train_size=20, test_size=5, seed=0,
                      tokenizer=tok, max_prompt_length=longest - 1)


def test_long_prompts_can_be_dropped_and_counted_instead():
    tok = llama3_tokenizer()
    task = get_task("countdown", long_prompts="drop")
    full = build_dataset(task, train_levels=[2, 3], test_levels=[2, 3], train_size=30, test_size=10, seed=0,
                         tokenizer=tok)
    # the longest of each split's and level's shortest prompt: every level keeps a row, some rows are too long
    shortest: dict = {}
    for split in ("train", "test"):
        for r in full[split]:
            n = len(tok(r["prompt"])["input_ids"])
            shortest[split, r["level"]] = min(n, shortest.get((split, r["level"]), n))
    limit = max(shortest.values())
    kept = build_dataset(task, train_levels=[2, 3], test_levels=[2, 3], train_size=30, test_size=10, seed=0,
                         tokenizer=tok, max_prompt_length=limit)
    too_long = {split: sum(len(tok(r["prompt"])["input_ids"]) > limit for r in full[split]) for split in ("train",
                                                                                                          "test")}
    assert kept.dropped == too_long and sum(too_long.values()) > 0
    assert max(_prompt_lengths(kept, tok)) <= limit
    # what is kept is whole: each prompt is its row's full prompt
    assert all(r["prompt"] == task.build_prompt(r, tok) for r in kept.train + kept.test)
    with pytest.raises(ValueError, match="long_prompts: Input should be 'refuse' or 'drop'"):
        get_task("countdown", long_prompts="cut")
