"""The curriculum under every batch geometry TRL accepts (issue 15).

The unit tests check BatchGeometry against a direct simulation of TRL's counters. The
training tests run the real GRPOTrainer on the built-in tiny model over a grid of
gradient_accumulation_steps x steps_per_generation x num_iterations and check what the
reward path recorded: the levels of every generation batch, the step it was fed back under
(against TRL's own global_step), the completions per step, and the snapshots.
"""

import json
import subprocess

import numpy as np
import pytest
from scipy.stats import chisquare

from e2h.config import compose
from e2h.geometry import BatchGeometry
from e2h.outputs import read_jsonl
from e2h.schedulers import make_scheduler

from .test_train import _env, two_process_launch


def _grid():
    for ga in (1, 2, 3, 4):
        for spg in sorted({1, 2, ga, 2 * ga, 3}):
            for ni in (1, 2):
                yield ga, spg, ni


GRID = list(_grid())


def _simulate_trl(geometry: BatchGeometry, micro_steps: int):
    """TRL's counters, micro-step by micro-step: (micro, global_step, generation batch or None)."""
    generated = -1
    for micro in range(micro_steps):
        generate = micro % geometry.generate_every == 0
        generated += generate
        yield micro, micro // geometry.gradient_accumulation_steps, generated if generate else None


@pytest.mark.parametrize(("ga", "spg", "ni"), GRID)
def test_geometry_matches_trls_counters(ga, spg, ni):
    geometry = BatchGeometry(ga, spg, ni)
    steps = 7
    trained: dict[int, set[int]] = {}
    generated_in: dict[int, list[int]] = {}
    current = None
    for micro, step, batch in _simulate_trl(geometry, steps * ga):
        if batch is not None:
            current = batch
            assert geometry.step_of_batch(batch) == step
            generated_in.setdefault(step, []).append(batch)
        assert geometry.batch_of_micro(micro) == current
        trained.setdefault(step, set()).add(current)
    for step in range(steps):
        assert list(geometry.batches_of_step(step)) == sorted(trained[step])
        assert list(geometry.batches_generated_in(step)) == generated_in.get(step, [])
    assert geometry.num_batches(steps) == current + 1


def test_resume_point_names_the_batch_in_progress():
    geometry = BatchGeometry(2, 3)  # generation at micro-steps 0, 3, 6; steps end at 2, 4, 6
    assert [geometry.resume_point(s) for s in range(4)] == [(0, 0), (0, 2), (1, 1), (2, 0)]


def test_geometry_rejects_non_positive_counts():
    with pytest.raises(ValueError, match="steps_per_generation"):
        BatchGeometry(1, 0)


# -- real training ----------------------------------------------------------------------

BASE = [
    "model=tiny",
    "task=arithmetic",
    "algorithm.per_device_train_batch_size=2",
    "algorithm.num_generations=2",
    "algorithm.max_completion_length=4",
    "task.train_size_per_level=16",
    "task.test_size_per_level=1",
    "algorithm.eval_steps=100",
]


def _geometry_overrides(ga, spg, ni):
    return [f"algorithm.gradient_accumulation_steps={ga}", f"algorithm.steps_per_generation={spg}",
            f"algorithm.num_iterations={ni}"]


def _train(out, overrides, steps):
    from e2h.train import run

    config = compose([*BASE, *overrides, f"algorithm.max_steps={steps}", f"algorithm.save_steps={steps}"])
    run(config, out)
    state = json.loads((out / f"checkpoint-{steps}" / "curriculum_state.json").read_text())
    return config, state["trained_levels"], read_jsonl(out / "snapshots.jsonl")


def _check_feedback_timing(config, records, snaps, steps):
    """Each batch is fed back under TRL's step; per-step completions and snapshot counts agree."""
    geometry = config.algorithm.geometry()
    assert [r["batch"] for r in records] == list(range(geometry.num_batches(steps)))
    for r in records:
        assert r["step"] == r["global_step"] + 1 == geometry.step_of_batch(r["batch"]) + 1
        assert sum(r["counts"]) == config.algorithm.generation_batch_size
    previous = np.zeros(config.num_levels, dtype=int)
    assert [s["step"] for s in snaps] == list(range(1, steps + 1))
    for snap in snaps:
        fed = [r["counts"] for r in records if r["step"] == snap["step"]]
        expected = len(geometry.batches_generated_in(snap["step"] - 1)) * config.algorithm.generation_batch_size
        assert sum(map(sum, fed)) == expected
        count = np.array([lv["count"] for lv in snap["levels"]])
        np.testing.assert_array_equal(count - previous, np.sum(fed, axis=0) if fed else 0)
        previous = count


@pytest.mark.slow
@pytest.mark.parametrize(("ga", "spg", "ni"), GRID)
def test_classic_schedule_is_followed_at_every_step(tmp_path, ga, spg, ni):
    steps = 5  # five levels: the classic schedule moves one level per step
    config, records, snaps = _train(tmp_path, ["scheduler=classic", *_geometry_overrides(ga, spg, ni)], steps)
    _check_feedback_timing(config, records, snaps, steps)
    geometry = config.algorithm.geometry()
    classic = make_scheduler("classic", 5, steps)
    for r in records:  # every completion of a batch has the level scheduled at its step
        scheduled = int(np.argmax(classic.probs(r["step"] - 1)))
        assert r["counts"][scheduled] == sum(r["counts"]), r
    for snap in snaps:  # the snapshot shows the levels its step trained on
        micro = range((snap["step"] - 1) * ga, snap["step"] * ga)
        trained = np.mean([classic.probs(geometry.step_of_batch(geometry.batch_of_micro(m))) for m in micro], 0)
        np.testing.assert_allclose([lv["probability"] for lv in snap["levels"]], trained, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize(("ga", "spg", "ni"), GRID)
def test_gaussian_level_frequencies_follow_each_windows_probabilities(tmp_path, ga, spg, ni):
    steps = 12
    overrides = ["scheduler=gaussian", "scheduler.params.sigma=0.3", "algorithm.per_device_train_batch_size=4",
                 *_geometry_overrides(ga, spg, ni)]
    config, records, snaps = _train(tmp_path, overrides, steps)
    _check_feedback_timing(config, records, snaps, steps)
    gaussian = make_scheduler("gaussian", 5, steps, sigma=0.3)
    prompts = config.algorithm.generation_batch_size // config.algorithm.num_generations
    observed, expected = [], []
    for window in (range(0, 4), range(4, 8), range(8, 12)):  # steps (0-based) of each window
        batches = [r for r in records if r["step"] - 1 in window]
        if not batches:
            continue
        observed.append(np.sum([r["counts"] for r in batches], axis=0) / config.algorithm.num_generations)
        expected.append(prompts * np.sum([gaussian.probs(r["step"] - 1) for r in batches], axis=0))
    observed, expected = np.concatenate(observed), np.concatenate(expected)
    keep = expected > 0.5  # cells the schedule leaves (nearly) empty carry no information
    assert observed[~keep].sum() <= 2
    scale = observed[keep].sum() / expected[keep].sum()
    assert chisquare(observed[keep], expected[keep] * scale).pvalue > 1e-4


@pytest.mark.slow
@pytest.mark.parametrize(("ga", "spg", "ni"), [(4, 1, 1), (2, 3, 2)])
def test_two_processes_follow_the_classic_schedule(tmp_path, ga, spg, ni):
    steps = 5
    out = tmp_path / "ddp"
    cmd = [*two_process_launch(), "-m", "e2h.train", *BASE, "scheduler=classic",
           "algorithm.num_processes=2", f"algorithm.max_steps={steps}", f"algorithm.save_steps={steps}",
           *_geometry_overrides(ga, spg, ni), "--output-dir", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = compose([*BASE, "scheduler=classic", "algorithm.num_processes=2", f"algorithm.max_steps={steps}",
                      *_geometry_overrides(ga, spg, ni)])
    records = json.loads((out / f"checkpoint-{steps}" / "curriculum_state.json").read_text())["trained_levels"]
    _check_feedback_timing(config, records, read_jsonl(out / "snapshots.jsonl"), steps)
    classic = make_scheduler("classic", 5, steps)
    for r in records:
        assert r["counts"][int(np.argmax(classic.probs(r["step"] - 1)))] == sum(r["counts"])


def _future(out, steps_after):
    snaps = {s["step"]: [lv["probability"] for lv in s["levels"]] for s in read_jsonl(out / "snapshots.jsonl")}
    return {s: snaps[s] for s in snaps if s > steps_after}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "stop"),
    [
        # Four generation batches per step (E2H's recipe), adaptive: the future is identical.
        (["scheduler=sec", "scheduler.params.temperature=0.05", *_geometry_overrides(4, 1, 1)], 3),
        # A stop part-way through a generation batch (generation every 3 micro-steps, steps every 2).
        (["scheduler=gaussian", *_geometry_overrides(2, 3, 1)], 3),
    ],
)
def test_resume_continues_the_curriculum_exactly(tmp_path, overrides, stop):
    from e2h.train import run

    steps = 6
    config = compose([*BASE, *overrides, f"algorithm.max_steps={steps}", f"algorithm.save_steps={stop}"])
    run(config, tmp_path / "straight")
    run(config, tmp_path / "resumed", should_stop=lambda step: step >= stop)
    run(config, tmp_path / "resumed")
    straight, resumed = (
        json.loads((tmp_path / name / f"checkpoint-{steps}" / "curriculum_state.json").read_text())
        for name in ("straight", "resumed")
    )
    assert resumed["trained_levels"] == straight["trained_levels"]
    future = _future(tmp_path / "straight", stop)
    assert sorted(future) == list(range(stop + 1, steps + 1))
    for step, probs in _future(tmp_path / "resumed", stop).items():
        np.testing.assert_allclose(probs, future[step], rtol=0, atol=1e-12)
