"""Rewrite a generated section of docs/benchmarks.md, between its begin/end markers."""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"


def require_markers(begin: str, end: str, doc: Path = DOC) -> str:
    """The text of ``doc``; SystemExit when it lacks either marker (check before a long run, not after)."""
    text = doc.read_text()
    if begin not in text or end not in text:
        raise SystemExit(f"{doc} lacks the markers {begin} / {end}")
    return text


def rewrite_section(begin: str, end: str, body: str, doc: Path = DOC) -> None:
    text = require_markers(begin, end, doc)
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(f"{head}{begin}\n{body}\n{end}{tail}")


def publish(begin: str, end: str, body: str, write: bool, doc: Path = DOC) -> None:
    """Print ``body`` and, when ``write``, put it between the markers of ``doc``."""
    print(body)
    if write:
        rewrite_section(begin, end, body, doc)
        print("rewrote", doc.relative_to(doc.parents[1]))
