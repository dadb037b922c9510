"""``e2h runs watch|submit|ls`` against a real server (issue 22): the task's level labels, a
labelled time column, and validation errors as ``field: message`` lines."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from e2h.cli import app
from tests.dashboard.simulate import started_run

RUNNER = CliRunner()


def e2h(*args: str):
    return RUNNER.invoke(app, list(args), env={"COLUMNS": "160"})


def test_watch_labels_the_tasks_levels_and_its_time_column(api_server, api, worker) -> None:
    run, _ = started_run(api, worker, {"task": {"name": "countdown", "train_levels": [2, 3, 4, 5]},
                                       "algorithm": {"max_steps": 20}, "scheduler": {"name": "cosine"}}, steps=20)
    worker.finish(run)
    out = e2h("runs", "watch", str(run["id"]), "--server", api_server.url)
    assert out.exit_code == 0, out.output
    rows = [line for line in out.output.splitlines() if re.match(r"^\W*\d+\W+\d\.\d{3}", line)]
    labels = [re.match(r"^\W*(\d+)", line).group(1) for line in rows]
    assert labels == ["2", "3", "4", "5"], out.output  # countdown's levels, not the scheduler's 0-3
    assert "step 20/20" in out.output and "elapsed" in out.output, out.output


def test_submit_prints_every_problem_as_field_and_message(api_server) -> None:
    out = e2h("runs", "submit", "algorithm.max_steps=60", "algorithm.num_generations=3",
              "scheduler.params.warmup_steps=100", "--server", api_server.url)
    assert out.exit_code == 1
    text = out.output
    assert "  algorithm.num_generations: 3 must divide the generation batch" in text, text
    assert "  scheduler.params: warmup_steps=100 is not shorter than the run" in text, text
    assert "pydantic" not in text and "http" not in text and "Value error" not in text, text


def test_a_servers_422_is_printed_as_field_and_message(api_server) -> None:
    # Valid as a RunConfig, over the server's ceiling: the server names the field.
    out = e2h("runs", "submit", "task.train_size_per_level=200000", "--server", api_server.url)
    assert out.exit_code == 1
    assert re.search(r"^\s+config\.task\.train_size_per_level: .*100000", out.output, re.M), out.output
    assert '"loc"' not in out.output and "{" not in out.output, out.output



def test_watch_warns_of_a_run_with_no_learning_signal(api_server, api, worker) -> None:
    from e2h.signals import NO_SIGNAL_STEPS

    run, sim = started_run(api, worker, {"algorithm": {"max_steps": 40}, "scheduler": {"name": "cosine"}}, steps=0)
    snaps = sim.advance(NO_SIGNAL_STEPS + 5)
    for snap in snaps:
        snap["metrics"].update(loss=0.0, frac_reward_zero_std=1.0)
    worker.client.post_snapshots(run["id"], snaps, worker.worker_id, run["attempt"])
    worker.client.heartbeat(run["id"], worker.worker_id, run["attempt"], step=snaps[-1]["step"])
    worker.finish(run)
    out = e2h("runs", "watch", str(run["id"]), "--server", api_server.url)
    assert f"warning: no learning signal for {NO_SIGNAL_STEPS} steps: every group's rewards were equal" in " ".join(
        out.output.split()), out.output


def test_ls_names_are_short(api_server, api) -> None:
    submitted = api.submit({"task": {"name": "countdown"}, "algorithm": {"max_steps": 500},
                            "scheduler": {"params": {"min_prob": 0.05}}}, priority=-100)
    assert submitted.name == "variance_regularized countdown tiny 500 steps (min_prob=0.05)"
    out = e2h("runs", "ls", "--server", api_server.url, "--limit", "200")
    assert out.exit_code == 0, out.output
    assert "variance_regularized countdown tiny 500 steps" in out.output
    api.cancel(submitted.id)


def test_ls_shows_a_finished_runs_results(api_server, api, worker) -> None:
    run, _ = started_run(api, worker, {"algorithm": {"max_steps": 10}, "scheduler": {"name": "cosine"},
                                       "task": {"train_levels": [0, 1], "test_levels": [0, 1, 5]}}, steps=10)
    results = {"level_0": {"accuracy": 0.9, "support": 10}, "level_5": {"accuracy": 0.125, "support": 8},
               "overall": {"accuracy": 0.52, "reward_mean": 0.61, "support": 28}}
    worker.client.post_evals(run["id"], [{"step": 10, "name": "test", "results": results}], worker.worker_id,
                             run["attempt"])
    worker.finish(run)
    out = e2h("runs", "ls", "--server", api_server.url, "--limit", "1")
    assert out.exit_code == 0, out.output
    assert "acc 0.520 · held-out 0.125 · reward 0.610" in " ".join(out.output.split()), out.output
