"""Arena objects and CPython's cyclic garbage collector.

A full collection writes the header of every object it walks; walking arena
objects would make the next orbit call copy (and check) every page of the
arena.  So the collector's own collections, automatic or ``gc.collect()``,
leave arena objects alone (C: ``_heap/heap_gc.c``), and reference cycles
among arena objects are freed by *arena collections*: full collections that
include them, run by :func:`collect_arenas` (also ``Arena.collect()``, and
``Arena.close()`` while objects remain) and automatically when the arenas'
bytes in use grew by more than a fraction since the last one (see
:func:`set_arena_collection`).  The orbit call after an arena collection
copies every page holding a tracked arena object, once.

Objects that are not part of a cycle are freed as soon as their last
reference goes, as always.
"""

from __future__ import annotations

from . import _core


def collect_arenas() -> int:
    """Run a full collection that includes arena objects; returns the number
    of unreachable objects found (as ``gc.collect()``).

    Call it when a long call is acceptable (the next orbit call copies every
    page holding a tracked arena object), e.g. after building a large arena
    state and its first call, after replacing much of it, or in a quiet
    period."""
    return int(_core.gc_collect_arenas())


def set_arena_collection(growth: float = 0.25, every: int = 0) -> None:
    """When automatic full collections include arena objects.

    `growth`: when the bytes in use in all object arenas grew by more than
    this fraction of what was in use after the last arena collection (and by
    at least 256 KiB); 0 turns it off.  This bounds the memory reference
    cycles in arenas can hold until they are freed.
    `every`: also every `every`-th full collection (0: never)."""
    if isinstance(growth, bool) or not isinstance(growth, (int, float)) or growth < 0:
        raise ValueError(f"growth must be a number >= 0, got {growth!r}")
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise ValueError(f"every must be an int >= 0, got {every!r}")
    _core.gc_set_policy(float(growth), every)


def arena_collection_stats() -> dict[str, int]:
    """Counters: full_collections (seen while an object arena was open),
    arena_collections (those that walked arena objects), parked (arena
    objects moved out of the collector's generations so far), parked_now
    (held out now), base_used (arena bytes in use after the last arena
    collection)."""
    return dict(_core.gc_stats())
