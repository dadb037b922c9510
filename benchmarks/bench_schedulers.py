"""Microseconds per probs() + update() for every scheduler, K=5 and K=50.

Target: well under 1 ms per call pair, so a training step never waits on the curriculum.
Feedback per step: 16 prompts x 8 generations, like a small GRPO batch.
Run: python benchmarks/bench_schedulers.py
"""

from __future__ import annotations

import time

import numpy as np

from e2h.schedulers import SCHEDULERS, make_scheduler

STEPS = 2000
PROMPTS, GENERATIONS = 16, 8


def bench(name: str, k: int) -> float:
    params = {"warmup_steps": 10} if name == "variance_regularized" else {}
    if name in ("variance_regularized", "sec"):
        params["min_prob"] = 0.5 / k
    s = make_scheduler(name, k, STEPS, num_generations=GENERATIONS, **params)
    rng = np.random.default_rng(0)
    levels = [np.repeat(rng.integers(0, k, PROMPTS), GENERATIONS).tolist() for _ in range(64)]
    rewards = [rng.random(PROMPTS * GENERATIONS).tolist() for _ in range(64)]
    start = time.perf_counter()
    for step in range(STEPS):
        s.probs(step)
        s.update(step, levels[step % 64], rewards[step % 64])
    return (time.perf_counter() - start) / STEPS * 1e6


def main() -> None:
    print(f"{'scheduler':<22}{'K=5 (us)':>12}{'K=50 (us)':>12}")
    for name in SCHEDULERS:
        print(f"{name:<22}{bench(name, 5):>12.1f}{bench(name, 50):>12.1f}")


if __name__ == "__main__":
    main()
