import itertools

import numpy as np
import pytest
from scipy.stats import chisquare

from e2h.geometry import BatchGeometry
from e2h.sampler import TaskSampler
from e2h.schedulers import make_scheduler


def _levels(per_level=10, values=(2, 3, 4, 5)):
    return [v for v in values for _ in range(per_level)]


def _sampler(levels=None, scheduler="balanced", **kw):
    levels = _levels() if levels is None else levels
    k = len(set(levels)) if kw.get("level_values") is None else len(kw["level_values"])
    args = dict(batch_size=4, num_generations=3, geometry=BatchGeometry(1, 2), num_batches=5, seed=0)
    args.update(kw)
    return TaskSampler(levels, make_scheduler(scheduler, k, 100), **args)


def test_repeat_pattern_matches_trl_repeat_sampler():
    s = _sampler()
    out = list(s)
    assert len(out) == len(s) == 5 * 4 * 3 * 2
    block = 4 * 3  # one generation batch with its groups
    for b in range(5):
        first = out[b * block * 2 : b * block * 2 + block]
        second = out[b * block * 2 + block : (b + 1) * block * 2]
        assert first == second  # the generation batch is repeated generate_every times
        groups = [first[i : i + 3] for i in range(0, block, 3)]
        assert all(len(set(g)) == 1 for g in groups)  # each index repeated num_generations in a row


def test_level_values_are_mapped_in_order():
    s = _sampler()
    assert s.level_values == [2, 3, 4, 5]
    assert s.level_index == {2: 0, 3: 1, 4: 2, 5: 3}


def test_level_frequencies_follow_probabilities():
    levels = _levels(per_level=50, values=(0, 1, 2, 3))
    sched = make_scheduler("cosine", 4, 100)  # p = [0.4, 0.3, 0.2, 0.1] at step 0
    s = TaskSampler(levels, sched, batch_size=64, num_batches=200, seed=123)
    counts = np.zeros(4)
    for _ in range(200):
        s.batches_drawn = 0  # stay at step 0, where the probabilities are known
        batch = s.draw_batch()
        for idx in batch:
            counts[levels[idx]] += 1
    expected = np.array([0.4, 0.3, 0.2, 0.1]) * counts.sum()
    assert chisquare(counts, expected).pvalue > 0.01
    # The same counts are far from uniform: the test can tell distributions apart.
    assert chisquare(counts, np.full(4, counts.sum() / 4)).pvalue < 1e-6


def test_probabilities_are_asked_when_the_batch_is_drawn():
    levels = _levels(per_level=20, values=(0, 1, 2, 3))
    s = TaskSampler(levels, make_scheduler("classic", 4, 8), batch_size=5, num_batches=8)
    it = iter(s)
    seen = [levels[next(it)] for _ in range(40)]
    # classic with T=8, K=4: batches 0,1 -> level 0; 2,3 -> 1; 4,5 -> 2; 6,7 -> 3.
    assert seen == [lv for lv in (0, 0, 1, 1, 2, 2, 3, 3) for _ in range(5)]


def test_exhausted_bucket_is_reshuffled_with_a_new_permutation():
    levels = [0] * 8 + [1] * 8
    s = TaskSampler(levels, make_scheduler("classic", 2, 1000), batch_size=8, num_batches=6, seed=3)
    batches = [s.draw_batch() for _ in range(6)]
    for b in batches:
        assert sorted(b) == list(range(8))  # each pass covers the level exactly once
    assert len({tuple(b) for b in batches}) > 1  # not the same order replayed
    assert s.state_dict()["reshuffles"][0] == 5


def test_same_seed_same_stream_different_seed_differs():
    a, b, c = _sampler(seed=11), _sampler(seed=11), _sampler(seed=12)
    la, lb, lc = list(a), list(b), list(c)
    assert la == lb
    assert la != lc


def test_state_dict_round_trip_continues_the_stream():
    a = _sampler(seed=5)
    for _ in range(3):
        a.draw_batch()
    b = _sampler(seed=99)
    b.load_state_dict(a.state_dict())
    assert [a.draw_batch() for _ in range(4)] == [b.draw_batch() for _ in range(4)]


def test_iteration_continues_step_count_across_passes():
    s = _sampler(num_batches=2)
    list(s)
    list(s)
    assert s.batches_drawn == 4


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"level_values": [2, 3, 4, 5, 6]}, "level 6 has no rows"),
        ({"level_values": [2, 3, 4]}, "rows have level 5"),
        ({"batch_size": 0}, "batch_size"),
        ({"num_generations": 0}, "num_generations"),
    ],
)
def test_bad_input_names_the_problem(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        _sampler(**kwargs)


def test_scheduler_level_count_must_match():
    with pytest.raises(ValueError, match="scheduler has 3 levels but the data has 4"):
        TaskSampler(_levels(), make_scheduler("balanced", 3, 10), batch_size=2)


def test_adaptive_feedback_changes_sampling():
    levels = _levels(per_level=30, values=(0, 1, 2))
    sched = make_scheduler("sec", 3, 100, num_generations=2, temperature=0.05, beta=0.0, min_prob=0.0)
    s = TaskSampler(levels, sched, batch_size=30, num_generations=2, num_batches=100, seed=0)
    for _ in range(3):
        sched.update(0, [0, 0, 1, 1, 2, 2], [1, 1, 1, 0, 0, 0])
    batch = s.draw_batch()
    counts = np.bincount([levels[i] for i in batch], minlength=3)
    assert counts[1] >= 28


def test_iter_is_lazy():
    s = _sampler(num_batches=3)
    it = iter(s)
    list(itertools.islice(it, 1))
    assert s.batches_drawn == 1


def test_resume_replays_batches_drawn_ahead_of_training():
    a = _sampler(seed=5)
    for _ in range(3):
        a.draw_batch()
    # Training consumed batches 0 and 1; batch 2 was prefetched.
    state = a.state_dict(next_batch=2)
    b = _sampler(seed=5)
    b.load_state_dict(state)
    c = _sampler(seed=5)
    expected = [c.draw_batch() for _ in range(6)][2:]
    assert [b.draw_batch() for _ in range(4)] == expected


def test_batches_are_drawn_at_the_step_the_geometry_gives():
    # Four generation batches per optimizer step (E2H: gradient accumulation 4, steps_per_generation 1).
    levels = _levels(per_level=20, values=(0, 1, 2, 3))
    s = TaskSampler(levels, make_scheduler("classic", 4, 4), batch_size=3, geometry=BatchGeometry(4, 1),
                    num_batches=16)
    drawn = [{levels[i] for i in s.draw_batch()} for _ in range(16)]
    assert drawn == [{g // 4} for g in range(16)]
    assert [s.draw_record(g)["step"] for g in range(8, 16)] == [g // 4 for g in range(8, 16)]


def test_resume_part_way_through_a_batch_yields_only_its_remaining_micro_steps():
    geometry = BatchGeometry(2, 3)  # a generation batch every 3 micro-steps, a step every 2
    a = _sampler(seed=7, geometry=geometry)
    stream = list(a)
    per_micro = 4 * 3  # prompts x generations yielded per micro-step
    # After 1 step (2 micro-steps) batch 0 has one micro-step left.
    batch, used = geometry.resume_point(1)
    assert (batch, used) == (0, 2)
    b = _sampler(seed=7, geometry=geometry)
    it = iter(b)
    list(itertools.islice(it, 2 * per_micro))
    c = _sampler(seed=7, geometry=geometry)
    c.load_state_dict(b.state_dict(batch, used))
    assert list(c)[: 4 * per_micro] == stream[2 * per_micro : 6 * per_micro]
