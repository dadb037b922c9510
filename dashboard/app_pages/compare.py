"""Compare: the hardest and held-out levels of several runs overlaid, and each run's schedule."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import charts, state
from dashboard import series as S

MAX_POINTS = 400
REFRESH_SECONDS = 5

st.title("Compare runs")
url = state.server_url()
with state.server_errors():
    listing = state.runs(url)["data"]
by_id = {r["id"]: r for r in listing}
if not by_id:
    st.info("No runs yet. Launch some from the **Launch** page.", icon=":material/inbox:")
    st.stop()

wanted = [int(x) for x in st.query_params.get("runs", "").split(",") if x.strip().isdigit()]
default = [i for i in wanted if i in by_id]
chosen = st.multiselect("Runs", list(by_id), default=default, key="compare.runs",
                        format_func=lambda i: f"#{i} {by_id[i]['name']} ({by_id[i]['status']})",
                        placeholder="pick two or more runs")
st.query_params["runs"] = ",".join(str(i) for i in chosen)
if not chosen:
    st.info("Pick the runs to compare.", icon=":material/compare_arrows:")
    st.stop()
active = any(by_id[i]["status"] in ("queued", "running") for i in chosen)


def label(run: dict) -> str:
    return f"#{run['id']} {run['config'].get('scheduler', {}).get('name', '?')}"


@st.fragment(run_every=REFRESH_SECONDS if active else None)
def comparison(run_ids: list[int]) -> None:
    items = []
    with state.server_errors(retry=False):
        for run_id in run_ids:
            run = state.run(run_id)
            items.append({"run": run, "series": state.history(url, run_id, MAX_POINTS),
                          "evals": state.evals(url, run_id)})
    hardest_reward, hardest_acc, heldout_acc, multiples, summary = [], [], [], [], []
    for it in items:
        run, series = it["run"], it["series"]
        levels = S.train_levels(run)
        heldout = S.heldout_levels(run)
        accuracy = S.eval_accuracy(it["evals"])
        name = label(run)
        hard = series["levels"][-1] if series["levels"] else None
        if hard is not None:
            hardest_reward.append({"label": f"{name} (level {levels[-1]})", "x": series["steps"],
                                   "y": hard["reward_mean"]})
        if levels and levels[-1] in accuracy:
            steps, values = accuracy[levels[-1]]
            hardest_acc.append({"label": f"{name} (level {levels[-1]})", "x": steps, "y": values})
        last_heldout = None
        if heldout and heldout[-1] in accuracy:
            steps, values = accuracy[heldout[-1]]
            heldout_acc.append({"label": f"{name} (level {heldout[-1]})", "x": steps, "y": values})
            last_heldout = values[-1]
        multiples.append({"label": name, "series": series,
                          "levels": S.level_labels(run, series)})
        last_hard = next((v for v in reversed(hard["reward_mean"]) if v is not None), None) if hard else None
        summary.append({
            "run": run["id"], "name": run["name"], "status": run["status"],
            "scheduler": run["config"].get("scheduler", {}).get("name"),
            "task": run["config"].get("task", {}).get("name"), "step": run["step"], "max_steps": run["max_steps"],
            "hardest level reward (last)": last_hard,
            "held-out accuracy (last)": last_heldout,
        })
    st.dataframe(pd.DataFrame(summary), hide_index=True, key="compare.summary")
    cols = st.columns(3)
    with cols[0]:
        st.plotly_chart(charts.overlay(hardest_reward, "Hardest training level: mean reward", "mean reward"),
                        key="compare.hard.reward")
    with cols[1]:
        st.plotly_chart(charts.overlay(hardest_acc, "Hardest training level: accuracy", "accuracy", (0, 1.02)),
                        key="compare.hard.acc")
    with cols[2]:
        st.plotly_chart(charts.overlay(heldout_acc, "Held-out level: accuracy", "accuracy", (0, 1.02)),
                        key="compare.heldout.acc")
    st.plotly_chart(charts.probability_small_multiples(multiples), key="compare.multiples")


comparison(chosen)
