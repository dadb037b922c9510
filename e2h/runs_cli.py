"""``e2h runs submit|ls|watch|cancel``: script and watch runs on a server from the terminal."""

from __future__ import annotations

import json
import re
import time

import typer

from e2h.client import TERMINAL_STATUSES, APIError, Client

app = typer.Typer(help="Queue, list, watch and cancel runs on a server.", no_args_is_help=True)

ServerOpt = typer.Option("http://127.0.0.1:8000", "--server", envvar="E2H_SERVER", help="Server URL")
TokenOpt = typer.Option(None, "--token", envvar="E2H_API_TOKEN", help="API token (when the server sets one)")


# C0 and C1 control characters (ESC starts colour, cursor and OSC 8 hyperlink sequences); newline
# and tab only where a multi-line text is printed as such.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_KEEP_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _visible(match: re.Match) -> str:
    return f"\\x{ord(match.group()):02x}"


def safe(value: object, lines: bool = False) -> str:
    """A server-supplied string for the terminal: control characters shown as ``\\xNN``."""
    return (_CONTROL_KEEP_LINES if lines else _CONTROL).sub(_visible, "" if value is None else str(value))


def cell(value: object) -> str:
    """A server-supplied string for Rich (tables, progress descriptions): shown literally, its
    ``[markup]`` escaped and its control characters made visible."""
    from rich.markup import escape

    return escape(safe(value))


def _config_name(run: dict, section: str) -> str:
    # A list item (a summary) names its task and scheduler at the top level; a full run in its config.
    if isinstance(run.get(section), str):
        return run[section]
    part = (run.get("config") or {}).get(section)
    return part.get("name", "") if isinstance(part, dict) else ""


def _client(server: str, token: str | None) -> Client:
    return Client(server, token=token)


def _fail(e: Exception) -> typer.Exit:
    typer.secho(f"error: {safe(e, lines=True)}", fg=typer.colors.RED, err=True)
    return typer.Exit(1)


@app.command()
def submit(
    items: list[str] = typer.Argument(None, help="A RunConfig JSON/YAML file and/or group=preset, key=value"),
    name: str = typer.Option(None, "--name"),
    priority: int = typer.Option(0, "--priority"),
    tag: list[str] = typer.Option(None, "--tag", help="Repeatable"),
    server: str = ServerOpt,
    token: str = TokenOpt,
) -> None:
    """Queue a run: `e2h runs submit config.yaml` or `e2h runs submit task=countdown2345 scheduler=gaussian`."""
    from e2h.config import compose, load_config_file

    items = list(items or [])
    files = [i for i in items if "=" not in i]
    if len(files) > 1:
        raise _fail(ValueError(f"give at most one config file, got {files}"))
    try:
        base = load_config_file(files[0]) if files else None
        config = compose([i for i in items if "=" in i], base=base)
        with _client(server, token) as c:
            run = c.submit(config.model_dump(mode="json"), name=name, priority=priority, tags=tag or [])
    except (ValueError, APIError) as e:
        raise _fail(e) from None
    typer.echo(f"run {run['id']} queued: {safe(run['name'])}")


@app.command("ls")
def list_runs(
    status: str = typer.Option(None, "--status"),
    tag: str = typer.Option(None, "--tag"),
    limit: int = typer.Option(50, "--limit"),
    server: str = ServerOpt,
    token: str = TokenOpt,
) -> None:
    """List runs, newest first."""
    from rich.console import Console
    from rich.table import Table

    try:
        with _client(server, token) as c:
            page = c.list_runs(status=status, tag=tag, limit=limit)
    except APIError as e:
        raise _fail(e) from None
    table = Table("id", "name", "status", "progress", "task", "scheduler", "attempt", "worker")
    for r in page["data"]:
        table.add_row(str(r["id"]), cell(r["name"]), cell(r["status"]), f"{r['step']}/{r['max_steps']}",
                      cell(_config_name(r, "task")), cell(_config_name(r, "scheduler")), str(r["attempt"]),
                      cell(r["worker_id"] or ""))
    Console().print(table)
    typer.echo(f"{len(page['data'])} of {page['count']} runs")


@app.command()
def cancel(run_id: int, server: str = ServerOpt, token: str = TokenOpt) -> None:
    """Cancel a queued or running run."""
    try:
        with _client(server, token) as c:
            run = c.cancel(run_id)
    except APIError as e:
        raise _fail(e) from None
    typer.echo(f"run {run_id}: {safe(run['status'])}" + (" (cancel requested)" if run["cancel_requested"] else ""))


def _levels_table(run: dict, history: dict):
    from rich.table import Table

    table = Table("level", "probability", "reward mean", "reward var", "samples")
    for lv in history.get("levels", []):
        def last(key, lv=lv):
            values = [v for v in lv[key] if v is not None]
            return values[-1] if values else None

        fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        table.add_row(str(lv["level"]), fmt(last("probability")), fmt(last("reward_mean")),
                      fmt(last("reward_var")), str(last("count") or 0))
    return table


@app.command()
def watch(run_id: int, interval: float = typer.Option(1.0, "--interval"), server: str = ServerOpt,
          token: str = TokenOpt) -> None:
    """A live terminal view of a run: progress, per-level probabilities and rewards."""
    from rich.console import Group
    from rich.live import Live
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                        TimeRemainingColumn())
    try:
        with _client(server, token) as c, Live(refresh_per_second=4) as live:
            bar = None
            while True:
                run = c.get(run_id)
                history = c.history(run_id, max_points=2)
                if bar is None:
                    bar = progress.add_task("", total=run["max_steps"])
                progress.update(bar, completed=run["step"], description=f"run {run_id} {cell(run['status'])}")
                live.update(Group(progress, _levels_table(run, history)))
                if run["status"] in TERMINAL_STATUSES:
                    break
                time.sleep(interval)
    except APIError as e:
        raise _fail(e) from None
    if run.get("error"):
        typer.secho(safe(run["error"], lines=True), fg=typer.colors.RED, err=True)
    raise typer.Exit(0 if run["status"] == "succeeded" else 1)


@app.command()
def show(run_id: int, server: str = ServerOpt, token: str = TokenOpt) -> None:
    """Print a run as JSON."""
    try:
        with _client(server, token) as c:
            typer.echo(json.dumps(c.get(run_id), indent=2))
    except APIError as e:
        raise _fail(e) from None
