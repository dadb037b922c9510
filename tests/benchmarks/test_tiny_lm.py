"""The tiny-LM curriculum benchmark end to end, shrunk: one schedule, one seed, two GRPO steps."""

import itertools

import pytest

from benchmarks.curriculum import tiny_lm
from benchmarks.curriculum.tiny_lm import BASELINE, FIELDS, LEVELS, main, read_csv, report

pytestmark = pytest.mark.slow


def test_one_short_run_writes_a_full_csv_row(tmp_path):
    path = tmp_path / "tiny_lm.csv"
    main(["--schedulers", "sec", "--seeds", "1", "--max-steps", "2", "--train-size", "16", "--test-size", "3",
          "--work-dir", str(tmp_path / "runs"), "--csv", str(path), "--no-doc"])
    rows = read_csv(path)
    assert [(r["scheduler"], r["seed"], r["max_steps"]) for r in rows] == [(BASELINE, 0, 0), ("sec", 0, 2)]
    for row in rows:
        assert list(row) == FIELDS
        for lv in LEVELS:  # every level evaluated, held-out level 5 included
            assert 1 <= row[f"level_{lv}_support"] <= 3
            assert 0 <= row[f"level_{lv}_accuracy"] <= 1
            assert 0 <= row[f"level_{lv}_reward_mean"] <= 1
            assert -1e-6 <= row[f"level_{lv}_format_rate"] <= 1 + 1e-6
        assert row["overall_support"] == sum(row[f"level_{lv}_support"] for lv in LEVELS)
    assert rows[0]["level_5_support"] == rows[1]["level_5_support"]  # the start point sees the same test rows
    assert abs(sum(rows[1][f"share_level_{lv}"] for lv in range(5)) - 1) < 1e-6
    text = report(rows, None)
    assert "| sec |" in text and f"| {BASELINE} |" in text


def _stub_runs(monkeypatch, calls):
    """Replace training and the start-point evaluation by rows that record who made them."""

    made = itertools.count(1)

    def row(scheduler, seed, steps, args):
        r = {k: 0.5 for k in FIELDS}
        r.update(scheduler=scheduler, seed=seed, max_steps=steps, train_size_per_level=args.train_size,
                 test_size_per_level=args.test_size, wall_s=float(next(made)))  # tells rows apart
        calls.append((scheduler, seed))
        return r

    monkeypatch.setattr(tiny_lm, "train_one", lambda s, seed, args: row(s, seed, args.max_steps, args))
    monkeypatch.setattr(tiny_lm, "baseline_one", lambda seed, args: row(BASELINE, seed, 0, args))


def test_merge_reruns_only_the_named_schedules_and_keeps_the_rest(tmp_path, monkeypatch):
    calls: list = []
    _stub_runs(monkeypatch, calls)
    path = tmp_path / "tiny_lm.csv"
    common = ["--max-steps", "2", "--train-size", "16", "--test-size", "3", "--csv", str(path), "--no-doc"]
    main(["--schedulers", "sec,balanced", "--seeds", "2", *common])
    before = {(r["scheduler"], r["seed"]): r for r in read_csv(path)}
    calls.clear()
    main(["--merge", "--schedulers", "sec (hardness_power=2),sec", "--seeds", "2", *common])
    assert calls == [("sec (hardness_power=2)", 0), ("sec", 0), ("sec (hardness_power=2)", 1), ("sec", 1)]
    after = {(r["scheduler"], r["seed"]): r for r in read_csv(path)}
    assert sorted(after) == sorted([(s, seed) for s in (BASELINE, "balanced", "sec", "sec (hardness_power=2)")
                                    for seed in (0, 1)])
    for key in [(BASELINE, 0), (BASELINE, 1), ("balanced", 0), ("balanced", 1)]:  # kept as written
        assert after[key]["wall_s"] == before[key]["wall_s"]
    assert after["sec", 0]["wall_s"] != before["sec", 0]["wall_s"]  # rerun
    assert "rerun later with `--merge --schedulers sec (hardness_power=2),sec`" in report(
        read_csv(path), None, ["sec (hardness_power=2)", "sec"])


def test_merge_refuses_csvs_that_would_pair_the_wrong_rows(tmp_path, monkeypatch):
    _stub_runs(monkeypatch, [])
    path = tmp_path / "tiny_lm.csv"
    common = ["--train-size", "16", "--test-size", "3", "--csv", str(path), "--no-doc"]
    main(["--schedulers", "balanced", "--seeds", "2", "--max-steps", "2", *common])
    written = path.read_text()
    for argv, message in [
        (["--seeds", "3", "--max-steps", "2"], r"seeds \[0, 1\] of 'balanced'"),  # a kept schedule lacks seed 2
        (["--seeds", "1", "--max-steps", "2"], r"seeds \[0, 1\] of"),  # seed 1 would be dropped
        (["--seeds", "2", "--max-steps", "3"], "made with"),  # another budget
    ]:
        with pytest.raises(SystemExit, match=message):
            main(["--merge", "--schedulers", "sec", *argv, *common])
        assert path.read_text() == written  # nothing overwritten
    with pytest.raises(SystemExit, match="made with"):  # start points of another test size
        main(["--merge", "--schedulers", "balanced", "--seeds", "2", "--max-steps", "2",
              "--train-size", "16", "--test-size", "4", "--csv", str(path), "--no-doc"])
    rows = read_csv(path)
    with pytest.raises(ValueError, match="pair wrong seeds"):
        report([r for r in rows if not (r["scheduler"] == "balanced" and r["seed"] == 1)], None)
