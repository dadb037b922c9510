"""``e2h runs submit|ls|watch|cancel``: script and watch runs on a server from the terminal."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

import typer

from e2h.client import APIError, Client
from e2h.schemas import RunPublic, RunResults, RunStatus, SnapshotSeries
from e2h.settings import SERVER_URL, ClientSettings

app = typer.Typer(help="Queue, list, watch and cancel runs on a server.", no_args_is_help=True)

ServerOpt = typer.Option(None, "--server", help=f"Server URL (default: $E2H_SERVER_URL, else {SERVER_URL})")
TokenOpt = typer.Option(None, "--token", help="API token, when the server sets one (default: $E2H_API_TOKEN)")
# What a submission (a run, a sweep) is queued with.
NameOpt = typer.Option(None, "--name")
PriorityOpt = typer.Option(0, "--priority")
TagOpt = typer.Option(None, "--tag", help="Repeatable")


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


def results_text(results: RunResults | None) -> str:
    """A finished run's headline figures: "acc 0.520 · held-out 0.125 · reward 0.61" ("" before its final test)."""
    if results is None:
        return ""
    parts = [("acc", results.accuracy), ("held-out", results.heldout_accuracy), ("reward", results.reward)]
    return " · ".join(f"{label} {value:.3f}" for label, value in parts if value is not None)


def config_from_items(items: list[str] | None):
    """A RunConfig from a command's arguments: at most one config file, then group=preset and key=value."""
    from e2h.config import compose, load_config_file

    items = list(items or [])
    files = [i for i in items if "=" not in i]
    if len(files) > 1:
        raise ValueError(f"give at most one config file, got {files}")
    return compose([i for i in items if "=" in i], base=load_config_file(files[0]) if files else None)


def connect(server: str | None, token: str | None) -> Client:
    """A client for the command's --server/--token, else the environment's (e2h.settings.ClientSettings)."""
    return ClientSettings.resolve(server, token).client()


@contextmanager
def session(server: str | None, token: str | None,
            refusals: tuple[type[Exception], ...] = (APIError,)) -> Iterator[Client]:
    """A command's client (:func:`connect`); the server's refusal, or one of ``refusals`` raised in
    the block, ends the command with :func:`fail`'s message (exit 1)."""
    try:
        with connect(server, token) as c:
            yield c
    except refusals as e:
        raise fail(e) from None


@contextmanager
def submission(items: list[str] | None, server: str | None, token: str | None) -> Iterator[tuple[Client, dict]]:
    """A submit command's client and the config its items compose (:func:`config_from_items`, as
    JSON); a config error or the server's refusal ends the command (:func:`fail`)."""
    with session(server, token, (ValueError, APIError)) as c:
        yield c, config_from_items(items).model_dump(mode="json")


def print_table(columns: Sequence[str], rows: Iterable[Sequence[str]], footer: str) -> None:
    """A Rich table of ``rows`` (cells already made safe with :func:`cell`), then ``footer``."""
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns)
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    typer.echo(footer)


def describe(e: Exception) -> str:
    """An error as a person reads it: a config's or the server's validation errors as
    ``field: message`` lines (as the API names them), anything else as its message."""
    from e2h.client import ValidationFailed
    from e2h.config import describe_error

    if isinstance(e, ValidationFailed) and isinstance(e.detail, list):
        lines = [f"{d['field']}: {d.get('msg', '')}" if isinstance(d, dict) and d.get("field") else
                 str(d.get("msg", d) if isinstance(d, dict) else d) for d in e.detail]
        return "invalid (422):\n" + "\n".join(f"  {line}" for line in lines)
    text = describe_error(e)
    return "invalid config:\n" + "\n".join(f"  {line}" for line in text.splitlines()) if "\n" in text else text


def fail(e: Exception) -> typer.Exit:
    """Print ``e`` as field: message lines (server text shown literally); the command exits 1."""
    typer.secho(f"error: {safe(describe(e), lines=True)}", fg=typer.colors.RED, err=True)
    return typer.Exit(1)


@app.command()
def submit(
    items: list[str] = typer.Argument(None, help="A RunConfig JSON/YAML file and/or group=preset, key=value"),
    name: str = NameOpt, priority: int = PriorityOpt, tag: list[str] = TagOpt,
    server: str = ServerOpt,
    token: str = TokenOpt,
) -> None:
    """Queue a run: `e2h runs submit config.yaml` or `e2h runs submit task=countdown2345 scheduler=gaussian`."""
    with submission(items, server, token) as (c, config):
        run = c.submit(config, name=name, priority=priority, tags=tag or [])
    typer.echo(f"run {run.id} queued: {safe(run.name)}")


@app.command("ls")
def list_runs(
    status: str = typer.Option(None, "--status"),
    tag: str = typer.Option(None, "--tag"),
    limit: int = typer.Option(50, "--limit"),
    server: str = ServerOpt,
    token: str = TokenOpt,
) -> None:
    """List runs, newest first."""
    with session(server, token) as c:
        page = c.list_runs(status=status, tag=tag, limit=limit)
    print_table(("id", "name", "status", "progress", "task", "scheduler", "results", "attempt", "worker"),
                ((str(r.id), cell(r.name), cell(r.status), f"{r.step}/{r.max_steps}", cell(r.task or ""),
                  cell(r.scheduler or ""), results_text(r.results), str(r.attempt), cell(r.worker_id or ""))
                 for r in page.data), f"{len(page.data)} of {page.count} runs")


@app.command()
def cancel(run_id: int, server: str = ServerOpt, token: str = TokenOpt) -> None:
    """Cancel a queued or running run."""
    with session(server, token) as c:
        run = c.cancel(run_id)
    typer.echo(f"run {run_id}: {safe(run.status)}" + (" (cancel requested)" if run.cancel_requested else ""))


def _levels_table(run: RunPublic, history: SnapshotSeries):
    from rich.table import Table

    table = Table("level", "probability", "reward mean", "reward var", "samples")
    values = level_values(run)
    for lv in history.levels:
        def last(key, lv=lv):
            values = [v for v in getattr(lv, key) if v is not None]
            return values[-1] if values else None

        fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        # The task's level (countdown: 2-5), as the dashboard labels it, not the scheduler's index.
        label = str(values[lv.level]) if lv.level < len(values) else f"#{lv.level}"
        table.add_row(label, fmt(last("probability")), fmt(last("reward_mean")),
                      fmt(last("reward_var")), str(last("count") or 0))
    return table


def level_values(run: RunPublic) -> list:
    """The task's level values, scheduler level i first (the run's config.task.train_levels)."""
    task = (run.config or {}).get("task") or {}
    return list(task.get("train_levels") or [])


def _duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def timing(run: RunPublic, now: datetime | None = None) -> str:
    """"elapsed 2 min 03 s, ETA 1 min 20 s": since it started, and the rest at its average pace."""
    if run.started_at is None:
        return "not started"
    def aware(t: datetime) -> datetime:
        return t if t.tzinfo else t.replace(tzinfo=UTC)

    end = run.finished_at or now or datetime.now(UTC)
    elapsed = (aware(end) - aware(run.started_at)).total_seconds()
    text = f"elapsed {_duration(elapsed)}"
    if run.finished_at is None and run.step > 0 and run.max_steps > run.step:
        text += f", ETA {_duration((run.max_steps - run.step) * elapsed / run.step)}"
    return text


def no_signal_warning(c: Client, run: RunPublic) -> str | None:
    """e2h.signals' warning when every step logged in the last NO_SIGNAL_STEPS steps had no signal."""
    from e2h.signals import NO_SIGNAL_STEPS, ZERO_STD_METRIC, message, no_signal

    if run.step < NO_SIGNAL_STEPS:
        return None
    recent = c.history(run.id, after_step=run.step - NO_SIGNAL_STEPS, max_points=NO_SIGNAL_STEPS + 1)
    values = recent.metrics.get(ZERO_STD_METRIC) or []
    if values and all(no_signal({ZERO_STD_METRIC: v}) for v in values):
        return message(NO_SIGNAL_STEPS) if len(recent.steps) else None
    return None


@app.command()
def watch(run_id: int, interval: float = typer.Option(1.0, "--interval"), server: str = ServerOpt,
          token: str = TokenOpt) -> None:
    """A live terminal view of a run: progress, per-level probabilities and rewards."""
    from rich.console import Group
    from rich.live import Live
    from rich.progress import BarColumn, Progress, TextColumn
    from rich.text import Text

    progress = Progress(TextColumn("{task.description}"), BarColumn(),
                        TextColumn("step {task.completed}/{task.total}  {task.fields[timing]}"))
    with session(server, token) as c, Live(refresh_per_second=4) as live:
        bar = None
        while True:
            run = c.get(run_id)
            history = c.history(run_id, max_points=2)
            if bar is None:
                bar = progress.add_task("", total=run.max_steps, timing="")
            progress.update(bar, completed=run.step, description=f"run {run_id} {cell(run.status)}",
                            timing=timing(run))
            warning = no_signal_warning(c, run)
            parts = [progress, _levels_table(run, history)]
            if warning:
                parts.append(Text(f"warning: {warning}", style="yellow"))
            live.update(Group(*parts))
            if run.status.terminal:
                break
            time.sleep(interval)
    if warning:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
    if run.error:
        typer.secho(safe(run.error, lines=True), fg=typer.colors.RED, err=True)
    raise typer.Exit(0 if run.status == RunStatus.succeeded else 1)


@app.command()
def show(run_id: int, server: str = ServerOpt, token: str = TokenOpt) -> None:
    """Print a run as JSON."""
    with session(server, token) as c:
        typer.echo(c.get(run_id).model_dump_json(indent=2))
