"""Series reshaping, the run page's derived view and the Plotly figures drawn from its frames,
without Streamlit or a server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import plotly.graph_objects as go
import pytest

from dashboard import charts, derived
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
    assert not derived.derive(RUN, cosine, [], []).has_breakdown
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
    fig = charts.eval_accuracy(derived.accuracy_frame(evals), heldout=[6])
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
    view = derived.derive(RUN, vrex, [], [])
    labels = S.level_labels(RUN, vrex)
    area = charts.probability_area(view.probability)
    assert [t.name for t in area.data] == labels and all(t.stackgroup for t in area.data)
    assert list(area.data[0].x) == vrex["steps"]
    assert list(area.data[1].y) == [float(f"{v:.6g}") for v in vrex["levels"][1]["probability"]]
    heat = charts.probability_heatmap(view.probability)
    assert isinstance(heat.data[0], go.Heatmap) and len(heat.data[0].z) == 4 and list(heat.data[0].y) == labels
    step = view.breakdown_step()
    index = vrex["steps"].index(step)
    bars = charts.breakdown_bars(view.breakdown(step), view.component_names, view.combined_names, step)
    assert bars.layout.title.text == f"Score breakdown per level at step {step}"
    bar_names = [t.name for t in bars.data if isinstance(t, go.Bar)]
    assert bar_names == ["deficit", "variance", "exploration", "groupdro", "vrex"]
    deficit = bars.data[0]
    assert list(deficit.y) == [lv["components"]["deficit"][index] for lv in vrex["levels"]]
    # Raw values ride along for the hover.
    assert deficit.customdata[0][0] == f"{vrex['levels'][0]['components']['deficit_raw'][index]:.4g}"
    assert "score" in [t.name for t in bars.data]
    evo = charts.component_evolution(view.components)
    assert {a.text for a in evo.layout.annotations} >= {"deficit", "vrex", "score"}
    metrics = charts.metrics_figure(view.metrics[["loss", "kl", "reward"]])
    assert [t.name for t in metrics.data] == ["loss", "kl", "reward"]
    for frame in (view.reward_mean, view.reward_var, view.count):
        assert len(charts.level_lines(frame, "t", "y").data) == 4
    counts = charts.level_lines(view.count, "t", "y").data[2]
    assert list(counts.y) == vrex["levels"][2]["count"] and all(isinstance(c, int) for c in counts.y)


def test_figures_from_a_fixed_schedule_and_empty_series(cosine: dict) -> None:
    view = derived.derive(RUN, cosine, [], [])
    assert len(charts.probability_area(view.probability).data) == 4
    assert charts.breakdown_bars(view.breakdown(cosine["steps"][0]), view.component_names, view.combined_names,
                                 0).layout.annotations[0].text.startswith("This scheduler")
    assert charts.component_evolution(view.components).layout.annotations[0].text.startswith("This scheduler")
    empty = derived.derive(RUN, S.empty(), [], [])
    for fig in (charts.probability_area(empty.probability), charts.probability_heatmap(empty.probability),
                charts.metrics_figure(empty.metrics), charts.eval_accuracy(empty.accuracy, [])):
        assert fig.layout.annotations and not fig.data
    labels = ["a", "b", "c", "d"]
    frame = derived.level_frame(cosine, labels, "probability")
    multiples = charts.probability_small_multiples([{"label": "one", "frame": frame}, {"label": "two", "frame": frame}])
    assert len(multiples.data) == 8 and [t.name for t in multiples.data[:4]] == labels
    overlay = charts.overlay([{"label": "x", "x": [1, 2], "y": [0.1, 0.2]}, {"label": "y", "x": [], "y": []}],
                             "t", "y")
    assert [t.name for t in overlay.data] == ["x"]


def test_breakdown_table_holds_normalised_and_raw_values(vrex: dict) -> None:
    view = derived.derive({**RUN, "config": {}}, vrex, [], [])  # no task levels: labels 0..K-1
    step = view.breakdown_step()
    index = vrex["steps"].index(step)
    rows = view.breakdown(step).to_dict("records")
    assert [r["level"] for r in rows] == ["level 0", "level 1", "level 2", "level 3"]
    first = vrex["levels"][0]
    assert rows[0]["probability"] == first["probability"][index]
    assert rows[0]["deficit"] == first["components"]["deficit"][index]
    assert rows[0]["deficit (raw)"] == first["components"]["deficit_raw"][index]
    assert list(rows[0])[:3] == ["level", "probability", "score"]  # pi equals the score here: dropped
    assert sum(r["variance"] for r in rows) == pytest.approx(1.0)
