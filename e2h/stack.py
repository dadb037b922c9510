"""``e2h up``: the server, one worker and the dashboard on loopback, started and stopped together.

Each service is a child process in its own process group; the stack waits until each
answers its health check, prints the URLs, and on Ctrl-C, SIGTERM or SIGHUP (the terminal
closed) stops all of them (SIGTERM, then SIGKILL after a grace period) so nothing is left
running. Should the launcher itself be SIGKILLed, Linux sends each child SIGTERM
(:func:`die_with_parent`), so no orphaned worker keeps training. The SQLite
database and the generated worker token live in the data dir, so a second ``e2h up``
finds its runs again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from e2h.processes import STOP_SIGNALS, die_with_parent
from e2h.settings import DASHBOARD_PORT, SERVER_HOST, SERVER_PORT

logger = logging.getLogger("e2h.up")

TOKEN_FILE = "worker_token"
DEMO_CONFIG = {"algorithm": {"max_steps": 60, "eval_steps": 20, "save_steps": 20},
               "scheduler": {"name": "variance_regularized", "params": {"warmup_steps": 10, "update_interval": 5}}}


class Stopped(Exception):
    """A stop was requested (a signal) while the stack was still starting."""


def worker_token(data_dir: Path) -> str:
    """E2H_WORKER_TOKEN if set, else the one generated on the first ``e2h up`` (kept in the data dir)."""
    if os.environ.get("E2H_WORKER_TOKEN"):
        return os.environ["E2H_WORKER_TOKEN"]
    path = data_dir / TOKEN_FILE
    if path.is_file():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    path.write_text(token)
    path.chmod(0o600)
    return token


@dataclass
class Service:
    name: str
    command: list[str]
    health_url: str
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> None:
        with open(self.log_path, "ab") as log:  # the child writes through its own copy of the fd
            self.proc = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         preexec_fn=die_with_parent(signal.SIGTERM))

    def wait_healthy(self, timeout: float, settle: float = 2.0, stopping=lambda: False) -> None:
        """Poll the health URL; a service without one must at least stay up for ``settle`` seconds.
        Raises :class:`Stopped` as soon as ``stopping()`` is true."""
        deadline = time.monotonic() + (timeout if self.health_url else settle)
        while time.monotonic() < deadline:
            if stopping():
                raise Stopped(self.name)
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.name} exited with code {self.proc.returncode}:\n{tail}")
            if not self.health_url:
                time.sleep(0.1)
                continue
            try:
                if httpx.get(self.health_url, timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        if not self.health_url:
            return
        raise TimeoutError(f"{self.name} did not become healthy within {timeout:.0f} s (see {self.log_path})")

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signum)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Stack:
    data_dir: Path = Path("data")
    host: str = SERVER_HOST
    server_port: int = SERVER_PORT
    dashboard_port: int = DASHBOARD_PORT
    with_dashboard: bool = True
    services: list[Service] = field(default_factory=list)
    stopping: bool = False

    @property
    def server_url(self) -> str:
        return f"http://{self.host}:{self.server_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.host}:{self.dashboard_port}"

    def build(self) -> list[Service]:
        from dashboard.launch import command as dashboard_command

        data = self.data_dir.resolve()
        (data / "logs").mkdir(parents=True, exist_ok=True)
        token = worker_token(data)
        env = {**os.environ, "E2H_DATA_DIR": str(data), "E2H_WORKER_TOKEN": token, "PYTHONUNBUFFERED": "1"}
        py = sys.executable
        services = [
            Service("server", [py, "-m", "e2h.cli", "server", "--host", self.host, "--port", str(self.server_port)],
                    f"{self.server_url}/healthz", env, data / "logs" / "server.log"),
            Service("worker", [py, "-m", "e2h.cli", "worker", "--server", self.server_url,
                               "--work-dir", str(data / "runs")], "", env, data / "logs" / "worker.log"),
        ]
        if self.with_dashboard:
            services.append(Service("dashboard", dashboard_command(self.server_url, self.dashboard_port, self.host),
                                    f"{self.dashboard_url}/_stcore/health", env, data / "logs" / "dashboard.log"))
        return services

    def start(self, timeout: float = 120.0) -> None:
        for service in self.build():
            if self.stopping:
                raise Stopped(service.name)
            self.services.append(service)
            service.start()
            service.wait_healthy(timeout, stopping=lambda: self.stopping)
            logger.info("%s is up", service.name)

    def stop(self, grace: float = 60.0) -> None:
        """Stop in reverse start order, each with SIGTERM then SIGKILL after ``grace`` seconds.

        The worker goes before the server: on SIGTERM it checkpoints its run and hands it back
        to the queue, which needs the server still up.
        """
        for service in reversed(self.services):
            service.signal(signal.SIGTERM)
            deadline = time.monotonic() + grace
            while service.alive() and time.monotonic() < deadline:
                time.sleep(0.1)
            if service.alive():
                logger.warning("%s did not stop within %.0f s; killing it", service.name, grace)
                service.signal(signal.SIGKILL)
            if service.proc is not None:
                service.proc.wait()

    def watch(self) -> str | None:
        """Block until a service dies or a stop is requested; returns the dead service's name."""
        while not self.stopping:
            for service in self.services:
                if not service.alive():
                    return service.name
            time.sleep(0.5)
        return None


def up(stack: Stack, demo: bool = False, echo=print) -> int:
    """Start the stack, optionally queue the demo run, and serve until Ctrl-C, SIGTERM or SIGHUP
    (each stops every service; a signal while starting stops what has started)."""

    def request_stop(signum, frame):
        stack.stopping = True

    previous = {signum: signal.signal(signum, request_stop) for signum in STOP_SIGNALS}
    try:
        try:
            stack.start()
        except Stopped:
            return 0
        echo(f"server     {stack.server_url}  (API docs: {stack.server_url}/docs)")
        if stack.with_dashboard:
            echo(f"dashboard  {stack.dashboard_url}")
        echo(f"data       {stack.data_dir.resolve()}  (logs in logs/)")
        if demo:
            from e2h.settings import ClientSettings

            with ClientSettings.resolve(stack.server_url).client() as client:
                run = client.submit(DEMO_CONFIG, name="demo: tiny model, arithmetic, VREx", tags=["demo"])
            echo(f"demo run {run.id} queued")
        echo("press Ctrl-C to stop")
        dead = stack.watch()
        if dead:
            echo(f"{dead} stopped unexpectedly; stopping the rest")
            return 1
        return 0
    finally:
        stack.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        echo("stopped")
