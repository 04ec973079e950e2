"""Faults injected into a task on request (``DEBUG TASKFAULT <task> <kind>``).

The task's next run gets the fault, wherever it runs: in an orbit the orbit
dies or fails and restarts while main keeps serving; inline or in a thread it
is the server that suffers (which is the comparison the issue asks for).
"""

from __future__ import annotations

import ctypes
import os
import sys
import time

KINDS = ("segfault", "abort", "exception", "exit", "hang")
TASKS = ("expiry", "slowlog", "bgsave")


class InjectedFault(RuntimeError):
    """The 'exception' fault."""


def inject(kind: str | None) -> None:
    if kind is None:
        return
    if kind == "segfault":
        ctypes.string_at(0)
    elif kind == "abort":
        os.abort()
    elif kind == "exception":
        raise InjectedFault("fault injected on request")
    elif kind == "exit":
        sys.exit(3)
    elif kind == "hang":
        while True:
            time.sleep(0.01)
