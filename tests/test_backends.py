"""The Python layer's backend modules (_backend_user, _backend_kernel) and
the choice ORBITPY_BACKEND makes: forcing the kernel backend on a kernel
without the orbit system calls fails at import, saying why."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap

import pytest

from orbitpy import _arena, _backend_kernel, _backend_user, _core

NAMES = ("NAME", "MODES", "check_size", "snapshot_mode", "area_error", "area_created")


def run_python(code: str, backend: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("ORBITPY_BACKEND", None)
    if backend is not None:
        env["ORBITPY_BACKEND"] = backend
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=60)


def test_modules_provide_the_same_names() -> None:
    for name in NAMES:
        assert hasattr(_backend_user, name), name
        assert hasattr(_backend_kernel, name), name
    assert _backend_user.NAME != _backend_kernel.NAME
    assert set(_arena._BACKENDS) == {_backend_user.NAME, _backend_kernel.NAME}
    assert _arena._backend is _arena._BACKENDS[_core.BACKEND]


def test_forced_kernel_backend_without_the_calls_fails_clearly() -> None:
    if _backend_kernel.kernel_has_orbit_calls():
        pytest.skip("this kernel has the orbit calls: forcing the backend works")
    # The C core took the kernel backend (its name, NAME, is what the
    # module checks before it refuses), the Python layer refuses it.
    r = run_python("import orbitpy", "kernel")
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"OSError: [Errno {errno.ENOSYS}]"), r.stderr
    assert "ORBITPY_BACKEND=kernel" in last
    assert "no orbit system calls" in last
    assert "unset ORBITPY_BACKEND" in last


def test_other_choices_work() -> None:
    code = """
        import orbitpy
        from orbitpy import _core
        print(_core.BACKEND)
    """
    # auto: the kernel backend where the kernel answers its probe.
    auto = _backend_kernel.NAME if _backend_kernel.kernel_has_orbit_calls() else \
        _backend_user.NAME
    for backend, expect in ((None, auto), ("auto", auto), ("user", _backend_user.NAME)):
        r = run_python(code, backend)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == expect


def test_kernel_area_errors_say_why() -> None:
    e = _backend_kernel.area_error(OSError(errno.ENOSYS, "x"), 4096, "auto", 1 << 30)
    assert isinstance(e, OSError) and e.errno == errno.ENOSYS
    assert "no orbit system calls" in str(e)
    e = _backend_kernel.area_error(OSError(errno.ENOTSUP, "x"), 4096, "mprotect", 1 << 30)
    assert isinstance(e, OSError) and e.errno == errno.ENOTSUP
    assert "'mprotect'" in str(e) and "kernel backend" in str(e)
    e = _backend_kernel.area_error(OSError(errno.ENOMEM, "x"), 4096, "auto", 1 << 30)
    assert isinstance(e, MemoryError)
    assert _backend_kernel.area_error(OSError(errno.EIO, "x"), 4096, "auto", 1 << 30) is None


def test_kernel_backend_refuses_mprotect_saying_why() -> None:
    """The kernel backend makes no area in 'mprotect' mode (its read-only
    pieces of main's mapping would not match the orbit's mapping, which
    orbit_update needs); the other modes work (conftest.UNAVAILABLE_MODES
    skips mprotect's parametrizations for it)."""
    if _core.BACKEND != _backend_kernel.NAME:
        pytest.skip("the kernel backend is not the one running (ORBITPY_BACKEND=kernel "
                    "on a kernel with the orbit calls: kernel/run-tests, ORBITPY_VM_PYTHON)")
    import orbitpy

    with pytest.raises(OSError) as info:
        orbitpy.arena(1 << 20, "mprotect")
    assert info.value.errno == errno.ENOTSUP
    assert "'mprotect'" in str(info.value) and "kernel backend" in str(info.value)
    for mode in ("uffd", "full", "auto"):
        orbitpy.arena(1 << 20, mode).close()
