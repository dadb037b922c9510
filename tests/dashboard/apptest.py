"""Driving the dashboard in-process with Streamlit's AppTest."""

from __future__ import annotations

import html
import json
import re
from typing import Any

from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

from tests.dashboard.helpers import APP

TIMEOUT = 60
COMMONMARK = MarkdownIt("commonmark")


def open_page(page: str | None = None, **query: str) -> AppTest:
    """The app (default page: Runs), then ``page`` (e.g. "app_pages/run_view.py") with ``query``."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(page)
        for key, value in query.items():
            at.query_params[key] = value
        at.run()
    assert_clean(at)
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def widget(items: Any, suffix: str) -> Any:
    """The one widget in ``items`` whose key ends with ``suffix`` (form keys carry a prefix)."""
    found = [w for w in items if w.key and w.key.endswith(suffix)]
    assert len(found) == 1, (suffix, [w.key for w in items])
    return found[0]


def button(at: AppTest, label: str) -> Any:
    found = [b for b in at.button if b.label == label]
    assert len(found) == 1, (label, [b.label for b in at.button])
    return found[0]


def next_sibling(at: AppTest, target: Any) -> Any:
    """The element drawn right after ``target`` in the same container."""
    def walk(node: Any) -> Any:
        children = list(getattr(node, "children", {}).values())
        for i, child in enumerate(children):
            if child is target:
                return children[i + 1] if i + 1 < len(children) else None
            found = walk(child)
            if found is not None:
                return found
        return None

    return walk(at._tree)


def figures(at: AppTest) -> dict[str, dict]:
    """Every Plotly chart on the page, by its title: the figure's JSON."""
    out = {}
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        title = spec.get("layout", {}).get("title", {})
        out[title.get("text", "") if isinstance(title, dict) else str(title)] = spec
    return out


def texts(at: AppTest) -> str:
    """All markdown, captions, alerts and code on the page, joined (for substring checks)."""
    parts = []
    for kind in ("markdown", "caption", "info", "success", "warning", "error", "code", "title", "subheader"):
        parts += [str(e.value) for e in at.get(kind)]
    return "\n".join(parts)


def shown(source: str) -> str:
    """What a reader sees of a Markdown body (tags dropped, escapes and entities resolved): the
    app escapes user strings (dashboard.text.plain), so compare those with this, not the source."""
    return html.unescape(re.sub(r"<[^>]+>", "", COMMONMARK.render(source))).strip()
