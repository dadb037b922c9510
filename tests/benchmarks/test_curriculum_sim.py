"""The simulated curriculum learner: deterministic, GRPO-like, and able to tell schedules apart."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from benchmarks.curriculum import simulate as bench
from benchmarks.curriculum.learner import (
    SETTINGS,
    TRIVIAL,
    UNLEARNABLE,
    Setting,
    factory,
    group_signal,
    grpo_signal,
    level_rungs,
    simulate,
)
from benchmarks.curriculum.pacing import one_level
from e2h.schedulers import Scheduler, SECParams, make_scheduler

SMALL = replace(SETTINGS["strong-noforget-steep"], total_steps=150)


class Recorder(Scheduler):
    """Uniform sampling that records every update() call."""

    name = "recorder"
    description = "test only"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[int, list, list]] = []

    def _probs(self, step: int) -> np.ndarray:
        return np.full(self.num_levels, 1.0 / self.num_levels)

    def _observe(self, step, levels, rewards, finite):
        self.calls.append((step, levels.tolist(), rewards.tolist()))


def _build(cls):
    return lambda s: cls(s.scheduled_levels, s.total_steps, s.generations)


def _recorded(setting: Setting, seed: int = 0):
    """Run ``setting`` under a uniform Recorder: the run and every update() call (step, levels, rewards)."""
    holder = {}

    def build(st: Setting):
        holder["s"] = Recorder(st.scheduled_levels, st.total_steps, st.generations)
        return holder["s"]

    run = simulate(setting, build, seed=seed)
    return run, holder["s"].calls


def test_same_seed_same_run_other_seed_other_run():
    a = simulate(SMALL, factory("sec"), seed=5)
    b = simulate(SMALL, factory("sec"), seed=5)
    c = simulate(SMALL, factory("sec"), seed=6)
    np.testing.assert_array_equal(a.accuracy, b.accuracy)
    np.testing.assert_array_equal(a.level_share, b.level_share)
    assert not np.array_equal(a.accuracy, c.accuracy)


def test_group_signal_is_zero_exactly_when_rewards_agree():
    rewards = np.array([[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0]], dtype=float)
    signal = group_signal(rewards)
    assert signal[0] == 0 and signal[1] == 0
    assert signal[2] > 0 and signal[3] > signal[2]  # a 2/4 group teaches more than a 1/4 group


@pytest.mark.parametrize("d0", [60.0, -60.0], ids=["all-fail", "all-succeed"])
def test_no_learning_from_groups_whose_rewards_agree(d0):
    # Every level impossible (or trivial): each group is all 0 (or all 1), so nothing moves.
    s = replace(SMALL, d0=d0, forgetting=0.0, total_steps=40)
    run = simulate(s, factory("balanced"), seed=0)
    assert run.learning_groups == 0
    np.testing.assert_array_equal(run.accuracy, np.broadcast_to(run.accuracy[0], run.accuracy.shape))


def test_learning_happens_and_reaches_the_heldout_level_only_by_transfer():
    run = simulate(SMALL, factory("balanced"), seed=0)
    assert run.learning_groups > 0
    assert (run.accuracy[-1] > run.accuracy[0]).all()
    no_transfer = simulate(replace(SMALL, transfer=0.0), factory("balanced"), seed=0)
    assert no_transfer.accuracy[-1, -1] == no_transfer.accuracy[0, -1]  # never sampled, so unchanged
    assert no_transfer.accuracy[-1, 0] > no_transfer.accuracy[0, 0]


def test_forgetting_pulls_skills_back():
    keep = simulate(replace(SMALL, forgetting=0.0), factory("gaussian"), seed=1)
    forget = simulate(replace(SMALL, forgetting=0.02), factory("gaussian"), seed=1)
    assert forget.accuracy[-1, -1] < keep.accuracy[-1, -1]


def test_scheduler_gets_every_batch_in_trl_order():
    s = replace(SMALL, total_steps=20)
    _, calls = _recorded(s, seed=2)
    assert [c[0] for c in calls] == list(range(20))
    for _, levels, rewards in calls:
        assert len(levels) == len(rewards) == s.prompts * s.generations
        groups = np.asarray(levels).reshape(s.prompts, s.generations)
        assert (groups == groups[:, :1]).all()  # one level per consecutive block of G
        assert set(rewards) <= {0.0, 1.0}


def test_bad_schedules_lose_on_the_heldout_level():
    seeds = range(4)

    def heldout(make):
        return np.mean([simulate(SMALL, make, seed).heldout_final for seed in seeds])

    def stuck_classic(s: Setting):
        # classic told the run is 100x longer never leaves level 0.
        return make_scheduler("classic", s.num_levels, s.total_steps * 100, s.generations)

    good = heldout(factory("gaussian"))
    assert heldout(one_level(0)) < 0.7 * good  # every prompt from the easiest level
    assert heldout(stuck_classic) < 0.7 * good
    assert heldout(factory("balanced")) < good


# -- the effects families add (issue 21) -------------------------------------------------------


def test_grpo_signal_is_the_group_std_for_a_binary_reward_and_ignores_format_only_variance():
    rng = np.random.default_rng(0)
    c = (rng.random((50, 8)) < 0.4).astype(float)
    np.testing.assert_allclose(grpo_signal(c, c), group_signal(c), atol=1e-12)
    wrong = np.zeros((1, 4))
    fmt_only = np.array([[0.1, 0.0, 0.1, 0.0]])  # rewards differ, correctness does not
    assert grpo_signal(fmt_only, wrong)[0] == 0.0
    assert group_signal(fmt_only)[0] > 0


def test_defaults_of_the_new_effects_leave_the_issue9_learner_unchanged():
    plain = simulate(SMALL, factory("sec"), seed=3)
    zeroed = replace(
        SMALL, mastered_cost=0.0, reward_noise=0.0, partial_reward=False, permute_levels=False, learned_format=False
    )
    np.testing.assert_array_equal(simulate(zeroed, factory("sec"), seed=3).accuracy, plain.accuracy)


def test_trivial_and_unlearnable_levels_give_fixed_rewards_and_teach_nothing():
    s = replace(SMALL, total_steps=20, trivial_level=True, unlearnable_level=True)
    assert s.scheduled_levels == SMALL.num_levels + 2
    assert level_rungs(s).tolist() == [TRIVIAL, 0, 1, 2, 3, UNLEARNABLE]
    _, calls = _recorded(s)
    levels = np.concatenate([c[1] for c in calls])
    rewards = np.concatenate([c[2] for c in calls])
    assert (rewards[levels == 0] == 1.0).all() and (rewards[levels == 5] == 0.0).all()
    for extra in (0, -1):  # drilling only the trivial or only the unlearnable level learns nothing
        run = simulate(s, one_level(extra), seed=0)
        np.testing.assert_array_equal(run.accuracy[-1], run.accuracy[0])


def test_partial_noisy_rewards_take_the_task_values():
    s = replace(SMALL, total_steps=10, partial_reward=True, reward_noise=0.2)
    run, calls = _recorded(s)
    rewards = np.concatenate([c[2] for c in calls])
    assert set(np.round(rewards, 9)) == {0.0, 0.1, 1.0}
    assert run.learning_groups > 0


def test_learned_format_starts_rarer_on_harder_rungs_and_caps_accuracy():
    s = replace(SMALL, total_steps=1, learned_format=True)
    run = simulate(s, factory("balanced"), seed=0)
    plain = simulate(replace(SMALL, total_steps=1), factory("balanced"), seed=0)
    fmt = run.accuracy[0] / plain.accuracy[0]  # accuracy = P(formatted) x P(solved)
    start = np.log(s.format_start / (1 - s.format_start)) - s.format_gap * np.arange(s.num_levels + 1)
    np.testing.assert_allclose(fmt, 1 / (1 + np.exp(-start)))
    assert (np.diff(fmt) < 0).all()


def test_learned_format_only_variance_teaches_the_format_and_reaches_the_heldout_rung():
    # Every rung is far too hard to solve, so nothing is ever correct: the reward varies only by the format.
    s = replace(SMALL, total_steps=60, learned_format=True, d0=30.0, gap=0.0)
    run, calls = _recorded(s)
    rewards = np.concatenate([c[2] for c in calls])
    assert set(np.round(rewards, 9)) == {0.0, 0.1}  # nothing solved: the format alone varies
    fmt_gain = run.accuracy[-1] / run.accuracy[0]  # the solve part is unchanged, so this is the format's
    assert (fmt_gain[:-1] > 1.2).all()
    assert fmt_gain[-1] > 1.05  # the held-out rung, never drawn, learnt the format by transfer
    # With the format off the same rungs learn nothing: the reward never varies.
    off = simulate(replace(s, learned_format=False), factory("balanced"), seed=0)
    np.testing.assert_array_equal(off.accuracy[-1], off.accuracy[0])


def test_learned_format_gates_skill_learning():
    # Every rung is solved almost surely but never formatted: correctness needs the format, so
    # nothing is correct, no group varies and no skill is learnt; without the format rule they would be.
    s = replace(SMALL, total_steps=60, learned_format=True, format_start=1e-9, format_gap=0.0, d0=-6.0, gap=0.0)
    run = simulate(s, factory("balanced"), seed=0)
    assert run.learning_groups == 0
    np.testing.assert_allclose(run.accuracy[-1], run.accuracy[0], rtol=1e-6)
    assert simulate(replace(s, learned_format=False), factory("balanced"), seed=0).learning_groups > 0
    # Label noise cannot score an unformatted answer correct.
    _, calls = _recorded(replace(s, reward_noise=0.3, total_steps=10))
    assert all(r == 0.0 for c in calls for r in c[2])


def test_noise_slows_learning():
    clean = simulate(SMALL, factory("gaussian"), seed=1)
    noisy = simulate(replace(SMALL, reward_noise=0.3), factory("gaussian"), seed=1)
    assert noisy.accuracy[-1, :-1].mean() < clean.accuracy[-1, :-1].mean()


def test_permuted_levels_shuffle_labels_per_seed_but_keep_the_heldout_level():
    s = replace(SMALL, permute_levels=True)
    a = simulate(s, factory("balanced"), seed=0).extra["rungs"]
    b = [simulate(s, factory("balanced"), seed=i).extra["rungs"] for i in range(1, 6)]
    assert sorted(a) == list(range(SMALL.num_levels))
    assert any(r != a for r in b)
    # The task instance (difficulties, lr) is the seed's, whatever the labels.
    assert (
        simulate(s, factory("balanced"), 0).extra["difficulty"]
        == simulate(SMALL, factory("balanced"), 0).extra["difficulty"]
    )


def test_drilling_a_mastered_level_costs_skill():
    # Level 0 of a very easy ladder is mastered from the start: drilling it only costs.
    easy = replace(SMALL, d0=-4.0, total_steps=60, forgetting=0.0)
    free = simulate(easy, one_level(0), seed=0)
    costly = simulate(replace(easy, mastered_cost=0.5), one_level(0), seed=0)
    assert costly.mastered_prompts > 0 and free.mastered_prompts == 0  # counted only when it costs
    assert costly.heldout_final < free.heldout_final
    assert costly.heldout_final < costly.accuracy[0, -1]


def test_default_sec_spends_little_on_trivial_and_unlearnable_levels():
    s = replace(SETTINGS["strong-forget-steep"], total_steps=300, trivial_level=True, unlearnable_level=True)
    for seed in range(2):
        share = simulate(s, factory("sec"), seed).level_share[100:].mean(axis=0)
        issue9 = simulate(s, factory("sec", reward_max=1.0, **bench.ISSUE9_SEC), seed).level_share[100:].mean(axis=0)
        assert share[0] < 0.02 and share[-1] < 0.02, share
        assert share[0] + share[-1] < issue9[0] + issue9[-1]


def test_benchmark_runs_end_to_end_on_one_small_family(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "REPORT_BASES", dict(list(bench.REPORT_BASES.items())[:2]))
    bench.main(
        ["--families", "T=100", "--seeds", "3", "--tune-seeds", "0", "--jobs", "1", "--no-doc", "--out", str(tmp_path)]
    )
    rows = (tmp_path / "sim_results.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * len(bench.SCHEDULES)
    # The seed's variance_regularized cannot run a 100-step budget (warmup_steps=100): reported as n/a.
    assert any(r.startswith("T=100,weak-noforget-steep,variance_regularized,3,,") for r in rows)


def test_verdict_is_the_issue_bar_not_below_zero():
    assert bench.verdict((0.010, 0.001, 0.020)) == "better"
    assert bench.verdict((0.0, 0.0, 0.0)) == "tied"  # identical runs: not better
    assert bench.verdict((-0.010, -0.030, 0.010)) == "tied"  # not worse: the interval reaches 0
    assert bench.verdict((-0.010, -0.020, -0.001)) == "**worse**"
    assert bench.not_worse((-0.010, -0.030, 0.0)) and not bench.not_worse((-0.010, -0.030, -1e-9))


def test_comparison_rows_keep_their_own_formulas_when_the_defaults_move():
    # "sec (issue-9 defaults)" stays linear with hardness 2 and the quadratic row quadratic, whatever
    # the library defaults; the default row and the tuning grid's CHOSEN entry are the library defaults.
    rows = {s.label: s for s in bench.SCHEDULES}
    s4 = replace(SETTINGS["weak-noforget-steep"], num_levels=4)
    issue9 = factory("sec", **rows["sec (issue-9 defaults)"].params)(s4)
    np.testing.assert_allclose(issue9.hardness_weights(), [1, 1 + 2 / 3, 1 + 4 / 3, 3])
    quad = factory("sec", **rows[bench.QUADRATIC].params)(s4)
    np.testing.assert_allclose(quad.hardness_weights(), [1, 1 + 8 / 9, 1 + 32 / 9, 9])
    assert rows[bench.DEFAULT].params == {"reward_max": 1.0} and bench.TUNE_GRID[bench.CHOSEN] == {}
    # CHOSEN's label names the defaults: h=8, linear, settle 0.5.
    defaults = SECParams()
    assert (defaults.hardness, defaults.hardness_power, defaults.settle_ratio) == (8.0, 1.0, 0.5)
    # The issue-9 row and the per-prompt row keep per-prompt floors, whatever reference_prompts defaults to.
    two = replace(s4, prompts=2)
    for label in ("sec (issue-9 defaults)", bench.PER_PROMPT):
        sched = factory("sec", **rows[label].params)(two)
        sched.update(0, [1] * 8 + [2] * 8, [1, 0] * 8)
        assert sched.floors() == (sched.params.min_prob, sched.params.settled_prob)
    default = factory("sec", **rows[bench.DEFAULT].params)(two)
    default.update(0, [1] * 8 + [2] * 8, [1, 0] * 8)
    assert default.floors() == pytest.approx((0.04, 0.08))
    # The final-phase row is the opt-in; the default keeps it off.
    assert default.params.final_phase == 0.0
    assert factory("sec", **rows[bench.FINAL].params)(two).params.final_phase == 0.25


def test_cell_curve_ends_at_the_mean_heldout_accuracy():
    s = replace(SETTINGS["weak-noforget-steep"], total_steps=30)
    cell = bench.run_cell(("base", s, bench.Schedule("sec", "sec", {"reward_max": 1.0}), [0, 1, 2], 0))
    assert cell.curve.shape == (31,)
    assert cell.curve[-1] == pytest.approx(cell.heldout.mean())
    assert cell.curve[0] < cell.curve[-1]  # sec learns in 30 steps


def _cells(default_minus: float) -> dict:
    """Hand-made cells for one family and both of two bases: the default differs from classic by ``default_minus``."""
    rng = np.random.default_rng(0)
    cells = {}
    for b in list(bench.REPORT_BASES)[:2]:
        for lab in [*bench.FIXED, bench.DEFAULT]:
            mean = {"classic": 0.5, bench.DEFAULT: 0.5 + default_minus}.get(lab, 0.3)
            x = mean + rng.normal(0, 0.001, 8)
            cells["base", b, lab] = bench.Cell("base", b, lab, x, x, np.zeros((10, 4)), np.linspace(0.2, x.mean(), 11))
    return cells


@pytest.mark.parametrize("default_minus, drawn", [(-0.05, True), (0.05, False)])
def test_worse_settings_get_their_heldout_curves_drawn(tmp_path, monkeypatch, default_minus, drawn):
    monkeypatch.setattr(bench, "REPORT_BASES", dict(list(bench.REPORT_BASES.items())[:2]))
    family = next(f for f in bench.FAMILIES if f.name == "base")
    paths = bench.figures(_cells(default_minus), [family], {}, 8, tmp_path)
    names = {p.name for p in paths}
    assert ("sim_worse_curves.png" in names) is drawn
    assert "sim_heldout.png" in names
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_robustness_table_holds_every_schedule_to_the_bar(monkeypatch):
    # Two settings: classic is best in the first, gaussian in the second; the default passes the first
    # and is clearly worse in the second; the seed's variance_regularized cannot run the first.
    bases = list(bench.REPORT_BASES)[:2]
    monkeypatch.setattr(bench, "REPORT_BASES", {b: bench.REPORT_BASES[b] for b in bases})
    means = {
        bases[0]: {"classic": 0.6, "gaussian": 0.5, bench.DEFAULT: 0.6},
        bases[1]: {"classic": 0.5, "gaussian": 0.6, bench.DEFAULT: 0.55},
    }
    rng = np.random.default_rng(0)
    cells = {}
    for b in bases:
        for sched in bench.SCHEDULES:
            x = means[b].get(sched.label, 0.3) + rng.normal(0, 0.001, 8)
            if sched.label == "variance_regularized" and b == bases[0]:
                x = np.full(8, np.nan)
            if sched.label == bench.DEFAULT and b == bases[0]:
                x = cells["base", b, "classic"].heldout.copy()  # an exact tie with the best fixed schedule
            cells["base", b, sched.label] = bench.Cell("base", b, sched.label, x, x, np.zeros((1, 4)), x[:1])
    family = next(f for f in bench.FAMILIES if f.name == "base")
    rows = {
        r.split(" | ")[0].strip("| *"): r.rstrip(" |").split(" | ")[1:]
        for r in bench.robustness_table(cells, [family]).splitlines()
        if r.startswith("| ") and not r.startswith("| schedule")
    }
    assert set(rows) == {s.label for s in bench.SCHEDULES}
    assert rows["classic"][0] == "1/2" and rows["gaussian"][0] == "1/2" and rows["balanced"][0] == "0/2"
    assert float(rows["classic"][2].split()[0]) == pytest.approx(-0.1, abs=0.003)
    assert rows["classic"][2].endswith(f"(base / {bases[1]}, vs gaussian)")
    assert rows[bench.DEFAULT][0] == "1/2"
    assert float(rows[bench.DEFAULT][2].split()[0]) == pytest.approx(-0.05, abs=0.003)
    # The mean over the settings: classic (0 and -0.1), the default (0 and -0.05).
    assert float(rows["classic"][1]) == pytest.approx(-0.05, abs=0.002)
    assert float(rows[bench.DEFAULT][1]) == pytest.approx(-0.025, abs=0.002)
    assert rows["variance_regularized"][0] == "0/1"  # the setting it cannot run is left out


# -- the pacing diagnostic (benchmarks/curriculum/pacing.py) ----------------------------------


def test_top_level_only_draws_every_prompt_from_the_hardest_training_level():
    from benchmarks.curriculum.pacing import top_level_only

    for trivial, unlearnable in [(True, True), (True, False), (False, True)]:
        extras = replace(SMALL, trivial_level=trivial, unlearnable_level=unlearnable, total_steps=20)
        run = simulate(extras, top_level_only, seed=0)
        top = int(np.nonzero(level_rungs(extras) == extras.num_levels - 1)[0][0])
        assert run.level_share[:, top].min() == 1.0, (trivial, unlearnable)
    assert top_level_only(replace(SMALL, total_steps=20)).probs(0).argmax() == SMALL.num_levels - 1
    with pytest.raises(ValueError, match="difficulty order"):
        top_level_only(replace(SMALL, permute_levels=True))


def test_paced_sec_opens_the_levels_one_by_one_and_ends_on_the_hardest_teaching_level():
    from benchmarks.curriculum.pacing import paced_sec

    sched = paced_sec()(SMALL)  # K=4, T=150: levels open at steps 0, 25, 50, 75; the final phase is steps 113..149
    assert sched.unlock_steps().tolist() == [0.0, 25.0, 50.0, 75.0]
    g = SMALL.generations
    # 16 prompts per step (the floors' reference), 4 groups per level, every group half solved: all teach equally.
    levels = np.repeat(np.tile(np.arange(4), 4), g)
    rewards = np.tile(np.r_[np.ones(g // 2), np.zeros(g - g // 2)], 16)
    shares = {}
    for step in range(SMALL.total_steps):
        shares[step] = sched.probs(step)
        sched.update(step, levels, rewards)
    assert shares[0].argmax() == 0 and shares[0][1:].max() <= 0.01  # only level 0 is open
    assert shares[24][1] <= 0.01 < shares[25][1]  # level 1 opens at step 25
    assert shares[74][3] <= 0.01 and shares[74].argmax() == 2
    assert shares[75].argmax() == 3 and shares[112].min() == 0.005  # open, and sec's floors keep the others
    assert shares[113].tolist() == [0.0, 0.0, 0.0, 1.0]  # the final phase drills the hardest level that teaches
    sched.probs(50)
    assert sched.components()["score"][3] == -1.0  # a closed level's score in the snapshot


def test_paced_sec_keeps_a_closed_level_at_its_floor_when_it_teaches_more_than_the_open_ones():
    from benchmarks.curriculum.pacing import paced_sec

    sched = paced_sec()(SMALL)  # only level 0 is open before step 25
    g = SMALL.generations
    # 16 prompts per step: 12 groups of level 0, 2 of them half solved and 10 solved (little progress),
    # and 4 groups of level 3, half solved (six times the progress).
    half = np.r_[np.ones(g // 2), np.zeros(g - g // 2)]
    levels = np.repeat(np.r_[np.zeros(12, dtype=int), np.full(4, 3)], g)
    rewards = np.r_[np.tile(half, 2), np.ones(10 * g), np.tile(half, 4)]
    for step in range(20):
        sched.probs(step)
        sched.update(step, levels, rewards)
    p = sched.probs(20)
    assert sched._q[3] == pytest.approx(6 * sched._q[0]) and sched._q[0] > 0  # the closed level teaches more
    assert not sched.settled().any()  # settling is judged among the open levels
    assert p[1:].tolist() == [0.005] * 3 and p[0] == pytest.approx(1 - 3 * 0.005)
    assert p.sum() == pytest.approx(1.0)
    parts = sched.components()  # the snapshot explains it: level 0 is the only open level and the best of them
    assert parts["open"] == [1.0, 0.0, 0.0, 0.0]
    assert parts["settled"] == [0.0] * 4 and parts["q_ratio"][0] == 1.0 and parts["q_ratio"][3] == pytest.approx(6)


def test_paced_sec_refuses_a_pace_its_final_phase_would_overlap():
    from benchmarks.curriculum.pacing import PACED_PARAMS, PacedSEC, paced_sec

    assert paced_sec(0.75)(SMALL).unlock_steps().tolist() == [0.0, 37.5, 75.0, 112.5]  # final phase from 113
    with pytest.raises(ValueError, match="at most 1 - unlock"):
        PacedSEC(4, 100, unlock=0.8, **PACED_PARAMS)
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        PacedSEC(4, 100, unlock=0.0)


def test_pacing_rows_report_the_peak_and_the_final_point_of_each_curve():
    from benchmarks.curriculum.pacing import PACED, TOP, pacing_rows, pacing_table

    setting = replace(SETTINGS["strong-noforget-flat"], mastered_cost=0.5, total_steps=300)
    rows = pacing_rows(setting, [0, 1])
    assert [r["schedule"] for r in rows] == [*bench.FIXED, bench.DEFAULT, TOP, PACED]
    best = max((r for r in rows if r["schedule"] in bench.FIXED), key=lambda r: r["finals"].mean())
    assert best["vs_fixed"] == (0.0, 0.0, 0.0)
    for r in rows:
        assert r["peak"] == r["curve"].max() and r["peak_step"] == int(r["curve"].argmax())
        assert r["final"] == r["curve"][-1] <= r["peak"]
        assert r["final"] == pytest.approx(r["finals"].mean())
        assert r["vs_fixed"][0] == pytest.approx(r["final"] - best["final"])
    # With the mastering cost some schedule peaks before the end: what the diagnostic is for.
    assert any(r["peak_step"] < setting.total_steps and r["final"] < r["peak"] - 0.01 for r in rows)
    top = next(r for r in rows if r["schedule"] == TOP)
    finals = [simulate(setting, factory("classic"), s).heldout_final for s in (0, 1)]
    assert next(r for r in rows if r["schedule"] == "classic")["final"] == pytest.approx(np.mean(finals))
    assert top["mastered_prompts"] > 0  # this flat strong-transfer ladder's top level is solved within 300 steps
    text = pacing_table(rows, setting)
    assert "| step 0 | step 75 | step 150 | step 225 | step 300 |" in text and "| +0.000 [+0.000, +0.000] |" in text
    assert "–" not in text and "–" in pacing_table(rows, replace(setting, mastered_cost=0.0))


def test_pacing_cli_names_the_choices_and_rewrites_only_its_block(tmp_path, monkeypatch):
    from benchmarks.curriculum import pacing

    with pytest.raises(SystemExit, match=r"choose from \['base', 'mastered cost'") as e:
        pacing.main(["--setting", "no such family/weak-noforget-steep", "--no-doc"])
    assert "non-monotone" not in str(e.value)
    with pytest.raises(SystemExit, match="shuffles the levels"):
        pacing.main(["--setting", "non-monotone/weak-noforget-steep", "--no-doc"])
    with pytest.raises(SystemExit, match=r"unknown base 'weak'.*'weak-noforget-steep'"):
        pacing.main(["--setting", "base/weak", "--no-doc"])
    with pytest.raises(SystemExit, match="expected FAMILY/BASE"):
        pacing.main(["--setting", "K=10", "--no-doc"])
    with pytest.raises(SystemExit, match="at least 1 seed"):
        pacing.main(["--seeds", "0", "--no-doc"])
    with pytest.raises(SystemExit, match="at least 1 process"):
        pacing.main(["--screen", "tuning", "--jobs", "0"])
    with pytest.raises(SystemExit, match="--unlock: final_phase=0.25 starts before every level is open"):
        pacing.main(["--unlock", "0.9", "--no-doc"])
    with pytest.raises(SystemExit, match="leave out --setting"):
        pacing.main(["--screen", "tuning", "--setting", "K=10/weak-noforget-steep"])
    with pytest.raises(ValueError, match="unknown schedule 'nope'"):
        pacing.maker("nope")
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"before\n{pacing.BEGIN}\nold\n{pacing.END}\nafter\n")
    monkeypatch.setattr(pacing, "DOC", doc)
    pacing.main(["--setting", "T=100/weak-noforget-steep", "--seeds", "2"])
    text = doc.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "old" not in text
    assert "**T=100/weak-noforget-steep** (100 steps)" in text and pacing.TOP in text


def test_screen_counts_the_settings_where_a_schedule_is_not_worse_than_the_best_fixed_one():
    from benchmarks.curriculum.pacing import PACED, maker, screen

    short = replace(SMALL, total_steps=60)
    settings = [("base", short), ("mastered cost", replace(short, mastered_cost=0.5))]
    seeds = [0, 1, 2]
    rows = screen(settings, seeds, jobs=1)
    assert set(rows) == {bench.DEFAULT, PACED}

    def finals(label: str, setting: Setting) -> np.ndarray:
        return np.array([simulate(setting, maker(label), s).heldout_final for s in seeds])

    for label, r in rows.items():
        diffs = [bench.vs_best(finals(label, st), {f: finals(f, st) for f in bench.FIXED})[1] for _, st in settings]
        assert r["settings"] == 2 and r["not_worse"] == sum(bench.not_worse(d) for d in diffs)
        assert r["mean"] == pytest.approx(np.mean([d[0] for d in diffs]))
        assert r["worst"][1] == min(diffs)
        assert [d for _, _, d in r["worse"]] == [d for d in diffs if not bench.not_worse(d)]


# -- the bar's calibration (benchmarks/curriculum/calibrate.py) --------------------------------


def test_noise_zero_is_the_benchmarks_own_luck():
    # Pinned before the noise argument existed: the benchmark's numbers must not move with it.
    assert simulate(SMALL, factory("sec", reward_max=1.0), 3).heldout_final == 0.15670997051253877
    assert simulate(SMALL, factory("sec", reward_max=1.0), 3, noise=0).heldout_final == 0.15670997051253877
    with pytest.raises(ValueError, match="noise=-1"):
        simulate(SMALL, factory("sec"), 3, noise=-1)


def test_noise_keeps_the_task_and_draws_other_levels_and_rewards():
    s = replace(SMALL, permute_levels=True, partial_reward=True, reward_noise=0.1, total_steps=40)
    runs = {}
    for noise in (0, 1, 2):
        rec = {}
        make = lambda st, rec=rec: rec.setdefault("s", _build(Recorder)(st))  # noqa: E731
        runs[noise] = simulate(s, make, 3, noise=noise), rec["s"].calls
    (own, own_calls), (other, other_calls), (third, _) = runs[0], runs[1], runs[2]
    assert other.extra == own.extra  # difficulties, learning rate and level labels of seed 3
    # Uniform sampling, so what differs is luck: the levels drawn and the rewards they got.
    assert [c[1] for c in other_calls] != [c[1] for c in own_calls]
    assert [c[2] for c in other_calls] != [c[2] for c in own_calls]
    assert not np.array_equal(third.level_share, other.level_share)


def _draws(shift: dict) -> dict:
    """Hand-made calibration results for settings "a" and "b" over 3 draws; ``shift[(label, setting, draw)]`` adds.

    Every array shares one spread across seeds (sd 0.05) with 0.001 of its own, so a shift of 0.01
    is resolved by the paired CI and not by an unpaired one.
    """
    from benchmarks.curriculum.calibrate import COMPARED

    rng = np.random.default_rng(0)
    base = rng.normal(0.5, 0.05, 12)
    out = {}
    for s, lab, d in itertools.product("ab", COMPARED, range(3)):
        level = {"classic": 0.0, bench.DEFAULT: 0.0}.get(lab, -0.1)
        out["f", s, lab, d] = base + level + shift.get((lab, s, d), 0.0) + rng.normal(0, 0.001, 12)
    return out


def test_bar_per_draw_uses_each_draws_own_best_fixed_schedule():
    from benchmarks.curriculum.calibrate import bar_per_draw, failing_settings, report, self_alarms

    # In "a" the default is worse than classic by 0.01 in draw 1 only; in draw 2 gaussian is the best.
    results = _draws({(bench.DEFAULT, "a", 1): -0.01, ("gaussian", "a", 2): 0.2})
    names = [("f", "a"), ("f", "b")]
    per_draw = bar_per_draw(results, names, 3)
    assert per_draw[1]["f / a"][0] == "classic" and per_draw[1]["f / a"][1][2] < 0
    assert per_draw[2]["f / a"][0] == "gaussian" and per_draw[2]["f / a"][1][0] == pytest.approx(-0.1, abs=0.003)
    assert per_draw[0]["f / a"][1][0] == pytest.approx(0.0, abs=0.003)
    assert [name for name, _ in failing_settings(per_draw)][0] == "f / a"
    assert ("f / a", [1, 2]) in failing_settings(per_draw)
    text = report(per_draw, self_alarms(results, names, 3), 12)
    assert "| f / a | 2/3 | " in text


def test_self_alarms_compare_every_pair_of_draws_and_the_best_of_the_rest():
    from benchmarks.curriculum.calibrate import self_alarms

    # Draw 2 of the default is ahead by 0.01 in "a"; in "b" draw 0 is ahead by 0.003, which the CI
    # does not resolve, so draw 0's best other draw there must be 1 or 2, never draw 0 itself.
    results = _draws({(bench.DEFAULT, "a", 2): 0.01, (bench.DEFAULT, "b", 0): 0.003})
    out = self_alarms(results, [("f", "a"), ("f", "b")], 3)
    n, alarms = out["pairs"]
    assert n == 2 * 3  # settings x unordered pairs of draws
    assert alarms >= 2  # (0, 2) and (1, 2) in "a"
    entries = {a: {name: (best, d) for name, best, d in out["best_of_rest"][a]} for a in range(3)}
    assert entries[0]["f / a"][0] == "2" and entries[0]["f / a"][1][2] < 0
    assert entries[2]["f / a"][1][0] > 0
    assert entries[0]["f / b"][0] in {"1", "2"} and entries[0]["f / b"][1][0] > 0


def test_calibrate_cli_checks_its_options_and_rewrites_only_its_block(tmp_path, monkeypatch):
    from benchmarks.curriculum import calibrate

    with pytest.raises(SystemExit, match="comparing draws"):
        calibrate.main(["--draws", "1", "--no-doc"])
    with pytest.raises(SystemExit, match="at least 1 process"):
        calibrate.main(["--jobs", "0", "--no-doc"])
    with pytest.raises(SystemExit, match="at least 2 seeds"):
        calibrate.main(["--seeds", "1", "--no-doc"])
    with pytest.raises(SystemExit, match=r"unknown families \['nope'\]; choose from"):
        calibrate.main(["--families", "nope", "--no-doc"])
    doc = tmp_path / "benchmarks.md"
    doc.write_text("no markers\n")
    monkeypatch.setattr(calibrate, "DOC", doc)
    monkeypatch.setattr(calibrate, "run", lambda *a: pytest.fail("ran before checking the doc's markers"))
    with pytest.raises(SystemExit, match="lacks the markers"):
        calibrate.main(["--families", "T=100", "--seeds", "3", "--draws", "2"])
    monkeypatch.undo()
    doc.write_text(f"before\n{calibrate.BEGIN}\nold\n{calibrate.END}\nafter\n")
    monkeypatch.setattr(calibrate, "DOC", doc)
    monkeypatch.setattr(bench, "REPORT_BASES", dict(list(bench.REPORT_BASES.items())[:1]))
    calibrate.main(["--families", "T=100", "--seeds", "3", "--draws", "2", "--jobs", "1"])
    text = doc.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "old" not in text
    assert "| draw | not worse | worse in |" in text and "(1 comparisons, not independent" in text


def test_simulate_cli_refuses_counts_it_cannot_report_on():
    with pytest.raises(SystemExit, match="at least 2 seeds"):
        bench.main(["--seeds", "1", "--no-doc"])
    with pytest.raises(SystemExit, match="at least 1 process"):
        bench.main(["--jobs", "0", "--no-doc"])
    assert bench.select_families(" , ") == bench.FAMILIES
    assert [f.name for f in bench.select_families("K=10, ,base")] == ["base", "K=10"]
