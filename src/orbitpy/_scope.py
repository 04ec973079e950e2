"""Arena scopes and asyncio: where a thread's allocations go, per task.

The allocator hooks route a *thread's* allocations (``with arena:``), but an
event loop runs many tasks on one thread: a ``with arena:`` block held across
an ``await`` would put every object the other tasks make meanwhile in the
arena.  Two tools here:

- ``BlockWatch``: ``with arena:`` entered while an event loop runs in this
  thread makes sure a ``loop.call_soon`` sentinel is pending (one per loop,
  shared by every block entered before it runs: ``LoopTicks``); if it ran
  before the block ends, the loop ran other callbacks inside the block, i.e.
  the block spanned an ``await`` that suspended.  The block's end reports it.
- ``ScopedSteps``: what ``arena.allocating`` wraps coroutines (and
  generators) in: every step (send/throw/close) runs inside the arena's
  scope and the scope is left around each suspension, so the scope follows
  the task and other tasks never allocate in the arena.
"""

from __future__ import annotations

import contextvars
import sys
import threading
import warnings
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from . import _core, _heap
from .errors import ArenaFull, OrbitError

if TYPE_CHECKING:
    import asyncio


class LoopTicks:
    """Counts the runs of a sentinel callback on one event loop.

    A block entered while a sentinel is pending (scheduled, not yet run) saw
    the loop run other callbacks before it ended iff the count moved: the
    loop runs callbacks in the order they were scheduled, and whatever
    resumes a suspended task is scheduled after the sentinel.  One sentinel
    serves every block entered before it runs (a server enters thousands per
    loop iteration), so a block costs a comparison, not a ``call_soon``."""

    __slots__ = ("loop", "count", "pending", "_context")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.count = 0
        self.pending = False
        # The sentinel needs no context variables: passing one saves the
        # copy_context() call_soon would otherwise make each time.
        self._context = contextvars.Context()

    def _tick(self) -> None:
        self.count += 1
        self.pending = False

    def schedule(self) -> None:
        self.loop.call_soon(self._tick, context=self._context)
        self.pending = True


_ticks = threading.local()

# One ``with arena:`` block entered while an event loop runs in this thread:
# (the loop's LoopTicks, its count at the block's start, the task running it).
# A tuple, not an object: this is made per block on a server's request path.
BlockWatch = tuple[LoopTicks, int, Any]


def watch_block() -> BlockWatch | None:
    """At ``with arena:``: a watch if an event loop runs in this thread
    (none can unless asyncio was imported)."""
    aio = sys.modules.get("asyncio")
    if aio is None:
        return None
    loop = aio.events._get_running_loop()
    if loop is None:
        return None
    ticks: LoopTicks | None = getattr(_ticks, "t", None)
    if ticks is None or ticks.loop is not loop:
        ticks = _ticks.t = LoopTicks(loop)
    if not ticks.pending:
        ticks.schedule()
    return ticks, ticks.count, aio.current_task(loop)


def is_current(watch: BlockWatch) -> bool:
    """Is the watched block's task the one running now?"""
    return sys.modules["asyncio"].current_task(watch[0].loop) is watch[2]


def spanned_await(watch: BlockWatch) -> bool:
    """Did the loop run callbacks while the watched block was open?"""
    return watch[0].count != watch[1]


def report(arena: Any, failing: bool) -> None:
    """Called by Arena.__exit__ for a block that spanned an await: raise
    OrbitError, or warn if the block is already ending with an exception
    (e.g. CancelledError), which must not be replaced."""
    # The `with` statement's frame; CPython attributes the __exit__ call to
    # the `with` line.
    frame = sys._getframe(2)
    where = f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
    msg = (f"a `with arena:` block at {where} was held across an await "
           f"({arena!r}): other tasks ran while it was open, and the objects they made "
           f"meanwhile were put in the arena (the arena scope is per thread, not per "
           f"task). Never await "
           f"inside `with arena:`; to have a coroutine's allocations in the arena, "
           f"decorate its function with @arena.allocating (the scope then follows the "
           f"task)")
    if failing:
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
    else:
        raise OrbitError(msg)


class ScopedSteps(Generator[Any, Any, Any]):
    """Drives a coroutine or generator one step at a time, each step inside
    the arena's allocation scope (left again before the step's value is
    handed on, so nothing else runs in the scope).  A step ending with the
    MemoryError of an allocation the arena refused raises ArenaFull, as the
    end of a ``with arena:`` block does."""

    __slots__ = ("_arena", "_heap", "_inner", "_globals")

    def __init__(self, arena: Any, heap: Any, inner: Any) -> None:
        self._arena = arena
        self._heap = heap
        self._inner = inner
        frame = getattr(inner, "cr_frame", None) or getattr(inner, "gi_frame", None)
        self._globals: dict[str, Any] = frame.f_globals if frame is not None else {}

    def __await__(self) -> ScopedSteps:
        return self

    def __iter__(self) -> ScopedSteps:
        return self

    def __next__(self) -> Any:
        return self.send(None)

    def _step(self, step: Callable[..., Any], *args: Any) -> Any:
        _heap.enter(self._heap)
        left = False
        try:
            return step(*args)
        except MemoryError as e:
            left = True
            refused = _heap.leave(self._heap)
            if refused and not isinstance(e, ArenaFull):
                raise _heap.arena_full(self._arena, refused) from e
            raise
        finally:
            if not left:
                _heap.leave(self._heap)
            # As at a block's end (see heap_rescue.c).
            _core.rescue_block_tables(self._globals)

    def send(self, value: Any) -> Any:
        return self._step(self._inner.send, value)

    def throw(self, *exc: Any) -> Any:  # type: ignore[override]
        return self._step(self._inner.throw, *exc)

    def close(self) -> None:
        self._step(self._inner.close)
