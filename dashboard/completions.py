"""Run page: sample completions per level, what the model wrote at a step with its rewards.

The trainer keeps a few completions per level at each logged step (``e2h.trainer.sample_completions``)
and the server keeps them for a run's latest steps; this section reads them with
``Client.completions``. Model output and prompts are shown with ``st.code`` (never parsed, see
``dashboard.text``); labels carry only numbers this module formats.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from dashboard import series as S
from dashboard import state

REFRESH_SECONDS = 10
LATEST = "latest"


@st.cache_data(ttl=5, show_spinner=False)
def _completions(url: str, run_id: int, level: int | None, step: int | None) -> dict:
    return state.plain_json(state.client().completions(run_id, level=level, step=step, limit=1000))


def section(run: dict, live: bool) -> None:
    """The "Sample completions" section of ``run``'s page; refreshed every few seconds while ``live``."""
    st.fragment(_render, run_every=REFRESH_SECONDS if live else None)(run)


def _render(run: dict) -> None:
    st.subheader("Sample completions")
    url, rid = state.server_url(), run["id"]
    with state.server_errors(retry=False):
        latest = _completions(url, rid, None, None)
    if not latest["steps"]:
        st.caption("No sampled completions yet: the trainer keeps a few per level at each logged step.")
        return
    labels = S.level_labels(run)
    levels = list(range(len(labels)))
    present = sorted({c["level"] for c in latest["data"]})
    left, right = st.columns([1, 1])
    level = left.selectbox("Level", levels, index=levels.index(present[0]) if present else 0,
                           format_func=lambda i: labels[i], key=f"completions.level.{rid}")
    with state.server_errors(retry=False):
        of_level = _completions(url, rid, level, None)
    steps = list(reversed(of_level["steps"]))
    if not steps:
        st.caption(f"No sampled completions of {labels[level]} yet: the curriculum has not drawn it at a "
                   "sampled step.")
        return
    picked = right.selectbox("Step", [LATEST, *steps], key=f"completions.step.{rid}.{level}",
                             format_func=lambda s: f"latest (step {steps[0]})" if s == LATEST else f"step {s}")
    if picked == LATEST:
        shown = of_level
    else:
        with state.server_errors(retry=False):
            shown = _completions(url, rid, level, picked)
    show(shown["data"], labels[level], shown["step"])


def show(completions: list[dict[str, Any]], label: str, step: int | None) -> None:
    """Each completion in an expander: its reward, its text and its prompt (the first one open)."""
    rewards = [c["reward"] for c in completions if c.get("reward") is not None]
    summary = f"{len(completions)} of the completions of {label} at step {step}"
    if rewards:
        summary += f", rewards {min(rewards):.3g} to {max(rewards):.3g} (best first)"
    st.caption(summary)
    for i, c in enumerate(completions):
        title = f"#{c['index'] + 1} · reward {_number(c.get('reward'))}"
        if c.get("advantage") is not None:
            title += f" · advantage {c['advantage']:+.3f}"
        if c.get("truncated"):
            title += " · cut"
        with st.expander(title, expanded=i == 0):
            parts = [f"{name} = {_number(value)}" for name, value in (c.get("rewards") or {}).items()]
            if parts:
                st.text("   ·   ".join(parts))  # reward function names: plain text
            st.markdown("**Completion**")
            st.code(c["completion"], language=None, wrap_lines=True)
            st.markdown("**Prompt**")
            st.code(c["prompt"], language=None, wrap_lines=True)


def _number(value: float | None) -> str:
    return "none" if value is None else f"{value:.3f}"
