"""Curriculum benchmark, simulated learner: every schedule in every setting, many seeds.

Regenerates everything (tables in docs/benchmarks.md, figures in docs/figures/, CSV in
benchmarks/curriculum/results/):

    python -m benchmarks.curriculum.simulate     # 40 seeds, 16 robustness/tuning seeds, 2 processes

Options: --seeds N, --robust-seeds N, --tune-seeds N (0 skips the tuning grid), --jobs N,
--no-doc (do not rewrite docs/benchmarks.md or the figures), --out DIR.
The learner is described in benchmarks/curriculum/learner.py.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from benchmarks.curriculum.doc import rewrite_section
from benchmarks.curriculum.learner import SETTINGS, Setting, factory, simulate

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "benchmarks.md"
FIGURES = ROOT / "docs" / "figures"
RESULTS = Path(__file__).resolve().parent / "results"
BEGIN, END = "<!-- sim-results:begin -->", "<!-- sim-results:end -->"
COMMAND = "python -m benchmarks.curriculum.simulate"


@dataclass(frozen=True)
class Schedule:
    label: str
    scheduler: str
    params: dict = field(default_factory=dict)


# The six schedulers with their defaults (reward_max = 1 for the 0/1 reward), and plain SEC
# (the defaults before this benchmark) for comparison.
SCHEDULES = [
    Schedule("balanced", "balanced"),
    Schedule("classic", "classic"),
    Schedule("cosine", "cosine"),
    Schedule("gaussian", "gaussian"),
    Schedule("variance_regularized", "variance_regularized", {"reward_max": 1.0}),
    Schedule("sec", "sec", {"reward_max": 1.0}),
    Schedule("sec (plain: τ=1, hardness=0)", "sec", {"reward_max": 1.0, "temperature": 1.0, "hardness": 0.0}),
]
ROBUST_SCHEDULES = ["balanced", "classic", "gaussian", "variance_regularized", "sec"]

# The grid the SEC defaults were chosen from, run on separate tuning seeds (TUNE_SEED0 + i),
# never on the seeds of the reported tables.
TUNE_SEED0 = 1000
TUNE_GRID = [(1.0, 0.0), (0.3, 0.0), (0.1, 0.0), (0.05, 0.0), (1.0, 2.0), (0.3, 2.0)]
TUNE_GRID += [(0.1, 1.0), (0.1, 2.0), (0.1, 4.0), (0.05, 2.0), (0.05, 4.0)]
TUNE_CANDIDATES = [
    Schedule("gaussian", "gaussian"),
    Schedule("classic", "classic"),
    *(
        Schedule(f"sec τ={t} hardness={h}", "sec", {"reward_max": 1.0, "temperature": t, "hardness": h})
        for t, h in TUNE_GRID
    ),
]
CHOSEN = "sec τ=0.1 hardness=2.0"  # the new defaults of SECParams


def robustness_variants() -> dict[str, dict]:
    """Changes to every setting that the defaults were not tuned on."""
    return {
        "K=6 levels (same difficulty span)": {"num_levels": 6, "gap_scale": 4 / 6},
        "budget T=200": {"total_steps": 200},
        "budget T=1000": {"total_steps": 1000},
        "G=4 completions": {"generations": 4},
        "8 prompts/step": {"prompts": 8},
    }


def vary(setting: Setting, change: dict) -> Setting:
    change = dict(change)
    scale = change.pop("gap_scale", 1.0)
    return replace(setting, gap=setting.gap * scale, **change)


@dataclass
class Cell:
    """All seeds of one schedule in one setting."""

    setting: str
    schedule: str
    heldout: np.ndarray  # (seeds,) final held-out accuracy
    hardest: np.ndarray  # (seeds,) final accuracy on the hardest training level
    train_mean: np.ndarray  # (seeds,) final mean accuracy over the training levels
    steps_to: list  # per seed, first step with hardest-level accuracy >= threshold (None: never)
    curve_heldout: np.ndarray  # (T+1,) mean over seeds
    curve_hardest: np.ndarray  # (T+1,)
    share: np.ndarray  # (T, K) mean fraction of prompts per level


def run_cell(args: tuple[Setting, Schedule, list[int]]) -> Cell:
    setting, sched, seeds = args
    make = factory(sched.scheduler, **sched.params)
    k = setting.num_levels
    runs = [simulate(setting, make, s, sched.label) for s in seeds]
    acc = np.stack([r.accuracy for r in runs])  # (seeds, T+1, K+1)
    return Cell(
        setting=setting.name,
        schedule=sched.label,
        heldout=acc[:, -1, k],
        hardest=acc[:, -1, k - 1],
        train_mean=acc[:, -1, :k].mean(axis=1),
        steps_to=[r.steps_to(k - 1, setting.threshold) for r in runs],
        curve_heldout=acc[:, :, k].mean(axis=0),
        curve_hardest=acc[:, :, k - 1].mean(axis=0),
        share=np.mean([r.level_share for r in runs], axis=0),
    )


# -- statistics ------------------------------------------------------------------------


def t975(df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def mean_ci(x: np.ndarray) -> tuple[float, float, float]:
    m = float(np.mean(x))
    h = t975(len(x) - 1) * float(np.std(x, ddof=1)) / math.sqrt(len(x))
    return m, m - h, m + h


def diff_ci(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Mean of a - b with a paired 95% t interval: entry i of both is the same seed, i.e. the same task."""
    d = np.asarray(a) - np.asarray(b)
    m = float(d.mean())
    h = t975(len(d) - 1) * float(d.std(ddof=1)) / math.sqrt(len(d))
    return m, m - h, m + h


def median_steps(steps: list, budget: int) -> str:
    vals = sorted(math.inf if s is None else s for s in steps)
    med = float(np.median(vals))
    reached = sum(s is not None for s in steps) / len(steps)
    text = f">{budget}" if math.isinf(med) else f"{med:.0f}"
    return f"{text} ({reached:.0%})"


# -- output ------------------------------------------------------------------------------


def fmt_ci(m: float, lo: float, hi: float) -> str:
    return f"{m:.3f} [{lo:.3f}, {hi:.3f}]"


def fmt_diff(d: float, lo: float, hi: float) -> str:
    return f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main_tables(cells: dict, settings: list[Setting], seeds: int) -> str:
    names = [s.name for s in settings]
    labels = [s.label for s in SCHEDULES]
    out = []
    for group, cols in (
        ("without forgetting", [n for n in names if "noforget" in n]),
        ("with forgetting", [n for n in names if "noforget" not in n]),
    ):
        rows = []
        for lab in labels:
            row = [lab]
            for n in cols:
                m, lo, hi = mean_ci(cells[n, lab].heldout)
                best = max(np.mean(cells[n, other].heldout) for other in labels)
                cell = fmt_ci(m, lo, hi)
                row.append(f"**{cell}**" if m == best else cell)
            rows.append(row)
        out.append(f"Held-out accuracy at the budget, {group} (mean over {seeds} seeds [95% CI]; best in bold):\n")
        out.append(table(["schedule", *cols], rows))
        out.append("")
    # Who wins where.
    rows = []
    for n in names:
        means = {lab: float(np.mean(cells[n, lab].heldout)) for lab in labels}
        best = max(means, key=means.get)
        tied = [lab for lab in labels if lab != best and diff_ci(cells[n, lab].heldout, cells[n, best].heldout)[2] >= 0]
        d_g = diff_ci(cells[n, "sec"].heldout, cells[n, "gaussian"].heldout)
        d_b = diff_ci(cells[n, "sec"].heldout, cells[n, "balanced"].heldout)
        fixed = ["balanced", "classic", "cosine", "gaussian"]
        best_fixed = max(fixed, key=means.get)
        d_f = diff_ci(cells[n, "sec"].heldout, cells[n, best_fixed].heldout)
        rows.append(
            [n, best, ", ".join(tied) or "none", fmt_diff(*d_g), fmt_diff(*d_b), f"{best_fixed}: {fmt_diff(*d_f)}"]
        )
    out.append(
        "Winner per setting (highest mean held-out accuracy), the schedules statistically tied with it "
        "(paired 95% CI of the difference includes 0), and `sec` (new defaults) minus gaussian, minus balanced "
        "and minus the best fixed schedule:\n"
    )
    out.append(
        table(["setting", "winner", "tied with winner", "sec − gaussian", "sec − balanced", "sec − best fixed"], rows)
    )
    out.append("")
    # Steps to threshold and training-level accuracy.
    thr = settings[0].threshold
    rows = [[lab] + [median_steps(cells[n, lab].steps_to, settings[0].total_steps) for n in names] for lab in labels]
    out.append(
        f"Steps until the hardest training level (level {settings[0].num_levels - 1}) succeeds with probability "
        f">= {thr}: median over seeds (share of seeds that got there within {settings[0].total_steps} steps):\n"
    )
    out.append(table(["schedule", *names], rows))
    out.append("")
    rows = [[lab] + [f"{np.mean(cells[n, lab].train_mean):.3f}" for n in names] for lab in labels]
    out.append("Mean accuracy over the training levels at the budget (mean over seeds), for forgetting:\n")
    out.append(table(["schedule", *names], rows))
    return "\n".join(out)


def robust_table(rcells: dict, variants: list[str], seeds: int) -> str:
    rows = []
    for v in variants:
        for n in SETTINGS:
            means = {lab: float(np.mean(rcells[v, n, lab].heldout)) for lab in ROBUST_SCHEDULES}
            best_fixed = max(["balanced", "classic", "gaussian"], key=means.get)
            d_g = diff_ci(rcells[v, n, "sec"].heldout, rcells[v, n, "gaussian"].heldout)
            d_f = diff_ci(rcells[v, n, "sec"].heldout, rcells[v, n, best_fixed].heldout)
            rows.append(
                [v, n]
                + [f"{means[lab]:.3f}" for lab in ROBUST_SCHEDULES]
                + [fmt_diff(*d_g), f"{best_fixed}: {fmt_diff(*d_f)}"]
            )
    return f"Robustness (settings the defaults were not tuned on; {seeds} seeds; mean held-out accuracy):\n\n" + table(
        ["variant", "setting", *ROBUST_SCHEDULES, "sec − gaussian", "sec − best fixed"], rows
    )


def tuning_table(tcells: dict, seeds: int) -> str:
    names = list(SETTINGS)
    rows = []
    for cand in TUNE_CANDIDATES:
        lab = cand.label
        row = [f"**{lab}** (new default)" if lab == CHOSEN else lab]
        row += [f"{np.mean(tcells[n, lab].heldout):.3f}" for n in names]
        if lab.startswith("sec"):
            vs_g = [diff_ci(tcells[n, lab].heldout, tcells[n, "gaussian"].heldout) for n in names]
            fixed = [max(("gaussian", "classic"), key=lambda f, n=n: np.mean(tcells[n, f].heldout)) for n in names]
            vs_f = [diff_ci(tcells[n, lab].heldout, tcells[n, f].heldout) for n, f in zip(names, fixed, strict=True)]
            wg = min(range(len(names)), key=lambda i: vs_g[i][0])
            wf = min(range(len(names)), key=lambda i: vs_f[i][0])
            row += [
                f"{vs_g[wg][0]:+.3f} ({names[wg]})",
                f"{vs_f[wf][0]:+.3f} ({names[wf]}, vs {fixed[wf]})",
                f"{sum(d[1] > 0 for d in vs_g)}/{len(names)}",
            ]
        else:
            row += ["", "", ""]
        rows.append(row)
    return (
        f"Tuning grid for the SEC defaults (tuning seeds {TUNE_SEED0}..{TUNE_SEED0 + seeds - 1}, not the seeds above; "
        "mean held-out accuracy; worst paired difference to gaussian and to the better of gaussian/classic "
        "over the eight settings; number of settings where sec is significantly above gaussian):\n\n"
        + table(["candidate", *names, "worst − gaussian", "worst − best fixed", "sig. > gaussian"], rows)
    )


def figures(cells: dict, settings: list[Setting], seeds: int, outdir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outdir.mkdir(parents=True, exist_ok=True)
    labels = [s.label for s in SCHEDULES]
    colors = dict(zip(labels, plt.get_cmap("tab10").colors, strict=False))
    footer = (
        f"{COMMAND}  (simulated learner, {seeds} seeds/cell, K={settings[0].num_levels} training levels + 1 held-out, "
        f"{settings[0].total_steps} steps x {settings[0].prompts} prompts x {settings[0].generations} completions; "
        "settings: benchmarks/curriculum/learner.py SETTINGS)"
    )
    paths = []

    # 1. Held-out accuracy with 95% CI, one panel per setting.
    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5), sharey=False)
    for ax, s in zip(axes.flat, settings, strict=True):
        stats = [mean_ci(cells[s.name, lab].heldout) for lab in labels]
        m = [x[0] for x in stats]
        err = [[x[0] - x[1] for x in stats], [x[2] - x[0] for x in stats]]
        ax.bar(range(len(labels)), m, yerr=err, color=[colors[lab] for lab in labels], capsize=3)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(
            [lab.split(" ")[0] if "plain" not in lab else "sec-plain" for lab in labels],
            rotation=45,
            ha="right",
            fontsize=8,
        )
        ax.set_title(s.name, fontsize=10)
        ax.set_ylabel("held-out accuracy at budget")
    fig.suptitle("Held-out level accuracy at the budget (mean, 95% CI)")
    fig.text(0.005, 0.005, footer, fontsize=7)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    paths.append(outdir / "sim_heldout.png")
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)

    # 2. Held-out accuracy over training.
    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5))
    for ax, s in zip(axes.flat, settings, strict=True):
        for lab in labels:
            ax.plot(cells[s.name, lab].curve_heldout, label=lab, color=colors[lab], lw=1.3)
        ax.set_title(s.name, fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel("held-out accuracy")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Held-out level accuracy during training (mean over seeds)")
    fig.text(0.005, 0.005, footer, fontsize=7)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    paths.append(outdir / "sim_curves.png")
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)

    # 3. Where each schedule puts its prompts, in one setting.
    show = "strong-forget-steep"
    s = next(x for x in settings if x.name == show)
    fig, axes = plt.subplots(2, 4, figsize=(16, 7), sharey=True)
    for ax, lab in zip(axes.flat, labels, strict=False):
        share = cells[show, lab].share
        ax.stackplot(np.arange(len(share)), share.T, labels=[f"level {i}" for i in range(s.num_levels)])
        ax.set_title(lab, fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel("share of prompts")
    handles, names = axes.flat[0].get_legend_handles_labels()
    for ax in axes.flat[len(labels) :]:
        ax.axis("off")
        ax.legend(handles[::-1], names[::-1], loc="center", fontsize=10)
    fig.suptitle(f"Share of each step's prompts per training level, setting {show} (mean over seeds)")
    fig.text(0.005, 0.005, footer, fontsize=7)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    paths.append(outdir / "sim_level_share.png")
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)
    return paths


def write_csv(cells: dict, rcells: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "variant",
                "setting",
                "schedule",
                "seeds",
                "heldout_mean",
                "heldout_ci_lo",
                "heldout_ci_hi",
                "hardest_mean",
                "train_mean",
                "steps_to_threshold_median",
            ]
        )
        rows = [("base", c) for c in cells.values()] + [(v, c) for (v, _, _), c in rcells.items()]
        for variant, c in rows:
            m, lo, hi = mean_ci(c.heldout)
            med = np.median([math.inf if s is None else s for s in c.steps_to])
            w.writerow(
                [
                    variant,
                    c.setting,
                    c.schedule,
                    len(c.heldout),
                    f"{m:.5f}",
                    f"{lo:.5f}",
                    f"{hi:.5f}",
                    f"{np.mean(c.hardest):.5f}",
                    f"{np.mean(c.train_mean):.5f}",
                    "" if math.isinf(med) else f"{med:.1f}",
                ]
            )


def rewrite_doc(body: str) -> None:
    rewrite_section(BEGIN, END, body, DOC)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=40, help="seeds per (setting, schedule) (default 40)")
    ap.add_argument("--robust-seeds", type=int, default=16, help="seeds per cell of the robustness table")
    ap.add_argument("--tune-seeds", type=int, default=16, help="seeds per cell of the tuning grid (0: skip)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes")
    ap.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md or the figures")
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder for the CSV")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    settings = list(SETTINGS.values())
    seeds = list(range(args.seeds))
    jobs = [(s, sched, seeds) for s in settings for sched in SCHEDULES]
    variants = robustness_variants()
    by_label = {s.label: s for s in SCHEDULES}
    rseeds = list(range(args.robust_seeds))
    rjobs = [
        (vary(s, change), by_label[lab], rseeds)
        for change in variants.values()
        for s in settings
        for lab in ROBUST_SCHEDULES
    ]
    tseeds = list(range(TUNE_SEED0, TUNE_SEED0 + args.tune_seeds))
    tjobs = [(s, cand, tseeds) for s in settings for cand in TUNE_CANDIDATES] if args.tune_seeds else []
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(run_cell, jobs + rjobs + tjobs, chunksize=1))
    cells = {(c.setting, c.schedule): c for c in results[: len(jobs)]}
    rkeys = [(v, s.name, lab) for v in variants for s in settings for lab in ROBUST_SCHEDULES]
    rcells = dict(zip(rkeys, results[len(jobs) : len(jobs) + len(rjobs)], strict=True))
    tcells = {(c.setting, c.schedule): c for c in results[len(jobs) + len(rjobs) :]}
    elapsed = time.perf_counter() - start

    body = "\n\n".join(
        [
            f"_Generated by `{COMMAND} --seeds {args.seeds} --robust-seeds {args.robust_seeds} "
            f"--tune-seeds {args.tune_seeds}` "
            f"in {elapsed:.0f} s ({args.jobs} processes)._",
            main_tables(cells, settings, args.seeds),
            robust_table(rcells, list(variants), args.robust_seeds),
            *([tuning_table(tcells, args.tune_seeds)] if tcells else []),
        ]
    )
    write_csv(cells, rcells, args.out / "sim_results.csv")
    print(body)
    if not args.no_doc:
        for p in figures(cells, settings, args.seeds, FIGURES):
            print("wrote", p.relative_to(ROOT))
        rewrite_doc(body)
        print("rewrote", DOC.relative_to(ROOT))
    print(f"total {time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
