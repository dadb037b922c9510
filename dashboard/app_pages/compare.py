"""Compare: several runs' final test results per level side by side, any level's reward and
accuracy overlaid (the hardest trained one by default), the held-out level, and each run's schedule."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import charts, derived, state
from dashboard import series as S

MAX_POINTS = 400
HARDEST = "hardest training level"
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
    everything = sorted({v for it in items for v in S.train_levels(it["run"]) + S.heldout_levels(it["run"])})
    picked = st.selectbox("Level", [HARDEST, *everything], key="compare.level",
                          format_func=lambda v: v if v == HARDEST else f"level {v}",
                          help="The level the reward and accuracy charts follow; any trained or held-out level.")
    level_reward, level_acc, heldout_acc, multiples, summary, finals = [], [], [], [], [], {}
    for it in items:
        run, series = it["run"], it["series"]
        levels = S.train_levels(run)
        heldout = S.heldout_levels(run)
        accuracy = S.eval_accuracy_with_test(it["evals"])
        name = label(run)
        value = (levels[-1] if levels else None) if picked == HARDEST else picked
        index = levels.index(value) if value in levels else None
        lv = next((x for x in series["levels"] if x["level"] == index), None) if index is not None else None
        if lv is not None:
            level_reward.append({"label": f"{name} (level {value})", "x": series["steps"], "y": lv["reward_mean"]})
        if value in accuracy:
            steps, values, _ = accuracy[value]
            level_acc.append({"label": f"{name} (level {value})", "x": steps, "y": values})
        last_heldout = None
        if heldout and heldout[-1] in accuracy:
            steps, values, _ = accuracy[heldout[-1]]
            heldout_acc.append({"label": f"{name} (level {heldout[-1]})", "x": steps, "y": values})
            last_heldout = values[-1]
        multiples.append({"label": name, "frame": derived.level_frame(series, S.level_labels(run, series),
                                                                      "probability")})
        hard = series["levels"][-1] if series["levels"] else None
        last_hard = next((v for v in reversed(hard["reward_mean"]) if v is not None), None) if hard else None
        test = S.latest_eval(it["evals"], "test")
        finals[name] = S.test_accuracy(test, heldout) if test else {}
        summary.append({
            "run": run["id"], "name": run["name"], "status": run["status"],
            "scheduler": run["config"].get("scheduler", {}).get("name"),
            "task": run["config"].get("task", {}).get("name"), "step": run["step"], "max_steps": run["max_steps"],
            "hardest level reward (last)": last_hard,
            "held-out accuracy (last)": last_heldout,
            "final test accuracy (overall)": finals[name].get("overall"),
        })
    st.dataframe(pd.DataFrame(summary), hide_index=True, key="compare.summary", width="stretch")
    st.markdown("**Final test accuracy per level** (the last test of each run)")
    if any(finals.values()):
        rows = sorted({k for f in finals.values() for k in f}, key=S.level_sort_key)
        table = pd.DataFrame({"level": rows, **{n: [f.get(r) for r in rows] for n, f in finals.items()}})
        st.dataframe(table, hide_index=True, key="compare.finals", width="stretch",
                     column_config={n: st.column_config.NumberColumn(n, format="%.3f") for n in finals})
    else:
        st.caption("None of these runs has a final test yet (it runs when training ends).")
    what = "Hardest training level" if picked == HARDEST else f"Level {picked}"
    cols = st.columns(3)
    with cols[0]:
        st.plotly_chart(charts.overlay(level_reward, f"{what}: mean reward", "mean reward"),
                        key="compare.hard.reward")
    with cols[1]:
        st.plotly_chart(charts.overlay(level_acc, f"{what}: accuracy", "accuracy", (0, 1.02)),
                        key="compare.hard.acc")
    with cols[2]:
        st.plotly_chart(charts.overlay(heldout_acc, "Held-out level: accuracy", "accuracy", (0, 1.02)),
                        key="compare.heldout.acc")
    st.plotly_chart(charts.probability_small_multiples(multiples), key="compare.multiples")


comparison(chosen)
