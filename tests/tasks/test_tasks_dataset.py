"""The dataset task: a user's question/answer/level rows from local files or a datasets path."""

from __future__ import annotations

import csv
import json

import pytest

from e2h.tasks import build_dataset, get_task
from e2h.tasks.dataset import answers_match
from tests.tasks.tasks_helpers import completion

ROWS = [
    {"question": f"Q{level}-{i}?", "answer": str(10 * level + i), "level": level}
    for level in (1, 2, 3)
    for i in range(20)
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def jsonl(tmp_path):
    return write_jsonl(tmp_path / "data.jsonl", ROWS)


def test_jsonl_rows_levels_and_rewards(jsonl):
    task = get_task("dataset", path=jsonl)
    assert task.levels == [1, 2, 3] and task.heldout_levels == []
    rows = task.generate(2, 5, seed=0)
    assert len(rows) == 5 and all(r["level"] == 2 and r["solution"] == r["answer"] for r in rows)
    assert task.generate(2, 5, seed=0) == rows and task.generate(2, 5, seed=1) != rows
    assert len(task.generate(2, 1000, seed=0)) == 20  # capped at what exists
    comps = [completion(r["answer"]) for r in rows] + [completion("nope"), "no format " + rows[0]["answer"]]
    answers = [r["answer"] for r in rows] + [rows[0]["answer"]] * 2
    assert task.reward(comps, answer=answers) == [1.0] * 5 + [0.1, 0.0]


def test_levels_and_heldout_levels_are_checked(jsonl):
    task = get_task("dataset", path=jsonl, levels=[1, 2], heldout_levels=[3])
    assert task.levels == [1, 2] and task.test_levels == [1, 2, 3]
    with pytest.raises(ValueError, match="unknown level 7"):
        get_task("dataset", path=jsonl, levels=[1, 7])
    with pytest.raises(ValueError, match="unknown level 4"):
        task.generate(4, 1, seed=0)


def test_max_rows_per_level_caps_each_level(jsonl):
    task = get_task("dataset", path=jsonl, max_rows_per_level=3)
    assert [len(task.generate(lv, 100, seed=0)) for lv in task.levels] == [3, 3, 3]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"question": "q", "answer": "1"}], "no 'level' column"),
        ([{"question": "q", "level": 1}], "no 'answer' column"),
        ([{"prompt": "q", "answer": "1", "level": 1}], "no 'question' column"),
        ([{"question": "q", "answer": "1", "level": "hard"}], "row 0: level must be an integer, got a str"),
        ([], "has no rows"),
    ],
)
def test_bad_data_fails_naming_what_is_wrong(tmp_path, rows, message):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(ValueError, match=message):
        get_task("dataset", path=path)


def test_missing_path_and_files_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="needs path"):
        get_task("dataset")
    with pytest.raises(ValueError, match="does not exist"):
        get_task("dataset", path=str(tmp_path / "missing.jsonl"))
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(ValueError, match="use .jsonl, .json, .csv or .parquet"):
        get_task("dataset", path=str(tmp_path / "data.txt"))


def test_csv_with_a_builtin_scorer(tmp_path):
    countdown = get_task("countdown")
    rows = countdown.generate(3, 10, seed=0)
    path = tmp_path / "countdown.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["question", "answer", "level", "numbers", "target"])
        writer.writeheader()
        for r in rows:
            writer.writerow(
                {
                    **{k: r[k] for k in ("question", "answer", "level", "target")},
                    "numbers": json.dumps(r["numbers"]),
                }
            )
    task = get_task("dataset", path=str(path), scorer="countdown")
    loaded = task.generate(3, 10, seed=0)
    assert all(isinstance(r["numbers"], list) for r in loaded)
    by_question = {r["question"]: r for r in rows}
    cols = {
        "answer": [r["answer"] for r in loaded],
        "numbers": [r["numbers"] for r in loaded],
        "target": [r["target"] for r in loaded],
    }
    gold = [completion(by_question[r["question"]]["solution"]) for r in loaded]
    assert task.reward(gold, **cols) == [1.0] * 10
    with pytest.raises(ValueError, match="numbers"):
        task.reward(gold, answer=cols["answer"])


def test_parquet(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    path = tmp_path / "data.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    task = get_task("dataset", path=str(path))
    assert task.levels == [1, 2, 3] and len(task.generate(1, 100, seed=0)) == 20


def test_save_to_disk_with_a_test_split(tmp_path):
    datasets = pytest.importorskip("datasets")
    train = [r for r in ROWS if r["level"] < 3]
    test = [{**r, "question": "T" + r["question"]} for r in ROWS] + [ROWS[0]]  # one test question also trains
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(train), "test": datasets.Dataset.from_list(test)}
    ).save_to_disk(str(tmp_path / "saved"))
    task = get_task("dataset", path=str(tmp_path / "saved"), test_split="test", heldout_levels=[3])
    assert task.levels == [1, 2] and task.heldout_levels == [3]
    data = build_dataset(task, train_size=100, test_size=100, seed=0)
    train_q, test_q = {r["question"] for r in data.train}, {r["question"] for r in data.test}
    assert len(train_q) == 40 and not train_q & test_q
    assert ROWS[0]["question"] in train_q and len(test_q) == 60  # the shared question is dropped from test
    with pytest.raises(ValueError, match="split 'validation' not in"):
        get_task("dataset", path=str(tmp_path / "saved"), split="validation")


def test_load_dataset_path_with_data_files(tmp_path):
    pytest.importorskip("datasets")
    path = write_jsonl(tmp_path / "data.jsonl", ROWS)
    task = get_task("dataset", path="json", data_files=path)  # datasets.load_dataset("json", data_files=...)
    assert task.levels == [1, 2, 3] and len(task.generate(3, 100, seed=0)) == 20


def test_build_dataset_partitions_a_single_split(jsonl):
    task = get_task("dataset", path=jsonl)
    data = build_dataset(task, train_size=100, test_size=100, seed=0)
    train_q, test_q = {r["question"] for r in data.train}, {r["question"] for r in data.test}
    assert not train_q & test_q and len(train_q | test_q) == 60
    assert all(r["prompt"].endswith("<think>") for r in data.train + data.test)


def test_an_empty_test_level_fails_naming_it(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(ROWS), "test": datasets.Dataset.from_list(ROWS[:20])}
    ).save_to_disk(str(tmp_path / "saved"))
    task = get_task("dataset", path=str(tmp_path / "saved"), test_split="test", levels=[1, 2])
    with pytest.raises(ValueError, match="level 1 has no test questions"):
        build_dataset(task, test_levels=[1])  # every test question of level 1 is also a training question
    with pytest.raises(ValueError, match="has no rows of level 3"):
        get_task(
            "dataset", path=str(tmp_path / "saved"), test_split="test", levels=[1, 2], heldout_levels=[3]
        )


@pytest.mark.parametrize(
    ("predicted", "gold", "same"),
    [
        ("42", "42", True),
        ("42.0", "42", True),
        ("1,000", "1000", True),
        ("0.75", "3/4", True),
        ("-2", "-2.00", True),
        ("$5$", "5", True),
        ("Paris.", "paris", True),
        ("  New   York ", "new york", True),
        ("43", "42", False),
        ("4/0", "4", False),
        ("Paris", "Lyon", False),
        ("1,00", "100", False),
    ],
)
def test_answers_match(predicted, gold, same):
    assert answers_match(predicted, gold) is same
