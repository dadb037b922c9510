"""A run config is untrusted: what a run may do on a worker is the worker operator's call
(issue 16). Each test performs an attack on a real server with a real worker process
(``python -m e2h.cli worker``) and asserts what happens instead:

- a ``dataset`` run naming a file outside the worker's data roots fails at once, naming the
  field and the rule; one naming a non-data file inside them fails without quoting it;
- the training child does not see the worker's tokens nor its hub token;
- a secret that reaches the text of an error or a log line is posted as ``[redacted]``;
- an output dir reported by another worker is not used;
- SIGHUP (the terminal closed) stops the worker's training child and hands the run back.

"Public" below means what anyone reaching the server reads without a token.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.reliability.conftest import WorkerProcess, cheapest_config, tiny_config, wait_for
from tests.server.helpers import WORKER_TOKEN, LiveServer, server_env, serving
from worker.settings import REDACTED

pytestmark = pytest.mark.slow

SECRET = "sk-FAKE-5f1c9a8e-do-not-leak"
HF_SECRET = "hf_FAKEtoken0123456789abcdef"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    # A long lease: a run that goes back to the queue here was handed back, not reaped.
    env = server_env(tmp_path, E2H_DATA_DIR=str(tmp_path / "server"), E2H_LEASE_SECONDS="60")
    with serving(env, tmp_path / "server.log") as s:
        yield s


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch) -> Path:
    """The worker's only data root; the worker's environment also holds a hub token and a password."""
    root = tmp_path / "datasets"
    root.mkdir()
    monkeypatch.setenv("E2H_DATA_ROOTS", str(root))
    monkeypatch.setenv("HF_TOKEN", HF_SECRET)
    monkeypatch.setenv("MY_SERVICE_PASSWORD", SECRET)
    return root


def public(url: str, run_id: int) -> str:
    """Everything anyone can read about a run, without a token."""
    paths = [f"/runs/{run_id}", f"/runs/{run_id}/logs?limit=10000", f"/runs/{run_id}/evals", "/runs"]
    texts = []
    for path in paths:
        r = httpx.get(url + path, timeout=10)
        assert r.status_code == 200, (path, r.text)
        texts.append(r.text)
    return "\n".join(texts)


def assert_no_secret(text: str) -> None:
    for secret in (SECRET, HF_SECRET, WORKER_TOKEN):
        assert secret not in text, f"{secret!r} is readable"


def dataset_config(path: str) -> dict:
    config = cheapest_config(1)
    config["task"] = {"name": "dataset", "train_levels": [1], "test_levels": [1], "train_size_per_level": 4,
                      "test_size_per_level": 1, "options": {"path": path}}
    return config


def drain(worker: WorkerProcess, timeout: float = 240) -> None:
    """Wait for a burst worker to empty the queue and exit."""
    try:
        assert worker.proc.wait(timeout) == 0, worker.log()[-3000:]
    except Exception:
        raise AssertionError(f"worker did not finish:\n{worker.log()[-3000:]}") from None


def test_a_dataset_run_cannot_read_the_workers_files(server, api, spawn_worker, data_root, tmp_path) -> None:
    # A readable file outside the data roots, holding a secret: refused before anything reads it.
    outside = tmp_path / "home" / ".config" / "service.csv"
    outside.parent.mkdir(parents=True)
    outside.write_text(f"MY_SERVICE_PASSWORD={SECRET}\nHF_TOKEN={HF_SECRET}\n")
    # Inside the data roots, a file that is not data: the loader fails without quoting it.
    inside = data_root / "notes.csv"
    inside.write_text(f"MY_SERVICE_PASSWORD={SECRET}\nHF_TOKEN={HF_SECRET}\n")
    refused = api.submit(dataset_config(str(outside)), name="outside", priority=1)
    unusable = api.submit(dataset_config(str(inside)), name="inside")
    worker = spawn_worker(server.url, "--burst")
    drain(worker)

    run = api.get(refused.id)
    assert run.status == "failed", run
    assert run.error.startswith("task.options.path:") and "outside this worker's data roots" in run.error
    assert "E2H_DATA_ROOTS" in run.error, run.error
    assert not (worker.work_dir / f"run-{refused.id}").exists(), "no training was started for it"
    assert_no_secret(public(server.url, refused.id))

    run = api.get(unusable.id)
    assert run.status == "failed", run
    assert "task.options.path" in run.error and "has no 'question' column" in run.error, run.error
    assert_no_secret(public(server.url, unusable.id))


def _exec_children(worker: WorkerProcess) -> list[psutil.Process]:
    """The worker's training processes once they run ``e2h.train`` (before exec, a forked child
    still shows its parent's environment)."""
    found = []
    for child in worker.training_processes():
        try:
            if "e2h.train" in child.cmdline():
                found.append(child)
        except psutil.Error:
            pass
    return found


def test_the_training_child_does_not_see_the_workers_secrets(server, api, spawn_worker, data_root) -> None:
    run = api.submit(cheapest_config(1), name="env")
    worker = spawn_worker(server.url, "--burst")
    [child] = wait_for(lambda: _exec_children(worker), 120, "the training child", interval=0.05, logs=worker.log)
    env = child.environ()
    assert env.get("E2H_TRAIN_LOG_CAPTURED") == "1", "this is the worker's training child"
    for name in ("E2H_WORKER_TOKEN", "HF_TOKEN", "MY_SERVICE_PASSWORD"):
        assert name not in env, name
    assert not {SECRET, HF_SECRET, WORKER_TOKEN} & set(env.values())
    assert not Path(env["HF_TOKEN_PATH"]).exists(), "nor the machine's stored hub login"
    drain(worker)
    final = api.get(run.id)
    assert final.status == "succeeded", final.error  # the scrubbed environment is enough to train
    assert_no_secret(public(server.url, run.id))


def test_a_secret_that_reaches_an_error_or_a_log_line_is_redacted(server, api, spawn_worker, data_root,
                                                                   tmp_path) -> None:
    # The secrets are in the child's log (as a library that prints its environment would leave
    # them), and the child is killed, so the tail of that log becomes the run's error.
    run = api.submit(cheapest_config(1), name="redact")
    log = tmp_path / "work-1" / f"run-{run.id}" / "train.log"
    log.parent.mkdir(parents=True)
    log.write_text(f"password={SECRET} hub={HF_SECRET} worker={WORKER_TOKEN}\n")
    worker = spawn_worker(server.url, "--burst")
    assert worker.work_dir == log.parent.parent
    [child] = wait_for(lambda: _exec_children(worker), 120, "the training child", interval=0.05, logs=worker.log)
    child.kill()
    drain(worker)
    final = api.get(run.id)
    assert final.status == "failed" and "killed by SIGKILL" in final.error, final
    redacted = f"password={REDACTED} hub={REDACTED} worker={REDACTED}"
    assert redacted in final.error, final.error
    lines = [entry.line for entry in api.logs(run.id, limit=10_000).data]
    assert redacted in lines, lines[:5]
    assert_no_secret(public(server.url, run.id))
    assert SECRET in log.read_text(), "the secret was there to leak"


def test_an_output_dir_reported_by_another_worker_is_not_used(server, api, spawn_worker, tmp_path) -> None:
    foreign = tmp_path / "someone-elses-dir"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not yours")
    run = api.submit(cheapest_config(1), name="output-dir")
    claimed = api.claim("other-worker").run
    assert claimed.id == run.id
    api.heartbeat(run.id, "other-worker", claimed.attempt, step=0, output_dir=str(foreign))
    api.release(run.id, "other-worker", claimed.attempt, str(foreign))
    assert api.get(run.id).status == "queued"
    worker = spawn_worker(server.url, "--burst")
    drain(worker)
    final = api.get(run.id)
    assert final.status == "succeeded", final.error
    assert Path(final.output_dir) == (worker.work_dir / f"run-{run.id}").resolve()
    assert sorted(p.name for p in foreign.iterdir()) == ["keep.txt"], "nothing was written there"


def _stopped(procs: list[psutil.Process]) -> Callable[[], bool]:
    def check() -> bool:
        for p in procs:
            try:
                if p.status() != psutil.STATUS_ZOMBIE:
                    return False
            except psutil.NoSuchProcess:
                pass
        return True

    return check


def test_sighup_stops_the_training_child_and_hands_the_run_back(server, api, spawn_worker) -> None:
    run = api.submit(tiny_config(max_steps=500), name="sighup")
    worker = spawn_worker(server.url)
    wait_for(lambda: api.get(run.id).step >= 1, 180, "training to start", logs=worker.log)
    children = worker.training_processes()
    assert children
    sent = time.monotonic()
    worker.proc.send_signal(signal.SIGHUP)
    assert worker.proc.wait(60) == 0, worker.log()[-3000:]  # it exits by itself, not killed by the signal
    wait_for(_stopped(children), 10, "the training processes to end")
    final = api.get(run.id)
    # Handed back well inside the 60 s lease: released by the worker, not reaped by the server.
    assert final.status == "queued" and final.attempt == 2, final
    assert time.monotonic() - sent < 50
    assert "SIGHUP" in worker.log()
    assert list((worker.work_dir / f"run-{run.id}").glob("checkpoint-*")), "it checkpointed before stopping"
