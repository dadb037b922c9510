"""The managed vLLM server of a run in ``vllm_mode=server``: started, waited for, stopped with the run.

TRL's client polls ``/health`` and retries forever on any answer but 200, so a run whose
server never comes up would hang with its heartbeats still saying "running". Here the server
is started from the launch plan (``e2h.plan``), in a process group of its own that dies with
its parent, and waited for with a deadline; a server that exits or stays unhealthy fails the
run with an error that says so, and the server is always stopped when the run ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from e2h.plan import ProcessPlan
from e2h.processes import die_with_parent

DEFAULT_HEALTH_DEADLINE_S = 900.0  # a 3B model loads in minutes; a wrong one fails at once


class VLLMServerError(RuntimeError):
    """The managed vLLM server did not become healthy."""


class ManagedVLLMServer:
    """``with ManagedVLLMServer(plan.process("vllm"), log_path, env) as server: server.wait_healthy()``."""

    def __init__(self, process: ProcessPlan, log_path: str | Path, base_env: Mapping[str, str] | None = None):
        if process.port is None:
            raise ValueError("the vLLM process plan has no port")
        self.process = process
        self.log_path = Path(log_path)
        self.env = {**(base_env if base_env is not None else os.environ), **process.env}
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.process.port}"

    def start(self) -> ManagedVLLMServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.process.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, start_new_session=True, preexec_fn=die_with_parent(signal.SIGTERM),
            )
        return self

    def wait_healthy(self, deadline_s: float = DEFAULT_HEALTH_DEADLINE_S, poll_s: float = 0.5,
                     should_abort: Callable[[], bool] | None = None) -> None:
        """Return once ``/health`` answers 200; raise VLLMServerError on exit, timeout or abort."""
        assert self.proc is not None, "start() first"
        started = time.monotonic()
        while True:
            code = self.proc.poll()
            if code is not None:
                raise VLLMServerError(
                    f"the vLLM server exited with code {code} before it was healthy; its log: {self.log_path}"
                )
            if self._healthy():
                return
            waited = time.monotonic() - started
            if waited >= deadline_s:
                raise VLLMServerError(
                    f"the vLLM server was not healthy at {self.url}/health after {deadline_s:.0f} s "
                    f"(command: {' '.join(self.process.command)}); its log: {self.log_path}"
                )
            if should_abort is not None and should_abort():
                raise VLLMServerError("the run was stopped while its vLLM server was starting")
            time.sleep(poll_s)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to the server's process group, SIGKILL after ``grace_s``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def __enter__(self) -> ManagedVLLMServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
