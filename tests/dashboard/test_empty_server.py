"""Pages against a real server with no runs yet (issue 22): nothing to act on is not offered."""

from __future__ import annotations

import pytest

from dashboard import nav
from tests.dashboard.apptest import open_page, texts

pytestmark = pytest.mark.slow


def test_runs_page_with_no_runs_offers_no_actions(dashboard_env: str) -> None:
    at = open_page(nav.RUNS)
    assert "No runs match" in texts(at)
    assert "Act on a run" not in [s.value for s in at.subheader]
    assert not [b for b in at.button if b.label in ("Open", "Cancel", "Delete")]


def test_launch_page_level_pickers_are_half_width(dashboard_env: str) -> None:
    at = open_page(nav.LAUNCH)
    pickers = [m for m in at.multiselect if m.key and m.key.endswith(("task.train_levels", "task.test_levels"))]
    assert len(pickers) == 2
    # Each in a column of a 2-column row (a third of the form was too narrow for 6 chosen levels).
    for picker in pickers:
        path = _path_to(at._tree, picker)
        row = path[-3]  # the picker's column block, then the row of columns holding it
        assert path[-2].type == "column" and len(row.children) == 2, [len(b.children) for b in path[:-1]]
    assert "what the run uses" in texts(at)


def _path_to(node, target) -> list:
    """The blocks from the root down to ``target`` (inclusive)."""
    if node is target:
        return [node]
    for child in getattr(node, "children", {}).values():
        found = _path_to(child, target)
        if found:
            return [node, *found]
    return []
