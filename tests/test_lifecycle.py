"""An orbit's life seen from main: exits inside orbits, futures across fork,
shutdown and interpreter exit, and what errors tell."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from typing import Any

import pytest

import orbitpy
from conftest import snapshot_params


def run_script(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout)


# ------------------------------------------------- exits inside an orbit

def test_sys_exit_in_orbit_is_an_orbit_error(make_orbit: Callable[..., Any]) -> None:
    @make_orbit
    def task(code: Any) -> None:
        sys.exit(code)

    with pytest.raises(orbitpy.OrbitExit) as info:
        task(3)
    assert isinstance(info.value, orbitpy.OrbitError)
    assert info.value.code == 3
    assert "SystemExit" in str(info.value) and "3" in str(info.value)
    with pytest.raises(orbitpy.OrbitExit) as info:
        task.call_async("usage: bad option").result(30)
    assert info.value.code == "usage: bad option"
    assert task.orbit.stats()["crashes"] == 0


def test_argparse_error_in_orbit_does_not_end_main() -> None:
    r = run_script("""
        import argparse, orbitpy

        @orbitpy.orbit
        def task(argv):
            argparse.ArgumentParser(prog="task").parse_args(argv)

        try:
            task(["--nope"])
        except orbitpy.OrbitError as e:
            print("caught", type(e).__name__, e.code)
        print("main goes on")
        """)
    assert r.returncode == 0, r.stderr
    assert "caught OrbitExit 2" in r.stdout and "main goes on" in r.stdout


@pytest.mark.parametrize("exc", ["KeyboardInterrupt", "GeneratorExit"])
def test_base_exceptions_in_orbit_arrive_as_orbit_errors(make_orbit: Callable[..., Any],
                                                         exc: str) -> None:
    @make_orbit
    def task() -> None:
        import builtins

        raise getattr(builtins, exc)()

    with pytest.raises(orbitpy.OrbitExit) as info:
        task()
    assert exc in str(info.value)
    assert info.value.orbit_traceback and exc in info.value.orbit_traceback


# ------------------------------------------------- futures across fork

def test_inherited_future_fails_in_child_and_parent_is_unaffected(
        make_orbit: Callable[..., Any]) -> None:
    @make_orbit
    def slow(x: int) -> int:
        time.sleep(0.3)
        return 2 * x

    fut = slow.call_async(21)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: must not take the parent's answer
        os.close(r)
        try:
            fut.result(5)
            msg = b"got the parent's answer"
        except orbitpy.OrbitError as e:
            msg = str(e).encode()
        except BaseException as e:  # noqa: BLE001 - report anything
            msg = repr(e).encode()
        os.write(w, msg)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        child_said = f.read().decode()
    os.waitpid(pid, 0)
    assert "inherited" in child_said and "fork" in child_said, child_said
    assert fut.result(30) == 42
    assert slow(5) == 10
    assert slow.orbit.stats()["crashes"] == 0


# ------------------------------------------------- what errors tell

class TwoArgError(Exception):
    """Pickles, but cannot be rebuilt: __init__ needs two arguments."""

    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"{what} failed because {why}")


def test_exception_that_cannot_be_rebuilt_keeps_message_and_traceback(
        make_orbit: Callable[..., Any]) -> None:
    @make_orbit
    def task() -> None:
        def deep_inside() -> None:
            raise TwoArgError("expiry", "the clock went backwards")
        deep_inside()

    with pytest.raises(orbitpy.OrbitError) as info:
        task()
    e = info.value
    assert "TwoArgError" in str(e) and "expiry failed because the clock went backwards" in str(e)
    assert isinstance(e.__cause__, orbitpy.RemoteTraceback)
    assert "deep_inside" in e.__cause__.tb
    assert "deep_inside" in e.orbit_traceback  # type: ignore[attr-defined]


def test_exception_that_cannot_be_pickled_keeps_message_and_traceback(
        make_orbit: Callable[..., Any]) -> None:
    @make_orbit
    def task() -> None:
        import threading

        e = ValueError("bad value 17")
        e.lock = threading.Lock()  # type: ignore[attr-defined]
        raise e

    with pytest.raises(orbitpy.OrbitError) as info:
        task()
    assert "ValueError: bad value 17" in str(info.value)
    assert "cannot be pickled" in str(info.value)
    assert "task" in info.value.orbit_traceback  # type: ignore[attr-defined]


# ------------------------------------------------- shutdown and exit

def test_exit_does_not_wait_for_a_thread_blocked_in_a_call() -> None:
    t0 = time.monotonic()
    r = run_script("""
        import threading, time, orbitpy

        @orbitpy.orbit
        def busy():
            time.sleep(60)

        def worker():
            try:
                busy()
            except orbitpy.OrbitClosed as e:
                print("worker:", e, flush=True)

        threading.Thread(target=worker).start()   # not a daemon
        time.sleep(0.5)                            # the call is running
        print("main done", flush=True)
        """, timeout=50)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert "main done" in r.stdout
    assert "worker:" in r.stdout and "interpreter exit" in r.stdout, r.stdout
    assert took < 20, f"exit took {took:.1f} s while the orbit slept 60 s"


def test_pending_futures_at_exit_are_cancelled_with_a_warning() -> None:
    t0 = time.monotonic()
    r = run_script("""
        import time, orbitpy

        @orbitpy.orbit
        def busy(i):
            time.sleep(60)

        futs = [busy.call_async(i) for i in range(3)]
        print("main done", flush=True)
        """, timeout=50)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 20
    assert "pending calls cancelled at interpreter exit" in r.stderr, r.stderr
    assert "orbitpy.shutdown(wait=True)" in r.stderr


def test_module_shutdown_waits_for_pending_calls() -> None:
    r = run_script("""
        import time, orbitpy

        @orbitpy.orbit
        def slow(i):
            time.sleep(0.2)
            return i * 10

        futs = [slow.call_async(i) for i in range(3)]
        orbitpy.shutdown(wait=True)
        print("results", [f.result(0) for f in futs], slow.orbit.closed)
        try:
            slow(1)
        except orbitpy.OrbitClosed as e:
            print("after:", e)
        """, timeout=50)
    assert r.returncode == 0, r.stderr
    assert "results [0, 10, 20] True" in r.stdout, r.stdout
    assert "after:" in r.stdout and "shut down" in r.stdout
    assert "cancelled at interpreter exit" not in r.stderr


def test_handle_shutdown_without_wait_fails_pending_calls(make_orbit: Callable[..., Any]) -> None:
    @make_orbit
    def slow(i: int) -> int:
        time.sleep(30)
        return i

    futs = [slow.call_async(i) for i in range(2)]
    t0 = time.monotonic()
    slow.orbit.shutdown(wait=False)
    for f in futs:
        with pytest.raises(orbitpy.OrbitClosed):
            f.result(10)
    assert time.monotonic() - t0 < 10
    with pytest.raises(orbitpy.OrbitClosed, match="shut down"):
        slow(1)


def test_shutdown_cancel_futures(make_orbit: Callable[..., Any]) -> None:
    @make_orbit
    def slow(i: int) -> int:
        time.sleep(30)
        return i

    futs = [slow.call_async(i) for i in range(3)]
    t0 = time.monotonic()
    slow.orbit.shutdown(wait=True, cancel_futures=True)
    assert time.monotonic() - t0 < 10
    for f in futs:
        with pytest.raises(orbitpy.OrbitClosed):
            f.result(10)


def test_orbit_function_and_handle_are_context_managers(
        make_orbit: Callable[..., Any]) -> None:
    @make_orbit
    def slow(i: int) -> int:
        time.sleep(0.1)
        return i + 1

    with slow as fn:
        assert fn is slow
        futs = [fn.call_async(i) for i in range(3)]
    assert slow.orbit.closed
    assert [f.result(0) for f in futs] == [1, 2, 3]

    @make_orbit
    def other() -> int:
        return 7

    with other.orbit as h:
        assert other() == 7
    assert h is other.orbit and h.closed
    with pytest.raises(orbitpy.OrbitClosed):
        other()


# ------------------------------------------------- crashes tell where

@pytest.mark.parametrize("snapshot", snapshot_params(["uffd", "mprotect", "full"]))
def test_crash_carries_the_orbits_last_traceback(make_orbit: Callable[..., Any],
                                                new_arena: Callable[..., Any],
                                                snapshot: str,
                                                caplog: pytest.LogCaptureFixture) -> None:
    arena = new_arena(1 << 20, snapshot)
    buf = arena.buffer(4096)

    @make_orbit
    def task(b: memoryview, crash: bool) -> int:
        def crash_here() -> None:
            import ctypes
            ctypes.string_at(0)  # a real SIGSEGV

        if crash:
            crash_here()
        return b[0]

    buf[0] = 5
    assert task(buf, False) == 5
    with caplog.at_level("ERROR", logger="orbitpy"):
        with pytest.raises(orbitpy.OrbitCrashed) as info:
            task(buf, True)
    e = info.value
    assert e.signal == 11, e  # faulthandler re-raises: still a SIGSEGV
    assert e.orbit_traceback and "crash_here" in e.orbit_traceback, e.orbit_traceback
    assert " in _submit" not in e.orbit_traceback  # main's frames at the fork: left out
    assert "crash_here" in str(e)
    logged = [r for r in caplog.records if r.name == "orbitpy"]
    assert len(logged) == 1 and "crash_here" in logged[0].getMessage()
    assert "restarts on the next call" in logged[0].getMessage()
    # The next process reports its own crash, not the old one's.
    buf[0] = 6
    assert task(buf, False) == 6
    with pytest.raises(orbitpy.OrbitCrashed) as info:
        task(buf, True)
    assert info.value.pid != e.pid and "crash_here" in (info.value.orbit_traceback or "")


def test_crash_traceback_reaches_stderr_without_logging_setup() -> None:
    r = run_script("""
        import ctypes, orbitpy

        @orbitpy.orbit
        def task():
            def crash_here():
                ctypes.string_at(0)
            crash_here()

        try:
            task()
        except orbitpy.OrbitCrashed:
            print("caught")
        """)
    assert r.returncode == 0, r.stderr
    assert "caught" in r.stdout
    assert "SIGSEGV" in r.stderr and "crash_here" in r.stderr, r.stderr


# ------------------------------------------------- misuse said clearly

def test_async_def_is_rejected_at_decoration() -> None:
    async def fetch(x: int) -> int:
        return x

    with pytest.raises(TypeError, match=r"async.*asyncio\.run"):
        orbitpy.orbit(fetch)
    with pytest.raises(TypeError, match="async"):
        orbitpy.orbit(timeout=1)(fetch)

    async def agen() -> Any:
        yield 1

    with pytest.raises(TypeError, match="async"):
        orbitpy.orbit(agen)


def test_orbit_on_a_method_says_how(make_orbit: Callable[..., Any]) -> None:
    class Service:
        factor = 3

        @make_orbit
        def check(self, x: int) -> int:
            return x * self.factor

        @make_orbit
        @staticmethod
        def double(x: int) -> int:
            return 2 * x

        def plain(self, x: int) -> int:
            return x * self.factor

    s = Service()
    with pytest.raises(TypeError, match=r"bound method.*staticmethod"):
        s.check(1)
    assert s.double(4) == 8 and Service.double(5) == 10
    bound = make_orbit(s.plain)
    assert bound(2) == 6


def _run_with_env(code: str, env: dict[str, str], as_limit: int | None = None
                  ) -> subprocess.CompletedProcess[str]:
    import resource

    def limit() -> None:
        if as_limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (as_limit, as_limit))

    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **env}, preexec_fn=limit)


ARENA_SCRIPT = """
    import orbitpy
    try:
        a = orbitpy.arena(1 << 20)
        print("arena ok", a.stats()["size"])
    except (MemoryError, ValueError) as e:
        print(type(e).__name__ + ":", e)
    """


@pytest.mark.parametrize("value", ["lots", "8X", "0", "-1", "4G4", ""])
def test_invalid_orbitpy_reserve_is_rejected(value: str) -> None:
    r = _run_with_env(ARENA_SCRIPT, {"ORBITPY_RESERVE": value})
    assert r.returncode == 0, r.stderr
    if value == "":  # unset in effect: the default
        assert "arena ok" in r.stdout, r.stdout
    else:
        assert "ValueError:" in r.stdout and "ORBITPY_RESERVE" in r.stdout, r.stdout
        assert repr(value) in r.stdout, r.stdout


def test_reservation_beyond_ulimit_v_says_reserve_less() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ORBITPY_RESERVE"}
    four_gib = 4 << 30
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(ARENA_SCRIPT)],
                       capture_output=True, text=True, timeout=60, env=env,
                       preexec_fn=lambda: __import__("resource").setrlimit(
                           __import__("resource").RLIMIT_AS, (four_gib, four_gib)))
    assert r.returncode == 0, r.stderr
    assert "MemoryError:" in r.stdout, r.stdout
    assert "reserve less" in r.stdout and "ORBITPY_RESERVE" in r.stdout, r.stdout
    assert "reserve more" not in r.stdout
    r = _run_with_env(ARENA_SCRIPT, {"ORBITPY_RESERVE": "1G"}, as_limit=four_gib)
    assert r.returncode == 0, r.stderr
    assert "arena ok" in r.stdout, r.stdout


def test_timeout_carries_where_the_call_was(make_orbit: Callable[..., Any],
                                            caplog: pytest.LogCaptureFixture) -> None:
    @make_orbit(timeout=1)
    def task(stuck: bool) -> int:
        def stuck_here() -> None:
            time.sleep(30)

        if stuck:
            stuck_here()
        return 1

    assert task(False) == 1
    with caplog.at_level("ERROR", logger="orbitpy"):
        with pytest.raises(orbitpy.OrbitTimeout) as info:
            task(True)
    tb = info.value.orbit_traceback
    assert tb and "stuck_here" in tb, tb
    assert "_watch_for_timeout" not in tb and " in _submit" not in tb, tb
    assert "stuck_here" in str(info.value)
    assert any("overran its timeout" in r.getMessage() and "stuck_here" in r.getMessage()
               for r in caplog.records if r.name == "orbitpy")
    assert task(False) == 1  # restarted


def test_idle_orbits_still_serve_atexit_handlers() -> None:
    r = run_script("""
        import atexit, orbitpy

        @orbitpy.orbit
        def flush(n):
            return n + 1

        assert flush(1) == 2
        atexit.register(lambda: print("atexit got", flush(41), flush.orbit.closed, flush=True))
        """)
    assert r.returncode == 0, r.stderr
    assert "atexit got 42 False" in r.stdout, r.stdout + r.stderr
