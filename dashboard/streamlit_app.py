"""E2H Curriculum Studio dashboard: ``streamlit run dashboard/streamlit_app.py -- --server-url URL``.

``e2h dashboard --server URL --port 8501`` runs this (see :mod:`dashboard.launch`). It talks
to the server only over HTTP, through :mod:`e2h.client`.
"""

from __future__ import annotations

import streamlit as st

from dashboard import nav, state

st.set_page_config(page_title="E2H Curriculum Studio", page_icon=":material/school:", layout="wide")

pages = [
    st.Page(nav.RUNS, title="Runs", icon=":material/table_rows:", url_path="runs", default=True),
    st.Page(nav.LAUNCH, title="Launch", icon=":material/rocket_launch:", url_path="launch"),
    st.Page(nav.RUN, title="Run", icon=":material/monitoring:", url_path="run"),
    st.Page(nav.COMPARE, title="Compare", icon=":material/compare_arrows:", url_path="compare"),
    st.Page(nav.EXPERIMENTS, title="Experiments", icon=":material/science:", url_path="experiments"),
]
page = st.navigation(pages)
with st.sidebar:
    st.caption(f"Server: `{state.server_url()}`")
page.run()
