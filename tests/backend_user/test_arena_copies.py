"""Userspace backend: the descriptors and mappings of arena copies.

Each orbit maps a copy of every arena it synced (a memfd named orbit-base,
held open by main as a descriptor); closing an arena, or its orbit's next
call, releases them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orbitpy
from conftest import open_fds, orbit_fds

MakeOrbit = Callable[..., Any]


def base_mappings(pid: int | str) -> int:
    """Mappings of orbit base copies (memfds) in process `pid`."""
    with open(f"/proc/{pid}/maps") as f:
        return sum("orbit-base" in line for line in f)


def test_arena_cycles_leave_no_descriptors_or_mappings(make_orbit: MakeOrbit) -> None:
    @make_orbit
    def first(b: memoryview) -> int:
        return b[0]

    def cycle(i: int) -> None:
        a = orbitpy.arena(64 << 10)
        b = a.buffer(4096)
        b[0] = i % 256
        assert first(b) == i % 256
        del b
        a.close()

    cycle(0)
    pid = first.orbit.pid
    main_fds, main_maps = len(open_fds()), base_mappings("self")
    orbit_fd_count, orbit_maps = len(orbit_fds(pid)), base_mappings(pid)
    for i in range(1000):
        cycle(i)
    assert first.orbit.pid == pid
    assert len(open_fds()) <= main_fds, "arena cycles leave descriptors in main"
    assert base_mappings("self") <= main_maps, "arena cycles leave mappings in main"
    assert len(orbit_fds(pid)) <= orbit_fd_count, "arena cycles leave descriptors in the orbit"
    # The orbit unmaps a closed arena's copy at its next call.
    assert base_mappings(pid) <= orbit_maps + 1, "arena cycles leave mappings in the orbit"


def test_closing_an_arena_releases_its_descriptors_in_main_at_once(
        make_orbit: MakeOrbit) -> None:
    orbits = []
    for k in range(3):
        @make_orbit(name=f"reader{k}")
        def first(b: memoryview) -> int:
            return b[0]

        assert first(bytearray(1)) == 0  # started before counting
        orbits.append(first)
    before = len(open_fds())
    a = orbitpy.arena(1 << 20)
    b = a.buffer(4096)
    for fn in orbits:
        assert fn(b) == 0
    assert len(open_fds()) > before  # each orbit's copy of the arena
    del b
    a.close()
    assert len(open_fds()) <= before
