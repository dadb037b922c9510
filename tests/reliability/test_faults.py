"""Fault injection: crash the worker, the server and the training process mid-run; lose nothing.

Every test runs a real server (uvicorn subprocess, SQLite file) and real worker processes
training the tiny model, injects the fault with a signal, then checks through the API and
the database file that every run and every step is there exactly once. Each test prints
one ``fault-report:`` line (``pytest -rP`` shows it) with what was injected and measured.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psutil
import pytest

from e2h.client import Client
from e2h.outputs import LOG_FILE
from e2h.trainer import last_complete_checkpoint
from tests.reliability.conftest import (
    WorkerProcess,
    alembic_head,
    cheapest_config,
    snapshot_steps,
    spool_steps,
    sqlite_report,
    tiny_config,
    wait_for,
)
from worker.shipper import MAX_LINE, _last_segment

pytestmark = pytest.mark.slow


def finished(api: Client, run_id: int) -> dict | None:
    run = api.get(run_id)
    return run if run.status in ("succeeded", "failed", "cancelled") else None


def shipped_log_lines(output_dir: str | Path) -> list[str]:
    """train.log as the shipper sends it (progress-bar redraws collapsed, blank lines dropped)."""
    # Bytes, split on newlines only: read_text() would turn the bars' carriage returns into lines.
    raw = (Path(output_dir) / LOG_FILE).read_bytes().split(b"\n")[:-1]
    lines = [_last_segment(line.decode("utf-8", "replace"))[:MAX_LINE] for line in raw]
    return [line for line in lines if line.strip()]


def server_log_lines(api: Client, run_id: int) -> list[str]:
    lines, after = [], 0
    while page := api.logs(run_id, after=after, limit=1000).data:
        lines += [entry.line for entry in page]
        after = page[-1].id
    return lines


def is_subsequence(needle: list[str], haystack: list[str]) -> bool:
    it = iter(haystack)
    return all(any(line == other for other in it) for line in needle)


def assert_database_sound(db_path: Path, runs: int) -> None:
    report = sqlite_report(db_path)
    assert report["integrity"] == ["ok"], report
    assert report["foreign_keys"] == [], report
    assert report["revision"] == [alembic_head()], report
    assert report["runs"] == runs, report
    assert report["duplicate_steps"] == [], report
    assert report["count_mismatches"] == [], report


# -- 1. a worker is SIGKILLed mid-run -----------------------------------------------------------

WORKER_KILLS = 2


def held_past(api: Client, run_id: int, workers: list[WorkerProcess], attempt: int, min_step: int):
    """(run, the live worker process holding it) once ``attempt`` of the run reached ``min_step``."""
    run = api.get(run_id)
    holder = next((w for w in workers if w.holds(run) and w.proc.poll() is None), None)
    if holder and run.status == "running" and run.attempt == attempt and run.step >= min_step:
        return run, holder
    return None


def test_worker_sigkilled_mid_run_is_resumed_by_another_worker(fault_server, fault_api, spawn_worker, tmp_path):
    """Kill the worker holding the run (SIGKILL, twice, each time after a checkpoint): an idle
    worker process takes it over once the lease expires and resumes from the checkpoint."""
    api, max_steps = fault_api, 24
    run_id = api.submit(tiny_config(max_steps, save_steps=3), name="outlives-its-workers").id
    shared = tmp_path / "shared-work"  # the workers resume each other's runs: a shared filesystem
    workers = [spawn_worker(fault_server.url, work_dir=shared), spawn_worker(fault_server.url, work_dir=shared)]
    started = time.monotonic()
    killed_at: list[int] = []
    expected_resume: list[int] = []
    for kill in range(WORKER_KILLS):
        # Past a checkpoint (every 3 steps) and a few steps beyond, so the next attempt resumes
        # and redoes steps the server already holds.
        attempt, min_step = kill + 1, 7 * (kill + 1)
        run, holder = wait_for(lambda a=attempt, s=min_step: held_past(api, run_id, workers, a, s), 240,
                               f"attempt {attempt} to reach step {min_step}",
                               logs=lambda: "\n".join(w.log() for w in workers))
        training = holder.training_processes()
        assert training, "the holder trains in a child process"
        holder.kill()
        killed_at.append(run.step)
        # The kernel takes the orphaned training process down too (PR_SET_PDEATHSIG): it must not
        # go on writing into the output dir the next attempt resumes from.
        _, alive = psutil.wait_procs(training, timeout=15)
        assert not alive, f"training processes outlived their SIGKILLed worker: {alive}"
        # Nothing writes into the output dir now: its newest complete checkpoint is where the next
        # attempt must resume (it can be ahead of the server's step: shipping lags training).
        assert run.output_dir, "the worker reports its output dir with every heartbeat"
        newest = last_complete_checkpoint(run.output_dir)
        assert newest, f"no complete checkpoint in {run.output_dir} at step {run.step}"
        expected_resume.append(int(Path(newest).name.removeprefix("checkpoint-")))
        workers.append(spawn_worker(fault_server.url, work_dir=shared))  # a spare: the survivor takes the run

    final = wait_for(lambda: finished(api, run_id), 400, "the run to finish",
                     logs=lambda: "\n".join(w.log() for w in workers))
    elapsed = time.monotonic() - started
    assert final.status == "succeeded", final.error
    assert final.attempt == WORKER_KILLS + 1 and final.leases_lost == WORKER_KILLS
    steps = snapshot_steps(api, run_id)
    assert steps == list(range(1, max_steps + 1)), steps
    assert final.snapshot_count == max_steps
    assert [e.name for e in api.evals(run_id)] == ["test"]
    claims = sorted(c for w in workers for c in w.claims())
    assert claims == [(run_id, a) for a in range(1, WORKER_KILLS + 2)], "each attempt claimed by exactly one worker"
    survivor = next(w for w in workers if w.holds(final))
    assert survivor.proc.poll() is None, "the run was finished by a live worker"
    train_log = (Path(final.output_dir) / LOG_FILE).read_text()
    resumed = [int(line.rsplit("(step ", 1)[1].rstrip(")")) for line in train_log.splitlines()
               if "resuming from" in line]
    assert len(resumed) == WORKER_KILLS, resumed
    assert resumed == expected_resume, (resumed, expected_resume, killed_at)
    assert_database_sound(fault_server.db_path, runs=1)
    print(f"fault-report: worker SIGKILL x{WORKER_KILLS} at server steps {killed_at}, resumed from checkpoint "
          f"steps {resumed}; steps 1..{max_steps} stored once each (0 lost, 0 duplicated); {elapsed:.0f} s")


# -- 2. the server is SIGKILLed and restarted mid-run ---------------------------------------------

SERVER_KILLS = 3


def test_server_sigkilled_and_restarted_mid_run_loses_nothing(fault_server, fault_api, spawn_worker):
    """SIGKILL the server three times while runs train (the last time right after it
    acknowledged a new run), restart it on the same SQLite file each time."""
    api, max_steps = fault_api, 30
    runs = {api.submit(tiny_config(max_steps), name=f"r{i}").id: max_steps for i in range(SERVER_KILLS)}
    # Not --burst: a claim whose reply a crash swallowed is requeued only when its lease expires,
    # and the worker must still be there to take it.
    worker = spawn_worker(fault_server.url)
    started = time.monotonic()
    downtime = 0.0
    for i, run_id in enumerate(list(runs)):
        wait_for(lambda rid=run_id: api.get(rid).step >= 5, 240, f"run {run_id} to train", logs=worker.log)
        if i == SERVER_KILLS - 1:
            late = api.submit(cheapest_config(2), name="acknowledged-just-before-the-crash")
            runs[late.id] = 2
        t = time.monotonic()
        fault_server.kill()
        fault_server.start()
        downtime += time.monotonic() - t

    for run_id in runs:
        wait_for(lambda rid=run_id: finished(api, rid), 400, f"run {run_id} to finish", logs=worker.log)
    elapsed = time.monotonic() - started
    duplicated_log_lines = 0
    for run_id, steps in runs.items():
        run = api.get(run_id)
        assert run.status == "succeeded", run.error
        assert snapshot_steps(api, run_id) == list(range(1, steps + 1))
        assert run.snapshot_count == steps
        assert spool_steps(run.output_dir) == list(range(1, steps + 1))
        assert [e.name for e in api.evals(run_id)] == ["test"]
        # Log lines are at least once: a batch the server stored just before dying, whose reply
        # was lost, is sent again. None may be missing.
        sent, stored = shipped_log_lines(run.output_dir), server_log_lines(api, run_id)
        assert is_subsequence(sent, stored), f"log lines of run {run_id} lost"
        duplicated_log_lines += len(stored) - len(sent)
    assert worker.stop() == 0
    fault_server.stop()
    assert_database_sound(fault_server.db_path, runs=len(runs))
    print(f"fault-report: server SIGKILL x{SERVER_KILLS} (restart took {downtime / SERVER_KILLS:.1f} s each); "
          f"{len(runs)}/{len(runs)} runs and all {sum(runs.values())} snapshots present once; "
          f"integrity_check ok, revision head; {duplicated_log_lines} log lines resent; {elapsed:.0f} s")


# -- 3. the server is unreachable for 30 s --------------------------------------------------------

OUTAGE_SECONDS = 30


def test_server_unreachable_30s_worker_spools_and_catches_up(fault_server, fault_api, spawn_worker):
    api, max_steps = fault_api, 150
    run_id = api.submit(tiny_config(max_steps), name="through-an-outage").id
    worker = spawn_worker(fault_server.url, "--burst")
    out = wait_for(lambda: (r := api.get(run_id)).step >= 3 and r.output_dir, 240, "training to start",
                   logs=worker.log)
    fault_server.stop()
    before = len(snapshot_rows(fault_server.db_path, run_id))
    time.sleep(OUTAGE_SECONDS)  # the outage under test
    spooled = spool_steps(out)
    assert worker.proc.poll() is None, "the worker outlived the outage"
    assert len(spooled) > before, "training went on during the outage, into the spool"
    back = time.monotonic()
    fault_server.start()
    wait_for(lambda: api.get(run_id).snapshot_count >= len(spooled), 120, "the spool to reach the server")
    catch_up = time.monotonic() - back
    final = wait_for(lambda: finished(api, run_id), 300, "the run to finish", logs=worker.log)
    assert final.status == "succeeded", final.error
    assert snapshot_steps(api, run_id) == list(range(1, max_steps + 1))
    assert final.snapshot_count == max_steps
    # A clean stop loses no reply, so here the log lines arrive exactly once too.
    assert server_log_lines(api, run_id) == shipped_log_lines(out)
    assert worker.proc.wait(120) == 0
    fault_server.stop()
    assert_database_sound(fault_server.db_path, runs=1)
    print(f"fault-report: server down {OUTAGE_SECONDS} s x1 from step {before}; {len(spooled) - before} steps "
          f"spooled meanwhile, all on the server {catch_up:.1f} s after the restart began; steps 1..{max_steps} "
          f"once each, log lines exactly once (0 lost, 0 duplicated)")


def snapshot_rows(db_path: Path, run_id: int) -> list[int]:
    import sqlite3

    conn = sqlite3.connect(db_path)
    try:
        return [s for (s,) in conn.execute("SELECT step FROM snapshots WHERE run_id = ? ORDER BY step", (run_id,))]
    finally:
        conn.close()


# -- 5. the OS kills the training process ----------------------------------------------------------


def test_training_process_killed_by_the_os_fails_the_run_and_the_worker_goes_on(
    fault_server, fault_api, spawn_worker
):
    """SIGKILL the training child, as the OOM killer would: the run fails naming the signal and
    the same worker goes on to the next queued run."""
    api = fault_api
    doomed = api.submit(tiny_config(500), name="oom-killed", priority=10).id
    after = api.submit(tiny_config(3), name="next-in-queue").id
    worker = spawn_worker(fault_server.url, "--burst")
    wait_for(lambda: api.get(doomed).step >= 2, 240, "training to start", logs=worker.log)
    training = worker.training_processes()
    assert len(training) == 1 and "e2h.train" in training[0].cmdline(), training
    training[0].send_signal(signal.SIGKILL)
    failed = wait_for(lambda: finished(api, doomed), 60, "the run to fail", logs=worker.log)
    assert failed.status == "failed"
    first_line = failed.error.splitlines()[0]
    assert first_line.startswith("training process was killed by SIGKILL (signal 9)"), failed.error
    assert "out of memory" in first_line
    assert worker.proc.wait(300) == 0, worker.log()[-3000:]
    nxt = api.get(after)
    assert nxt.status == "succeeded", nxt.error
    assert worker.holds(nxt) and worker.holds(failed)
    assert worker.claims() == [(doomed, 1), (after, 1)]
    kept = snapshot_steps(api, doomed)
    assert kept == list(range(1, len(kept) + 1)) and len(kept) >= 2, "steps shipped before the kill are kept"
    print(f"fault-report: training child SIGKILL x1 at step {len(kept)}: run failed with {first_line!r}; "
          f"the worker then trained run {after} (succeeded)")


# -- a burst worker and a server that is down between runs ----------------------------------------


def test_burst_worker_waits_for_a_server_that_is_down(fault_server, fault_api, spawn_worker):
    """Regression: a --burst worker took "server unreachable" for "queue empty" and left."""
    run_id = fault_api.submit(cheapest_config(1), name="queued-while-down").id
    fault_server.stop()
    worker = spawn_worker(fault_server.url, "--burst")
    wait_for(lambda: "claim failed" in worker.log(), 60, "the worker to try a claim", logs=worker.log)
    time.sleep(3)  # the worker backs off and tries again meanwhile; it must not leave
    assert worker.proc.poll() is None, f"the burst worker left with a run queued:\n{worker.log()[-2000:]}"
    fault_server.start()
    assert worker.proc.wait(120) == 0
    assert fault_api.get(run_id).status == "succeeded"
