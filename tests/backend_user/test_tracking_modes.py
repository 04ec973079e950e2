"""Userspace backend: the snapshot modes as mechanisms.

The 'mprotect' mode tracks writes with a SIGSEGV handler: its faults are
never seen by main's own SIGSEGV handler or faulthandler, and a genuine fault
still reaches them.  ORBITPY_SNAPSHOT chooses the default mode.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest


def run_python(code: str, env: dict[str, str] | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ORBITPY_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env,
                          capture_output=True, text=True, timeout=timeout)


# ------------------------------------------- mprotect faults and main's handlers

_FAULTHANDLER_SCRIPT = """
    import ctypes, faulthandler, os, sys
    import orbitpy

    MODE = "mprotect"
    if ENABLE_FIRST:
        faulthandler.enable()
    a = orbitpy.arena(1 << 20, snapshot=MODE)
    buf = a.buffer(64 * 4096)

    @orbitpy.orbit
    def total(b):
        return sum(b)

    for i in range(5):
        for p in range(0, len(buf), 4096):
            buf[p] = (buf[p] + 1) % 256
        assert total(buf) == sum(buf)
    if not ENABLE_FIRST:
        faulthandler.enable()
        for p in range(0, len(buf), 4096):  # pages write-protected again
            buf[p] = (buf[p] + 1) % 256
        assert total(buf) == sum(buf)
    print("orbit-pid", total.orbit.pid, flush=True)
    print("before-crash", flush=True)
    ctypes.string_at(0)
    print("survived", flush=True)
"""


def _orbit_gone(pid: int) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("enable_first", [True, False],
                         ids=["faulthandler-then-arena", "arena-then-faulthandler"])
def test_faulthandler_and_genuine_segfault_with_mprotect(enable_first: bool) -> None:
    proc = run_python(_FAULTHANDLER_SCRIPT.replace("ENABLE_FIRST", str(enable_first)))
    out, err = proc.stdout, proc.stderr
    # Tracking faults are not reported; the process got as far as the crash.
    assert "before-crash" in out, f"rc={proc.returncode}\nstdout:\n{out}\nstderr:\n{err}"
    assert err.count("Fatal Python error") == 1, err
    assert "survived" not in out
    # The genuine fault: faulthandler reports it and the process dies of it.
    assert proc.returncode == -signal.SIGSEGV, (proc.returncode, err)
    assert "Segmentation fault" in err
    assert "string_at" in err or "line" in err
    pid = int(out.split("orbit-pid", 1)[1].split()[0])
    assert _orbit_gone(pid), f"orbit {pid} outlived its crashed main"


def test_python_sigsegv_handler_chain_untouched_by_tracking_faults() -> None:
    """A SIGSEGV handler installed before an mprotect arena is not called for
    the arena's tracking faults, but still gets genuine faults."""
    code = """
        import ctypes, signal, os, sys
        import orbitpy

        calls = []
        a = None
        def handler(signum, frame):
            calls.append(signum)
            print("handler", len(calls), flush=True)
            os._exit(42)

        signal.signal(signal.SIGSEGV, handler)
        a = orbitpy.arena(1 << 20, snapshot="mprotect")
        buf = a.buffer(32 * 4096)

        @orbitpy.orbit
        def total(b):
            return sum(b)

        for i in range(3):
            for p in range(0, len(buf), 4096):
                buf[p] = i + 1
            assert total(buf) == sum(buf)
        print("tracking-ok", calls, flush=True)
        total.orbit.close()
        os.kill(os.getpid(), signal.SIGSEGV)
        print("survived", flush=True)
    """
    proc = run_python(code)
    assert "tracking-ok []" in proc.stdout, proc.stdout + proc.stderr
    assert "handler 1" in proc.stdout, proc.stdout + proc.stderr
    assert "survived" not in proc.stdout
    assert proc.returncode == 42, proc.stderr


# --------------------------------------------------- ORBITPY_SNAPSHOT

_ENV_SCRIPT = """
    import orbitpy
    a = orbitpy.arena(1 << 20)
    buf = a.buffer(4096)
    buf[0] = 7

    @orbitpy.orbit(areas=[a])
    def f():
        return 1

    @orbitpy.orbit
    def g(b):
        return b[0]

    assert f() == 1 and g(buf) == 7
    forced = orbitpy.arena(1 << 20, snapshot="full").snapshot_mode
    print(a.snapshot_mode, f.orbit.stats()["snapshot_mode"], g.orbit.stats()["snapshot_mode"],
          orbitpy.default_snapshot_mode(), forced)
    f.orbit.close()
    g.orbit.close()
"""


@pytest.mark.parametrize("env_mode", ["uffd", "mprotect", "full"])
def test_orbitpy_snapshot_environment_selects_the_default_mode(env_mode: str) -> None:
    proc = run_python(_ENV_SCRIPT, env={"ORBITPY_SNAPSHOT": env_mode})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [env_mode] * 4 + ["full"]


def test_orbitpy_snapshot_environment_auto_and_empty() -> None:
    for value in ("auto", ""):
        proc = run_python(_ENV_SCRIPT, env={"ORBITPY_SNAPSHOT": value})
        assert proc.returncode == 0, proc.stderr
        modes = proc.stdout.split()
        assert modes[0] in ("uffd", "mprotect", "full")
        assert modes == [modes[0]] * 4 + ["full"]


def test_invalid_orbitpy_snapshot_raises_value_error() -> None:
    code = """
        import orbitpy
        try:
            orbitpy.arena(1 << 20)
        except ValueError as e:
            print("ValueError", e)
        else:
            print("no error")
        print(orbitpy.arena(1 << 20, snapshot="mprotect").snapshot_mode)
    """
    proc = run_python(code, env={"ORBITPY_SNAPSHOT": "bogus"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("ValueError") and "bogus" in lines[0], proc.stdout
    assert lines[1] == "mprotect"
