"""Helpers shared by the benchmark modules."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

PAGE = 4096


def spin_us() -> int:
    """How long orbitpy spins before sleeping (ORBITPY_SPIN_US, default 100)."""
    try:
        return max(0, int(os.environ.get("ORBITPY_SPIN_US", "") or 100))
    except ValueError:
        return 100


def busy_wait(seconds: float) -> None:
    """Wait without sleeping: keeps this CPU awake, so the next measured step
    does not pay for waking an idle virtual CPU."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def settle_time() -> float:
    """Seconds after which an orbit (and main's waiting threads) that just
    answered have stopped spinning and sleep: ORBITPY_SPIN_US + 100 µs."""
    return (spin_us() + 100) * 1e-6


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def child_pids() -> set[int]:
    """pids of this process's direct children (zombies included)."""
    me = os.getpid()
    out = set()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            out.add(int(d))
    return out


class ReplayTimer:
    """A timer for ``benchmark.pedantic`` that reports durations measured
    elsewhere (in C, or in a subprocess) instead of timing the target.

    The target stores the next measured duration in ``pending``; the timer's
    clock advances by it between the runner's two readings, so each round's
    duration is exactly one measured sample and pytest-benchmark's statistics
    (median, IQR, ...) are those of the samples.
    """

    __name__ = "replayed"

    def __init__(self, what: str) -> None:
        self.now = 0.0
        self.pending = 0.0
        self.__name__ = f"replayed({what})"

    def __call__(self) -> float:
        self.now += self.pending
        self.pending = 0.0
        return self.now


def replay(benchmark: Any, samples: Iterable[float], what: str) -> None:
    """Record `samples` (seconds, one per round) as this benchmark's rounds."""
    data = [float(s) for s in samples]
    if not data:
        raise ValueError("no samples to replay")
    timer = ReplayTimer(what)
    it = iter(data)

    def target() -> None:
        timer.pending = next(it)

    # pytest-benchmark has no public hook for externally measured rounds;
    # its runner reads the fixture's timer when pedantic() builds it.
    if not hasattr(benchmark, "_timer"):
        raise RuntimeError("this pytest-benchmark version has no BenchmarkFixture._timer")
    benchmark._timer = timer
    benchmark.extra_info["timing"] = what
    benchmark.pedantic(target, rounds=len(data), iterations=1)


def close_all(fns: Iterable[Any], closers: Iterable[Callable[[], Any]] = ()) -> None:
    for fn in fns:
        fn.orbit.close()
    for c in closers:
        c()


# ------------------------------------------------------------ suite-wide knobs

def quick() -> bool:
    """True in the suite's quick mode (``python -m orbitpy bench --quick``
    sets ORBITPY_BENCH_QUICK=1): fewer sizes, rounds and seconds, so that the
    whole suite finishes in under 3 minutes on a 2-core machine."""
    return os.environ.get("ORBITPY_BENCH_QUICK", "") not in ("", "0")


def by_mode(quick_value: Any, full_value: Any) -> Any:
    """`quick_value` in quick mode, else `full_value`."""
    return quick_value if quick() else full_value


# ------------------------------------------------------------ a 4 KiB-page heap

class SmallPageHeap:
    """`mb` MiB of main's memory made of 4 KiB pages, every page written
    (resident), like CPython's object heap.

    A private anonymous mapping with MADV_NOHUGEPAGE: a big bytearray or NumPy
    array gets transparent huge pages where THP is on, and fork then copies
    512 times fewer page-table entries (a fork with an 8 GB heap costs ~16 ms
    instead of ~260 ms), which is not what a Python program's heap of objects
    costs.  ``rewrite()`` writes every page again (after a fork: each write
    copies the page in main)."""

    def __init__(self, mb: int) -> None:
        import mmap

        self.mb = mb
        self.map = mmap.mmap(-1, mb << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        nohuge = getattr(mmap, "MADV_NOHUGEPAGE", None)
        if nohuge is not None:
            self.map.madvise(nohuge)
        self.rewrite(1)

    def rewrite(self, value: int = 2) -> None:
        m = self.map
        for off in range(0, len(m), PAGE):
            m[off] = value

    def close(self) -> None:
        self.map.close()


def memory_of(pid: int) -> dict[str, int]:
    """USS, PSS and RSS of process `pid`, in bytes (psutil, Linux smaps)."""
    import psutil

    mi = psutil.Process(pid).memory_full_info()
    return {"uss": int(mi.uss), "pss": int(getattr(mi, "pss", 0)), "rss": int(mi.rss)}
