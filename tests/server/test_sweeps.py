"""Sweeps: creation, validation naming the bad grid point, the summary's maths against a hand-computed
case, cancel, delete, the migration, and one claim per run with several workers at once."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from e2h.schemas import RunStatus
from e2h.stats import mean_ci, paired_difference, t975
from e2h.sweeps import SweepRun, summarise
from server.core.db import MIGRATIONS_DIR, make_engine, migrate
from tests.server.helpers import WORKER, LiveServer, claim, finish

JSON = {"Content-Type": "application/json"}
SCHEDULERS = ["balanced", "gaussian", "sec"]


def create(client: TestClient, **body) -> dict:
    r = client.post("/sweeps", json={"config": {"algorithm": {"max_steps": 5}}, **body})
    assert r.status_code == 201, r.text
    return r.json()


def complete(client: TestClient, sweep_id: int, figures: dict[tuple[int, int], dict]) -> None:
    """Claim every queued run; post a final test eval with ``figures[(group, seed)]`` and succeed it
    (a run without figures fails)."""
    detail = client.get(f"/sweeps/{sweep_id}").json()
    where = {r["id"]: (r["group"], r["seed"]) for r in detail["runs"]}
    while (run := claim(client)) is not None:
        results = figures.get(where[run["id"]])
        fence = {"worker_id": "w1", "attempt": run["attempt"]}
        if results is None:
            assert finish(client, run["id"], status="failed", error="boom").status_code == 200
            continue
        r = client.post(f"/runs/{run['id']}/evals", params=fence, headers=WORKER,
                        json=[{"step": 5, "name": "test", "results": results}])
        assert r.status_code == 202, r.text
        assert finish(client, run["id"]).status_code == 200


def test_a_sweep_queues_every_grid_point_times_seed_as_its_runs(client: TestClient) -> None:
    sweep = create(client, name="three", grid={"scheduler.name": SCHEDULERS}, seeds=[42, 1], tags=["exp"],
                   priority=5)
    assert sweep["status"] == "queued" and sweep["counts"] == {"queued": 6}
    assert sweep["groups"] == [{"scheduler.name": s} for s in SCHEDULERS]
    assert len(sweep["run_ids"]) == 6
    runs = [client.get(f"/runs/{i}").json() for i in sweep["run_ids"]]
    # Seed-major: every group's first seed is queued before any second seed.
    assert [(r["config"]["scheduler"]["name"], r["config"]["algorithm"]["seed"]) for r in runs] == [
        (s, seed) for seed in (42, 1) for s in SCHEDULERS
    ]
    assert all(r["sweep_id"] == sweep["id"] and r["priority"] == 5 and r["tags"] == ["exp"] for r in runs)
    assert all(r["config"]["algorithm"]["max_steps"] == 5 for r in runs)
    assert runs[0]["name"] == "three | scheduler.name=balanced | seed 42"
    assert client.get("/runs").json()["data"][0]["sweep_id"] == sweep["id"]

    listed = client.get("/sweeps").json()
    assert listed["count"] == 1 and listed["data"][0]["run_ids"] == sweep["run_ids"]
    detail = client.get(f"/sweeps/{sweep['id']}").json()
    assert [(r["group"], r["seed"], r["status"]) for r in detail["runs"]] == [
        (g, seed, "queued") for seed in (42, 1) for g in range(3)
    ]
    groups = detail["summary"]["groups"]
    assert [(g["label"], g["runs"], g["finished"]) for g in groups] == [
        (f"scheduler.name={s}", 2, 0) for s in SCHEDULERS
    ]
    assert detail["summary"]["cells"] == [] and detail["summary"]["differences"] == []


def test_a_scheduler_switch_drops_the_base_schedulers_params_and_an_empty_grid_is_one_group(
    client: TestClient,
) -> None:
    base = {"scheduler": {"name": "sec", "params": {"temperature": 0.5}}, "algorithm": {"max_steps": 5}}
    sweep = create(client, config=base, grid={"scheduler.name": ["sec", "gaussian"]}, seeds=[3])
    sec, gaussian = (client.get(f"/runs/{i}").json()["config"]["scheduler"] for i in sweep["run_ids"])
    assert sec == {"name": "sec", "params": {"temperature": 0.5}} and gaussian == {"name": "gaussian", "params": {}}

    seeds_only = create(client, seeds=[7, 8, 9])
    assert seeds_only["groups"] == [{}] and len(seeds_only["run_ids"]) == 3
    detail = client.get(f"/sweeps/{seeds_only['id']}").json()
    assert {r["group"] for r in detail["runs"]} == {0} and detail["summary"]["groups"][0]["label"] == "base"
    # No seeds given: the base config's seed.
    default = create(client, grid={"algorithm.learning_rate": [0.001, 0.002]})
    assert default["seeds"] == [42] and len(default["run_ids"]) == 2


@pytest.mark.parametrize(
    ("grid", "loc", "field", "names"),
    [
        ({"scheduler.name": ["balanced", "nope"]}, ["body", "grid", "scheduler.name", 1], "config.scheduler.name",
         "grid point 1 (scheduler.name=nope), seed 42"),
        # K * min_prob > 1 only for the second value; the field is the parameter.
        ({"scheduler.name": ["gaussian"], "scheduler.params.min_prob": [0.1, 0.3]},
         ["body", "grid", "scheduler.params.min_prob", 1], "config.scheduler.params.min_prob",
         "grid point 1 (scheduler.name=gaussian, scheduler.params.min_prob=0.3)"),
        ({"algorithm.max_stpes": [1]}, ["body", "grid", "algorithm.max_stpes", 0], "config.algorithm.max_stpes",
         "grid point 0 (algorithm.max_stpes=1)"),
        # Above the server's ceiling (E2H_RUN_CEILINGS), as POST /runs refuses it.
        ({"algorithm.learning_rate": [0.001, 0.5]}, ["body", "grid", "algorithm.learning_rate", 1],
         "config.algorithm.learning_rate", "grid point 1 (algorithm.learning_rate=0.5)"),
        ({"model.trust_remote_code": [True]}, ["body", "grid", "model.trust_remote_code", 0],
         "config.model.trust_remote_code", "grid point 0 (model.trust_remote_code=true)"),
    ],
)
def test_one_invalid_grid_point_rejects_the_sweep_naming_the_point_and_the_field(
    client: TestClient, grid: dict, loc: list, field: str, names: str
) -> None:
    r = client.post("/sweeps", json={"grid": grid, "seeds": [42, 1]})
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]
    assert [e for e in errors if e["loc"] == loc and e["field"] == field and e["msg"].startswith(names)], errors
    assert client.get("/runs").json()["count"] == 0 and client.get("/sweeps").json()["count"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"grid": {"algorithm.seed": [1, 2]}}, "grid.algorithm.seed"),
        ({"seeds": [1, 1]}, "seeds"),
        ({"seeds": []}, "seeds"),
        ({"grid": {"scheduler.name": ["sec", "sec"]}}, "grid.scheduler.name"),
        ({"grid": {"scheduler": [{}], "scheduler.name": ["sec"]}}, "grid.scheduler.name"),
        ({"grid": {"a.b": list(range(30)), "c.d": list(range(20))}}, "grid"),  # 600 runs
        ({"grid": {"bad key": [1]}}, "grid"),
        ({"grid": {"scheduler.name": []}}, "grid.scheduler.name"),
        ({"grid": {"algorithm.learning_rate": [0.001, 1e-3]}}, "grid.algorithm.learning_rate"),
        ({"grid": {"scheduler.name": ["sec"]}, "baseline": {"scheduler.name": "cosine"}}, "baseline"),
        ({"grid": {"scheduler.name": ["sec"]}, "baseline": {"task.name": "x"}}, "baseline"),
    ],
)
def test_a_malformed_sweep_is_a_422_naming_the_field(client: TestClient, body: dict, field: str) -> None:
    r = client.post("/sweeps", json=body)
    assert r.status_code == 422, r.text
    assert field in [e["field"] for e in r.json()["detail"]], r.json()
    assert client.get("/runs").json()["count"] == 0


def test_two_values_that_validate_to_the_same_config_are_refused(client: TestClient) -> None:
    r = client.post("/sweeps", json={"grid": {"algorithm.learning_rate": [0.001, "0.001"]}})
    assert r.status_code == 422, r.text
    assert "give the same config" in r.text


# -- the summary ---------------------------------------------------------------------------------

# Accuracy on held-out level 5 per (group, seed); group 0 = balanced, 1 = gaussian, 2 = sec.
HELD_OUT = {
    (0, 1): 0.2, (0, 2): 0.4, (0, 3): 0.6,
    (1, 1): 0.6, (1, 2): 0.5, (1, 3): 0.9,
    (2, 1): 0.5, (2, 2): 0.6, (2, 3): 1.0,
}


def _results(group: int, seed: int) -> dict:
    acc = HELD_OUT[group, seed]
    return {"level_4": {"accuracy": 0.5, "reward_mean": 0.5, "support": 2},
            "level_5": {"accuracy": acc, "reward_mean": acc / 2, "support": 10},
            "overall": {"accuracy": 0.5, "reward_mean": 0.25, "support": 12}}


def test_the_summary_matches_a_hand_computed_case(client: TestClient) -> None:
    sweep = create(client, grid={"scheduler.name": SCHEDULERS}, seeds=[1, 2, 3])
    complete(client, sweep["id"], {key: _results(*key) for key in HELD_OUT})
    detail = client.get(f"/sweeps/{sweep['id']}").json()
    assert detail["status"] == "finished" and detail["counts"] == {"succeeded": 9}
    summary = detail["summary"]
    assert [(lv["key"], lv["heldout"]) for lv in summary["levels"]] == [
        ("level_4", False), ("level_5", True), ("overall", False)
    ]
    assert [g["finished"] for g in summary["groups"]] == [3, 3, 3]
    cell = {(c["group"], c["level"], c["metric"]): c for c in summary["cells"]}
    t2 = 4.302653  # t_{0.975, 2 df}
    # balanced: mean 0.4, sd 0.2 -> half width 4.302653 x 0.2 / sqrt 3 = 0.496828
    b = cell[0, "level_5", "accuracy"]
    assert b["n"] == 3 and b["mean"] == pytest.approx(0.4) and b["sd"] == pytest.approx(0.2)
    assert (b["ci_low"], b["ci_high"]) == (pytest.approx(0.4 - 0.496828, abs=1e-6),
                                           pytest.approx(0.4 + 0.496828, abs=1e-6))
    # sec: 0.5, 0.6, 1.0 -> mean 0.7, variance (0.04 + 0.01 + 0.09) / 2 = 0.07, half width 0.657241
    s = cell[2, "level_5", "accuracy"]
    assert s["mean"] == pytest.approx(0.7) and s["sd"] == pytest.approx(math.sqrt(0.07))
    assert s["ci_high"] - s["mean"] == pytest.approx(t2 * math.sqrt(0.07) / math.sqrt(3))
    assert s["ci_high"] - s["mean"] == pytest.approx(0.657241, abs=1e-6)
    assert cell[2, "level_5", "reward_mean"]["mean"] == pytest.approx(0.35)
    # Verdicts: sec has the highest mean. gaussian - sec = +0.1, -0.1, -0.1: mean -0.0333, sd 0.11547,
    # interval [-0.320, +0.253] reaches 0 -> tied. balanced - sec = -0.3, -0.2, -0.4: mean -0.3, sd 0.1,
    # interval [-0.548, -0.052] below 0 -> behind.
    assert [cell[g, "level_5", "accuracy"]["verdict"] for g in range(3)] == ["behind", "tied", "winner"]
    # Level 4 is 0.5 everywhere: equal means, the first group wins and the rest tie.
    assert [cell[g, "level_4", "accuracy"]["verdict"] for g in range(3)] == ["winner", "tied", "tied"]
    diff = {(d["group"], d["level"], d["metric"]): d for d in summary["differences"]}
    assert summary["baseline"] == 0 and all(d["baseline"] == 0 for d in summary["differences"])
    d = diff[2, "level_5", "accuracy"]  # sec - balanced = 0.3, 0.2, 0.4: mean 0.3, sd 0.1, half 0.248414
    assert d["n"] == 3 and d["mean"] == pytest.approx(0.3) and d["sd"] == pytest.approx(0.1)
    assert (d["ci_low"], d["ci_high"]) == (pytest.approx(0.051586, abs=1e-6), pytest.approx(0.548414, abs=1e-6))
    assert (0, "level_5", "accuracy") not in diff
    # Another baseline: differences against gaussian.
    other = client.get(f"/sweeps/{sweep['id']}", params={"baseline": 1}).json()["summary"]
    d = {(x["group"], x["level"], x["metric"]): x for x in other["differences"]}[0, "level_5", "accuracy"]
    assert other["baseline"] == 1 and d["mean"] == pytest.approx(-0.8 / 3)  # -0.4, -0.1, -0.3
    assert client.get(f"/sweeps/{sweep['id']}", params={"baseline": 3}).status_code == 422
    runs = {(r["group"], r["seed"]): r for r in detail["runs"]}
    assert runs[2, 3]["results"]["level_5"] == {"accuracy": 1.0, "reward_mean": 0.5}


def test_the_summary_counts_only_seeds_that_succeeded_and_pairs_by_seed(client: TestClient) -> None:
    sweep = create(client, grid={"scheduler.name": SCHEDULERS[:2]}, seeds=[1, 2, 3],
                   baseline={"scheduler.name": "gaussian"})
    assert sweep["baseline"] == 1
    figures = {key: _results(*key) for key in HELD_OUT if key != (0, 3)}  # balanced seed 3 fails
    complete(client, sweep["id"], figures)
    summary = client.get(f"/sweeps/{sweep['id']}").json()["summary"]
    assert [g["finished"] for g in summary["groups"]] == [2, 3]
    assert summary["groups"][0]["statuses"] == {"succeeded": 2, "failed": 1}
    cell = {(c["group"], c["level"], c["metric"]): c for c in summary["cells"]}
    assert cell[0, "level_5", "accuracy"]["n"] == 2 and cell[0, "level_5", "accuracy"]["mean"] == pytest.approx(0.3)
    (d,) = [x for x in summary["differences"] if (x["level"], x["metric"]) == ("level_5", "accuracy")]
    # balanced - gaussian over seeds 1 and 2 only: -0.4, -0.1
    assert (d["group"], d["baseline"], d["n"]) == (0, 1, 2) and d["mean"] == pytest.approx(-0.25)
    assert d["ci_high"] - d["mean"] == pytest.approx(12.706205 * math.sqrt(0.045) / math.sqrt(2))


def test_summarise_alone_with_one_seed_has_no_intervals_and_ties_everyone() -> None:
    def run(i: int, group: int, acc: float, status: RunStatus = RunStatus.succeeded) -> SweepRun:
        return SweepRun(id=i, name="r", status=status, group=group, seed=42, step=1, max_steps=1, worker_id=None,
                        error=None, results={"level_5": {"accuracy": acc}}, finished_at=None)

    summary = summarise([{"k": 1}, {"k": 2}], [run(1, 0, 0.1), run(2, 1, 0.9), run(3, 1, 0.0, RunStatus.failed)],
                        heldout={"level_5"}, baseline=0)
    cells = {c.group: c for c in summary.cells if c.metric == "accuracy"}
    assert cells[1].mean == 0.9 and cells[1].ci_low is None and cells[1].verdict == "winner"
    assert cells[0].verdict == "tied"  # one shared seed cannot separate them
    (d,) = summary.differences  # reward_mean has no values: no difference
    assert (d.metric, d.n, d.mean, d.ci_high) == ("accuracy", 1, pytest.approx(0.8), None)
    with pytest.raises(ValueError, match="baseline"):
        summarise([{"k": 1}], [], set(), baseline=1)


def test_the_t_quantile_matches_scipy_for_every_degree_of_freedom() -> None:
    from scipy.stats import t

    for df in [*range(1, 200), 500, 10_000]:
        assert t975(df) == pytest.approx(float(t.ppf(0.975, df)), abs=2e-6), df
    with pytest.raises(ValueError):
        t975(0)
    assert mean_ci([]).mean is None and mean_ci([2.0]).ci_low is None
    e = paired_difference({1: 3.0, 2: 5.0, 9: 1.0}, {1: 1.0, 2: 2.0})
    assert (e.n, e.mean) == (2, 2.5)


# -- cancel, delete --------------------------------------------------------------------------------


def test_cancel_stops_queued_and_running_runs_and_delete_needs_a_finished_sweep(client: TestClient) -> None:
    sweep = create(client, grid={"scheduler.name": SCHEDULERS}, seeds=[42])
    running = claim(client)
    assert client.delete(f"/sweeps/{sweep['id']}", headers=JSON).status_code == 409
    r = client.post(f"/sweeps/{sweep['id']}/cancel", headers=JSON)
    assert r.status_code == 200, r.text
    assert r.json()["counts"] == {"running": 1, "cancelled": 2} and r.json()["status"] == "running"
    assert client.get(f"/runs/{running['id']}").json()["cancel_requested"] is True
    assert client.delete(f"/sweeps/{sweep['id']}", headers=JSON).status_code == 409  # still running
    assert finish(client, running["id"], status="cancelled").status_code == 200
    assert client.get(f"/sweeps/{sweep['id']}").json()["status"] == "finished"
    assert client.post(f"/sweeps/{sweep['id']}/cancel", headers=JSON).status_code == 409

    other = create(client, seeds=[1])
    assert client.delete(f"/sweeps/{sweep['id']}", headers=JSON).status_code == 204
    assert client.get(f"/sweeps/{sweep['id']}").status_code == 404
    assert all(client.get(f"/runs/{i}").status_code == 404 for i in sweep["run_ids"])
    assert client.get("/runs").json()["count"] == 1  # the other sweep's run is left alone
    assert client.get(f"/sweeps/{other['id']}").json()["run_ids"] == other["run_ids"]
    for method, path in (("GET", "/sweeps/99"), ("POST", "/sweeps/99/cancel"), ("DELETE", "/sweeps/99")):
        r = client.request(method, path, headers=JSON)
        assert r.status_code == 404 and "sweep 99 not found" in r.json()["detail"]


# -- migration, several workers ---------------------------------------------------------------------


def test_upgrading_a_database_with_runs_keeps_their_history(tmp_path: Path) -> None:
    """0001 -> 0002 -> 0001 -> 0002 on SQLite with foreign keys on: no run loses its snapshots."""
    from alembic import command
    from alembic.config import Config

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrate(engine, "0001")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO runs (name, status, priority, tags, config, num_levels, max_steps, step, snapshot_count, "
            "attempt, leases_lost, cancel_requested, state_version, created_at, updated_at) VALUES ('old', "
            "'succeeded', 0, '[]', '{}', 5, 10, 10, 1, 1, 0, 0, 1, '2026-01-01', '2026-01-01')")
        conn.exec_driver_sql("INSERT INTO snapshots (run_id, step, data) VALUES (1, 0, '{}')")
    migrate(engine)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
        conn.commit()
    migrate(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("SELECT name, sweep_id FROM runs").fetchall() == [("old", None)]
        assert conn.exec_driver_sql("SELECT count(*) FROM snapshots").scalar() == 1
    engine.dispose()


@pytest.mark.slow
def test_four_workers_claim_each_run_of_a_30_run_sweep_once(live_server: LiveServer) -> None:
    """6 schedulers x 5 seeds, four workers claiming at once over HTTP: every run claimed exactly once."""
    api = httpx.Client(base_url=live_server.url, timeout=30)
    schedulers = ["balanced", "classic", "cosine", "gaussian", "sec", "variance_regularized"]
    r = api.post("/sweeps", json={"grid": {"scheduler.name": schedulers}, "seeds": [1, 2, 3, 4, 5]})
    assert r.status_code == 201, r.text
    run_ids = r.json()["run_ids"]
    claimed: dict[str, list[int]] = {}

    def work(worker_id: str) -> None:
        with httpx.Client(base_url=live_server.url, timeout=30, headers=WORKER) as w:
            mine = claimed.setdefault(worker_id, [])
            while (c := w.post("/workers/claim", json={"worker_id": worker_id})).status_code == 200:
                run = c.json()["run"]
                mine.append(run["id"])
                done = w.post(f"/runs/{run['id']}/finish",
                              json={"worker_id": worker_id, "attempt": run["attempt"], "status": "succeeded"})
                assert done.status_code == 200, done.text

    threads = [threading.Thread(target=work, args=(f"gpu{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    every = [i for ids in claimed.values() for i in ids]
    assert sorted(every) == sorted(run_ids), claimed  # each once, none missed
    assert api.get(f"/sweeps/{r.json()['id']}").json()["counts"] == {"succeeded": 30}
