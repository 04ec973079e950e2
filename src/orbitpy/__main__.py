"""python -m orbitpy demo: a cache-expiry task in an orbit that survives a crash.
(python -m orbitpy bench runs the benchmark suite: see _bench_run.py.)

Main keeps a cache's expiry table in an arena (a NumPy-free array of int64
pairs, so the demo needs nothing beyond orbitpy) and keeps serving "requests"
that write to it.  Every round, an orbit scans a snapshot of the table for
expired entries and pushes their slots back; main evicts them.  On round 3 the
orbit crashes on purpose (a real segfault, injected by the demo); main
notices, keeps serving, and the orbit restarts and resynchronises on the next
call.
"""

from __future__ import annotations

import argparse
import ctypes
import random
import struct
import sys
import time

import orbitpy
from orbitpy import _bench_run
from orbitpy.errors import EXIT_OK, EXIT_USAGE

SLOTS = 20_000
ENTRY = struct.Struct("qq")  # key (0 = empty), expiry (ms)


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


def demo(rounds: int = 6, crash_round: int = 3) -> int:
    arena = orbitpy.arena(8 << 20)
    table = arena.buffer(SLOTS * ENTRY.size)
    table[:] = bytes(len(table))
    rng = random.Random(1)

    @orbitpy.orbit(name="cache-expiry", timeout=5)
    def expire(table: memoryview, now: int, crash: bool) -> int:
        if crash:
            ctypes.string_at(0)  # a real SIGSEGV, inside the orbit only
        expired = 0
        for slot, (key, expiry) in enumerate(ENTRY.iter_unpack(table)):
            if key and expiry <= now:
                orbitpy.push(slot)  # an update: main applies it
                expired += 1
        return expired

    served = 0

    def serve_one() -> None:
        slot = rng.randrange(SLOTS)
        ENTRY.pack_into(table, slot * ENTRY.size, slot + 1, _now_ms() + rng.randrange(50, 2000))
    print(f"orbitpy demo: cache of {SLOTS} slots in {arena!r}")
    print(f"the orbit will crash on purpose in round {crash_round} (a segfault the demo "
          f"injects) to show that main survives it; the orbit's traceback goes to stderr")
    try:
        for rnd in range(1, rounds + 1):
            # Main serves requests: insert entries with short random lifetimes.
            t_end = time.monotonic() + 0.2
            while time.monotonic() < t_end:
                serve_one()
                served += 1
            fut = expire.call_async(table, _now_ms(), rnd == crash_round)
            during = 0
            while not fut.done():  # main keeps serving while the orbit scans
                serve_one()
                during += 1
            try:
                n = fut.result()
            except orbitpy.OrbitCrashed as e:
                first_line = str(e).splitlines()[0]
                print(f"round {rnd}: {first_line}; main kept serving ({during} requests "
                      f"meanwhile)")
                continue
            evicted = 0
            for slot in fut.updates():
                key, expiry = ENTRY.unpack_from(table, slot * ENTRY.size)
                if key and expiry <= _now_ms():  # still expired: main has the last word
                    ENTRY.pack_into(table, slot * ENTRY.size, 0, 0)
                    evicted += 1
            live = sum(1 for key, _ in ENTRY.iter_unpack(table) if key)
            st = expire.orbit.stats()
            print(f"round {rnd}: orbit saw {n} expired, main evicted {evicted} and served "
                  f"{during} requests meanwhile; {live} live; stats(): "
                  f"pages_copied={st['pages_copied']} calls={st['calls']} pid={st['pid']} "
                  f"restarts={st['restarts']}")
    finally:
        expire.orbit.close()
    print("demo done: the orbit crashed once (on purpose), main never stopped, and the "
          "orbit came back.")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orbitpy")
    sub = parser.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="run a cache-expiry orbit that survives a crash the "
                                    "demo injects on purpose")
    d.add_argument("--rounds", type=int, default=6)
    d.add_argument("--crash-round", type=int, default=3)
    _bench_run.add_parser(sub)
    args = parser.parse_args(argv)
    if args.cmd == "demo":
        return demo(args.rounds, args.crash_round)
    if args.cmd == "bench":
        return _bench_run.bench(args.quick, args.out, args.pytest_args)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
