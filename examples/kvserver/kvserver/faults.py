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

KINDS = ("segfault", "abort", "hang", "memory", "exception", "exit")  # the order
TASKS = ("expiry", "slowlog", "bgsave")

# The "memory" fault: a runaway allocation.  It allocates MEMORY_BLOCK bytes
# at a time, each block written (so resident, not just reserved), and keeps
# every block for good (a leak), until an allocation fails or it holds
# MEMORY_CAP.  In an orbit the orbit's memory_limit (well below the cap) makes
# an allocation fail: MemoryError, the orbit exits and restarts.  In the
# server's own process (inline, thread, or a fork-BGSAVE child) nothing stops
# it before the cap: the process keeps MEMORY_CAP more than before and goes on.
# The cap is there to spare the machine, which other work shares; without it
# the fault would end in the kernel's OOM killer picking a victim.
MEMORY_CAP = 2 << 30
MEMORY_BLOCK = 1 << 20
_leaked: list[bytes] = []


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
    elif kind == "memory":
        for _ in range(MEMORY_CAP // MEMORY_BLOCK):
            _leaked.append(b"\xa5" * MEMORY_BLOCK)  # MemoryError past a memory_limit
