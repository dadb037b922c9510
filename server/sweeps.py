"""Sweeps in the database: the table, and creating, reading, cancelling and deleting them.

A sweep's runs are ordinary runs (``runs.sweep_id`` points back): created, cancelled and
deleted through :mod:`server.crud`, claimed by workers like any other. Which group a run
belongs to is read from its own stored config (its values at the grid keys), so the run
is the one record of what it trained; the sweep keeps each group's values as the runs'
configs hold them (after validation: ``1`` for a float field is stored as ``1.0``).

Every point x seed is validated before any run is created, exactly as ``POST /runs``
validates a body (RunCreate, the server's ceilings, trust_remote_code), so one invalid
point rejects the whole sweep with a 422 naming it.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

import sqlmodel
from pydantic import ValidationError
from sqlalchemy import JSON, String, delete, func, update
from sqlmodel import Session, select

from e2h.config import ceiling_errors, dotted_expand
from e2h.schemas import ERROR_LINE_CHARS, RunCreate
from e2h.sweeps import (
    SEED_KEY,
    TEST_EVAL,
    SweepCreate,
    SweepDetail,
    SweepPublic,
    SweepRun,
    final_figures,
    grid_points,
    group_key,
    heldout_keys,
    point_label,
    summarise,
    sweep_status,
    value_at,
)
from server import crud
from server.core.db import write_transaction
from server.core.errors import Conflict, Invalid, NotFound, format_errors
from server.models import Eval, Run, RunStatus, UTCDateTime, utcnow

MAX_POINT_ERRORS = 50


class Sweep(sqlmodel.SQLModel, table=True):
    __tablename__ = "sweeps"

    id: int | None = sqlmodel.Field(default=None, primary_key=True)
    name: str = sqlmodel.Field(sa_type=String(200))
    config: dict[str, Any] = sqlmodel.Field(sa_type=JSON)
    grid: dict[str, Any] = sqlmodel.Field(sa_type=JSON)
    # Each group's grid values as its runs' configs hold them, in group order.
    groups: list[dict[str, Any]] = sqlmodel.Field(sa_type=JSON)
    seeds: list[int] = sqlmodel.Field(sa_type=JSON)
    baseline: int = 0
    priority: int = 0
    tags: list[str] = sqlmodel.Field(default_factory=list, sa_type=JSON)
    created_at: datetime = sqlmodel.Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = sqlmodel.Field(default_factory=utcnow, sa_type=UTCDateTime)


# -- create --------------------------------------------------------------------------------


def _point_errors(errors: list[dict[str, Any]], grid: dict[str, list], indices: tuple[int, ...],
                  point: dict[str, Any], group: int, seed: int) -> list[dict[str, Any]]:
    """A run body's errors, told as the grid point's: the message names the point and seed, the
    location is the grid value when the field is a grid key (else the base config's field)."""
    out = []
    where = f"grid point {group} ({point_label(point)}), seed {seed}"
    for e in errors:
        inner = e["field"].removeprefix("config.")
        key = next((k for k in point if inner == k or inner.startswith(k + ".")), None)
        if key is not None:
            loc = ["body", "grid", key, indices[list(point).index(key)]]
        else:
            loc = ["body", "config", *inner.split(".")]
        out.append({"type": e["type"], "loc": loc, "msg": f"{where}: {e['msg']}", "field": e["field"]})
    return out


def _validated_runs(body: SweepCreate, ceilings: dict[str, float], allow_trust_remote_code: bool,
                    sweep_name: str) -> tuple[list[dict[str, Any]], list[tuple[int, RunCreate]]]:
    """-> (each group's values as stored, [(group, run body)] seed-major). Raises Invalid naming every bad point."""
    base = body.config.model_dump(mode="json")
    points = grid_points(body.grid)
    errors: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    groups: list[dict[str, Any]] = [{} for _ in points]
    keys_seen: dict[str, int] = {}
    bodies: list[tuple[int, RunCreate]] = []
    # Seed-major: a queue drained in order gives every group its first seed before any its second,
    # so a half-finished sweep already compares all groups.
    for seed in body.run_seeds:
        for g, (indices, point) in enumerate(points):
            label = point_label(point)
            name = f"{sweep_name} | {label} | seed {seed}"[:200]
            config = crud.merge_overrides(base, {**point, SEED_KEY: seed})
            found: list[dict[str, Any]] = []
            try:
                run = RunCreate.model_validate(
                    {"name": name, "config": config, "priority": body.priority, "tags": body.tags}
                )
            except ValidationError as e:
                found = format_errors(e.errors(include_url=False, include_input=False))
                run = None
            if run is not None:
                found = [{"type": "value_error", "field": f"config.{field}", "msg": msg}
                         for field, msg in ceiling_errors(run.config, ceilings, "E2H_RUN_CEILINGS")]
                if run.config.model.trust_remote_code and not allow_trust_remote_code:
                    # crud.create_run refuses it too; checked here so nothing is created.
                    found.append({"type": "value_error", "field": "config.model.trust_remote_code",
                                  "msg": crud.TRUST_REMOTE_CODE_REFUSED})
            fresh = [e for e in found if (str(g), e["field"] + e["msg"]) not in seen]
            seen.update((str(g), e["field"] + e["msg"]) for e in fresh)
            errors += _point_errors(fresh, body.grid, indices, point, g, seed)
            if run is None or found:
                continue
            dumped = run.config.model_dump(mode="json")
            if seed == body.run_seeds[0]:
                groups[g] = {k: value_at(dumped, k) for k in point}
                key = group_key(dumped, body.grid)
                if key in keys_seen:
                    errors.append({
                        "type": "value_error", "loc": ["body", "grid"], "field": "grid",
                        "msg": f"grid points {keys_seen[key]} ({point_label(points[keys_seen[key]][1])}) and {g} "
                        f"({label}) give the same config; give each value once",
                    })
                keys_seen[key] = g
            bodies.append((g, run))
    if errors:
        raise Invalid(errors[:MAX_POINT_ERRORS])
    return groups, bodies


def _baseline(body: SweepCreate, groups: list[dict[str, Any]]) -> int:
    if body.baseline is None:
        return 0
    points = [p for _, p in grid_points(body.grid)]
    unknown = [k for k in body.baseline if k not in body.grid]
    if unknown:
        raise Invalid([{"type": "value_error", "loc": ["body", "baseline"], "field": "baseline",
                        "msg": f"baseline: {unknown} are not grid keys; use keys of the grid {list(body.grid)}"}])
    matches = [g for g in range(len(groups))
               if all(points[g][k] == v or groups[g].get(k) == v for k, v in body.baseline.items())]
    if len(matches) != 1:
        labels = [point_label(points[g]) for g in matches]
        raise Invalid([{"type": "value_error", "loc": ["body", "baseline"], "field": "baseline",
                        "msg": f"baseline: {body.baseline} matches {len(matches)} groups {labels}; name exactly one "
                        "group by its grid values"}])
    return matches[0]


def create_sweep(session: Session, body: SweepCreate, ceilings: dict[str, float],
                 allow_trust_remote_code: bool = False) -> tuple[Sweep, list[int]]:
    """Validate every run, then store the sweep and queue its runs. -> (sweep, run ids)."""
    name = body.name or f"{body.config.output_name()} sweep"[:200]
    groups, bodies = _validated_runs(body, ceilings, allow_trust_remote_code, name)
    baseline = _baseline(body, groups)
    now = utcnow()
    sweep = Sweep(name=name, config=body.config.model_dump(mode="json"), grid=body.grid, groups=groups,
                  seeds=body.run_seeds, baseline=baseline, priority=body.priority, tags=list(body.tags),
                  created_at=now, updated_at=now)
    with write_transaction(session):
        session.add(sweep)
    run_ids: list[int] = []
    try:
        for _, run_body in bodies:
            run_ids.append(crud.create_run(session, run_body, allow_trust_remote_code=allow_trust_remote_code).id)
    except BaseException:
        # A storage failure halfway: what was queued is cancelled, and stays visible in the sweep.
        for run_id in run_ids:
            with contextlib.suppress(Exception):  # best effort; the original error is what the caller hears
                crud.cancel_run(session, run_id)
        raise
    finally:
        if run_ids:
            with write_transaction(session):
                session.exec(update(Run).where(Run.id.in_(run_ids)).values(sweep_id=sweep.id))
    return sweep, run_ids


# -- read ----------------------------------------------------------------------------------


def get_sweep(session: Session, sweep_id: int) -> Sweep:
    sweep = session.get(Sweep, sweep_id, populate_existing=True)
    if sweep is None:
        raise NotFound(f"sweep {sweep_id} not found")
    return sweep


# What the sweep reads of its runs: only these columns, since decoding every run's JSON columns
# (tags, probabilities, metrics) costs more than the whole summary.
_RUN_COLUMNS = (Run.id, Run.name, Run.status, Run.config, Run.step, Run.max_steps, Run.worker_id, Run.error,
                Run.finished_at)


def _runs(session: Session, sweep_id: int) -> list[Any]:
    return list(session.exec(select(*_RUN_COLUMNS).where(Run.sweep_id == sweep_id).order_by(Run.id)))


def _counts(runs: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.status] = counts.get(run.status, 0) + 1
    return counts


def _public(sweep: Sweep, run_ids: list[int], counts: dict[str, int]) -> SweepPublic:
    return SweepPublic(
        id=sweep.id, name=sweep.name, status=sweep_status(counts), config=sweep.config, grid=sweep.grid,
        seeds=sweep.seeds, groups=sweep.groups, baseline=sweep.baseline, priority=sweep.priority, tags=sweep.tags,
        run_ids=run_ids, counts=counts, created_at=sweep.created_at, updated_at=sweep.updated_at,
    )


def public(session: Session, sweep: Sweep) -> SweepPublic:
    runs = _runs(session, sweep.id)
    return _public(sweep, [r.id for r in runs], _counts(runs))


def list_sweeps(session: Session, limit: int, offset: int) -> tuple[list[SweepPublic], int]:
    count = session.exec(select(func.count()).select_from(Sweep)).one()
    sweeps = list(session.exec(select(Sweep).order_by(Sweep.id.desc()).offset(offset).limit(limit)))
    members: dict[int, list[tuple[int, str]]] = {s.id: [] for s in sweeps}
    if sweeps:
        rows = session.exec(select(Run.sweep_id, Run.id, Run.status)
                            .where(Run.sweep_id.in_(list(members))).order_by(Run.id))
        for sweep_id, run_id, status in rows:
            members[sweep_id].append((run_id, status))
    out = []
    for sweep in sweeps:
        counts: dict[str, int] = {}
        for _, status in members[sweep.id]:
            counts[status] = counts.get(status, 0) + 1
        out.append(_public(sweep, [run_id for run_id, _ in members[sweep.id]], counts))
    return out, count


def _final_results(session: Session, run_ids: list[int]) -> dict[int, dict[str, dict[str, float]]]:
    """Each run's last "test" evaluation, reduced to the summary's figures."""
    latest: dict[int, tuple[int, dict]] = {}
    if run_ids:
        rows = session.exec(select(Eval.run_id, Eval.step, Eval.results)
                            .where(Eval.run_id.in_(run_ids), Eval.name == TEST_EVAL))
        for run_id, step, results in rows:
            if run_id not in latest or step >= latest[run_id][0]:
                latest[run_id] = (step, results)
    return {run_id: final_figures(results) for run_id, (_, results) in latest.items()
            if isinstance(results, dict)}


def detail(session: Session, sweep_id: int, baseline: int | None = None) -> SweepDetail:
    """The sweep with its runs (group, seed, final figures) and its summary."""
    sweep = get_sweep(session, sweep_id)
    if baseline is not None and not 0 <= baseline < len(sweep.groups):
        raise Invalid([{"type": "value_error", "loc": ["query", "baseline"], "field": "baseline",
                        "msg": f"baseline: sweep {sweep_id} has groups 0..{len(sweep.groups) - 1}, not {baseline}"}])
    runs = _runs(session, sweep_id)
    results = _final_results(session, [r.id for r in runs])
    index = {group_key(dotted_expand(p), sweep.grid): g for g, p in enumerate(sweep.groups)}
    members, heldout = [], set()
    for run in runs:
        config = run.config if isinstance(run.config, dict) else {}
        seed = value_at(config, SEED_KEY)
        heldout |= heldout_keys(config)
        error = run.error.strip().split("\n", 1)[0][:ERROR_LINE_CHARS] if run.error else None
        members.append(SweepRun(
            id=run.id, name=run.name, status=run.status, group=index.get(group_key(config, sweep.grid)),
            seed=seed if isinstance(seed, int) else None, step=run.step, max_steps=run.max_steps,
            worker_id=run.worker_id, error=error, results=results.get(run.id), finished_at=run.finished_at,
        ))
    summary = summarise(sweep.groups, members, heldout, sweep.baseline if baseline is None else baseline)
    return SweepDetail(**_public(sweep, [r.id for r in runs], _counts(runs)).model_dump(), runs=members,
                       summary=summary)




# -- cancel, delete ------------------------------------------------------------------------


def cancel_sweep(session: Session, sweep_id: int) -> tuple[Sweep, list[int]]:
    """Cancel every queued or running run (queued at once, running ones asked to stop). -> (sweep, ids)."""
    sweep = get_sweep(session, sweep_id)
    live = [r.id for r in _runs(session, sweep_id) if not RunStatus(r.status).terminal]
    if not live:
        raise Conflict(f"sweep {sweep_id} has finished (every run is); nothing to cancel")
    for run_id in live:
        with contextlib.suppress(Conflict, NotFound):  # it finished or was deleted since it was read
            crud.cancel_run(session, run_id)
    with write_transaction(session):
        sweep = get_sweep(session, sweep_id)
        sweep.updated_at = utcnow()
    return sweep, live


def delete_sweep(session: Session, sweep_id: int) -> list[int]:
    """Delete a finished sweep and its runs (with their snapshots, evals and logs). -> the run ids."""
    get_sweep(session, sweep_id)
    runs = _runs(session, sweep_id)
    live = [r.id for r in runs if not RunStatus(r.status).terminal]
    if live:
        raise Conflict(
            f"sweep {sweep_id} still has {len(live)} queued or running runs ({live[:10]}); cancel it "
            "(POST /sweeps/{id}/cancel) and wait until they have finished to delete it"
        )
    for run in runs:
        with contextlib.suppress(NotFound):  # deleted on its own since it was read
            crud.delete_run(session, run.id)
    with write_transaction(session):
        session.exec(delete(Sweep).where(Sweep.id == sweep_id))
    return [r.id for r in runs]
