"""Orbits and arenas after main forks (multiprocessing, os.fork)."""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable
from typing import Any

import orbitpy


def _child_calls(fn: Any, q: Any) -> None:
    try:
        q.put(("ok", fn(21), fn.orbit.pid, os.getpid()))
    except BaseException as e:  # noqa: BLE001 - report it to the parent
        q.put(("error", repr(e), 0, os.getpid()))


def _child_passes_arena(fn: Any, buf: memoryview, q: Any) -> None:
    try:
        fn(buf)
        q.put("no error")
    except orbitpy.OrbitError as e:
        q.put(str(e))


def test_forked_child_starts_its_own_orbit(make_orbit: Callable[..., Any]) -> None:
    @make_orbit
    def double(x: int) -> int:
        return 2 * x

    assert double(1) == 2
    parent_orbit = double.orbit.pid
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_calls, args=(double, q))
    p.start()
    status, value, child_orbit, child_pid = q.get(timeout=30)
    p.join(30)
    assert status == "ok" and value == 42, value
    assert child_orbit not in (0, parent_orbit)
    # The parent's orbit was not touched by the child.
    assert double(5) == 10 and double.orbit.pid == parent_orbit
    assert double.orbit.stats()["crashes"] == 0


def test_arena_from_the_parent_is_refused_clearly(make_orbit: Callable[..., Any]) -> None:
    arena = orbitpy.arena(1 << 20)
    buf = arena.buffer(4096)

    @make_orbit
    def first(b: memoryview) -> int:
        return b[0]

    assert first(buf) == 0
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_passes_arena, args=(first, buf, q))
    p.start()
    msg = q.get(timeout=30)
    p.join(30)
    assert "created in another process" in msg, msg
    assert first(buf) == 0
