"""The pieces every task shares: the ``Task`` base class, completion parsing, the format
reward and prompt building.

A prompt ends with the assistant prefix ``ASSISTANT_PREFIX`` ("Let me solve this step by
step.\\n<think>"), so a completion looks like ``reasoning</think>\\n<answer>ANSWER</answer>``.

Reward (E2H / TinyZero style): ``format_reward * format_ok + correctness_reward * score``,
where ``score`` in [0, 1] is the task's correctness of ANSWER (1/0 for most tasks, the
fraction of unit tests passed for coding). The format is checked on ``"<think>" +
completion`` and holds when the completion is exactly: non-empty reasoning, ``</think>``,
only whitespace, ``<answer>``, a non-empty answer, ``</answer>``, only whitespace; no
``<think>``/``</think>``/``<answer>``/``</answer>`` tag may appear anywhere else. The answer
of a badly formatted completion is not scored, so such a completion earns exactly 0
(a correct answer in a broken format must not outscore a wrong answer in the right one).
This is E2H's ``FormatReward`` (``src/rewards.py``), rule for rule.

E2H's ``base_reward_fn`` also gives 0 in total, format reward included, when checking the
answer fails with an error (an expression that does not parse, a division by zero): a task's
``score`` says so by returning NaN (``SCORE_ERROR``) or raising.

Prompts never hold a BOS token the tokenizer adds itself: training (TRL tokenizes prompts
with the tokenizer's special tokens) and evaluation then both see exactly one, whatever the
chat template (Llama 3's template writes ``<|begin_of_text|>``, and its tokenizer adds it
again). ``prompt_token_counts`` counts prompts the way training tokenizes it.
"""

from __future__ import annotations

import logging
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from e2h.errors import FieldProblem, named_field

logger = logging.getLogger(__name__)

ASSISTANT_PREFIX = "Let me solve this step by step.\n<think>"
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant. You first think about the reasoning process in the mind "
    "and then provide the user with the answer."
)
# E2H's system prompt, as its task configs write it (grammar and final newline included).
E2H_SYSTEM_PROMPT = (
    "You are a helpful assistant. You first thinks about the reasoning process in the mind "
    "and then provides the user with the answer.\n"
)
LONG_PROMPTS = ("refuse", "drop")  # what a dataset build does with prompts over max_prompt_length
SCORE_ERROR = float("nan")  # a score meaning "checking failed with an error": the whole reward is 0
FORMAT_INSTRUCTIONS = (
    "Show your work in <think> </think> tags. And return the final answer in <answer> </answer> tags."
)

_TAG = r"</?(?:think|answer)>"
_FORMAT_RE = re.compile(
    r"\A<think>(?P<think>(?:(?!" + _TAG + r").)*)</think>\s*"
    r"<answer>(?P<answer>(?:(?!" + _TAG + r").)*)</answer>\s*\Z",
    re.DOTALL,
)
_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


@dataclass(frozen=True)
class ParsedCompletion:
    """A completion split into its parts; ``answer`` is None when the format is wrong."""

    format_ok: bool
    think: str | None
    answer: str | None


def completion_text(completion: Any) -> str:
    """The text of a completion as TRL passes it: a string, or a list of chat messages
    (``[{"role": "assistant", "content": ...}]``; content may be a string or a list of
    ``{"type": "text", "text": ...}`` parts). Assistant messages are joined; anything that
    is not recognisable text gives "" (which fails the format check) rather than raising."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        return _content_text(completion.get("content"))
    if isinstance(completion, Sequence) and not isinstance(completion, (bytes, bytearray)):
        parts = []
        for message in completion:
            if isinstance(message, Mapping):
                if message.get("role", "assistant") == "assistant":
                    parts.append(_content_text(message.get("content")))
            elif isinstance(message, str):
                parts.append(message)
        return "".join(parts)
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and not isinstance(content, (bytes, bytearray)):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                texts.append(part["text"])
        return "".join(texts)
    return ""


def parse_completion(completion: Any) -> ParsedCompletion:
    """Check the format strictly (see the module docstring) and pull out the stripped answer."""
    match = _FORMAT_RE.match("<think>" + completion_text(completion))
    if match is None:
        return ParsedCompletion(False, None, None)
    think, answer = match.group("think").strip(), match.group("answer").strip()
    if not think or not answer:
        return ParsedCompletion(False, None, None)
    return ParsedCompletion(True, think, answer)


def format_ok(completion: Any) -> bool:
    return parse_completion(completion).format_ok


def extract_answer(completion: Any) -> str | None:
    """Lenient extraction for display and evaluation logs: the stripped text of the last
    ``<answer>...</answer>`` pair, whatever the rest looks like; None when there is none.
    Rewards use ``parse_completion``, which also checks the format."""
    matches = _ANSWER_RE.findall(completion_text(completion))
    return matches[-1].strip() if matches else None


def adds_bos(tokenizer: Any) -> bool:
    """Whether tokenizing text with the tokenizer's special tokens puts a BOS token first."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] == bos and tokenizer("a", add_special_tokens=False)["input_ids"][:1] != [bos]


def strip_added_bos(prompt: str, tokenizer: Any) -> str:
    """``prompt`` without the leading BOS text a chat template wrote, when the tokenizer adds its own
    (Llama 3): tokenized with special tokens, as TRL and the evaluation do, it then has exactly one."""
    bos = getattr(tokenizer, "bos_token", None)
    if bos and prompt.startswith(bos) and adds_bos(tokenizer):
        return prompt[len(bos):]
    return prompt


def prompt_token_counts(prompts: list[str], tokenizer: Any) -> list[int]:
    """Tokens of each prompt as training sees them (TRL tokenizes with the special tokens)."""
    return [len(ids) for ids in tokenizer(list(prompts))["input_ids"]] if prompts else []


def _check_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return value


# -- options ------------------------------------------------------------------------------
# A task's options are a pydantic model (``Task.Options``), like a scheduler's parameters: its
# JSON schema drives the launch form, RunConfig checks ``task.options`` against it (a 422 naming
# ``task.options.<name>``), and the task is built from the validated model.


def _distinct(values: list[int]) -> list[int]:
    if len(set(values)) != len(values):
        raise ValueError(f"has duplicates: {list(values)}")
    return values


def _not_empty(values: list[int]) -> list[int]:
    if not values:
        raise ValueError("must not be empty")
    return values


_LevelList = Annotated[list[StrictInt], AfterValidator(_distinct)]
TrainingLevels = Annotated[_LevelList, AfterValidator(_not_empty), Field(
    json_schema_extra={"minItems": 1},
    description="Training levels, easiest first: scheduler level i is the i-th (a run sets them from "
    "task.train_levels).",
)]
HeldoutLevels = Annotated[_LevelList, Field(description=(
    "Held-out levels: evaluated, never trained on. Default: the task's, less any level trained on."))]
FormatWeight = Annotated[float, Field(strict=True, ge=0, description="Weight of the format reward.")]
CorrectnessWeight = Annotated[float, Field(strict=True, ge=0, description="Weight of the correctness reward.")]
# Multi-line text: the form shows a text area (the "multi-line" format, as streamlit-pydantic reads it).
_MULTI_LINE = {"format": "multi-line"}
SystemPrompt = Annotated[StrictStr, Field(json_schema_extra=_MULTI_LINE, description=(
    "The system turn of every prompt (empty: none)."))]
UserTemplate = Annotated[StrictStr, Field(json_schema_extra=_MULTI_LINE, description=(
    "The user turn: a str.format template over the row's columns ({question}, ...)."))]


class TaskOptions(BaseModel):
    """What every task takes; a task's own ``Options`` subclass adds its options and sets its defaults.

    ``None`` for an option whose default is not ``None`` means that default (callers pass it so)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    levels: TrainingLevels | None = None
    heldout_levels: HeldoutLevels = []
    format_reward: FormatWeight = 0.1
    correctness_reward: CorrectnessWeight = 0.9
    system_prompt: SystemPrompt = DEFAULT_SYSTEM_PROMPT
    user_template: UserTemplate = "{question} " + FORMAT_INSTRUCTIONS
    long_prompts: Literal[LONG_PROMPTS] = Field("refuse", description=(
        "A prompt over algorithm.max_prompt_length: refuse (the dataset build fails naming the longest) or drop "
        "(such rows are left out and counted)."))

    @model_validator(mode="before")
    @classmethod
    def _none_is_the_default(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            fields = cls.model_fields
            return {k: v for k, v in data.items() if v is not None or k not in fields or fields[k].default is None}
        return data

    @model_validator(mode="after")
    def _some_reward(self) -> TaskOptions:
        if self.format_reward + self.correctness_reward <= 0:
            raise FieldProblem("format_reward + correctness_reward must be > 0", "correctness_reward")
        return self


def option_problems(task: str, options_model: type[TaskOptions], error: ValidationError) -> list[FieldProblem]:
    """Each problem of a task's options as a FieldProblem whose path is the option (``rules``,
    ``levels.0``) and whose message starts with it."""
    problems = []
    for err in error.errors(include_url=False, include_input=False):
        path = ".".join([*(str(part) for part in err["loc"]), *named_field(err)])
        if err["type"] == "extra_forbidden":
            msg = f"unknown option for task {task!r}; options: {', '.join(options_model.model_fields)}"
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
        problems.append(FieldProblem(f"{path}: {msg}" if path else msg, path))
    return problems


class _RowFormatter(dict):
    def __missing__(self, key: str) -> str:
        raise ValueError(f"prompt template uses {{{key}}} but the row has no {key!r} column")


class Task:
    """One reasoning task: a level-indexed generator, a prompt template and a reward.

    Attributes (per instance, set from the constructor options):
        levels: training level values in difficulty order (easiest first); level value
            ``levels[i]`` is scheduler level ``i`` (see ``level_values`` / ``level_index``).
        heldout_levels: out-of-distribution levels never trained on, evaluated only
            (E2H: countdown trains on 2-5 and tests on 6). Default: the task's held-out
            levels that are not training levels.
        test_levels: the levels a test split covers by default: ``levels + heldout_levels``.
        format_reward / correctness_reward: the weights of the two reward parts;
            ``max_reward`` is their sum (what the gold ``solution`` earns).

    Subclasses set the class attributes below, declare their options (and the defaults of the
    shared ones) in ``Options``, and implement ``_generate_one`` and ``score``; ``_configure``
    takes their own options. The constructor takes the options as keywords and validates them
    against ``Options`` (a FieldProblem naming the option); ``opts`` is the validated model.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    available_levels: ClassVar[tuple[int, ...]] = ()
    Options: ClassVar[type[TaskOptions]] = TaskOptions
    # Columns the reward needs besides the completions (TRL passes dataset columns as kwargs).
    required_columns: ClassVar[tuple[str, ...]] = ()
    # True when the task has its own test data (a user dataset's test split); otherwise the
    # test split is drawn from the same question space and partitioned by question hash.
    separate_test_split: ClassVar[bool] = False

    def __init__(self, **options: Any):
        self.opts = opts = self.parse_options(options)
        self._configure(opts)
        self.long_prompts = opts.long_prompts
        self.levels: list[int] = self._check_levels("levels", self._default_levels() if opts.levels is None
                                                    else opts.levels)
        heldout = opts.heldout_levels
        if "heldout_levels" not in opts.model_fields_set:
            # Training on a default held-out level simply removes it from the held-out set.
            heldout = [v for v in heldout if v not in self.levels]
        self.heldout_levels: list[int] = self._check_levels("heldout_levels", heldout)
        both = sorted(set(self.levels) & set(self.heldout_levels))
        if both:
            raise FieldProblem(
                f"{self.name}: level {both[0]} is both a training level and a held-out level; "
                "a held-out level is one the model never trains on", "heldout_levels"
            )
        self.format_reward, self.correctness_reward = float(opts.format_reward), float(opts.correctness_reward)
        self.system_prompt, self.user_template = opts.system_prompt, opts.user_template

    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> TaskOptions:
        """``options`` validated against ``Options``; a FieldProblem naming the first bad option (its
        message lists every problem)."""
        problems = cls.check_options(options)
        if problems:
            raise FieldProblem("; ".join(str(p) for p in problems), problems[0].path)
        return cls.Options.model_validate(dict(options))

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[FieldProblem]:
        """Every problem of ``options`` (none: valid), each naming its option; nothing is loaded or built."""
        try:
            cls.Options.model_validate(dict(options))
        except ValidationError as e:
            return option_problems(cls.name, cls.Options, e)
        return []

    def _configure(self, opts: TaskOptions) -> None:
        """Take the task's own options (before the levels are checked); the base has none."""

    def _default_levels(self) -> list[int]:
        raise FieldProblem(f"{self.name}: levels are needed", "levels")

    # ----------------------------------------------------------------- levels
    def _check_levels(self, what: str, values: Sequence[int]) -> list[int]:
        for v in values:
            try:
                self.check_level(v)
            except ValueError as e:
                raise FieldProblem(f"{what}: {e}", what) from None
        return sorted(values)

    def check_level(self, level: Any) -> int:
        """Return ``level`` if this task can generate it, else raise a ValueError naming it."""
        if isinstance(level, bool) or not isinstance(level, int) or level not in self.available_levels:
            raise ValueError(
                f"unknown level {level!r} for task {self.name!r}; "
                f"available levels: {list(self.available_levels)}"
            )
        return level

    @property
    def level_values(self) -> list[int]:
        """Training level values in difficulty order: scheduler level i is ``level_values[i]``."""
        return list(self.levels)

    def level_index(self, level: int) -> int:
        """The scheduler level (0 = easiest) of a training level value."""
        try:
            return self.levels.index(level)
        except ValueError:
            raise ValueError(
                f"level {level!r} is not a training level of {self.name!r}; training levels: {self.levels}"
            ) from None

    @property
    def test_levels(self) -> list[int]:
        return sorted(set(self.levels) | set(self.heldout_levels))

    @property
    def max_reward(self) -> float:
        return self.format_reward + self.correctness_reward

    # ------------------------------------------------------------- generation
    def rng(self, level: int, seed: int | str) -> random.Random:
        """A private generator per (task, level, seed); string seeds hash stably (sha512)."""
        return random.Random(f"{self.name}/{level}/{seed}")

    def generate(self, level: int, n: int, seed: int | str = 0) -> list[dict]:
        """``n`` rows of ``level``, the same rows for the same seed. Rows may repeat a
        question; ``build_dataset`` deduplicates. Every row has ``question``, ``answer``,
        ``solution`` (a gold ANSWER earning ``max_reward``), ``level`` and task fields."""
        self.check_level(level)
        _check_int("n", n)
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if isinstance(seed, bool) or not isinstance(seed, (int, str)):
            raise ValueError(f"seed must be an int or a str, got {seed!r}")
        rng = self.rng(level, seed)
        rows = []
        for _ in range(n):
            fields = self._generate_one(rng, level)
            row = {
                "question": fields.pop("question"),
                "answer": fields.pop("answer"),
                "solution": fields.pop("solution"),
                "level": level,
            }
            row.update(fields)
            rows.append(row)
        return rows

    def sample(self, level: int, n: int, seed: int | str, split: str) -> list[dict]:
        """Rows for ``build_dataset``. Generated tasks ignore ``split`` (the caller
        partitions the question space); a user dataset reads the split's own rows."""
        return self.generate(level, n, seed)

    def _generate_one(self, rng: random.Random, level: int) -> dict:
        raise NotImplementedError

    def question_key(self, row: Mapping) -> str:
        """What makes two rows the same question (train and test never share a key)."""
        return str(row["question"])

    # ----------------------------------------------------------------- reward
    def score(self, answer: str, row: Mapping[str, Any]) -> float:
        """Correctness of a well-formatted ANSWER for one row, in [0, 1]."""
        raise NotImplementedError

    def score_batch(self, answers: Sequence[str | None], rows: Sequence[Mapping[str, Any]]) -> list[float]:
        """Scores of many answers (None = badly formatted, scores 0). Never raises: an
        error while scoring one answer (a malformed row value, say) is ``SCORE_ERROR``."""
        return [0.0 if a is None else self._safe_score(a, row) for a, row in zip(answers, rows, strict=True)]

    def _safe_score(self, answer: str, row: Mapping[str, Any]) -> float:
        try:
            return float(self.score(answer, row))
        except Exception:  # a reward must not crash training on one bad row; E2H gives it 0 in total
            logger.debug("%s: scoring failed, the reward is 0", self.name, exc_info=True)
            return SCORE_ERROR

    def rows_from_columns(self, n: int, columns: Mapping[str, Any]) -> list[dict]:
        """Turn TRL's column kwargs into one dict per completion. Required columns must be
        lists of length ``n``; other kwargs that are not such lists (``trainer_state``,
        ``log_extra`` ...) are ignored."""
        missing = [c for c in self.required_columns if c not in columns]
        if missing:
            raise ValueError(
                f"{self.name} reward needs the column(s) {missing} (from the dataset rows); "
                f"got {sorted(columns)}"
            )
        aligned: dict[str, list] = {}
        for key, value in columns.items():
            if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
                value = value.tolist()
            is_column = isinstance(value, (list, tuple)) and len(value) == n
            if is_column:
                aligned[key] = list(value)
            elif key in self.required_columns:
                size = len(value) if isinstance(value, (list, tuple)) else type(value).__name__
                raise ValueError(
                    f"{self.name} reward: column {key!r} must be a list of {n} values, got {size}"
                )
        return [{key: values[i] for key, values in aligned.items()} for i in range(n)]

    def reward(self, completions: Sequence[Any], **columns: Any) -> list[float]:
        """TRL reward function: one float in [0, max_reward] per completion."""
        completions = list(completions)
        rows = self.rows_from_columns(len(completions), columns)
        parsed = [parse_completion(c) for c in completions]
        scores = self.score_batch([p.answer for p in parsed], rows)
        rewards = []
        for p, s in zip(parsed, scores, strict=True):
            if not p.format_ok or math.isnan(s):  # E2H: an error while checking voids the whole reward
                rewards.append(0.0)
                continue
            s = min(max(s, 0.0), 1.0) if math.isfinite(s) else 0.0
            rewards.append(self.format_reward + self.correctness_reward * s)
        return rewards

    def as_reward_func(self):
        """``reward`` as a plain function named ``<task>_reward`` (TRL logs rewards by name)."""

        def reward_func(completions, **columns):
            return self.reward(completions, **columns)

        reward_func.__name__ = reward_func.__qualname__ = f"{self.name}_reward"
        return reward_func

    # ---------------------------------------------------------------- prompts
    def build_messages(self, row: Mapping[str, Any]) -> list[dict[str, str]]:
        messages = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": self.user_template.format_map(_RowFormatter(row))})
        messages.append({"role": "assistant", "content": ASSISTANT_PREFIX})
        return messages

    def build_prompt(self, row: Mapping[str, Any], tokenizer: Any = None) -> str:
        """The prompt text for a row, ending with ``ASSISTANT_PREFIX``.

        With a tokenizer that has a chat template: ``apply_chat_template(...,
        continue_final_message=True)`` so the assistant turn stays open. A template that
        rejects the system role gets the system prompt folded into the user turn. Without
        a chat template (or tokenizer): plain "System/User/Assistant" text."""
        messages = self.build_messages(row)
        if tokenizer is not None and getattr(tokenizer, "chat_template", None):
            try:
                text = tokenizer.apply_chat_template(messages, tokenize=False, continue_final_message=True)
            except Exception:  # retry once without a system turn, then report
                if messages[0]["role"] != "system":
                    raise
                merged = [
                    {"role": "user", "content": messages[0]["content"] + "\n\n" + messages[1]["content"]},
                    messages[2],
                ]
                text = tokenizer.apply_chat_template(merged, tokenize=False, continue_final_message=True)
            return strip_added_bos(text, tokenizer)
        lines = []
        if self.system_prompt:
            lines.append(self.system_prompt + "\n")
        lines.append("User: " + messages[-2]["content"])
        lines.append("Assistant: " + ASSISTANT_PREFIX)
        return "\n".join(lines)

    # ---------------------------------------------------------------- describe
    @classmethod
    def options(cls) -> dict[str, Any]:
        """Every option and its default (None: decided by the task, e.g. the dataset's levels)."""
        return {name: field.default for name, field in cls.Options.model_fields.items()}

    @classmethod
    def options_schema(cls) -> dict:
        """JSON schema of this task's options (drives the server's checks and the dashboard form)."""
        return cls.Options.model_json_schema()

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for ``GET /tasks`` and the run form."""
        return {
            "name": self.name,
            "description": self.description,
            "levels": self.level_values,
            "heldout_levels": list(self.heldout_levels),
            "test_levels": self.test_levels,
            "available_levels": list(self.available_levels),
            "max_reward": self.max_reward,
            "format_reward": self.format_reward,
            "correctness_reward": self.correctness_reward,
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(levels={self.levels}, heldout_levels={self.heldout_levels}, "
            f"format_reward={self.format_reward}, correctness_reward={self.correctness_reward})"
        )
