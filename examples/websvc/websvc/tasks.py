"""The auxiliary tasks: plain functions over the arena tables.

Each is a generator of reports; the runner (runners.py) runs it in an orbit,
where every report is sent back with ``orbitpy.push``, or in a thread of the
service.  They only read the tables: what they find, main applies.
"""

from __future__ import annotations

import bisect
import ctypes
import os
import random
import sys
import time
from collections.abc import Iterator
from typing import Any

# Request latency buckets (seconds) of the websvc_request_duration_seconds histogram.
BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                              1.0, 2.5, 5.0, 10.0)
QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.99)


# The fault kinds POST /debug/fault can inject (the six of the key-value
# issue, plus os._exit):
#   segv    a NULL read through ctypes (SIGSEGV)
#   abort   os.abort() (SIGABRT)
#   hang    an endless busy loop (the orbit's timeout kills it)
#   memory  runaway allocation: 64 MiB blocks kept until MemoryError (in an
#           orbit: at its memory_limit) or until `memory_cap` bytes are held
#           (in a thread there is no limit but the machine's: the cap stands
#           for it, and what was taken stays taken, a leak)
#   raise   an exception
#   exit    sys.exit(3)
#   osexit  os._exit(70) (the process ends at once, no cleanup)
FAULT_KINDS: tuple[str, ...] = ("segv", "abort", "hang", "memory", "raise", "exit", "osexit")
MEMORY_BLOCK = 64 << 20
_held: list[bytes] = []  # what the "memory" fault took (in the process it ran in)


def runaway_memory(cap: int) -> int:
    """Allocate and touch MEMORY_BLOCK blocks, keeping them, until
    MemoryError or `cap` bytes held; the bytes held."""
    while len(_held) * MEMORY_BLOCK < cap:
        _held.append(b"\x01" * MEMORY_BLOCK)  # written, so resident: not just reserved
    return len(_held) * MEMORY_BLOCK


# A fault for a task's next run: (kind, memory cap in bytes for "memory").
Fault = tuple[str, int]


def inject(fault: Fault | None) -> None:
    """A fault asked for with POST /debug/fault, at the start of a task run."""
    if fault is None:
        return
    kind, memory_cap = fault
    if kind == "segv":
        ctypes.string_at(0)  # a real SIGSEGV
    elif kind == "abort":
        os.abort()
    elif kind == "hang":
        while True:  # busy: in a thread it takes its share of the GIL for ever
            pass
    elif kind == "memory":
        runaway_memory(memory_cap)
    elif kind == "raise":
        raise RuntimeError("fault injected into the task")
    elif kind == "exit":
        sys.exit(3)
    elif kind == "osexit":
        os._exit(70)
    else:
        raise ValueError(f"unknown fault kind {kind!r}")


def watchdog(inflight: dict[int, tuple[str, float, int]], now: float, stuck_after: float,
             fault: Fault | None = None) -> Iterator[dict[str, Any]]:
    """The requests in flight for longer than `stuck_after` seconds, oldest
    first, with a diagnosis."""
    inject(fault)
    stuck = [(started, rid, handler, worker)
             for rid, (handler, started, worker) in inflight.items()
             if now - started > stuck_after]
    stuck.sort()
    for started, rid, handler, worker in stuck:
        age = now - started
        yield {"request": rid, "handler": handler, "worker": worker, "since": started,
               "seconds": round(age, 3),
               "diagnosis": f"{handler} in worker {worker} has run {age:.1f} s "
                            f"(since {time.strftime('%H:%M:%S', time.localtime(started))}), "
                            f"over the {stuck_after:g} s threshold"}


def _quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    i = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return sorted_values[i]


def metrics(ring: list[tuple[int, str, int, float, float] | None], head: int, seen: int,
            load: int = 0, fault: Fault | None = None) -> Iterator[dict[str, Any]]:
    """Per route: bucket counts of the records newer than seq `seen` (main
    adds them up into its histograms), and latency quantiles over every
    record in the ring.  `load`: synthetic records added to the quantile
    computation, to make the task as heavy as one over a big history."""
    inject(fault)
    size = len(ring)
    new: dict[str, list[int]] = {}
    sums: dict[str, float] = {}
    durations: dict[str, list[float]] = {}
    lost = max(0, head - seen - size)
    for rec in ring:
        if rec is None:
            continue
        seq, route, _status, seconds, _ended = rec
        if seq > head:
            continue  # stored after main read `head` (see runners._await_orbit): next run's
        durations.setdefault(route, []).append(seconds)
        if seq > seen:
            counts = new.get(route)
            if counts is None:
                counts = new[route] = [0] * (len(BUCKETS) + 1)
                sums[route] = 0.0
            counts[bisect.bisect_left(BUCKETS, seconds)] += 1
            sums[route] += seconds
    if load:
        rng = random.Random(head)
        durations.setdefault("synthetic", []).extend(
            rng.expovariate(200.0) for _ in range(load))
    quantiles = {}
    for route, values in durations.items():
        values.sort()
        quantiles[route] = [_quantile(values, q) for q in QUANTILES]
    yield {"head": head, "lost": lost, "new": new, "sums": sums, "quantiles": quantiles,
           "window": {route: len(v) for route, v in durations.items()}}


def expiry(sessions: dict[str, dict[str, Any]], now: float,
           fault: Fault | None = None) -> Iterator[list[str]]:
    """The ids of expired sessions, in batches."""
    inject(fault)
    batch: list[str] = []
    for sid, session in sessions.items():
        if session["expires"] < now:
            batch.append(str(sid))
            if len(batch) == 500:
                yield batch
                batch = []
    if batch:
        yield batch
