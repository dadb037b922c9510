"""``e2h sweep submit|ls|show|cancel|delete``: experiments over schedules x seeds from the terminal."""

from __future__ import annotations

import time

import typer

from e2h.runs_cli import (
    NameOpt,
    PriorityOpt,
    ServerOpt,
    TagOpt,
    TokenOpt,
    cell,
    print_table,
    safe,
    session,
    submission,
)
from e2h.sweeps import SweepDetail

app = typer.Typer(help="Sweeps: a base config x a grid of overrides x seeds, and which one wins.",
                  no_args_is_help=True)


def split_values(text: str) -> list[str]:
    """``a,b,[1,2]`` -> ``["a", "b", "[1,2]"]``: commas inside brackets or braces stay."""
    values, depth, current = [], 0, ""
    for ch in text:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            values.append(current)
            current = ""
        else:
            current += ch
    values.append(current)
    return [v.strip() for v in values]


def parse_grid(items: list[str]) -> dict[str, list]:
    """``["scheduler.name=balanced,sec", "algorithm.learning_rate=1e-4,3e-4"]`` -> the grid, each value
    typed as ``e2h runs submit key=value`` types it (numbers, booleans, lists)."""
    from omegaconf import OmegaConf

    grid: dict[str, list] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise ValueError(f"--grid {item!r}: give KEY=VALUE,VALUE,... (e.g. scheduler.name=balanced,sec)")
        if key in grid:
            raise ValueError(f"--grid {key}: given twice; list all its values in one --grid")
        parsed = [OmegaConf.to_container(OmegaConf.from_dotlist([f"v={v}"]), resolve=True)["v"]
                  for v in split_values(values)]
        grid[key] = parsed
    return grid


def parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(s) for s in split_values(text)]
    except ValueError:
        raise ValueError(f"--seeds {text!r}: give whole numbers separated by commas, e.g. 42,1,2") from None


@app.command()
def submit(
    items: list[str] = typer.Argument(None, help="A base RunConfig JSON/YAML file and/or group=preset, key=value"),
    grid: list[str] = typer.Option(None, "--grid", help="KEY=V1,V2,... (repeatable): one group per combination"),
    seeds: str = typer.Option(None, "--seeds", help="Comma-separated seeds (default: the config's seed)"),
    baseline: list[str] = typer.Option(None, "--baseline", help="KEY=VALUE naming the baseline group (repeatable)"),
    name: str = NameOpt, priority: int = PriorityOpt, tag: list[str] = TagOpt,
    server: str = ServerOpt,
    token: str = TokenOpt,
) -> None:
    """Queue a sweep: `e2h sweep submit task=arithmetic --grid scheduler.name=balanced,gaussian,sec --seeds 42,1,2`."""
    with submission(items, server, token) as (c, config):
        the_grid = parse_grid(list(grid or []))
        chosen = {k: v[0] for k, v in parse_grid(list(baseline or [])).items()} or None
        sweep = c.submit_sweep(config, the_grid, parse_seeds(seeds), name=name, priority=priority, tags=tag or [],
                               baseline=chosen)
    typer.echo(f"sweep {sweep.id} queued: {safe(sweep.name)}: {len(sweep.groups)} groups x {len(sweep.seeds)} "
               f"seeds = {len(sweep.run_ids)} runs ({sweep.run_ids[0]}..{sweep.run_ids[-1]})")


@app.command("ls")
def list_sweeps(limit: int = typer.Option(50, "--limit"), server: str = ServerOpt, token: str = TokenOpt) -> None:
    """List sweeps, newest first."""
    with session(server, token) as c:
        page = c.list_sweeps(limit=limit)
    print_table(("id", "name", "status", "groups", "seeds", "runs", "succeeded", "failed", "cancelled", "created"),
                ((str(s.id), cell(s.name), s.status, str(len(s.groups)), str(len(s.seeds)), str(len(s.run_ids)),
                  *(str(s.counts.get(k, 0)) for k in ("succeeded", "failed", "cancelled")),
                  s.created_at.strftime("%Y-%m-%d %H:%M")) for s in page.data),
                f"{len(page.data)} of {page.count} sweeps")


def _ci(mean: float | None, lo: float | None, hi: float | None, signed: bool = False) -> str:
    if mean is None:
        return "-"
    fmt = "{:+.3f}" if signed else "{:.3f}"
    text = fmt.format(mean)
    return text if lo is None else f"{text} [{fmt.format(lo)}, {fmt.format(hi)}]"


def render(sweep: SweepDetail):
    """The runs (group x seed, with progress) and the summary per held-out level and overall."""
    from rich.console import Group
    from rich.table import Table

    summary = sweep.summary
    seeds = sweep.seeds
    runs = Table("group", *(f"seed {s}" for s in seeds), title=f"sweep {sweep.id} {cell(sweep.name)}: {sweep.status}")
    by = {(r.group, r.seed): r for r in sweep.runs}
    for g in summary.groups:
        row = []
        for seed in seeds:
            r = by.get((g.index, seed))
            row.append("-" if r is None else f"#{r.id} {r.status.value} {r.step}/{r.max_steps}")
        runs.add_row(cell(g.label), *row)
    parts = [runs]
    cells = {(c.group, c.level, c.metric): c for c in summary.cells}
    diffs = {(d.group, d.level, d.metric): d for d in summary.differences}
    shown = [lv for lv in summary.levels if lv.heldout or lv.key == "overall"] or summary.levels
    baseline = summary.groups[summary.baseline].label if summary.groups else "-"
    for lv in shown:
        for metric in summary.metrics:
            title = f"{lv.key}{' (held out)' if lv.heldout else ''}: final test {metric}, mean [95% CI] over seeds"
            table = Table("group", "n", metric, f"- {cell(baseline)} [paired 95% CI]", "verdict", title=title)
            for g in summary.groups:
                c = cells.get((g.index, lv.key, metric))
                d = diffs.get((g.index, lv.key, metric))
                verdict = c.verdict if c and c.verdict else "-"
                style = "bold green" if verdict == "winner" else ("dim" if verdict == "behind" else "")
                table.add_row(cell(g.label), str(c.n if c else 0), _ci(c.mean, c.ci_low, c.ci_high) if c else "-",
                              "baseline" if g.index == summary.baseline else
                              (_ci(d.mean, d.ci_low, d.ci_high, signed=True) if d else "-"),
                              f"[{style}]{verdict}[/]" if style else verdict)
            parts.append(table)
    return Group(*parts)


@app.command()
def show(
    sweep_id: int,
    baseline: int = typer.Option(None, "--baseline", help="Group index to take differences against"),
    once: bool = typer.Option(False, "--once", help="Print once, even while runs are going"),
    interval: float = typer.Option(2.0, "--interval"),
    server: str = ServerOpt,
    token: str = TokenOpt,
) -> None:
    """The sweep's runs and summary as tables, updated live until every run has finished."""
    from rich.console import Console
    from rich.live import Live

    with session(server, token) as c:
        sweep = c.sweep(sweep_id, baseline)
        if once or sweep.status == "finished":
            Console().print(render(sweep))
            return
        with Live(render(sweep), refresh_per_second=2) as live:
            while sweep.status != "finished":
                time.sleep(interval)
                sweep = c.sweep(sweep_id, baseline)
                live.update(render(sweep))


@app.command()
def cancel(sweep_id: int, server: str = ServerOpt, token: str = TokenOpt) -> None:
    """Cancel every queued or running run of a sweep."""
    with session(server, token) as c:
        sweep = c.cancel_sweep(sweep_id)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(sweep.counts.items()))
    typer.echo(f"sweep {sweep_id}: {sweep.status} ({counts}); running runs stop at their next heartbeat")


@app.command()
def delete(sweep_id: int, server: str = ServerOpt, token: str = TokenOpt) -> None:
    """Delete a finished sweep and its runs."""
    with session(server, token) as c:
        c.delete_sweep(sweep_id)
    typer.echo(f"sweep {sweep_id} deleted")
