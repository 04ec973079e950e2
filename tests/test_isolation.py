"""Isolation: faults, runaway loops, exceptions and bad input in an orbit never
hurt main, and the orbit never writes main's memory."""

from __future__ import annotations

import ctypes
import inspect
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import orbitpy
from conftest import full_syncs, snapshot_params
from orbitpy.errors import EXIT_OUT_OF_MEMORY

MakeOrbit = Callable[..., Any]


@pytest.fixture
def buf() -> Iterator[memoryview]:
    """A 4 KiB buffer in a fresh 1 MiB arena, holding 7 in its first byte."""
    arena = orbitpy.arena(1 << 20)
    view = arena.buffer(4096)
    view[0] = 7
    yield view
    view.release()
    try:
        arena.close()
    except RuntimeError:  # a failed test may still hold a view of it
        pass


# ------------------------------------------------------------------ crashes

def crash(kind: str) -> Any:
    """Make the calling orbit die in the way named by `kind`."""
    if kind == "segv":
        ctypes.string_at(0)
    elif kind == "abort":
        os.abort()
    elif kind == "exit3":
        os._exit(3)
    elif kind == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif kind == "huge-alloc":
        bytearray(512 << 20)
    elif kind == "grow-list":
        chunks = []
        for _ in range(1024):  # bounded: 1 GiB, far past any limit used here
            chunks.append(bytearray(1 << 20))
    else:
        raise AssertionError(f"unknown crash kind {kind!r}")
    return "survived"


MEMORY_LIMIT = 64 << 20
CRASHES = [
    # kind, orbit options, .signal, .exitcode, words in the message
    ("segv", {}, signal.SIGSEGV, None, "SIGSEGV"),
    ("abort", {}, signal.SIGABRT, None, "SIGABRT"),
    ("exit3", {}, None, 3, "status 3"),
    ("sigkill", {}, signal.SIGKILL, None, "SIGKILL"),
    ("huge-alloc", {"memory_limit": MEMORY_LIMIT}, None, EXIT_OUT_OF_MEMORY, "out of memory"),
    ("grow-list", {"memory_limit": MEMORY_LIMIT}, None, EXIT_OUT_OF_MEMORY, "out of memory"),
]


@pytest.mark.parametrize(("kind", "options", "sig", "exitcode", "words"), CRASHES,
                         ids=[c[0] for c in CRASHES])
def test_crash_kills_only_the_orbit_and_it_restarts(
        make_orbit: MakeOrbit, buf: memoryview, kind: str, options: dict[str, Any],
        sig: int | None, exitcode: int | None, words: str) -> None:
    @make_orbit(name="crasher", **options)
    def task(b: memoryview, kind: str | None = None) -> Any:
        if kind is not None:
            return crash(kind)
        return b[0]

    assert task(buf) == 7
    first_pid = task.orbit.pid
    assert first_pid > 0
    assert task.orbit.stats()["full_syncs"] == full_syncs(1)

    with pytest.raises(orbitpy.OrbitCrashed) as info:
        task(buf, kind)
    err = info.value
    assert err.signal == sig
    assert err.exitcode == exitcode
    message = str(err)
    assert "'crasher'" in message and words in message, message
    assert task.orbit.pid == 0  # no process until the next call

    # main is fine, and the next call runs on a new process that received
    # the arena in full (it sees main's latest write).
    buf[0] = 42
    assert task(buf) == 42
    assert task.orbit.pid not in (0, first_pid)
    st = task.orbit.stats()
    assert st["restarts"] == 1
    assert st["crashes"] == 1
    assert st["full_syncs"] == full_syncs(2)
    assert st["calls"] == 2


@pytest.mark.parametrize("snapshot", snapshot_params(["uffd", "mprotect", "full"]))
def test_segv_crashes_the_orbit_in_every_snapshot_mode(make_orbit: MakeOrbit,
                                                       snapshot: str) -> None:
    # mprotect tracking installs a SIGSEGV handler: a real fault in the orbit
    # must still kill it, not loop or be swallowed.
    arena = orbitpy.arena(1 << 20, snapshot)
    view = arena.buffer(4096)
    view[0] = 5

    @make_orbit
    def task(b: memoryview, fault: bool = False) -> int:
        if fault:
            ctypes.string_at(0)
        return b[0]

    assert task(view) == 5
    with pytest.raises(orbitpy.OrbitCrashed) as info:
        task(view, True)
    assert info.value.signal == signal.SIGSEGV
    view[0] = 6
    assert task(view) == 6
    view.release()
    arena.close()


def test_crash_reports_the_pid_of_the_dead_orbit(make_orbit: MakeOrbit) -> None:
    # OrbitCrashed documents ``pid``: the process id of the orbit that died.
    @make_orbit
    def task(die: bool) -> int:
        if die:
            os._exit(3)
        return os.getpid()

    pid = task(False)
    with pytest.raises(orbitpy.OrbitCrashed) as info:
        task(True)
    assert info.value.pid == pid


def test_crash_fails_the_running_and_the_queued_async_calls(make_orbit: MakeOrbit) -> None:
    @make_orbit
    def task(die: bool) -> str:
        if die:
            time.sleep(0.3)  # the two calls below are queued by now
            os.abort()
        return "ok"

    assert task(False) == "ok"
    futures = [task.call_async(True), task.call_async(False), task.call_async(False)]
    for fut in futures:
        with pytest.raises(orbitpy.OrbitCrashed) as info:
            fut.result(timeout=10)
        assert info.value.signal == signal.SIGABRT
    assert task(False) == "ok"
    assert task.orbit.stats()["crashes"] == 1


# ----------------------------------------------------------- restart policy

def dying_task(make_orbit: MakeOrbit, **options: Any) -> Any:
    @make_orbit(**options)
    def task(die: bool) -> int:
        if die:
            os._exit(1)
        return os.getpid()

    return task


def test_restart_false_closes_the_orbit_after_one_crash(make_orbit: MakeOrbit) -> None:
    task = dying_task(make_orbit, restart=False)
    assert task(False) > 0
    with pytest.raises(orbitpy.OrbitCrashed):
        task(True)
    with pytest.raises(orbitpy.OrbitClosed, match="restart=False"):
        task(False)
    with pytest.raises(orbitpy.OrbitClosed):
        task.call_async(False)


def test_restart_false_crash_message_does_not_promise_a_restart(
        make_orbit: MakeOrbit) -> None:
    task = dying_task(make_orbit, restart=False)
    with pytest.raises(orbitpy.OrbitCrashed) as info:
        task(True)
    assert "restarts on the next call" not in str(info.value), str(info.value)


def test_restart_limit_stops_restarting(make_orbit: MakeOrbit) -> None:
    task = dying_task(make_orbit, restart=2)
    for _ in range(3):
        with pytest.raises(orbitpy.OrbitCrashed) as info:
            task(True)
        assert info.value.exitcode == 1
    with pytest.raises(orbitpy.OrbitCrashed) as info:
        task(False)
    message = str(info.value)
    assert "3 times in a row" in message and "not restarting" in message, message
    assert info.value.exitcode is None  # no process ran this call
    st = task.orbit.stats()
    assert st["crashes"] == 3
    assert st["restarts"] == 2


def test_restart_after_the_limit_lets_calls_run_again(make_orbit: MakeOrbit) -> None:
    # The limit error says "call fn.orbit.restart() to retry"; orbit.h says
    # restart means a new process on the next call "whatever the restart
    # policy says".
    task = dying_task(make_orbit, restart=1)
    for _ in range(2):
        with pytest.raises(orbitpy.OrbitCrashed):
            task(True)
    with pytest.raises(orbitpy.OrbitCrashed, match="in a row"):
        task(False)
    task.orbit.restart()
    assert task(False) > 0


def test_successful_call_resets_the_consecutive_crash_count(make_orbit: MakeOrbit) -> None:
    task = dying_task(make_orbit, restart=2)
    for _ in range(3):  # 2 crashes, success, 2 crashes, success, ...
        for _ in range(2):
            with pytest.raises(orbitpy.OrbitCrashed):
                task(True)
        assert task(False) > 0
    st = task.orbit.stats()
    assert st["crashes"] == 6
    assert st["restarts"] == 6


def test_manual_restart_kills_the_process_without_counting_a_crash(
        make_orbit: MakeOrbit) -> None:
    task = dying_task(make_orbit)
    first = task(False)
    assert task.orbit.pid == first
    task.orbit.restart()
    assert task.orbit.pid == 0
    second = task(False)
    assert second not in (0, first)
    # the old process is gone
    with pytest.raises(ProcessLookupError):
        os.kill(first, 0)
    st = task.orbit.stats()
    assert st["crashes"] == 0
    assert st["restarts"] == 1


def test_manual_restart_fails_the_call_in_flight(make_orbit: MakeOrbit) -> None:
    @make_orbit
    def task(delay: float) -> float:
        time.sleep(delay)
        return delay

    assert task(0) == 0
    fut = task.call_async(30.0)
    time.sleep(0.1)
    task.orbit.restart()
    with pytest.raises(orbitpy.OrbitCrashed):
        fut.result(timeout=5)
    assert task(0.01) == 0.01
    assert task.orbit.stats()["crashes"] == 0


def test_consecutive_crashes_back_off_before_restarting(make_orbit: MakeOrbit) -> None:
    task = dying_task(make_orbit)  # restart=True: 5 in a row, backoff 10 ms doubling
    assert task(False) > 0
    with pytest.raises(orbitpy.OrbitCrashed):
        task(True)  # crash 1, on the running process: no restart yet
    durations = []
    for _ in range(3):  # restarts 1, 2, 3 (backoff ~10, ~20, ~40 ms)
        start = time.monotonic()
        with pytest.raises(orbitpy.OrbitCrashed):
            task(True)
        durations.append(time.monotonic() - start)
    # Lower bounds only (load can only lengthen a restart): each wait is at
    # least its backoff, and the backoff doubles.
    assert durations[0] >= 0.008, durations
    assert durations[1] >= 0.018, durations
    assert durations[2] >= 0.038, durations
    assert task.orbit.stats()["restarts"] == 3


# ----------------------------------------------------------------- timeouts

@pytest.fixture
def spinner(make_orbit: MakeOrbit) -> Any:
    @make_orbit(name="spinner", timeout=0.3)
    def spin(forever: bool) -> int:
        if forever:
            while True:
                pass
        return os.getpid()

    return spin


def test_timeout_kills_a_runaway_call_and_main_stays_responsive(spinner: Any) -> None:
    first = spinner(False)
    count = 0
    stop = threading.Event()

    def tick() -> None:
        nonlocal count
        while not stop.is_set():
            count += 1

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        time.sleep(0.05)
        before = count
        start = time.monotonic()
        with pytest.raises(orbitpy.OrbitTimeout) as info:
            spinner(True)
        elapsed = time.monotonic() - start
        during = count - before
    finally:
        stop.set()
        ticker.join(5)
    assert not isinstance(info.value, TimeoutError)  # the call ran too long, not a wait
    assert "timeout" in str(info.value) and "'spinner'" in str(info.value)
    assert 0.25 <= elapsed <= 3, elapsed
    assert during > 1000, f"main's thread barely ran while waiting: {during} ticks"
    second = spinner(False)
    assert second not in (0, first)


def test_async_call_that_times_out_fails_its_future(spinner: Any) -> None:
    spinner(False)
    start = time.monotonic()
    fut = spinner.call_async(True)
    with pytest.raises(orbitpy.OrbitTimeout):
        fut.result(timeout=10)
    assert 0.25 <= time.monotonic() - start <= 3
    assert spinner(False) > 0


# --------------------------------------------------------------- exceptions

class CustomError(Exception):
    pass


def test_exception_is_reraised_with_type_args_and_remote_traceback(
        make_orbit: MakeOrbit) -> None:
    @make_orbit
    def failing_task(x: int) -> None:
        raise CustomError("bad value", x)

    with pytest.raises(CustomError) as info:
        failing_task(3)
    exc = info.value
    assert type(exc) is CustomError
    assert exc.args == ("bad value", 3)
    cause = exc.__cause__
    assert isinstance(cause, orbitpy.RemoteTraceback)
    source, first = inspect.getsourcelines(failing_task.__wrapped__)
    line = first + next(i for i, text in enumerate(source) if "raise CustomError" in text)
    assert "failing_task" in cause.tb
    assert f"line {line}" in cause.tb, cause.tb
    assert "CustomError" in str(cause)
    # the orbit survives an exception
    with pytest.raises(CustomError):
        failing_task(4)
    assert failing_task.orbit.stats()["crashes"] == 0


def test_async_exception_is_reraised_from_the_future(make_orbit: MakeOrbit) -> None:
    @make_orbit
    def task() -> None:
        raise KeyError("k")

    with pytest.raises(KeyError) as info:
        task.call_async().result(timeout=10)
    assert isinstance(info.value.__cause__, orbitpy.RemoteTraceback)


def test_unpicklable_exception_gives_a_clear_orbit_error(make_orbit: MakeOrbit) -> None:
    @make_orbit
    def task() -> None:
        class LockedError(Exception):
            def __init__(self) -> None:
                super().__init__("holding a lock")
                self.lock = threading.Lock()

        raise LockedError()

    with pytest.raises(orbitpy.OrbitError) as info:
        task()
    assert "LockedError" in str(info.value) and "holding a lock" in str(info.value)
    assert isinstance(info.value.__cause__, orbitpy.RemoteTraceback)


class NeedsTwoArgs(Exception):
    """Pickles fine but cannot be rebuilt by unpickling (args has one item)."""

    def __init__(self, a: object, b: object) -> None:
        super().__init__(a)
        self.b = b


def test_exception_that_cannot_be_rebuilt_in_main_gives_a_clear_orbit_error(
        make_orbit: MakeOrbit) -> None:
    @make_orbit
    def task() -> None:
        raise NeedsTwoArgs(1, 2)

    with pytest.raises(orbitpy.OrbitError) as info:
        task()
    assert "NeedsTwoArgs" in str(info.value)


def test_unpicklable_result_gives_a_clear_orbit_error(make_orbit: MakeOrbit) -> None:
    @make_orbit
    def task() -> Any:
        return threading.Lock()

    with pytest.raises(orbitpy.OrbitError, match="could not be sent back") as info:
        task()
    assert "task" in str(info.value) and "lock" in str(info.value)
    assert task.orbit.stats()["crashes"] == 0


def test_unpicklable_argument_raises_type_error_in_main(make_orbit: MakeOrbit) -> None:
    @make_orbit(name="identity")
    def identity(x: Any) -> Any:
        return x

    with pytest.raises(TypeError, match="'identity'"):
        identity(threading.Lock())
    assert identity.orbit.pid == 0  # nothing ran: no process was even started
    assert identity.orbit.stats()["calls"] == 0
    with pytest.raises(TypeError, match="'identity'"):
        identity.call_async(x=threading.Lock())
    assert identity(1) == 1


def test_lambdas_and_closures_cross_both_ways(make_orbit: MakeOrbit) -> None:
    offset = 5

    @make_orbit
    def apply(f: Callable[[int], int], x: int) -> Callable[[int], int]:
        y = f(x)
        return lambda z: z * y

    times = apply(lambda v: v + offset, 1)
    assert times(2) == 12

    def make_adder(n: int) -> Callable[[int], int]:
        def add(v: int) -> int:
            return v + n

        return add

    assert apply(make_adder(10), 0)(3) == 30


# ---------------------------------------------------------------- bad input

def test_orbit_rejects_bad_options() -> None:
    with pytest.raises(TypeError):
        orbitpy.orbit(42)  # type: ignore[call-overload]
    for timeout in (0, -1, -0.5):
        with pytest.raises(ValueError, match="timeout"):
            orbitpy.orbit(timeout=timeout)
    for limit in (0, -1):
        with pytest.raises(ValueError, match="memory_limit"):
            orbitpy.orbit(memory_limit=limit)
    with pytest.raises(TypeError, match="arena"):
        orbitpy.orbit(areas=[object()])  # type: ignore[list-item]


def test_calls_after_close_raise_orbit_closed(make_orbit: MakeOrbit) -> None:
    @make_orbit
    def task() -> int:
        return 1

    assert task() == 1
    pid = task.orbit.pid
    task.orbit.close()
    task.orbit.close()  # idempotent
    assert task.orbit.closed
    with pytest.raises(orbitpy.OrbitClosed):
        task()
    with pytest.raises(orbitpy.OrbitClosed):
        task.call_async()
    deadline = time.monotonic() + 3
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not os.path.exists(f"/proc/{pid}")


def test_close_before_first_call(make_orbit: MakeOrbit) -> None:
    @make_orbit
    def task() -> int:
        return 1

    task.orbit.close()
    with pytest.raises(orbitpy.OrbitClosed):
        task()


def test_arena_rejects_bad_sizes() -> None:
    for size in (0, -1):
        with pytest.raises(ValueError):
            orbitpy.arena(size)
    with pytest.raises(ValueError, match="reserv"):
        orbitpy.arena(1 << 60)
    arena = orbitpy.arena(1 << 16)
    with pytest.raises(ValueError):
        arena.buffer(0)
    arena.close()


def test_filling_an_arena_raises_arena_full() -> None:
    arena = orbitpy.arena(1 << 16)
    views = []
    with pytest.raises(orbitpy.ArenaFull) as info:
        for _ in range(64):
            views.append(arena.buffer(4096))
    assert isinstance(info.value, MemoryError)
    assert 0 < len(views) < 16
    for v in views:
        v.release()
    arena.close()


def test_push_outside_an_orbit_raises() -> None:
    with pytest.raises(orbitpy.OrbitError, match="inside an orbit"):
        orbitpy.push(1)


# -------------------------------------------------------- memory isolation

@pytest.mark.parametrize("snapshot", snapshot_params(["uffd", "mprotect", "full"]))
def test_orbit_never_writes_main_memory(make_orbit: MakeOrbit, snapshot: str) -> None:
    arena = orbitpy.arena(1 << 20, snapshot)
    view = arena.buffer(4096)
    view[0] = 1

    @make_orbit
    def scribble(b: memoryview) -> int:
        seen = b[0]
        b[0] = 99
        b[4000] = 99
        return seen

    assert scribble(view) == 1
    assert view[0] == 1 and view[4000] == 0
    assert scribble(view) == 1  # the orbit's own write was discarded
    view[0] = 2
    assert scribble(view) == 2
    assert view[0] == 2 and view[4000] == 0
    view.release()
    arena.close()


# ---------------------------------------------------- resource isolation

def test_nice_is_added_to_main_niceness(make_orbit: MakeOrbit) -> None:
    @make_orbit(nice=10)
    def niceness() -> int:
        return os.nice(0)

    main = os.nice(0)
    assert niceness() == min(main + 10, 19)
    assert os.nice(0) == main


def test_cpus_restrict_the_orbit_affinity(make_orbit: MakeOrbit) -> None:
    @make_orbit(cpus=[0])
    def affinity() -> set[int]:
        return os.sched_getaffinity(0)

    before = os.sched_getaffinity(0)
    assert affinity() == {0}
    assert os.sched_getaffinity(0) == before


def test_in_orbit_and_pid(make_orbit: MakeOrbit) -> None:
    @make_orbit
    def where() -> tuple[bool, int]:
        return orbitpy.in_orbit(), os.getpid()

    inside, pid = where()
    assert inside is True
    assert orbitpy.in_orbit() is False
    assert pid != os.getpid()
    assert pid == where.orbit.pid
