"""When does each schedule reach its best held-out accuracy? Peak against final, in one simulated setting.

The curriculum benchmark (``benchmarks.curriculum.simulate``) scores the held-out level at the end
of the budget. Where drilling solved levels costs skill, a schedule that solves the ladder early
then loses accuracy for the rest of the run, so the final score rewards pacing as much as learning.
This diagnostic shows it: per schedule, the held-out accuracy along the budget (mean over seeds),
its peak and the step of the peak, the final value and the prompts drawn from mastered levels:

    python -m benchmarks.curriculum.pacing     # three settings where sec is worse, 24 seeds, ~1 min

Besides the fixed schedules and the default it runs ``top level only``, a diagnostic schedule that
is not in the library: every prompt from the hardest training level, from the first step. The
held-out level learns only by transfer, and the top level transfers most, so this is the fastest
way to it that the learner allows.

Options: --setting FAMILY/BASE (a reported setting, repeatable; the family must keep the levels in
difficulty order), --seeds N, --no-doc (print only; otherwise the block between the
``sim-pacing`` markers in docs/benchmarks.md is rewritten).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.curriculum.doc import publish, require_markers
from benchmarks.curriculum.learner import SchedulerFactory, Setting, factory, simulate
from benchmarks.curriculum.simulate import DEFAULT, DOC, FAMILIES, FIXED, REPORT_BASES, SCHEDULES, make_setting, table
from e2h.schedulers import Scheduler

BEGIN, END = "<!-- sim-pacing:begin -->", "<!-- sim-pacing:end -->"
COMMAND = "python -m benchmarks.curriculum.pacing"
TOP = "top level only (diagnostic)"
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


def pacing_rows(setting: Setting, seeds: list[int]) -> list[dict]:
    """Per schedule: the mean held-out curve, its peak and peak step, the final value, mastered prompts per run."""
    makers = {s.label: factory(s.scheduler, **s.params) for s in SCHEDULES if s.label in (*FIXED, DEFAULT)}
    makers[TOP] = top_level_only
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
                "mastered_prompts": float(np.mean([r.mastered_prompts for r in runs])),
            }
        )
    return rows


def pacing_table(rows: list[dict], setting: Setting) -> str:
    """One row per schedule; mastered prompts are counted only where the setting has a mastering cost."""
    steps = np.linspace(0, setting.total_steps, POINTS).round().astype(int)
    header = ["schedule", *(f"step {s}" for s in steps), "peak (step)", "final − peak", "mastered prompts / run"]
    body = [
        [
            r["schedule"],
            *(f"{r['curve'][s]:.3f}" for s in steps),
            f"{r['peak']:.3f} ({r['peak_step']})",
            f"{round(r['final'] - r['peak'], 3) + 0.0:+.3f}",
            f"{r['mastered_prompts']:.0f}" if setting.mastered_cost else "–",
        ]
        for r in rows
    ]
    return table(header, body)


#: Three reported settings where `sec` is worse than the best fixed schedule.
DEFAULT_SETTINGS = ["mastered cost/strong-noforget-flat", "T=2000/weak-forget-flat", "K=10/weak-noforget-steep"]


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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setting", action="append", help=f"FAMILY/BASE, repeatable (default: {DEFAULT_SETTINGS})")
    ap.add_argument("--seeds", type=int, default=24, help="reported seeds 0..N-1 (default 24)")
    ap.add_argument("--no-doc", action="store_true", help="print only; do not rewrite docs/benchmarks.md")
    args = ap.parse_args(argv)
    if args.seeds < 1:
        raise SystemExit(f"--seeds {args.seeds}: need at least 1 seed")
    settings = [parse_setting(t) for t in (args.setting or DEFAULT_SETTINGS)]
    if not args.no_doc:
        require_markers(BEGIN, END, DOC)
    start = time.perf_counter()
    parts = []
    for name, setting in settings:
        rows = pacing_rows(setting, list(range(args.seeds)))
        parts.append(f"**{name}** ({setting.total_steps} steps)\n\n" + pacing_table(rows, setting))
    elapsed = time.perf_counter() - start
    options = " ".join(f"--setting '{name}'" for name, _ in settings) + f" --seeds {args.seeds}"
    body = "\n\n".join(
        [
            f"_Generated by `{COMMAND} {options}` in {elapsed:.0f} s._ Held-out accuracy (mean over {args.seeds} "
            "seeds) at evenly spaced steps, its peak and the step of the peak, the final value minus the peak, "
            "and the prompts drawn from mastered levels per run (where drilling them costs skill).",
            *parts,
        ]
    )
    publish(BEGIN, END, body, not args.no_doc, DOC)


if __name__ == "__main__":
    main()
