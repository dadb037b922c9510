"""build_dataset: unique questions, prompts, and train/test splits that never share a question."""

from __future__ import annotations

import logging

import pytest

from e2h.tasks import ASSISTANT_PREFIX, build_dataset, get_task
from e2h.tasks.data import in_test_partition
from tests.tasks.tasks_helpers import GENERATED_TASKS


def keys(task, rows):
    return [task.question_key(r) for r in rows]


@pytest.mark.parametrize("name", GENERATED_TASKS)
def test_splits_are_disjoint_unique_and_prompted(name):
    task = get_task(name)
    data = build_dataset(task, train_size=40, test_size=10, seed=0)
    assert data.train_levels == data.level_values == task.levels
    assert data.test_levels == task.test_levels
    train_keys, test_keys = keys(task, data.train), keys(task, data.test)
    assert len(set(train_keys)) == len(train_keys) and len(set(test_keys)) == len(test_keys)
    assert not set(train_keys) & set(test_keys)
    assert not {r["question"] for r in data.train} & {r["question"] for r in data.test}
    assert {r["level"] for r in data.train} == set(task.levels)
    assert {r["level"] for r in data.test} == set(task.test_levels)
    assert all(r["prompt"].endswith(ASSISTANT_PREFIX) for r in data.train + data.test)
    assert data["train"] is data.train and data["test"] is data.test


@pytest.mark.parametrize("name", GENERATED_TASKS)
def test_a_test_question_never_trains_whatever_the_seed(name):
    task = get_task(name)
    test = build_dataset(task, train_size=1, test_size=30, seed=0).test
    for seed in (1, 2, 3):
        train = build_dataset(task, train_size=60, test_size=0, seed=seed).train
        assert not set(keys(task, train)) & set(keys(task, test)), seed


def test_sizes_and_determinism():
    task = get_task("countdown")
    data = build_dataset(task, train_size=30, test_size=7, seed=5)
    assert [sum(r["level"] == lv for r in data.train) for lv in task.levels] == [30] * 4
    assert [sum(r["level"] == lv for r in data.test) for lv in task.test_levels] == [7] * 5
    again = build_dataset(task, train_size=30, test_size=7, seed=5)
    assert again.train == data.train and again.test == data.test
    assert build_dataset(task, train_size=30, test_size=7, seed=6).train != data.train


def test_a_small_question_space_is_shared_out_not_overlapped(caplog):
    task = get_task("arithmetic")  # level 0: a+b with one digit each, 100 questions
    with caplog.at_level(logging.WARNING, logger="e2h.tasks.data"):
        data = build_dataset(task, train_levels=[0], test_levels=[0], train_size=1000, test_size=1000, seed=0)
    train, test = set(keys(task, data.train)), set(keys(task, data.test))
    assert train and test and not train & test
    assert len(train | test) == 100  # every question is used, once
    assert all(in_test_partition(k, 0.1) for k in test) and not any(in_test_partition(k, 0.1) for k in train)
    assert "only" in caplog.text and "level 0" in caplog.text


def test_held_out_levels_only_in_test():
    task = get_task("blocksworld")
    data = build_dataset(task, train_size=5, test_size=5, seed=0)
    assert 8 not in {r["level"] for r in data.train} and 8 in {r["level"] for r in data.test}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"train_levels": [2, 9]}, "unknown level 9 for task 'countdown'"),
        ({"test_levels": [1]}, "unknown level 1"),
        ({"train_levels": []}, "train_levels must not be empty"),
        ({"train_levels": [2, 2]}, "duplicates"),
        ({"train_size": -1}, "train_size must be an integer >= 0"),
        ({"test_fraction": 1.5}, "test_fraction must be between 0 and 1"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_dataset(get_task("countdown"), **kwargs)


def test_rows_convert_to_a_datasets_dict():
    pytest.importorskip("datasets")
    for name in ("blocksworld", "coding"):
        hf = build_dataset(get_task(name), train_size=5, test_size=2, seed=0).to_hf()
        assert hf["train"].num_rows == 5 * len(get_task(name).levels)
        assert {"prompt", "question", "answer", "solution", "level"} <= set(hf["train"].column_names)
