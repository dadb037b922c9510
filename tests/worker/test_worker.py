"""The worker against a real server on loopback, training the tiny model in child processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from e2h.client import Client, ServerUnavailable
from e2h.outputs import read_completions
from tests.server.helpers import WORKER_TOKEN
from tests.worker.conftest import wait_for
from worker.main import Worker

pytestmark = pytest.mark.slow


def tiny_config(scheduler: str = "balanced", max_steps: int = 3, **algorithm) -> dict:
    params = {"warmup_steps": 1, "update_interval": 1} if scheduler == "variance_regularized" else {}
    return {
        "model": {"name_or_path": "builtin:tiny"},
        "task": {"name": "arithmetic", "train_size_per_level": 32, "test_size_per_level": 2},
        "algorithm": {"max_steps": max_steps, "per_device_train_batch_size": 8, "num_generations": 4,
                      "max_completion_length": 40, "eval_steps": 1000, "save_steps": 2, **algorithm},
        "scheduler": {"name": scheduler, "params": params},
    }


def snapshot_steps(api: Client, run_id: int) -> list[int]:
    return api.history(run_id, max_points=100_000).steps


def make_worker(url: str, tmp_path: Path, **kw) -> Worker:
    return Worker(url, WORKER_TOKEN, work_dir=tmp_path / "work", heartbeat_s=1.0, **kw)


def test_burst_worker_trains_three_runs(server, api, tmp_path):
    runs = [api.submit(tiny_config(s, max_steps=3), name=s) for s in ("balanced", "gaussian", "variance_regularized")]
    done = make_worker(server.url, tmp_path, burst=True).run()
    assert done == 3
    for run in runs:
        final = api.get(run.id)
        assert final.status == "succeeded", final.error
        assert snapshot_steps(api, run.id) == [1, 2, 3]
        assert len(final.probabilities) == 5
        assert any(e.name == "test" for e in api.evals(run.id))
        assert api.logs(run.id).data, "the child's output reached the server as log lines"
        train = final.report.processes[0]  # the worker reports where it placed the run
        assert train.role == "train" and "e2h.train" in train.command and final.report.step == 3
        # What the model wrote, as the trainer sampled it and the shipper sent it: served by step and level.
        latest = api.completions(run.id)
        assert latest.steps == [1, 2, 3] and latest.step == 3 and latest.data
        assert [c.model_dump() for c in latest.data] == read_completions(final.output_dir, 3)
        level = latest.data[-1].level
        one = api.completions(run.id, level=level, step=3)
        assert [c.model_dump() for c in one.data] == [c for c in read_completions(final.output_dir, 3)
                                                      if c["level"] == level]


def test_failing_child_fails_the_run_and_the_worker_goes_on(server, api, tmp_path):
    good = api.submit(tiny_config(), name="good")
    bad_cfg = tiny_config()
    bad_cfg["model"]["name_or_path"] = str(tmp_path / "no-such-model")
    broken = api.submit(bad_cfg, name="broken", priority=10)
    done = make_worker(server.url, tmp_path, burst=True).run()
    assert done == 2
    failed = api.get(broken.id)
    assert failed.status == "failed"
    assert "no-such-model" in failed.error
    assert api.get(good.id).status == "succeeded"


def _run_in_thread(worker: Worker) -> threading.Thread:
    t = threading.Thread(target=worker.run, daemon=True)
    t.start()
    return t


def test_cancel_while_running_stops_with_a_checkpoint(server, api, tmp_path):
    run = api.submit(tiny_config(max_steps=500, save_steps=1000))
    t = _run_in_thread(make_worker(server.url, tmp_path, burst=True))
    wait_for(lambda: api.get(run.id).step >= 2, 120, "training to start")
    asked = time.monotonic()
    api.cancel(run.id)
    wait_for(lambda: api.get(run.id).status == "cancelled", 60, "the run to be cancelled")
    assert time.monotonic() - asked < 30
    t.join(30)
    out = Path(api.get(run.id).output_dir)
    assert list(out.glob("checkpoint-*/curriculum_state.json")), "a checkpoint was saved on cancel"


def test_server_down_for_20s_loses_nothing(server, api, tmp_path):
    run = api.submit(tiny_config(max_steps=30, save_steps=1000))
    t = _run_in_thread(make_worker(server.url, tmp_path, burst=True))
    wait_for(lambda: api.get(run.id).step >= 2, 120, "training to start")
    server.stop()
    with pytest.raises(ServerUnavailable):
        api.get(run.id)
    time.sleep(20)  # the outage under test, not a wait for luck
    server.start()
    final = wait_for(lambda: (r := api.get(run.id)).status != "running" and r, 300, "the run to finish")
    assert final.status == "succeeded", final.error
    assert snapshot_steps(api, run.id) == list(range(1, 31))
    t.join(30)


def test_worker_killed_mid_run_is_resumed_by_another(server, api, tmp_path):
    run = api.submit(tiny_config(max_steps=14, save_steps=3))
    env = {**os.environ, "E2H_WORKER_TOKEN": WORKER_TOKEN}
    cmd = [sys.executable, "-m", "e2h.cli", "worker", "--server", server.url, "--heartbeat", "1",
           "--work-dir", str(tmp_path / "work")]
    first = subprocess.Popen(cmd + ["--max-jobs", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = wait_for(lambda: api.get(run.id).output_dir, 120, "an output dir")
    wait_for(lambda: list(Path(out).glob("checkpoint-*/curriculum_state.json")) and api.get(run.id).step >= 5,
             180, "a checkpoint and a few more steps")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    requeued = wait_for(lambda: (r := api.get(run.id)).status == "queued" and r, 60, "the lease to expire")
    assert requeued.attempt == 2
    second = subprocess.run(cmd + ["--burst"], env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    final = api.get(run.id)
    assert final.status == "succeeded", final.error
    assert snapshot_steps(api, run.id) == list(range(1, 15))
    assert "resuming from" in (Path(out) / "train.log").read_text()
