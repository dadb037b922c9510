"""Issue 16, rendering and process lifecycle, tried as an attacker would.

Rendering: a submitter names a run (and tags it, and a worker names itself) with Markdown image
and link syntax, raw HTML, Streamlit directives and Rich markup; the dashboard (AppTest against a
real server) and ``e2h runs ls|watch`` (real subprocesses) must show those strings as the
characters they are made of. The Markdown sources the app sends are rendered with a CommonMark
parser to check what a browser would draw; tests/dashboard/test_browser.py loads the same kind
of run in a real chromium and checks no request reaches the image's loopback listener.

Lifecycle: ``e2h dashboard`` and ``e2h up`` are real processes signalled as a terminal, a
supervisor or the OOM killer would; none of their children may be left running.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from dashboard import charts, derived, nav
from e2h.client import Client
from tests.dashboard.apptest import COMMONMARK, button, open_page, shown
from tests.dashboard.helpers import REPO, WORKER_TOKEN, ApiServer, free_port, wait_for
from tests.dashboard.simulate import FakeWorker, started_run

pytestmark = pytest.mark.slow

# What Streamlit sends as Markdown: every kind AppTest exposes that renders a Markdown body.
MARKDOWN_KINDS = ("markdown", "caption", "info", "success", "warning", "error", "title", "header", "subheader")
HOSTILE_TAG = "[tag](http://evil.example/t) <b>t</b>"
HOSTILE_WORKER = "![w](http://evil.example/w.png) <i>w</i> **w**"
HOSTILE_PLOTLY = '<a href="http://evil.example/">m</a><img src="http://evil.example/p.png">'


def hostile_name(port: int) -> str:
    return (f"![x](http://127.0.0.1:{port}/pixel.png) <img src=http://127.0.0.1:{port}/img.png> "
            "[click](http://evil.example/) **bold** :red[red] :material/warning: $x$ `c`")


@pytest.fixture(scope="module")
def api(api_server: ApiServer) -> Iterator[Client]:  # api_server, dashboard_env: tests.dashboard.fixtures
    with Client(api_server.url) as client:
        yield client


def markdown_sources(at) -> list[str]:
    return [str(e.value) for kind in MARKDOWN_KINDS for e in at.get(kind)]


def assert_plain(at, port: int, *literals: str) -> None:
    """No Markdown body on the page draws an image, a link or raw HTML, carries a Streamlit
    directive or names the attacker's hosts (GFM links bare URLs in text even once escaped);
    each literal is shown, character for character, by a plain-text element (st.text)."""
    hosts = ("evil.example", f"127.0.0.1:{port}")
    for source in markdown_sources(at):
        assert not re.search(r"<(img|a|b|i|em)\b", COMMONMARK.render(source)), source
        for directive in (":red[", ":material/warning", "$x$"):
            assert directive not in source, source
        for host in hosts:
            assert host not in shown(source), source
    texts = [str(e.value) for e in at.get("text")]
    for literal in literals:
        assert any(literal in t for t in texts), (literal, texts)


# -- the dashboard -------------------------------------------------------------------------------


def test_run_page_shows_name_tags_and_worker_as_text(dashboard_env: str, api_server: ApiServer, api: Client,
                                                     listener) -> None:
    name = hostile_name(listener.port)
    worker = FakeWorker(api_server.url, WORKER_TOKEN, worker_id=HOSTILE_WORKER)
    try:
        run, _ = started_run(api, worker, {"algorithm": {"max_steps": 50}, "scheduler": {"name": "cosine"}},
                             steps=5, name=name, tags=[HOSTILE_TAG])
    finally:
        worker.close()
    assert run["name"] == name
    at = open_page(nav.RUN, run=str(run["id"]))
    assert_plain(at, listener.port, name, f"Worker: {HOSTILE_WORKER}", f"Tags: {HOSTILE_TAG}")
    # The run picker's options are plain text already: shown raw, not backslash-escaped.
    assert f"#{run['id']} {name}" in at.selectbox(key=f"run.pick.{run['id']}").options
    button(at, "Clone").click().run()
    assert "Cloned as" in at.success[0].value
    assert_plain(at, listener.port)
    api.cancel(max(r.id for r in api.list_runs().data))  # the clone: out of the queue
    assert not listener.accepted()


def test_runs_page_and_clone_form_show_name_as_text(dashboard_env: str, api: Client, listener) -> None:
    name = hostile_name(listener.port)
    run = api.submit({}, name=name, tags=[HOSTILE_TAG], priority=-10)
    at = open_page()
    assert f"#{run.id} {name} (queued)" in at.selectbox(key="runs.selected").options
    assert HOSTILE_TAG in at.selectbox(key="runs.tag").options
    at.selectbox(key="runs.selected").select(run.id).run()
    button(at, "Clone").click().run()
    assert "cloned as" in at.success[0].value
    assert_plain(at, listener.port)

    at.selectbox(key="runs.selected").select(run.id).run()
    button(at, "Cancel").click().run()
    assert api.get(run.id).status == "cancelled"
    at.selectbox(key="runs.selected").select(run.id).run()
    button(at, "Delete").click().run()
    assert at.warning and "Delete run" in at.warning[0].value
    assert_plain(at, listener.port)

    button(at, "Keep it").click().run()
    at.selectbox(key="runs.selected").select(run.id).run()
    button(at, "Clone and edit").click().run()
    assert at.title[0].value == "Launch a run" and "Editing a copy of run" in at.info[0].value
    assert_plain(at, listener.port)
    assert [w.placeholder for w in at.text_input if w.key.endswith("run.name")] == [name + " (clone)"]
    assert [w.value for w in at.text_input if w.key.endswith("run.tags")] == [HOSTILE_TAG]
    assert not listener.accepted()


def test_charts_show_metric_and_level_names_as_text(api: Client, api_server: ApiServer) -> None:
    """Plotly draws <a href>, <b> and friends in titles, legends, ticks and hover text."""
    worker = FakeWorker(api_server.url, WORKER_TOKEN)
    try:
        run, _ = started_run(api, worker, {"algorithm": {"max_steps": 200},
                                           "scheduler": {"params": {"warmup_steps": 10, "update_interval": 5}}},
                             steps=30)
    finally:
        worker.close()
    series = api.history(run["id"]).model_dump()  # the run page derives its view from the JSON it holds
    series["metrics"] = {HOSTILE_PLOTLY: series["metrics"]["loss"]}
    for lv in series["levels"]:
        lv["components"] = {HOSTILE_PLOTLY: lv["components"]["deficit"]}
    labels = [HOSTILE_PLOTLY + str(i) for i in range(len(series["levels"]))]
    view = derived.derive(run, series, [], [])
    view = dataclasses.replace(view, labels=tuple(labels), probability=view.probability.set_axis(labels, axis=1),
                               components={n: f.set_axis(labels, axis=1) for n, f in view.components.items()})
    step = view.breakdown_step()
    item = {"label": HOSTILE_PLOTLY, "x": series["steps"], "y": series["metrics"][HOSTILE_PLOTLY]}
    figures = [
        charts.probability_area(view.probability), charts.probability_heatmap(view.probability),
        charts.level_lines(view.probability, "t", "y"),
        charts.breakdown_bars(view.breakdown(step), view.component_names, view.combined_names, step),
        charts.component_evolution(view.components), charts.metrics_figure(view.metrics),
        charts.overlay([item], "t", "y"),
        charts.probability_small_multiples([{"label": HOSTILE_PLOTLY, "frame": view.probability}]),
    ]
    for fig in figures:
        spec = json.dumps(fig.to_plotly_json())
        assert "<a " not in spec and "<img" not in spec, fig.layout.title.text
        assert "&lt;a href=" in spec, fig.layout.title.text  # shown, as text


# -- the terminal --------------------------------------------------------------------------------


def e2h(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "400", "TERM": "xterm-256color"}
    return subprocess.run([sys.executable, "-m", "e2h.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_runs_ls_and_watch_print_markup_literally(api_server: ApiServer, api: Client) -> None:
    name = "[red]x[/red] [link=http://evil.example/]click[/link] [/bold]"
    osc_link = "\x1b]8;;http://evil.example/\x07fake\x1b]8;;\x07 \x1b[31mred"
    first = api.submit({}, name=name, tags=["cli-markup"], priority=-10)
    second = api.submit({}, name=osc_link, tags=["cli-markup"], priority=-10)
    out = e2h("runs", "ls", "--server", api_server.url, "--tag", "cli-markup")
    assert out.returncode == 0, out.stderr
    assert name in out.stdout
    assert "\x1b" not in out.stdout and "fake" in out.stdout  # no terminal escape reaches the terminal
    api.cancel(first.id)
    api.cancel(second.id)

    worker = FakeWorker(api_server.url, WORKER_TOKEN, worker_id="[blink]w[/blink]")
    try:
        run, _ = started_run(api, worker, {"scheduler": {"name": "cosine"}}, steps=2, name=name)
        worker.finish(run, "failed", "[red]boom[/red] \x1b[2J")
    finally:
        worker.close()
    out = e2h("runs", "watch", str(run["id"]), "--server", api_server.url)
    assert out.returncode == 1
    assert "[red]boom[/red]" in out.stderr and "\x1b[2J" not in out.stderr
    out = e2h("runs", "ls", "--server", api_server.url, "--limit", "1")
    assert "[blink]w[/blink]" in out.stdout


# -- process lifecycle ---------------------------------------------------------------------------


def launch(args: list[str], tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / "launcher.log"
    env = {k: v for k, v in os.environ.items() if k not in ("E2H_WORKER_TOKEN", "E2H_API_TOKEN")}
    with log.open("wb") as out:
        # Its own session, as a terminal's shell would start it: signals reach it alone.
        proc = subprocess.Popen([sys.executable, "-m", "e2h.cli", *args], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    return proc, log


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


def assert_all_gone(children: list[psutil.Process], log: Path, timeout: float = 15) -> None:
    _, alive = psutil.wait_procs(children, timeout=timeout)
    assert not alive, f"left running: {[p.cmdline() for p in alive]}\n{log.read_text(errors='replace')}"


def command_line(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.NoSuchProcess:
        return ""


def kill_all(proc: subprocess.Popen, children: list[psutil.Process]) -> None:
    """Whatever a failed test left running."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for p in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGKILL],
                         ids=lambda s: signal.Signals(s).name)
def test_dashboard_stops_streamlit_on_signal(tmp_path: Path, signum: int) -> None:
    port = free_port()
    proc, log = launch(["dashboard", "--port", str(port), "--server", "http://127.0.0.1:9"], tmp_path)
    children: list[psutil.Process] = []
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/_stcore/health"), 90, "dashboard", proc, log)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert any("streamlit" in command_line(c) for c in children)
        proc.send_signal(signum)
        proc.wait(timeout=30)
        assert_all_gone(children, log)
        assert not answers(f"http://127.0.0.1:{port}/_stcore/health")
        if signum != signal.SIGKILL:
            assert proc.returncode == 0, log.read_text(errors="replace")
    finally:
        kill_all(proc, children)


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGKILL], ids=lambda s: signal.Signals(s).name)
def test_up_stops_server_worker_and_dashboard_on_signal(tmp_path: Path, signum: int) -> None:
    server_port, dashboard_port = free_port(), free_port()
    proc, log = launch(["up", "--data-dir", str(tmp_path / "data"), "--server-port", str(server_port),
                        "--dashboard-port", str(dashboard_port)], tmp_path)
    children: list[psutil.Process] = []
    try:
        wait_for(lambda: "press Ctrl-C to stop" in log.read_text(errors="replace"), 180, "e2h up", proc, log)
        children = psutil.Process(proc.pid).children(recursive=True)
        commands = [command_line(c) for c in children]
        for part in ("server", "worker", "streamlit"):
            assert any(part in c for c in commands), commands
        proc.send_signal(signum)
        proc.wait(timeout=90)
        assert_all_gone(children, log)
        assert not answers(f"http://127.0.0.1:{server_port}/healthz")
        assert not answers(f"http://127.0.0.1:{dashboard_port}/_stcore/health")
        if signum == signal.SIGHUP:
            assert proc.returncode == 0, log.read_text(errors="replace")
    finally:
        kill_all(proc, children)


def test_up_stopped_while_starting_leaves_nothing(tmp_path: Path) -> None:
    """SIGHUP once the server is up, while the worker and dashboard are still starting."""
    proc, log = launch(["up", "--data-dir", str(tmp_path / "data"), "--server-port", str(free_port()),
                        "--dashboard-port", str(free_port())], tmp_path)
    children: list[psutil.Process] = []
    try:
        wait_for(lambda: "server is up" in log.read_text(errors="replace"), 120, "e2h up's server", proc, log)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children
        proc.send_signal(signal.SIGHUP)
        proc.wait(timeout=90)
        assert "press Ctrl-C to stop" not in log.read_text(errors="replace")
        assert_all_gone(children, log)
        assert proc.returncode == 0, log.read_text(errors="replace")
    finally:
        kill_all(proc, children)


def test_up_sighup_while_training_stops_the_training_too(tmp_path: Path) -> None:
    """The terminal closes while a run trains: the worker's training child goes with the rest."""
    from tests.reliability.conftest import tiny_config

    server_port = free_port()
    proc, log = launch(["up", "--data-dir", str(tmp_path / "data"), "--server-port", str(server_port),
                        "--no-dashboard"], tmp_path)
    children: list[psutil.Process] = []
    try:
        wait_for(lambda: "press Ctrl-C to stop" in log.read_text(errors="replace"), 180, "e2h up", proc, log)
        with Client(f"http://127.0.0.1:{server_port}") as client:
            run = client.submit(tiny_config(max_steps=50_000))

            def training() -> bool:
                children[:] = psutil.Process(proc.pid).children(recursive=True)
                trains = any("e2h.train" in command_line(c) for c in children)
                return trains and client.get(run.id).step > 0

            wait_for(training, 240, "training steps", proc, log)
        proc.send_signal(signal.SIGHUP)
        proc.wait(timeout=120)
        assert_all_gone(children, log, timeout=30)
        assert proc.returncode == 0, log.read_text(errors="replace")
    finally:
        kill_all(proc, children)
