"""A checkpoint torn by a kill mid-save is skipped on resume, not resumed from.

Found by the worker-SIGKILL test: a worker killed while its training child was saving
checkpoint-15 left weights and optimizer state but no trainer or curriculum state; every
later attempt died resuming from it ("has no curriculum_state.json; cannot resume").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability.conftest import spool_steps, tiny_config
from tests.server.helpers import REPO

pytestmark = pytest.mark.slow

# What the torn checkpoint-15 lacked: everything the Trainer writes after the optimizer.
WRITTEN_AFTER_THE_OPTIMIZER = ("rng_state.pth", "scheduler.pt", "trainer_state.json", "curriculum_state.json")


def train(config_path: Path, output_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "e2h.train", "--config", str(config_path), "--output-dir",
                           str(output_dir)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_resume_skips_a_checkpoint_torn_by_a_kill_mid_save(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_config(4, save_steps=2)))
    out = tmp_path / "out"
    first = train(config, out)
    assert first.returncode == 0, first.stderr[-3000:]
    torn = out / "checkpoint-4"
    for name in WRITTEN_AFTER_THE_OPTIMIZER:
        (torn / name).unlink()
    (out / "test_results.json").unlink()

    again = train(config, out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"skipping {torn}: incomplete" in again.stderr
    assert f"resuming from {out / 'checkpoint-2'} (step 2)" in again.stderr
    assert spool_steps(out) == [1, 2, 3, 4], "steps 3 and 4 were redone once, not appended twice"
    assert (out / "test_results.json").is_file()
    assert (torn / "curriculum_state.json").is_file(), "the redone step 4 saved a complete checkpoint"
