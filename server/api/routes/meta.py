"""What the run form needs (schedulers, tasks, presets, limits) and the health check."""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import APIRouter, HTTPException, status
from sqlalchemy import text

from e2h import __version__
from e2h.config import GRPO_KWARGS_ALLOWED, MAX_JSON_BYTES, MAX_JSON_DEPTH, list_presets, load_preset
from e2h.schedulers import SCHEDULERS
from e2h.schemas import Health, RunLimits, SchedulerInfo, TaskInfo
from e2h.tasks import describe_tasks
from server.api.deps import SessionDep, SettingsDep
from server.api.responses import errors

router = APIRouter(tags=["meta"])


# What these describe ships with the code, so it is computed once per process (building
# JSON schemas and reading preset files costs milliseconds, and the form asks often).


@router.get("/schedulers")
@cache
def schedulers() -> list[SchedulerInfo]:
    return [
        SchedulerInfo(name=name, description=cls.description, params_schema=cls.params_schema())
        for name, cls in SCHEDULERS.items()
    ]


@router.get("/tasks")
@cache
def tasks() -> list[TaskInfo]:
    return [TaskInfo.model_validate(t) for t in describe_tasks()]


@router.get("/presets")
@cache
def presets() -> dict[str, dict[str, dict[str, Any]]]:
    """Each group's presets with the partial RunConfig each holds: {group: {name: config}}."""
    return {group: {name: load_preset(group, name) for name in names} for group, names in list_presets().items()}


@router.get("/limits")
def limits(settings: SettingsDep) -> RunLimits:
    """This server's ceilings on resource fields and what free-form fields may hold."""
    return RunLimits(ceilings=settings.run_ceilings, grpo_kwargs=sorted(GRPO_KWARGS_ALLOWED),
                     max_json_depth=MAX_JSON_DEPTH, max_json_bytes=MAX_JSON_BYTES)


@router.get("/healthz", responses=errors(503))
def healthz(session: SessionDep) -> Health:
    try:
        session.exec(text("SELECT 1"))
    except Exception as e:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"database unavailable: {e}") from e
    return Health(status="ok", database=session.get_bind().dialect.name, version=__version__)
