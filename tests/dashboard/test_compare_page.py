"""Compare page (AppTest) against a real server: overlays of the hardest and held-out levels."""

from __future__ import annotations

import pytest

from dashboard import nav
from tests.dashboard.apptest import assert_clean, figures, open_page
from tests.dashboard.simulate import started_run

pytestmark = pytest.mark.slow

CONFIG = {"algorithm": {"max_steps": 150}, "task": {"test_levels": [0, 1, 2, 3, 4, 5]}}


@pytest.fixture(scope="module")
def compared(api, worker) -> list[dict]:
    vr, _ = started_run(api, worker, {**CONFIG, "scheduler": {"params": {"warmup_steps": 20}}}, steps=100)
    cosine, _ = started_run(api, worker, {**CONFIG, "scheduler": {"name": "cosine"}}, steps=150)
    worker.finish(cosine)
    return [vr, cosine]


def test_overlays_and_small_multiples(dashboard_env: str, compared: list[dict]) -> None:
    ids = [r["id"] for r in compared]
    at = open_page(nav.COMPARE, runs=",".join(map(str, ids)))
    assert at.title[0].value == "Compare runs"
    assert at.multiselect(key="compare.runs").value == ids
    figs = figures(at)
    hard = figs["Hardest training level: mean reward"]
    assert [t["name"] for t in hard["data"]] == [f"#{ids[0]} variance_regularized (level 4)",
                                                 f"#{ids[1]} cosine (level 4)"]
    assert hard["data"][0]["x"][-1] == 100 and hard["data"][1]["x"][-1] == 150
    held = figs["Held-out level: accuracy"]
    assert [t["name"] for t in held["data"]] == [f"#{ids[0]} variance_regularized (level 5)",
                                                 f"#{ids[1]} cosine (level 5)"]
    assert held["data"][1]["x"] == [50, 100, 150]
    assert len(figs["Hardest training level: accuracy"]["data"]) == 2
    multiples = figs["Probability evolution per run"]
    assert len(multiples["data"]) == 10  # 5 levels x 2 runs
    summary = at.dataframe[0].value
    assert list(summary["run"]) == ids and list(summary["step"]) == [100, 150]


def test_picking_runs(dashboard_env: str, compared: list[dict]) -> None:
    at = open_page(nav.COMPARE)
    assert "Pick the runs to compare." in at.info[0].value
    at.multiselect(key="compare.runs").set_value([compared[1]["id"]]).run()
    assert_clean(at)
    assert at.query_params["runs"] == str(compared[1]["id"])
    assert len(figures(at)["Probability evolution per run"]["data"]) == 5


def test_final_test_results_per_level_side_by_side(dashboard_env: str, api, worker, compared: list[dict]) -> None:
    finished, sim = started_run(api, worker, {**CONFIG, "scheduler": {"name": "gaussian"}}, steps=150)
    test = sim.evaluation([0, 1, 2, 3, 4], [5])
    worker.client.post_evals(finished["id"], [{**test, "name": "test"}], worker.worker_id, finished["attempt"])
    worker.finish(finished)
    ids = [compared[1]["id"], finished["id"]]
    at = open_page(nav.COMPARE, runs=",".join(map(str, ids)))
    table = next(d.value for d in at.dataframe if list(d.value.columns)[:1] == ["level"])
    assert list(table["level"]) == [*(f"level {i}" for i in range(5)), "level 5 (held-out)", "overall"]
    column = f"#{finished['id']} gaussian"
    assert list(table[column][:6]) == [test["results"][f"level_{i}"]["accuracy"] for i in range(6)]
    assert table[f"#{ids[0]} cosine"].isna().all()  # no final test: empty, not zero
    # Any level, not only the hardest: level 2's reward and accuracy, the test's point last.
    at.selectbox(key="compare.level").select(2).run()
    assert_clean(at)
    figs = figures(at)
    assert [t["name"] for t in figs["Level 2: mean reward"]["data"]] == [f"#{ids[0]} cosine (level 2)",
                                                                        f"{column} (level 2)"]
    acc = figs["Level 2: accuracy"]["data"][1]
    assert acc["x"][-1] == 150 and acc["y"][-1] == test["results"]["level_2"]["accuracy"]
