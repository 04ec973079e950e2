"""Where an "idle" call_async spends its time (not a pytest benchmark).

    python benchmarks/probe_idle.py

For gaps of 0, 0.3 and 2 ms of busy-waiting in main between calls, prints the
median time of the argument encoding (pure Python, no system call) and of the
C core's call_async (snapshot + send) separately.  On the development VM the
pure-Python part slows down as much as the C part after a gap, which shows
that most of the "idle" penalty comes from the machine, not from the work.
"""

from __future__ import annotations

import statistics
import time

import orbitpy
from orbitpy import _pickle


def main() -> None:
    arena = orbitpy.arena(16 << 20)
    buf = arena.buffer(8 << 20)

    @orbitpy.orbit
    def nop(b: memoryview) -> None:
        return None

    nop(buf)
    core = nop.orbit._core
    try:
        for gap in (0.0, 0.0003, 0.002):
            enc, snap = [], []
            for i in range(300):
                buf[0] = i & 255
                t0 = time.perf_counter()
                while gap and time.perf_counter() - t0 < gap:
                    pass
                t = time.perf_counter_ns()
                arg = _pickle.dumps_call((buf,), {})[0]
                t1 = time.perf_counter_ns()
                fut = core.call_async(arg, [arena._area], 0)
                t2 = time.perf_counter_ns()
                fut.wait()
                enc.append(t1 - t)
                snap.append(t2 - t1)
            print(f"gap {gap * 1000:.1f} ms: encode {statistics.median(enc) / 1000:.1f} us, "
                  f"core call_async {statistics.median(snap) / 1000:.1f} us")
    finally:
        nop.orbit.close()


if __name__ == "__main__":
    main()
