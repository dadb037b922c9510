"""The error responses each route documents in OpenAPI, with their bodies ({"detail": ...}).

Every status a route can answer is declared, so clients (and the schema fuzz test) can
rely on the document: 401 on token-protected routes, 404 on routes with a run id, 409
where the run's state or lease decides, 413 where a body or batch has a limit, 422
wherever there is input to validate.
"""

from __future__ import annotations

from typing import Any

from e2h.schemas import ErrorMessage, ValidationErrors

_DESCRIPTIONS = {
    401: "Missing or wrong bearer token.",
    404: "No run with this id.",
    409: "The run is in the wrong state for this, or this worker no longer holds its lease.",
    413: "The body is over E2H_MAX_BODY_BYTES, or the batch over E2H_MAX_BATCH items.",
    422: "Invalid input; each entry names the field.",
    503: "The database cannot be written (disk full, read-only file) or is unavailable; the detail names the cause.",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route that can answer with these error codes."""
    return {
        code: {"model": ValidationErrors if code == 422 else ErrorMessage, "description": _DESCRIPTIONS[code]}
        for code in codes
    }
