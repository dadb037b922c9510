"""``e2h sweep submit|ls|show|cancel|delete`` against a real server, the runs reported by the worker stand-in."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from e2h.cli import app
from tests.dashboard.sweep_data import report_runs

RUNNER = CliRunner()


def e2h(*args: str):
    return RUNNER.invoke(app, list(args), env={"COLUMNS": "200"})


def test_submit_show_ls_cancel_and_delete_a_sweep(api_server, api, worker) -> None:
    out = e2h("sweep", "submit", "algorithm.max_steps=300", "--grid", "scheduler.name=balanced,gaussian,sec",
              "--seeds", "1,2,3", "--baseline", "scheduler.name=balanced", "--name", "which wins",
              "--server", api_server.url)
    assert out.exit_code == 0, out.output
    sweep_id = int(re.search(r"sweep (\d+) queued: which wins: 3 groups x 3 seeds = 9 runs", out.output).group(1))
    sweep = api.sweep(sweep_id)
    assert [r.config["algorithm"]["max_steps"] for r in map(api.get, sweep.run_ids)] == [300] * 9

    report_runs(api, worker, sweep, steps=300, eval_every=100)
    out = e2h("sweep", "show", str(sweep_id), "--server", api_server.url)
    assert out.exit_code == 0, out.output
    text = out.output
    assert f"sweep {sweep_id} which wins: finished" in text, text
    assert "level_5 (held out): final test accuracy" in text and "overall: final test reward_mean" in text, text
    # Every group's row on the held-out accuracy table, with the verdict the server computed.
    summary = api.sweep(sweep_id).summary
    heldout = next(t for t in text.split("level_5 (held out): final test accuracy")[1:2])
    for cell in [c for c in summary.cells if (c.level, c.metric) == ("level_5", "accuracy")]:
        label = summary.groups[cell.group].label
        row = next(line for line in heldout.splitlines() if line.startswith(f"│ {label} "))
        assert f"{cell.mean:.3f}" in row and cell.verdict in row, (row, cell)
    assert "baseline" in heldout
    assert re.search(r"#\d+ succeeded 300/300", text), text

    out = e2h("sweep", "ls", "--server", api_server.url)
    assert out.exit_code == 0 and re.search(rf"{sweep_id}\s.*which wins\s.*finished\s.*3\s.*3\s.*9\s.*9", out.output)

    out = e2h("sweep", "cancel", str(sweep_id), "--server", api_server.url)
    assert out.exit_code == 1 and f"sweep {sweep_id} has finished" in out.output, out.output
    out = e2h("sweep", "delete", str(sweep_id), "--server", api_server.url)
    assert out.exit_code == 0 and api.list_sweeps().count == 0


def test_a_bad_grid_point_is_printed_naming_the_point_and_the_field(api_server, api) -> None:
    out = e2h("sweep", "submit", "--grid", "scheduler.name=balanced,nope", "--seeds", "1,2",
              "--server", api_server.url)
    assert out.exit_code == 1
    assert re.search(r"^\s+config\.scheduler\.name: grid point 1 \(scheduler\.name=nope\), seed 1: ", out.output,
                     re.M), out.output
    assert api.list_sweeps().count == 0
    out = e2h("sweep", "submit", "--grid", "scheduler.name", "--server", api_server.url)
    assert out.exit_code == 1 and "give KEY=VALUE,VALUE" in out.output


def test_cancel_stops_a_queued_sweep(api_server, api) -> None:
    out = e2h("sweep", "submit", "--grid", "algorithm.learning_rate=1e-4,3e-4,[1e-3]", "--server", api_server.url)
    assert out.exit_code == 1 and "learning_rate" in out.output  # a list is not a float: the server says so
    out = e2h("sweep", "submit", "--grid", "algorithm.learning_rate=1e-4,3e-4", "--seeds", "5",
              "--server", api_server.url)
    assert out.exit_code == 0, out.output
    sweep_id = int(re.search(r"sweep (\d+) queued", out.output).group(1))
    assert [g["algorithm.learning_rate"] for g in api.sweep(sweep_id).groups] == [1e-4, 3e-4]
    out = e2h("sweep", "cancel", str(sweep_id), "--server", api_server.url)
    assert out.exit_code == 0 and f"sweep {sweep_id}: finished (2 cancelled)" in out.output, out.output
