"""The run page's derived view: what the page fetched (the run, its series, evaluations and log
lines), turned once per refresh into one frozen :class:`RunView` of labelled frames and facts.

The panels (``dashboard.panels``) take a view and only render it; the charts
(``dashboard.charts``) take its frames and only draw them. A new derived figure adds a field
here, built in :func:`derive`, and a chart drawing it. No Streamlit here.

Frames are indexed by step (``step``), one column per scheduler level named by its label
("level 3"), in the series' order; values exactly as the scheduler reported them, a missing one
``<NA>`` (nullable ``Float64``, ``Int64`` for counts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from dashboard import series as S
from e2h.signals import NO_SIGNAL_STEPS, ZERO_STD_METRIC, no_signal_streak

DEFAULT_METRICS = ("loss", "kl", "reward")
ACCURACY_COLUMNS = ("level", "step", "accuracy", "kind")


def raw_column(name: str) -> str:
    """The breakdown table's column of a component's raw value ("deficit (raw)")."""
    return f"{name} (raw)"


@dataclass(frozen=True, eq=False)
class RunView:
    """One run as the run page shows it, derived once from what the page fetched."""

    run: dict[str, Any]
    labels: tuple[str, ...]  # one per scheduler level, in the series' order: the frames' columns
    heldout: tuple[int, ...]  # level values evaluated but never trained on
    steps: tuple[int, ...]
    probability: pd.DataFrame
    reward_mean: pd.DataFrame
    reward_var: pd.DataFrame
    count: pd.DataFrame  # cumulative samples per level
    metrics: pd.DataFrame  # step x metric name
    default_metrics: tuple[str, ...]  # what the metrics chart shows until the researcher picks
    components: Mapping[str, pd.DataFrame]  # the normalised components, then the combined score(s)
    component_names: tuple[str, ...]  # normalised components only (no raw, no combined)
    combined_names: tuple[str, ...]  # "score" and/or "pi"
    raw: Mapping[str, pd.DataFrame]  # a component's raw values, where the scheduler reported them
    breakdown_steps: tuple[int, ...]  # the steps at which the scheduler reported components
    warmup_until: int | None  # an adaptive scheduler still in its warmup (no components yet): until when
    no_signal_streak: int | None  # steps without a learning signal, once at least NO_SIGNAL_STEPS
    accuracy: pd.DataFrame  # evaluation points: level, step, accuracy, kind ("eval" or the final "test")
    test: dict[str, Any] | None  # the latest final test
    test_table: pd.DataFrame | None  # its results, a row per level label (held-out marked) and overall
    test_size: int | None  # the test questions per level the config asked for
    few_questions: tuple[tuple[str, int], ...]  # (level, distinct questions) of levels the test had fewer of
    logs: tuple[str, ...]
    readable_log: tuple[str, ...]
    progress: float
    facts: tuple[tuple[str, Any], ...]  # the header's "label: value" line
    times: tuple[str, ...]  # created / started / finished, as shown

    @property
    def has_breakdown(self) -> bool:
        return bool(self.component_names or self.combined_names)

    def breakdown_step(self, step: int | None = None) -> int:
        """The last step with components at or before ``step`` (the latest with None; the first if none is)."""
        steps = list(self.breakdown_steps)
        return steps[-1] if step is None else steps[S.nearest_index(steps, step)]

    def breakdown(self, step: int) -> pd.DataFrame:
        """One row per level at ``step``: probability, combined score(s), each component normalised,
        and raw where reported ("deficit (raw)"). ``pi`` is dropped where it equals the score (the
        same numbers at temperature 1 and weights summing to 1)."""
        i = self.steps.index(step)
        rows = []
        for j, label in enumerate(self.labels):
            row: dict[str, Any] = {"level": label, "probability": _at(self.probability, i, j)}
            for name in self.combined_names:
                row[name] = _at(self.components[name], i, j)
            for name in self.component_names:
                row[name] = _at(self.components[name], i, j)
                if name in self.raw:
                    row[raw_column(name)] = _at(self.raw[name], i, j)
            rows.append(row)
        frame = pd.DataFrame(rows)
        if {"score", "pi"} <= set(frame.columns) and (frame["score"] - frame["pi"]).abs().max() < 1e-9:
            frame = frame.drop(columns="pi")
        return frame


def derive(run: dict[str, Any], series: dict[str, Any], evals: list[dict[str, Any]], logs: Sequence[str],
           now: datetime | None = None) -> RunView:
    """The run page's view of a run: its series as frames and every fact the panels show."""
    labels = tuple(S.level_labels(run, series))
    heldout = tuple(S.heldout_levels(run))
    names, combined = S.component_names(series), S.combined_names(series)
    components = {name: level_frame(series, labels, lambda lv, n=name: (lv.get("components") or {}).get(n))
                  for name in names + combined}
    raw = {name: level_frame(series, labels, lambda lv, k=name + S.RAW_SUFFIX: (lv.get("components") or {}).get(k))
           for name in names if any(name + S.RAW_SUFFIX in (lv.get("components") or {}) for lv in series["levels"])}
    steps = tuple(series["steps"])
    breakdown_steps = tuple(steps[i] for i in S.component_steps(series)) if names or combined else ()
    test = S.latest_eval(evals, "test")
    config = run.get("config") or {}
    test_size = (config.get("task") or {}).get("test_size_per_level")
    metrics = pd.DataFrame({name: pd.array(_pad(values, len(steps)), dtype="Float64")
                            for name, values in (series.get("metrics") or {}).items()},
                           index=pd.Index(steps, name="step"))
    streak = no_signal_streak(series["steps"], series["metrics"].get(ZERO_STD_METRIC) or [])
    return RunView(
        run=run, labels=labels, heldout=heldout, steps=steps,
        probability=level_frame(series, labels, "probability"),
        reward_mean=level_frame(series, labels, "reward_mean"),
        reward_var=level_frame(series, labels, "reward_var"),
        count=level_frame(series, labels, "count", dtype="Int64"),
        metrics=metrics,
        default_metrics=tuple(m for m in DEFAULT_METRICS if m in metrics.columns) or tuple(metrics.columns[:3]),
        components=components, component_names=tuple(names), combined_names=tuple(combined), raw=raw,
        breakdown_steps=breakdown_steps,
        warmup_until=None if names or combined else _warmup_until(run, steps),
        no_signal_streak=streak if streak >= NO_SIGNAL_STEPS else None,
        accuracy=accuracy_frame(evals),
        test=test,
        test_table=pd.DataFrame([{"level": S.test_row_label(k, list(heldout)), **v}
                                 for k, v in test["results"].items() if isinstance(v, dict)]) if test else None,
        test_size=test_size,
        few_questions=tuple(S.few_questions(test, test_size)) if test else (),
        logs=tuple(logs), readable_log=tuple(S.readable_log(list(logs))),
        progress=S.progress(run), facts=_facts(run, S.format_duration(S.eta_seconds(run, now))),
        times=_times(run),
    )


def level_frame(series: dict[str, Any], labels: Sequence[str], field: Any, dtype: str = "Float64") -> pd.DataFrame:
    """Step x level label of one per-level field (a LevelSeries field name, or a function of a level)."""
    n = len(series["steps"])
    get = field if callable(field) else (lambda lv: lv.get(field))
    frame = pd.DataFrame({j: pd.array(_pad(get(lv), n), dtype=dtype) for j, lv in enumerate(series["levels"])},
                         index=pd.Index(series["steps"], name="step"))
    frame.columns = list(labels)[:len(frame.columns)]
    return frame


def accuracy_frame(evals: list[dict[str, Any]]) -> pd.DataFrame:
    """The evaluations' accuracy per level value, by step, each level's final test point last
    (:func:`dashboard.series.eval_accuracy_with_test`), as rows of level, step, accuracy, kind."""
    rows = [(level, step, value, kind) for level, columns in S.eval_accuracy_with_test(evals).items()
            for step, value, kind in zip(*columns, strict=True)]
    return pd.DataFrame(rows, columns=list(ACCURACY_COLUMNS))


def _warmup_until(run: dict[str, Any], steps: Sequence[int]) -> int | None:
    """The step an adaptive scheduler adapts from, while the run has not reached it."""
    warmup = warmup_steps(run)
    return warmup if warmup and steps and steps[-1] < warmup else None


def warmup_steps(run: dict[str, Any]) -> int | None:
    """The steps an adaptive scheduler samples uniformly before adapting (None: it has no warmup)."""
    from e2h.schedulers import make_scheduler

    config = run.get("config") or {}
    sched = config.get("scheduler") or {}
    try:
        built = make_scheduler(sched.get("name"), run.get("num_levels") or 1, run.get("max_steps") or 1,
                               **(sched.get("params") or {}))
    except (ValueError, TypeError, KeyError):
        return None
    return getattr(built, "warmup_steps", None)


def _facts(run: dict[str, Any], eta: str) -> tuple[tuple[str, Any], ...]:
    config = run.get("config") or {}
    facts = [("Task", config.get("task", {}).get("name", "?")),
             ("Scheduler", config.get("scheduler", {}).get("name", "?")),
             ("Model", config.get("model", {}).get("name_or_path", "?")), ("Attempt", run.get("attempt", 1)),
             ("Worker", run.get("worker_id") or "—"), ("ETA", eta or "—")]
    if run.get("tags"):
        facts.append(("Tags", ", ".join(run["tags"])))
    return tuple(facts)


def _times(run: dict[str, Any]) -> tuple[str, ...]:
    return tuple(f"{label} {S.parse_time(run.get(field)):%Y-%m-%d %H:%M:%S} UTC" for label, field in (
        ("created", "created_at"), ("started", "started_at"), ("finished", "finished_at")) if run.get(field))


def _pad(values: Sequence | None, n: int) -> list:
    values = list(values or [])
    return values[:n] + [None] * (n - len(values))


def _at(frame: pd.DataFrame, row: int, column: int) -> Any:
    """A frame's value at a position, None where missing."""
    value = frame.iat[row, column]
    return None if pd.isna(value) else value
