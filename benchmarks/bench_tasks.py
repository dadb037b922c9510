"""Seconds to generate 10,000 rows per level for every generated task, and reward throughput.

Target: generation takes seconds, not minutes (a run builds its data before training
starts); rewards for the fast tasks cost microseconds per completion, coding costs one
sandboxed process per distinct completion (run in parallel).
Run: python benchmarks/bench_tasks.py [--rows N]
"""

from __future__ import annotations

import argparse
import os
import time

from e2h.tasks import build_dataset, get_task

TASKS = ("arithmetic", "countdown", "blocksworld", "coding")


def bench_generation(rows: int) -> None:
    print(f"generate {rows:,} rows per level (seconds)")
    for name in TASKS:
        task = get_task(name)
        cells = []
        total = 0.0
        for level in task.available_levels:
            start = time.perf_counter()
            task.generate(level, rows, seed=0)
            elapsed = time.perf_counter() - start
            total += elapsed
            cells.append(f"L{level}={elapsed:.2f}")
        print(f"  {name:<12} total {total:6.2f}s   " + "  ".join(cells))


def bench_rewards() -> None:
    print("reward, gold completions (microseconds per completion)")
    for name in TASKS:
        task = get_task(name)
        n = 64 if name == "coding" else 2000
        rows = [r for level in task.levels for r in task.generate(level, n // len(task.levels), seed=1)]
        columns = {key: [r[key] for r in rows] for key in rows[0]}
        completions = [f"reasoning</think>\n<answer>{r['solution']}</answer>" for r in rows]
        start = time.perf_counter()
        rewards = task.reward(completions, **columns)
        elapsed = time.perf_counter() - start
        assert rewards == [task.max_reward] * len(rows)
        per = elapsed / len(rows) * 1e6
        print(f"  {name:<12} {per:10.0f} us  ({len(rows)} completions, {os.cpu_count()} CPUs)")


def bench_build_dataset() -> None:
    print("build_dataset, 1,000 train + 100 test rows per level, plain-text prompts (seconds)")
    for name in TASKS:
        start = time.perf_counter()
        build_dataset(get_task(name), train_size=1000, test_size=100, seed=0)
        print(f"  {name:<12} {time.perf_counter() - start:6.2f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000, help="rows generated per level")
    args = parser.parse_args()
    bench_generation(args.rows)
    bench_rewards()
    bench_build_dataset()


if __name__ == "__main__":
    main()
