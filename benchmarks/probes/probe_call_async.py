"""Question: why does call_async cost more in a big arena and in a fresh orbit?

Two effects behind the call_async numbers, with the public API only (not
part of the pytest run):

1. arena size: with 0 dirty pages, call_async still walks the whole arena in
   uffd mode (PAGEMAP_SCAN over every page table entry), so its cost grows
   with the arena's size, not with what was written;
2. cold staging ring: while the orbit is busy, dirty pages go to a 64 MiB
   shared staging ring whose pages are populated on first use, so until
   64 MiB have been staged every staged page also pays a fault and a clear.

    python benchmarks/probes/probe_call_async.py
"""

from __future__ import annotations

import os
import statistics
import time

import orbitpy

PAGE = 4096


def busy_wait(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def main() -> None:
    rfd, wfd = os.pipe()

    def target(buf: memoryview, block: bool = False) -> None:
        if block:
            os.read(rfd, 1)

    def busy_call_us(fn: orbitpy.OrbitFunction, buf: memoryview, k: int, rounds: int) -> float:
        """Median µs of call_async(buf) while the orbit is busy, k dirty pages."""
        times = []
        for r in range(rounds):
            blocker = fn.call_async(buf, True)
            for i in range(k):
                buf[i * 2 * PAGE] = r & 0xFF
            busy_wait(0.0003)
            t0 = time.perf_counter()
            fut = fn.call_async(buf)
            times.append(time.perf_counter() - t0)
            os.write(wfd, b"x")
            blocker.result()
            fut.result()
        return statistics.median(times) * 1e6

    print("1. call_async with 0 dirty pages (orbit busy), by arena size (uffd mode):")
    for mb in (16, 256, 1024):
        arena = orbitpy.arena(mb << 20)
        buf = arena.buffer(8 << 20)
        for off in range(0, len(buf), PAGE):
            buf[off] = 1
        fn = orbitpy.orbit(name=f"probe-{mb}")(target)
        try:
            fn.call_async(buf).result()
            print(f"   {mb:5d} MiB arena: {busy_call_us(fn, buf, 0, 300):7.1f} µs")
        finally:
            fn.orbit.close()
            buf.release()
            arena.close()

    print("2. call_async with 10 dirty pages (orbit busy: staged), cold vs warm ring:")
    arena = orbitpy.arena(16 << 20)
    buf = arena.buffer(8 << 20)
    for off in range(0, len(buf), PAGE):
        buf[off] = 1
    fn = orbitpy.orbit(name="probe-ring")(target)
    try:
        fn.call_async(buf).result()
        print(f"   fresh orbit (cold ring):           {busy_call_us(fn, buf, 10, 300):7.1f} µs")
        for r in range(10):  # stage 80 MiB: every ring page populated
            blocker = fn.call_async(buf, True)
            for off in range(0, len(buf), PAGE):
                buf[off] = r
            fut = fn.call_async(buf)
            os.write(wfd, b"x")
            blocker.result()
            fut.result()
        print(f"   after staging 80 MiB (warm ring):  {busy_call_us(fn, buf, 10, 300):7.1f} µs")
    finally:
        fn.orbit.close()
        buf.release()
        arena.close()
        os.close(rfd)
        os.close(wfd)


if __name__ == "__main__":
    main()
