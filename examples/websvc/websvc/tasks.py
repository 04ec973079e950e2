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
import time
from collections.abc import Iterator
from typing import Any

# Request latency buckets (seconds) of the websvc_request_duration_seconds histogram.
BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                              1.0, 2.5, 5.0, 10.0)
QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.99)


def inject(fault: str | None) -> None:
    """A fault asked for with POST /debug/fault, at the start of a task run."""
    if fault == "exit":
        os._exit(70)
    if fault == "segv":
        ctypes.string_at(0)  # a real SIGSEGV
    if fault == "raise":
        raise RuntimeError("fault injected into the task")
    if fault == "hang":
        time.sleep(3600)  # the orbit's timeout kills it


def watchdog(inflight: dict[int, tuple[str, float, int]], now: float, stuck_after: float,
             fault: str | None = None) -> Iterator[dict[str, Any]]:
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
            load: int = 0, fault: str | None = None) -> Iterator[dict[str, Any]]:
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
           fault: str | None = None) -> Iterator[list[str]]:
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
