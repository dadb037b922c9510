"""Series reshaping and Plotly figures, without Streamlit or a server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import plotly.graph_objects as go
import pytest

from dashboard import charts
from dashboard import series as S
from tests.dashboard.simulate import Simulation


def as_series(snaps: list[dict]) -> dict:
    """The server's columnar shape, built the way GET /runs/{id}/snapshots builds it."""
    levels = sorted({lv["level"] for s in snaps for lv in s["levels"]})
    out = {"steps": [s["step"] for s in snaps], "time": [s.get("time") for s in snaps], "total": len(snaps),
           "metrics": {}, "levels": []}
    for name in sorted({m for s in snaps for m in s["metrics"]}):
        out["metrics"][name] = [s["metrics"].get(name) for s in snaps]
    for level in levels:
        rows = [next(lv for lv in s["levels"] if lv["level"] == level) for s in snaps]
        names = sorted({c for r in rows for c in (r["components"] or {})})
        out["levels"].append({
            "level": level, **{f: [r.get(f) for r in rows] for f in S.LEVEL_FIELDS},
            "components": {c: [(r["components"] or {}).get(c) for r in rows] for c in names},
        })
    return out


@pytest.fixture(scope="module")
def vrex() -> dict:
    sim = Simulation("variance_regularized", 4, 100, {"warmup_steps": 10, "update_interval": 2})
    return as_series(sim.advance(40))


@pytest.fixture(scope="module")
def cosine() -> dict:
    return as_series(Simulation("cosine", 4, 100).advance(30))


RUN = {"id": 7, "num_levels": 4, "config": {"task": {"train_levels": [2, 3, 4, 5], "test_levels": [2, 3, 4, 5, 6]}}}


def test_merge_appends_later_steps_and_pads_new_components(vrex: dict) -> None:
    first = S.merge(S.empty(), as_series_slice(vrex, 0, 5))
    assert first["steps"] == vrex["steps"][:5]
    assert S.component_names(first) == []  # still warming up: no components yet
    merged = S.merge(first, as_series_slice(vrex, 3, 40))  # overlapping steps are dropped
    assert merged["steps"] == vrex["steps"]
    for old, new in zip(merged["levels"], vrex["levels"], strict=True):
        assert old["probability"] == new["probability"]
        assert old["components"]["deficit"] == new["components"]["deficit"]
    assert merged["metrics"]["loss"] == vrex["metrics"]["loss"]
    assert S.last_step(merged) == 40


def as_series_slice(series: dict, start: int, stop: int) -> dict:
    """Steps [start, stop) of a series, dropping components that are null throughout (as the server does)."""
    def cut(values: list) -> list:
        return values[start:stop]

    levels = []
    for lv in series["levels"]:
        comps = {c: cut(v) for c, v in lv["components"].items() if any(x is not None for x in cut(v))}
        levels.append({"level": lv["level"], **{f: cut(lv[f]) for f in S.LEVEL_FIELDS}, "components": comps})
    return {"steps": cut(series["steps"]), "time": cut(series["time"]), "total": stop - start,
            "metrics": {m: cut(v) for m, v in series["metrics"].items()}, "levels": levels}


def test_components_of_adaptive_and_fixed_schedulers(vrex: dict, cosine: dict) -> None:
    assert S.component_names(vrex) == ["deficit", "variance", "exploration", "groupdro", "vrex"]
    assert S.combined_names(vrex) == ["score", "pi"]
    assert S.component_steps(vrex)[0] == 9  # step 10: the first update after warmup
    assert not S.has_components(cosine)
    sec = as_series(Simulation("sec", 3, 50).advance(5))
    assert S.component_names(sec)[:2] == ["learning_progress", "q_value"]
    assert "pi" in S.combined_names(sec)


def test_levels_and_labels_follow_the_task() -> None:
    assert S.train_levels(RUN) == [2, 3, 4, 5]
    assert S.heldout_levels(RUN) == [6]
    assert S.level_labels(RUN) == ["level 2", "level 3", "level 4", "level 5"]
    assert S.train_levels({"num_levels": 3, "config": {}}) == [0, 1, 2]


def test_eval_accuracy_per_level_sorted_by_step() -> None:
    evals = [
        {"step": 100, "name": "eval", "results": {"level_2": {"accuracy": 0.5}, "level_6": {"accuracy": 0.1},
                                                  "overall": {"accuracy": 0.3}}},
        {"step": 50, "name": "eval", "results": {"level_2": {"accuracy": 0.25}, "level_6": {"accuracy": 0.0}}},
        {"step": 100, "name": "test", "results": {"level_2": {"accuracy": 0.9}}},
    ]
    assert S.eval_accuracy(evals) == {2: ([50, 100], [0.25, 0.5]), 6: ([50, 100], [0.0, 0.1])}
    assert S.latest_eval(evals, "test")["results"]["level_2"]["accuracy"] == 0.9
    fig = charts.eval_accuracy(evals, heldout=[6])
    held = next(t for t in fig.data if "held-out" in t.name)
    assert held.name == "level 6 (held-out)" and held.line.dash == "dash"


def test_eta_and_run_row() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    run = {"id": 1, "name": "r", "status": "running", "step": 25, "max_steps": 100, "attempt": 1,
           "started_at": (now - timedelta(seconds=50)).isoformat().replace("+00:00", "Z"),
           "created_at": "2026-01-01T11:00:00Z", "config": {"task": {"name": "arithmetic"}}, "tags": ["a", "b"]}
    assert S.eta_seconds(run, now) == pytest.approx(150)
    row = S.run_row(run, now)
    assert row["progress"] == 0.25 and row["eta"] == "2 min 30 s" and row["tags"] == "a, b"
    assert S.eta_seconds({**run, "status": "succeeded"}, now) is None
    assert S.format_duration(3 * 3600 + 60) == "3 h 01 min"


def test_figures_from_an_adaptive_run(vrex: dict) -> None:
    labels = S.level_labels(RUN, vrex)
    area = charts.probability_area(vrex, labels)
    assert [t.name for t in area.data] == labels and all(t.stackgroup for t in area.data)
    assert list(area.data[0].x) == vrex["steps"]
    heat = charts.probability_heatmap(vrex, labels)
    assert isinstance(heat.data[0], go.Heatmap) and len(heat.data[0].z) == 4
    index = S.component_steps(vrex)[-1]
    bars = charts.breakdown_bars(vrex, labels, index)
    bar_names = [t.name for t in bars.data if isinstance(t, go.Bar)]
    assert bar_names == ["deficit", "variance", "exploration", "groupdro", "vrex"]
    deficit = bars.data[0]
    assert list(deficit.y) == [lv["components"]["deficit"][index] for lv in vrex["levels"]]
    # Raw values ride along for the hover.
    assert deficit.customdata[0][0] == f"{vrex['levels'][0]['components']['deficit_raw'][index]:.4g}"
    assert "score" in [t.name for t in bars.data]
    evo = charts.component_evolution(vrex, labels)
    assert {a.text for a in evo.layout.annotations} >= {"deficit", "vrex", "score"}
    metrics = charts.metrics_figure(vrex, ["loss", "kl", "reward", "missing"])
    assert [t.name for t in metrics.data] == ["loss", "kl", "reward"]
    for field in ("reward_mean", "reward_var", "count"):
        assert len(charts.level_lines(vrex, labels, field, field, field).data) == 4


def test_figures_from_a_fixed_schedule_and_empty_series(cosine: dict) -> None:
    labels = ["a", "b", "c", "d"]
    assert len(charts.probability_area(cosine, labels).data) == 4
    assert charts.breakdown_bars(cosine, labels, 0).layout.annotations[0].text.startswith("This scheduler")
    empty = S.empty()
    for fig in (charts.probability_area(empty, []), charts.probability_heatmap(empty, []),
                charts.metrics_figure(empty, ["loss"]), charts.eval_accuracy([], [])):
        assert fig.layout.annotations and not fig.data
    multiples = charts.probability_small_multiples([
        {"label": "one", "series": cosine, "levels": labels}, {"label": "two", "series": cosine, "levels": labels}])
    assert len(multiples.data) == 8
    overlay = charts.overlay([{"label": "x", "x": [1, 2], "y": [0.1, 0.2]}, {"label": "y", "x": [], "y": []}],
                             "t", "y")
    assert [t.name for t in overlay.data] == ["x"]


def test_breakdown_rows_hold_normalised_and_raw_values(vrex: dict) -> None:
    index = S.component_steps(vrex)[-1]
    rows = S.breakdown_rows(vrex, ["a", "b", "c", "d"], index)
    assert [r["level"] for r in rows] == ["a", "b", "c", "d"]
    first = vrex["levels"][0]
    assert rows[0]["probability"] == first["probability"][index]
    assert rows[0]["deficit"] == first["components"]["deficit"][index]
    assert rows[0]["deficit (raw)"] == first["components"]["deficit_raw"][index]
    assert list(rows[0])[:4] == ["level", "probability", "score", "pi"]
    assert sum(r["variance"] for r in rows) == pytest.approx(1.0)
