"""Child processes that never outlive whoever started them, and the signals that stop our launchers."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

# What `e2h up`, `e2h dashboard` and `e2h worker` stop on; SIGHUP: the terminal was closed.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def die_with_parent(signum: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel send ``signum`` to the child when its parent dies,
    even by SIGKILL (Linux's PR_SET_PDEATHSIG); None elsewhere, where there is no such thing.

    The child gets it when the thread that started it ends: start children from the main thread.
    """
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()

    def set_pdeathsig() -> None:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum)
        if os.getppid() != parent:  # the parent died before the line above ran
            os.kill(os.getpid(), signum)

    return set_pdeathsig
