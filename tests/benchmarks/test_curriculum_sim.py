"""The simulated curriculum learner: deterministic, GRPO-like, and able to tell schedules apart."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from benchmarks.curriculum.learner import SETTINGS, Setting, factory, group_signal, simulate
from e2h.schedulers import Scheduler, make_scheduler

SMALL = replace(SETTINGS["strong-noforget-steep"], total_steps=150)


class AlwaysEasiest(Scheduler):
    """A clearly bad schedule: every prompt from level 0, for the whole run."""

    name = "always_easiest"
    description = "test only"

    def _probs(self, step: int) -> np.ndarray:
        p = np.zeros(self.num_levels)
        p[0] = 1.0
        return p


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
    return lambda s: cls(s.num_levels, s.total_steps, s.generations)


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
    holder = {}

    def build(s: Setting):
        holder["s"] = Recorder(s.num_levels, s.total_steps, s.generations)
        return holder["s"]

    s = replace(SMALL, total_steps=20)
    simulate(s, build, seed=2)
    calls = holder["s"].calls
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
    assert heldout(_build(AlwaysEasiest)) < 0.7 * good
    assert heldout(stuck_classic) < 0.7 * good
    assert heldout(factory("balanced")) < good
