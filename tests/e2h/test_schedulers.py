import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2h.schedulers import (
    SCHEDULERS,
    SECScheduler,
    VarianceRegularizedScheduler,
    floor_probs,
    make_scheduler,
    paper_min_prob,
)


def test_all_six_schedulers_registered():
    assert sorted(SCHEDULERS) == sorted(
        ["balanced", "classic", "cosine", "gaussian", "variance_regularized", "sec"]
    )
    for cls in SCHEDULERS.values():
        assert cls.description
        assert cls.params_schema()["type"] == "object"


def test_cosine_reference_values():
    s = make_scheduler("cosine", num_levels=4, total_steps=100)
    np.testing.assert_allclose(s.probs(0), [0.4, 0.3, 0.2, 0.1], atol=1e-12)
    np.testing.assert_allclose(s.probs(100), [0.1, 0.2, 0.3, 0.4], atol=1e-12)
    np.testing.assert_allclose(s.probs(50), [0.25] * 4, atol=1e-12)


@pytest.mark.parametrize(
    ("step", "active"), [(0, 0), (24, 0), (25, 1), (49, 1), (50, 2), (75, 3), (99, 3), (100, 3), (150, 3)]
)
def test_classic_one_hot_at_boundaries(step, active):
    p = make_scheduler("classic", num_levels=4, total_steps=100).probs(step)
    expected = np.zeros(4)
    expected[active] = 1.0
    np.testing.assert_array_equal(p, expected)


def test_balanced_uniform():
    np.testing.assert_allclose(make_scheduler("balanced", 5, 10).probs(3), [0.2] * 5)


def _gaussian_by_hand(t, total, k, mu_exp, sigma, pmin):
    mu = (t / total) ** mu_exp * (k - 1)
    q = [math.exp(-((i - mu) ** 2) / (2 * sigma**2)) for i in range(k)]
    z = sum(q)
    return [pmin + (1 - k * pmin) * x / z for x in q]


@pytest.mark.parametrize(
    ("t", "mu_exp", "sigma", "min_prob"),
    [
        (0, 0.5, 0.5, True),
        (25, 0.5, 0.5, True),
        (100, 0.5, 0.5, True),
        (40, 1.0, 1.0, 0.05),
        (10, 2.0, 0.3, False),
    ],
)
def test_gaussian_matches_formula(t, mu_exp, sigma, min_prob):
    k, total = 4, 100
    pmin = paper_min_prob(k) if min_prob is True else (0.0 if min_prob is False else min_prob)
    s = make_scheduler("gaussian", k, total, mu_exp=mu_exp, sigma=sigma, min_prob=min_prob)
    np.testing.assert_allclose(s.probs(t), _gaussian_by_hand(t, total, k, mu_exp, sigma, pmin), atol=1e-12)


def test_gaussian_hand_computed_point():
    # K=3, t=T/4, mu_exp=0.5 -> mu = 0.5 * 2 = 1; sigma=0.5: q = [e^-2, 1, e^-2]; pmin = 1/6.
    p = make_scheduler("gaussian", 3, 100).probs(25)
    e = math.exp(-2)
    q = np.array([e, 1.0, e]) / (1 + 2 * e)
    np.testing.assert_allclose(p, 1 / 6 + 0.5 * q, atol=1e-12)


@pytest.mark.parametrize(
    ("name", "k", "params", "needle"),
    [
        ("nope", 4, {}, "unknown scheduler 'nope'"),
        ("variance_regularized", 4, {"min_prob": 0.3}, "min_prob=0.3"),
        ("variance_regularized", 4, {"warmup_steps": 200}, "warmup_steps=200"),
        ("gaussian", 4, {"sigma": -1.0}, "sigma"),
        ("gaussian", 4, {"min_prob": 0.5}, "min_prob=0.5"),
        ("sec", 4, {"min_prob": 0.4}, "min_prob=0.4"),
        ("cosine", 4, {"bogus": 1}, "bogus"),
        ("variance_regularized", 4, {"weights": {"deficit": 0, "variance": 0, "exploration": 0,
                                                 "groupdro": 0, "vrex": 0}}, "weights"),
    ],
)
def test_bad_params_raise_value_error_naming_them(name, k, params, needle):
    with pytest.raises(ValueError, match=needle.replace("(", r"\(")):
        make_scheduler(name, num_levels=k, total_steps=100, **params)


def test_bad_feedback_is_rejected_or_dropped():
    s = make_scheduler("variance_regularized", 3, 100, warmup_steps=0, update_interval=1)
    with pytest.raises(ValueError, match="level 3"):
        s.update(0, [0, 3], [1.0, 1.0])
    with pytest.raises(ValueError, match="level -1"):
        s.update(0, [-1], [1.0])
    with pytest.raises(ValueError, match="length"):
        s.update(0, [0, 1], [1.0])
    s.update(0, [0, 0, 1, 2], [1.0, float("nan"), float("inf"), 0.5])
    assert s.dropped_rewards == 2
    snap = s.snapshot(1)
    assert [lv["count"] for lv in snap["levels"]] == [1, 0, 1]
    assert np.isfinite(s.probs(1)).all()


def test_update_requires_whole_groups():
    s = make_scheduler("sec", 2, 10, num_generations=4)
    with pytest.raises(ValueError, match="num_generations=4"):
        s.update(0, [0, 0, 0], [1, 0, 1])


def test_floor_probs_exact_and_sums_to_one():
    p = floor_probs(np.array([0.97, 0.01, 0.01, 0.01]), 0.1)
    assert p.min() >= 0.1
    assert p[1] == 0.1 and p[2] == 0.1 and p[3] == 0.1
    assert abs(p.sum() - 1) < 1e-12
    np.testing.assert_allclose(floor_probs(np.array([0.9, 0.1]), 0.5), [0.5, 0.5])


def _feed(s, rng, step, batch):
    g = s.num_generations
    levels = np.repeat(rng.integers(0, s.num_levels, size=batch), g)
    rewards = rng.random(levels.size) * 1.5 - 0.2
    rewards[rng.random(levels.size) < 0.05] = np.nan
    s.update(step, levels.tolist(), rewards.tolist())


def _floor_of(s):
    if s.name == "gaussian":
        return s.min_prob
    if s.name == "variance_regularized":
        return s.params.min_prob
    if s.name == "sec":  # a settled level gets settled_prob, the others at least min_prob
        return min(s.params.min_prob, s.params.settled_prob) * (1 - 1e-12)
    return 0.0


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(sorted(SCHEDULERS)),
    k=st.integers(1, 12),
    total=st.integers(2, 400),
    steps=st.lists(st.integers(0, 500), min_size=1, max_size=8),
    seed=st.integers(0, 2**16),
    min_frac=st.floats(0.0, 1.0),
)
def test_probabilities_are_valid_for_any_feedback(name, k, total, steps, seed, min_frac):
    params = {}
    if name in ("variance_regularized", "sec"):
        params["min_prob"] = min_frac / k * 0.999
    if name == "variance_regularized":
        params.update(warmup_steps=min(total - 1, 5), update_interval=1, window_size=7)
    if name == "gaussian":
        params["min_prob"] = min_frac / k * 0.999
    s = make_scheduler(name, k, total, num_generations=2, **params)
    rng = np.random.default_rng(seed)
    for step in sorted(steps):
        _feed(s, rng, step, batch=4)
        p = s.probs(step)
        assert p.shape == (k,)
        assert np.isfinite(p).all()
        assert (p >= 0).all()
        assert abs(p.sum() - 1.0) <= 1e-9
        assert (p >= _floor_of(s)).all()
        snap = s.snapshot(step)
        assert len(snap["levels"]) == k


def _vrex(**kw):
    params = dict(warmup_steps=20, update_interval=10)
    params.update(kw)
    return VarianceRegularizedScheduler(4, 200, num_generations=2, **params)


def _one_level_fails(s, step, rng):
    levels = np.repeat(np.arange(4), 2 * 2)
    rewards = np.where(levels == 2, 0.0, 1.0) * (0.9 + 0.1 * rng.random(levels.size))
    s.update(step, levels.tolist(), rewards.tolist())


def test_vrex_uniform_during_warmup_then_favours_the_failing_level():
    s = _vrex()
    rng = np.random.default_rng(0)
    for step in range(20):
        np.testing.assert_array_equal(s.probs(step), [0.25] * 4)
        _one_level_fails(s, step, rng)
    assert s.snapshot(5)["levels"][0]["components"] is None
    for step in range(20, 60):
        p = s.probs(step)
        _one_level_fails(s, step, rng)
    assert p[2] > max(p[0], p[1], p[3])
    assert p.min() >= 0.1
    comps = s.snapshot(59)["levels"][2]["components"]
    for name in ("deficit", "variance", "exploration", "groupdro", "vrex"):
        assert name in comps and f"{name}_raw" in comps
    assert {"score", "pi"} <= comps.keys()


def test_vrex_recomputes_only_every_update_interval():
    s = _vrex()
    rng = np.random.default_rng(1)
    for step in range(20):
        _one_level_fails(s, step, rng)
    p20 = s.probs(20)
    for step in range(21, 30):
        s.update(step, [2, 2], [1.0, 1.0])  # feedback that would change the scores
        np.testing.assert_array_equal(s.probs(step), p20)
    assert not np.array_equal(s.probs(30), p20)


def test_vrex_window_is_bounded():
    s = _vrex(window_size=5)
    s.update(0, [0] * 12, [1.0] * 12)
    assert len(s.state_dict()["windows"][0]) == 5
    assert s.snapshot(0)["levels"][0]["count"] == 12


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_state_dict_round_trip_gives_identical_future(name):
    params = {"warmup_steps": 5, "update_interval": 3} if name == "variance_regularized" else {}
    a = make_scheduler(name, 5, 100, num_generations=2, **params)
    rng = np.random.default_rng(7)
    for step in range(12):
        a.probs(step)
        _feed(a, rng, step, batch=6)
    import json

    b = make_scheduler(name, 5, 100, num_generations=2, **params)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    rng_a, rng_b = np.random.default_rng(8), np.random.default_rng(8)
    for step in range(12, 40):
        np.testing.assert_array_equal(a.probs(step), b.probs(step))
        assert a.snapshot(step) == b.snapshot(step)
        _feed(a, rng_a, step, batch=6)
        _feed(b, rng_b, step, batch=6)


def test_load_state_dict_rejects_other_scheduler():
    a = make_scheduler("sec", 3, 10)
    with pytest.raises(ValueError, match="sec"):
        make_scheduler("variance_regularized", 3, 500).load_state_dict(a.state_dict())


def test_sec_favours_levels_with_mixed_outcomes():
    s = make_scheduler("sec", 3, 100, num_generations=4)
    for step in range(10):
        # level 0 always solved, level 2 never, level 1 half the time: only level 1 teaches GRPO.
        s.update(step, [0] * 4 + [1] * 4 + [2] * 4, [1, 1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0])
    p = s.probs(10)
    assert p[1] > p[0] and p[1] > p[2]
    comps = s.snapshot(10)["levels"][1]["components"]
    assert comps["learning_progress"] == pytest.approx(0.5)


def test_fixed_schedulers_report_reward_stats_and_no_components():
    s = make_scheduler("gaussian", 3, 10)
    s.update(0, [0, 0, 1], [1.0, 0.0, 0.5])
    levels = s.snapshot(0)["levels"]
    assert levels[0]["reward_mean"] == 0.5 and levels[0]["reward_var"] == 0.25
    assert levels[2]["reward_mean"] is None and levels[2]["count"] == 0
    assert all(lv["components"] is None for lv in levels)
    assert not s.adaptive and make_scheduler("sec", 3, 10).adaptive


# -- sec's settling rule: mastered and unlearnable levels fade out -------------------------------


def _sec_batch(s, step, outcomes, rng, groups=4):
    """One batch, ``groups`` groups per level; level i's completions succeed with probability outcomes[i]."""
    g = s.num_generations
    levels = np.repeat(np.arange(s.num_levels), groups * g)
    rewards = (rng.random(levels.size) < np.asarray(outcomes)[levels]).astype(float)
    s.update(step, levels.tolist(), rewards.tolist())


def test_sec_mastered_level_falls_to_the_settled_probability():
    s = make_scheduler("sec", 4, 200, num_generations=8)
    rng = np.random.default_rng(0)
    for step in range(20):
        _sec_batch(s, step, [1.0, 0.5, 0.4, 0.3], rng)  # level 0 always solved: its groups teach nothing
    p = s.probs(20)
    assert p[0] == s.params.settled_prob == 0.01  # exactly the re-test rate
    assert (p[1:] >= s.params.min_prob).all()
    issue9 = make_scheduler("sec", 4, 200, num_generations=8, temperature=0.1, alpha=0.5, hardness=2.0,
                            beta=0.1, min_prob=0.02, settle_ratio=0.0)
    rng = np.random.default_rng(0)
    for step in range(20):
        _sec_batch(issue9, step, [1.0, 0.5, 0.4, 0.3], rng)
    assert issue9.probs(20)[0] > 0.02  # without the rule the uniform share keeps more on it
    comps = s.snapshot(20)["levels"]
    assert comps[0]["components"]["settled"] == 1.0
    assert comps[0]["components"]["floor"] == s.params.settled_prob
    assert comps[0]["components"]["q_ratio"] == 0.0
    assert all(lv["components"]["settled"] == 0.0 for lv in comps[1:])


def test_sec_unlearnable_level_does_not_absorb_the_budget():
    # The top level is never solved: without the rule the hardness prior and the uniform share
    # keep sending prompts there; with it the level gets exactly settled_prob.
    s = make_scheduler("sec", 5, 200, num_generations=4)
    rng = np.random.default_rng(1)
    for step in range(30):
        _sec_batch(s, step, [0.9, 0.7, 0.5, 0.3, 0.0], rng)
    p = s.probs(30)
    assert p[4] == s.params.settled_prob
    assert p[1:4].sum() > 0.9


def test_sec_settled_level_returns_when_it_teaches_again():
    s = make_scheduler("sec", 3, 200, num_generations=8)
    rng = np.random.default_rng(2)
    for step in range(20):
        _sec_batch(s, step, [0.5, 0.5, 0.0], rng)
    assert s.settled().tolist() == [False, False, True]
    for step in range(20, 30):
        _sec_batch(s, step, [0.5, 0.5, 0.5], rng)  # level 2 became learnable (transfer, say)
    assert not s.settled().any()
    assert s.probs(30)[2] >= s.params.min_prob


def test_sec_untried_or_never_progressing_levels_do_not_settle():
    s = make_scheduler("sec", 3, 100, num_generations=4)
    s.update(0, [0] * 4 + [1] * 4, [1, 0, 1, 0, 1, 1, 1, 1])  # level 2 untried, level 1 tried once
    assert not s.settled().any()  # fewer than settle_groups groups each
    t = make_scheduler("sec", 3, 100, num_generations=4)
    for step in range(10):
        t.update(step, [0] * 4 + [1] * 4 + [2] * 4, [0.0] * 12)  # nothing teaches: no level settles
    assert not t.settled().any()
    np.testing.assert_allclose(t.probs(10), [1 / 3] * 3)


def test_sec_settle_ratio_zero_turns_the_settling_rule_off():
    s = make_scheduler("sec", 4, 100, num_generations=8, settle_ratio=0.0)
    rng = np.random.default_rng(3)
    for step in range(15):
        _sec_batch(s, step, [1.0, 0.6, 0.3, 0.0], rng)
    p = s.params
    w = s._q * (1 + p.hardness * (np.arange(4) / 3) ** p.hardness_power)
    pi = np.exp(w / p.temperature - (w / p.temperature).max())
    pi /= pi.sum()
    expected = floor_probs((1 - p.beta) * pi + p.beta / 4, p.min_prob)
    np.testing.assert_array_equal(s.probs(15), expected)
    assert not s.settled().any()


def test_sec_hardness_weight_is_linear_by_default_and_quadratic_at_power_two():
    lin = make_scheduler("sec", 4, 100, num_generations=4)
    np.testing.assert_allclose(lin.hardness_weights(), [1, 1 + 8 / 3, 1 + 16 / 3, 9])
    quad = make_scheduler("sec", 4, 100, num_generations=4, hardness_power=2.0)
    np.testing.assert_allclose(quad.hardness_weights(), [1, 1 + 8 / 9, 1 + 32 / 9, 9])
    np.testing.assert_allclose(make_scheduler("sec", 1, 100).hardness_weights(), [1.0])  # one level: no prior
    # Two levels teach alike (Q 0.20 at the top, 0.35 just below): the quadratic weight keeps the
    # top level ahead (0.20 x 9 > 0.35 x 4.6), the linear one gives the lead to the level below.
    for s in (quad, lin):
        for step in range(30):
            s.update(step, [2] * 4 + [3] * 4, [1, 1, 1, 0, 1, 1, 1, 0])
        s._q = np.array([0.0, 0.0, 0.35, 0.20])
    assert quad.probs(30).argmax() == 3
    assert lin.probs(30).argmax() == 2
    comps = quad.components()
    np.testing.assert_allclose(comps["score"], quad._q * quad.hardness_weights())


def test_sec_rejects_infeasible_settled_prob():
    with pytest.raises(ValueError, match="settled_prob=0.3"):
        make_scheduler("sec", 4, 100, settled_prob=0.3)


def test_sec_rejects_a_reference_batch_no_step_has():
    # An untrusted config cannot make floors() overflow a float (10**400 / prompts) inside a worker's run.
    with pytest.raises(ValueError, match="reference_prompts"):
        make_scheduler("sec", 4, 100, reference_prompts=10**400)
    assert make_scheduler("sec", 4, 100, reference_prompts=1_000_000).params.reference_prompts == 1_000_000


def test_sec_floors_hold_per_step_below_reference_prompts():
    # 16 prompts per step (the reference) or more: the floors are the parameters themselves.
    s = make_scheduler("sec", 4, 200, num_generations=4)
    assert s.floors() == (0.005, 0.01)  # nothing fed back yet
    rng = np.random.default_rng(4)
    _sec_batch(s, 0, [1.0, 0.5, 0.5, 0.0], rng, groups=8)  # 32 prompts
    assert s.floors() == (0.005, 0.01)
    two = ([1] * 4 + [2] * 4, [1, 0, 1, 0, 0, 1, 1, 0])  # 2 prompts of 4 completions
    s.update(1, *two)
    assert s.floors() == (0.005, 0.01)  # step 1 may hold more batches: the last finished step counts
    s.update(2, *two)  # step 1 finished with 2 prompts: both floors x 8
    assert s.floors() == pytest.approx((0.04, 0.08))
    # Several generation batches under one step (TRL with gradient accumulation) add up: 4 x 4 prompts.
    four = (two[0] * 2, two[1] * 2)
    for _ in range(4):
        s.update(3, *four)
    assert s.floors() == (0.005, 0.01)  # step 3 already holds 16
    s.update(4, *two)
    assert s.floors() == (0.005, 0.01)  # and it finished with 16
    # At most 1/K each: 10 levels, 1 prompt per step (16 x 0.01 = 0.16 > 0.1).
    t = make_scheduler("sec", 10, 200, num_generations=4)
    t.update(0, [3] * 4, [1, 0, 1, 0])
    assert t.floors() == pytest.approx((0.08, 0.1))
    # reference_prompts=0: per-prompt floors at any batch size (the behaviour before the parameter).
    u = make_scheduler("sec", 4, 200, num_generations=4, reference_prompts=0)
    u.update(0, *two)
    u.update(1, *two)
    assert u.floors() == (0.005, 0.01)
    # probs() keeps the scaled floor when nothing is settled: level 2 teaches most, the others get 4%.
    v = make_scheduler("sec", 4, 200, num_generations=4)
    for step in range(3):
        v.update(step, [2] * 4 + [2] * 4, [1, 0, 1, 0, 0, 1, 1, 0])
    assert not v.settled().any()
    p = v.probs(3)
    assert p.sum() == pytest.approx(1.0) and p.min() == pytest.approx(0.04) and p.argmax() == 2
    # A checkpoint written before reference_prompts (no "prompts" entry) loads and counts afresh.
    state = v.state_dict()
    del state["extra"]["prompts"]
    w = make_scheduler("sec", 4, 200, num_generations=4)
    w.load_state_dict(state)
    assert w.floors() == (0.005, 0.01)


def test_sec_final_phase_drills_the_hardest_level_that_still_teaches():
    # 4 levels, 100 steps, final_phase 0.2: steps 80..99. Level 3 is unlearnable (Q = 0), level 2
    # teaches less than level 1 but more than a quarter of it: level 2 is drilled, with no floors.
    s = make_scheduler("sec", 4, 100, num_generations=8, final_phase=0.2)
    off = make_scheduler("sec", 4, 100, num_generations=8)
    rng, rng_off = np.random.default_rng(6), np.random.default_rng(6)
    for step in range(79):
        _sec_batch(s, step, [1.0, 0.5, 0.15, 0.0], rng)
        _sec_batch(off, step, [1.0, 0.5, 0.15, 0.0], rng_off)
    q = s.components()["q_value"]
    assert q[3] == 0.0 and q[1] == max(q) and 0.25 * q[1] <= q[2] < q[1]
    before = s.probs(79)
    np.testing.assert_array_equal(before, off.probs(79))  # the same scheduler until the phase
    assert before.min() > 0 and s.final_target(79) is None
    assert s.components()["final"] == [0.0] * 4
    for step in (80, 99):
        assert s.probs(step).tolist() == [0.0, 0.0, 1.0, 0.0]
    comps = s.snapshot(99)["levels"]
    assert [lv["components"]["final"] for lv in comps] == [0.0, 0.0, 1.0, 0.0]
    assert all(lv["components"]["floor"] == 0.0 for lv in comps)
    # A stricter ratio picks a level that teaches more: level 2's Q is below 0.9 x level 1's.
    strict = make_scheduler("sec", 4, 100, num_generations=8, final_phase=0.2, final_ratio=0.9)
    strict.load_state_dict(s.state_dict())
    assert strict.final_target(80) == 1
    # The phase waits until some level has shown progress; final_phase=1 is the whole run.
    idle = make_scheduler("sec", 4, 100, num_generations=8, final_phase=1.0)
    assert idle.final_target(0) is None and idle.probs(0).min() > 0
    idle.update(0, [2] * 8, [1, 0, 1, 0, 1, 0, 1, 0])
    assert idle.probs(1).tolist() == [0.0, 0.0, 1.0, 0.0]
    # A resumed run shows the same breakdown: the step of the last draw is part of the state.
    resumed = make_scheduler("sec", 4, 100, num_generations=8, final_phase=0.2)
    resumed.load_state_dict(s.state_dict())
    assert resumed.components() == s.components()


def test_sec_final_phase_is_the_last_floor_of_its_share_of_the_steps():
    # 0.7 x 100 is 69.999... in floating point: the phase still has 70 steps, from step 30.
    s = make_scheduler("sec", 3, 100, num_generations=4, final_phase=0.7)
    s.update(0, [1] * 4, [1, 0, 1, 0])
    assert s.final_start() == 30 and s.final_target(29) is None and s.final_target(30) == 1
    # A share shorter than one step is no phase at all.
    short = make_scheduler("sec", 3, 50, num_generations=4, final_phase=0.01)
    short.update(0, [1] * 4, [1, 0, 1, 0])
    assert short.final_start() is None and short.final_target(49) is None


def test_sec_final_phase_survives_a_q_that_is_not_finite():
    # Rewards far beyond reward_max overflow Q to inf or NaN: the phase treats them as no progress.
    s = make_scheduler("sec", 3, 10, num_generations=2, final_phase=0.5, reward_max=1e-300)
    s.update(0, [0, 0, 1, 1], [1e308, -1e308, 1.0, 0.0])
    assert not np.isfinite(s.components()["q_value"]).all()
    p = s.probs(9)
    assert np.isfinite(p).all() and p.sum() == pytest.approx(1.0)
    s.snapshot(9)


@pytest.mark.parametrize(
    "params", [{"final_phase": 1.5}, {"final_phase": -0.1}, {"final_ratio": 0.0}, {"final_ratio": 1.5}]
)
def test_sec_rejects_final_phase_parameters_out_of_range(params):
    with pytest.raises(ValueError, match=next(iter(params))):
        make_scheduler("sec", 4, 100, **params)


def test_sec_with_two_prompts_per_step_retests_a_settled_level_at_the_scaled_floor():
    s = make_scheduler("sec", 4, 300, num_generations=8)
    rng = np.random.default_rng(5)
    for step in range(20):  # level 0 always solved: it settles
        _sec_batch(s, step, [1.0, 0.5, 0.4, 0.3], rng)
    assert s.settled()[0]
    assert s.probs(20)[0] == 0.01  # 16 prompts per step: the parameter
    for step in range(20, 22):  # the same run, now 2 prompts per step
        s.update(step, [1] * 8 + [2] * 8, (rng.random(16) < 0.5).astype(float).tolist())
    p = s.probs(22)
    assert s.settled()[0] and p[0] == pytest.approx(0.08)
    assert (p[1:] >= 0.04 - 1e-12).all()
    comps = s.snapshot(22)["levels"]
    assert comps[0]["components"]["floor"] == pytest.approx(0.08)
    assert comps[1]["components"]["floor"] == pytest.approx(0.04)
    # The floors survive a checkpoint: the prompts per step are part of the state.
    t = make_scheduler("sec", 4, 300, num_generations=8)
    t.load_state_dict(s.state_dict())
    np.testing.assert_array_equal(t.probs(22), p)


def test_sec_holds_a_level_that_is_not_eligible_at_its_floor_and_settles_among_the_eligible_ones():
    class HoldTop(SECScheduler):
        def eligible(self):
            return np.array([True, True, False])

    sched = HoldTop(3, 100, num_generations=4, reward_max=1.0)
    half, solved = [1.0, 1.0, 0.0, 0.0], [1.0] * 4
    # 16 prompts per step: level 0 teaches a little (1 of 8 groups half solved), level 1 not at all, the held
    # level 2 the most: it may not take their share, and the others settle against level 0, not level 2.
    levels = np.repeat([0] * 8 + [1] * 4 + [2] * 4, 4)
    rewards = np.array(half + solved * 7 + solved * 4 + half * 4)
    for step in range(20):
        sched.probs(step)
        sched.update(step, levels, rewards)
    p = sched.probs(20)
    assert sched._q[2] > sched._q[0] > sched._q[1] == 0.0
    assert sched.settled().tolist() == [False, True, False]
    assert p[2] == sched.params.min_prob and p[1] == sched.params.settled_prob and p.sum() == pytest.approx(1.0)
    assert sched.components()["q_ratio"][0] == 1.0
