"""The dashboard's pages (paths relative to streamlit_app.py) and moving between them."""

from __future__ import annotations

from typing import Any

import streamlit as st

LAUNCH = "app_pages/launch_run.py"
RUNS = "app_pages/runs.py"
RUN = "app_pages/run_view.py"
COMPARE = "app_pages/compare.py"
EXPERIMENTS = "app_pages/experiments.py"

CLONE_KEY = "clone_source"


def open_run(run_id: int) -> None:
    st.switch_page(RUN, query_params={"run": str(run_id)})


def clone_and_edit(run: dict[str, Any]) -> None:
    """Open the launch form filled with a copy of ``run``'s config."""
    st.session_state[CLONE_KEY] = run
    st.switch_page(LAUNCH)


def compare(run_ids: list[int]) -> None:
    st.switch_page(COMPARE, query_params={"runs": ",".join(str(i) for i in run_ids)})
