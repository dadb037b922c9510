"""Who imports whom: the server and the client load neither torch nor Streamlit, the dashboard
never loads the server. Each check runs in a fresh interpreter and reads its ``sys.modules``,
so what another test imported cannot hide (or cause) a failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.server.helpers import REPO, free_port

TRAINING = ["torch", "transformers", "trl", "accelerate", "peft", "datasets"]
UI = ["streamlit", "plotly"]


def loaded_after(code: str, watch: list[str], env: dict[str, str] | None = None) -> list[str]:
    """The top-level packages among ``watch`` that are in ``sys.modules`` after running ``code``."""
    script = textwrap.dedent(code) + textwrap.dedent(f"""
        import json, sys
        print("LOADED=" + json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set({watch!r}))))
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-4000:]
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("LOADED=")][-1]
    return json.loads(line.removeprefix("LOADED="))


def test_the_server_app_loads_neither_torch_nor_streamlit() -> None:
    # The whole app, routes included, plus the modules POST /runs validates with.
    loaded = loaded_after(
        """
        from server.main import create_app
        from server.core.config import Settings
        import e2h.config, e2h.plan, e2h.schedulers, e2h.tasks
        create_app(Settings(database_url="sqlite://"))
        """,
        [*TRAINING, *UI, "fastapi"],
    )
    assert loaded == ["fastapi"]  # the app was really built


def test_the_client_and_the_cli_load_neither_torch_nor_streamlit_nor_the_server() -> None:
    loaded = loaded_after(
        """
        import e2h.client, e2h.cli, e2h.config
        e2h.config.compose(["task=countdown2345"])
        """,
        [*TRAINING, *UI, "server", "fastapi", "sqlmodel", "e2h"],
    )
    assert loaded == ["e2h"]


@pytest.mark.slow
def test_the_dashboard_pages_do_not_load_the_server() -> None:
    # Every page really runs (Streamlit's AppTest), against a port where nothing listens.
    loaded = loaded_after(
        """
        from dashboard import nav
        from tests.dashboard.apptest import open_page
        for page in [None, nav.LAUNCH, nav.RUN, nav.COMPARE]:
            at = open_page(page, run="1", runs="1,2")
            assert at.warning, page  # "Cannot reach the server": the page ran to its request
        """,
        [*TRAINING, "server", "sqlmodel", "alembic", "streamlit"],
        env={**os.environ, "E2H_SERVER_URL": f"http://127.0.0.1:{free_port()}"},
    )
    assert loaded == ["streamlit"]

