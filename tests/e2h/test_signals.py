"""The no-learning-signal check (issue 22): when every group's rewards are equal."""

from e2h.signals import NO_SIGNAL_STEPS, NoSignalWatch, no_signal, no_signal_streak


def test_no_signal_reads_trls_share_of_zero_std_groups():
    assert no_signal({"frac_reward_zero_std": 1.0}) is True
    assert no_signal({"frac_reward_zero_std": 0.75}) is False
    assert no_signal({"loss": 0.0}) is None and no_signal(None) is None


def test_streak_counts_from_the_last_step_with_a_signal():
    steps = [1, 2, 3, 4, 5, 30]
    assert no_signal_streak(steps, [1.0] * 6) == 30  # never had one: since the start
    assert no_signal_streak(steps, [0.5, 1.0, 0.9, 1.0, None, 1.0]) == 27  # since step 3
    assert no_signal_streak(steps, [1.0] * 5 + [0.5]) == 0
    assert no_signal_streak([], []) == 0


def test_watch_warns_once_per_streak_then_rarely():
    watch = NoSignalWatch()
    said = {step: watch.update(step, {"frac_reward_zero_std": 1.0}) for step in range(1, 12 * NO_SIGNAL_STEPS)}
    warned = [step for step, text in said.items() if text]
    assert warned == [NO_SIGNAL_STEPS, 11 * NO_SIGNAL_STEPS]
    assert f"no learning signal for {NO_SIGNAL_STEPS} steps" in said[NO_SIGNAL_STEPS]
    assert watch.update(500, {"frac_reward_zero_std": 0.5}) is None  # a signal resets it
    assert watch.update(500 + NO_SIGNAL_STEPS - 1, {"frac_reward_zero_std": 1.0}) is None
    assert watch.update(500 + NO_SIGNAL_STEPS, {"frac_reward_zero_std": 1.0})
