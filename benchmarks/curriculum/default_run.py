"""The default `{}` run, timed, and the easy levels' reward before and after it (issue 4).

Runs ``e2h train`` with no overrides (``RunConfig()``: builtin:tiny, arithmetic levels 0-4,
the variance-regularized scheduler, 200 steps) in a subprocess, wall-clock timed, then probes
the shipped model and the run's final checkpoint with ``benchmarks.curriculum.probe`` (every
distinct training question of a level, 8 samples at temperature 1, what GRPO optimises):

    python -m benchmarks.curriculum.default_run                 # seed 42, ~3 min on 2 cores
    python -m benchmarks.curriculum.default_run --seeds 42,1,2

Prints the wall time per run and, per level, the sampled mean reward, the share of sampled
completions in the answer format and the sampled accuracy, before and after.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.curriculum.probe import probe

LEVELS = [0, 1, 2]
BASE_MODEL = "builtin:tiny"


def train_default(output_dir: Path, seed: int | None = None) -> float:
    """``e2h train`` with the default config (``algorithm.seed`` only if given); returns wall seconds."""
    overrides = [] if seed is None else [f"algorithm.seed={seed}"]
    cmd = [sys.executable, "-m", "e2h.cli", "train", *overrides, "--output-dir", str(output_dir)]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return wall


def final_checkpoint(output_dir: Path) -> str:
    from e2h.trainer import last_complete_checkpoint

    checkpoint = last_complete_checkpoint(output_dir)
    if checkpoint is None:
        raise RuntimeError(f"{output_dir} has no complete checkpoint")
    return checkpoint


def measure(output_dir: Path, seed: int | None, samples: int) -> dict:
    """Train once and probe the final checkpoint: {"wall_s", "after": {level: probe row}}."""
    wall = train_default(output_dir, seed)
    rows = probe(final_checkpoint(output_dir), LEVELS, questions=120, samples=samples, temperature=1.0)
    return {"seed": seed, "wall_s": wall, "after": {r["level"]: r for r in rows}}


def report(before: dict[int, dict], runs: list[dict]) -> str:
    lines = ["| model | wall s | " + " | ".join(f"level {lv} reward / format / acc" for lv in LEVELS) + " |",
             "|---|---|" + "---|" * len(LEVELS)]

    def cells(by_level: dict[int, dict]) -> str:
        return " | ".join(
            f"{by_level[lv]['sampled_train_reward']:.3f} / {by_level[lv]['sampled_train_format']:.3f} / "
            f"{by_level[lv]['sampled_train_accuracy']:.3f}" for lv in LEVELS)

    lines.append(f"| {BASE_MODEL}, untrained | - | {cells(before)} |")
    for run in runs:
        lines.append(f"| default run, seed {run['seed']} | {run['wall_s']:.0f} | {cells(run['after'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="42", help="comma-separated algorithm.seed values (42 is the default)")
    parser.add_argument("--samples", type=int, default=8, help="sampled completions per question in the probe")
    parser.add_argument("--work-dir", type=Path, default=None, help="run output dirs (default: a temporary dir)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="e2h_default_run_"))
    before = {r["level"]: r for r in probe(BASE_MODEL, LEVELS, questions=120, samples=args.samples,
                                            temperature=1.0)}
    runs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        runs.append(measure(work / f"seed{seed}", seed, args.samples))
        print(f"seed {seed}: {runs[-1]['wall_s']:.0f} s", flush=True)
    print(report(before, runs))


if __name__ == "__main__":
    main()
