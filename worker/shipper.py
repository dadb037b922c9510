"""Ship a run's spool files to the server: snapshots, evals, sampled completions and log lines.

The training child appends to ``snapshots.jsonl``, ``evals.jsonl``, ``completions.jsonl`` and
``train.log`` in its output dir; those files are the spool. The shipper tails them by byte offset and
posts new records in batches, retrying with exponential backoff while the server is
away, so training never waits on the network and nothing is lost: a record leaves the
spool's unsent part only after the server acknowledged it. Replays are safe because the
server ignores snapshots, evals and completions it already has (idempotent on run and step).
Everything goes out through the worker's client, which redacts the worker's secrets from
every body it posts (``worker.main.RedactingClient``), log lines included.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from e2h.client import Client
from e2h.outputs import COMPLETIONS_FILE, EVALS_FILE, LOG_FILE, SNAPSHOTS_FILE

logger = logging.getLogger(__name__)

MAX_BATCH = 500
MAX_LINE = 4000
# A completion line carries two texts of up to e2h.schemas.COMPLETION_TEXT_CHARS characters (up to six
# bytes each as JSON escapes): fewer per post keeps a batch far below the server's body limit.
BATCH = {COMPLETIONS_FILE: 50}


@dataclass
class _Tail:
    """Complete lines appended to a file since the last acknowledged offset."""

    path: Path
    offset: int = 0
    inode: int | None = None

    def read(self, limit: int) -> tuple[list[str], int]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return [], self.offset
        if self.inode is not None and (st.st_ino != self.inode or st.st_size < self.offset):
            # Rewritten (a resumed run trims records past its checkpoint): start over; the
            # server drops what it already has.
            self.offset = 0
        self.inode = st.st_ino
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(4 << 20)
        end = data.rfind(b"\n")
        if end < 0:
            return [], self.offset
        lines = data[: end + 1].split(b"\n")[:-1][:limit]
        consumed = sum(len(line) + 1 for line in lines)
        return [line.decode("utf-8", "replace") for line in lines], self.offset + consumed


@dataclass
class Shipper:
    """Send what the spool holds for one run attempt; call :meth:`ship` repeatedly."""

    client: Client
    run_id: int
    worker_id: str
    attempt: int
    output_dir: Path
    last_step: int = 0
    _tails: dict[str, _Tail] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._tails = {name: _Tail(Path(self.output_dir) / name)
                       for name in (SNAPSHOTS_FILE, EVALS_FILE, COMPLETIONS_FILE, LOG_FILE)}

    def ship(self) -> int:
        """Post everything new; returns how many records went out. Raises on server errors
        (the caller backs off and calls again: unacknowledged records are resent)."""
        sent = 0
        for name, tail in self._tails.items():
            while True:
                lines, new_offset = tail.read(BATCH.get(name, MAX_BATCH))
                if not lines:
                    break
                self._post(name, lines)
                tail.offset = new_offset
                sent += len(lines)
        return sent

    def _post(self, name: str, lines: list[str]) -> None:
        if name == LOG_FILE:
            clean = [_last_segment(line)[:MAX_LINE] for line in lines]
            clean = [line for line in clean if line.strip()]
            if clean:
                self.client.post_logs(self.run_id, clean, self.worker_id, self.attempt)
            return
        records = [json.loads(line) for line in lines if line.strip()]
        if name == SNAPSHOTS_FILE:
            self.client.post_snapshots(self.run_id, records, self.worker_id, self.attempt)
            self.last_step = max([self.last_step] + [r["step"] for r in records])
        elif name == COMPLETIONS_FILE:
            self.client.post_completions(self.run_id, records, self.worker_id, self.attempt)
        else:
            self.client.post_evals(self.run_id, records, self.worker_id, self.attempt)


def _last_segment(line: str) -> str:
    # Progress bars redraw with carriage returns; the last redraw is the one worth keeping.
    return line.rsplit("\r", 1)[-1].rstrip()
