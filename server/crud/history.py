"""Reading a run's records back: the bucketed snapshot history, its evals and its log lines."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic_core import from_json
from sqlalchemy import JSON, BigInteger, Engine, bindparam, cast, func, or_, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Session, select

from e2h.schemas import series_path
from server.core.db import new_session
from server.crud.state import get_run
from server.models import Eval, LogLine, Snapshot


def snapshot_series(session: Session, run_id: int, after_step: int | None, max_points: int) -> dict[str, Any]:
    """Columnar history of a run, at most ``max_points`` steps (bucketed; first and last kept).

    Steps are split into ``max_points - 1`` equal ranges of step numbers; each contributes
    its first stored step, and the last step is always added. Values are those snapshots'
    own (no averaging), chosen in SQL so only the kept rows are read and parsed.
    """
    run = get_run(session, run_id)
    where = [Snapshot.run_id == run_id]
    if after_step is None:
        total = run.snapshot_count
    else:
        where.append(Snapshot.step > after_step)
        total = session.exec(select(func.count()).select_from(Snapshot).where(*where)).one()
    if not total:
        return {"steps": [], "time": [], "levels": [], "metrics": {}, "total": 0}
    query = select(Snapshot.step, Snapshot.data).order_by(Snapshot.step)
    if total <= max_points:
        rows = session.exec(query.where(*where)).all()
    else:
        # Separate queries: alone, each is one index lookup.
        lo = session.exec(select(func.min(Snapshot.step)).where(*where)).one()
        hi = session.exec(select(func.max(Snapshot.step)).where(*where)).one()
        buckets = max_points - 1
        if max_points <= MAX_LISTED_STEPS:
            kept = sorted(_bucket_firsts(session, where, lo, hi, total, buckets) | {hi})
            rows = session.exec(
                query.where(Snapshot.run_id == run_id, Snapshot.step.in_(bindparam("kept", expanding=True))),
                params={"kept": kept},
            ).all()
        else:  # too many steps to list as parameters (SQLite allows 32,766): let SQL pick them
            firsts = select(func.min(Snapshot.step)).where(*where).group_by(_bucket(lo, hi, buckets))
            rows = session.exec(
                query.where(or_(Snapshot.step.in_(firsts.scalar_subquery()), Snapshot.step == hi)).where(
                    Snapshot.run_id == run_id
                )
            ).all()
    return _columns([step for step, _ in rows], [from_json(data) for _, data in rows], total)


# Above this many points the kept steps are chosen inside one SQL statement instead.
MAX_LISTED_STEPS = 10_000


def _bucket(lo: int, hi: int, buckets: int):
    # Integer division; BigInteger so (step - lo) * buckets cannot overflow 32 bits.
    return cast(Snapshot.step - lo, BigInteger) * buckets // (hi - lo + 1)


def _bucket_firsts(session: Session, where: list, lo: int, hi: int, total: int, buckets: int) -> set[int]:
    """The first stored step of each of ``buckets`` equal ranges of [lo, hi]."""
    span = hi - lo + 1
    if total == span:
        # Every step is there (logging every step, the usual case): bucket b starts at the
        # first step s with (s - lo) * buckets >= b * span, so no scan is needed.
        return {lo - (-b * span // buckets) for b in range(buckets)}
    return set(session.exec(select(func.min(Snapshot.step)).where(*where).group_by(_bucket(lo, hi, buckets))))


def _columns(steps: list[int], docs: list[dict[str, Any]], total: int) -> dict[str, Any]:
    """Snapshot dicts -> one list per field; a field missing from a snapshot is None there."""
    n = len(docs)

    def put(columns: dict[str, list], values: dict[str, Any] | None, i: int) -> None:
        for name, value in (values or {}).items():
            column = columns.get(name)
            if column is None:
                column = columns[name] = [None] * n
            column[i] = value

    metrics: dict[str, list] = {}
    for i, doc in enumerate(docs):
        put(metrics, doc.get("metrics"), i)
    levels = []
    for j, first in enumerate(docs[0]["levels"]):
        probability, reward_mean, reward_var, count = [], [], [], []
        components: dict[str, list] = {}
        for i, doc in enumerate(docs):
            entry = doc["levels"][j]
            probability.append(entry["probability"])
            reward_mean.append(entry.get("reward_mean"))
            reward_var.append(entry.get("reward_var"))
            count.append(entry.get("count"))
            put(components, entry.get("components"), i)
        levels.append(
            {
                "level": first["level"],
                "probability": probability,
                "reward_mean": reward_mean,
                "reward_var": reward_var,
                "count": count,
                "components": components,
            }
        )
    return {"steps": steps, "time": [d.get("time") for d in docs], "levels": levels, "metrics": metrics, "total": total}



EXPORT_BATCH = 2000  # snapshots per read of a full export: memory is bounded by one batch
SERIES_BATCH = 20_000  # steps per read of a one-series export (a few numbers per step)


def series_export(engine: Engine, run_id: int, series: str, after_step: int | None = None,
                  batch: int = SERIES_BATCH) -> tuple[list[str], Iterator[list[tuple]]]:
    """One series of a run's full history (``e2h.schemas.series_path``): the column names
    (``step``, then ``level_N`` per level or the metric's name) and the rows in step order,
    ``batch`` at a time, a missing value None.

    The values are picked out of the stored JSON by the database (SQLite's json_extract,
    PostgreSQL's jsonb paths), so the server never parses a whole snapshot: this is what
    makes one series of a 100,000-step run cheap. Levels are matched by their ``level``
    number, not their position, and the run's levels are those of its first snapshot.
    """
    per_level, path = series_path(series)
    if not per_level:
        return ["step", path[-1]], _series_batches(engine, run_id, [_doc(engine)[path].as_float()], after_step,
                                                   batch, None)
    with new_session(engine) as session:
        first = session.exec(select(Snapshot.data).where(Snapshot.run_id == run_id)
                             .order_by(Snapshot.step).limit(1)).first()
    levels = [lv["level"] for lv in from_json(first)["levels"]] if first else []
    doc = _doc(engine)
    columns = []
    for i in range(len(levels)):
        columns += [doc[("levels", i, "level")].as_integer(), doc[("levels", i, *path)].as_float()]
    return ["step", *(f"level_{n}" for n in levels)], _series_batches(engine, run_id, columns, after_step, batch,
                                                                      {n: j for j, n in enumerate(levels)})


def _doc(engine: Engine):
    # The snapshot's JSON text as a JSON value: SQLite's JSON functions read text as it is,
    # PostgreSQL needs the cast (the column is text, kept as sent).
    if engine.dialect.name == "postgresql":
        return cast(Snapshot.data, JSONB)
    return type_coerce(Snapshot.data, JSON)


def _series_batches(engine: Engine, run_id: int, columns: list, after_step: int | None, batch: int,
                    positions: dict[int, int] | None) -> Iterator[list[tuple]]:
    last = -1 if after_step is None else after_step
    query = select(Snapshot.step, *columns).where(Snapshot.run_id == run_id).order_by(Snapshot.step).limit(batch)
    in_order = None if positions is None else tuple(positions)
    while True:
        with engine.connect() as connection:  # one short read per batch, as snapshot_export (Core: no ORM rows)
            rows = connection.execute(query.where(Snapshot.step > last)).all()
        if not rows:
            return
        if positions is None:
            yield rows
        else:  # levels in the run's order (the usual case) need no lookup
            yield [(row[0], *row[2::2]) if row[1::2] == in_order else _by_level(row, positions) for row in rows]
        last = rows[-1][0]


def _by_level(row: tuple, positions: dict[int, int]) -> tuple:
    out = [row[0]] + [None] * len(positions)
    for i in range(1, len(row), 2):
        column = positions.get(row[i])
        if column is not None:
            out[1 + column] = row[i + 1]
    return tuple(out)


def snapshot_export(engine: Engine, run_id: int, after_step: int | None = None,
                    batch: int = EXPORT_BATCH) -> Iterator[list[tuple[int, str]]]:
    """A run's stored snapshots in step order, ``batch`` (step, JSON text) pairs at a time.

    Each batch is its own short read (keyset on step), so a long export holds no transaction
    open (on SQLite that would stop WAL checkpoints) and never holds more than one batch.
    """
    last = -1 if after_step is None else after_step
    while True:
        with new_session(engine) as session:
            rows = session.exec(select(Snapshot.step, Snapshot.data)
                                .where(Snapshot.run_id == run_id, Snapshot.step > last)
                                .order_by(Snapshot.step).limit(batch)).all()
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def final_tests(session: Session, run_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Each run's final "test" evaluation results (its latest by step), for the runs that have one."""
    if not run_ids:
        return {}
    rows = session.exec(select(Eval.run_id, Eval.results).where(Eval.run_id.in_(run_ids), Eval.name == "test")
                        .order_by(Eval.step, Eval.id))
    return {run_id: results for run_id, results in rows}


def list_evals(session: Session, run_id: int) -> list[Eval]:
    get_run(session, run_id)
    return list(session.exec(select(Eval).where(Eval.run_id == run_id).order_by(Eval.step, Eval.id)))



def list_logs(session: Session, run_id: int, after: int, limit: int) -> tuple[list[LogLine], int]:
    get_run(session, run_id)
    lines = list(
        session.exec(
            select(LogLine).where(LogLine.run_id == run_id, LogLine.id > after).order_by(LogLine.id).limit(limit)
        )
    )
    return lines, (lines[-1].id if lines else after)

