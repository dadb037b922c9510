"""Issue 4: the default `{}` run finishes in under 10 minutes on CPU and raises the easiest levels' reward.

One real `e2h train` with no overrides (builtin:tiny, arithmetic, VREx, 200 steps), then the
probe on the shipped model and on the final checkpoint. What rises is measured on every
distinct training question of levels 0 and 1 (4 samples each at temperature 1, as GRPO samples),
not read from the noisy in-run reward windows.
"""

from __future__ import annotations

import pytest

from benchmarks.curriculum.default_run import BASE_MODEL, final_checkpoint, train_default
from benchmarks.curriculum.probe import probe

pytestmark = pytest.mark.slow


def test_default_run_is_fast_and_raises_the_easiest_levels_reward(tmp_path):
    before = {r["level"]: r for r in probe(BASE_MODEL, [0, 1], questions=120, samples=4, temperature=1.0)}
    wall = train_default(tmp_path / "run")
    after = {r["level"]: r for r in probe(final_checkpoint(tmp_path / "run"), [0, 1], questions=120,
                                          samples=4, temperature=1.0)}
    assert wall < 600, f"the default run took {wall:.0f} s"
    mean_before = sum(before[lv]["sampled_train_reward"] for lv in (0, 1)) / 2
    mean_after = sum(after[lv]["sampled_train_reward"] for lv in (0, 1)) / 2
    # `python -m benchmarks.curriculum.default_run` (8 samples), seeds 42/1/2: level 0 0.326 ->
    # 0.536/0.533/0.545, level 1 0.215 -> 0.315/0.336/0.325; the probe's own noise is about 0.02.
    assert mean_after > mean_before + 0.08, (before, after)
    for level in (0, 1):
        assert after[level]["sampled_train_reward"] > before[level]["sampled_train_reward"], (level, before, after)
        # GRPO learns to hand the answer in: the share of completions in the answer format rises.
        assert after[level]["sampled_train_format"] > before[level]["sampled_train_format"] + 0.2
