"""The shared completion format: think/answer tags, order, non-empty, nothing between."""

from __future__ import annotations

import pytest

from e2h.tasks import completion_text, extract_answer, format_ok, get_task, parse_completion

TASK = get_task("arithmetic")  # gold answer "7": reward 1.0 well formatted, 0.0 otherwise


@pytest.mark.parametrize(
    ("completion", "ok"),
    [
        ("3+4 is 7</think>\n<answer>7</answer>", True),
        ("3+4 is 7</think><answer>7</answer>", True),  # nothing between is fine
        ("3+4\nis 7\n</think>\n\n <answer> 7 </answer>\n", True),  # whitespace around is fine
        ("3+4 is 7</think>\r\n<answer>7</answer>", True),
        ("<answer>7</answer>", False),  # no </think>
        ("3+4 is 7\n<answer>7</answer></think>", False),  # wrong order
        ("</think>\n<answer>7</answer>", False),  # empty reasoning
        ("   \n</think>\n<answer>7</answer>", False),  # blank reasoning
        ("3+4 is 7</think>\n<answer></answer>", False),  # empty answer
        ("3+4 is 7</think>\n<answer>  \n</answer>", False),  # blank answer
        ("3+4 is 7</think>\nSo:\n<answer>7</answer>", False),  # text between
        ("3+4 is 7</think>\n<answer>7</answer> done", False),  # text after
        ("3+4 is 7</think>\n<answer>7</answer><answer>7</answer>", False),  # two answers
        ("<think>3+4 is 7</think>\n<answer>7</answer>", False),  # the prompt already opened <think>
        ("3+4 <think>is</think> 7</think>\n<answer>7</answer>", False),  # nested think
        ("I will write <answer>7</answer></think>\n<answer>7</answer>", False),  # answer tag in reasoning
        ("3+4 is 7</think>\n<answer>7", False),  # unclosed
        ("3+4 is 7</think>\n<answer>7<answer>7</answer>", False),
        ("3+4 is 7</think>\n<answer>7</answer>\n</think>", False),
        ("3+4 is 7</THINK>\n<ANSWER>7</ANSWER>", False),  # tags are case-sensitive
        ("3+4 is 7</think >\n<answer>7</answer>", False),
        ("", False),
    ],
)
def test_format_table(completion, ok):
    assert format_ok(completion) is ok
    assert TASK.reward([completion], answer=["7"]) == [1.0 if ok else 0.0]
    parsed = parse_completion(completion)
    assert parsed.format_ok is ok and (parsed.answer == "7") is ok


def test_parse_returns_stripped_parts():
    parsed = parse_completion("  step one\nstep two  </think>\n<answer>\n x + 1 \n</answer>")
    assert (parsed.think, parsed.answer) == ("step one\nstep two", "x + 1")


@pytest.mark.parametrize(
    ("completion", "text"),
    [
        ("plain", "plain"),
        ([{"role": "assistant", "content": "a"}], "a"),
        ([{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}], "ab"),
        ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "a"),
        ([{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "image"}]}], "a"),
        ({"role": "assistant", "content": "a"}, "a"),
        ([{"role": "assistant", "content": None}], ""),
        (None, ""),
        (42, ""),
        (b"bytes", ""),
        ([["nested"]], ""),
    ],
)
def test_completion_text_handles_what_trl_passes(completion, text):
    assert completion_text(completion) == text


def test_extract_answer_is_lenient():
    assert extract_answer("no think at all <answer> 12 </answer>") == "12"
    assert extract_answer("<answer>1</answer> then <answer>2</answer> trailing") == "2"
    assert extract_answer([{"role": "assistant", "content": "x</think><answer>3</answer>"}]) == "3"
    assert extract_answer("no answer here") is None
