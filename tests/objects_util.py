"""Helpers of the arena object tests (test_arena_objects.py and
backend_user/test_orbit_page_writes.py)."""

from __future__ import annotations

from typing import Any


def fill_free_lists() -> None:
    """Allocate and drop, outside any arena, enough floats, tuples (sizes
    1..20) and small str-keyed dicts to fill CPython's free lists for them
    (when they are open)."""
    junk: list[Any] = []
    for size in range(1, 21):
        junk.extend(tuple(range(size)) for _ in range(2100))
    junk.extend(float(i) + 0.5 for i in range(300))
    junk.extend({"k" + str(i): i} for i in range(200))
    del junk
