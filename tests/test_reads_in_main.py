"""Main reading arena objects between calls (issue 9 item 6).

Reading an object in main writes its reference count, so the page holding
it is written and the next call looks at it again.  The snapshot compares
such a page, as the copy filter makes it for the orbit, with the orbit's
copy and leaves the copy alone when they are equal: a sweep that only reads
copies (almost) nothing.  Whatever main did in between, every call sees
main's state at issue time."""

from __future__ import annotations

import random
from typing import Any

import pytest

import orbitpy

# The pages each call copies are counted: nothing may be copied between calls.
pytestmark = pytest.mark.usefixtures("no_background_sync")

PAGE = 4096
N = 20_000


class Node:
    def __init__(self, i: int) -> None:
        self.i = i
        self.tag = ("t", i)


def total_of(nodes: list[Node], ids: list[int]) -> int:
    if not ids:
        return sum(n.i + n.tag[1] for n in nodes)
    return sum(nodes[i].i + nodes[i].tag[1] for i in ids)


def expected(nodes: list[Node]) -> int:
    return sum(n.i + n.tag[1] for n in nodes)


def build(arena: orbitpy.Arena, n: int = N) -> list[Node]:
    with arena:
        return [Node(i) for i in range(n)]


def copied(fn: Any) -> int:
    return int(fn.orbit.stats()["pages_copied"])


def _checks() -> dict[str, int]:
    from orbitpy import _core
    return dict(_core.check_stats())


def sweep(nodes: list[Node]) -> int:
    """Reads only: each node, its attributes and its tuple."""
    total = 0
    for n in nodes:
        total += n.i + n.tag[1]
    return total


@pytest.mark.timeout(120)
def test_a_read_sweep_copies_far_fewer_pages_than_it_read(make_orbit: Any,
                                                          new_arena: Any) -> None:
    arena = new_arena(32 << 20)
    nodes = build(arena)
    fn = make_orbit(total_of, timeout=60)
    assert fn(nodes, [1, 2]) == 6
    assert fn(nodes, [3]) == 6  # the state is settled: nothing left to send
    checked0, c0 = _checks()["pages"], copied(fn)
    assert sweep(nodes) == expected(nodes)
    assert fn(nodes, [4, 5]) == 18
    read = _checks()["pages"] - checked0
    sent = copied(fn) - c0
    in_use = int(arena.stats()["used"]) // PAGE
    # The sweep wrote (the reference counts of) every page holding a node.
    assert read > in_use // 4, (read, in_use)
    # Without the comparison every one of them is copied again.
    assert sent < read // 20, (sent, read)


@pytest.mark.timeout(120)
def test_writes_among_reads_reach_the_orbit(make_orbit: Any, new_arena: Any) -> None:
    arena = new_arena(32 << 20)
    nodes = build(arena)
    fn = make_orbit(total_of, timeout=60)
    assert fn(nodes, []) == expected(nodes)
    rng = random.Random(9)
    for _ in range(5):
        picked = rng.sample(range(N), 50)
        sweep(nodes)
        with arena:
            for i in picked:
                nodes[i].i += 1000  # an int made in the arena, on a page the sweep read
        sweep(nodes)
        c0 = copied(fn)
        assert fn(nodes, []) == expected(nodes)
        assert fn(nodes, picked) == sum(nodes[i].i + i for i in picked)
        assert copied(fn) - c0 >= 1


@pytest.mark.timeout(120)
def test_objects_freed_and_made_again_on_read_pages(make_orbit: Any,
                                                    new_arena: Any) -> None:
    """A node freed and a new one (same size class: likely the same
    address) made in its place, between sweeps: the orbit sees the new one."""
    arena = new_arena(32 << 20)
    nodes = build(arena)
    fn = make_orbit(total_of, timeout=60)
    assert fn(nodes, []) == expected(nodes)
    rng = random.Random(11)
    for r in range(5):
        picked = rng.sample(range(N), 100)
        sweep(nodes)
        for i in picked:
            nodes[i] = None  # type: ignore[call-overload]  # freed
        with arena:
            for i in picked:
                nodes[i] = Node(i + 7 * (r + 1))
        sweep(nodes)
        assert fn(nodes, []) == expected(nodes)
        assert fn(nodes, picked) == sum(nodes[i].i + nodes[i].tag[1] for i in picked)


@pytest.mark.timeout(120)
def test_references_taken_and_dropped_while_orbits_run(make_orbit: Any,
                                                       new_arena: Any) -> None:
    """Main holds references across calls (counts stay raised), drops them,
    and issues calls while the orbit is busy (staged copies): every call
    sees main's state when it was issued."""
    arena = new_arena(32 << 20)
    nodes = build(arena)
    fn = make_orbit(total_of, timeout=60)
    assert fn(nodes, []) == expected(nodes)
    held = list(nodes[::3])
    futs = []
    for k in range(4):
        with arena:
            nodes[k].i = -k
        futs.append((fn.call_async(nodes, []), expected(nodes)))
        sweep(nodes)
    for f, want in futs:
        assert f.result(timeout=60) == want
    del held
    sweep(nodes)
    assert fn(nodes, []) == expected(nodes)


@pytest.mark.timeout(180)
def test_random_reads_writes_frees_between_calls(make_orbit: Any, new_arena: Any) -> None:
    arena = new_arena(16 << 20)
    nodes = build(arena, 5000)
    fn = make_orbit(total_of, timeout=60)
    rng = random.Random(2026)
    held: list[Any] = []
    for _ in range(40):
        for _ in range(rng.randrange(1, 4)):
            op = rng.randrange(5)
            i = rng.randrange(len(nodes))
            if op == 0:
                sweep(nodes[i:i + rng.randrange(1, 2000)])
            elif op == 1:
                with arena:
                    nodes[i].i = rng.randrange(10**6)
            elif op == 2:
                with arena:
                    nodes[i] = Node(rng.randrange(10**6))
            elif op == 3:
                held.extend(nodes[i:i + rng.randrange(1, 500)])
            else:
                del held[:rng.randrange(1, 500)]
        assert fn(nodes, []) == expected(nodes)
