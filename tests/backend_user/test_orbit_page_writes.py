"""Userspace backend: pages the orbit writes while it reads arena objects.

The orbit drops the pages it wrote before its next call (pages_reset); how
many it writes by reading arena objects depends on CPython (3.12+: none).
"""

from __future__ import annotations

import gc
import sys
from typing import Any

import pytest

from objects_util import fill_free_lists

BIG = 1 << 40  # ints far beyond CPython's small-int cache: each one is a new object
TRACKED_MODES = ["uffd", "mprotect"]


@pytest.fixture(autouse=True)
def settled_free_lists() -> None:
    """As in test_arena_objects.py: the same free-list state for every test."""
    gc.collect()
    fill_free_lists()


class WithSlots:
    __slots__ = ("a", "b")

    def __init__(self, a: Any, b: Any) -> None:
        self.a = a
        self.b = b


@pytest.mark.parametrize("snapshot", TRACKED_MODES)
def test_reading_arena_objects_writes_nothing_in_the_orbit_where_python_allows(
        snapshot: str, make_orbit: Any, new_arena: Any) -> None:
    """3.12+: the orbit's copies of checked objects are immortal there, so
    reading them (which increments and decrements their reference counts)
    writes no page the orbit must drop before its next call.  3.11 has no
    immortal objects: every page read is written, and dropped."""
    arena = new_arena(16 << 20, snapshot=snapshot)
    with arena:
        table = {i: WithSlots(BIG + i, str(i) * 3) for i in range(20_000)}

    def read(table: dict[int, WithSlots], keys: list[int]) -> int:
        return sum(len(table[k].b) for k in keys)

    f = make_orbit(read, timeout=20)
    keys = list(range(0, 20_000, 7))
    want = sum(len(str(k) * 3) for k in keys)
    assert f(table, keys) == want
    for _ in range(3):
        with arena:
            for k in keys[::5]:
                table[k].a = BIG - k  # some pages change between calls
        before = f.orbit.stats()["pages_reset"]
        assert f(table, keys) == want
        reset = f.orbit.stats()["pages_reset"] - before
        if sys.version_info >= (3, 12):
            assert reset <= 2, reset  # the call's own frame and argument pages at most
        else:
            assert reset >= 50, reset  # ~one per 20 records read
