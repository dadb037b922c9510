"""Plotly figures from frames (pure functions: no Streamlit, no HTTP): they only draw.

The frames come from ``dashboard.derived`` (step x level label, in the series' order), with
fields exactly as the scheduler reported them (DESIGN.md section 3): nothing is recomputed here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from dashboard.derived import raw_column
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


def probability_area(frame: pd.DataFrame, title: str = "Task probabilities per level") -> go.Figure:
    """Stacked area of each level's sampling probability over steps."""
    if frame.index.empty:
        return _empty(title)
    fig = go.Figure()
    steps = _x(frame)
    for (label, values), color in zip(frame.items(), level_colors(frame.shape[1]), strict=False):
        fig.add_trace(go.Scatter(
            x=steps, y=_v(values), name=esc(label), mode="lines", stackgroup="p",
            line={"width": 0.5, "color": color}, fillcolor=color,
            hovertemplate="%{y:.3f}",
        ))
    fig.update_yaxes(range=[0, 1], title="probability")
    fig.update_xaxes(title="step")
    return _layout(fig, title)


def probability_heatmap(frame: pd.DataFrame, title: str = "Task probabilities (heatmap)") -> go.Figure:
    if frame.index.empty:
        return _empty(title)
    z = [_v(values) for _, values in frame.items()]
    top = max((v for row in z for v in row if v is not None), default=1.0)
    fig = go.Figure(go.Heatmap(
        x=_x(frame), y=[esc(label) for label in frame.columns], z=z, colorscale="Viridis", zmin=0, zmax=top,
        zauto=False, colorbar={"title": "p", "thickness": 12},
        hovertemplate="step %{x}<br>%{y}<br>p = %{z:.3f}<extra></extra>",
    ))
    fig.update_xaxes(title="step")
    return _layout(fig, title, hovermode="closest")


def level_lines(frame: pd.DataFrame, title: str, yaxis: str) -> go.Figure:
    """One line per level (a frame's column: reward_mean, reward_var, count) over steps."""
    if frame.index.empty:
        return _empty(title)
    fig = go.Figure()
    steps = _x(frame)
    for (label, values), color in zip(frame.items(), level_colors(frame.shape[1]), strict=False):
        fig.add_trace(go.Scatter(x=steps, y=_v(values), name=esc(label), mode="lines",
                                 line={"color": color}, connectgaps=False, hovertemplate="%{y:.4g}"))
    fig.update_xaxes(title="step")
    fig.update_yaxes(title=yaxis)
    return _layout(fig, title)


def breakdown_bars(table: pd.DataFrame, components: Sequence[str], combined: Sequence[str], step: int | None,
                   title: str | None = None) -> go.Figure:
    """The scheduler's components per level at one step (``table``: a row per level, as
    ``RunView.breakdown`` builds it): normalised bars (raw on hover), score line, probability."""
    title = title or f"Score breakdown per level at step {step}"
    if not components and not combined:
        return _empty(title, "This scheduler reports no components")
    fig = go.Figure()
    palette = RUN_COLORS
    ticks = [esc(label) for label in table["level"]]
    for j, name in enumerate(components):
        raw = _column(table, raw_column(name))
        has_raw = any(r is not None for r in raw)
        fig.add_trace(go.Bar(
            x=ticks, y=_column(table, name), name=esc(name), marker_color=palette[j % len(palette)],
            customdata=[[esc(_fmt(r))] for r in raw],
            hovertemplate=f"{esc(name)}: %{{y:.4f}}" + (" (raw %{customdata[0]})" if has_raw else "")
            + "<extra></extra>",
        ))
    shown = "score" if "score" in combined else (combined[0] if combined else None)
    if shown:
        fig.add_trace(go.Scatter(
            x=ticks, y=_column(table, shown),
            name=esc(shown), mode="lines+markers", line={"color": "black", "width": 2}, marker={"size": 9},
            hovertemplate=f"{esc(shown)}: %{{y:.4f}}<extra></extra>",
        ))
    fig.add_trace(go.Scatter(
        x=ticks, y=_column(table, "probability"), name="probability",
        mode="markers", marker={"symbol": "diamond", "size": 11, "color": HELDOUT_COLOR},
        hovertemplate="probability: %{y:.4f}<extra></extra>",
    ))
    fig.update_layout(barmode="group")
    fig.update_yaxes(title="share across levels")
    return _layout(fig, title, height=400, hovermode="x unified")


def component_evolution(components: Mapping[str, pd.DataFrame], title: str = "Components over steps") -> go.Figure:
    """Small multiples: one panel per component (and the combined score), one line per level."""
    names = list(components)
    if not names or next(iter(components.values())).index.empty:
        return _empty(title, "This scheduler reports no components")
    cols = min(4, len(names))  # drawn full width: 4 panels a row keep each readable
    rows = math.ceil(len(names) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[esc(n) for n in names], shared_xaxes=True,
                        vertical_spacing=0.16 if rows > 1 else 0.1, horizontal_spacing=0.05)
    for n, (name, frame) in enumerate(components.items()):
        row, col = n // cols + 1, n % cols + 1
        steps = _x(frame)
        for (label, values), color in zip(frame.items(), level_colors(frame.shape[1]), strict=False):
            # Raw values are on the breakdown's hover; here they would double what each poll sends.
            fig.add_trace(go.Scatter(
                x=steps, y=_v(values), name=esc(label), legendgroup=esc(label),
                showlegend=n == 0, mode="lines", line={"color": color, "width": 1.5},
                hovertemplate=f"{esc(label)} {esc(name)}: %{{y:.4f}}<extra></extra>",
            ), row=row, col=col)
    return _layout(fig, title, height=230 * rows + 100, hovermode="closest")


def metrics_figure(frame: pd.DataFrame, title: str = "Training metrics") -> go.Figure:
    """One panel per metric (a frame's column: loss, kl, reward, ...), sharing the step axis."""
    names = list(frame.columns)
    if not names or frame.index.empty:
        return _empty(title, "No training metrics yet")
    fig = make_subplots(rows=len(names), cols=1, shared_xaxes=True, subplot_titles=[esc(n) for n in names],
                        vertical_spacing=0.08)
    steps = _x(frame)
    for i, (name, values) in enumerate(frame.items()):
        fig.add_trace(go.Scatter(x=steps, y=_v(values), name=esc(name), mode="lines",
                                 line={"color": RUN_COLORS[i % len(RUN_COLORS)]}, showlegend=False,
                                 hovertemplate=f"{esc(name)}: %{{y:.4g}}<extra></extra>"), row=i + 1, col=1)
    fig.update_xaxes(title="step", row=len(names), col=1)
    return _layout(fig, title, height=170 * len(names) + 80, hovermode="closest")


def eval_accuracy(points: pd.DataFrame, heldout: Sequence[int], title: str = "Evaluation accuracy per level",
                  max_steps: int | None = None) -> go.Figure:
    """Accuracy per level over steps (``points``: level, step, accuracy, kind rows, each level's
    final test last), the final test (a star) ending each level's line; held-out levels dashed red
    and named so. The x-axis spans the run (``max_steps``), so a single evaluation is a point at
    its step, not the middle of a 2-step-wide axis."""
    if points.empty:
        return _empty(title, "No evaluations yet")
    fig = go.Figure()
    levels = list(dict.fromkeys(points["level"].tolist()))
    trained = [lv for lv in levels if lv not in heldout]
    colors = dict(zip(trained, level_colors(len(trained)), strict=True))
    for level in levels:
        part = points[points["level"] == level]
        kinds = part["kind"].tolist()
        held = level in heldout
        fig.add_trace(go.Scatter(
            x=part["step"].tolist(), y=part["accuracy"].tolist(), mode="lines+markers",
            name=f"level {level}" + (" (held-out)" if held else ""),
            line={"color": HELDOUT_COLOR if held else colors[level], "dash": "dash" if held else "solid",
                  "width": 3 if held else 2},
            marker={"symbol": ["star" if k == "test" else "circle" for k in kinds],
                    "size": [14 if k == "test" else 7 for k in kinds]},
            customdata=kinds, hovertemplate="%{y:.3f} (%{customdata})",
        ))
    last = int(points["step"].max())
    fig.update_yaxes(range=[0, 1.02], title="accuracy")
    fig.update_xaxes(title="step", range=[0, max(max_steps or 0, last) * 1.03 or 1])
    fig = _layout(fig, title)
    if (points["kind"] == "test").any():
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
    """A stacked-area probability panel per run: items hold ``label`` and ``frame`` (a run's
    probability frame, ``dashboard.derived.level_frame``)."""
    items = list(items)
    if not items:
        return _empty(title, "Pick runs to compare")
    cols = max(1, min(cols, len(items)))
    rows = math.ceil(len(items) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[esc(it["label"]) for it in items],
                        vertical_spacing=0.18 / rows + 0.04, horizontal_spacing=0.06)
    for n, it in enumerate(items):
        row, col = n // cols + 1, n % cols + 1
        frame = it["frame"]
        steps = _x(frame)
        for (label, values), color in zip(frame.items(), level_colors(frame.shape[1]), strict=False):
            fig.add_trace(go.Scatter(
                x=steps, y=_v(values), name=esc(label), legendgroup=esc(label), showlegend=n == 0,
                mode="lines", stackgroup=f"run{n}", line={"width": 0.5, "color": color}, fillcolor=color,
                hovertemplate=f"{esc(label)}: %{{y:.3f}}<extra></extra>",
            ), row=row, col=col)
        fig.update_yaxes(range=[0, 1], row=row, col=col)
    return _layout(fig, title, height=300 * rows + 60, hovermode="closest")


def _x(frame: pd.DataFrame) -> list:
    """A frame's steps as a list (plain numbers in the figure's JSON, not a binary array)."""
    return frame.index.tolist()


def _column(table: pd.DataFrame, name: str) -> list:
    """A column's values as a list, None where missing (or where the column is absent)."""
    if name not in table.columns:
        return [None] * len(table)
    return _plain(table[name])


def _v(values: pd.Series | Sequence | None) -> list | None:
    """Values as sent to the browser: 6 significant digits, None where missing. A display rounding
    only (a 100,000-step run's charts are several MB a poll at full float precision); the data
    itself is not touched."""
    if values is None:
        return None
    items = _plain(values) if isinstance(values, pd.Series) else values
    return [float(f"{v:.6g}") if isinstance(v, float) else v for v in items]


def _plain(column: pd.Series) -> list:
    """A column as Python values, None where missing (NA or NaN)."""
    return column.to_numpy(dtype=object, na_value=None).tolist()


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4g}" if isinstance(value, int | float) else str(value)
