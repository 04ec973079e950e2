"""Arenas: memory areas that orbits see as consistent page snapshots."""

from __future__ import annotations

import bisect
import os
import threading
import weakref
from typing import Any

from . import _core
from .errors import ArenaFull

_live_lock = threading.Lock()
# (start, end, weakref) of every open arena, sorted by start: the lookup of
# "which arena holds this buffer" runs on every call that passes one.
_ranges: list[tuple[int, int, weakref.ref[Arena]]] = []
_starts: list[int] = []
_SNAPSHOT_MODES = ("auto", "uffd", "mprotect", "full")


def arena_containing(addr: int, nbytes: int) -> Arena | None:
    """The open arena holding [addr, addr+nbytes), if any."""
    i = bisect.bisect_right(_starts, addr) - 1
    if i < 0:
        return None
    try:
        start, end, ref = _ranges[i]
    except IndexError:  # changed under us by another thread: look again, locked
        with _live_lock:
            return arena_containing(addr, nbytes)
    if start <= addr and addr + nbytes <= end:
        return ref()
    return None


def _register(a: Arena) -> None:
    global _ranges, _starts
    with _live_lock:
        rs = sorted([*_ranges, (a.address, a.address + a.size, weakref.ref(a))])
        _ranges, _starts = rs, [r[0] for r in rs]


def _unregister(a: Arena) -> None:
    global _ranges, _starts
    with _live_lock:
        rs = [r for r in _ranges if r[0] != a.address]
        _ranges, _starts = rs, [r[0] for r in rs]


class Arena:
    """A memory area at the same address in main and in every orbit.

    Orbit calls see the arena as it was when the call was issued, copying only
    the pages written since the previous call.  Create one with
    :func:`orbitpy.arena`.
    """

    def __init__(self, size: int, snapshot: str | None = None) -> None:
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"arena size must be an int, got {type(size).__name__}")
        if size <= 0:
            raise ValueError(f"arena size must be > 0 bytes, got {size}")
        reserve = _core.reservation_size()
        if size > reserve:
            raise ValueError(
                f"arena size {size} exceeds the {reserve}-byte address range reserved for "
                f"arenas (raise it with ORBITPY_RESERVE before importing orbitpy)")
        mode = snapshot or os.environ.get("ORBITPY_SNAPSHOT", "auto") or "auto"
        if mode not in _SNAPSHOT_MODES:
            raise ValueError(f"snapshot mode must be one of {', '.join(_SNAPSHOT_MODES)}, "
                             f"got {mode!r}")
        try:
            self._area = _core.Area(size, mode)
        except OSError as e:
            if e.errno == 95:  # ENOTSUP
                raise OSError(e.errno, f"snapshot mode {mode!r} is not available on this "
                                       f"kernel") from None
            if e.errno == 12:  # ENOMEM
                raise MemoryError(
                    f"no room for a {size}-byte arena in the {reserve}-byte reservation "
                    f"(set ORBITPY_RESERVE to reserve more)") from None
            raise
        self._size = self._area.size
        _register(self)

    @property
    def address(self) -> int:
        """Start address of the arena (the same in every orbit)."""
        return int(self._area.address)

    @property
    def size(self) -> int:
        return self._size

    @property
    def snapshot_mode(self) -> str:
        """How dirty pages are found: 'uffd', 'mprotect' or 'full'."""
        return str(self._area.mode)

    def buffer(self, nbytes: int) -> memoryview:
        """A writable memoryview of `nbytes` new bytes in the arena.

        The memory returns to the arena when the view (and every view or
        array made from it) is gone.  Passed to an orbit function, the view
        crosses as an address: the orbit reads its snapshot of these bytes.
        """
        if isinstance(nbytes, bool) or not isinstance(nbytes, int):
            raise TypeError(f"buffer size must be an int, got {type(nbytes).__name__}")
        if nbytes <= 0:
            raise ValueError(f"buffer size must be > 0 bytes, got {nbytes}")
        try:
            block = _core.Block(self._area, nbytes)
        except MemoryError:
            st = self.stats()
            raise ArenaFull(f"arena of {st['size']} bytes has no room for {nbytes} more "
                            f"bytes ({st['used']} in use)") from None
        except ValueError as e:
            raise ValueError(f"{e}: cannot allocate in it") from None
        return memoryview(block)

    def stats(self) -> dict[str, Any]:
        """size, used (bytes allocated, headers included), allocations, snapshot_mode."""
        size, used, allocations = self._area.stats()
        return {"size": size, "used": used, "allocations": allocations,
                "snapshot_mode": self.snapshot_mode, "address": self.address}

    def close(self) -> None:
        """Unmap the arena.  Refused while buffers from it are alive."""
        if not self._area.alive:
            return
        _, _, allocations = self._area.stats()
        if allocations:
            raise RuntimeError(f"arena still has {allocations} live buffer(s); release them "
                               f"before closing it")
        _unregister(self)
        self._area.destroy()

    @property
    def closed(self) -> bool:
        return not self._area.alive

    def __repr__(self) -> str:
        if self.closed:
            return "<orbitpy.Arena closed>"
        return (f"<orbitpy.Arena at {self.address:#x} size={self._size} "
                f"mode={self.snapshot_mode}>")


def arena(size: int, snapshot: str | None = None) -> Arena:
    """Create an :class:`Arena` of `size` bytes.

    `snapshot` forces the dirty-page tracking mode ('uffd', 'mprotect' or
    'full'); by default the environment variable ORBITPY_SNAPSHOT decides,
    else the best available.
    """
    return Arena(size, snapshot)
