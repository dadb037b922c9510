"""Is the issue-21 verdict stable when the same training is rerun with other luck?

The bar (``benchmarks.curriculum.simulate``): in every reported setting, the paired 95% CI of
(default - best fixed schedule) is not below 0, the best of the four fixed schedules being picked
per setting after the fact. The benchmark runs each schedule once per task instance (seed). This
reruns all of them with other training luck: the same task instances, other level draws and rewards
(``simulate(..., noise=n)``; draw 0 is the benchmark's own):

    python -m benchmarks.curriculum.calibrate    # 52 reported settings, 24 seeds, 5 draws, ~25 min

It reports, per draw, the bar's verdict (in how many settings the default is not worse) and, per
setting that fails in some draw, in how many draws it fails: a gap that fails in every draw is the
schedule's; one that comes and goes is luck. It also compares the default with itself across draws,
where every true difference is 0: how often the paired CI calls one draw worse than another (a
false alarm; the interval promises 2.5% per side), and how often one draw is called worse than the
best of the other draws picked by mean after the fact (the bar's comparison for a schedule that
ties the best fixed one, when that one ties its rivals).

Options: --seeds N, --draws N (2 or more), --families a,b (default all), --jobs N, --no-doc (print
only; otherwise the block between the ``sim-calibration`` markers in docs/benchmarks.md is rewritten).
"""

from __future__ import annotations

import argparse
import itertools
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from benchmarks.curriculum.doc import rewrite_section
from benchmarks.curriculum.learner import Setting, factory, simulate
from benchmarks.curriculum.simulate import (
    DEFAULT,
    DOC,
    FIXED,
    SCHEDULES,
    diff_ci,
    fmt_diff,
    not_worse,
    reported_settings,
    select_families,
    table,
)

BEGIN, END = "<!-- sim-calibration:begin -->", "<!-- sim-calibration:end -->"
COMMAND = "python -m benchmarks.curriculum.calibrate"
COMPARED = [*FIXED, DEFAULT]
Key = tuple[str, str, str, int]  # (family, setting, schedule, draw)


def heldout_runs(args: tuple[str, Setting, str, int, list[int]]) -> tuple[Key, np.ndarray]:
    """Final held-out accuracy of schedule ``label`` on ``seeds`` with training luck ``draw``."""
    family, setting, label, draw, seeds = args
    sched = next(s for s in SCHEDULES if s.label == label)
    make = factory(sched.scheduler, **sched.params)
    heldout = [simulate(setting, make, s, noise=draw).heldout_final for s in seeds]
    return (family, setting.name, label, draw), np.array(heldout)


def run(settings: list[tuple[str, Setting]], seeds: int, draws: int, jobs: int) -> dict[Key, np.ndarray]:
    """Held-out accuracy per (family, setting, schedule, draw) for the fixed schedules and the default."""
    work = [(f, s, lab, d, list(range(seeds))) for f, s in settings for lab in COMPARED for d in range(draws)]
    work.sort(key=lambda w: -w[1].total_steps)  # longest first, so the pool ends evenly
    with ProcessPoolExecutor(jobs) as pool:
        return dict(pool.map(heldout_runs, work, chunksize=1))


def bar_per_draw(results: dict[Key, np.ndarray], settings: list[tuple[str, str]], draws: int) -> list[dict]:
    """Per draw: the default minus the best fixed schedule of that draw, for every setting."""
    out = []
    for d in range(draws):
        verdicts = {}
        for f, s in settings:
            best = max(FIXED, key=lambda lab: float(results[f, s, lab, d].mean()))
            verdicts[f"{f} / {s}"] = (best, diff_ci(results[f, s, DEFAULT, d], results[f, s, best, d]))
        out.append(verdicts)
    return out


def self_alarms(results: dict[Key, np.ndarray], settings: list[tuple[str, str]], draws: int) -> dict:
    """The default against itself across draws (every true difference 0).

    ``pairs``: (comparisons, called worse, called better) over every ordered pair of draws and setting.
    ``best_of_rest``: per draw, the settings where it is called worse than the best other draw by mean.
    """
    worse = better = n = 0
    for (f, s), (a, b) in itertools.product(settings, itertools.permutations(range(draws), 2)):
        d = diff_ci(results[f, s, DEFAULT, a], results[f, s, DEFAULT, b])
        n += 1
        worse += d[2] < 0
        better += d[1] > 0
    best_of_rest = []
    for a in range(draws):
        hits = []
        for f, s in settings:
            rest = [b for b in range(draws) if b != a]
            best = max(rest, key=lambda b: float(results[f, s, DEFAULT, b].mean()))
            d = diff_ci(results[f, s, DEFAULT, a], results[f, s, DEFAULT, best])
            if not not_worse(d):
                hits.append((f"{f} / {s}", d))
        best_of_rest.append(hits)
    return {"pairs": (n, worse, better), "best_of_rest": best_of_rest}


def report(per_draw: list[dict], alarms: dict, seeds: int) -> str:
    draws, n_settings = len(per_draw), len(per_draw[0])
    rows = []
    for d, verdicts in enumerate(per_draw):
        failing = [(name, best, x) for name, (best, x) in verdicts.items() if not not_worse(x)]
        where = "; ".join(name for name, _, _ in failing) or "—"
        rows.append([str(d), f"{n_settings - len(failing)}/{n_settings}", where])
    fails = {name: [d for d in range(draws) if not not_worse(per_draw[d][name][1])] for name in per_draw[0]}
    srows = [
        [name, f"{len(ds)}/{draws}", " ".join(f"{per_draw[d][name][1][0]:+.3f}" for d in range(draws))]
        for name, ds in sorted(fails.items(), key=lambda kv: -len(kv[1]))
        if ds
    ]
    n, worse, better = alarms["pairs"]
    arows = [
        [str(a), f"{len(hits)}/{n_settings}", "; ".join(f"{name}: {fmt_diff(*x)}" for name, x in hits) or "—"]
        for a, hits in enumerate(alarms["best_of_rest"])
    ]
    return "\n\n".join(
        [
            f"Every fixed schedule and `{DEFAULT}` rerun with {draws} draws of training luck on the same {seeds} "
            f"task instances per setting (draw 0 is the benchmark's own run), in {n_settings} reported settings. "
            f"The bar per draw: in how many settings `{DEFAULT}` is not worse than the best fixed schedule of that "
            "draw, and where it is worse:",
            table(["draw", "not worse", "worse in"], rows),
            f"Every setting that fails in some draw: in how many draws, and `{DEFAULT}` minus the best fixed "
            "schedule in each draw (0 first):",
            table(["setting", "worse in", "difference per draw"], srows),
            f"`{DEFAULT}` against itself (every true difference is 0). Over every ordered pair of draws and "
            f"setting ({n} comparisons), the paired 95% CI calls the first draw worse in {worse} "
            f"({100 * worse / n:.1f}%) and better in {better} ({100 * better / n:.1f}%); the interval promises "
            f"2.5% each. Each draw against the best of the other {draws - 1}, picked per setting by mean after "
            "the fact:",
            table(["draw", "called worse", "where (draw − best other draw [paired 95% CI])"], arows),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=24, help="task instances (seeds 0..N-1) per setting (default 24)")
    ap.add_argument("--draws", type=int, default=5, help="draws of training luck, 0 = the benchmark's (default 5)")
    ap.add_argument("--families", default="", help="comma-separated reported families (default: all)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes")
    ap.add_argument("--no-doc", action="store_true", help="print only; do not rewrite docs/benchmarks.md")
    args = ap.parse_args(argv)
    if args.seeds < 2:
        raise SystemExit(f"--seeds {args.seeds}: a paired CI needs at least 2 seeds")
    if args.draws < 2:
        raise SystemExit(f"--draws {args.draws}: comparing draws needs at least 2")
    settings = reported_settings(select_families(args.families))
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
    print(body)
    if not args.no_doc:
        rewrite_section(BEGIN, END, body, DOC)
        print("rewrote", DOC.relative_to(DOC.parents[1]))


if __name__ == "__main__":
    main()
