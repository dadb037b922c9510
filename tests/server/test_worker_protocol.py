"""Claims, leases, heartbeats, the reaper and fencing of stale workers."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import select

from e2h.config import RunConfig
from e2h.schemas import RunCreate, RunStatus
from server import crud
from server.core.config import Settings
from server.core.db import new_session, write_transaction
from server.main import create_app
from server.models import Run, utcnow
from tests.server.helpers import REPO, WORKER, LiveServer, claim, finish, post_snapshots, snapshot, submit


def test_claim_takes_the_highest_priority_then_the_oldest(client: TestClient) -> None:
    low = submit(client, name="low")
    high1 = submit(client, name="high1", priority=5)
    high2 = submit(client, name="high2", priority=5)
    mid = submit(client, name="mid", priority=1)
    order = [claim(client, f"w{i}")["id"] for i in range(4)]
    assert order == [high1["id"], high2["id"], mid["id"], low["id"]]
    assert claim(client) is None  # 204: the queue is empty

    run = client.get(f"/runs/{high1['id']}").json()
    assert (run["status"], run["worker_id"], run["attempt"]) == ("running", "w0", 1)
    assert run["started_at"] and run["lease_expires_at"] > run["started_at"]
    workers = {w["id"]: w for w in client.get("/workers").json()}
    assert workers["w0"]["labels"] == ["cpu"] and workers["w0"]["run_id"] == high1["id"]


def _claim_with_gpus(client: TestClient, gpus_free: int) -> int | None:
    r = client.post("/workers/claim", json={"worker_id": f"g{gpus_free}", "gpus_free": gpus_free}, headers=WORKER)
    assert r.status_code in (200, 204), r.text
    return r.json()["run"]["id"] if r.status_code == 200 else None


def test_a_run_is_only_claimed_by_a_worker_with_the_gpus_it_needs(client: TestClient) -> None:
    e2h_layout = {"model": {"name_or_path": "builtin:tiny"},
                  "algorithm": {"use_vllm": True, "vllm_mode": "server", "num_processes": 2}}
    three = submit(client, name="vllm-server-and-2-processes", priority=9, config=e2h_layout)
    two = submit(client, name="2-processes", priority=5, config={"algorithm": {"num_processes": 2}})
    one = submit(client, name="1-process")
    # A CPU worker (0 GPUs) gets no vLLM run; a 1-GPU worker skips the runs needing more, keeping their order.
    assert _claim_with_gpus(client, 1) == one["id"]
    assert _claim_with_gpus(client, 0) == two["id"]  # several CPU processes join over gloo
    assert _claim_with_gpus(client, 2) is None  # the run left needs 3
    assert client.get(f"/runs/{three['id']}").json()["status"] == "queued"
    assert _claim_with_gpus(client, 3) == three["id"]


def test_claim_response_carries_the_run_and_its_lease(client: TestClient) -> None:
    submit(client)
    r = client.post("/workers/claim", json={"worker_id": "w1"}, headers=WORKER)
    body = r.json()
    assert r.status_code == 200 and body["lease_expires_at"] == body["run"]["lease_expires_at"]
    assert body["run"]["config"]["task"]["name"] == "arithmetic"
    assert client.post("/workers/claim", json={"worker_id": "w1"}, headers=WORKER).status_code == 204
    assert client.post("/workers/claim", json={}, headers=WORKER).status_code == 422


def test_heartbeat_extends_the_lease_and_records_progress(client: TestClient) -> None:
    run = submit(client)
    first = claim(client)["lease_expires_at"]
    r = client.post(
        f"/runs/{run['id']}/heartbeat",
        json={"worker_id": "w1", "attempt": 1, "step": 7, "output_dir": "/out/run1"},
        headers=WORKER,
    )
    assert r.status_code == 200 and r.json() == {
        "cancel_requested": False,
        "lease_expires_at": r.json()["lease_expires_at"],
    }
    assert r.json()["lease_expires_at"] > first
    got = client.get(f"/runs/{run['id']}").json()
    assert (got["step"], got["output_dir"]) == (7, "/out/run1")


def test_the_run_keeps_the_latest_of_each_reported_field(client: TestClient) -> None:
    """The worker's report (e2h.schemas.RunReport) reaches the run: a field left out keeps its last value."""
    run = submit(client)
    claim(client)
    train = {"role": "train", "command": ["python", "-m", "e2h.train"], "env": {"CUDA_VISIBLE_DEVICES": "1,2"}}
    beat = {"worker_id": "w1", "attempt": 1}
    assert client.post(f"/runs/{run['id']}/heartbeat", json={**beat, "step": 1, "processes": [train]},
                       headers=WORKER).status_code == 200
    assert client.post(f"/runs/{run['id']}/heartbeat", json={**beat, "step": 2}, headers=WORKER).status_code == 200
    report = client.get(f"/runs/{run['id']}").json()["report"]
    assert report == {"step": 2, "output_dir": None, "processes": [train]}
    refused = client.post(f"/runs/{run['id']}/heartbeat", json={**beat, "gpus": [0]}, headers=WORKER)
    assert refused.status_code == 422 and refused.json()["detail"][0]["field"] == "gpus"
    assert client.get(f"/runs/{submit(client)['id']}").json()["report"] is None  # never claimed: nothing reported


def _queued_runs(engine: Engine, n: int, **fields) -> list[int]:
    with new_session(engine) as s:
        return [crud.create_run(s, RunCreate(name=f"r{i}", **fields)).id for i in range(n)]


def test_lease_expiry_requeues_then_fails_after_max_attempts(engine: Engine) -> None:
    (run_id,) = _queued_runs(engine, 1)
    t0 = utcnow()
    with new_session(engine) as s:
        for attempt in (1, 2, 3):
            now = t0 + timedelta(minutes=10 * attempt)
            run = crud.claim_run(s, f"w{attempt}", [], lease_seconds=60, now=now)
            assert (run.id, run.attempt, run.status) == (run_id, attempt, "running")
            assert crud.reap_expired(s, max_attempts=3, now=now + timedelta(seconds=59)) == []  # still leased
            assert crud.reap_expired(s, max_attempts=3, now=now + timedelta(seconds=61)) == [run_id]
            run = crud.get_run(s, run_id)
            if attempt < 3:
                assert (run.status, run.attempt, run.worker_id, run.lease_expires_at) == (
                    "queued",
                    attempt + 1,
                    None,
                    None,
                )
        assert run.status == "failed" and run.attempt == 3 and run.finished_at is not None
        assert "lease lost 3 times (max_attempts=3)" in run.error and "'w3' stopped heartbeating" in run.error
        assert crud.claim_run(s, "w4", [], 60) is None


def test_an_expired_run_whose_cancel_was_requested_is_cancelled_not_requeued(engine: Engine) -> None:
    (run_id,) = _queued_runs(engine, 1)
    with new_session(engine) as s:
        crud.claim_run(s, "w1", [], 60)
        crud.cancel_run(s, run_id)
        assert crud.reap_expired(s, 3, now=utcnow() + timedelta(minutes=5)) == [run_id]
        assert crud.get_run(s, run_id).status == "cancelled"


def test_a_stale_worker_is_fenced_off(client: TestClient, settings: Settings) -> None:
    """Worker A loses its lease; the run goes back to the queue and B (then A again) claims it.
    A's old attempt gets 409 on heartbeat, snapshots and finish; the holder is unaffected."""
    run = submit(client)
    rid = run["id"]
    assert claim(client, "A")["attempt"] == 1
    with new_session(client.app.state.engine) as s:
        assert crud.reap_expired(s, settings.max_attempts, now=utcnow() + timedelta(hours=1)) == [rid]

    def stale_writes(worker: str, attempt: int) -> list[int]:
        return [
            client.post(
                f"/runs/{rid}/heartbeat", json={"worker_id": worker, "attempt": attempt}, headers=WORKER
            ).status_code,
            post_snapshots(client, rid, [snapshot(1)], worker_id=worker, attempt=attempt).status_code,
            client.post(
                f"/runs/{rid}/logs",
                params={"worker_id": worker, "attempt": attempt},
                json={"lines": ["x"]},
                headers=WORKER,
            ).status_code,
            client.post(
                f"/runs/{rid}/finish",
                json={"worker_id": worker, "attempt": attempt, "status": "succeeded"},
                headers=WORKER,
            ).status_code,
        ]

    assert stale_writes("A", 1) == [409, 409, 409, 409]  # requeued: nobody holds it
    assert claim(client, "B")["attempt"] == 2
    assert stale_writes("A", 1) == [409, 409, 409, 409]  # B holds it
    r = client.post(f"/runs/{rid}/heartbeat", json={"worker_id": "A", "attempt": 2}, headers=WORKER)
    assert "leased to worker 'B'" in r.json()["detail"]

    with new_session(client.app.state.engine) as s:
        crud.reap_expired(s, settings.max_attempts, now=utcnow() + timedelta(hours=2))
    assert claim(client, "A")["attempt"] == 3  # A again, a new attempt: the old one stays fenced
    assert stale_writes("A", 2)[:2] == [409, 409]
    r = client.post(f"/runs/{rid}/heartbeat", json={"worker_id": "A", "attempt": 1}, headers=WORKER)
    assert r.status_code == 409 and "attempt 1 of run" in r.json()["detail"] and "stale" in r.json()["detail"]

    assert post_snapshots(client, rid, [snapshot(1)], worker_id="A", attempt=3).status_code == 202
    assert finish(client, rid, "A", attempt=3).status_code == 200
    assert client.get(f"/runs/{rid}/snapshots").json()["steps"] == [1]  # nothing from the stale attempts


def test_finish_records_the_outcome_and_a_retried_finish_is_idempotent(client: TestClient) -> None:
    run = submit(client)
    claim(client)
    r = client.post(
        f"/runs/{run['id']}/finish",
        json={"worker_id": "w1", "attempt": 1, "status": "failed", "error": "CUDA OOM", "output_dir": "/o"},
        headers=WORKER,
    )
    body = r.json()
    assert r.status_code == 200 and (body["status"], body["error"], body["output_dir"]) == ("failed", "CUDA OOM", "/o")
    assert body["finished_at"] and body["lease_expires_at"] is None
    again = client.post(
        f"/runs/{run['id']}/finish", json={"worker_id": "w1", "attempt": 1, "status": "failed"}, headers=WORKER
    )
    assert again.status_code == 200 and again.json()["error"] == "CUDA OOM"
    assert finish(client, run["id"], status="succeeded").status_code == 409
    r = finish(client, run["id"], status="running")
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "status"


def test_the_reaper_runs_in_the_background(settings: Settings) -> None:
    settings = settings.model_copy(update={"lease_seconds": 0.3, "reaper_interval_seconds": 0.1})
    with TestClient(create_app(settings)) as c:
        run = submit(c)
        claim(c)
        deadline = time.monotonic() + 10
        while (got := c.get(f"/runs/{run['id']}").json())["status"] != "queued":
            assert time.monotonic() < deadline, got
            time.sleep(0.05)
        assert got["attempt"] == 2


_CLAIMER = """
import json, sys, threading, time
from pathlib import Path
from server import crud
from server.core.db import make_engine, new_session
url, name, threads, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
engine = make_engine(url)
claimed = {}
def work(i):
    worker = f"{name}-{i}"
    claimed[worker] = []
    with new_session(engine) as s:
        while (run := crud.claim_run(s, worker, [], 600)) is not None:
            claimed[worker].append(run.id)
print("ready", flush=True)
deadline = time.monotonic() + 60
while not go.exists():
    assert time.monotonic() < deadline
    time.sleep(0.005)
ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps(claimed))
"""


@pytest.mark.slow
def test_exactly_once_claim_8_threads_and_2_processes_200_runs(
    engine: Engine, settings: Settings, live_server: LiveServer, tmp_path
) -> None:
    """8 threads claim over HTTP from a real server; 2 other processes (standing in for a
    second server on the same database) claim at the same time. Each run goes to one."""
    run_ids = set(_queued_runs(engine, 200))
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CLAIMER, settings.resolved_database_url, f"proc{p}", "2", str(go)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        for p in range(2)
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"

    claimed: dict[str, list[int]] = {}
    lock = threading.Lock()
    start = threading.Barrier(9)

    def work(i: int) -> None:
        mine = []
        with httpx.Client(base_url=live_server.url, headers=WORKER, timeout=60) as http:
            start.wait()
            while (r := http.post("/workers/claim", json={"worker_id": f"thread-{i}"})).status_code == 200:
                mine.append(r.json()["run"]["id"])
            assert r.status_code == 204, r.text
        with lock:
            claimed[f"thread-{i}"] = mine

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    go.touch()
    start.wait()
    for t in threads:
        t.join(timeout=120)
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        claimed.update(json.loads(out))

    everything = [rid for ids in claimed.values() for rid in ids]
    counts = {w: len(ids) for w, ids in claimed.items()}
    assert len(everything) == len(set(everything)) == 200, counts  # nobody got a run twice
    assert set(everything) == run_ids
    # Claimers really raced (SQLite's lock is not fair between processes, so no share is promised).
    assert sum(1 for n in counts.values() if n) >= 2, counts
    with new_session(engine) as s:
        holders = {r.id: r.worker_id for r in s.exec(select(Run))}
        assert all(r.status == RunStatus.running for r in s.exec(select(Run)))
    assert holders == {rid: w for w, ids in claimed.items() for rid in ids}


def test_a_failed_write_leaves_nothing_behind(engine: Engine) -> None:
    with new_session(engine) as s:
        with pytest.raises(RuntimeError), write_transaction(s):
            s.add(Run(name="half", config=RunConfig().model_dump(mode="json"), num_levels=5, max_steps=1))
            s.flush()
            raise RuntimeError("boom")
        assert s.exec(select(Run)).all() == []


def test_release_requeues_as_a_new_attempt_without_counting_as_a_lost_lease(client: TestClient, settings) -> None:
    run = submit(client)
    rid = run["id"]
    for attempt in range(1, 6):  # more releases than max_attempts: a graceful hand-back never fails a run
        assert claim(client, "A")["attempt"] == attempt
        r = client.post(
            f"/runs/{rid}/release", json={"worker_id": "A", "attempt": attempt, "output_dir": "/o/1"}, headers=WORKER
        )
        assert r.status_code == 200 and r.json()["status"] == "queued", r.text
        assert (r.json()["attempt"], r.json()["leases_lost"], r.json()["output_dir"]) == (attempt + 1, 0, "/o/1")
        # The released attempt is fenced off, even for the same worker.
        assert post_snapshots(client, rid, [snapshot(1)], worker_id="A", attempt=attempt).status_code == 409
    assert client.post(f"/runs/{rid}/release", json={"worker_id": "A", "attempt": 6}, headers=WORKER).status_code == 409

    claim(client, "B")
    client.post(f"/runs/{rid}/cancel", headers={"Content-Type": "application/json"})
    r = client.post(f"/runs/{rid}/release", json={"worker_id": "B", "attempt": 6}, headers=WORKER)
    assert r.json()["status"] == "cancelled"  # asked to stop: no point requeueing


def test_a_restarted_server_gives_workers_a_lease_period_before_reaping(settings: Settings) -> None:
    """Nobody could heartbeat while the server was down: expired leases are not reaped at once."""
    settings = settings.model_copy(update={"lease_seconds": 1.0, "reaper_interval_seconds": 0.05})
    with TestClient(create_app(settings)) as c:
        run = submit(c)
        lease = datetime.fromisoformat(claim(c)["lease_expires_at"])
    deadline = time.monotonic() + 10  # the outage: until the lease has run out
    while utcnow() <= lease:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with TestClient(create_app(settings)) as c:
        r = c.post(f"/runs/{run['id']}/heartbeat", json={"worker_id": "w1", "attempt": 1}, headers=WORKER)
        assert r.status_code == 200, r.text  # the worker checks in after the restart: it keeps its run
        deadline = time.monotonic() + 10  # then stops: one lease later the run goes back to the queue
        while (got := c.get(f"/runs/{run['id']}").json())["status"] != "queued":
            assert time.monotonic() < deadline, got
            time.sleep(0.05)


def test_every_worker_write_must_name_its_attempt(client: TestClient) -> None:
    """A write that does not say which attempt it belongs to could come from a stale worker: 422."""
    rid = submit(client)["id"]
    claim(client, "A")
    without = [
        client.post(f"/runs/{rid}/heartbeat", json={"worker_id": "A", "step": 3}, headers=WORKER),
        post_snapshots(client, rid, [snapshot(1)], worker_id="A", attempt=None),
        client.post(f"/runs/{rid}/evals", params={"worker_id": "A"}, json={"step": 1, "results": {}}, headers=WORKER),
        client.post(f"/runs/{rid}/logs", params={"worker_id": "A"}, json={"lines": ["x"]}, headers=WORKER),
        client.post(f"/runs/{rid}/release", json={"worker_id": "A"}, headers=WORKER),
        client.post(f"/runs/{rid}/finish", json={"worker_id": "A", "status": "succeeded"}, headers=WORKER),
    ]
    assert [r.status_code for r in without] == [422] * 6
    assert all("attempt" in [e["field"] for e in r.json()["detail"]] for r in without)
    run = client.get(f"/runs/{rid}").json()
    assert (run["status"], run["step"], run["snapshot_count"]) == ("running", 0, 0)
    assert client.get(f"/runs/{rid}/logs").json()["data"] == [] and client.get(f"/runs/{rid}/evals").json() == []


@pytest.mark.parametrize("reported", ["succeeded", "failed"])
def test_a_run_whose_cancel_was_requested_ends_cancelled_whatever_the_worker_reports(
    client: TestClient, reported: str
) -> None:
    rid = submit(client)["id"]
    claim(client, "A")
    assert client.post(f"/runs/{rid}/cancel", headers={"Content-Type": "application/json"}).json()["cancel_requested"]
    r = finish(client, rid, "A", status=reported, error="boom" if reported == "failed" else None)
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    assert r.json()["error"].startswith(f"cancel requested; the worker then reported {reported}")
    again = finish(client, rid, "A", status=reported)  # a retried finish whose reply was lost
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    assert finish(client, rid, "A", status="cancelled").json()["status"] == "cancelled"
