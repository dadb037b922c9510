"""The server's columnar snapshot series and run records, reshaped for the pages (no Streamlit).

A series is what ``GET /runs/{id}/snapshots`` returns: ``steps``, ``time``, ``levels`` (one
entry per scheduler level with ``probability``, ``reward_mean``, ``reward_var``, ``count`` and
``components``) and ``metrics``, all lists aligned with ``steps``. The pages poll with
``after_step`` and append what comes back with :func:`merge`.
"""

from __future__ import annotations

import ast
import math
import re
from datetime import UTC, datetime
from typing import Any

LEVEL_FIELDS = ("probability", "reward_mean", "reward_var", "count")
RAW_SUFFIX = "_raw"
# Shown in this order when present; other names follow alphabetically.
COMPONENT_ORDER = ("deficit", "variance", "exploration", "groupdro", "vrex", "learning_progress", "q_value")
COMBINED = ("score", "pi")


def empty() -> dict[str, Any]:
    return {"steps": [], "time": [], "levels": [], "metrics": {}, "total": 0}


def _pad(values: list | None, n: int) -> list:
    values = list(values or [])
    return values + [None] * (n - len(values))


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``old`` followed by the steps of ``new`` that come after it.

    Components and metrics that appear only later (an adaptive scheduler's components
    start after its warmup) are padded with None before they appear, and vice versa.
    """
    last = old["steps"][-1] if old["steps"] else None
    keep = [i for i, s in enumerate(new["steps"]) if last is None or s > last]
    n_old, n_new = len(old["steps"]), len(keep)

    def pick(values: list | None) -> list:
        values = _pad(values, len(new["steps"]))
        return [values[i] for i in keep]

    def join(a: dict, b: dict) -> dict[str, list]:
        """Name by name (a's first, then b's new ones): a's values padded, then b's kept ones."""
        return {name: _pad(a.get(name), n_old) + pick(b.get(name)) for name in a | b}

    old_levels = {lv["level"]: lv for lv in old.get("levels", [])}
    new_levels = {lv["level"]: lv for lv in new.get("levels", [])}
    levels = []
    for level in sorted(old_levels.keys() | new_levels.keys()):
        a, b = old_levels.get(level, {}), new_levels.get(level, {})
        entry: dict[str, Any] = {"level": level}
        entry.update(join({f: a.get(f) for f in LEVEL_FIELDS}, {f: b.get(f) for f in LEVEL_FIELDS}))
        entry["components"] = join(a.get("components") or {}, b.get("components") or {})
        levels.append(entry)
    return {
        "steps": old["steps"] + [new["steps"][i] for i in keep],
        "time": _pad(old.get("time"), n_old) + pick(new.get("time")),
        "levels": levels,
        "metrics": join(old.get("metrics") or {}, new.get("metrics") or {}),
        "total": old.get("total", 0) + n_new,
    }


def last_step(series: dict[str, Any]) -> int | None:
    return series["steps"][-1] if series["steps"] else None


# -- levels -------------------------------------------------------------------------------


def train_levels(run: dict[str, Any]) -> list[int]:
    """The task's level values, scheduler level i first; falls back to 0..K-1."""
    levels = (run.get("config") or {}).get("task", {}).get("train_levels")
    return list(levels) if levels else list(range(run.get("num_levels") or 0))


def heldout_levels(run: dict[str, Any]) -> list[int]:
    """Levels evaluated but never trained on (test_levels minus train_levels)."""
    task = (run.get("config") or {}).get("task", {})
    train = set(task.get("train_levels") or [])
    return sorted(set(task.get("test_levels") or []) - train)


def level_labels(run: dict[str, Any], series: dict[str, Any] | None = None) -> list[str]:
    """A label per scheduler level in the series ("level 3"), in the series' order."""
    values = train_levels(run)
    indices = [lv["level"] for lv in series["levels"]] if series else list(range(len(values)))
    return [f"level {values[i]}" if i < len(values) else f"level #{i}" for i in indices]


# -- components -----------------------------------------------------------------------------


def component_names(series: dict[str, Any]) -> list[str]:
    """Normalised component names the scheduler reported (raw ``*_raw`` and combined ones excluded)."""
    seen: set[str] = set()
    for lv in series["levels"]:
        for name, values in (lv.get("components") or {}).items():
            if any(v is not None for v in values):
                seen.add(name)
    names = {n for n in seen if not n.endswith(RAW_SUFFIX) and n not in COMBINED}
    return [n for n in COMPONENT_ORDER if n in names] + sorted(names - set(COMPONENT_ORDER))


def combined_names(series: dict[str, Any]) -> list[str]:
    """The combined score names present (``score`` and/or ``pi``), in that order."""
    present = {n for lv in series["levels"] for n, v in (lv.get("components") or {}).items() if any(
        x is not None for x in v)}
    return [n for n in COMBINED if n in present]


def component_steps(series: dict[str, Any]) -> list[int]:
    """Indices of the steps at which the scheduler reported components (past its warmup)."""
    out = []
    for i in range(len(series["steps"])):
        if any(v[i] is not None for lv in series["levels"] for v in (lv.get("components") or {}).values()
               if i < len(v)):
            out.append(i)
    return out


def nearest_index(steps: list[int], step: int) -> int:
    """Index of the last step <= ``step`` (the first one if none is)."""
    best = 0
    for i, s in enumerate(steps):
        if s <= step:
            best = i
        else:
            break
    return best


# -- evals ----------------------------------------------------------------------------------


def eval_accuracy(evals: list[dict[str, Any]], name: str = "eval") -> dict[int, tuple[list[int], list[float]]]:
    """Per level value: (steps, accuracy) from the evaluations called ``name``, by step."""
    out: dict[int, tuple[list[int], list[float]]] = {}
    for ev in sorted((e for e in evals if e.get("name") == name), key=lambda e: e["step"]):
        for key, result in (ev.get("results") or {}).items():
            if not key.startswith("level_") or not isinstance(result, dict):
                continue
            try:
                level = int(key.removeprefix("level_"))
            except ValueError:
                continue
            accuracy = result.get("accuracy")
            if accuracy is None:
                continue
            steps, values = out.setdefault(level, ([], []))
            steps.append(ev["step"])
            values.append(float(accuracy))
    return dict(sorted(out.items()))


def eval_accuracy_with_test(evals: list[dict[str, Any]]) -> dict[int, tuple[list[int], list[float], list[str]]]:
    """Per level value: (steps, accuracy, kind) of the periodic evaluations, then the final test's
    point (kind "test") where there is one; levels only the test has included."""
    periodic = eval_accuracy(evals, "eval")
    test = latest_eval(evals, "test")
    final = eval_accuracy([test], "test") if test else {}
    out: dict[int, tuple[list[int], list[float], list[str]]] = {}
    for level in sorted(periodic.keys() | final.keys()):
        steps, values = (list(x) for x in periodic.get(level, ([], [])))
        kinds = ["eval"] * len(steps)
        for step, value in zip(*final.get(level, ([], [])), strict=True):
            steps.append(step)
            values.append(value)
            kinds.append("test")
        out[level] = (steps, values, kinds)
    return out


def few_questions(test: dict[str, Any], wanted: int | None) -> list[tuple[str, int]]:
    """(level, distinct questions) of the levels the test asked fewer questions of than ``wanted``
    (a task with fewer questions for a level gives each one once)."""
    if not wanted:
        return []
    out = []
    for key, result in (test.get("results") or {}).items():
        support = result.get("support") if isinstance(result, dict) else None
        if key.startswith("level_") and isinstance(support, int) and support < wanted:
            out.append((key.replace("_", " "), support))
    return out


def test_row_label(key: str, heldout: list[int] | None = None) -> str:
    """A test result's key as a row label: "level 3", "level 6 (held-out)", "overall"."""
    if not key.startswith("level_"):
        return key
    value = key.removeprefix("level_")
    held = value.lstrip("-").isdigit() and int(value) in (heldout or [])
    return f"level {value}" + (" (held-out)" if held else "")


def test_accuracy(test: dict[str, Any], heldout: list[int] | None = None) -> dict[str, float]:
    """A test's accuracy by row label (:func:`test_row_label`)."""
    out = {}
    for key, result in (test.get("results") or {}).items():
        accuracy = result.get("accuracy") if isinstance(result, dict) else None
        if accuracy is not None:
            out[test_row_label(key, heldout)] = float(accuracy)
    return out


def level_sort_key(row: str) -> tuple[int, float, str]:
    """Levels by value, then anything else (overall) last."""
    parts = row.split()
    if parts[0] == "level" and len(parts) > 1 and parts[1].lstrip("-").isdigit():
        return (0, int(parts[1]), row)
    return (1, 0.0, row)


def latest_eval(evals: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    chosen = [e for e in evals if e.get("name") == name]
    return max(chosen, key=lambda e: e["step"]) if chosen else None


# -- runs -----------------------------------------------------------------------------------


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def eta_seconds(run: dict[str, Any], now: datetime | None = None) -> float | None:
    """Seconds left at the average pace since the run started; None when unknown."""
    if run.get("status") != "running":
        return None
    started = parse_time(run.get("started_at"))
    step, max_steps = run.get("step") or 0, run.get("max_steps") or 0
    if started is None or step <= 0 or max_steps <= step:
        return None
    elapsed = ((now or datetime.now(UTC)) - started).total_seconds()
    if elapsed <= 0:
        return None
    return (max_steps - step) * elapsed / step


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours // 24} d {hours % 24} h"


def progress(run: dict[str, Any]) -> float:
    max_steps = run.get("max_steps") or 0
    return min(1.0, (run.get("step") or 0) / max_steps) if max_steps else 0.0


def config_name(run: dict[str, Any], section: str) -> str:
    """The run's task, scheduler or model name: a list item (GET /runs) carries it at the top
    level (``task``, ``scheduler``, ``model``), a full run (GET /runs/{id}) in its config."""
    if isinstance(run.get(section), str):
        return run[section]
    part = (run.get("config") or {}).get(section) or {}
    value = part.get("name_or_path" if section == "model" else "name") if isinstance(part, dict) else None
    return value if isinstance(value, str) else ""


RESULT_COLUMNS = {"accuracy": "test accuracy", "heldout_accuracy": "held-out accuracy", "reward": "test reward"}


def result_columns(results: dict[str, Any] | None) -> dict[str, float | None]:
    """A run's final test figures (e2h.schemas.RunResults) as table columns; empty before its final test."""
    return {label: (results or {}).get(key) for key, label in RESULT_COLUMNS.items()}


def run_row(run: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """One row of the runs table (from a list item or a full run)."""
    return {
        "id": run["id"],
        "name": run["name"],
        "status": run["status"] + (" (cancel requested)" if run.get("cancel_requested") and run[
            "status"] == "running" else ""),
        "progress": progress(run),
        "step": f"{run.get('step', 0)} / {run.get('max_steps', 0)}",
        "eta": format_duration(eta_seconds(run, now)),
        "task": config_name(run, "task"),
        "scheduler": config_name(run, "scheduler"),
        "model": config_name(run, "model"),
        **result_columns(run.get("results")),
        "attempt": run.get("attempt"),
        "worker": run.get("worker_id") or "",
        "tags": ", ".join(run.get("tags") or []),
        "created": parse_time(run.get("created_at")),
        "started": parse_time(run.get("started_at")),
    }


# -- log lines -------------------------------------------------------------------------------

_WARNING = re.compile(r"^\S.*:\d+: \w*Warning: ")  # warnings.showwarning's "file:line: Category: text"
_TQDM = re.compile(r"\d+%\|.*\|\s*\d+/\d+|\d+(?:\.\d+)?(?:it/s|s/it)\]")
_METRICS_DICT = re.compile(r"^\{'[^']+': .*\}$")
_LOG_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2} (\d{2}:\d{2}:\d{2}),\d+ ")
METRIC_KEYS = ("loss", "reward", "reward_std", "frac_reward_zero_std", "kl", "grad_norm", "learning_rate")


def readable_log(lines: list[str]) -> list[str]:
    """The run's own lines, readably: Python warnings (and the source line under each) and tqdm
    progress bars dropped, TRL's logged metric dicts as ``metrics: loss=0 reward=0.1 ...``, and
    the logging timestamp shortened to the time of day. The raw lines stay available."""
    out: list[str] = []
    in_warning = False
    for line in lines:
        text = line.rstrip()
        if _WARNING.match(text):
            in_warning = True
            continue
        if in_warning and (not text or text[:1].isspace()):
            continue
        in_warning = False
        if not text.strip() or _TQDM.search(text):
            continue
        stripped = text.strip()
        if _METRICS_DICT.match(stripped):
            out.append(_metrics_line(stripped))
            continue
        out.append(_LOG_PREFIX.sub(r"\1 ", text))
    return out


def _metrics_line(text: str) -> str:
    try:
        values = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    if not isinstance(values, dict):
        return text
    shown = [k for k in METRIC_KEYS if k in values] or list(values)[:6]
    parts = [f"{k}={values[k]:.4g}" if isinstance(values[k], int | float) else f"{k}={values[k]}" for k in shown]
    return "metrics: " + " ".join(parts)
