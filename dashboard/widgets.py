"""Streamlit widgets: the launch form's FieldSpecs, each with its server-side errors under it, and
the Delete button with its confirmation that the Run and Runs pages share."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

from dashboard.forms import FieldError, FieldSpec, parse_text, to_text
from dashboard.text import plain

COLUMNS = 3
WIDE = ("levels", "text")  # kinds drawn two to a row


def _float_step(value: Any) -> float:
    if not isinstance(value, int | float) or value == 0 or not math.isfinite(value):
        return 0.01
    return 10.0 ** (math.floor(math.log10(abs(value))) - 1)


def _bounds(spec: FieldSpec, value: Any, cast: type) -> dict[str, Any]:
    # Inclusive bounds only; a value already outside them (an odd preset) keeps the widget
    # usable and lets the server explain.
    out: dict[str, Any] = {}
    if spec.minimum is not None and (value is None or value >= spec.minimum):
        out["min_value"] = cast(spec.minimum)
    if spec.maximum is not None and (value is None or value <= spec.maximum):
        out["max_value"] = cast(spec.maximum)
    return out


def field_widget(spec: FieldSpec, initial: Any, key: str) -> Any:
    """Draw one field; returns its value (raises FieldError for unparseable text)."""
    label, help_ = spec.label, spec.help
    placeholder = spec.extra.get("placeholder")
    if spec.kind == "bool":
        return st.checkbox(label, value=bool(initial), help=help_, key=key)
    if spec.kind == "enum":
        options = list(spec.options or [])
        if initial not in options:
            options = [initial, *options]
        return st.selectbox(label, options, index=options.index(initial), help=help_, key=key)
    if spec.kind == "int" and (initial is None or isinstance(initial, int)):
        return st.number_input(label, value=initial, step=1, help=help_, key=key, placeholder=placeholder,
                               **_bounds(spec, initial, int))
    if spec.kind in ("int", "float") and (initial is None or isinstance(initial, int | float)):
        value = None if initial is None else float(initial)
        return st.number_input(label, value=value, step=_float_step(value if value else spec.default), format="%g",
                               help=help_, key=key, placeholder=placeholder, **_bounds(spec, value, float))
    if spec.kind == "levels":
        options = sorted(set(spec.options or []) | set(initial or []))
        chosen = st.multiselect(label, options, default=list(initial or []), help=help_, key=key,
                                placeholder=placeholder or "the task's default")
        return sorted(chosen) if chosen else None
    if spec.kind == "text":
        text = st.text_area(label, value="" if initial is None else str(initial), help=help_, key=key,
                            placeholder=placeholder)
        return None if (spec.nullable and not text) else text
    if spec.kind == "str":
        text = st.text_input(label, value="" if initial is None else str(initial), help=help_, key=key,
                             placeholder=placeholder)
        return None if (spec.nullable and not text) else text
    text = st.text_input(label, value=to_text(initial), help=(help_ or "") + " (JSON or YAML)", key=key,
                         placeholder=placeholder)
    return parse_text(spec, text)


def section(specs: Sequence[FieldSpec], initial: dict[str, Any], key_of: Any, errors: dict[str, list[str]],
            columns: int = COLUMNS) -> tuple[dict[str, Any], list[FieldError]]:
    """Fields in a grid; each field's errors right under it. Returns (values, parse errors)."""
    values: dict[str, Any] = {}
    problems: list[FieldError] = []

    def draw(spec: FieldSpec) -> None:
        try:
            values[spec.path] = field_widget(spec, initial[spec.path], key_of(spec))
        except FieldError as e:
            problems.append(e)
            st.error(plain(e), icon=":material/error:")
        for message in errors.get(spec.path, []):
            st.error(plain(message), icon=":material/error:")

    # Level pickers and text areas get half the width each: in a third, their chosen levels were cut off.
    wide = [s for s in specs if s.kind in WIDE]
    if wide:
        for col, spec in zip(st.columns(2) * len(wide), wide, strict=False):
            with col:
                draw(spec)
    narrow = [s for s in specs if s.kind not in WIDE]
    cols = st.columns(columns) if narrow else []
    for i, spec in enumerate(narrow):
        with cols[i % columns]:
            draw(spec)
    return values, problems


# -- deleting a run (the Run and Runs pages) ------------------------------------------------------


def delete_button(where: Any, prefix: str, run_id: int, disabled: bool, help: str) -> None:
    """A Delete button in ``where`` (a column) that asks :func:`confirm_delete`'s question."""
    if where.button("Delete", icon=":material/delete:", key=f"{prefix}.delete", disabled=disabled, help=help):
        st.session_state[f"{prefix}.confirm_delete"] = run_id


def confirm_delete(prefix: str, run_id: int, deleted: Callable[[], Any]) -> None:
    """Once :func:`delete_button` was pressed for ``run_id``: "Delete run #N and all its history?";
    yes deletes it through the client (a refusal is shown here), flashes and calls ``deleted``
    (leave the page, or rerun it); "Keep it" closes the question."""
    from dashboard import state

    key = f"{prefix}.confirm_delete"
    if st.session_state.get(key) != run_id:
        return
    st.warning(f"Delete run #{run_id} and all its history?")
    yes, no, _ = st.columns([1, 1, 6])
    if yes.button("Yes, delete", type="primary", key=f"{prefix}.delete.yes"):
        st.session_state.pop(key, None)
        ok, _ = state.action("Delete", state.client().delete, run_id)
        if ok:
            state.flash(f"Run #{run_id} deleted.")
            deleted()
    if no.button("Keep it", key=f"{prefix}.delete.no"):
        st.session_state.pop(key, None)
        st.rerun()
