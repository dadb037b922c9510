"""Experiments: launch a sweep (schedulers x other grid values x seeds), watch its runs, curves averaged
over seeds with a 95% band per group, and the server's summary: winner / tied / behind per level."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import series as S
from dashboard import state
from dashboard import sweep_view as V
from dashboard.text import plain
from e2h.client import ValidationFailed
from e2h.sweep_cli import parse_grid, parse_seeds
from e2h.sweeps import SweepDetail, tidy_rows

REFRESH_SECONDS = 5
CURVE_POINTS = 300
HARDEST = "hardest training level"

st.title("Experiments")
st.caption("A sweep runs every combination of the grid's values once per seed; the summary compares the "
           "groups' final test results over seeds (mean, 95% t interval, paired differences to a baseline).")
url = state.server_url()
with state.server_errors():
    schedulers = [s["name"] for s in state.schedulers(url)]
    tasks = [t["name"] for t in state.tasks(url)]


def _errors(e: ValidationFailed) -> list[str]:
    if isinstance(e.detail, list):
        return [f"{d.get('field', '')}: {d.get('msg', '')}" if isinstance(d, dict) else str(d) for d in e.detail]
    return [str(e.detail)]


with st.expander("New sweep", expanded=not st.query_params.get("sweep")):
    with st.form("sweep.form"):
        cols = st.columns(3)
        name = cols[0].text_input("Sweep name", placeholder="default: from the config")
        task = cols[1].selectbox("Task", tasks, index=tasks.index("arithmetic") if "arithmetic" in tasks else 0)
        max_steps = cols[2].number_input("Max steps", min_value=1, max_value=10_000_000, value=200, step=50)
        picked = st.multiselect("Schedulers", schedulers, default=[s for s in ("balanced", "gaussian", "sec")
                                                                   if s in schedulers],
                                help="One group per scheduler (times the other grid values); the first is the "
                                "baseline the differences are taken against.")
        seeds_text = st.text_input("Seeds", "42,1,2", help="Comma-separated: every group runs once per seed.")
        extra = st.text_area("Other grid values", placeholder="algorithm.learning_rate=1e-4,3e-4",
                             help="One KEY=V1,V2,... per line (dotted RunConfig keys); combined with the schedulers.")
        submitted = st.form_submit_button("Submit sweep", type="primary")
    if submitted:
        try:
            grid = parse_grid([line for line in extra.splitlines() if line.strip()])
            if picked:
                grid = {"scheduler.name": picked, **grid}
            seeds = parse_seeds(seeds_text) if seeds_text.strip() else None
            config = {"task": {"name": task}, "algorithm": {"max_steps": int(max_steps)}}
            created = state.client().submit_sweep(config, grid, seeds, name=name or None,
                                                  baseline={"scheduler.name": picked[0]} if picked else None)
        except ValidationFailed as e:
            st.error("The server refused this sweep:", icon=":material/error:")
            st.code("\n".join(_errors(e)), language=None)
        except ValueError as e:
            st.error(f"Not a sweep: {plain(e)}", icon=":material/error:")
        else:
            state.forget_runs()
            state.flash(f"Sweep #{created.id} queued: {len(created.run_ids)} runs.")
            st.query_params["sweep"] = str(created.id)
            st.rerun()

state.show_flash()
with state.server_errors():
    listing = state.plain_json(state.client().list_sweeps(limit=200))["data"]
if not listing:
    st.info("No sweeps yet: launch one above.", icon=":material/inbox:")
    st.stop()
by_id = {s["id"]: s for s in listing}
wanted = st.query_params.get("sweep", "")
default = int(wanted) if wanted.isdigit() and int(wanted) in by_id else listing[0]["id"]
chosen = st.selectbox("Sweep", list(by_id), index=list(by_id).index(default), key="experiments.sweep",
                      format_func=lambda i: f"#{i} {by_id[i]['name']} ({len(by_id[i]['run_ids'])} runs)")
st.query_params["sweep"] = str(chosen)


def _curves(sweep: dict, runs: dict[int, dict], level_pick: str) -> dict[str, list[dict]]:
    """Per chart, one curve per run: hardest (or picked) training level reward and accuracy, held-out accuracy."""
    out: dict[str, list[dict]] = {"reward": [], "accuracy": [], "heldout": []}
    for member in sweep["runs"]:
        run = runs[member["id"]]
        if member["group"] is None or not run["step"]:
            continue
        label = sweep["summary"]["groups"][member["group"]]["label"]
        base = {"group": member["group"], "label": label}
        levels = S.train_levels(run)
        value = levels[-1] if level_pick == HARDEST else int(level_pick)
        series = state.history(url, run["id"], CURVE_POINTS)
        index = levels.index(value) if value in levels else None
        if index is not None and len(series["levels"]) > index:
            out["reward"].append({**base, "x": series["steps"], "y": series["levels"][index]["reward_mean"]})
        accuracy = S.eval_accuracy_with_test(state.evals(url, run["id"]))
        if value in accuracy:
            out["accuracy"].append({**base, "x": accuracy[value][0], "y": accuracy[value][1]})
        heldout = S.heldout_levels(run)
        if heldout and heldout[-1] in accuracy:
            out["heldout"].append({**base, "x": accuracy[heldout[-1]][0], "y": accuracy[heldout[-1]][1]})
    return out


def tidy_rows_of(sweep: dict) -> list[dict]:
    return tidy_rows(SweepDetail.model_validate(sweep))


@st.fragment(run_every=REFRESH_SECONDS if by_id[chosen]["status"] != "finished" else None)
def experiment(sweep_id: int) -> None:
    with state.server_errors(retry=False):
        first = state.plain_json(state.client().sweep(sweep_id))
        groups = first["summary"]["groups"]
        baseline = st.selectbox("Baseline", [g["index"] for g in groups], index=first["summary"]["baseline"],
                                key=f"experiments.baseline.{sweep_id}", format_func=lambda i: groups[i]["label"],
                                help="The group every other group's paired differences are taken against.")
        sweep = first if baseline == first["summary"]["baseline"] else \
            state.plain_json(state.client().sweep(sweep_id, baseline))
        runs = {r["id"]: state.run(r["id"]) for r in sweep["runs"]}
    counts = ", ".join(f"{n} {s}" for s, n in sorted(sweep["counts"].items()))
    st.text(f"{sweep['status']}: {len(sweep['runs'])} runs ({counts}); {len(groups)} groups x "
            f"{len(sweep['seeds'])} seeds")
    st.markdown("**Runs** (group x seed)")
    st.dataframe(pd.DataFrame(V.runs_grid(sweep)), hide_index=True, key="experiments.grid", width="stretch")

    summary = sweep["summary"]
    levels = summary["levels"]
    st.markdown("**Summary** (final test, over the seeds that finished)")
    if levels:
        keys = [lv["key"] for lv in levels]
        heldout = [lv["key"] for lv in levels if lv["heldout"]]
        cols = st.columns(2)
        level = cols[0].selectbox("Level", keys, index=keys.index(heldout[-1] if heldout else keys[-1]),
                                  key="experiments.level",
                                  format_func=lambda k: k + (" (held out)" if k in heldout else ""))
        metric = cols[1].selectbox("Metric", summary["metrics"], key="experiments.metric")
        fmt = st.column_config.NumberColumn(format="%.3f")
        st.dataframe(pd.DataFrame(V.summary_rows(summary, level, metric)), hide_index=True,
                     key="experiments.summary", width="stretch",
                     column_config={c: fmt for c in ("mean", "95% CI low", "95% CI high", "- baseline",
                                                     "- baseline CI low", "- baseline CI high")})
        st.caption(f"winner: highest mean; tied: the paired 95% CI of (group - winner) reaches 0, or fewer than 2 "
                   f"shared seeds; behind: that CI is below 0. Differences: group - {groups[baseline]['label']}, "
                   "paired by seed.")
    else:
        st.caption("No run has a final test yet (it runs when training ends).")
    cells = pd.DataFrame(summary["cells"])
    if not cells.empty:
        cells.insert(1, "label", [groups[g]["label"] for g in cells["group"]])
    dl = st.columns(2)
    dl[0].download_button("Export runs CSV", pd.DataFrame(tidy_rows_of(sweep)).to_csv(index=False),
                          file_name=f"sweep-{sweep_id}-runs.csv", mime="text/csv", key="experiments.csv.runs")
    dl[1].download_button("Export summary CSV", cells.to_csv(index=False), file_name=f"sweep-{sweep_id}-summary.csv",
                          mime="text/csv", key="experiments.csv.summary")

    trained = sorted({v for r in runs.values() for v in S.train_levels(r)})
    level_pick = st.selectbox("Curves for", [HARDEST, *[str(v) for v in trained]], key="experiments.curves",
                              format_func=lambda v: v if v == HARDEST else f"level {v}")
    curves = _curves(sweep, runs, level_pick)
    what = "Hardest training level" if level_pick == HARDEST else f"Level {level_pick}"
    cols = st.columns(3)
    with cols[0]:
        st.plotly_chart(V.band_figure(V.seed_bands(curves["reward"]), f"{what}: mean reward",
                                      "mean reward"), key="experiments.reward")
    with cols[1]:
        st.plotly_chart(V.band_figure(V.seed_bands(curves["accuracy"]), f"{what}: accuracy",
                                      "accuracy", (0, 1.02)), key="experiments.accuracy")
    with cols[2]:
        st.plotly_chart(V.band_figure(V.seed_bands(curves["heldout"]), "Held-out level: accuracy",
                                      "accuracy", (0, 1.02)), key="experiments.heldout")
    st.caption("Curves averaged over seeds: lines are the mean over each group's seeds, bands its 95% t interval.")

    # In the fragment, so they follow the sweep's status as it refreshes.
    cols = st.columns(6)
    if cols[0].button("Cancel sweep", key="experiments.cancel", disabled=sweep["status"] == "finished"):
        ok, _ = state.action("Cancel", state.client().cancel_sweep, sweep_id)
        if ok:
            state.flash(f"Sweep #{sweep_id}: queued runs cancelled, running ones stopping.")
            st.rerun(scope="app")
    if cols[1].button("Delete sweep", key="experiments.delete", disabled=sweep["status"] != "finished",
                      help="Deletes the sweep and its runs (finished sweeps only)."):
        ok, _ = state.action("Delete", state.client().delete_sweep, sweep_id)
        if ok:
            state.flash(f"Sweep #{sweep_id} deleted.")
            del st.query_params["sweep"]
            st.rerun(scope="app")


experiment(chosen)

