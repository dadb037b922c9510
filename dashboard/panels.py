"""The Run page's panels: each renders a part of one ``dashboard.derived.RunView`` (Streamlit;
figures from charts.py). Nothing is derived here: what a panel shows is a field of the view."""

from __future__ import annotations

import json
import shlex
from urllib.parse import urlencode

import streamlit as st

from dashboard import charts, state
from dashboard.derived import RunView
from e2h.schemas import LEVEL_SERIES
from e2h.signals import ADVICE

STATUS_COLORS = {"queued": "gray", "running": "blue", "succeeded": "green", "failed": "red", "cancelled": "orange"}


def _chart(fig, key: str) -> None:
    st.plotly_chart(fig, key=key, config={"displaylogo": False})


def header(view: RunView) -> None:
    """Status, progress and where/when the run ran."""
    run = view.run
    st.badge(run["status"] + (" · cancel requested" if run.get("cancel_requested") and run["status"] == "running"
                              else ""), color=STATUS_COLORS.get(run["status"], "gray"))
    st.progress(view.progress, text=f"step {run['step']} / {run['max_steps']}")
    # Model names, worker ids and tags are the submitter's or a worker's: plain text, never Markdown.
    st.text("   ·   ".join(f"{label}: {value}" for label, value in view.facts))
    st.caption(" · ".join(view.times))
    if run["status"] == "failed" and run.get("error"):
        st.error("The run failed:", icon=":material/error:")
        st.code(run["error"], language=None, wrap_lines=True)
    placement(run)


def placement(run: dict) -> None:
    """Where the worker placed the run: its launch plan's processes (e2h.schemas.RunReport.processes)."""
    processes = (run.get("report") or {}).get("processes")
    if not processes:
        return
    with st.expander("Placement: " + ", ".join(_devices(p) for p in processes), icon=":material/memory:"):
        for p in processes:
            st.text(_devices(p) + "".join(f" · {k}={v}" for k, v in sorted(p["env"].items())))
            st.code(shlex.join(p["command"]), language="bash", wrap_lines=True)


def _devices(process: dict) -> str:
    gpus = process["env"].get("CUDA_VISIBLE_DEVICES")
    return f"{process['role']} on GPU {gpus}" if gpus else f"{process['role']} on CPU"


def curriculum(view: RunView) -> None:
    run, rid = view.run, view.run["id"]
    st.subheader("Curriculum")
    if not view.steps:
        if run["status"] in ("queued", "running"):
            st.info("No snapshots yet: the charts fill in as soon as the worker reports its first logged step.",
                    icon=":material/hourglass_empty:")
        else:
            st.info(f"This run {run['status']} before it reported a logged step: there is nothing to chart.",
                    icon=":material/block:")
        return
    signal(view)
    left, right = st.columns(2)
    with left:
        _chart(charts.probability_area(view.probability), f"prob.area.{rid}")
    with right:
        _chart(charts.probability_heatmap(view.probability), f"prob.heat.{rid}")
    left, right = st.columns(2)
    with left:
        _chart(charts.level_lines(view.reward_mean, "Mean reward per level", "mean reward"), f"reward.mean.{rid}")
    with right:
        _chart(charts.level_lines(view.reward_var, "Reward variance per level", "variance"), f"reward.var.{rid}")


def signal(view: RunView) -> None:
    """A warning when the run has gone NO_SIGNAL_STEPS steps without a learning signal."""
    if view.no_signal_streak is not None:
        st.warning(f"No learning signal for the last {view.no_signal_streak} steps: {ADVICE}.",
                   icon=":material/warning:")


def breakdown(view: RunView) -> None:
    """The adaptive scheduler's score breakdown; nothing for fixed schedules."""
    if not view.has_breakdown:
        if view.warmup_until is not None:
            st.subheader("Why the scheduler chose this: score breakdown")
            st.info(f"Uniform until step {view.warmup_until} (the scheduler's warmup): the breakdown appears once "
                    f"it adapts (now at step {view.steps[-1]}).", icon=":material/hourglass_empty:")
        return
    rid = view.run["id"]
    st.subheader("Why the scheduler chose this: score breakdown")
    steps = view.breakdown_steps
    if not steps:
        return
    left, right = st.columns([1, 3])
    latest = left.toggle("Follow the latest step", value=True, key=f"bd.latest.{rid}")
    if latest or len(steps) < 2:
        step = view.breakdown_step()
    else:
        step = view.breakdown_step(right.slider("Step", min_value=steps[0], max_value=steps[-1], value=steps[-1],
                                                key=f"bd.step.{rid}"))
    st.caption("Bars: each component normalised to sum 1 across levels (hover for the raw value); "
               "line: the combined score; diamonds: the sampling probability it led to. In the table, "
               "\"(raw)\" is a component before that normalisation, in its own units (the deficit is "
               "1/performance, so it is huge for a level never solved).")
    table = view.breakdown(step)
    left, right = st.columns(2)
    with left:
        _chart(charts.breakdown_bars(table, view.component_names, view.combined_names, step), f"bd.bars.{rid}")
    with right:
        st.markdown(f"**Values at step {step}**")
        st.dataframe(table, hide_index=True, key=f"bd.table.{rid}", width="stretch",
                     column_config={c: st.column_config.NumberColumn(c, format="%.4g") for c in table.columns[1:]})
    _chart(charts.component_evolution(view.components), f"bd.evo.{rid}")


def metrics_pick(view: RunView) -> str:
    """The metrics multiselect's key, its value set to the defaults while the researcher has not
    changed them: a page opened before the first snapshot has no metrics to default to yet, and a
    widget keeps the default of its first render."""
    rid = view.run["id"]
    key, shown = f"metrics.pick.{rid}", f"metrics.default.{rid}"
    default = list(view.default_metrics)
    if key not in st.session_state or st.session_state[key] == st.session_state.get(shown):
        st.session_state[key] = default
        st.session_state[shown] = default
    return key


def training(view: RunView) -> None:
    run, rid = view.run, view.run["id"]
    st.subheader("Training and evaluation")
    left, right = st.columns(2)
    with left:
        chosen = st.multiselect("Metrics", list(view.metrics.columns), key=metrics_pick(view))
        _chart(charts.metrics_figure(view.metrics[[m for m in chosen if m in view.metrics.columns]]),
               f"chart.metrics.{rid}")
    with right:
        _chart(charts.eval_accuracy(view.accuracy, view.heldout, max_steps=run.get("max_steps")), f"evals.{rid}")
        if view.heldout:
            st.caption(f"Held out (never trained on): {', '.join(f'level {h}' for h in view.heldout)}, dashed red.")
        if view.test:
            st.markdown(f"**Final test results** (step {view.test['step']})")
            st.dataframe(view.test_table, hide_index=True, key=f"test.{rid}", width="stretch")
            if view.few_questions:
                st.warning("Too few distinct test questions: " + "; ".join(
                    f"{level}: {n} (asked for {view.test_size})" for level, n in view.few_questions)
                    + ". Their accuracy moves in steps of 1/n; the task has no more for these levels.",
                    icon=":material/warning:")


def details(view: RunView) -> None:
    run, logs = view.run, view.logs
    left, right = st.columns(2)
    with left:
        _chart(charts.level_lines(view.count, "Samples per level (cumulative)", "samples"), f"counts.{run['id']}")
    with right:
        st.markdown("**Last log lines** (newest first)")
        if view.readable_log:
            st.code("\n".join(reversed(view.readable_log)), language=None, height=330)
        else:
            st.caption("No log lines yet." if not logs else "Only warnings and progress bars so far.")
        if logs:
            with st.expander(f"Raw log (last {len(logs)} lines)", expanded=False):
                st.code("\n".join(logs), language=None, height=330)
    with st.expander("Config", expanded=False):
        st.code(json.dumps(run.get("config") or {}, indent=2), language="json")
    if run.get("snapshot_count"):
        # Streamed by the server straight to the browser (every stored step, one JSON line each).
        st.link_button(f"Download the full history ({run['snapshot_count']:,} steps, NDJSON)",
                       f"{state.server_url()}/runs/{run['id']}/snapshots.ndjson", icon=":material/download:")
        # One series of it as CSV (a column per level, or the metric): far smaller and faster.
        names = [*LEVEL_SERIES, *(f"metrics.{m}" for m in sorted(run.get("metrics") or {}))]
        pick, link = st.columns([2, 3], vertical_alignment="bottom")
        series = pick.selectbox("One series as CSV", names, key=f"series_csv_{run['id']}")
        link.link_button(f"Download {series} (CSV)", f"{state.server_url()}/runs/{run['id']}/snapshots.csv?"
                         + urlencode({"series": series}), icon=":material/download:")


def render(view: RunView) -> None:
    """Everything that changes while the run trains, from one view."""
    header(view)
    curriculum(view)
    breakdown(view)
    training(view)
    details(view)
