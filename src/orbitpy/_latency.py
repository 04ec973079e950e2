"""Call latency of an orbit, as main sees it: a fixed-bucket histogram of the
time from issuing a call to main taking its answer (or its failure)."""

from __future__ import annotations

import bisect
import threading
from typing import NamedTuple

# Upper bounds (seconds) of the buckets; a last, unbounded bucket follows.
# From a fast call on an idle machine (~100 us) to a call near a typical
# timeout.
BUCKETS: tuple[float, ...] = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                              0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LatencySnapshot(NamedTuple):
    """Counts per bucket (not cumulative; the last is past BUCKETS[-1]),
    the sum of the observed durations and their number (calls)."""
    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    sum: float
    calls: int


class CallLatency:
    """A histogram of call durations.  observe() costs a bisect and a lock
    (threads may finish calls of one orbit at the same time)."""

    __slots__ = ("_counts", "_sum", "_lock")

    def __init__(self) -> None:
        self._counts = [0] * (len(BUCKETS) + 1)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        i = bisect.bisect_left(BUCKETS, seconds)
        with self._lock:
            self._counts[i] += 1
            self._sum += seconds

    def snapshot(self) -> LatencySnapshot:
        with self._lock:
            counts = tuple(self._counts)
            total = self._sum
        return LatencySnapshot(BUCKETS, counts, total, sum(counts))
