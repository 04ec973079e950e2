"""Deadlock detection in an orbit, over Python objects kept in an arena.

A small lock manager keeps its state as ordinary Python dicts and sets that
live in an orbitpy arena (they are created and changed inside ``with arena:``):

    owner    lock -> the transaction holding it
    waiting  transaction -> set of the locks it is blocked on (wait-for graph)
    started  transaction -> start sequence number (the youngest is the victim)

Worker threads run transactions that take named locks.  The workload builds
two deadlocks on purpose (T1/T2 take A and B in opposite orders; T3 -> T4 ->
T5 -> T3 around C, D, E) and one transaction, T6, that merely waits behind a
deadlocked one without being part of a cycle.

Every 20 ms main calls ``find_deadlocks`` in an orbit.  The tables cross by
address: the orbit reads them from its page snapshot, taken while main holds
the lock manager's mutex, so the snapshot is a consistent state of the
manager.  The orbit turns the wait-for sets into transaction -> transaction
edges through the lock table, finds the cycles, and for each one pushes back
the cycle and a victim (its youngest transaction) with ``orbitpy.push``.
Main aborts each victim that is still blocked: its locks are released and its
thread retries later.  The run ends when every transaction has committed.

    python examples/deadlock_detector.py

The last line is a machine-readable summary (``RESULT {...json...}``).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Set
from typing import Any

import orbitpy

# Transactions and the locks each takes, in order.  Every first attempt takes
# its first lock, waits at a barrier for all the others, then asks for the
# rest: the deadlocks below form every time.
PLAN: dict[str, list[str]] = {
    "T1": ["A", "B"],  # T1 holds A, wants B
    "T2": ["B", "A"],  # T2 holds B, wants A       -> cycle T1 -> T2 -> T1
    "T3": ["C", "D"],  # T3 holds C, wants D
    "T4": ["D", "E"],  # T4 holds D, wants E
    "T5": ["E", "C"],  # T5 holds E, wants C       -> cycle T3 -> T4 -> T5 -> T3
    "T6": ["F", "A"],  # T6 holds F, waits for A behind T1: blocked, not deadlocked
}
EXPECTED_CYCLES = [["T1", "T2"], ["T3", "T4", "T5"]]
WORK_S = 0.01  # how long a transaction holds all its locks
DETECT_EVERY_S = 0.02
DEADLINE_S = 20.0


class TxnAborted(Exception):
    """The transaction was chosen as a deadlock victim."""


class LockManager:
    """Exclusive named locks; state in an arena, guarded by one mutex."""

    def __init__(self, arena: orbitpy.Arena) -> None:
        self.arena = arena
        self.cond = threading.Condition()
        self._seq = 0
        self.aborted: set[str] = set()  # main-side bookkeeping, not in the arena
        with arena:
            self.owner: dict[str, str] = {}
            self.waiting: dict[str, set[str]] = {}
            self.started: dict[str, int] = {}

    def begin(self, txn: str) -> None:
        with self.cond:
            self._seq += 1
            self.aborted.discard(txn)
            with self.arena:
                self.started[txn] = self._seq

    def acquire(self, txn: str, lock: str) -> None:
        with self.cond:
            while True:
                if txn in self.aborted:
                    raise TxnAborted(txn)
                holder = self.owner.get(lock)
                if holder is None or holder == txn:
                    with self.arena:
                        self.owner[lock] = txn
                        if txn in self.waiting:
                            del self.waiting[txn]
                    return
                with self.arena:
                    if txn not in self.waiting:
                        self.waiting[txn] = set()
                    self.waiting[txn].add(lock)
                self.cond.wait(0.5)

    def _release_all(self, txn: str) -> list[str]:
        """Caller holds cond."""
        mine = sorted(lock for lock, t in self.owner.items() if t == txn)
        with self.arena:
            for lock in mine:
                del self.owner[lock]
            self.waiting.pop(txn, None)
            self.started.pop(txn, None)
        self.cond.notify_all()
        return mine

    def commit(self, txn: str) -> None:
        with self.cond:
            self._release_all(txn)

    def abort(self, txn: str, waits_for: Iterable[str]) -> list[str] | None:
        """Abort txn if it is still blocked on `waits_for`, as the orbit saw
        it; returns the locks it released (None: nothing to do any more)."""
        with self.cond:
            if txn in self.aborted or set(self.waiting.get(txn, ())) != set(waits_for):
                return None
            self.aborted.add(txn)
            return self._release_all(txn)


# ------------------------------------------------------------------ the orbit

def _find_cycle(edges: Mapping[str, Set[str]]) -> list[str] | None:
    """A cycle of the directed graph `edges` (node -> successors), or None."""
    color: dict[str, int] = {}  # absent: unseen, 1: on the DFS path, 2: done
    for root in sorted(edges):
        if root in color:
            continue
        path: list[str] = [root]
        stack: list[Iterator[str]] = [iter(sorted(edges.get(root, ())))]
        color[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                color[path.pop()] = 2
                stack.pop()
            elif color.get(nxt) == 1:
                return path[path.index(nxt):]
            elif nxt not in color:
                color[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(edges.get(nxt, ()))))
    return None


@orbitpy.orbit(name="deadlock-detector", timeout=5)
def find_deadlocks(owner: dict[str, str], waiting: dict[str, set[str]],
                   started: dict[str, int]) -> list[str]:
    """Runs in the orbit, on the snapshot.  Pushes one report per cycle (its
    transactions, what each waits for and who holds it, and a victim) such
    that aborting the victims breaks every cycle.  Returns the transactions
    that are blocked but in no cycle (they must be left alone)."""
    edges: dict[str, set[str]] = {}
    for txn, locks in waiting.items():
        edges[txn] = {owner[lk] for lk in locks if lk in owner and owner[lk] != txn}
    in_cycles: set[str] = set()
    while (cycle := _find_cycle(edges)) is not None:
        victim = max(cycle, key=lambda t: started.get(t, 0))  # the youngest
        waits = {t: sorted(waiting.get(t, ())) for t in cycle}
        holders = {lk: owner[lk] for t in cycle for lk in waits[t] if lk in owner}
        orbitpy.push({"cycle": cycle, "victim": victim, "waits": waits, "holders": holders})
        in_cycles.update(cycle)
        edges.pop(victim, None)  # aborting it breaks this cycle
        for succ in edges.values():
            succ.discard(victim)
    return sorted(t for t in waiting if t not in in_cycles)


# ------------------------------------------------------------------ workload

def run_txn(mgr: LockManager, txn: str, locks: list[str], barrier: threading.Barrier,
            log: dict[str, Any]) -> None:
    first = True
    while True:
        mgr.begin(txn)
        try:
            for i, lock in enumerate(locks):
                mgr.acquire(txn, lock)
                if first and i == 0:
                    barrier.wait(timeout=10)
            time.sleep(WORK_S)
        except TxnAborted:
            with mgr.cond:
                log["retries"][txn] = log["retries"].get(txn, 0) + 1
            first = False
            time.sleep(0.05)  # let the survivors finish, then retry
            continue
        mgr.commit(txn)
        with mgr.cond:
            log["committed"].append(txn)
        return


def _describe(rep: Mapping[str, Any]) -> str:
    cycle: list[str] = rep["cycle"]
    waits = "; ".join(
        f"{t} waits for " + ", ".join(f"{lk} (held by {rep['holders'].get(lk, '-')})"
                                      for lk in rep["waits"][t])
        for t in cycle)
    return f"{' -> '.join(cycle + [cycle[0]])}: {waits}"


def main() -> int:
    arena = orbitpy.arena(16 << 20)
    mgr = LockManager(arena)
    log: dict[str, Any] = {"committed": [], "retries": {}}
    found: list[dict[str, Any]] = []
    victims: list[str] = []
    calls = 0
    spared: set[str] = set()
    # Start the orbit before any worker thread exists (it is forked from main).
    with mgr.cond:
        find_deadlocks(mgr.owner, mgr.waiting, mgr.started)

    barrier = threading.Barrier(len(PLAN))
    threads = [threading.Thread(target=run_txn, args=(mgr, txn, locks, barrier, log),
                                name=txn, daemon=True) for txn, locks in PLAN.items()]
    t0 = time.monotonic()
    try:
        for th in threads:
            th.start()
        while any(th.is_alive() for th in threads):
            if time.monotonic() - t0 > DEADLINE_S:
                print(f"gave up after {DEADLINE_S:g} s: transactions still running: "
                      f"{[th.name for th in threads if th.is_alive()]}")
                break
            time.sleep(DETECT_EVERY_S)
            calls += 1
            with mgr.cond:  # the snapshot is taken before call_async returns
                fut = find_deadlocks.call_async(mgr.owner, mgr.waiting, mgr.started)
            found_now = 0
            for rep in fut.updates():  # as the orbit finds them
                victim = rep["victim"]
                released = mgr.abort(victim, rep["waits"][victim])
                if released is None:
                    print(f"detector call {calls}: {victim} was unblocked meanwhile; "
                          f"not aborted")
                    continue
                found.append(rep)
                victims.append(victim)
                found_now += 1
                print(f"detector call {calls}: deadlock {_describe(rep)}")
                print(f"    aborted {victim} (the youngest in the cycle), released "
                      f"{', '.join(released)}")
            innocent = fut.result()
            if found_now and innocent:
                print(f"    blocked but in no cycle, left alone: {', '.join(innocent)}")
                spared.update(innocent)
        for th in threads:
            th.join(timeout=5)
        st = find_deadlocks.orbit.stats()
        chk = arena.stats()["checks"]
    finally:
        find_deadlocks.orbit.close()

    elapsed = time.monotonic() - t0
    committed = sorted(log["committed"])
    cycles = sorted(sorted(r["cycle"]) for r in found)
    ok = (committed == sorted(PLAN) and cycles == EXPECTED_CYCLES and not mgr.owner
          and not mgr.waiting and all(v in r["cycle"] for v, r in zip(victims, found,
                                                                        strict=True)))
    print(f"{len(found)} deadlock(s) found and resolved by aborting {', '.join(victims)}; "
          f"{len(committed)}/{len(PLAN)} transactions committed in {elapsed:.2f} s "
          f"({', '.join(f'{t} retried {n}x' for t, n in sorted(log['retries'].items()))})")
    print(f"detector: {calls} orbit calls, {st['pages_copied']} pages copied into its "
          f"snapshots, {chk['checks']} pre-call checks ({chk['copies']} values copied into "
          f"the arena, {chk['ns'] / 1e6:.1f} ms)")
    summary = {"ok": ok, "deadlocks": cycles, "victims": victims, "spared": sorted(spared),
               "committed": committed, "retries": log["retries"], "detector_calls": calls,
               "locks_left": len(mgr.owner), "waiting_left": len(mgr.waiting)}
    print("RESULT " + json.dumps(summary, sort_keys=True))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
