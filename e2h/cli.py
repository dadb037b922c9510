"""The ``e2h`` console script (typer). Heavy modules are imported inside each command."""

from __future__ import annotations

from pathlib import Path

import typer

from e2h.runs_cli import app as runs_app
from e2h.settings import DASHBOARD_PORT, SERVER_HOST, SERVER_PORT, SERVER_URL, ClientSettings
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
    from e2h.launch import launch

    try:
        code = launch(list(overrides or []), str(config) if config else None, str(output_dir) if output_dir else None,
                      gpus, dry_run)
    except ValueError as e:
        from e2h.config import describe_error

        typer.secho(f"error: {describe_error(e)}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@app.command("eval", context_settings={"allow_extra_args": False})
def eval_command(
    checkpoint: str = typer.Argument(..., help="A run's output dir, final/, checkpoint-N/, a LoRA adapter, a model "
                                     "directory or hub id, or builtin:tiny"),
    overrides: list[str] = typer.Argument(None, help="group=preset or key=value, e.g. task.test_levels=[6]"),
    output: Path = typer.Option(None, "--output", help="Results file (default: CHECKPOINT/test_results.json)"),
    config: Path = typer.Option(None, "--config", help="RunConfig file (default: the run's config.json, if found)"),
    samples: int = typer.Option(1, "--samples", help="K > 1 adds K samples per question at algorithm.temperature"),
    batch_size: int = typer.Option(64, "--batch-size"),
    backend: str = typer.Option("auto", "--backend", help="auto (vLLM on a GPU when installed), transformers, vllm"),
) -> None:
    """Evaluate a checkpoint per level (E2H's mode=test) and write test_results.json in E2H's format."""
    _need("train")
    from e2h.eval_cli import main as eval_main

    argv = [checkpoint, *(overrides or []), "--samples", str(samples), "--batch-size", str(batch_size),
            "--backend", backend]
    if output is not None:
        argv += ["--output", str(output)]
    if config is not None:
        argv += ["--config", str(config)]
    raise typer.Exit(eval_main(argv))


@app.command()
def server(
    host: str = typer.Option(SERVER_HOST, "--host", help="Bind address (non-loopback needs E2H_WORKER_TOKEN)"),
    port: int = typer.Option(SERVER_PORT, "--port"),
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
    server_url: str = typer.Option(None, "--server", help=f"Server URL (default: $E2H_SERVER_URL, else {SERVER_URL})"),
    token: str = typer.Option(None, "--token", help="Worker bearer token (default: $E2H_WORKER_TOKEN)"),
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
    from e2h.launch import parse_gpus
    from worker.main import serve

    try:
        chosen = parse_gpus(gpus)
    except ValueError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(serve(server_url, token, labels=[x for x in labels.split(",") if x], work_dir=work_dir,
                           heartbeat_s=heartbeat, burst=burst, max_jobs=max_jobs, gpus=chosen))


@app.command()
def dashboard(
    server_url: str = typer.Option(None, "--server", help=f"Server URL (default: $E2H_SERVER_URL, else {SERVER_URL})"),
    port: int = typer.Option(DASHBOARD_PORT, "--port"),
    host: str = typer.Option(SERVER_HOST, "--host"),
    token: str = typer.Option(None, "--token", help="API token, when the server sets one (default: $E2H_API_TOKEN)"),
) -> None:
    """Serve the Streamlit dashboard; Ctrl-C, SIGTERM or SIGHUP stops it (and its Streamlit process)."""
    _need("dashboard")
    from dashboard.launch import run

    settings = ClientSettings.resolve(server_url, token)
    raise typer.Exit(run(settings.server_url, port, host, settings.api_token))


@app.command()
def up(
    demo: bool = typer.Option(False, "--demo", help="Queue the built-in tiny run so the dashboard moves at once"),
    data_dir: Path = typer.Option(Path("data"), "--data-dir", envvar="E2H_DATA_DIR", help="Database, runs, logs"),
    server_port: int = typer.Option(SERVER_PORT, "--server-port"),
    dashboard_port: int = typer.Option(DASHBOARD_PORT, "--dashboard-port"),
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
