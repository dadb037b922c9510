"""Prompt building: chat templates with continue_final_message, and the plain-text fallback."""

from __future__ import annotations

import pytest

from e2h.tasks import ASSISTANT_PREFIX, build_prompt, get_task

CHATML = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
NO_SYSTEM = (
    "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    + CHATML
)


@pytest.fixture(scope="module")
def make_tokenizer():
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")

    def make(template):
        model = tokenizers.models.WordLevel({"[UNK]": 0}, unk_token="[UNK]")
        tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizers.Tokenizer(model))
        tok.chat_template = template
        return tok

    return make


def test_chat_template_keeps_the_assistant_turn_open(make_tokenizer):
    task = get_task("countdown")
    row = task.generate(3, 1, seed=0)[0]
    prompt = task.build_prompt(row, make_tokenizer(CHATML))
    assert prompt.startswith("<|system|>\n" + task.system_prompt + "<|end|>\n<|user|>\n" + row["question"])
    assert prompt.endswith("<|assistant|>\n" + ASSISTANT_PREFIX)
    assert build_prompt(task, row, make_tokenizer(CHATML)) == prompt


def test_a_template_without_system_role_gets_it_folded_into_the_user_turn(make_tokenizer):
    task = get_task("countdown")
    row = task.generate(3, 1, seed=0)[0]
    prompt = task.build_prompt(row, make_tokenizer(NO_SYSTEM))
    assert prompt.startswith("<|user|>\n" + task.system_prompt + "\n\n" + row["question"])
    assert "<|system|>" not in prompt and prompt.endswith(ASSISTANT_PREFIX)


def test_tokenizer_without_chat_template_gets_plain_text(make_tokenizer):
    task = get_task("arithmetic")
    row = {"question": "What is 3+4?"}
    expected = "User: What is 3+4? Give the integer in <answer></answer>.\nAssistant: " + ASSISTANT_PREFIX
    assert task.build_prompt(row, make_tokenizer(None)) == expected
    assert task.build_prompt(row) == expected


def test_plain_text_with_a_system_prompt():
    task = get_task("countdown")
    row = task.generate(2, 1, seed=0)[0]
    prompt = task.build_prompt(row)
    assert prompt.startswith(task.system_prompt + "\n\nUser: " + row["question"])
    assert prompt.endswith("\nAssistant: " + ASSISTANT_PREFIX)


def test_apply_chat_template_gets_the_right_arguments():
    calls = []

    class Recorder:
        chat_template = "anything"

        def apply_chat_template(self, messages, **kwargs):
            calls.append((messages, kwargs))
            return "PROMPT"

    task = get_task("arithmetic", system_prompt="Be brief.")
    assert task.build_prompt({"question": "What is 1+1?"}, Recorder()) == "PROMPT"
    messages, kwargs = calls[0]
    assert kwargs == {"tokenize": False, "continue_final_message": True}
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert messages[-1]["content"] == ASSISTANT_PREFIX
    assert messages[0]["content"] == "Be brief."


def test_templates_are_options_and_missing_fields_are_named():
    task = get_task("countdown", user_template="{question} with {numbers}", system_prompt="")
    row = task.generate(2, 1, seed=0)[0]
    assert task.build_prompt(row).startswith(f"User: {row['question']} with {row['numbers']}")
    with pytest.raises(ValueError, match="no 'difficulty' column"):
        get_task("countdown", user_template="{difficulty}").build_prompt(row)


@pytest.mark.parametrize("name", ["countdown", "arithmetic", "blocksworld", "coding"])
def test_every_task_prompt_ends_with_the_prefix_and_holds_the_question(name):
    task = get_task(name)
    row = task.generate(task.levels[0], 1, seed=0)[0]
    prompt = task.build_prompt(row)
    assert prompt.endswith(ASSISTANT_PREFIX) and row["question"] in prompt
