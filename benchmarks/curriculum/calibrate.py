"""Is the issue-21 verdict stable when the same training is rerun with other luck?

The bar (``benchmarks.curriculum.simulate``): in every reported setting, the paired 95% CI of
(default - best fixed schedule) is not below 0, the best of the four fixed schedules being picked
per setting after the fact. The benchmark runs each schedule once per task instance (seed). This
reruns all of them with other training luck: the same task instances, other level draws and rewards
(``simulate(..., noise=n)``; draw 0 is the benchmark's own):

    python -m benchmarks.curriculum.calibrate    # 56 reported settings, 24 seeds, 5 draws, ~20 min

It reports, per draw, the bar's verdict (in how many settings the default is not worse) and, per
setting that fails in some draw, in how many draws it fails: a gap that fails in every draw is the
schedule's; one that comes and goes sits near what the seeds can resolve. It also compares the
default with itself across draws, where every true difference is 0: how often the paired CI of
two draws excludes 0 (a false alarm; the interval promises 5%), and how often one draw is called
worse than the best of the other draws picked by mean after the fact (the bar's comparison for a
schedule that ties the best fixed one, when that one ties its rivals).

Options: --seeds N, --draws N (2 or more), --families a,b (default all), --jobs N, --no-doc (print
only; otherwise the block between the ``sim-calibration`` markers in docs/benchmarks.md is rewritten).
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

from benchmarks.curriculum.doc import publish, require_markers
from benchmarks.curriculum.learner import Setting
from benchmarks.curriculum.simulate import (
    DEFAULT,
    DOC,
    FIXED,
    SCHEDULES,
    check_counts,
    diff_ci,
    fmt_diff,
    not_worse,
    reported_settings,
    run_cells,
    select_families,
    table,
    vs_best,
)

BEGIN, END = "<!-- sim-calibration:begin -->", "<!-- sim-calibration:end -->"
COMMAND = "python -m benchmarks.curriculum.calibrate"
COMPARED = [*FIXED, DEFAULT]
Key = tuple[str, str, str, int]  # (family, setting, schedule, draw)
CI = tuple[float, float, float]


def run(settings: list[tuple[str, Setting]], seeds: int, draws: int, jobs: int) -> dict[Key, np.ndarray]:
    """Held-out accuracy per (family, setting, schedule, draw) for the fixed schedules and the default."""
    scheds = [s for s in SCHEDULES if s.label in COMPARED]
    work = [(f, s, sc, list(range(seeds)), d) for f, s in settings for sc in scheds for d in range(draws)]
    cells = run_cells(work, jobs)
    return {(f, s.name, sc.label, d): c.heldout for (f, s, sc, _, d), c in zip(work, cells, strict=True)}


def bar_per_draw(results: dict[Key, np.ndarray], settings: list[tuple[str, str]], draws: int) -> list[dict]:
    """Per draw and setting ("family / setting"): that draw's best fixed schedule and the default minus it."""
    return [
        {
            f"{f} / {s}": vs_best(results[f, s, DEFAULT, d], {lab: results[f, s, lab, d] for lab in FIXED})
            for f, s in settings
        }
        for d in range(draws)
    ]


def self_alarms(results: dict[Key, np.ndarray], settings: list[tuple[str, str]], draws: int) -> dict:
    """The default against itself across draws (every true difference 0).

    ``pairs``: (comparisons, false alarms) over every unordered pair of draws and setting: the paired
    CI excludes 0. ``best_of_rest``: per draw, (setting, best other draw, difference) for every
    setting; a draw is called worse where the difference's CI is below 0.
    """
    alarms = n = 0
    for (f, s), (a, b) in itertools.product(settings, itertools.combinations(range(draws), 2)):
        d = diff_ci(results[f, s, DEFAULT, a], results[f, s, DEFAULT, b])
        n += 1
        alarms += d[1] > 0 or d[2] < 0
    best_of_rest = []
    for a in range(draws):
        entries = []
        for f, s in settings:
            others = {str(b): results[f, s, DEFAULT, b] for b in range(draws) if b != a}
            entries.append((f"{f} / {s}", *vs_best(results[f, s, DEFAULT, a], others)))
        best_of_rest.append(entries)
    return {"pairs": (n, alarms), "best_of_rest": best_of_rest}


def failing_settings(per_draw: list[dict]) -> list[tuple[str, list[int]]]:
    """Settings where the default is worse in some draw, with those draws; the most often failing first."""
    fails = [(name, [d for d, v in enumerate(per_draw) if not not_worse(v[name][1])]) for name in per_draw[0]]
    return sorted([x for x in fails if x[1]], key=lambda x: -len(x[1]))


def report(per_draw: list[dict], alarms: dict, seeds: int) -> str:
    draws, n_settings = len(per_draw), len(per_draw[0])
    rows = []
    for d, verdicts in enumerate(per_draw):
        failing = [name for name, (_, x) in verdicts.items() if not not_worse(x)]
        rows.append([str(d), f"{n_settings - len(failing)}/{n_settings}", "; ".join(failing) or "—"])
    fails = failing_settings(per_draw)
    srows = [
        [name, f"{len(ds)}/{draws}", " ".join(f"{v[name][1][0]:+.3f}" for v in per_draw)] for name, ds in fails
    ]
    n, alarms_n = alarms["pairs"]
    arows = []
    for a, entries in enumerate(alarms["best_of_rest"]):
        hits = [(name, x) for name, _, x in entries if not not_worse(x)]
        where = "; ".join(f"{name}: {fmt_diff(*x)}" for name, x in hits) or "—"
        arows.append([str(a), f"{len(hits)}/{n_settings}", where])
    return "\n\n".join(
        [
            f"Every fixed schedule and `{DEFAULT}` rerun with {draws} draws of training luck on the same {seeds} "
            f"task instances per setting (draw 0 is the benchmark's own run), in {n_settings} reported settings. "
            f"The bar per draw: in how many settings `{DEFAULT}` is not worse than the best fixed schedule of that "
            "draw, and where it is worse:",
            table(["draw", "not worse", "worse in"], rows),
            f"Every setting that fails in some draw: in how many draws, and `{DEFAULT}` minus the best fixed "
            "schedule in each draw (draw 0 first):",
            table(["setting", "worse in", "difference per draw"], srows) if srows else "none.",
            f"`{DEFAULT}` against itself (every true difference is 0). Over every pair of draws and setting "
            f"({n} comparisons, not independent: the pairs share draws), the paired 95% CI excludes 0 in "
            f"{alarms_n} ({100 * alarms_n / n:.1f}%; the interval promises 5%). Each draw against the best of the "
            f"other {draws - 1}, picked per setting by mean after the fact:",
            table(["draw", "called worse", "where (draw − best other draw [paired 95% CI])"], arows),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=24, help="task instances (seeds 0..N-1) per setting (default 24)")
    ap.add_argument(
        "--draws", type=int, default=5, help="draws of training luck, at least 2; draw 0 is the benchmark's (default 5)"
    )
    ap.add_argument("--families", default="", help="comma-separated reported families (default: all)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes")
    ap.add_argument("--no-doc", action="store_true", help="print only; do not rewrite docs/benchmarks.md")
    args = ap.parse_args(argv)
    check_counts(seeds=args.seeds, jobs=args.jobs)
    if args.draws < 2:
        raise SystemExit(f"--draws {args.draws}: comparing draws needs at least 2")
    settings = reported_settings(select_families(args.families))
    if not args.no_doc:
        require_markers(BEGIN, END, DOC)
    names = [(f, s.name) for f, s in settings]
    start = time.perf_counter()
    results = run(settings, args.seeds, args.draws, args.jobs)
    elapsed = time.perf_counter() - start
    options = f"--seeds {args.seeds} --draws {args.draws}"
    if args.families:
        options += f" --families '{args.families}'"
    body = f"_Generated by `{COMMAND} {options}` in {elapsed:.0f} s ({args.jobs} processes)._ " + report(
        bar_per_draw(results, names, args.draws), self_alarms(results, names, args.draws), args.seeds
    )
    publish(BEGIN, END, body, not args.no_doc, DOC)


if __name__ == "__main__":
    main()
