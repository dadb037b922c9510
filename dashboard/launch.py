"""Start the dashboard: what ``e2h dashboard --server URL --port 8501`` runs.

:func:`command` builds the ``streamlit run`` command line (``e2h up`` can start it as a
child process); :func:`run` runs it in the foreground and returns its exit status.
The server URL goes on the command line; an API token, if the server needs one, is
passed in the environment (``E2H_API_TOKEN``), never as an argument.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

APP = Path(__file__).with_name("streamlit_app.py")


def command(server_url: str = "http://127.0.0.1:8000", port: int = 8501, host: str = "127.0.0.1",
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


def run(server_url: str = "http://127.0.0.1:8000", port: int = 8501, host: str = "127.0.0.1",
        token: str | None = None) -> int:
    """Serve the dashboard until interrupted; returns streamlit's exit status (0 after Ctrl-C)."""
    proc = subprocess.Popen(command(server_url, port, host), env=environment(token))
    try:
        return proc.wait()
    except KeyboardInterrupt:
        # Streamlit got the same SIGINT (same process group) and is shutting down.
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return 0
