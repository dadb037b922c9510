"""Evaluation's share of the wall time of the default `{}` run on a CPU (issue 18; target: under 10%).

Runs ``e2h train`` with no overrides (builtin:tiny, arithmetic, 200 steps, an evaluation of the
300 test questions at steps 50, 100 and 150 and the final test at 200) in a subprocess, in a
temporary output dir, timing the whole command. The evaluation is timed where the run calls it:
a ``sitecustomize`` put on the subprocesses' path wraps the evaluation function as its module is
imported (``e2h.evaluation.evaluate_in_trainer`` since issue 18, before ``e2h.train`` takes it;
``e2h.train.evaluate`` before issue 18), so the training code is run unchanged and the same wrapper
times older trees too (``--source``, e.g. a ``git worktree`` of an earlier commit).
Prints, per run: wall seconds, each evaluation's seconds, their sum and its share of the wall
time, the final test's overall accuracy, the load average.

Run: python benchmarks/bench_eval_share.py [--runs 1] [--source TREE] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Wraps the evaluation function right after its module is imported, in whichever process imports
# it (the training child of `e2h train`, or `e2h train` itself in older trees). Since issue 18 the
# child runs as `python -m e2h.train` (__main__, not an import), so the wrapper goes on
# e2h.evaluation, which e2h.train imports evaluate_in_trainer from; before, e2h.train held evaluate.
HOOK = r'''
import importlib.abc, importlib.util, json, os, sys, time

_LOG = os.environ.get("E2H_BENCH_EVAL_LOG")
_TARGETS = {"e2h.evaluation": "evaluate_in_trainer", "e2h.train": "evaluate"}


def _wrap(fn, name):
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            with open(_LOG, "a") as f:
                f.write(json.dumps({"function": name, "seconds": time.perf_counter() - start}) + "\n")
    return timed


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        name = _TARGETS.get(fullname)
        if name is None:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None:
            return None
        exec_module = spec.loader.exec_module

        def patched(module):
            exec_module(module)
            if callable(getattr(module, name, None)):
                setattr(module, name, _wrap(getattr(module, name), f"{fullname}.{name}"))
        spec.loader.exec_module = patched
        return spec


if _LOG:
    sys.meta_path.insert(0, _Finder())
'''


def one_run(source: Path, out: Path, hook_dir: Path) -> dict:
    log = out.parent / f"{out.name}.evals.jsonl"
    env = {**os.environ, "TQDM_DISABLE": "1", "E2H_BENCH_EVAL_LOG": str(log),
           "PYTHONPATH": os.pathsep.join([str(source), str(hook_dir), os.environ.get("PYTHONPATH", "")])}
    load_before = os.getloadavg()
    cmd = [sys.executable, "-m", "e2h.cli", "train", "--output-dir", str(out)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=source, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    if not calls:
        raise RuntimeError("no evaluation was timed: found neither e2h.evaluation.evaluate_in_trainer "
                           "nor e2h.train.evaluate")
    results = json.loads((out / "test_results.json").read_text())
    return {"wall_s": wall, "evals_s": [c["seconds"] for c in calls], "function": calls[0]["function"],
            "accuracy": results["overall"]["accuracy"], "load_before": load_before, "load_after": os.getloadavg()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--source", type=Path, default=REPO, help="tree to import e2h from (default: this checkout)")
    p.add_argument("--keep", type=Path, default=None, help="keep the runs' output dirs here")
    ns = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_eval_share_"))
    (work / "hook").mkdir()
    (work / "hook" / "sitecustomize.py").write_text(HOOK)
    source = ns.source.resolve()
    print(f"source: {source.name}, {os.cpu_count()} CPUs")
    shares = []
    try:
        for i in range(ns.runs):
            r = one_run(source, work / f"run{i + 1}", work / "hook")
            total = sum(r["evals_s"])
            shares.append(total / r["wall_s"])
            each = ", ".join(f"{s:.1f}" for s in r["evals_s"])
            print(f"run {i + 1}: wall {r['wall_s']:.1f} s; {len(r['evals_s'])} evaluations ({r['function']}): "
                  f"{each} s; eval {total:.1f} s = {100 * shares[-1]:.1f}% of wall; "
                  f"test accuracy {r['accuracy']:.3f}; load average before "
                  f"{' '.join(f'{x:.2f}' for x in r['load_before'])}, after "
                  f"{' '.join(f'{x:.2f}' for x in r['load_after'])}")
        if ns.keep:
            shutil.copytree(work, ns.keep, dirs_exist_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if len(shares) > 1:
        print(f"eval share: min {100 * min(shares):.1f}%, max {100 * max(shares):.1f}%")


if __name__ == "__main__":
    main()
