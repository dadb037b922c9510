"""The optional parts of the install (pip extras): a command whose extra is missing says how to add it.

The extras and what each requires are pyproject.toml's; this reads them from the installed
package's metadata, so the list lives in one place.
"""

from __future__ import annotations

import re
from importlib import metadata

DIST = "e2h-curriculum-studio"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def missing(extra: str) -> list[str]:
    """The distributions ``extra`` requires that are not installed.

    Empty when the package itself is not installed (a bare source tree): nothing to check against.
    """
    try:
        requires = metadata.requires(DIST) or []
    except metadata.PackageNotFoundError:
        return []
    absent: list[str] = []
    for line in requires:
        spec, _, marker = line.partition(";")
        if not re.search(rf"""extra\s*==\s*["']{re.escape(extra)}["']""", marker):
            continue
        name, _, nested = re.match(r"\s*([A-Za-z0-9._-]+)\s*(\[([^\]]*)\])?", spec).groups()
        if _canonical(name) == DIST:  # the all extra names the others
            absent += [d for e in (nested or "").split(",") if e.strip() for d in missing(e.strip())]
            continue
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            absent.append(name)
    return list(dict.fromkeys(absent))


def install_hint(extra: str) -> str | None:
    """Why a command needing ``extra`` cannot run here and the install command, or None when it can."""
    absent = missing(extra)
    if not absent:
        return None
    return f"this command needs the {extra} extra ({', '.join(absent)} not installed): pip install '{DIST}[{extra}]'"
