"""What the Experiments page shows of a sweep (pure functions: no Streamlit, no HTTP).

Curves averaged over seeds: each run's points are put in step bins (the runs of a group share
their steps, so a bin holds one point per run), then the runs' values in a bin give the mean
and its 95% t interval (:mod:`e2h.stats`, the same intervals as the server's summary).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from dashboard.charts import RUN_COLORS, _empty, _layout
from dashboard.text import plotly as esc
from e2h.stats import mean_ci

BINS = 60


def seed_bands(curves: Sequence[dict[str, Any]], bins: int = BINS) -> list[dict[str, Any]]:
    """``curves``: {group, label, x, y} per run -> per group {label, x, mean, lo, hi, n} over its runs."""
    top = max((x for c in curves for x, y in zip(c["x"], c["y"], strict=True) if y is not None), default=0)
    width = max(1, math.ceil((top + 1) / bins))
    groups: dict[int, dict[str, Any]] = {}
    for c in curves:
        per_bin: dict[int, list[float]] = {}
        for x, y in zip(c["x"], c["y"], strict=True):
            if y is not None:
                per_bin.setdefault(x // width, []).append(float(y))
        g = groups.setdefault(c["group"], {"label": c["label"], "bins": {}})
        for b, ys in per_bin.items():
            g["bins"].setdefault(b, []).append(sum(ys) / len(ys))
    out = []
    for group in sorted(groups):
        g = groups[group]
        xs, mean, lo, hi, n = [], [], [], [], []
        for b in sorted(g["bins"]):
            e = mean_ci(g["bins"][b])
            xs.append(min(top, (b + 1) * width - 1))
            mean.append(e.mean)
            lo.append(e.ci_low if e.ci_low is not None else e.mean)
            hi.append(e.ci_high if e.ci_high is not None else e.mean)
            n.append(e.n)
        out.append({"group": group, "label": g["label"], "x": xs, "mean": mean, "lo": lo, "hi": hi, "n": n})
    return out


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def band_figure(bands: Sequence[dict[str, Any]], title: str, yaxis: str,
                yrange: tuple[float, float] | None = None) -> go.Figure:
    """Each group's mean over seeds as a line, its 95% interval as a shaded band."""
    if not any(b["x"] for b in bands):
        return _empty(title)
    fig = go.Figure()
    for i, b in enumerate(bands):
        color = RUN_COLORS[i % len(RUN_COLORS)]
        name = esc(b["label"])
        fig.add_trace(go.Scatter(x=b["x"] + b["x"][::-1], y=b["hi"] + b["lo"][::-1], fill="toself", mode="lines",
                                 fillcolor=_rgba(color, 0.15), line={"width": 0}, hoverinfo="skip",
                                 showlegend=False, legendgroup=name, name=f"{name} 95% CI"))
        fig.add_trace(go.Scatter(x=b["x"], y=b["mean"], mode="lines+markers" if len(b["x"]) < 12 else "lines",
                                 name=name, legendgroup=name, line={"color": color, "width": 2},
                                 customdata=b["n"], hovertemplate="%{y:.3f} (n=%{customdata})"))
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text=esc(yaxis), range=list(yrange) if yrange else None)
    return _layout(fig, title, height=360)


def summary_rows(summary: dict[str, Any], level: str, metric: str) -> list[dict[str, Any]]:
    """The summary table of one level and metric: a row per group."""
    cells = {c["group"]: c for c in summary["cells"] if (c["level"], c["metric"]) == (level, metric)}
    diffs = {d["group"]: d for d in summary["differences"] if (d["level"], d["metric"]) == (level, metric)}
    rows = []
    for g in summary["groups"]:
        c = cells.get(g["index"], {})
        d = diffs.get(g["index"], {})
        rows.append({
            "group": g["label"], "verdict": c.get("verdict") or "", "seeds finished": g["finished"],
            "n": c.get("n", 0), "mean": c.get("mean"), "95% CI low": c.get("ci_low"), "95% CI high": c.get("ci_high"),
            "- baseline": None if g["index"] == summary["baseline"] else d.get("mean"),
            "- baseline CI low": d.get("ci_low"), "- baseline CI high": d.get("ci_high"),
        })
    return rows


def runs_grid(sweep: dict[str, Any]) -> list[dict[str, Any]]:
    """A row per group, a column per seed: each run's id, status and progress."""
    by = {(r["group"], r["seed"]): r for r in sweep["runs"]}
    rows = []
    for g in sweep["summary"]["groups"]:
        row: dict[str, Any] = {"group": g["label"]}
        for seed in sweep["seeds"]:
            r = by.get((g["index"], seed))
            row[f"seed {seed}"] = "-" if r is None else f"#{r['id']} {r['status']} {r['step']}/{r['max_steps']}"
        rows.append(row)
    return rows
