"""A run's output directory (DESIGN.md section 7): every file's name, and reading and writing them. No torch.

One owner for the output-dir contract: the trainer writes these files, the worker ships them,
benchmarks and scripts read them, and they all name them through this module.

    config.json           the run's RunConfig (one config file per run; the worker writes it, training
                          rewrites it validated)
    snapshots.jsonl       one curriculum snapshot per logged step (rank 0)
    snapshots.rank<N>.jsonl  what rank N trained on (several processes; merged by nobody, read by tests)
    evals.jsonl           periodic ("eval") and final ("test") evaluations
    completions.jsonl     a bounded sample of each logged step's completions per level, one per line
                          (rank 0; e2h.trainer.CompletionSampleCallback, e2h.schemas.CompletionIn)
    test_results.json     the final test, E2H's format: its presence means training finished
    train.log             the training process's log
    vllm.log              the managed vLLM server's log (vllm_mode=server)
    STOP                  touched by the worker: checkpoint and stop at the next step
    checkpoint-*/         TRL checkpoints, each with curriculum_state.json
    final/                the final model (or LoRA adapter)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.json"
SNAPSHOTS_FILE = "snapshots.jsonl"
EVALS_FILE = "evals.jsonl"
COMPLETIONS_FILE = "completions.jsonl"
TEST_RESULTS_FILE = "test_results.json"
LOG_FILE = "train.log"
VLLM_LOG_FILE = "vllm.log"
STOP_FILE = "STOP"
CURRICULUM_STATE_FILE = "curriculum_state.json"
FINAL_DIR = "final"
# A resumed run redoes the steps after its checkpoint: these files are cut back to it.
STEP_RECORD_FILES = (SNAPSHOTS_FILE, EVALS_FILE, COMPLETIONS_FILE)


def rank_snapshots_file(rank: int) -> str:
    return f"snapshots.rank{rank}.jsonl"


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def truncate_after_step(path: str | Path, step: int) -> None:
    """Drop records past ``step``: a resumed run redoes those steps and must not repeat them."""
    path = Path(path)
    if not path.is_file():
        return
    kept = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))


class FileReporter:
    """Where the trainer's records go: appended to the output dir's ``snapshots.jsonl``,
    ``evals.jsonl`` and ``completions.jsonl`` (a resumed run appends after what is already there).
    The worker's shipper tails the same files to the server, without the trainer knowing."""

    def __init__(self, output_dir: str | Path):
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)

    def snapshot(self, record: dict) -> None:
        append_jsonl(self.output_dir / SNAPSHOTS_FILE, record)

    def eval(self, record: dict) -> None:
        append_jsonl(self.output_dir / EVALS_FILE, record)

    def completions(self, records: list[dict]) -> None:
        """One logged step's sample of completions, one line each (the worker ships them in batches)."""
        if records:
            with open(self.output_dir / COMPLETIONS_FILE, "a") as f:
                f.write("".join(json.dumps(r) + "\n" for r in records))


def read_completions(output_dir: str | Path, step: int | None = None) -> list[dict]:
    """The sampled completions in an output dir (all steps, or one)."""
    records = read_jsonl(Path(output_dir) / COMPLETIONS_FILE)
    return records if step is None else [r for r in records if r.get("step") == step]
