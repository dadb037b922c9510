"""Start the dashboard: what ``e2h dashboard --server URL --port 8501`` runs.

:func:`command` builds the ``streamlit run`` command line (``e2h up`` can start it as a
child process); :func:`run` runs it in the foreground, stops it on SIGINT, SIGTERM and SIGHUP,
and returns its exit status.
The server URL goes on the command line; an API token, if the server needs one, is
passed in the environment (``E2H_API_TOKEN``), never as an argument.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from e2h.settings import DASHBOARD_PORT, SERVER_HOST, SERVER_URL

APP = Path(__file__).with_name("streamlit_app.py")


def command(server_url: str = SERVER_URL, port: int = DASHBOARD_PORT, host: str = SERVER_HOST,
            python: str | None = None) -> list[str]:
    """The ``streamlit run`` command for the dashboard on ``host:port``, talking to ``server_url``."""
    return [
        python or sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.headless", "true",
        "--server.address", host,
        "--server.port", str(port),
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "minimal",
        "--",
        "--server-url", server_url,
    ]


def environment(token: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if token:
        env["E2H_API_TOKEN"] = token
    return env


def run(server_url: str = SERVER_URL, port: int = DASHBOARD_PORT, host: str = SERVER_HOST,
        token: str | None = None, grace: float = 10.0) -> int:
    """Serve the dashboard until interrupted; returns streamlit's exit status (0 once stopped).

    SIGINT, SIGTERM and SIGHUP (the terminal closed) stop Streamlit too: it gets SIGTERM, then
    SIGKILL if it is still up ``grace`` seconds later. If this process is SIGKILLed, Linux sends
    Streamlit SIGTERM (:func:`e2h.processes.die_with_parent`), so it never keeps serving alone.
    """
    from e2h.processes import STOP_SIGNALS, die_with_parent

    stop_requested: list[int] = []

    def request_stop(signum, frame):
        stop_requested.append(signum)

    previous = {signum: signal.signal(signum, request_stop) for signum in STOP_SIGNALS}
    proc = subprocess.Popen(command(server_url, port, host), env=environment(token),
                            preexec_fn=die_with_parent(signal.SIGTERM))
    try:
        deadline = None
        while proc.poll() is None:
            if stop_requested and deadline is None:
                proc.terminate()
                deadline = time.monotonic() + grace
            elif deadline is not None and time.monotonic() > deadline:
                proc.kill()
            time.sleep(0.1)
        return 0 if stop_requested else proc.returncode
    finally:
        if proc.poll() is None:  # an unexpected error here: never leave it serving
            proc.kill()
            proc.wait()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
