"""Errors the state machine raises, and the one JSON shape every 4xx body has: {"detail": ...}.

``crud`` raises these without knowing about HTTP; ``main`` maps them to status codes.
Validation errors are a list of {type, loc, msg, field}, where ``field`` is the dotted name
of what is wrong (``config.scheduler.params.min_prob``), also when the check that failed
spans several fields and names the field in its message.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError

from e2h.errors import named_field


class E2HError(Exception):
    status_code = 400

    def __init__(self, detail: Any):
        super().__init__(detail)
        self.detail = detail


class NotFound(E2HError):
    status_code = 404


class Conflict(E2HError):
    """The run is in the wrong state for this, or the caller no longer holds its lease."""

    status_code = 409


class TooLarge(E2HError):
    status_code = 413


class Invalid(E2HError):
    status_code = 422


# What SQLite (and the OS under it) says when the database cannot take a write, and what
# the operator should hear instead. Matched on the message: SQLite reports these as
# OperationalError, sharing the class with SQL mistakes that are real 500s.
_STORAGE_FAULTS = (
    ("database or disk is full", "the disk holding the database is full"),
    ("attempt to write a readonly database", "the database file is read-only"),
    ("unable to open database file", "the database file cannot be opened (missing, read-only or no permission)"),
    ("disk i/o error", "the database file could not be written (disk I/O error; read-only or failing disk)"),
    ("readonly database", "the database file is read-only"),
    ("no space left on device", "the disk holding the database is full"),  # PostgreSQL
    ("read-only transaction", "the database is read-only"),  # PostgreSQL hot standby
)
_STORAGE_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EROFS: "the file system is read-only",
    errno.EDQUOT: "the disk quota is exhausted",
}


def storage_fault(exc: BaseException) -> str | None:
    """Why the database (or a file the server writes) cannot be written, or None if ``exc`` is no such fault.

    -> the 503 detail: the cause, then the driver's own words.
    """
    if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
        return f"{_STORAGE_ERRNOS[exc.errno]}: {exc.strerror}; writes fail until that is fixed"
    if isinstance(exc, DBAPIError):
        message = str(exc.orig) if exc.orig is not None else str(exc)
        lowered = message.lower()
        for needle, cause in _STORAGE_FAULTS:
            if needle in lowered:
                return f"{cause} ({message}); writes fail until that is fixed"
        if isinstance(exc.orig, OSError):
            return storage_fault(exc.orig)
    return None


_LOC_SOURCES = ("body", "query", "path", "header", "cookie")


# A body typed as a union (an eval or a list of evals) puts the member's type name first.
_UNION_MEMBER = re.compile(r"^(?:list\[)?[A-Z]\w*\]?$")


def error_entry(loc: Sequence[Any], msg: str, type_: str = "value_error", named: Sequence[str] = ()) -> dict[str, Any]:
    """One 422 entry; ``field`` is ``loc`` without its source, then what the check ``named`` below it
    (a FieldProblem's path: data, never parsed out of the message)."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in _LOC_SOURCES:
        parts = parts[1:]
        if parts and _UNION_MEMBER.match(parts[0]):
            parts = parts[1:]
    return {"type": type_, "loc": list(loc), "msg": msg, "field": ".".join([*parts, *named])}


def format_errors(errors: Iterable[dict[str, Any]], loc_prefix: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """pydantic/FastAPI error dicts -> the API's shape (drops ``input``, which may be huge)."""
    return [error_entry([*loc_prefix, *e["loc"]], e["msg"], e["type"], named_field(e)) for e in errors]


def invalid_from(exc: ValidationError, loc_prefix: Sequence[Any]) -> Invalid:
    return Invalid(format_errors(exc.errors(include_url=False, include_input=False), loc_prefix))
