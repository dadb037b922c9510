"""Where a training job's snapshots, evaluations and log lines go.

The trainer only knows the :class:`Reporter` interface. :class:`FileReporter` writes the
output dir's ``snapshots.jsonl`` and ``evals.jsonl``; the worker wraps it to forward the
same records to the server, without the trainer knowing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

SNAPSHOTS_FILE = "snapshots.jsonl"
EVALS_FILE = "evals.jsonl"


class Reporter(Protocol):
    def snapshot(self, record: dict) -> None: ...

    def eval(self, record: dict) -> None: ...

    def log(self, line: str) -> None: ...


class FileReporter:
    """Append records as JSON lines; a resumed run appends after what is already there."""

    def __init__(self, output_dir: str | Path):
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)

    def _append(self, name: str, record: dict) -> None:
        with open(self.output_dir / name, "a") as f:
            f.write(json.dumps(record) + "\n")

    def snapshot(self, record: dict) -> None:
        self._append(SNAPSHOTS_FILE, record)

    def eval(self, record: dict) -> None:
        self._append(EVALS_FILE, record)

    def log(self, line: str) -> None:
        """Log lines already go to train.log through logging; nothing more to do here."""


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_after_step(path: str | Path, step: int) -> None:
    """Drop records past ``step``: a resumed run redoes those steps and must not repeat them."""
    path = Path(path)
    if not path.is_file():
        return
    kept = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))
