"""The ``e2h`` console script (typer). Heavy modules are imported inside each command."""

from __future__ import annotations

from pathlib import Path

import typer

from e2h.runs_cli import app as runs_app
from e2h.sweep_cli import app as sweep_app

app = typer.Typer(help="E2H Curriculum Studio: easy-to-hard curriculum GRPO training.", no_args_is_help=True)
model_app = typer.Typer(help="The built-in tiny model.", no_args_is_help=True)
app.add_typer(model_app, name="model")
app.add_typer(runs_app, name="runs")
app.add_typer(sweep_app, name="sweep")


@app.command(context_settings={"allow_extra_args": False})
def train(
    overrides: list[str] = typer.Argument(None, help="group=preset (model/task/algorithm/scheduler) or key=value"),
    config: Path = typer.Option(None, "--config", help="RunConfig JSON/YAML file (the body POST /runs takes)"),
    output_dir: Path = typer.Option(None, "--output-dir", help="Default: outputs/<seed's naming rule>"),
    gpus: str = typer.Option(None, "--gpus", help="GPUs to plan on: a count, a list like 0,2, or none "
                             "(default: every visible one)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the launch plan as JSON and start nothing"),
) -> None:
    """Train one run locally, without the server (resumes from the output dir's last checkpoint).

    The run is placed by its launch plan (devices, vLLM server, accelerate; see --dry-run).
    """
    if not dry_run:
        _need("train")
    from e2h.launch import main

    argv = list(overrides or [])
    if config is not None:
        argv += ["--config", str(config)]
    if output_dir is not None:
        argv += ["--output-dir", str(output_dir)]
    if gpus is not None:
        argv += ["--gpus", gpus]
    if dry_run:
        argv.append("--dry-run")
    try:
        code = main(argv)
    except ValueError as e:
        from e2h.config import describe_error

        typer.secho(f"error: {describe_error(e)}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@app.command()
def server(
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address (non-loopback needs E2H_WORKER_TOKEN)"),
    port: int = typer.Option(8000, "--port"),
) -> None:
    """Run the API server (uvicorn, ASGI app server.main:app); migrates the database first."""
    _need("server")
    from server.main import serve

    try:
        serve(host=host, port=port)
    except ValueError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


@app.command()
def worker(
    server_url: str = typer.Option("http://127.0.0.1:8000", "--server", envvar="E2H_SERVER_URL", help="Server URL"),
    token: str = typer.Option(None, "--token", envvar="E2H_WORKER_TOKEN", help="Worker bearer token"),
    gpus: str = typer.Option(None, "--gpus", help="GPUs this worker's runs may use: a list like 0,1, a count, or "
                             "none (default: every visible one); a run is claimed only when it fits them"),
    burst: bool = typer.Option(False, "--burst", help="Exit when the queue is empty"),
    max_jobs: int = typer.Option(None, "--max-jobs", help="Exit after this many runs"),
    labels: str = typer.Option("", "--labels", help="Comma-separated labels"),
    heartbeat: float = typer.Option(5.0, "--heartbeat", help="Seconds between heartbeats"),
    work_dir: Path = typer.Option(Path("outputs"), "--work-dir", help="Where run output dirs are created"),
) -> None:
    """Claim queued runs and train them in child processes."""
    _need("train")
    from worker.main import main as worker_main

    argv = ["--server", server_url, "--heartbeat", str(heartbeat), "--work-dir", str(work_dir), "--labels", labels]
    if token:
        argv.append(f"--token={token}")  # a generated token may start with "-"
    if burst:
        argv.append("--burst")
    if max_jobs is not None:
        argv += ["--max-jobs", str(max_jobs)]
    if gpus is not None:
        argv += ["--gpus", gpus]
    raise typer.Exit(worker_main(argv))


@app.command()
def dashboard(
    server_url: str = typer.Option("http://127.0.0.1:8000", "--server", help="Server URL"),
    port: int = typer.Option(8501, "--port"),
    host: str = typer.Option("127.0.0.1", "--host"),
    token: str = typer.Option(None, "--token", envvar="E2H_API_TOKEN", help="API token, when the server sets one"),
) -> None:
    """Serve the Streamlit dashboard; Ctrl-C, SIGTERM or SIGHUP stops it (and its Streamlit process)."""
    _need("dashboard")
    from dashboard.launch import run

    raise typer.Exit(run(server_url, port, host, token))


@app.command()
def up(
    demo: bool = typer.Option(False, "--demo", help="Queue the built-in tiny run so the dashboard moves at once"),
    data_dir: Path = typer.Option(Path("data"), "--data-dir", envvar="E2H_DATA_DIR", help="Database, runs, logs"),
    server_port: int = typer.Option(8000, "--server-port"),
    dashboard_port: int = typer.Option(8501, "--dashboard-port"),
    no_dashboard: bool = typer.Option(False, "--no-dashboard"),
) -> None:
    """Start the server, one worker and the dashboard on loopback; Ctrl-C, SIGTERM or SIGHUP stops all three."""
    for extra in ["server", "train"] + ([] if no_dashboard else ["dashboard"]):
        _need(extra)
    import logging

    from e2h.stack import Stack
    from e2h.stack import up as run_stack

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    stack = Stack(data_dir=data_dir, server_port=server_port, dashboard_port=dashboard_port,
                  with_dashboard=not no_dashboard)
    raise typer.Exit(run_stack(stack, demo=demo, echo=typer.echo))


@model_app.command("build-tiny")
def build_tiny(
    output_dir: Path = typer.Option(None, "--output-dir", help="Default: the shipped e2h/assets/tiny"),
    steps: int = typer.Option(None, "--steps", help="Warm-start SFT steps (default: the shipped model's)"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Rebuild the built-in tiny model: tokenizer, architecture, SFT warm start on easy arithmetic."""
    _need("train")
    from e2h.models import TINY_DIR, WARMSTART_STEPS, build_and_warm_start

    out = build_and_warm_start(output_dir or TINY_DIR, steps=steps or WARMSTART_STEPS, seed=seed, progress=True)
    typer.echo(f"tiny model written to {out}")


def _need(extra: str) -> None:
    """Exit 2 with the pip command to run when this command's extra is not installed."""
    from e2h.extras import install_hint

    hint = install_hint(extra)
    if hint:
        typer.secho(f"error: {hint}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
