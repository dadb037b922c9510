"""Sweeps: a base RunConfig x a grid of dotted overrides x seeds, and "which one wins?". No torch.

The wire models of ``/sweeps`` (the server answers with them, :class:`e2h.client.Client`
returns them), the grid's expansion into groups, and the summary, a pure function of the
runs' final test results so it can be checked by hand.

A **group** is one grid point (one value per grid key); its runs differ only in
``algorithm.seed``. The summary gives, per group, level and metric, the mean over the seeds
that finished with a final test evaluation and its 95% t interval; per group the paired
difference to a baseline group (seed by seed); and per level and metric a verdict, as
``docs/benchmarks.md`` reports the simulation: the **winner** is the group with the highest
mean, a group is **tied** with it when the paired 95% interval of (group - winner) reaches 0
(or when fewer than 2 seeds are shared, which cannot separate them), **behind** when the
whole interval is below 0.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints, model_validator

from e2h.config import MAX_JSON_DEPTH, RunConfig, dotted_get, json_depth
from e2h.errors import FieldProblem
from e2h.schemas import Name, RunStatus, Tag, reject_non_finite
from e2h.stats import Estimate, mean_ci, paired_difference

MAX_SWEEP_RUNS = 500
MAX_GRID_KEYS = 8
MAX_GRID_VALUES = 64
MAX_SEEDS = 100
SEED_KEY = "algorithm.seed"
METRICS = ("accuracy", "reward_mean")
OVERALL = "overall"
TEST_EVAL = "test"  # the worker's final evaluation (e2h.train); "eval" records are the periodic ones

_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")
DottedKey = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
GridValues = Annotated[list[JsonValue], Field(min_length=1, max_length=MAX_GRID_VALUES)]
SweepStatus = Literal["queued", "running", "finished"]
Verdict = Literal["winner", "tied", "behind"]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class SweepCreate(BaseModel):
    """``POST /sweeps``: every grid point x seed becomes a run, validated as ``POST /runs`` validates."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = Field(None, description="Default: the base config's output name + ' sweep'.")
    config: RunConfig = Field(default_factory=RunConfig, description="The base RunConfig ({} = defaults).")
    grid: dict[DottedKey, GridValues] = Field(
        default_factory=dict,
        max_length=MAX_GRID_KEYS,
        description='Dotted RunConfig keys and the values each takes, e.g. {"scheduler.name": ["balanced", "sec"]}; '
        "the groups are every combination, in key order. {} is one group: the base config.",
    )
    seeds: list[Seed] | None = Field(
        None, min_length=1, max_length=MAX_SEEDS,
        description="algorithm.seed of each group's runs (default: the base config's seed).",
    )
    baseline: dict[DottedKey, JsonValue] | None = Field(
        None, description='The group differences are taken against, by its grid values, e.g. {"scheduler.name": '
        '"balanced"} (default: the first group). GET /sweeps/{id}?baseline=INDEX picks another.',
    )
    priority: int = Field(0, ge=-1_000_000, le=1_000_000, description="Every run's priority.")
    tags: list[Tag] = Field(default_factory=list, max_length=32, description="Every run's tags.")

    @model_validator(mode="before")
    @classmethod
    def _finite(cls, data: Any) -> Any:
        reject_non_finite(data)
        return data

    @model_validator(mode="after")
    def _check(self) -> SweepCreate:
        if self.seeds is not None and len(set(self.seeds)) != len(self.seeds):
            raise FieldProblem(f"seeds: each seed once, got {self.seeds}", "seeds")
        keys = list(self.grid)
        for where, names in (("grid", keys), ("baseline", list(self.baseline or {}))):
            for key in names:
                if not _DOTTED.match(key):
                    raise FieldProblem(f"{where}: {key!r} is not a dotted RunConfig key such as scheduler.name", where)
        for key in keys:
            if key == SEED_KEY:
                raise FieldProblem(f"grid.{SEED_KEY}: give the seeds as seeds=[...], not as a grid key",
                                   f"grid.{SEED_KEY}")
            if other := next((k for k in keys if k.startswith(key + ".")), None):
                raise FieldProblem(f"grid.{other}: overlaps grid key {key!r}; give one of them", f"grid.{other}")
        for key, values in self.grid.items():
            for value in values:
                if json_depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
                    raise FieldProblem(f"grid.{key}: a value is nested deeper than {MAX_JSON_DEPTH} levels",
                                       f"grid.{key}")
            if len({_canonical(v) for v in values}) != len(values):
                raise FieldProblem(f"grid.{key}: each value once, got {values}", f"grid.{key}")
        runs = self.num_groups * len(self.seeds or [0])
        if runs > MAX_SWEEP_RUNS:
            raise FieldProblem(
                f"grid: {self.num_groups} grid points x {len(self.seeds or [0])} seeds = {runs} runs, more than the "
                f"{MAX_SWEEP_RUNS} a sweep may have; drop grid values or seeds", "grid"
            )
        return self

    @property
    def num_groups(self) -> int:
        n = 1
        for values in self.grid.values():
            n *= len(values)
        return n

    @property
    def run_seeds(self) -> list[int]:
        return list(self.seeds) if self.seeds else [self.config.algorithm.seed]


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[tuple[tuple[int, ...], dict[str, Any]]]:
    """Every combination of the grid's values, in key order: (index of each value, {key: value})."""
    keys = list(grid)
    points = []
    for indices in itertools.product(*(range(len(grid[k])) for k in keys)):
        points.append((indices, {k: grid[k][i] for k, i in zip(keys, indices, strict=True)}))
    return points


def point_label(point: Mapping[str, Any]) -> str:
    """``scheduler.name=sec, algorithm.learning_rate=0.001``; the empty point is ``base``."""
    if not point:
        return "base"
    return ", ".join(f"{k}={v if isinstance(v, str) else _canonical(v)}" for k, v in point.items())


value_at = dotted_get  # the value at a dotted key of a (dumped) config, None when absent


def group_key(config: Mapping[str, Any], keys: Iterable[str]) -> str:
    """What identifies a run's group: its config's values at the grid keys (as the run stores them)."""
    return _canonical([value_at(config, k) for k in keys])


def heldout_keys(config: Mapping[str, Any]) -> set[str]:
    """Result keys (``level_N``) of the levels a run evaluates but never trains on."""
    task = config.get("task") if isinstance(config, Mapping) else None
    if not isinstance(task, Mapping):
        return set()
    train = set(task.get("train_levels") or [])
    return {f"level_{v}" for v in task.get("test_levels") or [] if v not in train}


def final_figures(results: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """A test eval's results ({"level_3": {"accuracy", "reward_mean", "support"}, "overall": ...})
    reduced to the summary's metrics."""
    figures = {}
    for key, value in results.items():
        if (key == OVERALL or key.startswith("level_")) and isinstance(value, Mapping):
            kept = {m: float(value[m]) for m in METRICS
                    if isinstance(value.get(m), int | float) and not isinstance(value.get(m), bool)}
            if kept:
                figures[key] = kept
    return figures


# -- the summary --------------------------------------------------------------------------


class SweepGroup(BaseModel):
    index: int
    label: str = Field(description="key=value for each grid key; 'base' for an empty grid.")
    point: dict[str, Any] = Field(description="The group's grid values, as its runs' configs hold them.")
    runs: int = Field(description="Runs of this group (one per seed).")
    finished: int = Field(description="Seeds that succeeded with a final test evaluation (the summary's n).")
    statuses: dict[str, int] = Field(description="Runs per status.")


class SweepLevel(BaseModel):
    key: str = Field(description='The result key: "level_N" or "overall".')
    level: int | None = Field(description="The task level (None for overall).")
    heldout: bool = Field(description="Evaluated, never trained on.")


class SweepCell(BaseModel):
    """One group's final figure on one level: mean over seeds and its 95% t interval."""

    group: int
    level: str
    metric: str
    n: int
    mean: float | None
    sd: float | None
    ci_low: float | None
    ci_high: float | None
    verdict: Verdict | None = Field(
        description="winner: highest mean; tied: the paired 95% CI of (group - winner) reaches 0, or under 2 "
        "shared seeds; behind: that CI is below 0. None without finished seeds."
    )


class SweepDifference(BaseModel):
    """group - baseline on one level, paired by seed, with its 95% t interval."""

    group: int
    baseline: int
    level: str
    metric: str
    n: int = Field(description="Seeds both groups finished.")
    mean: float | None
    sd: float | None
    ci_low: float | None
    ci_high: float | None


class SweepSummary(BaseModel):
    baseline: int = Field(description="The group the differences are taken against.")
    metrics: list[str]
    levels: list[SweepLevel] = Field(description="Levels by number, then overall.")
    groups: list[SweepGroup]
    cells: list[SweepCell]
    differences: list[SweepDifference]


class SweepRun(BaseModel):
    """A run of a sweep: its group and seed, progress, and its final test figures once it has them."""

    id: int
    name: str
    status: RunStatus
    group: int | None = Field(description="Index into the sweep's groups (None: its config matches none).")
    seed: int | None
    step: int
    max_steps: int
    worker_id: str | None
    error: str | None = Field(description="The error's first line.")
    results: dict[str, dict[str, float]] | None = Field(
        description="Final test figures per level key (accuracy, reward_mean); None until the test evaluation."
    )
    finished_at: datetime | None


def _entry(estimate: Estimate) -> dict[str, Any]:
    return {"n": estimate.n, "mean": estimate.mean, "sd": estimate.sd,
            "ci_low": estimate.ci_low, "ci_high": estimate.ci_high}


def _level_order(key: str) -> tuple[int, int]:
    return (1, 0) if key == OVERALL else (0, int(key.removeprefix("level_")))


def summarise(points: Sequence[Mapping[str, Any]], runs: Sequence[SweepRun], heldout: set[str],
              baseline: int = 0) -> SweepSummary:
    """The summary of a sweep whose groups are ``points`` (see the module docstring).

    ``runs``: every run of the sweep; those that succeeded with ``results`` count.
    ``heldout``: the result keys of held-out levels.
    """
    if not 0 <= baseline < max(1, len(points)):
        raise FieldProblem(f"baseline: group {baseline} does not exist; groups are 0..{len(points) - 1}",
                           "baseline")
    # values[(group, level, metric)] = {seed: figure}; runs in id order, a later run of a seed wins.
    values: dict[tuple[int, str, str], dict[int, float]] = {}
    statuses: list[dict[str, int]] = [{} for _ in points]
    finished = [0] * len(points)
    counts = [0] * len(points)
    levels: set[str] = set()
    for run in sorted(runs, key=lambda r: r.id):
        if run.group is None or not 0 <= run.group < len(points):
            continue
        g = run.group
        counts[g] += 1
        statuses[g][run.status.value] = statuses[g].get(run.status.value, 0) + 1
        if run.status != RunStatus.succeeded or not run.results or run.seed is None:
            continue
        finished[g] += 1
        for key, figures in run.results.items():
            levels.add(key)
            for metric, x in figures.items():
                if metric in METRICS:
                    values.setdefault((g, key, metric), {})[run.seed] = x
    level_keys = sorted(levels, key=_level_order)
    cells: list[SweepCell] = []
    differences: list[SweepDifference] = []
    for key in level_keys:
        for metric in METRICS:
            per_group = [values.get((g, key, metric), {}) for g in range(len(points))]
            estimates = [mean_ci(list(v.values())) for v in per_group]
            have = [g for g, e in enumerate(estimates) if e.n]
            winner = max(have, key=lambda g: (estimates[g].mean, -g)) if have else None
            for g, estimate in enumerate(estimates):
                verdict = None
                if winner is not None and estimate.n:
                    if g == winner:
                        verdict = "winner"
                    else:
                        d = paired_difference(per_group[g], per_group[winner])
                        verdict = "behind" if d.n >= 2 and d.ci_high < 0 else "tied"
                cells.append(SweepCell(group=g, level=key, metric=metric, verdict=verdict, **_entry(estimate)))
            for g in range(len(points)):
                if g == baseline:
                    continue
                d = paired_difference(per_group[g], per_group[baseline])
                if d.n:
                    differences.append(SweepDifference(group=g, baseline=baseline, level=key, metric=metric,
                                                       **_entry(d)))
    return SweepSummary(
        baseline=baseline,
        metrics=list(METRICS),
        levels=[SweepLevel(key=k, level=None if k == OVERALL else int(k.removeprefix("level_")),
                           heldout=k in heldout) for k in level_keys],
        groups=[SweepGroup(index=g, label=point_label(p), point=dict(p), runs=counts[g], finished=finished[g],
                           statuses=statuses[g]) for g, p in enumerate(points)],
        cells=cells,
        differences=differences,
    )


# -- the sweep itself ---------------------------------------------------------------------


class SweepPublic(BaseModel):
    """A sweep as listed, and as ``POST /sweeps`` answers it."""

    id: int
    name: str
    status: SweepStatus = Field(description="queued: no run started; finished: every run finished; else running.")
    config: dict[str, Any] = Field(description="The base RunConfig.")
    grid: dict[str, list[Any]]
    seeds: list[int]
    groups: list[dict[str, Any]] = Field(description="Each group's grid values, in group order.")
    baseline: int = Field(description="The default baseline group.")
    priority: int
    tags: list[str]
    run_ids: list[int] = Field(description="The sweep's runs, oldest first.")
    counts: dict[str, int] = Field(description="Runs per status.")
    created_at: datetime
    updated_at: datetime


class SweepDetail(SweepPublic):
    """``GET /sweeps/{id}``: the sweep, its runs and its summary."""

    runs: list[SweepRun]
    summary: SweepSummary


class SweepsPublic(BaseModel):
    data: list[SweepPublic]
    count: int


def sweep_status(counts: Mapping[str, int]) -> SweepStatus:
    total = sum(counts.values())
    done = sum(n for s, n in counts.items() if RunStatus(s).terminal)
    if done == total:
        return "finished"
    return "queued" if counts.get(RunStatus.queued.value, 0) == total else "running"


def tidy_rows(sweep: SweepDetail) -> list[dict[str, Any]]:
    """One row per (run, level) of the final test figures: sweep, run, group, label, each grid value,
    seed, status, level, heldout, accuracy, reward_mean. A run without figures yet is one row with
    level None."""
    heldout = {lv.key for lv in sweep.summary.levels if lv.heldout}
    groups = {g.index: g for g in sweep.summary.groups}
    rows = []
    for run in sweep.runs:
        group = groups.get(run.group)
        base = {"sweep_id": sweep.id, "run_id": run.id, "group": run.group, "label": group.label if group else None,
                **(group.point if group else {}), "seed": run.seed, "status": run.status.value}
        results = run.results or {}
        for key in sorted(results, key=_level_order) or [None]:
            figures = results.get(key, {}) if key else {}
            rows.append({**base, "level": key, "heldout": key in heldout,
                         "accuracy": figures.get("accuracy"), "reward_mean": figures.get("reward_mean")})
    return rows
