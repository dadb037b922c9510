"""When does each schedule reach its best held-out accuracy? Peak against final, in one simulated setting.

The curriculum benchmark (``benchmarks.curriculum.simulate``) scores the held-out level at the end
of the budget. Where drilling solved levels costs skill, a schedule that solves the ladder early
then loses accuracy for the rest of the run, so the final score rewards pacing as much as learning.
This diagnostic shows it: per schedule, the held-out accuracy along the budget (mean over seeds),
its peak and the step of the peak, the final value and the prompts drawn from mastered levels:

    python -m benchmarks.curriculum.pacing     # four settings (DEFAULT_SETTINGS), 24 seeds, ~1 min

Besides the fixed schedules and the default it runs two diagnostic schedules that are not in the
library. ``top level only``: every prompt from the hardest training level, from the first step. The
held-out level learns only by transfer, and the top level transfers most, so this is the fastest
way to it that the learner allows. ``sec, paced by level``: ``sec`` whose levels open one by one
along the budget, as the fixed schedules move (level i from step i/(K-1) x T/2 on, every level open
by half the budget), ending with its final phase (the last quarter on the hardest level that still
teaches): a pacing rule, the kind of rule the third and sixth rounds of issue 21 said the gaps need.
Each row also shows its final accuracy minus the best fixed schedule's, with the paired 95% CI.

Options: --setting FAMILY/BASE (a reported setting, repeatable; the family must keep the levels in
difficulty order), --seeds N, --no-doc (print only; otherwise the block between the
``sim-pacing`` markers in docs/benchmarks.md is rewritten).

``--screen reported`` or ``--screen tuning`` instead counts, over every reported setting (seeds
0..N-1) or every tuning setting (seeds 1000 + i), where the default and the paced ``sec`` are not
worse than the best fixed schedule (the benchmark's bar), and prints that count, the mean difference,
the worst setting and every setting where it is worse; it writes nothing. ``--jobs N`` processes (default 2).
``--unlock SHARE`` sets the paced ``sec``'s pace (every level open by SHARE x T; default 0.5) for both modes.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from benchmarks.curriculum.doc import publish, require_markers
from benchmarks.curriculum.learner import SchedulerFactory, Setting, factory, simulate
from benchmarks.curriculum.simulate import (
    DEFAULT,
    DOC,
    FAMILIES,
    FIXED,
    REPORT_BASES,
    SCHEDULES,
    TUNE_SEED0,
    fmt_diff,
    make_setting,
    not_worse,
    reported_settings,
    table,
    tuning_settings,
    vs_best,
)
from e2h.schedulers import Scheduler, SECScheduler

BEGIN, END = "<!-- sim-pacing:begin -->", "<!-- sim-pacing:end -->"
COMMAND = "python -m benchmarks.curriculum.pacing"
TOP = "top level only (diagnostic)"
PACED = "sec, paced by level (diagnostic)"
PACED_UNLOCK = 0.5  # share of the budget by which every level is open
# The library defaults with the sixth round's final phase, which starts after every level is open.
PACED_PARAMS = {"reward_max": 1.0, "final_phase": 0.25}
POINTS = 5  # held-out accuracy shown at this many evenly spaced steps, the first and the last included


class OneLevel(Scheduler):
    """Every prompt from one fixed level, ``level`` (diagnostic, not a library schedule)."""

    name = "one_level"
    description = "diagnostic: every prompt from one fixed level"
    level = -1

    def _probs(self, step: int) -> np.ndarray:
        p = np.zeros(self.num_levels)
        p[self.level] = 1.0
        return p


def one_level(level: int) -> SchedulerFactory:
    """A factory of ``OneLevel`` schedules drawing only scheduler level ``level``."""

    def build(setting: Setting) -> Scheduler:
        sched = OneLevel(setting.scheduled_levels, setting.total_steps, setting.generations)
        sched.level = level
        return sched

    return build


def top_level_only(setting: Setting) -> Scheduler:
    """``OneLevel`` on the hardest training level of ``setting``: the last one before an unlearnable extra."""
    if setting.permute_levels:
        raise ValueError("top level only needs the levels in difficulty order; this setting shuffles them")
    return one_level(setting.scheduled_levels - 1 - int(setting.unlearnable_level))(setting)


class PacedSEC(SECScheduler):
    """``sec`` paced by the level order (diagnostic, not a library schedule).

    Level i opens at step i/(K-1) x ``unlock`` x T: the open levels are sec's ``eligible`` ones. A closed
    level is sampled with exactly its floor (``min_prob``, its re-test rate) and its score shows -1. The
    open levels run ``sec``'s rule among themselves on the rest of the mass: an open level settles when
    its Q is below settle_ratio x the largest Q *of the open levels*, so a closed level's Q (from its
    re-tests) neither settles the open ones nor takes their share. Levels are opened by number, so they
    must run easy to hard. The final phase may not start before every level is open (``final_phase`` <=
    1 - ``unlock``). Snapshot: sec's components (``q_ratio`` relative to the largest Q of the open
    levels) and ``open`` (1/0).
    """

    def __init__(self, num_levels: int, total_steps: int, num_generations: int = 1, *,
                 unlock: float = PACED_UNLOCK, **params):
        super().__init__(num_levels, total_steps, num_generations, **params)
        if not 0 < unlock <= 1:
            raise ValueError(f"unlock={unlock}: the share of the budget by which every level opens, in (0, 1]")
        if self.params.final_phase > 1 - unlock + 1e-9:
            raise ValueError(
                f"final_phase={self.params.final_phase} starts before every level is open (unlock={unlock}): "
                "it must be at most 1 - unlock"
            )
        self.unlock = unlock

    def unlock_steps(self) -> np.ndarray:
        """The step at which each level opens."""
        k = self.num_levels
        return np.arange(k) / max(k - 1, 1) * self.unlock * self.total_steps

    def eligible(self) -> np.ndarray:
        """Boolean per level: open at the step of the latest draw."""
        return self.unlock_steps() <= max(self._drawn_step, 0)

    def _weighted_q(self) -> np.ndarray:
        return np.where(self.eligible(), super()._weighted_q(), -1.0)

    def _components(self) -> dict[str, np.ndarray]:
        return {**super()._components(), "open": self.eligible().astype(float)}


def paced_sec(unlock: float = PACED_UNLOCK) -> SchedulerFactory:
    """A factory of ``PacedSEC`` (every level open by ``unlock`` x T), the library defaults and ``PACED_PARAMS``."""

    def build(setting: Setting) -> Scheduler:
        return PacedSEC(
            setting.scheduled_levels, setting.total_steps, setting.generations, unlock=unlock, **PACED_PARAMS
        )

    return build


def maker(label: str, unlock: float = PACED_UNLOCK) -> SchedulerFactory:
    """The factory of a schedule: a diagnostic one (``TOP``, ``PACED``) or a row of the benchmark's SCHEDULES."""
    if label == TOP:
        return top_level_only
    if label == PACED:
        return paced_sec(unlock)
    sched = next((s for s in SCHEDULES if s.label == label), None)
    if sched is None:
        raise ValueError(f"unknown schedule {label!r}: {TOP!r}, {PACED!r} or one of {[s.label for s in SCHEDULES]}")
    return factory(sched.scheduler, **sched.params)


def pacing_rows(setting: Setting, seeds: list[int], unlock: float = PACED_UNLOCK) -> list[dict]:
    """Per schedule: the mean held-out curve, its peak and peak step, the final value, mastered prompts per run.

    ``vs_fixed``: the final held-out accuracy minus the best fixed schedule's (picked by its mean, after the
    fact), mean and paired 95% CI over the seeds.
    """
    makers = {label: maker(label, unlock) for label in (*FIXED, DEFAULT, TOP, PACED)}
    rows = []
    for label, make in makers.items():
        runs = [simulate(setting, make, seed, label) for seed in seeds]
        curve = np.mean([r.heldout_curve for r in runs], axis=0)
        peak = int(np.argmax(curve))
        rows.append(
            {
                "schedule": label,
                "curve": curve,
                "peak": float(curve[peak]),
                "peak_step": peak,
                "final": float(curve[-1]),
                "finals": np.array([r.heldout_final for r in runs]),
                "mastered_prompts": float(np.mean([r.mastered_prompts for r in runs])),
            }
        )
    fixed = {r["schedule"]: r["finals"] for r in rows if r["schedule"] in FIXED}
    for r in rows:
        r["vs_fixed"] = vs_best(r["finals"], fixed)[1]
    return rows


def pacing_table(rows: list[dict], setting: Setting) -> str:
    """One row per schedule; mastered prompts are counted only where the setting has a mastering cost."""
    steps = np.linspace(0, setting.total_steps, POINTS).round().astype(int)
    header = [
        "schedule",
        *(f"step {s}" for s in steps),
        "peak (step)",
        "final − peak",
        "mastered prompts / run",
        "final − best fixed [95% CI]",
    ]
    body = [
        [
            r["schedule"],
            *(f"{r['curve'][s]:.3f}" for s in steps),
            f"{r['peak']:.3f} ({r['peak_step']})",
            f"{round(r['final'] - r['peak'], 3) + 0.0:+.3f}",
            f"{r['mastered_prompts']:.0f}" if setting.mastered_cost else "–",
            fmt_diff(*r["vs_fixed"]),
        ]
        for r in rows
    ]
    return table(header, body)


#: Three reported settings where `sec` is worse than the best fixed schedule, and one where the paced `sec` is.
DEFAULT_SETTINGS = [
    "mastered cost/strong-noforget-flat",
    "T=2000/weak-forget-flat",
    "K=10/weak-noforget-steep",
    "T=100/strong-forget-steep",
]


def parse_setting(text: str) -> tuple[str, Setting]:
    """``FAMILY/BASE`` (a reported family and base) as a setting; SystemExit naming the choices otherwise."""
    ordered = [f.name for f in FAMILIES if not f.report.get("permute_levels")]
    if "/" not in text:
        raise SystemExit(f"--setting {text!r}: expected FAMILY/BASE, e.g. {DEFAULT_SETTINGS[0]!r}")
    family_name, _, base = text.rpartition("/")
    family = next((f for f in FAMILIES if f.name == family_name), None)
    if family is None:
        raise SystemExit(f"unknown family {family_name!r} in {text!r}; choose from {ordered}")
    if family.report.get("permute_levels"):
        raise SystemExit(
            f"family {family_name!r} shuffles the levels; top level only needs them in order: choose from {ordered}"
        )
    if base not in REPORT_BASES:
        raise SystemExit(f"unknown base {base!r} in {text!r}; choose from {list(REPORT_BASES)}")
    return text, make_setting(base, REPORT_BASES[base], family.report)


def _finals(job: tuple[str, Setting, list[int], float]) -> np.ndarray:
    label, setting, seeds, unlock = job
    make = maker(label, unlock)
    return np.array([simulate(setting, make, seed, label).heldout_final for seed in seeds])


def screen(
    settings: list[tuple[str, Setting]], seeds: list[int], jobs: int = 2, unlock: float = PACED_UNLOCK
) -> dict[str, dict]:
    """Per schedule (the default and the paced ``sec``): how many ``settings`` it is not worse than the best
    fixed schedule in (paired 95% CI not below 0), the mean difference, the worst (family/setting, difference)
    and every setting where it is worse (family/setting, best fixed schedule, difference).
    """
    labels = [*FIXED, DEFAULT, PACED]
    work = [(label, setting, seeds, unlock) for _, setting in settings for label in labels]
    with ProcessPoolExecutor(jobs) as pool:
        finals = list(pool.map(_finals, work))
    out = {
        label: {"not_worse": 0, "settings": len(settings), "mean": 0.0, "worst": None, "worse": []}
        for label in (DEFAULT, PACED)
    }
    for i, (family, setting) in enumerate(settings):
        got = dict(zip(labels, finals[i * len(labels) : (i + 1) * len(labels)], strict=True))
        fixed = {f: got[f] for f in FIXED}
        for label, row in out.items():
            best, d = vs_best(got[label], fixed)
            row["not_worse"] += not_worse(d)
            if not not_worse(d):
                row["worse"].append((f"{family}/{setting.name}", best, d))
            row["mean"] += d[0] / len(settings)
            if row["worst"] is None or d[0] < row["worst"][1][0]:
                row["worst"] = (f"{family}/{setting.name}", d)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setting", action="append", help=f"FAMILY/BASE, repeatable (default: {DEFAULT_SETTINGS})")
    ap.add_argument("--seeds", type=int, default=24, help="reported seeds 0..N-1 (default 24)")
    ap.add_argument("--no-doc", action="store_true", help="print only; do not rewrite docs/benchmarks.md")
    ap.add_argument("--screen", choices=["reported", "tuning"], help="count not-worse settings (writes nothing)")
    ap.add_argument("--jobs", type=int, default=2, help="processes for --screen (default 2)")
    ap.add_argument(
        "--unlock",
        type=float,
        default=PACED_UNLOCK,
        help=f"share of the budget by which the paced sec opens every level (default {PACED_UNLOCK})",
    )
    args = ap.parse_args(argv)
    if args.seeds < 1:
        raise SystemExit(f"--seeds {args.seeds}: need at least 1 seed")
    if args.jobs < 1:
        raise SystemExit(f"--jobs {args.jobs}: need at least 1 process")
    if args.screen and args.setting:
        raise SystemExit("--screen runs every reported or tuning setting: leave out --setting")
    try:
        PacedSEC(4, 100, unlock=args.unlock, **PACED_PARAMS)
    except ValueError as e:
        raise SystemExit(f"--unlock: {e}") from None
    if args.screen:
        start = time.perf_counter()
        if args.screen == "reported":
            settings, seeds = reported_settings(FAMILIES), list(range(args.seeds))
        else:
            settings, seeds = tuning_settings(), [TUNE_SEED0 + i for i in range(args.seeds)]
        rows = screen(settings, seeds, args.jobs, args.unlock)
        print(f"{args.screen} settings, {len(seeds)} seeds, unlock {args.unlock}, {time.perf_counter() - start:.0f} s:")
        for label, r in rows.items():
            print(
                f"  {label}: not worse than the best fixed schedule in {r['not_worse']}/{r['settings']}, "
                f"mean {r['mean']:+.4f}, worst {r['worst'][0]} {fmt_diff(*r['worst'][1])}"
            )
            for name, best, d in r["worse"]:
                print(f"    worse in {name}: {fmt_diff(*d)} against {best}")
        return
    settings = [parse_setting(t) for t in (args.setting or DEFAULT_SETTINGS)]
    if not args.no_doc:
        require_markers(BEGIN, END, DOC)
    start = time.perf_counter()
    parts = []
    for name, setting in settings:
        rows = pacing_rows(setting, list(range(args.seeds)), args.unlock)
        parts.append(f"**{name}** ({setting.total_steps} steps)\n\n" + pacing_table(rows, setting))
    elapsed = time.perf_counter() - start
    options = " ".join(f"--setting '{name}'" for name, _ in settings) + f" --seeds {args.seeds}"
    if args.unlock != PACED_UNLOCK:
        options += f" --unlock {args.unlock}"
    body = "\n\n".join(
        [
            f"_Generated by `{COMMAND} {options}` in {elapsed:.0f} s._ Held-out accuracy (mean over {args.seeds} "
            "seeds) at evenly spaced steps, its peak and the step of the peak, the final value minus the peak, "
            "the prompts drawn from mastered levels per run (where drilling them costs skill) and the final "
            "value minus the best fixed schedule's (paired 95% CI over the seeds).",
            *parts,
        ]
    )
    publish(BEGIN, END, body, not args.no_doc, DOC)


if __name__ == "__main__":
    main()
