"""Shared fixtures: every test must leave no orbit process behind."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import orbitpy
from orbitpy import _backend_kernel, _backend_user, _core


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


def open_fds() -> set[int]:
    return {int(x) for x in os.listdir("/proc/self/fd")}


def orbit_fds(pid: int) -> list[str]:
    """What the orbit process `pid` holds open, as /proc shows it."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return out


@pytest.fixture
def make_orbit() -> Iterator[Callable[..., Any]]:
    """Like orbitpy.orbit (bare or with options); closes every orbit it made."""
    made: list[orbitpy.OrbitFunction[Any, Any]] = []

    def make(fn: Any = None, **options: Any) -> Any:
        def wrap(f: Any) -> Any:
            of = orbitpy.orbit(**options)(f)
            made.append(of)
            return of

        return wrap(fn) if fn is not None else wrap

    yield make
    for of in made:
        of.orbit.close()


@pytest.fixture(autouse=True)
def no_leaked_orbits() -> Iterator[None]:
    before = child_pids()
    yield
    deadline = time.monotonic() + 5
    extra = child_pids() - before
    while extra and time.monotonic() < deadline:
        time.sleep(0.02)
        extra = child_pids() - before
    assert not extra, f"processes left behind by the test: {sorted(extra)}"


@pytest.fixture
def new_arena() -> Iterator[Callable[..., orbitpy.Arena]]:
    """orbitpy.arena(size, snapshot); closes the arenas once the test's
    buffers are gone (so that big arenas do not pile up in the reservation)."""
    made: list[orbitpy.Arena] = []

    def make(size: int, snapshot: str | None = None) -> orbitpy.Arena:
        a = orbitpy.arena(size, snapshot=snapshot)
        made.append(a)
        return a

    yield make
    gc.collect()
    for a in made:
        try:
            a.close()
        except RuntimeError:
            pass  # a buffer is still referenced (e.g. by a failure's traceback)


# The backend the tests run with (ORBITPY_BACKEND; tests/test_backends.py
# tests the choice).  The userspace backend copies the pages of main a call
# needs into the orbit and counts them: pages_copied, and full_syncs (areas
# sent whole, to a new orbit process).  The kernel backend shares main's
# pages copy-on-write (orbit_update, kernel/README.md): it copies nothing,
# and reports 0 for both, as the seam says of such a backend
# (csrc/orbit_sys.h, "Copy statistics").
BACKEND = _core.BACKEND
BACKEND_COPIES = BACKEND == _backend_user.NAME


def full_syncs(n: int) -> int:
    """stats()["full_syncs"] after `n` areas were sent whole to new orbit
    processes: n where the backend copies, 0 where it shares."""
    return n if BACKEND_COPIES else 0


SNAPSHOT_MODES = ["uffd", "mprotect", "full"]
# Snapshot modes the backend refuses to make areas with, and why.
UNAVAILABLE_MODES = {
    "mprotect": "the kernel backend refuses the 'mprotect' mode (ENOTSUP: its read-only "
                "pieces of main's mapping would not match the orbit's, which orbit_update "
                "needs; tests/test_backends.py checks the refusal)",
} if BACKEND == _backend_kernel.NAME else {}


def snapshot_params(modes: list[str]) -> list[Any]:
    """`modes` for pytest.mark.parametrize: those the backend refuses are
    skipped, saying why."""
    return [pytest.param(m, marks=pytest.mark.skip(reason=UNAVAILABLE_MODES[m]))
            if m in UNAVAILABLE_MODES else m for m in modes]


@pytest.fixture(params=snapshot_params(SNAPSHOT_MODES))
def mode(request: pytest.FixtureRequest) -> str:
    """Each snapshot mode in turn."""
    return str(request.param)


@pytest.fixture
def no_background_sync() -> Iterator[None]:
    """Stop the copying between calls (the userspace backend's
    background_sync) for a test that counts the pages each call copies: with
    it on, pages main wrote a while before a call may be copied before it.
    A backend that copies nothing has no such copying to stop (its
    set_background_sync fails with ENOTSUP)."""
    if not BACKEND_COPIES:
        yield
        return
    prev = _core.set_background_sync(0)
    yield
    _core.set_background_sync(prev)
