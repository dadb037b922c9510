"""The trainer's sample of a step's completions: bounded per level, spread over the rewards, texts cut."""

from __future__ import annotations

import math

from e2h.schemas import COMPLETION_TEXT_CHARS, CompletionIn
from e2h.trainer import COMPLETIONS_PER_LEVEL, completion_text, cut_middle, sample_completions


def batch(levels: list[int | None], rewards: list[float]) -> dict:
    n = len(levels)
    return {
        "prompts": [f"question {i}" for i in range(n)],
        "completions": [f"answer {i}" for i in range(n)],
        "rewards": {"task_reward": rewards},
        "advantages": [r - 0.5 for r in rewards],
        "levels": levels,
        "weights": [1.0],
    }


def sample(b: dict, **kw) -> list[dict]:
    return sample_completions(7, b["prompts"], b["completions"], b["rewards"], b["advantages"], b["levels"],
                              b["weights"], **kw)


def test_at_most_a_few_per_level_spread_from_the_best_to_the_worst() -> None:
    # 10 completions of level 0 (rewards 0.0 .. 0.9, shuffled), 2 of level 2, none of level 1.
    order = [3, 7, 0, 9, 5, 1, 8, 2, 6, 4]
    b = batch([0] * 10 + [2, 2], [i / 10 for i in order] + [0.25, 0.75])
    records = sample(b)
    assert len(records) == COMPLETIONS_PER_LEVEL + 2
    level0 = [r for r in records if r["level"] == 0]
    assert [r["index"] for r in level0] == [0, 1, 2, 3]
    # The best, the worst and two evenly between them, best first; each keeps its own prompt and text.
    assert [r["reward"] for r in level0] == [0.9, 0.6, 0.3, 0.0]
    best = order.index(9)
    assert level0[0]["prompt"] == f"question {best}" and level0[0]["completion"] == f"answer {best}"
    assert level0[0]["advantage"] == 0.9 - 0.5
    assert [(r["level"], r["reward"]) for r in records if r["level"] != 0] == [(2, 0.75), (2, 0.25)]
    assert {r["step"] for r in records} == {7}
    for r in records:
        CompletionIn.model_validate(r)  # what the server accepts


def test_the_bound_is_a_parameter_and_unscored_or_unlevelled_completions_are_handled() -> None:
    b = batch([1, 1, 1, None], [0.5, math.nan, 1.0, 1.0])
    records = sample(b, per_level=2)
    # Level None (not a training level) is left out; the unscored completion ranks last.
    assert [(r["level"], r["reward"], r["rewards"]) for r in records] == [
        (1, 1.0, {"task_reward": 1.0}), (1, None, {"task_reward": None})]
    assert sample(b, per_level=1)[0]["reward"] == 1.0
    assert sample(batch([], []), per_level=2) == []


def test_the_total_weighs_the_reward_functions_as_trl_does() -> None:
    records = sample_completions(1, ["p", "q"], ["a", "b"], {"format": [1.0, 0.0], "correct": [math.nan, 1.0]},
                                 [0.0, 0.0], [0, 0], [0.5, 2.0])
    by_prompt = {r["prompt"]: r for r in records}
    assert by_prompt["p"]["reward"] == 0.5  # NaN parts do not count
    assert by_prompt["q"]["reward"] == 2.0
    assert by_prompt["p"]["rewards"] == {"format": 1.0, "correct": None}


def test_long_texts_are_cut_in_the_middle_within_the_wire_limit() -> None:
    long = "Q" * 100 + "x" * 10_000 + "ANSWER"
    b = batch([0], [1.0])
    b["completions"] = [long]
    (record,) = sample(b)
    assert record["truncated"] is True and len(record["completion"]) <= COMPLETION_TEXT_CHARS
    assert record["completion"].startswith("Q" * 100) and record["completion"].endswith("ANSWER")
    assert "characters cut" in record["completion"]
    CompletionIn.model_validate(record)
    text, cut = cut_middle("short", 10)
    assert (text, cut) == ("short", False)
    text, cut = cut_middle("x" * 500 + "y" * 500, 100)
    assert cut and len(text) <= 100 and text.startswith("x") and text.endswith("y")
    kept = text.count("x") + text.count("y")  # letters the note does not use
    assert f"[... {1000 - kept} characters cut ...]" in text  # the note says how much is missing
    assert sample(batch([0], [1.0]))[0]["truncated"] is False


def test_conversations_become_text() -> None:
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    assert completion_text(conversation) == "system: Be brief.\nuser: 2+2?"
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "4"}]}]) == "assistant: 4"
    assert completion_text("plain") == "plain"
