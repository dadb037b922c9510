"""Wakes SSE streams when this process writes something about a run.

Writes happen in worker threads, streams wait on the event loop: ``notify`` may be called
from any thread. Streams also re-read the database every few tenths of a second, which
covers writes made by other server processes (several servers on one PostgreSQL).
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict


class Notifier:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: defaultdict[int, int] = defaultdict(int)
        self._waiters: defaultdict[int, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = defaultdict(set)

    def version(self, run_id: int) -> int:
        with self._lock:
            return self._versions[run_id]

    def notify(self, *run_ids: int) -> None:
        with self._lock:
            for run_id in run_ids:
                self._versions[run_id] += 1
                for loop, event in self._waiters.get(run_id, ()):
                    loop.call_soon_threadsafe(event.set)

    async def wait(self, run_id: int, seen_version: int, timeout: float) -> None:
        """Return when ``run_id`` changed after ``seen_version`` was read, or after ``timeout``."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            if self._versions[run_id] != seen_version:
                return
            self._waiters[run_id].add(waiter)
        try:
            await asyncio.wait_for(waiter[1].wait(), timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters[run_id].discard(waiter)
                if not self._waiters[run_id]:
                    del self._waiters[run_id]
