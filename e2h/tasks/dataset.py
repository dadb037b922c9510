"""Dataset: train on a user's own data instead of generated problems.

Rows need the columns ``question``, ``answer`` and ``level`` (E2H's format; ``level``
integer-valued, e.g. 0-4 or 2-6). Sources, by ``path``:

- a local ``.jsonl`` / ``.json`` (JSON lines, or one JSON array), ``.csv`` or ``.parquet`` file;
- a directory written by ``datasets``' ``save_to_disk`` (a Dataset or a DatasetDict);
- anything else goes to ``datasets.load_dataset(path, config_name, split=..., data_files=...)``:
  a hub name, a local data directory, or a builder such as ``"json"`` with ``data_files``.

Training rows come from ``split``. Test rows come from ``test_split`` when given (its
questions that also appear in training are dropped), otherwise from the same rows,
partitioned by question hash. ``levels`` defaults to every level present (minus
``heldout_levels``); ``max_rows_per_level`` caps each level after a seeded shuffle.

``recipe`` ("math", "gsm8k", "aqua") gives E2H's prompts and answer check for that dataset
(``e2h.tasks.e2h_data``; presets ``task=math`` etc.); the other options still override it.

Correctness: with ``scorer`` naming a built-in task (e.g. "countdown"), that task's check
is used (the rows must carry its columns, e.g. ``numbers`` and ``target``); ``scorer`` may
also name one of E2H's answer checks (``e2h.tasks.e2h_data.SCORERS``: math, math_verify,
gsm8k, aqua). Otherwise
the answer must match the ``answer`` column: numerically when both parse as numbers
(integers, decimals, fractions like 3/4, thousands separators), else as text ignoring
case, surrounding whitespace/``$``, repeated spaces and a final period.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import random
import re
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictInt, StrictStr, WithJsonSchema, model_validator

from e2h.errors import FieldProblem
from e2h.tasks import base
from e2h.tasks.base import Task, TaskOptions
from e2h.tasks.e2h_data import RECIPES, SCORERS

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("question", "answer", "level")
_NUMBER_RE = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?")


FIELD = "task.options.path"
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
# What ``datasets.load_dataset`` accepts as a hub dataset id: "name" or "owner/name".
_HUB_ID = re.compile(r"(?!.*(--|\.\.))[\w.-]{1,96}(/[\w.-]{1,96})?")


class DataFileError(ValueError):
    """A data file that cannot be used. The message names the path and what is wrong, never
    the file's contents (a run's error is public, and the file may not be meant to be)."""


def local_data_path(path: str) -> Path | None:
    """The local file or directory :func:`load_rows` would read for ``path``, resolved (symlinks
    followed), or None when ``path`` goes to ``datasets.load_dataset`` as a hub id or a builder
    name. Anything that names or looks like a path is local, whether it exists or not."""
    p = Path(path).expanduser()
    if (
        path.startswith(("/", ".", "~"))
        or p.exists()
        or p.suffix.lower() in DATA_SUFFIXES
        or not _HUB_ID.fullmatch(path)
    ):
        return p.resolve()
    return None


def builder_names() -> frozenset[str]:
    """``datasets``' packaged builders ("json", "csv", "text" ...): they read ``data_files`` locally."""
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    return frozenset(_PACKAGED_DATASETS_MODULES)


def _unreadable(path: str, what: str) -> DataFileError:
    return DataFileError(f"{FIELD}: {path!r} {what}")


def _json_rows(path: str, text: str, as_array: bool) -> list[Any]:
    try:
        if as_array:
            rows = json.loads(text)
            return list(rows) if isinstance(rows, list) else [rows]
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        # e.msg is the parser's fixed wording ("Expecting value"); e.doc (the text) stays out.
        raise _unreadable(path, f"is not valid JSON{'' if as_array else ' lines'} ({e.msg} at line {e.lineno} "
                                f"column {e.colno})") from None
    except RecursionError:
        raise _unreadable(path, "is not valid JSON (nested too deeply)") from None


def load_rows(
    path: str, config_name: str | None = None, split: str = "train", data_files: Any = None
) -> list[dict[str, Any]]:
    """The rows of a dataset as dicts (see the module docstring for accepted sources). Raises
    :class:`DataFileError` naming the path, never quoting the file."""
    rows = _load_rows(path, config_name, split, data_files)
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise _unreadable(path, f"row {i} is a {type(row).__name__}, not an object with columns")
    return [dict(row) for row in rows]


def _load_rows(path: str, config_name: str | None, split: str, data_files: Any) -> list[Any]:
    p = Path(path).expanduser()
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix not in DATA_SUFFIXES:
            raise _unreadable(path, "has an unknown format: use .jsonl, .json, .csv or .parquet")
        try:
            if suffix in (".jsonl", ".json"):
                text = p.read_text(encoding="utf-8")
                return _json_rows(path, text, as_array=suffix == ".json" and text.lstrip().startswith("["))
            if suffix == ".csv":
                with p.open(newline="", encoding="utf-8") as f:
                    return list(csv.DictReader(f))
            import pyarrow.parquet as pq

            return pq.read_table(p).to_pylist()
        except DataFileError:
            raise
        except UnicodeDecodeError as e:
            raise _unreadable(path, f"is not UTF-8 text (byte {e.start})") from None
        except OSError as e:
            raise _unreadable(path, f"cannot be read ({e.strerror or type(e).__name__})") from None
        except Exception as e:  # csv.Error, pyarrow errors: their messages may quote the data
            raise _unreadable(path, f"cannot be parsed as {suffix[1:]} ({type(e).__name__})") from None
    if not p.exists() and (path.startswith(("/", ".", "~")) or p.suffix.lower() in DATA_SUFFIXES):
        # Looks local: say so now rather than asking the hub for it.
        raise _unreadable(path, "does not exist")
    import datasets

    try:
        if p.is_dir() and ((p / "dataset_dict.json").exists() or (p / "state.json").exists()):
            loaded = datasets.load_from_disk(str(p))
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise _unreadable(path, f"has no such split: split {split!r} not in its splits {list(loaded)}")
                loaded = loaded[split]
            return loaded.to_list()
        loaded = datasets.load_dataset(path, config_name, split=split, data_files=data_files)
    except DataFileError:
        raise
    except FileNotFoundError:
        raise _unreadable(path, "was not found (not a local file or directory, nor loadable by datasets)") from None
    except Exception as e:  # the library's messages may quote the data it failed on
        raise _unreadable(path, f"could not be loaded by datasets ({type(e).__name__})") from None
    return loaded.to_list()


def _parse_number(text: str) -> Fraction | None:
    text = text.strip().rstrip(".").strip()
    if not _NUMBER_RE.fullmatch(text) or len(text) > 100:
        return None
    text = text.replace(",", "")
    numerator, _, denominator = text.partition("/")
    try:
        value = Fraction(numerator)
        return value / Fraction(denominator) if denominator else value
    except (ValueError, ZeroDivisionError):
        return None


def _normalise(text: str) -> str:
    text = " ".join(text.strip().strip("$").split()).casefold()
    return text[:-1].rstrip() if text.endswith(".") else text


def answers_match(predicted: str, gold: Any) -> bool:
    """Numeric equality when both sides are numbers, else normalised text equality."""
    gold_text = str(gold)
    a, b = _parse_number(predicted), _parse_number(gold_text)
    if a is not None and b is not None:
        return a == b
    return _normalise(predicted) == _normalise(gold_text)


def _level_of(value: Any, index: int) -> int:
    # The message gives the value's type, not the value: a run's error is public.
    bad = ValueError(f"row {index}: level must be an integer, got a {type(value).__name__}")
    if isinstance(value, bool):
        raise bad
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    raise bad


def scorer_names() -> list[str]:
    """What ``scorer`` may name: E2H's answer checks and the built-in generated tasks."""
    from e2h.tasks import TASKS

    return sorted({*SCORERS, *(name for name in TASKS if name != DatasetTask.name)})


def _scorer_schema(schema: dict[str, Any]) -> None:
    # The choices are known once every task is registered, i.e. when the schema is asked for.
    schema["anyOf"] = [{"enum": scorer_names(), "type": "string"}, {"type": "null"}]


_NAME_CHARS = 500
_Name = Annotated[StrictStr, Field(min_length=1, max_length=_NAME_CHARS)]
_NAME_SCHEMA = {"type": "string", "minLength": 1, "maxLength": _NAME_CHARS}
_PATHS_SCHEMA = {"anyOf": [_NAME_SCHEMA, {"type": "array", "items": _NAME_SCHEMA}]}


def _check_data_files(value: Any) -> Any:
    def paths(v: Any) -> bool:
        entries = v if isinstance(v, list) else [v]
        return all(isinstance(e, str) and 0 < len(e) <= _NAME_CHARS for e in entries)

    if value is None or paths(value) or (isinstance(value, dict) and all(paths(k) and paths(v) for k, v in
                                                                         value.items())):
        return value
    raise ValueError(f"must be a path, a list of paths or {{split: path(s)}} (each a string of 1 to {_NAME_CHARS} "
                     "characters)")


# One check, so a wrong value is one problem at data_files (not one per shape it might have had).
_DataFiles = Annotated[Any, AfterValidator(_check_data_files), WithJsonSchema(
    {"anyOf": [*_PATHS_SCHEMA["anyOf"], {"type": "object", "additionalProperties": _PATHS_SCHEMA}, {"type": "null"}]})]


class DatasetOptions(TaskOptions):
    levels: base.TrainingLevels | None = Field(None, description=(
        "Training levels, easiest first (a run sets them from task.train_levels). Default: every level of the "
        "data, less the held-out ones."))
    heldout_levels: base.HeldoutLevels = Field([], description="Held-out levels: evaluated, never trained on.")
    path: _Name | None = Field(None, description=(
        "A local .jsonl, .json, .csv or .parquet file, a save_to_disk directory, or a datasets hub id or builder "
        "(the worker's data policy decides what a run may read)."))
    config_name: _Name | None = Field(None, description="The datasets configuration (a hub dataset's subset).")
    split: _Name = Field("train", description="The split training rows come from.")
    test_split: _Name | None = Field(None, description=(
        "The split test rows come from (its questions also in training are dropped). None: the training rows, "
        "partitioned by question hash."))
    data_files: _DataFiles = Field(None, description=(
        "Files for a builder such as json: a path, a list of paths, or {split: paths} (the worker's data policy "
        "applies to each)."))
    max_rows_per_level: Annotated[StrictInt, Field(ge=1)] | None = Field(
        None, description="Rows kept per level after a seeded shuffle (None: all).")
    scorer: StrictStr | None = Field(None, json_schema_extra=_scorer_schema, description=(
        "The answer check: a built-in task's (its columns must be in the rows) or one of E2H's (math, "
        "math_verify, gsm8k, aqua). None: the recipe's, else the answer column matched as a number or text."))
    recipe: Literal[tuple(RECIPES)] | None = Field(None, description=(
        "E2H's prompts and answer check for its data tasks, for whichever of system_prompt, user_template and "
        "scorer is not set."))
    seed: StrictInt = Field(0, title="Shuffle seed",
                            description="Seed of the per-level shuffle (with max_rows_per_level).")

    @model_validator(mode="after")
    def _check(self) -> DatasetOptions:
        if not self.path:
            raise FieldProblem("the dataset task needs path=... (a local file, a save_to_disk directory or a hub "
                               "name)", "path")
        if self.scorer is not None and self.scorer not in scorer_names():
            raise FieldProblem(f"must be one of {scorer_names()} (a built-in task or one of E2H's checks), "
                               f"got {self.scorer!r}", "scorer")
        if self.recipe is not None:
            recipe = RECIPES[self.recipe]
            for key in ("system_prompt", "user_template"):
                if key not in self.model_fields_set:
                    setattr(self, key, recipe[key])
            self.scorer = self.scorer or recipe["scorer"]
        return self


class DatasetTask(Task):
    """A user's dataset with question/answer/level columns; see the module docstring."""

    name = "dataset"
    description = "Your own data: rows with question, answer and level (local file or datasets path)."
    Options = DatasetOptions
    required_columns = ("answer",)

    def __init__(self, **options: Any):
        super().__init__(**options)
        for level in self.levels:
            self._pool(level, self.split)
        for level in self.heldout_levels:
            self._pool(level, self.test_split or self.split)
        unused = sorted(set(self.pools[self.split]) - set(self.levels) - set(self.heldout_levels))
        if unused:
            logger.warning("dataset %r: its levels %s are neither trained nor held out (levels %s, held out %s); "
                           "E2H uses every level of its data", self.path, unused, self.levels, self.heldout_levels)

    def _configure(self, opts: DatasetOptions) -> None:
        self.recipe = opts.recipe
        self.path, self.split, self.test_split = str(opts.path), opts.split, opts.test_split
        self.scorer = None
        if opts.scorer in SCORERS:
            self.scorer = SCORERS[opts.scorer]()
            self.required_columns = ("answer", *self.scorer.required_columns[1:])
        elif opts.scorer is not None:
            from e2h.tasks import get_task

            self.scorer = get_task(opts.scorer)
            self.required_columns = ("answer", *self.scorer.required_columns)
        self.pools: dict[str, dict[int, list[dict]]] = {}
        for which in (opts.split, opts.test_split):
            if which is None or which in self.pools:
                continue
            rows = load_rows(self.path, opts.config_name, which, opts.data_files)
            self.pools[which] = self._by_level(rows, which, opts.max_rows_per_level, opts.seed)
        self.separate_test_split = opts.test_split is not None and opts.test_split != opts.split
        self.available_levels = tuple(sorted({lv for pool in self.pools.values() for lv in pool}))

    def _default_levels(self) -> list[int]:
        return [lv for lv in sorted(self.pools[self.split]) if lv not in self.opts.heldout_levels]

    def _by_level(self, rows: list[dict], which: str, cap: int | None, seed: int) -> dict[int, list[dict]]:
        if not rows:
            raise _unreadable(self.path, f"split {which!r} has no rows")
        needed = REQUIRED_COLUMNS + tuple(c for c in self.required_columns if c not in REQUIRED_COLUMNS)
        for i, raw in enumerate(rows):
            # Name what is missing, not the columns there are: a headerless CSV's "columns" are its
            # first line, which may be anything (a line of a key file, say).
            missing = [column for column in needed if column not in raw]
            if missing:
                raise _unreadable(
                    self.path, f"split {which!r} row {i} has no {missing[0]!r} column; need {list(needed)}"
                )
        pool: dict[int, list[dict]] = {}
        for i, raw in enumerate(rows):
            row = dict(raw)
            try:
                row["level"] = _level_of(row["level"], i)
            except ValueError as e:
                raise _unreadable(self.path, f"split {which!r} {e}") from None
            row["question"] = str(row["question"])
            row["answer"] = str(row["answer"])
            if row.get("solution") is None:
                row["solution"] = row["answer"]
            for column in sorted(set(self.required_columns) - set(REQUIRED_COLUMNS)):
                # CSV cells hold text; list columns such as ``numbers`` arrive as JSON text.
                if isinstance(row.get(column), str) and row[column].lstrip().startswith(("[", "{")):
                    with contextlib.suppress(ValueError):
                        row[column] = json.loads(row[column])
            pool.setdefault(row["level"], []).append(row)
        rng = random.Random(f"dataset/{self.path}/{which}/{seed}")
        for level in sorted(pool):
            rng.shuffle(pool[level])
            if cap is not None:
                del pool[level][cap:]
        return pool

    def _pool(self, level: int, which: str) -> list[dict]:
        rows = self.pools[which].get(level)
        if not rows:
            raise ValueError(
                f"dataset {self.path!r} split {which!r} has no rows of level {level}; "
                f"levels present: {sorted(self.pools[which])}"
            )
        return rows

    def generate(self, level: int, n: int, seed: int | str = 0) -> list[dict]:
        """Up to ``n`` rows of ``level`` from the training split, shuffled by ``seed``."""
        return self.sample(level, n, seed, "train")

    def sample(self, level: int, n: int, seed: int | str, split: str) -> list[dict]:
        self.check_level(level)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be an integer >= 0, got {n!r}")
        which = self.test_split if split == "test" and self.test_split else self.split
        rows = list(self._pool(level, which))
        self.rng(level, f"{seed}/{split}").shuffle(rows)
        return [dict(row) for row in rows[:n]]

    def score(self, answer: str, row: Mapping[str, Any]) -> float:
        if self.scorer is not None:
            return self.scorer.score(answer, row)
        return 1.0 if answers_match(answer, row["answer"]) else 0.0

    def score_batch(self, answers: Sequence[str | None], rows: Sequence[Mapping[str, Any]]) -> list[float]:
        if self.scorer is not None and hasattr(self.scorer, "score_batch"):
            return self.scorer.score_batch(answers, rows)
        return super().score_batch(answers, rows)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(path=self.path, split=self.split, test_split=self.test_split)
        return out
