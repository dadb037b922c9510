"""Is a run learning anything? The no-learning-signal check the trainer's log, ``e2h runs watch``
and the dashboard's run page share (no torch).

GRPO learns from the differences between the rewards of one prompt's generations: when every
group's rewards are equal (all 0.0 on a task the model cannot solve yet, or all 1.0), every
advantage is 0, so is the loss, and the model does not change. TRL logs the share of such groups
as ``frac_reward_zero_std``; a run whose every logged step for :data:`NO_SIGNAL_STEPS` steps had
it at 1 has had no learning signal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

NO_SIGNAL_STEPS = 20
ZERO_STD_METRIC = "frac_reward_zero_std"
ADVICE = ("every group's rewards were equal, so GRPO's advantages and loss are 0 and the model does not change: "
          "try easier levels, a model that can already solve some of them, more generations or a higher "
          "temperature")


def no_signal(metrics: Mapping[str, float | None] | None) -> bool | None:
    """Whether a logged step had no learning signal (None: it does not say)."""
    value = (metrics or {}).get(ZERO_STD_METRIC)
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return value >= 1.0 - 1e-9


def no_signal_streak(steps: Sequence[int], values: Sequence[float | None]) -> int:
    """Steps since the last logged step that had a learning signal (since the start if none had),
    from the ``frac_reward_zero_std`` series aligned with ``steps``; 0 if the latest step had
    one or the series says nothing about it."""
    if not steps or not values or not no_signal({ZERO_STD_METRIC: values[-1]}):
        return 0
    for step, value in zip(reversed(steps), reversed(values), strict=False):
        if no_signal({ZERO_STD_METRIC: value}) is False:
            return steps[-1] - step
    return steps[-1]


def message(streak: int) -> str:
    return f"no learning signal for {streak} steps: {ADVICE}"


class NoSignalWatch:
    """Fed each logged step's metrics; says (once per streak, then every 10 x NO_SIGNAL_STEPS)
    when it has gone NO_SIGNAL_STEPS steps with no learning signal."""

    def __init__(self, threshold: int = NO_SIGNAL_STEPS):
        self.threshold = threshold
        self.since: int | None = None  # the last step with a signal (0: the start)
        self.warned_at: int | None = None

    def update(self, step: int, metrics: Mapping[str, float | None]) -> str | None:
        state = no_signal(metrics)
        if state is None:
            return None
        if state is False:
            self.since, self.warned_at = step, None
            return None
        streak = step - (self.since or 0)
        due = self.warned_at is None or step - self.warned_at >= 10 * self.threshold
        if streak >= self.threshold and due:
            self.warned_at = step
            return message(streak)
        return None
