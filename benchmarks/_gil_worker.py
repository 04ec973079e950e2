"""GIL relief, measured in a fresh process (bench_gil_relief.py runs it; the
`with arena:` blocks install orbitpy's allocator hooks for good, which must
not slow the rest of the benchmark run).

Usage: python _gil_worker.py SECONDS ENTRIES
Prints JSON: {"variants": {name: {"samples": [s, ...], ...}}, ...}.

Main serves request-like work back to back: each request runs a few hundred
µs of Python (builds, sorts and sums a list of small dicts) and updates two
entries of a table.  The table, {key: expiry} with ENTRIES entries, lives in
an arena (built and changed inside ``with arena:``) in every variant, so
main's work is the same in all of them.  Every 100 ms a maintenance task scans
the whole table (counts the entries past a cutoff):

none    no maintenance task: main alone.
thread  the scan runs in a thread, which wakes every 100 ms; it takes the
        GIL from main (in 5 ms slices: sys.getswitchinterval()).
orbit   main issues ``scan.call_async(table, cutoff)`` every 100 ms (the
        snapshot is taken in the request that issues it, and counted in its
        latency) and collects the result when it is done; the scan runs in
        the orbit process, on its own GIL.
process the control for the orbit: the same scan, every 100 ms, in a plain
        process forked once before the run (its table is the fork's stale
        copy; main sends a byte over a pipe per tick and collects the count,
        one scan in flight at a time, as for the orbit).  No orbitpy: what
        main loses here is what any work on the other CPU costs it on this
        machine, which no way of running the task elsewhere can avoid.

Each request's latency (perf_counter before and after, including the
maintenance issue where there is one) is a sample; the variants run one
after another, in two stretches of SECONDS/2 each (none, thread, orbit,
orbit, thread, none).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

import orbitpy

PERIOD_S = 0.100


def request(i: int) -> int:
    """A few hundred µs of Python: a small batch of records, sorted and
    summed (what parsing and answering a request costs in a web service)."""
    rows = [{"id": (i * 31 + j) % 1000, "score": (i + j * 17) % 97, "name": f"u{j}"}
            for j in range(250)]
    rows.sort(key=lambda r: (r["score"], r["id"]))
    return sum(r["score"] for r in rows[:60]) + len("".join(r["name"] for r in rows))


def scan(table: dict[int, int], cutoff: int) -> int:
    """The maintenance task: entries past their expiry."""
    n = 0
    for v in table.values():
        if v < cutoff:
            n += 1
    return n


def main() -> int:
    seconds, entries = float(sys.argv[1]), int(sys.argv[2])
    arena = orbitpy.arena(max(256 << 20, entries * 400))
    t0 = time.perf_counter()
    with arena:
        table = {k: 1_000_000 + (k * 7919) % 1_000_000 for k in range(entries)}
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    scan(table, 1_500_000)
    scan_s = time.perf_counter() - t0
    tick_r, tick_w = os.pipe()
    done_r, done_w = os.pipe()
    worker = os.fork()  # the "process" variant's scanner, before any thread exists
    if worker == 0:
        os.close(tick_w)
        os.close(done_r)
        while os.read(tick_r, 1):
            os.write(done_w, scan(table, 1_500_000).to_bytes(8, "little"))
        os._exit(0)
    os.close(tick_r)
    os.close(done_w)
    os.set_blocking(done_r, False)
    scan_orbit = orbitpy.orbit(name="bench-gil-scan", timeout=60)(scan)
    scan_orbit(table, 0)  # start it before any thread exists

    def serve(variant: str) -> dict[str, Any]:
        samples: list[float] = []
        scans: list[int] = []
        stop = threading.Event()
        th = None
        if variant == "thread":
            def maintenance() -> None:
                while not stop.wait(PERIOD_S):
                    scans.append(scan(table, 1_500_000))

            th = threading.Thread(target=maintenance, name="bench-gil-maintenance")
            th.start()
        timer = time.perf_counter
        fut = None
        in_flight = False
        next_tick = timer() + PERIOD_S
        i = 0
        start = timer()
        end = start + seconds / 2
        while True:
            t0 = timer()
            if t0 >= end:
                break
            i += 1
            request(i)
            with arena:
                table[i % entries] = 1_000_000 + i % 1_000_000
                table[(i * 7) % entries] = 2_000_000
            if variant == "orbit" and t0 >= next_tick:
                if fut is not None and fut.done():
                    scans.append(fut.result())
                    fut = None
                if fut is None:
                    fut = scan_orbit.call_async(table, 1_500_000)
                next_tick += PERIOD_S
            elif variant == "process" and t0 >= next_tick:
                if in_flight:
                    try:
                        scans.append(int.from_bytes(os.read(done_r, 8), "little"))
                        in_flight = False
                    except BlockingIOError:
                        pass
                if not in_flight:
                    os.write(tick_w, b"t")
                    in_flight = True
                next_tick += PERIOD_S
            samples.append(timer() - t0)
        wall = timer() - start
        stop.set()
        if th is not None:
            th.join()
        if fut is not None:
            scans.append(fut.result())
        if in_flight:
            os.set_blocking(done_r, True)
            scans.append(int.from_bytes(os.read(done_r, 8), "little"))
            os.set_blocking(done_r, False)
        return {"samples": samples, "requests": len(samples), "wall_s": wall,
                "throughput": len(samples) / wall, "scans": len(scans)}

    out: dict[str, Any] = {"entries": entries, "seconds": seconds, "build_s": build_s,
                           "scan_ms": scan_s * 1e3, "switch_interval_ms":
                           sys.getswitchinterval() * 1e3, "variants": {}}
    try:
        # Two stretches of SECONDS/2 each, in mirrored order, so that a
        # drift of the machine's speed during the run hits every variant.
        order = ["none", "thread", "orbit", "process"]
        for variant in order + order[::-1]:
            r = serve(variant)
            prev = out["variants"].setdefault(variant, r)
            if prev is not r:
                for key in ("samples", "scans", "requests", "wall_s"):
                    prev[key] += r[key]
                prev["throughput"] = prev["requests"] / prev["wall_s"]
        out["orbit_pages_copied"] = scan_orbit.orbit.stats()["pages_copied"]
    finally:
        scan_orbit.orbit.close()
        os.close(tick_w)  # the scanner reads end-of-file and exits
        os.waitpid(worker, 0)
        os.close(done_r)
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
