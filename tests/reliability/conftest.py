"""Shared pieces for the reliability suite: real processes, real faults.

The fault-injection tests (``test_faults*.py``) run the server as a uvicorn subprocess on
127.0.0.1 with a SQLite file in the test's tmp dir, and workers as separate OS processes
(``python -m e2h.cli worker``) training the built-in tiny model, so a fault is a real
signal to a real process: SIGKILL leaves no shutdown hook, no flush and no goodbye.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from e2h.client import Client, ServerUnavailable
from e2h.schemas import RunPublic
from server.core.db import MIGRATIONS_DIR
from tests.dashboard.fixtures import api_server, dashboard_env  # noqa: F401  (test_rendering_lifecycle's)
from tests.server.helpers import REPO, WORKER_TOKEN, LiveServer

LEASE_SECONDS = 4


class FaultServer(LiveServer):
    """LiveServer that can also crash: :meth:`kill` is SIGKILL, :meth:`stop` a clean shutdown."""

    def __init__(self, env: dict[str, str], log_path: Path, db_path: Path):
        self.db_path = db_path
        super().__init__(env, log_path)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(15)
        self._log.close()


@pytest.fixture
def fault_server(tmp_path: Path) -> Iterator[FaultServer]:
    db = tmp_path / "e2h.db"
    env = {
        "E2H_DATABASE_URL": f"sqlite:///{db}",
        "E2H_DATA_DIR": str(tmp_path),
        "E2H_WORKER_TOKEN": WORKER_TOKEN,
        "E2H_API_TOKEN": "",
        "E2H_LEASE_SECONDS": str(LEASE_SECONDS),
        "E2H_REAPER_INTERVAL_SECONDS": "0.5",
    }
    s = FaultServer(env, tmp_path / "server.log", db)
    try:
        s.wait_ready()
        yield s
    finally:
        if s.proc.poll() is None:
            s.stop()


@pytest.fixture
def fault_api(fault_server: FaultServer) -> Iterator[Client]:
    with Client(fault_server.url, token=WORKER_TOKEN) as c:
        yield c


_CLAIM_LINE = re.compile(r"run (\d+) attempt (\d+) -> ")


class WorkerProcess:
    """``python -m e2h.cli worker`` as its own OS process, logging to a file."""

    def __init__(self, url: str, work_dir: Path, log_path: Path, *args: str):
        self.work_dir, self.log_path = work_dir, log_path
        env = {**os.environ, "E2H_WORKER_TOKEN": WORKER_TOKEN, "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "e2h.cli", "worker", "--server", url, "--heartbeat", "1",
               "--work-dir", str(work_dir), *args]
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid

    def holds(self, run: RunPublic) -> bool:
        """Whether the server says this process holds ``run`` (worker ids are host-pid-random)."""
        worker_id = run.worker_id or ""
        return worker_id.count("-") >= 2 and worker_id.rsplit("-", 2)[1] == str(self.pid)

    def training_processes(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""

    def claims(self) -> list[tuple[int, int]]:
        """(run id, attempt) of every run this worker started training, from its log."""
        return [(int(r), int(a)) for r, a in _CLAIM_LINE.findall(self.log())]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(15)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (hand the run back, exit), SIGKILL if that takes longer than ``timeout``."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode


@pytest.fixture
def spawn_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """``spawn_worker(url, *args, work_dir=None)`` starts a worker process with its own log and,
    unless ``work_dir`` is given, its own work dir; every worker still running at the end is
    stopped. A worker resumes a run only from ``<its --work-dir>/run-<id>``: workers that are to
    resume each other's runs share one, as machines sharing a filesystem do."""
    started: list[WorkerProcess] = []

    def spawn(url: str, *args: str, work_dir: Path | None = None) -> WorkerProcess:
        n = len(started) + 1
        w = WorkerProcess(url, work_dir or tmp_path / f"work-{n}", tmp_path / f"worker-{n}.log", *args)
        started.append(w)
        return w

    yield spawn
    for w in started:
        w.stop(timeout=20)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2,
             logs: Callable[[], str] | None = None) -> Any:
    """Poll ``predicate`` until it returns something truthy; a server that is down reads as falsy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except ServerUnavailable:
            value = None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}" + (f"\n{logs()[-4000:]}" if logs else ""))


def tiny_config(max_steps: int, save_steps: int = 1000, scheduler: str = "balanced", **algorithm: Any) -> dict:
    """The tiny model on small arithmetic data: about 0.3 s per step on one CPU thread."""
    return {
        "model": {"name_or_path": "builtin:tiny"},
        "task": {"name": "arithmetic", "train_size_per_level": 32, "test_size_per_level": 2},
        "algorithm": {"max_steps": max_steps, "per_device_train_batch_size": 8, "num_generations": 4,
                      "max_completion_length": 40, "eval_steps": None, "save_steps": save_steps, **algorithm},
        "scheduler": {"name": scheduler},
    }


def cheapest_config(max_steps: int = 1) -> dict:
    """As little training as a run can hold: most of its cost is starting Python and torch."""
    return {
        "model": {"name_or_path": "builtin:tiny"},
        "task": {"name": "arithmetic", "train_size_per_level": 4, "test_size_per_level": 1},
        "algorithm": {"max_steps": max_steps, "per_device_train_batch_size": 2, "num_generations": 2,
                      "max_completion_length": 8, "eval_steps": None, "save_steps": 1000},
        "scheduler": {"name": "balanced"},
    }


def snapshot_steps(api: Client, run_id: int) -> list[int]:
    return api.history(run_id, max_points=100_000).steps


def spool_steps(output_dir: str | Path) -> list[int]:
    """Steps in a run's spool file, in file order (complete lines only, as the shipper reads)."""
    import json

    path = Path(output_dir) / "snapshots.jsonl"
    if not path.is_file():
        return []
    data = path.read_bytes()
    return [json.loads(line)["step"] for line in data[: data.rfind(b"\n") + 1].splitlines() if line.strip()]


def alembic_head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg).get_current_head()


def sqlite_report(db_path: Path) -> dict[str, Any]:
    """What a crash could have damaged, read straight from the SQLite file."""
    conn = sqlite3.connect(db_path)
    try:
        return {
            "integrity": [row[0] for row in conn.execute("PRAGMA integrity_check")],
            "foreign_keys": conn.execute("PRAGMA foreign_key_check").fetchall(),
            "revision": [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")],
            "runs": conn.execute("SELECT count(*) FROM runs").fetchone()[0],
            "duplicate_steps": conn.execute(
                "SELECT run_id, step, count(*) FROM snapshots GROUP BY run_id, step HAVING count(*) > 1"
            ).fetchall(),
            # snapshot_count is kept by the ingest path; it must agree with the rows.
            "count_mismatches": conn.execute(
                "SELECT r.id, r.snapshot_count, (SELECT count(*) FROM snapshots s WHERE s.run_id = r.id) AS n "
                "FROM runs r WHERE r.snapshot_count != n"
            ).fetchall(),
        }
    finally:
        conn.close()
