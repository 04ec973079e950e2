"""The auxiliary tasks: BGSAVE, the slow log and active expiry.

Each runs in one of three forms (``--tasks``):

- ``orbit``: in an orbitpy orbit, on a snapshot of the arena taken when the
  call is issued; results come back as pushed updates that main applies in
  the event loop, between commands.
- ``thread``: the same code in a thread of main, on the live data.
- ``inline``: as Redis does it: BGSAVE forks (the child writes the file, the
  parent reaps it), expiry runs in the event loop, the slow log is kept by the
  command path itself.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import orbitpy

from . import cmdring
from .dumpfile import write_dump
from .faults import inject
from .keyspace import Keyspace, now_ms

EXPIRE_SAMPLE = 20          # keys sampled per round (Redis: ACTIVE_EXPIRE_CYCLE_KEYS_PER_LOOP)
EXPIRE_REPEAT_ABOVE = 0.25  # sample again while more than this share was expired
EXPIRE_BUDGET_S = 0.025     # per cycle (Redis: 25% of a 100 ms cycle)
TASK_PERIOD_S = 0.1         # expiry and slow-log cycles: 10 per second (Redis's hz)
TASK_TIMEOUT_S = 5          # an expiry or slow-log call running longer is killed
BGSAVE_TIMEOUT_S = 600      # a BGSAVE in an orbit (CONFIG SET kvserver-bgsave-timeout)
TASK_MEMORY_MIN = 512 << 20  # each task orbit's memory_limit: this, or the arena's size if larger
RING_SLOTS = 4096           # command timings main keeps for the slow-log task


# -- the tasks' code (the same in an orbit, a thread, or inline) ---------------
def expire_cycle(expires: dict[bytes, int], now: int, emit: Callable[[list[bytes]], None],
                 fault: str | None = None) -> int:
    """Redis's adaptive active expiry: sample 20 keys with a TTL; emit those
    expired; repeat while more than 25% of a sample was expired (and within
    the cycle's time budget).  Returns how many keys were emitted."""
    inject(fault)
    candidates = list(expires)
    deadline = time.monotonic() + EXPIRE_BUDGET_S
    found = 0
    while candidates:
        expired = []
        n = min(EXPIRE_SAMPLE, len(candidates))
        for _ in range(n):
            i = random.randrange(len(candidates))
            key = candidates[i]
            candidates[i] = candidates[-1]  # sample without replacement
            candidates.pop()
            if expires.get(key, now + 1) <= now:
                expired.append(key)
        if expired:
            emit(expired)
            found += len(expired)
        if len(expired) <= n * EXPIRE_REPEAT_ABOVE or time.monotonic() > deadline:
            break
    return found


def scan_slowlog(ring: memoryview, start: int, end: int, threshold_us: int,
                 emit: Callable[[list[Any]], None], fault: str | None = None) -> int:
    """Emit (in batches) the ring's entries start..end-1 slower than the
    threshold; entries the ring overwrote meanwhile are skipped."""
    inject(fault)
    batch = []
    for entry in cmdring.entries(ring, start, end):
        if entry[1] >= threshold_us:
            batch.append(entry)
            if len(batch) >= 256:
                emit(batch)
                batch = []
    if batch:
        emit(batch)
    return end


def bgsave(data: dict[bytes, Any], expires: dict[bytes, int], path: str,
           fault: str | None = None) -> int:
    """Write the dataset (lists back in Redis order) to path."""
    inject(fault)
    logical = {k: (v[::-1] if type(v) is list else v) for k, v in data.items()}
    return write_dump(logical, expires, path)


def expire_in_orbit(expires: dict[bytes, int], now: int, fault: str | None) -> int:
    return expire_cycle(expires, now, orbitpy.push, fault)


def slowlog_in_orbit(ring: memoryview, start: int, end: int, threshold_us: int,
                     fault: str | None) -> int:
    return scan_slowlog(ring, start, end, threshold_us, orbitpy.push, fault)


# -- running them ------------------------------------------------------------
class Tasks:
    def __init__(self, mode: str, arena: orbitpy.Arena, ks: Keyspace, dump_path: str) -> None:
        self.mode, self.arena, self.ks, self.dump_path = mode, arena, ks, dump_path
        self.slowlog_threshold_us = 10_000
        self.slowlog: collections.deque[list[Any]] = collections.deque(maxlen=128)
        self.slowlog_next_id = 0
        self.slowlog_seen = 0      # ring entries the slow-log task has looked at
        # The ring has an arena of its own: a slow-log call then names only
        # that small arena, and never scans or copies the dataset's pages.
        self.ring_arena = orbitpy.arena(cmdring.ring_bytes(RING_SLOTS) + (1 << 20))
        self.ring = cmdring.command_ring(self.ring_arena, RING_SLOTS)
        self._append = self.ring.append
        self.active_expired = 0
        self.lastsave = int(time.time())
        self.bgsave_in_progress = False
        self.last_bgsave_ok = True
        self.saves = 0
        self._fork_pid = 0
        self.latest_fork_usec = 0           # main's time in start_bgsave's fork() or call
        self.latest_bgsave_check_usec = 0   # of it, the orbit call's pre-call check
        self.latest_bgsave_pages_copied = 0  # arena pages that call's snapshot copied
        self.failures = 0
        # Per task: runs started, and main's time starting them (an orbit
        # call's issue: its check and snapshot; a fork) -- what the task
        # costs the event loop.
        self.runs = dict.fromkeys(("expiry", "slowlog", "bgsave"), 0)
        self.main_ns = dict.fromkeys(("expiry", "slowlog", "bgsave"), 0)
        self.faults: dict[str, str] = {}  # task -> fault its next run gets
        self._last_failure: dict[str, str] = {}
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bg: list[asyncio.Task[None]] = []
        self._threads: list[threading.Thread] = []
        self.bgsave_timeout = BGSAVE_TIMEOUT_S
        if mode == "orbit":
            # A task's private memory (a BGSAVE's copy of the key index, a
            # sample of keys) is a fraction of the dataset, which the arena
            # bounds: a task past the limit is a runaway, and its orbit dies
            # (MemoryError inside it, exit status 77) and restarts.
            limit = max(TASK_MEMORY_MIN, arena.stats()["size"])
            self._expire_orbit = orbitpy.orbit(name="kv-expiry", timeout=TASK_TIMEOUT_S,
                                               memory_limit=limit)(expire_in_orbit)
            self._slowlog_orbit = orbitpy.orbit(name="kv-slowlog", timeout=TASK_TIMEOUT_S,
                                                memory_limit=limit)(slowlog_in_orbit)
            self._bgsave_orbit = orbitpy.orbit(name="kv-bgsave", timeout=BGSAVE_TIMEOUT_S,
                                               memory_limit=limit)(bgsave)

    # -- the command path ---------------------------------------------------
    def record(self, argv: list[bytes], wire: bytearray, start: int, end: int,
               start_us: int, dur_us: int) -> None:
        """Called for every command, after it ran: argv came as wire[start:end]."""
        if self.mode == "inline":  # Redis: the command path keeps the slow log itself
            try:
                if "slowlog" in self.faults:  # so a fault of the slow log's strikes here
                    inject(self.take_fault("slowlog"))
                if 0 <= self.slowlog_threshold_us <= dur_us:
                    self._log_slow([(start_us, dur_us, _trim(argv))])
            except Exception as e:  # the command stands; log, go on (as the other modes)
                self._failed("slowlog", e)
            return
        self._append(start_us, dur_us, len(argv), 0, wire, start, end)

    def _log_slow(self, entries: list[Any]) -> None:
        for start_us, dur_us, argv in entries:
            self.slowlog.appendleft([self.slowlog_next_id, start_us // 1_000_000, dur_us,
                                     argv, b"", b""])
            self.slowlog_next_id += 1

    def _apply_expired(self, keys: list[bytes]) -> None:
        """Main applies deletions an expiry task proposed, if still due."""
        now = now_ms()
        with self.arena:
            for key in keys:
                if self.ks.expire_if_due(key, now):
                    self.active_expired += 1

    # -- periodic cycles ------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        if self.mode == "thread":
            for target in (self._expire_thread, self._slowlog_thread):
                t = threading.Thread(target=target, name=target.__name__, daemon=True)
                t.start()
                self._threads.append(t)
        else:
            self._bg.append(loop.create_task(self._expire_loop()))
            if self.mode == "orbit":
                self._bg.append(loop.create_task(self._slowlog_loop()))
                # BGSAVE's orbit is called rarely: start it now with its copy
                # of the arena, which orbitpy keeps current between calls, so
                # that the first BGSAVE does not copy the whole dataset.
                self._bgsave_orbit.orbit.warm()

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(TASK_PERIOD_S)
            if self.mode == "inline":
                t0 = time.perf_counter_ns()
                try:
                    expire_cycle(self.ks.expires, now_ms(), self._apply_expired,
                                 self.take_fault("expiry"))
                except Exception as e:  # a bug in the cycle: log, go on (as in an orbit)
                    self._failed("expiry", e)
                self._started("expiry", t0)
                continue
            try:
                t0 = time.perf_counter_ns()
                fut = self._expire_orbit.call_async(self.ks.expires, now_ms(),
                                                    self.take_fault("expiry"))
                self._started("expiry", t0)
                await asyncio.wrap_future(fut)
                for keys in fut.updates():
                    self._apply_expired(keys)
            except Exception as e:  # crashed, timed out (it restarts), or a bug: log, go on
                self._failed("expiry", e)

    async def _slowlog_loop(self) -> None:
        while True:
            await asyncio.sleep(TASK_PERIOD_S)
            if self.ring.next == self.slowlog_seen:
                continue
            try:
                t0 = time.perf_counter_ns()
                fut = self._slowlog_orbit.call_async(
                    self.ring.buffer, self.slowlog_seen, self.ring.next, self.slowlog_threshold_us,
                    self.take_fault("slowlog"))
                self._started("slowlog", t0)
                self.slowlog_seen = await asyncio.wrap_future(fut)
                for batch in fut.updates():
                    self._log_slow(batch)
            except Exception as e:
                self._failed("slowlog", e)

    def _expire_thread(self) -> None:
        loop = self._loop
        assert loop is not None
        while not self._stop.wait(TASK_PERIOD_S):
            try:
                expire_cycle(self.ks.expires, now_ms(),
                             lambda keys: loop.call_soon_threadsafe(self._apply_expired, keys),
                             self.take_fault("expiry"))
            except Exception as e:  # log, go on with the next cycle (as in an orbit)
                self._failed("expiry", e)

    def _slowlog_thread(self) -> None:
        loop = self._loop
        assert loop is not None
        while not self._stop.wait(TASK_PERIOD_S):
            try:
                self.slowlog_seen = scan_slowlog(
                    self.ring.buffer, self.slowlog_seen, self.ring.next, self.slowlog_threshold_us,
                    lambda batch: loop.call_soon_threadsafe(self._log_slow, batch),
                    self.take_fault("slowlog"))
            except Exception as e:
                self._failed("slowlog", e)

    # -- saving ------------------------------------------------------------------
    def save(self) -> None:
        """SAVE: write the file from main, blocking every client (as Redis)."""
        bgsave(self.ks.data, self.ks.expires, self.dump_path)
        self.lastsave = int(time.time())
        self.saves += 1

    def start_bgsave(self) -> str | None:
        """Start a BGSAVE; an error message if one is already running."""
        if self.bgsave_in_progress:
            return "ERR Background save already in progress"
        loop = self._loop
        assert loop is not None
        self.bgsave_in_progress = True
        if self.mode == "orbit":
            # The snapshot is taken before call_async returns: the file will
            # hold the dataset as of this command.
            fault, handle = self.take_fault("bgsave"), self._bgsave_orbit.orbit
            check_ns, copied = _check_ns(self.arena), handle.stats()["pages_copied"]
            t0 = time.perf_counter_ns()
            fut = self._bgsave_orbit.with_options(timeout=self.bgsave_timeout).call_async(
                self.ks.data, self.ks.expires, self.dump_path, fault)
            self._started("bgsave", t0)
            self.latest_fork_usec = (time.perf_counter_ns() - t0) // 1000
            self.latest_bgsave_check_usec = (_check_ns(self.arena) - check_ns) // 1000
            self.latest_bgsave_pages_copied = handle.stats()["pages_copied"] - copied
            self._bg.append(loop.create_task(self._await_bgsave(asyncio.wrap_future(fut))))
            return None
        fault = self.take_fault("bgsave")
        t0 = time.perf_counter_ns()
        pid = os.fork()
        if pid == 0:  # the child: write and leave without running any of main's clean-up
            code = 1
            try:
                bgsave(self.ks.data, self.ks.expires, self.dump_path, fault)
                code = 0
            finally:
                os._exit(code)
        self._started("bgsave", t0)
        self.latest_fork_usec = (time.perf_counter_ns() - t0) // 1000
        self._fork_pid = pid
        if self.mode == "thread":
            waiter = loop.run_in_executor(None, os.waitpid, pid, 0)
        else:
            waiter = loop.create_task(self._poll_child(pid))
        self._bg.append(loop.create_task(self._await_bgsave(waiter)))
        return None

    async def _poll_child(self, pid: int) -> tuple[int, int]:
        while True:  # Redis checks its child in serverCron, 10 times a second
            got, status = os.waitpid(pid, os.WNOHANG)
            if got:
                return got, status
            await asyncio.sleep(TASK_PERIOD_S)

    async def _await_bgsave(self, waiter: Any) -> None:
        try:
            result = await waiter
            ok = True
            if self.mode != "orbit":
                self._fork_pid = 0
                ok = os.waitstatus_to_exitcode(result[1]) == 0
        except Exception as e:  # an orbit error: the orbit restarts, the next BGSAVE runs
            self._failed("bgsave", e)
            ok = False
            if self.mode == "orbit":  # its new process: warm it, off the loop's thread
                self._bg.append(asyncio.ensure_future(self._rewarm_bgsave()))
        self.bgsave_in_progress = False
        self.last_bgsave_ok = ok
        if ok:
            self.lastsave = int(time.time())
            self.saves += 1

    async def _rewarm_bgsave(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self._bgsave_orbit.orbit.warm)
        except Exception as e:  # the next BGSAVE starts it the usual way
            self._failed("bgsave", e)

    def _started(self, task: str, t0: int) -> None:
        self.runs[task] += 1
        self.main_ns[task] += time.perf_counter_ns() - t0

    def take_fault(self, task: str) -> str | None:
        return self.faults.pop(task, None)

    def _failed(self, task: str, e: BaseException) -> None:
        """Report a task's failure, once until it fails differently or succeeds."""
        self.failures += 1
        text = f"kvserver: {task} task failed: {type(e).__name__}: {e}"
        if self._last_failure.get(task) != text:
            self._last_failure[task] = text
            print(text, flush=True)

    def shutdown(self) -> None:
        self._stop.set()
        for task in self._bg:
            task.cancel()
        if self._fork_pid:
            try:
                os.kill(self._fork_pid, 9)
                os.waitpid(self._fork_pid, 0)
            except ChildProcessError:
                pass
        for t in self._threads:
            t.join(timeout=5)
        orbitpy.shutdown(wait=False, cancel_futures=True)


def _check_ns(arena: orbitpy.Arena) -> int:
    """ns main has spent in orbitpy's pre-call checks so far (all arenas)."""
    return int(arena.stats()["checks"]["ns"])


def _trim(argv: list[bytes]) -> list[bytes]:
    return [a[:cmdring.SLOWLOG_MAX_ARG_LEN] for a in argv[:cmdring.SLOWLOG_MAX_ARGS]]
