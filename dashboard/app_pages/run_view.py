"""Run: one run's curriculum, live (incremental after_step polling), with its actions."""

from __future__ import annotations

import streamlit as st

from dashboard import completions, derived, nav, panels, state, widgets

REFRESH_SECONDS = 2
FINISHED = {"succeeded", "failed", "cancelled"}

state.show_flash()
url = state.server_url()
with state.server_errors():
    recent = state.runs(url)["data"]

wanted = st.query_params.get("run")
run_id = int(wanted) if wanted and wanted.isdigit() else None
if run_id is None:
    st.title("Run")
    if not recent:
        st.info("No runs yet. Launch one from the **Launch** page.", icon=":material/inbox:")
        st.stop()
    run_id = recent[0]["id"]
    st.query_params["run"] = str(run_id)

with state.server_errors():
    run = state.run(run_id)

options = [r["id"] for r in recent]
if run_id not in options:
    options.insert(0, run_id)
names = {r["id"]: r["name"] for r in recent} | {run_id: run["name"]}
picked = st.selectbox("Run", options, index=options.index(run_id), format_func=lambda i: f"#{i} {names[i]}",
                      key=f"run.pick.{run_id}", label_visibility="collapsed")
if picked != run_id:
    nav.open_run(picked)
st.title(f"Run #{run['id']}")
st.text(run["name"])  # plain text: no Markdown, no HTML
if run.get("sweep_id"):
    st.page_link(nav.EXPERIMENTS, label=f"Part of sweep #{run['sweep_id']}", icon=":material/science:",
                 query_params={"sweep": str(run["sweep_id"])})

cols = st.columns([1, 1, 1.3, 1, 1.1, 3])
finished = run["status"] in FINISHED
if cols[0].button("Cancel", icon=":material/stop_circle:", key="run.cancel", disabled=finished):
    ok, result = state.action("Cancel", state.client().cancel, run_id)
    if ok:
        state.flash(f"Run #{run_id} {'cancel requested' if result['status'] == 'running' else result['status']}.")
        st.rerun()
if cols[1].button("Clone", icon=":material/content_copy:", key="run.clone"):
    ok, result = state.action("Clone", state.client().clone, run_id)
    if ok:
        state.flash(f"Cloned as #{result['id']}.")
        nav.open_run(result["id"])
if cols[2].button("Clone and edit", icon=":material/edit:", key="run.clone_edit"):
    nav.clone_and_edit(run)
widgets.delete_button(cols[3], "run", run_id, disabled=not finished, help="Finished runs only.")
if cols[4].button("Compare", icon=":material/compare_arrows:", key="run.compare",
                  help="Open this run on the Compare page, to add others."):
    nav.compare([run_id])
widgets.confirm_delete("run", run_id, lambda: st.switch_page(nav.RUNS))


@st.fragment(run_every=None if finished else REFRESH_SECONDS)
def live() -> None:
    with state.server_errors(retry=False):
        fetched = state.run(run_id), state.live_series(run_id), state.evals(url, run_id), state.live_logs(run_id)
    view = derived.derive(*fetched)  # once per refresh; the panels only render it
    panels.render(view)
    # Once it finishes, rerun the whole page: the actions change and polling stops.
    if not finished and view.run["status"] in FINISHED:
        st.rerun(scope="app")


live()
completions.section(run, live=not finished)
