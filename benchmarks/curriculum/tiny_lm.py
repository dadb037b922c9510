"""Curriculum benchmark, tiny LM: every schedule on the arithmetic ladder, same budget, several seeds.

Trains the built-in tiny model (``model=tiny task=arithmetic``: training levels 0-4, held-out
level 5) once per (schedule, seed) with ``e2h.train.run`` on the CPU, sequentially in this
process, then evaluates every level (held-out included) greedily on the test split:

    nice -n 15 python -m benchmarks.curriculum.tiny_lm      # 6 schedules x 3 seeds, ~24 min on 2 cores

Writes benchmarks/curriculum/results/tiny_lm_results.csv (one row per run), the block between
the ``tiny-lm-results`` markers in docs/benchmarks.md and docs/figures/tiny_lm.png.
Options: --seeds N, --max-steps N, --schedulers a,b, --train-size N, --test-size N,
--work-dir DIR (run output dirs, default /tmp/e2h_tiny_lm), --csv FILE, --no-doc,
--report-only (rebuild the tables and figure from the CSV without training), --merge (run only
--schedulers and keep the other schedules' rows and the start points from the CSV, e.g. after a
scheduler's defaults changed).
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.curriculum.doc import DOC, rewrite_section
from benchmarks.curriculum.simulate import ISSUE9_SEC

ROOT = Path(__file__).resolve().parents[2]
FIGURE = ROOT / "docs" / "figures" / "tiny_lm.png"
CSV_PATH = Path(__file__).resolve().parent / "results" / "tiny_lm_results.csv"
BEGIN, END = "<!-- tiny-lm-results:begin -->", "<!-- tiny-lm-results:end -->"
COMMAND = "nice -n 15 python -m benchmarks.curriculum.tiny_lm"

# A schedule is a scheduler preset with its defaults, or a labelled variant: the preset and overrides.
VARIANTS = {
    "sec (hardness_power=2)": ["scheduler=sec", "scheduler.params.hardness_power=2"],
    # sec's floors per prompt, as before issue 21's fifth round: its rows of 2026-12-07 ran as plain `scheduler=sec`.
    "sec (reference_prompts=0)": ["scheduler=sec", "scheduler.params.reference_prompts=0"],
    # sec's defaults before issue 21 (no settling rule): its rows of 2026-11-25 ran as plain `scheduler=sec`.
    "sec (issue-9 defaults)": ["scheduler=sec", *(f"scheduler.params.{k}={v}" for k, v in ISSUE9_SEC.items())],
    # The opt-in final phase of issue 21's sixth round: the last quarter drills the hardest level that teaches.
    "sec (final_phase=0.25)": ["scheduler=sec", "scheduler.params.final_phase=0.25"],
}
SCHEDULERS = ["balanced", "classic", "cosine", "gaussian", "variance_regularized", "sec", *VARIANTS]
BASELINE = "none (0 steps)"  # the warm-started model, untrained: the level every schedule starts from
ORDER = [BASELINE, *SCHEDULERS]
TRAIN_LEVELS = [0, 1, 2, 3, 4]
HELDOUT = 5
LEVELS = TRAIN_LEVELS + [HELDOUT]
LAST_STEPS = 20  # training reward: mean over the last this many steps
# The same budget for every schedule. max_steps and the data sizes come from the options.
BASE = [
    "model=tiny",
    "task=arithmetic",
    "algorithm.per_device_train_batch_size=8",
    "algorithm.num_generations=4",
    "algorithm.max_completion_length=40",
    "algorithm.eval_steps=1000",
    "algorithm.save_steps=1000",
]
# The seed's VREx warmup (100 steps of uniform sampling) is longer than the whole run.
EXTRA = {"variance_regularized": ["scheduler.params.warmup_steps=10", "scheduler.params.update_interval=5"]}

FIELDS = (
    ["scheduler", "seed", "max_steps", "train_size_per_level", "test_size_per_level", "wall_s"]
    + [f"level_{lv}_{m}" for lv in LEVELS for m in ("accuracy", "reward_mean", "format_rate", "support")]
    + ["overall_accuracy", "overall_reward_mean", "overall_support"]
    + [f"train_reward_last{LAST_STEPS}", "train_reward_all"]
    + [f"share_level_{lv}" for lv in TRAIN_LEVELS]
)


def overrides(scheduler: str, seed: int, max_steps: int, train_size: int, test_size: int) -> list[str]:
    return [
        *BASE,
        *VARIANTS.get(scheduler, [f"scheduler={scheduler}"]),
        f"algorithm.max_steps={max_steps}",
        f"algorithm.seed={seed}",
        f"task.train_size_per_level={train_size}",
        f"task.test_size_per_level={test_size}",
        *EXTRA.get(scheduler, []),
    ]


# -- one run -----------------------------------------------------------------------------


def baseline_one(seed: int, args: argparse.Namespace) -> dict:
    """The warm-started model before any GRPO step, evaluated on the same test rows as the runs of ``seed``."""
    from e2h.config import compose
    from e2h.evaluation import evaluate
    from e2h.models import load_model, load_tokenizer
    from e2h.train import build_datasets, build_task

    config = compose(overrides("balanced", seed, args.max_steps, args.train_size, args.test_size))
    start = time.perf_counter()
    task = build_task(config)
    tokenizer = load_tokenizer(config.model.name_or_path)
    _, test_rows = build_datasets(config, task, tokenizer)
    model = load_model(config.model.name_or_path, config.model.dtype)
    results = evaluate(model, tokenizer, task, test_rows, config.algorithm.max_completion_length)
    row = _row(BASELINE, seed, 0, args, time.perf_counter() - start, results, task)
    row.update({f"train_reward_last{LAST_STEPS}": float("nan"), "train_reward_all": float("nan")})
    row.update({f"share_level_{lv}": 0.0 for lv in TRAIN_LEVELS})
    return row


def train_one(scheduler: str, seed: int, args: argparse.Namespace) -> dict:
    """Train and evaluate one (schedule, seed); the CSV row."""
    from e2h.config import compose
    from e2h.outputs import SNAPSHOTS_FILE, read_jsonl
    from e2h.train import build_task, run

    config = compose(overrides(scheduler, seed, args.max_steps, args.train_size, args.test_size))
    out = Path(args.work_dir) / (re.sub(r"[^A-Za-z0-9_.-]+", "_", scheduler) + f"_seed{seed}")
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    results = run(config, out, resume=False)
    row = _row(scheduler, seed, args.max_steps, args, time.perf_counter() - start, results, build_task(config))
    snaps = read_jsonl(out / SNAPSHOTS_FILE)
    rewards = [s["metrics"]["reward"] for s in snaps if "reward" in s.get("metrics", {})]
    row[f"train_reward_last{LAST_STEPS}"] = float(np.mean(rewards[-LAST_STEPS:]))
    row["train_reward_all"] = float(np.mean(rewards))
    counts = {lv["level"]: lv["count"] for lv in snaps[-1]["levels"]}  # cumulative completions per level
    total = sum(counts.values()) or 1
    for i, lv in enumerate(TRAIN_LEVELS):
        row[f"share_level_{lv}"] = counts.get(i, 0) / total
    return row


def _row(scheduler: str, seed: int, steps: int, args: argparse.Namespace, wall: float, results: dict, task) -> dict:
    row: dict = {
        "scheduler": scheduler,
        "seed": seed,
        "max_steps": steps,
        "train_size_per_level": args.train_size,
        "test_size_per_level": args.test_size,
        "wall_s": round(wall, 1),
    }
    for lv in LEVELS:
        r = results[f"level_{lv}"]
        row[f"level_{lv}_accuracy"] = r["accuracy"]
        row[f"level_{lv}_reward_mean"] = r["reward_mean"]
        # reward = format_reward * format_ok + correctness_reward * correct (0/1), and a correct answer
        # needs the format, so the share of well-formatted answers follows from the two means.
        fmt = (r["reward_mean"] - task.correctness_reward * r["accuracy"]) / task.format_reward
        row[f"level_{lv}_format_rate"] = round(fmt, 6)
        row[f"level_{lv}_support"] = r["support"]
    for m in ("accuracy", "reward_mean", "support"):
        row[f"overall_{m}"] = results["overall"][m]
    return row


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow(r)  # full float precision: --report-only then rounds exactly like the run did


def merged_rows(args: argparse.Namespace, scheds: list[str]) -> list[dict]:
    """The rows of --csv that a --merge run keeps: every schedule not rerun, and the start points.

    Refuses a CSV that would make the report wrong: rows made with another budget or data size, a
    kept schedule without exactly the seeds 0..N-1 of this run (the report pairs schedules by seed),
    or seeds beyond N (they would be dropped).
    """
    if not args.csv.exists():
        raise SystemExit(f"--merge needs an earlier results CSV; {args.csv} does not exist")
    kept = [r for r in read_csv(args.csv) if r["scheduler"] not in scheds]
    want = {"max_steps": args.max_steps, "train_size_per_level": args.train_size, "test_size_per_level": args.test_size}
    seeds = list(range(args.seeds))
    for name in dict.fromkeys(r["scheduler"] for r in kept):
        rows = [r for r in kept if r["scheduler"] == name]
        have_seeds = sorted(int(r["seed"]) for r in rows)
        if have_seeds != seeds and not (name == BASELINE and set(have_seeds) < set(seeds)):
            raise SystemExit(
                f"--merge: {args.csv} has seeds {have_seeds} of {name!r}, this run uses {seeds}; "
                "run with the CSV's --seeds or rerun everything"
            )
        for r in rows:
            check = {k: v for k, v in want.items() if not (name == BASELINE and k == "max_steps")}
            have = {k: r[k] for k in check}
            if have != check:
                raise SystemExit(f"--merge: {args.csv} was made with {have}, this run uses {check}; rerun everything")
    return kept


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k, v in r.items():
            if k != "scheduler":
                r[k] = int(v) if v.lstrip("-").isdigit() else float(v)
    return rows


# -- report ------------------------------------------------------------------------------


def t975(df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def values(rows: list[dict], scheduler: str, key: str) -> np.ndarray:
    rs = sorted((r for r in rows if r["scheduler"] == scheduler), key=lambda r: r["seed"])
    return np.array([r[key] for r in rs], dtype=float)


def spread(x: np.ndarray, digits: int = 3) -> str:
    """mean (per-seed values, seed order)."""
    if np.isnan(x).all():
        return "—"
    per = "/".join(f"{v:.{digits}f}" for v in x)
    return f"{x.mean():.{digits}f} ({per})"


def paired(a: np.ndarray, b: np.ndarray) -> str:
    if a.shape != b.shape:
        raise ValueError(f"paired differences need the same seeds: {a.size} values against {b.size}")
    d = a - b
    if len(d) < 2:
        return f"{d.mean():+.3f}"
    h = t975(len(d) - 1) * float(d.std(ddof=1)) / math.sqrt(len(d))
    return f"{d.mean():+.3f} [{d.mean() - h:+.3f}, {d.mean() + h:+.3f}], {int((d > 0).sum())}/{len(d)} > 0"


def table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])


def report(rows: list[dict], total_s: float | None, rerun: list[str] | None = None) -> str:
    scheds = [s for s in ORDER if any(r["scheduler"] == s for r in rows)]
    trained = [s for s in scheds if s != BASELINE]
    seeds = sorted({int(r["seed"]) for r in rows})
    for s in scheds:  # the tables pair schedules seed by seed
        got = sorted(int(r["seed"]) for r in rows if r["scheduler"] == s)
        if got != seeds:
            raise ValueError(f"schedule {s!r} has seeds {got}, the others {seeds}: the report would pair wrong seeds")
    r0 = next(r for r in rows if r["scheduler"] != BASELINE)
    wall = sum(r["wall_s"] for r in rows)
    inside = f"{wall:.0f} s inside the {len(rows) - len(seeds)} training runs and {len(seeds)} start-point evaluations"
    timing = f"{total_s:.0f} s of wall time in total ({inside})" if total_s is not None else f"wall time: {inside}"
    supports = ", ".join(f"L{lv} {int(r0[f'level_{lv}_support'])}" for lv in LEVELS)
    parts = [
        f"_Generated by `{COMMAND} --seeds {len(seeds)} --max-steps {int(r0['max_steps'])} "
        f"--train-size {int(r0['train_size_per_level'])} --test-size {int(r0['test_size_per_level'])}`: "
        f"{len(trained)} schedules × {len(seeds)} seeds (algorithm.seed {', '.join(map(str, seeds))}), "
        f"{timing}, sequential, at `nice -n 15` on the 2-core development machine while other jobs ran"
        + (f"; the rows of {', '.join(rerun)} rerun later with `--merge --schedulers {','.join(rerun)}`, "
           "the other rows and the start points kept from the earlier run" if rerun else "")
        + "._",
        f"Test rows per level (support): {supports}.",
        "Held-out level 5 and hardest training level 4, final greedy evaluation. Mean over seeds "
        "(per-seed values in seed order):",
        table(
            ["schedule", "L5 accuracy", "L5 reward_mean", "L5 format rate", "L4 reward_mean", "overall accuracy"],
            [
                [
                    s,
                    spread(values(rows, s, f"level_{HELDOUT}_accuracy")),
                    spread(values(rows, s, f"level_{HELDOUT}_reward_mean")),
                    spread(values(rows, s, f"level_{HELDOUT}_format_rate"), 2),
                    spread(values(rows, s, "level_4_reward_mean")),
                    spread(values(rows, s, "overall_accuracy")),
                ]
                for s in scheds
            ],
        ),
        "Accuracy per level (mean over seeds) and what each schedule trained on (share of all "
        f"training completions per level; mean training reward over the last {LAST_STEPS} steps, "
        "on the schedule's own mix of levels, so not comparable across schedules as a skill measure):",
        table(
            ["schedule", *[f"acc L{lv}" for lv in LEVELS], "share L0–L4", f"train reward last {LAST_STEPS}"],
            [
                [
                    s,
                    *[f"{values(rows, s, f'level_{lv}_accuracy').mean():.3f}" for lv in LEVELS],
                    "—" if s == BASELINE else " / ".join(
                        f"{values(rows, s, f'share_level_{lv}').mean():.2f}" for lv in TRAIN_LEVELS
                    ),
                    spread(values(rows, s, f"train_reward_last{LAST_STEPS}")),
                ]
                for s in scheds
            ],
        ),
    ]
    if "balanced" in trained and len(trained) > 1:
        parts += [
            "Paired difference to balanced (same seed = same data and sampling seed; mean "
            f"[95% t-interval, {len(seeds) - 1} df], seeds above balanced):",
            table(
                ["schedule", "Δ L5 reward_mean", "Δ L4 reward_mean", "Δ overall reward_mean", "Δ overall accuracy"],
                [
                    [
                        s,
                        *[
                            paired(values(rows, s, k), values(rows, "balanced", k))
                            for k in (f"level_{HELDOUT}_reward_mean", "level_4_reward_mean",
                                      "overall_reward_mean", "overall_accuracy")
                        ],
                    ]
                    for s in scheds
                    if s != "balanced"
                ],
            ),
        ]
    return "\n\n".join(parts)


def figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scheds = [s for s in ORDER if any(r["scheduler"] == s for r in rows)]
    labels = ["start" if s == BASELINE else s for s in scheds]
    x = np.arange(len(scheds))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, key, title in (
        (axes[0], "level_4_reward_mean", "Level 4 (hardest trained): reward_mean"),
        (axes[1], f"level_{HELDOUT}_reward_mean", f"Level {HELDOUT} (held out): reward_mean"),
    ):
        for i, s in enumerate(scheds):
            v = values(rows, s, key)
            ax.bar(i, v.mean(), color="#d9d9d9" if s == BASELINE else "#9ecae1")
            ax.plot(np.full(len(v), i), v, "o", color="#08519c", ms=4)
        ax.axhline(0.1, color="grey", ls="--", lw=0.8)  # every answer well formatted, none correct
        ax.set_xticks(x, labels, rotation=30, ha="right")
        ax.set_title(title, fontsize=10)
    trained = [s for s in scheds if s != BASELINE]
    bottom = np.zeros(len(trained))
    for lv in TRAIN_LEVELS:
        share = np.array([values(rows, s, f"share_level_{lv}").mean() for s in trained])
        axes[2].bar(np.arange(len(trained)), share, bottom=bottom, label=f"level {lv}")
        bottom += share
    axes[2].set_xticks(np.arange(len(trained)), trained, rotation=30, ha="right")
    axes[2].set_title("Share of training completions per level", fontsize=10)
    axes[2].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def rewrite_doc(body: str) -> None:
    rewrite_section(BEGIN, END, body, DOC)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per schedule (default 3)")
    ap.add_argument("--max-steps", type=int, default=300, help="GRPO steps per run (default 300)")
    ap.add_argument("--schedulers", default=",".join(SCHEDULERS), help="comma-separated (default: all)")
    ap.add_argument("--train-size", type=int, default=300, help="training rows per level (default 300)")
    ap.add_argument("--test-size", type=int, default=50, help="test rows per level (default 50)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--work-dir", default="/tmp/e2h_tiny_lm", help="where the run output dirs go")
    ap.add_argument("--csv", type=Path, default=CSV_PATH, help="results CSV")
    ap.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md or the figure")
    ap.add_argument("--report-only", action="store_true", help="no training: rebuild the report from --csv")
    ap.add_argument(
        "--merge",
        action="store_true",
        help="run only --schedulers; keep the other schedules' rows and the start points from --csv",
    )
    args = ap.parse_args(argv)
    if args.report_only and args.merge:
        ap.error("--merge trains; --report-only does not: choose one")
    start = time.perf_counter()
    if args.report_only:
        rows, total = read_csv(args.csv), None
    else:
        import torch

        torch.set_num_threads(args.threads)
        logging.basicConfig(level=logging.WARNING)
        scheds = [s.strip() for s in args.schedulers.split(",") if s.strip()]
        unknown = set(scheds) - set(SCHEDULERS)
        if unknown:
            raise SystemExit(f"unknown schedulers {sorted(unknown)}; choose from {SCHEDULERS}")
        rows = merged_rows(args, scheds) if args.merge else []
        for seed in range(args.seeds):
            have_start = any(r["scheduler"] == BASELINE and r["seed"] == seed for r in rows)
            for s in [*([] if have_start else [BASELINE]), *scheds]:
                rows.append(baseline_one(seed, args) if s == BASELINE else train_one(s, seed, args))
                write_csv(rows, args.csv)  # after every run: an interrupted benchmark keeps what it has
                r = rows[-1]
                print(
                    f"[{time.perf_counter() - start:6.0f} s] {s} seed {seed}: {r['wall_s']:.0f} s, "
                    f"L5 acc {r['level_5_accuracy']:.3f} reward {r['level_5_reward_mean']:.3f}, "
                    f"L4 reward {r['level_4_reward_mean']:.3f}",
                    file=sys.stderr,
                    flush=True,
                )
        total = time.perf_counter() - start
    body = report(rows, None if args.merge else total, scheds if args.merge else None)
    print(body)
    if not args.no_doc:
        figure(rows, FIGURE)
        rewrite_doc(body)
        print("rewrote", DOC.relative_to(ROOT), "and", FIGURE.relative_to(ROOT))
    print(f"total {time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
