"""Question: is an "idle" call_async slower after a pause because of orbitpy or the machine?

Where an "idle" call_async spends its time (not a pytest benchmark).

    python benchmarks/probes/probe_idle.py

For gaps of 0, 0.3 and 2 ms of busy-waiting in main between calls, prints the
median time of orbitpy's Python side of ``fn.call_async`` (argument encoding,
checks; no system call) and of the C core's call_async (snapshot + send)
separately: the call goes through the library, and the core's part is timed
at the seam between the two (the orbit's core object, wrapped).  On the
development VM the pure-Python part slows down as much as the C part after a
gap, which shows that most of the "idle" penalty comes from the machine, not
from the work.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import orbitpy


class TimedCore:
    """An orbit's C core object that times its call_async (the rest of the
    library's call path runs as it always does)."""

    def __init__(self, core: Any) -> None:
        self._core = core
        self.last_ns = 0

    def call_async(self, *args: Any) -> Any:
        t = time.perf_counter_ns()
        fut = self._core.call_async(*args)
        self.last_ns = time.perf_counter_ns() - t
        return fut

    def __getattr__(self, name: str) -> Any:
        return getattr(self._core, name)


def main() -> None:
    arena = orbitpy.arena(16 << 20)
    buf = arena.buffer(8 << 20)

    @orbitpy.orbit
    def nop(b: memoryview) -> None:
        return None

    nop(buf)  # starts the orbit: its core object exists from here on
    timed = TimedCore(nop.orbit._core)
    nop.orbit._core = timed
    try:
        for gap in (0.0, 0.0003, 0.002):
            py, core = [], []
            for i in range(300):
                buf[0] = i & 255
                t0 = time.perf_counter()
                while gap and time.perf_counter() - t0 < gap:
                    pass
                t = time.perf_counter_ns()
                fut = nop.call_async(buf)
                total = time.perf_counter_ns() - t
                fut.result()
                py.append(total - timed.last_ns)
                core.append(timed.last_ns)
            print(f"gap {gap * 1000:.1f} ms: python side {statistics.median(py) / 1000:.1f} us, "
                  f"core call_async {statistics.median(core) / 1000:.1f} us")
    finally:
        nop.orbit.close()


if __name__ == "__main__":
    main()
