"""Runs: the table (live), filters by status and tag, and cancel / clone / delete / open actions."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import nav, state, widgets
from dashboard import series as S

STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"]
FINISHED = {"succeeded", "failed", "cancelled"}
ANY = "(any)"
REFRESH_SECONDS = 3

st.title("Runs")
state.show_flash()
url = state.server_url()

with state.server_errors():
    everything = state.runs(url)
tags = sorted({t for run in everything["data"] for t in run.get("tags") or []})

left, right, _ = st.columns([3, 2, 3])
statuses = left.multiselect("Status", STATUSES, key="runs.status", placeholder="all statuses")
tag = right.selectbox("Tag", [ANY, *tags], key="runs.tag")
status_filter = ",".join(statuses) or None
tag_filter = None if tag == ANY else tag


@st.fragment(run_every=REFRESH_SECONDS)
def runs_table(status: str | None, tag: str | None) -> None:
    with state.server_errors(retry=False):
        listing = state.runs(url, status, tag)
    rows = [S.run_row(run) for run in listing["data"]]
    if not rows:
        st.info("No runs match. Launch one from the **Launch** page.", icon=":material/inbox:")
        return
    frame = pd.DataFrame(rows)
    frame.insert(1, "open", [f"run?run={r['id']}" for r in rows])
    st.dataframe(
        frame,
        hide_index=True,
        width="stretch",
        column_config={
            "id": st.column_config.NumberColumn("id", format="%d", width="small"),
            "open": st.column_config.LinkColumn("open", display_text="open", width="small"),
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
            "created": st.column_config.DatetimeColumn("created (UTC)", format="YYYY-MM-DD HH:mm:ss"),
            "started": st.column_config.DatetimeColumn("started (UTC)", format="YYYY-MM-DD HH:mm:ss"),
        },
        key="runs.table",
    )
    shown = len(rows)
    st.caption(f"{shown} of {listing['count']} run{'s' * (listing['count'] != 1)}; refreshed every "
               f"{REFRESH_SECONDS} s.")


runs_table(status_filter, tag_filter)

# -- actions -------------------------------------------------------------------------------------
with state.server_errors():
    listing = state.runs(url, status_filter, tag_filter)
by_id = {run["id"]: run for run in listing["data"]}
if not by_id:
    st.stop()
st.subheader("Act on a run")
chosen = st.selectbox("Run", list(by_id), key="runs.selected",
                      format_func=lambda i: f"#{i} {by_id[i]['name']} ({by_id[i]['status']})")
run = by_id[chosen]
finished = run["status"] in FINISHED
cols = st.columns(5)
if cols[0].button("Open", icon=":material/monitoring:", key="runs.open"):
    nav.open_run(chosen)
if cols[1].button("Cancel", icon=":material/stop_circle:", key="runs.cancel", disabled=finished,
                  help="Queued runs stop at once; running ones when the worker next checks in."):
    ok, result = state.action("Cancel", state.client().cancel, chosen)
    if ok:
        state.flash(f"Run #{chosen} {'cancel requested' if result['status'] == 'running' else result['status']}.")
        st.rerun()
if cols[2].button("Clone", icon=":material/content_copy:", key="runs.clone", help="Queue an identical run."):
    ok, result = state.action("Clone", state.client().clone, chosen)
    if ok:
        state.flash(f"Run #{chosen} cloned as #{result['id']}.")
        st.rerun()
if cols[3].button("Clone and edit", icon=":material/edit:", key="runs.clone_edit"):
    with state.server_errors():
        full = state.run(chosen)  # list items carry no config
    nav.clone_and_edit(full)
widgets.delete_button(cols[4], "runs", chosen, disabled=not finished,
                      help="Finished runs only; removes its history, evaluations and logs.")
widgets.confirm_delete("runs", chosen, st.rerun)
