"""Where the dashboard reaches the server: the cached client, cached lists, live series and the
"server unavailable" handling every page shares.

The server URL comes from ``--server-url`` after ``--`` on the streamlit command line, else the
client settings (``E2H_SERVER_URL``, else this machine's server; ``e2h.settings``). ``E2H_API_TOKEN``
(when the server needs one for writes) is read from the environment, never put on a command line.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import streamlit as st
from pydantic import BaseModel

from dashboard import series as S
from dashboard.text import plain
from e2h.client import APIError, Client, NotFound, ServerUnavailable
from e2h.settings import ClientSettings

logger = logging.getLogger(__name__)

# A dashboard should say "slow" quickly rather than hang a page for the client's default 30 s.
TIMEOUT_ENV = "E2H_DASHBOARD_TIMEOUT"
DEFAULT_TIMEOUT = 10.0
RETRY_SECONDS = 5
MAX_POINTS = 1000  # steps per chart; the server buckets longer histories down to this
LOG_LINES = 200
LOG_PAGES_PER_POLL = 5


def server_url() -> str:
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--server-url", "--server", dest="server_url")
    args, _ = parser.parse_known_args(sys.argv[1:])
    return (args.server_url or ClientSettings().server_url).rstrip("/")


def request_timeout() -> float:
    return float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT)


@st.cache_resource(show_spinner=False)
def _client(url: str, token: str | None, timeout: float) -> Client:
    return Client(url, token=token, timeout=timeout)


def client() -> Client:
    return _client(server_url(), ClientSettings().api_token, request_timeout())


def plain_json(value: Any) -> Any:
    """The client's wire models (``e2h.schemas``) as the JSON they came as: what the pages,
    Streamlit's caches and the session state hold."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [plain_json(item) for item in value]
    return value


def run(run_id: int) -> dict:
    return plain_json(client().get(run_id))


def submit(*args: Any, **kwargs: Any) -> dict:
    return plain_json(client().submit(*args, **kwargs))


# -- cached reads (the url is part of every key: one dashboard process, one server; tests vary it) --


@st.cache_data(ttl=300, show_spinner=False)
def schedulers(url: str) -> list[dict]:
    return plain_json(client().schedulers())


@st.cache_data(ttl=300, show_spinner=False)
def tasks(url: str) -> list[dict]:
    return plain_json(client().tasks())


@st.cache_data(ttl=300, show_spinner=False)
def presets(url: str) -> dict:
    return client().presets()


@st.cache_data(ttl=2, show_spinner=False)
def runs(url: str, status: str | None = None, tag: str | None = None, limit: int = 200) -> dict:
    return plain_json(client().list_runs(status=status, tag=tag, limit=limit))


@st.cache_data(ttl=10, show_spinner=False)
def evals(url: str, run_id: int) -> list[dict]:
    return plain_json(client().evals(run_id))


@st.cache_data(ttl=5, show_spinner=False)
def history(url: str, run_id: int, max_points: int) -> dict:
    return plain_json(client().history(run_id, max_points=max_points))


def forget_runs() -> None:
    """After a write (submit, cancel, clone, delete) the lists must show it at once."""
    runs.clear()


# -- live series -------------------------------------------------------------------------------


def live_series(run_id: int, max_points: int | None = None) -> dict:
    """The run's bucketed history, kept in the session and extended with ``after_step`` fetches.

    Once the appended raw steps make it more than twice ``max_points`` long, it is fetched
    bucketed again, so a page left open on a 100,000-step run stays small.
    """
    max_points = max_points or MAX_POINTS
    key = f"series:{server_url()}:{run_id}"
    cached = st.session_state.get(key)
    if cached is None:
        data = plain_json(client().history(run_id, max_points=max_points))
    else:
        new = plain_json(client().history(run_id, after_step=S.last_step(cached), max_points=max_points))
        data = S.merge(cached, new) if new["steps"] else cached
        if len(data["steps"]) > 2 * max_points:
            data = plain_json(client().history(run_id, max_points=max_points))
    st.session_state[key] = data
    return data


def live_logs(run_id: int) -> list[str]:
    """The last LOG_LINES log lines, fetched incrementally (a few pages per poll)."""
    key = f"logs:{server_url()}:{run_id}"
    after, lines = st.session_state.get(key, (0, []))
    for _ in range(LOG_PAGES_PER_POLL):
        page = client().logs(run_id, after=after, limit=1000)
        lines = (lines + [entry.line for entry in page.data])[-LOG_LINES:]
        after = page.next_after
        if len(page.data) < 1000:
            break
    st.session_state[key] = (after, lines)
    return lines


# -- errors ------------------------------------------------------------------------------------


def describe(error: ServerUnavailable) -> str:
    detail = str(error.detail)
    if "timed out" in detail.lower() or "timeout" in detail.lower():
        return f"The server at {server_url()} is not answering (no reply within {request_timeout():g} s)."
    if error.status_code:
        return f"The server at {server_url()} answered with an error ({error.status_code}): {plain(detail)}"
    return f"Cannot reach the server at {server_url()}."


def show_unavailable(error: ServerUnavailable, retry: bool = True) -> None:
    """Say the server is down or slow, and (``retry``) rerun the page by itself once it answers.

    A live fragment passes ``retry=False``: it retries anyway on its next scheduled run.
    """
    logger.warning("server unavailable: %s", error)
    st.warning(f"{describe(error)} Retrying every {RETRY_SECONDS} s…", icon=":material/cloud_off:")
    st.caption(f"Start it with `e2h server`, or point the dashboard elsewhere with `e2h dashboard --server URL`. "
               f"({plain(error.detail)})")
    if not retry:
        return

    @st.fragment(run_every=RETRY_SECONDS)
    def _retry() -> None:
        try:
            client().health()
        except APIError:
            return
        st.rerun(scope="app")

    _retry()


@contextmanager
def server_errors(retry: bool = True) -> Iterator[None]:
    """Turn the client's errors into messages on the page (never a traceback), then stop the page
    (or the fragment this runs in)."""
    try:
        yield
    except ServerUnavailable as e:
        show_unavailable(e, retry)
        st.stop()
    except NotFound as e:
        st.warning(f"Not found: {plain(e.detail)}", icon=":material/search_off:")
        st.stop()
    except APIError as e:
        st.error(f"The server refused this ({e.status_code}): {plain(e.detail)}", icon=":material/error:")
        st.stop()


def action(label: str, fn: Any, *args: Any, **kwargs: Any) -> tuple[bool, Any]:
    """Run a write (cancel, delete, ...); a refusal is shown where it was asked for. (ok, result)."""
    try:
        result = plain_json(fn(*args, **kwargs))
    except ServerUnavailable as e:
        st.error(f"{label} failed: {describe(e)}", icon=":material/cloud_off:")
        return False, None
    except APIError as e:
        st.error(f"{label} failed ({e.status_code}): {plain(e.detail)}", icon=":material/error:")
        return False, None
    forget_runs()
    return True, result


def flash(message: str, kind: str = "success") -> None:
    """A message that survives the rerun a button triggers (shown once by :func:`show_flash`)."""
    st.session_state["_flash"] = (kind, message)


def show_flash() -> None:
    kind, message = st.session_state.pop("_flash", (None, None))
    if message:
        getattr(st, kind)(message)
