"""Plotly figures from the server's columnar series (pure functions: no Streamlit, no HTTP).

Every figure plots fields exactly as the scheduler reported them (DESIGN.md section 3):
nothing is recomputed here. ``labels`` names the scheduler levels in the series' order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from dashboard import series as S
from dashboard.text import plotly as esc

HELDOUT_COLOR = "#d62728"
RUN_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
              "#17becf")
TEMPLATE = "plotly_white"


def level_colors(k: int) -> list[str]:
    """Easy levels dark, hard levels light (Viridis, stopping short of the unreadable yellow)."""
    if k <= 1:
        return sample_colorscale("Viridis", [0.0])
    return sample_colorscale("Viridis", [0.85 * i / (k - 1) for i in range(k)])


def _layout(fig: go.Figure, title: str, height: int = 380, hovermode: str = "x unified") -> go.Figure:
    fig.update_layout(
        title={"text": esc(title), "x": 0.0, "xanchor": "left"},
        template=TEMPLATE,
        height=height,
        margin={"l": 50, "r": 20, "t": 50, "b": 50},
        # Below the plot and its axis title: above it, a long legend wraps into the title.
        legend={"orientation": "h", "yanchor": "top", "y": -0.2, "xanchor": "left", "x": 0.0},
        hovermode=hovermode,
    )
    return fig


def _empty(title: str, message: str = "No data yet", height: int = 300) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=esc(message), showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font={"size": 14, "color": "#888"})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title, height=height)


# -- one run ---------------------------------------------------------------------------------


def probability_area(series: dict, labels: Sequence[str], title: str = "Task probabilities per level") -> go.Figure:
    """Stacked area of each level's sampling probability over steps."""
    if not series["steps"]:
        return _empty(title)
    fig = go.Figure()
    colors = level_colors(len(series["levels"]))
    for lv, label, color in zip(series["levels"], labels, colors, strict=False):
        fig.add_trace(go.Scatter(
            x=series["steps"], y=_v(lv["probability"]), name=esc(label), mode="lines", stackgroup="p",
            line={"width": 0.5, "color": color}, fillcolor=color,
            hovertemplate="%{y:.3f}",
        ))
    fig.update_yaxes(range=[0, 1], title="probability")
    fig.update_xaxes(title="step")
    return _layout(fig, title)


def probability_heatmap(series: dict, labels: Sequence[str], title: str = "Task probabilities (heatmap)") -> go.Figure:
    if not series["steps"]:
        return _empty(title)
    z = [_v(lv["probability"]) for lv in series["levels"]]
    top = max((v for row in z for v in row if v is not None), default=1.0)
    fig = go.Figure(go.Heatmap(
        x=series["steps"], y=[esc(label) for label in labels], z=z, colorscale="Viridis", zmin=0, zmax=top, zauto=False,
        colorbar={"title": "p", "thickness": 12},
        hovertemplate="step %{x}<br>%{y}<br>p = %{z:.3f}<extra></extra>",
    ))
    fig.update_xaxes(title="step")
    return _layout(fig, title, hovermode="closest")


def level_lines(series: dict, labels: Sequence[str], field: str, title: str, yaxis: str) -> go.Figure:
    """One line per level of ``field`` (reward_mean, reward_var, count) over steps."""
    if not series["steps"]:
        return _empty(title)
    fig = go.Figure()
    for lv, label, color in zip(series["levels"], labels, level_colors(len(series["levels"])), strict=False):
        fig.add_trace(go.Scatter(x=series["steps"], y=_v(lv[field]), name=esc(label), mode="lines",
                                 line={"color": color}, connectgaps=False, hovertemplate="%{y:.4g}"))
    fig.update_xaxes(title="step")
    fig.update_yaxes(title=yaxis)
    return _layout(fig, title)


def breakdown_bars(series: dict, labels: Sequence[str], index: int, title: str | None = None) -> go.Figure:
    """The scheduler's components per level at one step: normalised bars (raw on hover), score line."""
    step = series["steps"][index] if series["steps"] else None
    title = title or f"Score breakdown per level at step {step}"
    names = S.component_names(series)
    combined = S.combined_names(series)
    if not names and not combined:
        return _empty(title, "This scheduler reports no components")
    fig = go.Figure()
    palette = RUN_COLORS
    ticks = [esc(label) for label in labels]
    for j, name in enumerate(names):
        values = [_at(lv["components"].get(name), index) for lv in series["levels"]]
        raw = [_at(lv["components"].get(name + S.RAW_SUFFIX), index) for lv in series["levels"]]
        has_raw = any(r is not None for r in raw)
        fig.add_trace(go.Bar(
            x=ticks, y=values, name=esc(name), marker_color=palette[j % len(palette)],
            customdata=[[esc(_fmt(r))] for r in raw],
            hovertemplate=f"{esc(name)}: %{{y:.4f}}" + (" (raw %{customdata[0]})" if has_raw else "")
            + "<extra></extra>",
        ))
    shown = "score" if "score" in combined else (combined[0] if combined else None)
    if shown:
        fig.add_trace(go.Scatter(
            x=ticks, y=[_at(lv["components"].get(shown), index) for lv in series["levels"]],
            name=esc(shown), mode="lines+markers", line={"color": "black", "width": 2}, marker={"size": 9},
            hovertemplate=f"{esc(shown)}: %{{y:.4f}}<extra></extra>",
        ))
    fig.add_trace(go.Scatter(
        x=ticks, y=[_at(lv["probability"], index) for lv in series["levels"]], name="probability",
        mode="markers", marker={"symbol": "diamond", "size": 11, "color": HELDOUT_COLOR},
        hovertemplate="probability: %{y:.4f}<extra></extra>",
    ))
    fig.update_layout(barmode="group")
    fig.update_yaxes(title="share across levels")
    return _layout(fig, title, height=400, hovermode="x unified")


def component_evolution(series: dict, labels: Sequence[str], title: str = "Components over steps") -> go.Figure:
    """Small multiples: one panel per component (and the combined score), one line per level."""
    names = S.component_names(series) + S.combined_names(series)
    if not names or not series["steps"]:
        return _empty(title, "This scheduler reports no components")
    cols = min(4, len(names))  # drawn full width: 4 panels a row keep each readable
    rows = math.ceil(len(names) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[esc(n) for n in names], shared_xaxes=True,
                        vertical_spacing=0.16 if rows > 1 else 0.1, horizontal_spacing=0.05)
    colors = level_colors(len(series["levels"]))
    for n, name in enumerate(names):
        row, col = n // cols + 1, n % cols + 1
        for lv, label, color in zip(series["levels"], labels, colors, strict=False):
            # Raw values are on the breakdown's hover; here they would double what each poll sends.
            fig.add_trace(go.Scatter(
                x=series["steps"], y=_v(lv["components"].get(name)), name=esc(label), legendgroup=esc(label),
                showlegend=n == 0, mode="lines", line={"color": color, "width": 1.5},
                hovertemplate=f"{esc(label)} {esc(name)}: %{{y:.4f}}<extra></extra>",
            ), row=row, col=col)
    return _layout(fig, title, height=230 * rows + 100, hovermode="closest")


def metrics_figure(series: dict, names: Sequence[str], title: str = "Training metrics") -> go.Figure:
    """One panel per metric (loss, kl, reward, ...), sharing the step axis."""
    names = [n for n in names if n in series["metrics"]]
    if not names or not series["steps"]:
        return _empty(title, "No training metrics yet")
    fig = make_subplots(rows=len(names), cols=1, shared_xaxes=True, subplot_titles=[esc(n) for n in names],
                        vertical_spacing=0.08)
    for i, name in enumerate(names):
        fig.add_trace(go.Scatter(x=series["steps"], y=_v(series["metrics"][name]), name=esc(name), mode="lines",
                                 line={"color": RUN_COLORS[i % len(RUN_COLORS)]}, showlegend=False,
                                 hovertemplate=f"{esc(name)}: %{{y:.4g}}<extra></extra>"), row=i + 1, col=1)
    fig.update_xaxes(title="step", row=len(names), col=1)
    return _layout(fig, title, height=170 * len(names) + 80, hovermode="closest")


def eval_accuracy(evals: list[dict], heldout: Sequence[int], title: str = "Evaluation accuracy per level",
                  max_steps: int | None = None) -> go.Figure:
    """Accuracy per level over steps, the final test (a star) ending each level's line; held-out
    levels dashed red and named so. The x-axis spans the run (``max_steps``), so a single
    evaluation is a point at its step, not the middle of a 2-step-wide axis."""
    per_level = S.eval_accuracy_with_test(evals)
    if not per_level:
        return _empty(title, "No evaluations yet")
    fig = go.Figure()
    trained = [lv for lv in per_level if lv not in heldout]
    colors = dict(zip(trained, level_colors(len(trained)), strict=True))
    for level, (steps, values, kinds) in per_level.items():
        held = level in heldout
        fig.add_trace(go.Scatter(
            x=steps, y=values, mode="lines+markers", name=f"level {level}" + (" (held-out)" if held else ""),
            line={"color": HELDOUT_COLOR if held else colors[level], "dash": "dash" if held else "solid",
                  "width": 3 if held else 2},
            marker={"symbol": ["star" if k == "test" else "circle" for k in kinds],
                    "size": [14 if k == "test" else 7 for k in kinds]},
            customdata=kinds, hovertemplate="%{y:.3f} (%{customdata})",
        ))
    last = max(s for steps, _, _ in per_level.values() for s in steps)
    fig.update_yaxes(range=[0, 1.02], title="accuracy")
    fig.update_xaxes(title="step", range=[0, max(max_steps or 0, last) * 1.03 or 1])
    fig = _layout(fig, title)
    if any("test" in kinds for _, _, kinds in per_level.values()):
        fig.add_annotation(text="star: final test", showarrow=False, x=1.0, y=1.08, xref="paper", yref="paper",
                           xanchor="right", font={"size": 11, "color": "#666"})
    return fig


# -- several runs ------------------------------------------------------------------------------


def overlay(items: Sequence[dict[str, Any]], title: str, yaxis: str,
            yrange: Sequence[float] | None = None) -> go.Figure:
    """One line per run: items hold ``label``, ``x`` and ``y``."""
    items = [it for it in items if it.get("x")]
    if not items:
        return _empty(title)
    fig = go.Figure()
    for i, it in enumerate(items):
        fig.add_trace(go.Scatter(x=it["x"], y=_v(it["y"]), name=esc(it["label"]), mode="lines+markers" if len(
            it["x"]) < 30 else "lines", line={"color": RUN_COLORS[i % len(RUN_COLORS)]}, hovertemplate="%{y:.4g}"))
    fig.update_xaxes(title="step")
    fig.update_yaxes(title=yaxis)
    if yrange:
        fig.update_yaxes(range=list(yrange))
    return _layout(fig, title)


def probability_small_multiples(items: Sequence[dict[str, Any]], title: str = "Probability evolution per run",
                                cols: int = 2) -> go.Figure:
    """A stacked-area probability panel per run: items hold ``label``, ``series`` and ``levels``."""
    items = list(items)
    if not items:
        return _empty(title, "Pick runs to compare")
    cols = max(1, min(cols, len(items)))
    rows = math.ceil(len(items) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[esc(it["label"]) for it in items],
                        vertical_spacing=0.18 / rows + 0.04, horizontal_spacing=0.06)
    for n, it in enumerate(items):
        row, col = n // cols + 1, n % cols + 1
        s = it["series"]
        for lv, label, color in zip(s["levels"], it["levels"], level_colors(len(s["levels"])), strict=False):
            fig.add_trace(go.Scatter(
                x=s["steps"], y=_v(lv["probability"]), name=esc(label), legendgroup=esc(label), showlegend=n == 0,
                mode="lines", stackgroup=f"run{n}", line={"width": 0.5, "color": color}, fillcolor=color,
                hovertemplate=f"{esc(label)}: %{{y:.3f}}<extra></extra>",
            ), row=row, col=col)
        fig.update_yaxes(range=[0, 1], row=row, col=col)
    return _layout(fig, title, height=300 * rows + 60, hovermode="closest")


def _v(values: Sequence | None) -> list | None:
    """Values as sent to the browser: 6 significant digits. A display rounding only (a 100,000-step
    run's charts are several MB a poll at full float precision); the data itself is not touched."""
    if values is None:
        return None
    return [v if v is None or not isinstance(v, float) else float(f"{v:.6g}") for v in values]


def _at(values: list | None, index: int) -> Any:
    if not values or index >= len(values) or index < -len(values):
        return None
    return values[index]


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4g}" if isinstance(value, int | float) else str(value)
