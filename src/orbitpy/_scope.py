"""Arena scopes and asyncio: where a thread's allocations go, per task.

The allocator hooks route a *thread's* allocations (``with arena:``), but an
event loop runs many tasks on one thread: a ``with arena:`` block held across
an ``await`` would put every object the other tasks make meanwhile in the
arena.  Two tools here:

- ``BlockWatch``: ``with arena:`` entered while an event loop runs in this
  thread schedules a ``loop.call_soon`` sentinel; if it ran before the block
  ends, the loop ran other callbacks inside the block, i.e. the block spanned
  an ``await`` that suspended.  The block's end reports it.
- ``ScopedSteps``: what ``arena.allocating`` wraps coroutines (and
  generators) in: every step (send/throw/close) runs inside the arena's
  scope and the scope is left around each suspension, so the scope follows
  the task and other tasks never allocate in the arena.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from . import _heap
from .errors import ArenaFull, OrbitError

if TYPE_CHECKING:
    import asyncio


class BlockWatch:
    """One ``with arena:`` block entered while an event loop runs here."""

    __slots__ = ("ran", "handle", "where", "loop", "task")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.ran = False
        self.loop = loop
        self.task = sys.modules["asyncio"].current_task(loop)
        # the `with` statement: above watch_block() and Arena.__enter__
        frame = sys._getframe(3)
        self.where = f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
        self.handle = loop.call_soon(self._sentinel)

    def _sentinel(self) -> None:
        self.ran = True

    def is_current(self) -> bool:
        """Is this block's task the one running now?"""
        return sys.modules["asyncio"].current_task(self.loop) is self.task

    def spanned_await(self) -> bool:
        """Did the loop run callbacks while the block was open?  (Ends the watch.)"""
        self.handle.cancel()
        return self.ran

    def report(self, arena: Any, failing: bool) -> None:
        """The block spanned an await: raise OrbitError, or warn if the block
        is already ending with an exception (e.g. CancelledError), which must
        not be replaced."""
        msg = (f"a `with arena:` block at {self.where} was held across an await "
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


def watch_block() -> BlockWatch | None:
    """At ``with arena:``: a watch if an event loop runs in this thread
    (none can unless asyncio was imported)."""
    aio = sys.modules.get("asyncio")
    if aio is None:
        return None
    loop = aio.events._get_running_loop()
    return BlockWatch(loop) if loop is not None else None


class ScopedSteps(Generator[Any, Any, Any]):
    """Drives a coroutine or generator one step at a time, each step inside
    the arena's allocation scope (left again before the step's value is
    handed on, so nothing else runs in the scope).  A step ending with the
    MemoryError of an allocation the arena refused raises ArenaFull, as the
    end of a ``with arena:`` block does."""

    __slots__ = ("_arena", "_heap", "_inner")

    def __init__(self, arena: Any, heap: Any, inner: Any) -> None:
        self._arena = arena
        self._heap = heap
        self._inner = inner

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

    def send(self, value: Any) -> Any:
        return self._step(self._inner.send, value)

    def throw(self, *exc: Any) -> Any:  # type: ignore[override]
        return self._step(self._inner.throw, *exc)

    def close(self) -> None:
        self._step(self._inner.close)
