"""Arenas: memory areas that orbits see as consistent page snapshots."""

from __future__ import annotations

import bisect
import functools
import inspect
import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from . import _backend_kernel, _backend_user, _collector, _core, _heap, _scope
from ._copy import ArenaCopier
from .errors import ArenaFull, OrbitError

T = TypeVar("T")

_live_lock = threading.Lock()
# (starts, ranges): every open area's (start, end, core area), sorted by
# start, rebound as one tuple so that lookups (on every call that passes a
# buffer) need no lock.  Core areas, not Arena objects: a buffer keeps its
# area alive after the Arena object is gone, and must still cross by address.
_table: tuple[list[int], list[tuple[int, int, Any]]] = ([], [])

# What Python knows of the backend the C core was built with (its mode names,
# its environment, what its modes need from the process): one module per
# backend, with the same names.
_BACKENDS = {m.NAME: m for m in (_backend_user, _backend_kernel)}
if _core.BACKEND not in _BACKENDS:
    raise ImportError(f"orbitpy's C core was built with the {_core.BACKEND!r} backend, which "
                      f"the Python layer does not know (known: {', '.join(_BACKENDS)})")
_backend = _BACKENDS[_core.BACKEND]

# Per thread: the open `with arena:` blocks, as (arena, watch): the watch
# (None without a running event loop) tells whether the block spanned an await.
_blocks_tls = threading.local()
F = TypeVar("F", bound=Callable[..., Any])


def _blocks() -> list[tuple[Any, _scope.BlockWatch | None]]:
    blocks: list[tuple[Any, _scope.BlockWatch | None]] | None = getattr(_blocks_tls, "b", None)
    if blocks is None:
        blocks = _blocks_tls.b = []
    return blocks


# Which process made each core area (they belong to it: see foreign_arena_error),
# and the areas a forked child has already logged as inherited.
_owners: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_reported: weakref.WeakSet[Any] = weakref.WeakSet()
os.register_at_fork(after_in_child=_reported.clear)


def foreign_arena_error(orbit_name: str, areas: list[Any]) -> OrbitError:
    """The error for a call passing arenas this process inherited by fork
    (the core refuses them: their memory and tracking are the parent's).
    Logged once per arena to the 'orbitpy' logger, since a pre-forking
    server turns each failed call into an error page and may look healthy."""
    me = os.getpid()
    foreign = [a for a in areas if _owners.get(a, me) != me] or areas
    where = ", ".join(f"{a.size}-byte arena at {a.address:#x} (made by pid {_owners.get(a)})"
                      if a.alive else "a closed arena" for a in foreign)
    msg = (f"orbit {orbit_name!r} was passed an arena created in another process: {where}; "
           f"this process (pid {me}) was forked from it.  An arena belongs to the process "
           f"that made it, and none of this process's calls can use it.  Create arenas, and "
           f"the objects and buffers in them, after forking: in a pre-forking server "
           f"(gunicorn --preload, uWSGI, multiprocessing) make them in each worker, e.g. in "
           f"gunicorn's post_fork hook, uWSGI's @postfork, or a multiprocessing initializer")
    new = [a for a in foreign if a not in _reported]
    if new:
        _reported.update(new)
        logging.getLogger("orbitpy").error("%s", msg)
    return OrbitError(msg)


def area_containing(addr: int, nbytes: int) -> Any:
    """The open core area holding [addr, addr+nbytes), if any."""
    starts, ranges = _table
    i = bisect.bisect_right(starts, addr) - 1
    if i < 0:
        return None
    start, end, area = ranges[i]
    if start <= addr and addr + nbytes <= end:
        return area
    return None


def _register(area: Any) -> None:
    global _table
    with _live_lock:
        rs = sorted([*_table[1], (area.address, area.address + area.size, area)],
                    key=lambda r: r[0])
        _table = ([r[0] for r in rs], rs)


def _unregister(area: Any) -> None:
    global _table
    with _live_lock:
        rs = [r for r in _table[1] if r[2] is not area]
        _table = ([r[0] for r in rs], rs)


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
        reserve = _backend.check_size(size)
        mode = _backend.snapshot_mode(snapshot)
        try:
            self._area = _core.Area(size, mode)
        except OSError as e:
            err = _backend.area_error(e, size, mode, reserve)
            if err is not None:
                raise err from None
            raise
        # An arena is written only through its buffers and objects, all
        # allocations: orbit calls need not scan the pages above them.
        self._area.confine_writes()
        _owners[self._area] = os.getpid()
        self._size = self._area.size
        self._heap: Any = None  # registered with the allocator hooks on first `with`
        _register(self._area)
        _backend.area_created(self._area)

    def _live_area(self) -> Any:
        """The arena's core area; ValueError if the arena is closed (said in
        the arena's words, before the core area says it in its own)."""
        if not self._area.alive:
            raise ValueError("the arena is closed")
        return self._area

    @property
    def address(self) -> int:
        """Start address of the arena (the same in every orbit)."""
        return int(self._live_area().address)

    @property
    def size(self) -> int:
        return self._size

    @property
    def used(self) -> int:
        """Bytes allocated in the arena now (headers included): cheaper than
        ``stats()["used"]`` where a service checks it per request."""
        return int(self._live_area().stats()[1])

    @property
    def snapshot_mode(self) -> str:
        """The backend's name for how it finds the pages written since a
        snapshot (the userspace backend: 'uffd', 'mprotect' or 'full')."""
        return str(self._live_area().mode)

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
        except ValueError:  # the core area is closed
            raise ValueError("the arena is closed: cannot allocate in it") from None
        return memoryview(block)

    def ring(self, slots: int, fields: int = 3, payload: int = 0) -> _core.Ring:
        """A ring of `slots` records in a new buffer of this arena: main
        appends one per event with ``ring.append(a, b, c, d, data, start,
        end)`` (the first `fields` ints, up to 4, and up to `payload` bytes
        of data), allocating nothing; an orbit given ``ring.buffer`` reads
        the records added since its last call with
        ``orbitpy.ring_records(buffer, start)``.  Older records are
        overwritten once `slots` more were appended."""
        for name, v in (("slots", slots), ("fields", fields), ("payload", payload)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"ring {name} must be an int, got {type(v).__name__}")
        if slots <= 0:
            raise ValueError(f"a ring needs at least 1 slot, got {slots}")
        if not 0 <= fields <= 4:
            raise ValueError(f"ring fields must be 0..4, got {fields}")
        if payload < 0:
            raise ValueError(f"ring payload must be >= 0 bytes, got {payload}")
        return _core.Ring(self.buffer(_core.Ring.size_for(slots, fields, payload)), slots,
                          fields, payload)

    def __enter__(self) -> Arena:
        """Objects this thread creates until the block ends live in the arena.

        Blocks nest (the innermost arena wins) and are per thread: other
        threads keep allocating where they were.  An allocation the arena has
        no room for raises :class:`ArenaFull`."""
        heap = self._heap
        if heap is None:
            heap = self._heap_for_scope()
        # The bookkeeping allocates: outside the arena's scope.
        blocks = _blocks()
        blocks.append((self, _scope.watch_block()))
        try:
            _heap.enter(heap)
        except BaseException:
            blocks.pop()
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # Out of the arena's scope before anything here allocates: a full
        # arena would refuse it, and the thread would stay in the block.
        _core.heap_set(None)
        watch = None
        try:
            blocks = _blocks()
            last = blocks[-1] if blocks else None
            if last is not None and last[0] is self and (
                    last[1] is None or _scope.is_current(last[1])):
                watch = last[1]  # the usual case: the innermost block
                del blocks[-1]
            else:
                i = self._open_block()
                if i >= 0:
                    watch = blocks[i][1]
                    del blocks[i]
        finally:
            # With a loop running, tasks may have interleaved their blocks.
            refused = _heap.leave(self._heap, watch is not None)
        # The globals of the code running the block (and builtins, interned
        # strings) may have grown a key table in the arena (see heap_rescue.c).
        _core.rescue_block_tables(sys._getframe(1).f_globals)
        if watch is not None and _scope.spanned_await(watch):
            _scope.report(self, failing=exc_type is not None)
        if refused and isinstance(exc, MemoryError) and not isinstance(exc, ArenaFull):
            raise _heap.arena_full(self, refused) from exc

    def _open_block(self) -> int:
        """Index in _blocks() of this thread's innermost open block of this
        arena (of the current task, when tasks interleaved blocks); -1: none."""
        blocks = _blocks()
        for i in range(len(blocks) - 1, -1, -1):
            arena, watch = blocks[i]
            if arena is self and (watch is None or _scope.is_current(watch)):
                return i
        return -1

    def allocating(self, fn: F) -> F:
        """Decorator: run `fn` with the objects it makes in this arena.

        A plain function runs inside ``with arena:``.  For an ``async def``
        (and a generator function) the scope follows the coroutine: each of
        its steps runs in the arena's scope, which is left whenever it
        suspends (``await``, ``yield``), so the other tasks of the event loop
        never allocate in the arena.  Use it instead of ``with arena:``
        around code that awaits."""
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def in_arena_async(*args: Any, **kwargs: Any) -> Any:
                return await _scope.ScopedSteps(self, self._heap_for_scope(), fn(*args, **kwargs))

            return in_arena_async  # type: ignore[return-value]
        if inspect.isasyncgenfunction(fn):
            raise TypeError(f"arena.allocating does not support async generators "
                            f"({getattr(fn, '__qualname__', fn)!r}); use `with arena:` "
                            f"blocks without an await inside them")
        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def in_arena_gen(*args: Any, **kwargs: Any) -> Any:
                return _scope.ScopedSteps(self, self._heap_for_scope(), fn(*args, **kwargs))

            return in_arena_gen  # type: ignore[return-value]

        @functools.wraps(fn)
        def in_arena(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return in_arena  # type: ignore[return-value]

    def _heap_for_scope(self) -> Any:
        """The arena's allocator, registered on first use.  Threads entering
        a new arena at once must register it once: a second registration
        would outlive close() (a stale range)."""
        if _core.in_orbit():
            _heap.enter(None)  # raises: an orbit cannot allocate in an arena
        if self._heap is None:
            with _live_lock:
                if self._heap is None:
                    if self.closed:
                        raise ValueError("the arena is closed")
                    self._heap = _core.heap_register_area(self._area)
        return self._heap

    def copy(self, obj: T) -> T:
        """A deep copy of obj made in the arena, to store into arena state.

        For objects made outside ``with arena:`` (a parsed request body, a
        library's result): the orbit could not read them by reference.
        Aliasing within obj is kept (each object is copied once, cycles
        included); classes, functions, modules and Enum members are kept by
        reference (orbits have them).  Instances of other classes are copied
        through the pickle protocol (``__reduce_ex__``), as copy.deepcopy
        does; an object that cannot be pickled raises TypeError."""
        with self:
            return ArenaCopier().copy(obj)  # type: ignore[no-any-return]

    def contains(self, obj: object) -> bool:
        """Does obj live in this arena?"""
        if self.closed:
            return False
        return self.address <= id(obj) < self.address + self._size

    def stats(self) -> dict[str, Any]:
        """size, used (bytes allocated, headers included), allocations, snapshot_mode.

        ``checks`` has the pre-call check counters (all arenas): checks,
        pages and objects looked at, values copied and tables moved into
        arenas, and ns spent."""
        size, used, allocations = self._live_area().stats()
        return {"size": size, "used": used, "allocations": allocations,
                "snapshot_mode": self.snapshot_mode, "address": self.address,
                "checks": _core.check_stats()}

    def collect(self) -> int:
        """Free reference cycles among arena objects: a full collection that
        includes them (all arenas' objects: cycles may span arenas), which
        ordinary collections leave out (see :func:`orbitpy.collect_arenas`).
        Returns the number of unreachable objects found."""
        return _collector.collect_arenas()

    def close(self) -> None:
        """Unmap the arena.  Refused while buffers or objects in it are alive
        (after an arena collection has freed what only cycles kept)."""
        if not self._area.alive:
            return
        if self._heap is not None:
            # An interpreter table (a module's globals, builtins, interned
            # strings) that grew inside a block may have its key table here:
            # move it out, or main would read unmapped memory (and the table
            # would count as a live allocation).
            _core.rescue_tables()
        _, _, allocations = self._area.stats()
        if allocations and self._heap is not None:
            _collector.collect_arenas()
            _, _, allocations = self._area.stats()
        if allocations:
            raise RuntimeError(f"arena still has {allocations} live allocation(s) (buffers "
                               f"or objects); release them before closing it")
        if self._heap is not None:
            _core.heap_unregister_area(self._heap)
            self._heap = None
        _unregister(self._area)
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

    `snapshot` forces the dirty-page tracking mode, one of the backend's (the
    userspace backend: 'uffd', 'mprotect' or 'full'); by default the
    environment variable ORBITPY_SNAPSHOT decides, else the best available.
    """
    return Arena(size, snapshot)
