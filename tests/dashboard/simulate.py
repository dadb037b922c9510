"""Plausible training data made by the real schedulers, posted as a worker would.

A simulated model learns a level by practising it, and learns it faster once the level
below is mastered (easy-to-hard transfer), so the schedule matters; each step the real
scheduler picks levels, sees the rewards and reports its snapshot, so probabilities and the
score breakdown are exactly what a run would show.
"""

from __future__ import annotations

import math
import random
from typing import Any

from e2h.client import Client
from e2h.schedulers import make_scheduler

FORMAT_REWARD = 0.1


LEARNING_RATE = 0.005




class Simulation:
    """One run's curriculum, advanced ``steps`` at a time; snapshots as the trainer writes them."""

    def __init__(self, scheduler: str, num_levels: int, max_steps: int, params: dict | None = None,
                 batch: int = 8, generations: int = 4, seed: int = 0):
        self.k, self.max_steps, self.batch, self.generations = num_levels, max_steps, batch, generations
        self.scheduler = make_scheduler(scheduler, num_levels, max_steps, num_generations=generations,
                                        **(params or {}))
        self.name = scheduler
        self.rng = random.Random(seed)
        self.step = 0
        self.mastery = [0.0] * num_levels

    def solve_rate(self, level: int) -> float:
        """Chance of a correct answer; one past the hardest level is the held-out one."""
        if level >= self.k:
            return 0.6 * self.mastery[-1] ** 2
        return 0.02 + 0.96 * self.mastery[level]

    def _practise(self, level: int) -> None:
        prerequisite = 1.0 if level == 0 else self.mastery[level - 1]
        self.mastery[level] += LEARNING_RATE * (0.1 + prerequisite) * (1.0 - self.mastery[level])

    def advance(self, steps: int) -> list[dict[str, Any]]:
        snaps = []
        for _ in range(steps):
            self.step += 1
            t = self.step
            probs = self.scheduler.probs(t)
            prompts = self.rng.choices(range(self.k), weights=list(probs), k=self.batch)
            levels, rewards = [], []
            for level in prompts:
                rate = self.solve_rate(level)
                self._practise(level)
                for _ in range(self.generations):
                    levels.append(level)
                    rewards.append(FORMAT_REWARD + (1 - FORMAT_REWARD) * (self.rng.random() < rate))
            self.scheduler.update(t, levels, rewards)
            snap = self.scheduler.snapshot(t)
            mean = sum(rewards) / len(rewards)
            snap["time"] = 1_700_000_000.0 + 2.0 * t
            snap["metrics"] = {
                "loss": 0.05 * math.exp(-t / self.max_steps) + 0.01 * self.rng.random(),
                "kl": 0.002 * t / self.max_steps + 0.0005 * self.rng.random(),
                "reward": mean,
                "reward_std": math.sqrt(sum((r - mean) ** 2 for r in rewards) / len(rewards)),
            }
            snaps.append(snap)
        return snaps

    def evaluation(self, level_values: list[int], heldout: list[int]) -> dict[str, Any]:
        results = {}
        for i, value in enumerate([*level_values, *heldout]):
            accuracy = round(self.solve_rate(i), 3)
            results[f"level_{value}"] = {"accuracy": accuracy, "support": 50}
        accs = [r["accuracy"] for r in results.values()]
        results["overall"] = {"accuracy": sum(accs) / len(accs), "support": 50 * len(accs)}
        return {"step": self.step, "name": "eval", "results": results}

    def completions(self, per_level: int = 4) -> list[dict[str, Any]]:
        """A sample of the current step's completions per level, as the trainer keeps them (best first)."""
        out = []
        for level in range(self.k):
            a, b, c = (self.rng.randint(1, 9) for _ in range(3))
            question = f"What is {a}+{b}*{c}" + "-1" * level + "? Give the integer in <answer></answer>."
            truth = a + b * c - level
            rows = []
            for _ in range(per_level):
                right = self.rng.random() < self.solve_rate(level)
                answer = truth if right else truth + self.rng.choice([-2, -1, 1, 3])
                tagged = self.rng.random() < 0.8
                reward = (FORMAT_REWARD + (1 - FORMAT_REWARD) * right) if tagged else 0.0
                text = f"{b}*{c} = {b * c}, then {a}+{b * c}</think>\n" + (
                    f"<answer>{answer}</answer>" if tagged else f"The answer is {answer}.")
                rows.append((reward, text))
            mean = sum(r for r, _ in rows) / per_level
            for index, (reward, text) in enumerate(sorted(rows, key=lambda row: -row[0])):
                out.append({"step": self.step, "level": level, "index": index,
                            "prompt": f"<|user|>{question}</s><|assistant|>Let me solve this step by step.\n<think>",
                            "completion": text, "reward": reward, "rewards": {"arithmetic_reward": reward},
                            "advantage": round(reward - mean, 4)})
        return out


# What a worker reports about where it placed a run (its launch plan's training process).
PLACEMENT = {"role": "train", "command": ["python", "-m", "e2h.train", "--config", "config.json"],
             "env": {"CUDA_VISIBLE_DEVICES": "0"}}


class FakeWorker:
    """Claims runs and reports on them through the client, exactly as worker/ does."""

    def __init__(self, url: str, token: str, worker_id: str = "sim-worker"):
        self.client = Client(url, token=token)
        self.worker_id = worker_id

    def claim(self) -> dict:
        claimed = self.client.claim(self.worker_id, ["cpu"])
        assert claimed is not None, "nothing queued to claim"
        return claimed.run.model_dump(mode="json")  # the tests read runs as the JSON they came as

    def report(self, run: dict, sim: Simulation, steps: int, eval_every: int = 50, logs: bool = True) -> None:
        config = run["config"]["task"]
        train = list(config["train_levels"])
        heldout = sorted(set(config["test_levels"]) - set(train))
        snaps, evals = [], []
        for _ in range(steps):
            snaps += sim.advance(1)
            if sim.step % eval_every == 0:
                evals.append(sim.evaluation(train, heldout))
        for i in range(0, len(snaps), 1000):
            self.client.post_snapshots(run["id"], snaps[i:i + 1000], self.worker_id, run["attempt"])
        if evals:
            self.client.post_evals(run["id"], evals, self.worker_id, run["attempt"])
        if logs:
            last = snaps[-1]
            self.client.post_logs(run["id"], [
                f"step {s['step']}: reward={s['metrics']['reward']:.3f} loss={s['metrics']['loss']:.4f}"
                for s in snaps[-20:]] + [f"probabilities {[round(lv['probability'], 3) for lv in last['levels']]}"],
                self.worker_id, run["attempt"])
        self.client.heartbeat(run["id"], self.worker_id, run["attempt"], step=sim.step, processes=[PLACEMENT])

    def post_completions(self, run: dict, sim: Simulation) -> None:
        """The sample of completions at the simulation's current step, as the worker ships it."""
        self.client.post_completions(run["id"], sim.completions(), self.worker_id, run["attempt"])

    def finish(self, run: dict, status: str = "succeeded", error: str | None = None) -> dict:
        return self.client.finish(run["id"], self.worker_id, run["attempt"], status, error=error)

    def close(self) -> None:
        self.client.close()


def started_run(api: Client, worker: FakeWorker, config: dict, steps: int, name: str | None = None,
                tags: list[str] | None = None, eval_every: int = 50) -> tuple[dict, Simulation]:
    """Submit a run, claim it and report ``steps`` steps: a run in progress, as the server sees it."""
    submitted = api.submit(config, name=name, priority=1_000_000, tags=tags)
    run = worker.claim()
    assert run["id"] == submitted.id, "another queued run had a higher priority"
    scheduler = run["config"]["scheduler"]
    sim = Simulation(scheduler["name"], run["num_levels"], run["max_steps"], scheduler["params"],
                     seed=run["id"])
    if steps:
        worker.report(run, sim, steps, eval_every=eval_every)
    return run, sim
