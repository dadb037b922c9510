"""The Experiments page's pure parts: seed-averaged curves with their 95% band, the summary table."""

from __future__ import annotations

import pytest

from dashboard.sweep_view import band_figure, seed_bands, summary_rows


def test_seed_bands_average_each_groups_runs_per_step_bin_with_a_t_interval() -> None:
    curves = [
        {"group": 0, "label": "a", "x": [10, 20], "y": [0.2, 0.4]},
        {"group": 0, "label": "a", "x": [10, 20], "y": [0.4, None]},
        {"group": 1, "label": "b", "x": [10], "y": [0.9]},
    ]
    a, b = seed_bands(curves, bins=2)  # bins of 11 steps: [0, 10] and [11, 21]
    assert a["x"] == [10, 20] and a["n"] == [2, 1]
    assert a["mean"] == pytest.approx([0.3, 0.4])
    # Two seeds: mean 0.3, sd 0.1414; half width t(1 df) 12.706205 x 0.1414 / sqrt 2 = 1.2706205
    assert a["lo"][0] == pytest.approx(0.3 - 1.2706205) and a["hi"][0] == pytest.approx(0.3 + 1.2706205)
    assert a["lo"][1] == a["hi"][1] == pytest.approx(0.4)  # one seed: no band
    assert (b["label"], b["mean"]) == ("b", [0.9])
    figure = band_figure([a, b], "t", "y")
    assert [t.mode for t in figure.data] == ["lines", "lines+markers", "lines", "lines+markers"]
    assert list(figure.data[0].y) == [*a["hi"], *reversed(a["lo"])]


def test_summary_rows_show_the_verdict_and_the_difference_to_the_baseline() -> None:
    summary = {
        "baseline": 0,
        "groups": [{"index": 0, "label": "a", "finished": 2}, {"index": 1, "label": "b", "finished": 1}],
        "cells": [{"group": 0, "level": "level_5", "metric": "accuracy", "n": 2, "mean": 0.5, "ci_low": 0.1,
                   "ci_high": 0.9, "verdict": "winner"},
                  {"group": 1, "level": "level_5", "metric": "accuracy", "n": 1, "mean": 0.2, "ci_low": None,
                   "ci_high": None, "verdict": "tied"}],
        "differences": [{"group": 1, "level": "level_5", "metric": "accuracy", "mean": -0.3, "ci_low": None,
                         "ci_high": None}],
    }
    a, b = summary_rows(summary, "level_5", "accuracy")
    assert (a["group"], a["verdict"], a["mean"], a["- baseline"]) == ("a", "winner", 0.5, None)
    assert (b["verdict"], b["seeds finished"], b["- baseline"]) == ("tied", 1, -0.3)
    assert summary_rows(summary, "level_4", "accuracy")[0]["verdict"] == ""
