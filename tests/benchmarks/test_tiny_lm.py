"""The tiny-LM curriculum benchmark end to end, shrunk: one schedule, one seed, two GRPO steps."""

import pytest

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


def test_merge_reruns_only_the_named_schedule_and_keeps_the_rest(tmp_path):
    path = tmp_path / "tiny_lm.csv"
    common = ["--seeds", "1", "--max-steps", "2", "--train-size", "16", "--test-size", "3",
              "--work-dir", str(tmp_path / "runs"), "--csv", str(path), "--no-doc"]
    main(["--schedulers", "sec,balanced", *common])
    before = read_csv(path)
    main(["--merge", "--schedulers", "sec", *common])
    after = read_csv(path)
    assert sorted(r["scheduler"] for r in after) == sorted([BASELINE, "balanced", "sec"])  # no second start point
    keep = {r["scheduler"]: r for r in before}
    again = {r["scheduler"]: r for r in after}
    for kept in (BASELINE, "balanced"):  # as written before (repr: the start point's NaN rewards compare equal)
        assert {k: repr(v) for k, v in again[kept].items()} == {k: repr(v) for k, v in keep[kept].items()}
    assert again["sec"]["wall_s"] > 0
    text = report(after, None, ["sec"])
    assert "rerun later with `--merge --schedulers sec`" in text
    with pytest.raises(SystemExit, match="made with"):
        main(["--merge", "--schedulers", "sec", *common[:2], "--max-steps", "3", *common[4:]])
