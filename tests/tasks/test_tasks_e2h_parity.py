"""Reward parity with E2H (issue 19): our rewards equal E2H's `src/rewards.py` on generated completions.

The references below are written from reading divelab/E2H-Reasoning's `src/rewards.py` (its
`base_reward_fn`, `FormatReward`, `CountdownCorrectnessReward`, `BlocksworldCorrectnessReward`,
`Gsm8kCorrectnessReward`, `AquaCorrectnessReward`): E2H's algorithm, our own code. Countdown's
reference evaluates with Python's `eval` as E2H does, on test-made text that passed E2H's character check.
"""

from __future__ import annotations

import random
import re
import warnings

import pytest

from e2h.tasks import get_task, parse_completion
from e2h.tasks.dataset import DatasetTask
from e2h.tasks.e2h_data import SCORERS, normalize_final_answer

# -- the references ---------------------------------------------------------------------


def ref_format(response: str) -> bool:
    r = response.strip()
    if not (r.startswith("<think>") and r.endswith("</answer>")):
        return False
    if any(r.count(tag) != 1 for tag in ("<think>", "</think>", "<answer>", "</answer>")):
        return False
    close_think, open_answer, close_answer = r.find("</think>"), r.find("<answer>"), r.find("</answer>")
    if close_think > open_answer:
        return False
    if not r[len("<think>"):close_think].strip() or not r[open_answer + len("<answer>"):close_answer].strip():
        return False
    return r[close_think + len("</think>"):open_answer].strip() == ""


def ref_reward(completion: str, sample: dict, format_weight: float, correct_weight: float, check) -> float:
    """E2H's base_reward_fn for one sample."""
    try:
        reward = 0.0
        if ref_format("<think>" + completion):
            reward += format_weight
            predicted = re.findall(r"<answer>\s*(.*?)\s*</answer>", completion, re.DOTALL)[-1].strip()
            result = check(predicted, sample)
            reward += correct_weight if (isinstance(result, bool) and result) else result
        return reward
    except Exception:
        return 0.0


def ref_countdown(predicted: str, sample: dict):
    used = [int(n) for n in re.findall(r"\d+", predicted)]
    if sorted(used) == sorted(sample["numbers"]) and re.match(r"^[\d+\-*/().\s]+$", predicted):
        with warnings.catch_warnings():  # "(3)(5)": Python warns, then raises TypeError
            warnings.simplefilter("ignore", SyntaxWarning)
            value = eval(predicted, {"__builtins__": None}, {})  # digits, operators and parentheses only
        if abs(value - sample["target"]) < 1e-5:
            return True
    return False


def _ref_parse_state(text: str) -> tuple[dict, str | None, list]:
    text = re.sub(r"\bblock (\d+)\b", r"\1 block", text, flags=re.IGNORECASE)
    state, hand, order = {}, None, []

    def name(b):
        b = b.strip().lower()
        b = b[:-6].strip() if b.endswith(" block") else b
        if b not in order:
            order.append(b)
        return b

    for fact in (f.strip() for f in text.replace(" and ", ", ").split(",")):
        if re.fullmatch(r"the hand is empty", fact, re.IGNORECASE):
            hand = None
        elif m := re.match(r"the hand is holding the (.+?)(?: block)?$", fact, re.IGNORECASE):
            hand = name(m.group(1))
            state[hand] = "hand"
        elif m := re.match(r"the (.+?)(?: block)? is clear$", fact, re.IGNORECASE):
            state.setdefault(name(m.group(1)), None)
        elif m := re.match(r"the (.+?)(?: block)? is on top of the (.+?)(?: block)?$", fact, re.IGNORECASE):
            state[name(m.group(1))] = name(m.group(2))
        elif m := re.match(r"the (.+?)(?: block)? is on the table$", fact, re.IGNORECASE):
            state[name(m.group(1))] = "table"
    return state, hand, order


def _ref_clear(block, state) -> bool:
    return state.get(block) != "hand" and all(loc != block for loc in state.values())


def _ref_state_text(state, hand, order) -> str:
    facts = [f"the {b} block is clear" for b in order if state.get(b) != "hand" and _ref_clear(b, state)]
    facts.append("the hand is empty" if hand is None else f"the hand is holding the {hand} block")
    for b in order:
        loc = state.get(b)
        if loc == "table":
            facts.append(f"the {b} block is on the table")
        elif loc not in (None, "hand"):
            facts.append(f"the {b} block is on top of the {loc} block")
    return facts[0] if len(facts) == 1 else ", ".join(facts[:-1]) + " and " + facts[-1]


def _ref_step(state_text: str, action: str) -> str:
    """One action on a state description, as E2H simulates it (raises when illegal)."""
    state, hand, order = _ref_parse_state(state_text)
    a = re.sub(r"\bblock (\d+)\b", r"\1 block", action, flags=re.IGNORECASE).lower().strip()
    tail = r" block[^\w\s]*\s*$"
    if m := re.match(r"^unstack the (\w+) block from on top of the (\w+)" + tail, a):
        x, y = m.groups()
        assert state.get(x) == y and _ref_clear(x, state) and hand is None
        state[x], hand = "hand", x
    elif m := re.match(r"^pick up the (\w+)" + tail, a):
        x = m.group(1)
        assert state.get(x) == "table" and _ref_clear(x, state) and hand is None
        state[x], hand = "hand", x
    elif m := re.match(r"^stack the (\w+) block on top of the (\w+)" + tail, a):
        x, y = m.groups()
        assert hand == x and _ref_clear(y, state)
        state[x], hand = y, None
    elif m := re.match(r"^put down the (\w+)" + tail, a):
        x = m.group(1)
        assert hand == x
        state[x], hand = "table", None
    else:
        raise ValueError("not an action")
    return _ref_state_text(state, hand, order)


def ref_blocksworld(predicted: str, sample: dict) -> float:
    def lines(plan):
        return [x.strip() for x in plan.strip().split("\n") if x.strip() and "[plan end]" not in x.lower()]

    try:
        mine, reference = lines(predicted), lines(sample["solution"])
        if not mine:
            return 0.0
        goal = sample["question"]
        for action in reference:
            goal = _ref_step(goal, action)
        goal_set = set(_ref_parse_state(goal)[0].items())
        current, iou = sample["question"], None
        for action in mine:
            try:
                current = _ref_step(current, action)
            except Exception:
                return 0.0
            state_set = set(_ref_parse_state(current)[0].items())
            iou = len(goal_set & state_set) / len(goal_set | state_set)
        factor = 1.0 if len(mine) <= len(reference) else 1.0 / (1.0 + (len(mine) - len(reference)) / len(reference))
        return float(iou == 1.0) * (1 + factor)
    except Exception:
        return 0.0


def ref_gsm8k(predicted: str, sample: dict):
    found = re.search(r"-?\d+(?:\.\d+)?", predicted.replace(",", ""))
    return found is not None and abs(sample["answer"] - float(found.group(0))) < 1e-5


def ref_aqua(predicted: str, sample: dict):
    return predicted == sample["answer"]


# -- generated completions --------------------------------------------------------------

THINKS = ["reasoning", "  step 1\nstep 2 ", "", "   ", "a <think> b", "x</answer>", "<answer>1</answer>", "\u2028"]
BETWEEN = ["\n", "", " \n\t", "\nso ", "\u00a0", "\x1c"]
TRAILS = ["", "\n", "  ", " more", "<|im_end|>", "</answer>", "\u3000"]


def completions(answers: list[str], rng: random.Random, n: int) -> list[str]:
    out = []
    for _ in range(n):
        think, between, trail, answer = (rng.choice(THINKS), rng.choice(BETWEEN), rng.choice(TRAILS),
                                         rng.choice(answers))
        pad = rng.choice(["", " ", "\n", "\t "])
        shape = rng.random()
        if shape < 0.8:
            out.append(f"{think}</think>{between}<answer>{pad}{answer}{pad[::-1]}</answer>{trail}")
        elif shape < 0.85:
            out.append(f"{think}</think>{between}{answer}</answer>")  # no <answer>
        elif shape < 0.9:
            out.append(f"{think}<answer>{answer}</answer>")  # no </think>
        elif shape < 0.95:
            out.append(f"{think}</think><answer>{answer}</answer><answer>{answer}</answer>")
        else:
            out.append(f"<think>{think}</think>\n<answer>{answer}</answer>")  # a second <think>
    return out


def test_the_format_rule_is_e2hs_on_random_text():
    rng = random.Random(0)
    pieces = ["<think>", "</think>", "<answer>", "</answer>", "x", " ", "\n", "\t", "\u00a0", "\x1c", "\u2028", "<",
              ">", "/", "answer", "think"]
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        assert parse_completion(text).format_ok == ref_format("<think>" + text), repr(text)


def _countdown_answers(row: dict, rng: random.Random) -> list[str]:
    gold, nums = row["solution"], [str(n) for n in row["numbers"]]
    shuffled = nums[:]
    rng.shuffle(shuffled)
    return [
        gold, gold.replace(" ", ""), f"({gold})", f"{gold} = {row['target']}", f"-{gold}", f"- -{gold}",
        f"+{gold}", gold + " + 0", gold + ".", gold.replace(nums[0], nums[0] + ".0", 1),
        gold.replace(nums[0], nums[0] + ".", 1), gold.replace(nums[0], "0" + nums[0], 1), gold + " +",
        gold.replace("+", "-", 1), gold.replace("*", "/", 1), gold.replace("*", "**", 1) if len(nums) < 4 else gold,
        gold.replace("/", "//", 1), " + ".join(shuffled), " * ".join(shuffled), " - ".join(shuffled),
        f"({shuffled[0]})({' + '.join(shuffled[1:])})", gold.replace(" ", "\n", 1), gold + " x",
        "/".join(shuffled), "()",
    ]


@pytest.mark.parametrize("level", [2, 3, 4, 5, 6])
def test_countdown_rewards_are_e2hs(level):
    task, rng = get_task("countdown"), random.Random(level)
    seen = set()
    for row in task.generate(level, 40, seed=level):
        texts = completions(_countdown_answers(row, rng), rng, 30)
        ours = task.reward(texts, **{k: [row[k]] * len(texts) for k in ("numbers", "target")})
        theirs = [ref_reward(t, row, 0.1, 0.9, ref_countdown) for t in texts]
        assert ours == pytest.approx(theirs), [(t, a, b) for t, a, b in zip(texts, ours, theirs, strict=True) if a != b]
        seen |= {round(r, 6) for r in ours}
        # the error path (format right, the check raising) is among them: E2H gives 0
        seen |= {"void" for t, r in zip(texts, ours, strict=True) if r == 0 and parse_completion(t).format_ok}
    assert {0.0, 0.1, 1.0, "void"} <= seen


def _plan_answers(row: dict, rng: random.Random) -> list[str]:
    lines = row["solution"].split("\n")
    first = lines[0]
    m = re.search(r"the (\w+) block", first)
    block = m.group(1) if m else "red"
    last = lines[-1]
    if m := re.match(r"stack the (\w+) block on top of the (\w+) block", last):
        undo = f"unstack the {m.group(1)} block from on top of the {m.group(2)} block"
    else:  # put down the X block
        undo = last.replace("put down", "pick up")
    longer = lines + [undo, last]  # a valid plan that reaches the goal two actions late
    return [
        row["solution"], row["solution"].upper(), row["solution"] + "\n[PLAN END]", "[PLAN]\n" + row["solution"],
        "\n".join(f"{i + 1}. {x}" for i, x in enumerate(lines)), "\n".join(x + "." for x in lines),
        "\n\n".join(lines), "; ".join(lines), "\n".join(lines[:-1]) or "put down the ghost block",
        "\n".join(lines + [f"pick up the {block} block", f"put down the {block} block"]),
        "\n".join(lines + ["put down the ghost block"]), "\n".join(longer), "\n".join(longer + [undo, last]),
        "\n".join(reversed(lines)), row["solution"].replace(" block", "  block", 1),
        row["solution"].replace(f"the {block} block", f"the block {block}", 1), "no plan",
    ]


@pytest.mark.parametrize("level", [1, 2, 4, 6, 8])
def test_blocksworld_rewards_are_e2hs(level):
    task, rng = get_task("blocksworld"), random.Random(level)
    seen: set = set()
    for row in task.generate(level, 15, seed=level):
        texts = completions(_plan_answers(row, rng), rng, 25)
        ours = task.reward(texts, question=[row["question"]] * len(texts), solution=[row["solution"]] * len(texts))
        theirs = [ref_reward(t, row, 1.0, 2.0, ref_blocksworld) for t in texts]
        assert ours == pytest.approx(theirs), [(t, a, b) for t, a, b in zip(texts, ours, theirs, strict=True) if a != b]
        seen |= {round(r, 6) for r in ours}
    assert {0.0, 1.0, 3.0} <= seen and any(1.0 < r < 3.0 for r in seen if isinstance(r, float))  # longer plans


def _scorer_task(scorer: str) -> DatasetTask:
    # The recipe's reward without loading data: DatasetTask.reward only needs its scorer and weights.
    task = DatasetTask.__new__(DatasetTask)
    task.scorer, task.required_columns = SCORERS[scorer](), ("answer",)
    task.format_reward, task.correctness_reward, task.name = 0.1, 0.9, "dataset"
    return task


def test_gsm8k_rewards_are_e2hs():
    rng = random.Random(1)
    task = _scorer_task("gsm8k")
    for gold in (18, 3.5, -4, 1000000, 0.25):
        answers = [str(gold), f"{gold:,}", f"${gold}", f"The answer is {gold}.", f"{gold} dollars", f"{gold}.0",
                   f"{gold + 1}", f"-{gold}", "about 18 or 19", "none", f"{gold}/2", "1e3", f"{gold:.6f}"]
        texts = completions(answers, rng, 60)
        ours = task.reward(texts, answer=[str(gold)] * len(texts))  # our rows hold text, E2H's numbers
        theirs = [ref_reward(t, {"answer": gold}, 0.1, 0.9, ref_gsm8k) for t in texts]
        assert ours == pytest.approx(theirs), [(t, a, b) for t, a, b in zip(texts, ours, theirs, strict=True) if a != b]


def test_aqua_rewards_are_e2hs():
    rng = random.Random(2)
    task = _scorer_task("aqua")
    answers = ["C", "c", " C ", "(C)", "C)", "Option C", "D", "C.", "CC"]
    texts = completions(answers, rng, 300)
    ours = task.reward(texts, answer=["C"] * len(texts))
    theirs = [ref_reward(t, {"answer": "C"}, 0.1, 0.9, ref_aqua) for t in texts]
    assert ours == pytest.approx(theirs)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [  # worked through E2H's normalize_final_answer by hand
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("x = \\boxed{5}", "5"),
        ("$10,000$", "10000"),
        ("\\text{(A)}", "(A)"),
        ("\\frac12", "\\frac{1}{2}"),
        ("\\sqrt2", "\\sqrt{2}"),
        ("5 \\text{ inches}", "5"),
        ("90^\\circ", "90"),
        ("a 5", "5"),
        ("\\$4.50", "4.50"),
    ],
)
def test_math_answers_normalize_as_e2hs(raw, normalized):
    assert normalize_final_answer(raw) == normalized
