"""The Run page's panels: a run's header and its live charts (Streamlit; figures from charts.py)."""

from __future__ import annotations

import json
import shlex

import pandas as pd
import streamlit as st

from dashboard import charts, state
from dashboard import series as S
from e2h.signals import ADVICE, NO_SIGNAL_STEPS, ZERO_STD_METRIC, no_signal_streak

STATUS_COLORS = {"queued": "gray", "running": "blue", "succeeded": "green", "failed": "red", "cancelled": "orange"}
DEFAULT_METRICS = ("loss", "kl", "reward")


def _chart(fig, key: str) -> None:
    st.plotly_chart(fig, key=key, config={"displaylogo": False})


def header(run: dict) -> None:
    """Status, progress and where/when the run ran."""
    config = run.get("config") or {}
    st.badge(run["status"] + (" · cancel requested" if run.get("cancel_requested") and run["status"] == "running"
                              else ""), color=STATUS_COLORS.get(run["status"], "gray"))
    st.progress(S.progress(run), text=f"step {run['step']} / {run['max_steps']}")
    eta = S.format_duration(S.eta_seconds(run))
    facts = [("Task", config.get("task", {}).get("name", "?")),
             ("Scheduler", config.get("scheduler", {}).get("name", "?")),
             ("Model", config.get("model", {}).get("name_or_path", "?")), ("Attempt", run.get("attempt", 1)),
             ("Worker", run.get("worker_id") or "—"), ("ETA", eta or "—")]
    if run.get("tags"):
        facts.append(("Tags", ", ".join(run["tags"])))
    # Model names, worker ids and tags are the submitter's or a worker's: plain text, never Markdown.
    st.text("   ·   ".join(f"{label}: {value}" for label, value in facts))
    times = [f"{label} {S.parse_time(run.get(field)):%Y-%m-%d %H:%M:%S} UTC" for label, field in (
        ("created", "created_at"), ("started", "started_at"), ("finished", "finished_at")) if run.get(field)]
    st.caption(" · ".join(times))
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


def curriculum(run: dict, series: dict, labels: list[str]) -> None:
    rid = run["id"]
    st.subheader("Curriculum")
    if not series["steps"]:
        if run["status"] in ("queued", "running"):
            st.info("No snapshots yet: the charts fill in as soon as the worker reports its first logged step.",
                    icon=":material/hourglass_empty:")
        else:
            st.info(f"This run {run['status']} before it reported a logged step: there is nothing to chart.",
                    icon=":material/block:")
        return
    signal(run, series)
    left, right = st.columns(2)
    with left:
        _chart(charts.probability_area(series, labels), f"prob.area.{rid}")
    with right:
        _chart(charts.probability_heatmap(series, labels), f"prob.heat.{rid}")
    left, right = st.columns(2)
    with left:
        _chart(charts.level_lines(series, labels, "reward_mean", "Mean reward per level", "mean reward"),
               f"reward.mean.{rid}")
    with right:
        _chart(charts.level_lines(series, labels, "reward_var", "Reward variance per level", "variance"),
               f"reward.var.{rid}")


def signal(run: dict, series: dict) -> None:
    """A warning when the run has gone NO_SIGNAL_STEPS steps without a learning signal."""
    streak = no_signal_streak(series["steps"], series["metrics"].get(ZERO_STD_METRIC) or [])
    if streak >= NO_SIGNAL_STEPS:
        st.warning(f"No learning signal for the last {streak} steps: {ADVICE}.", icon=":material/warning:")


def warmup_steps(run: dict) -> int | None:
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


def breakdown(run: dict, series: dict, labels: list[str]) -> None:
    """The adaptive scheduler's score breakdown; nothing for fixed schedules."""
    if not S.has_components(series):
        warmup = warmup_steps(run)
        if warmup and series["steps"] and series["steps"][-1] < warmup:
            st.subheader("Why the scheduler chose this: score breakdown")
            st.info(f"Uniform until step {warmup} (the scheduler's warmup): the breakdown appears once it "
                    f"adapts (now at step {series['steps'][-1]}).", icon=":material/hourglass_empty:")
        return
    rid = run["id"]
    st.subheader("Why the scheduler chose this: score breakdown")
    indices = S.component_steps(series)
    if not indices:
        return
    steps = [series["steps"][i] for i in indices]
    left, right = st.columns([1, 3])
    latest = left.toggle("Follow the latest step", value=True, key=f"bd.latest.{rid}")
    if latest or len(steps) < 2:
        index = indices[-1]
    else:
        picked = right.slider("Step", min_value=steps[0], max_value=steps[-1], value=steps[-1],
                              key=f"bd.step.{rid}")
        index = indices[S.nearest_index(steps, picked)]
    st.caption("Bars: each component normalised to sum 1 across levels (hover for the raw value); "
               "line: the combined score; diamonds: the sampling probability it led to. In the table, "
               "\"(raw)\" is a component before that normalisation, in its own units (the deficit is "
               "1/performance, so it is huge for a level never solved).")
    left, right = st.columns(2)
    with left:
        _chart(charts.breakdown_bars(series, labels, index), f"bd.bars.{rid}")
    with right:
        st.markdown(f"**Values at step {series['steps'][index]}**")
        frame = pd.DataFrame(S.breakdown_rows(series, labels, index))
        if {"score", "pi"} <= set(frame.columns) and (frame["score"] - frame["pi"]).abs().max() < 1e-9:
            frame = frame.drop(columns="pi")  # the same numbers at temperature 1 and weights summing to 1
        st.dataframe(frame, hide_index=True, key=f"bd.table.{rid}", width="stretch",
                     column_config={c: st.column_config.NumberColumn(c, format="%.4g") for c in frame.columns[1:]})
    _chart(charts.component_evolution(series, labels), f"bd.evo.{rid}")


def default_metrics(available: list[str]) -> list[str]:
    return [m for m in DEFAULT_METRICS if m in available] or available[:3]


def metrics_pick(rid: int, series: dict) -> str:
    """The metrics multiselect's key, its value set to the defaults while the researcher has not
    changed them: a page opened before the first snapshot has no metrics to default to yet, and a
    widget keeps the default of its first render."""
    key, shown = f"metrics.pick.{rid}", f"metrics.default.{rid}"
    default = default_metrics(list(series["metrics"]))
    if key not in st.session_state or st.session_state[key] == st.session_state.get(shown):
        st.session_state[key] = default
        st.session_state[shown] = default
    return key


def training(run: dict, series: dict, labels: list[str], evals: list[dict]) -> None:
    rid = run["id"]
    st.subheader("Training and evaluation")
    left, right = st.columns(2)
    with left:
        chosen = st.multiselect("Metrics", list(series["metrics"]), key=metrics_pick(rid, series))
        _chart(charts.metrics_figure(series, chosen), f"chart.metrics.{rid}")
    with right:
        heldout = S.heldout_levels(run)
        _chart(charts.eval_accuracy(evals, heldout, max_steps=run.get("max_steps")), f"evals.{rid}")
        if heldout:
            st.caption(f"Held out (never trained on): {', '.join(f'level {h}' for h in heldout)}, dashed red.")
        test = S.latest_eval(evals, "test")
        if test:
            rows = [{"level": S.test_row_label(k, heldout), **v} for k, v in test["results"].items()
                    if isinstance(v, dict)]
            st.markdown(f"**Final test results** (step {test['step']})")
            st.dataframe(pd.DataFrame(rows), hide_index=True, key=f"test.{rid}", width="stretch")
            wanted = ((run.get("config") or {}).get("task") or {}).get("test_size_per_level")
            few = S.few_questions(test, wanted)
            if few:
                st.warning("Too few distinct test questions: " + "; ".join(
                    f"{level}: {n} (asked for {wanted})" for level, n in few)
                    + ". Their accuracy moves in steps of 1/n; the task has no more for these levels.",
                    icon=":material/warning:")


def details(run: dict, series: dict, labels: list[str], logs: list[str]) -> None:
    left, right = st.columns(2)
    with left:
        _chart(charts.level_lines(series, labels, "count", "Samples per level (cumulative)", "samples"),
               f"counts.{run['id']}")
    with right:
        st.markdown("**Last log lines** (newest first)")
        readable = S.readable_log(logs)
        if readable:
            st.code("\n".join(reversed(readable)), language=None, height=330)
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


def render_live(run_id: int) -> dict:
    """Everything that changes while the run trains; returns the run as just fetched."""
    url = state.server_url()
    with state.server_errors(retry=False):
        run = state.run(run_id)
        series = state.live_series(run_id)
        evals = state.evals(url, run_id)
        logs = state.live_logs(run_id)
    labels = S.level_labels(run, series)
    header(run)
    curriculum(run, series, labels)
    breakdown(run, series, labels)
    training(run, series, labels, evals)
    details(run, series, labels, logs)
    return run
