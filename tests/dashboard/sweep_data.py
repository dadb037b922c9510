"""Sweeps whose runs are reported by the worker stand-in: the real schedulers drive a simulated learner
(tests.dashboard.simulate), each run ends with a final "test" evaluation as e2h.train posts it."""

from __future__ import annotations

from e2h.client import Client
from e2h.sweeps import SweepPublic
from tests.dashboard.simulate import FORMAT_REWARD, FakeWorker, Simulation


def final_test(sim: Simulation, run: dict) -> dict:
    """The worker's final evaluation record: accuracy and reward_mean per level, held-out included."""
    task = run["config"]["task"]
    train = list(task["train_levels"])
    heldout = sorted(set(task["test_levels"]) - set(train))
    record = sim.evaluation(train, heldout)
    for figures in record["results"].values():
        figures["reward_mean"] = round(FORMAT_REWARD + (1 - FORMAT_REWARD) * figures["accuracy"], 4)
    return {**record, "name": "test"}


def report_runs(api: Client, worker: FakeWorker, sweep: SweepPublic, steps: int, runs: int | None = None,
                eval_every: int = 20) -> list[dict]:
    """Claim ``runs`` of the sweep's runs (default all), train each ``steps`` steps in the simulation, post
    its final test evaluation and finish it. -> the runs as claimed."""
    done = []
    for _ in range(len(sweep.run_ids) if runs is None else runs):
        run = worker.claim()
        assert run["id"] in sweep.run_ids, "a run of another sweep was queued first"
        scheduler = run["config"]["scheduler"]
        sim = Simulation(scheduler["name"], run["num_levels"], run["max_steps"], scheduler["params"],
                         seed=run["config"]["algorithm"]["seed"])
        worker.report(run, sim, steps, eval_every=eval_every, logs=False)
        worker.client.post_evals(run["id"], [final_test(sim, run)], worker.worker_id, run["attempt"])
        worker.finish(run)
        done.append(run)
    return done
