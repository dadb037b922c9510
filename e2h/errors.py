"""FieldProblem: a ValueError that says, as data, which field it is about. No dependencies.

A cross-field check (``RunConfig``), a scheduler refusing a parameter or a task refusing an
option raises one; the server's 422 body takes its ``field`` from ``path`` and the dashboard's
form puts the message under that field. The message stays the person's own text.
"""

from __future__ import annotations

from typing import Any


class FieldProblem(ValueError):
    """``FieldProblem("min_prob=0.3 is infeasible for 5 levels", "min_prob")``: ``path`` is dotted and
    relative to what raised it (a scheduler names its parameter; RunConfig the config's field)."""

    def __init__(self, message: str, path: str):
        super().__init__(message)
        self.path = path

    def under(self, prefix: str, message: str | None = None) -> FieldProblem:
        """The same problem one level up: ``path`` under ``prefix`` (``scheduler.params``)."""
        return FieldProblem(self.args[0] if message is None else message, f"{prefix}.{self.path}")


def named_field(error: dict[str, Any]) -> list[str]:
    """The extra path parts a pydantic error names as data: its FieldProblem's path, below its ``loc``."""
    problem = (error.get("ctx") or {}).get("error")
    return problem.path.split(".") if isinstance(problem, FieldProblem) else []
