"""The heap: Python objects in arenas (Python side; the C is beside it).

Placement: ``with arena:`` makes the arena where this thread's new objects
live (the C allocator hooks, ``heap_hooks.c``, do the routing).  Calls: an arena
object in a call's arguments crosses to the orbit as its address, and right
before the snapshot main checks that everything the orbit can reach from it
is memory the orbit has (``heap_check.c``); a problem the call can
reach raises :class:`ArenaEscapeError` naming the path to it.
"""

from __future__ import annotations

import datetime
import functools
import gc
import weakref
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from typing import Any

from .. import _core
from ..errors import ArenaEscapeError, ArenaFull

# Objects of these types cross to orbits by value even when they live in an
# arena: copying a number or a short string is cheaper than checking it.
SCALARS = frozenset({int, float, str, bytes, bool, complex, type(None)})


# Entering and leaving an arena's scope (``with arena:``, the steps of an
# ``arena.allocating`` coroutine, bookkeeping outside every arena): in the
# core, since services do it per request (_heap_scope.pxi says how it works).
enter = _core.scope_enter
leave = _core.scope_leave


def _innermost() -> Any:
    """The heap this thread's innermost open scope allocates in (None: outside)."""
    return _core.scope_stack().innermost()


def arena_full(arena: Any, refused: int) -> ArenaFull:
    """The ArenaFull a block ends with after its arena refused `refused`
    bytes; made outside any arena (an enclosing block's may be full too)."""
    prev = _innermost()
    _core.heap_set(None)
    try:
        stats = arena.stats()
        return ArenaFull(f"arena of {stats['size']} bytes has no room for {refused} more "
                         f"bytes ({stats['used']} in use)")
    finally:
        _core.heap_set(prev)


# ------------------------------------------------------------------ classes

_classes: dict[int, Any] = {}


def _forget(addr: int, _ref: Any = None) -> None:
    _classes.pop(addr, None)
    _core.forget_class(addr)


def _register_classes() -> int:
    """Before each orbit fork: the classes alive now are the orbit's."""
    if _core.heap_in_use():
        _core.after_collection()
        _core.rescue_tables()
    found: list[type] = []
    seen: set[int] = set()
    todo: list[type] = [object]
    while todo:
        subs: list[type] = type.__subclasses__(todo.pop())
        for sub in subs:
            if id(sub) in seen:
                continue
            seen.add(id(sub))
            todo.append(sub)
            if not _core.is_static(sub):
                found.append(sub)
                if id(sub) not in _classes:
                    try:
                        _classes[id(sub)] = weakref.ref(sub, functools.partial(_forget, id(sub)))
                    except TypeError:  # not weak-referenceable: not registered
                        found.pop()
    return int(_core.register_classes(found))


_core.set_before_fork(_register_classes)


def _on_collection(phase: str, info: dict[str, int]) -> None:
    generation = info.get("generation", -1)
    # Arena objects are kept out of the generations a collection is about
    # to walk, and the schedule decides whether a full one walks them
    # (see _heap/heap_gc.c and _collector.py).
    _core.gc_event(phase == "start", generation)
    # A full collection empties CPython's free lists and opens them again;
    # keep them closed (see _heap/pyver_freelists.c).
    if phase == "stop" and generation == 2:
        _core.after_collection()


gc.callbacks.append(_on_collection)


# -------------------------------------------------------------------- calls

class StaleClasses(Exception):
    """A refused call whose only problem is classes its orbit has in another
    state than main has them (changed, or created, since the orbit started):
    restarting the orbit mends it (the caller does, see _orbit.py).
    ``classes``: [(class, what changed)], one per class.  error(): the
    ArenaEscapeError naming the path to one, for when the caller cannot
    restart (tracing the path walks the arguments in Python: only then)."""

    def __init__(self, classes: list[tuple[type, str]],
                 error: Callable[[], ArenaEscapeError]) -> None:
        super().__init__(classes)
        self.classes = classes
        self.error = error


class CallCheck(_core.CallPlan):
    """The pre-call check of a call passing arena objects (`roots`, by HeapArea).

    The check itself is C, run by the core right before the call's snapshot
    with no Python code in between (so no other thread can change the arenas
    between the two); when it refuses the call, error() names why, in Python,
    after the GIL may change hands again."""

    def __init__(self, roots: dict[Any, list[Any]], labels: dict[int, str]) -> None:
        super().__init__(list(roots.items()))
        self.labels = labels

    def error(self) -> BaseException:
        refusal = self.refusal
        if refusal is None:
            return super().error()
        heap, objs, why = refusal
        if isinstance(why, MemoryError) and heap is not None:
            size, used, _ = heap.area.stats()
            return ArenaFull(f"arena of {size} bytes is full ({used} in use): no room to copy "
                             f"values the orbit needs into it")
        if isinstance(why, BaseException):
            return why
        if self.stale_classes:
            classes: dict[int, tuple[type, str]] = {}
            for _, cls, _, what in why:
                classes.setdefault(id(cls), (cls, what))
            failures = [f[:3] for f in why]
            return StaleClasses(list(classes.values()),
                                lambda: self._escape(heap, objs, failures))
        return self._escape(heap, objs, why)

    def _escape(self, heap: Any, objs: list[Any],
                failures: list[tuple[Any, Any, str]]) -> ArenaEscapeError:
        err = _explain(heap, objs, self.labels, failures)
        if err is None:
            # Other threads changed the arena after the check refused the
            # call, and the path to the problem is gone: say what it was.
            path = _label(objs[0], self.labels) if len(objs) == 1 else "the call's arguments"
            err = ArenaEscapeError(path, f"{failures[0][2]} (found by the check; the arena "
                                         f"changed before the path to it could be traced)")
        return err


def _label(obj: Any, labels: dict[int, str]) -> str:
    return labels.get(id(obj), f"<{type(obj).__name__} at {id(obj):#x}>")


def _short(x: Any) -> str:
    try:
        r = repr(x)
    except Exception:
        r = f"<{type(x).__name__}>"
    return r if len(r) <= 40 else r[:37] + "..."


def _children(heap: Any, obj: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(obj, dict):
        for k, v in list(dict.items(obj)):
            yield f"[{_short(k)}]", v
            yield f" (the key {_short(k)})", k
    elif isinstance(obj, (list, tuple, deque)):
        for i, v in enumerate(list(obj)):
            yield f"[{i}]", v
    elif isinstance(obj, (set, frozenset)):
        for v in list(obj):
            yield f" (the member {_short(v)})", v
    if isinstance(obj, defaultdict):
        yield ".default_factory", obj.default_factory
    if isinstance(obj, (datetime.datetime, datetime.time)):
        # Not collected objects: gc.get_referents below does not see it.
        yield ".tzinfo", obj.tzinfo
    cls = type(obj)
    for c in cls.__mro__:
        slots = c.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name in ("__dict__", "__weakref__"):
                continue
            try:
                yield f".{name}", object.__getattribute__(obj, name)
            except AttributeError:
                pass
    if cls.__dictoffset__ and not isinstance(obj, type):
        # Reading __dict__ may create it: do so in the arena, where it belongs.
        prev = _innermost()
        _core.heap_set(heap)
        try:
            d = object.__getattribute__(obj, "__dict__")
        except (AttributeError, TypeError):
            d = None
        finally:
            _core.heap_set(prev)
        if isinstance(d, dict):
            for k, v in list(d.items()):
                yield f".{k}", v
            yield ".__dict__", d
    # Whatever else the collector knows it refers to (unnamed steps).
    for c in gc.get_referents(obj):
        yield f".<{type(c).__name__}>", c


def _explain(heap: Any, roots: list[Any], labels: dict[int, str],
             failures: list[tuple[Any, Any, str]]) -> ArenaEscapeError | None:
    """The first failure the call can reach, as an error naming its path."""
    parent: dict[int, tuple[int, str]] = {}
    objs: dict[int, Any] = {}
    todo: deque[Any] = deque()
    for r in roots:
        if id(r) not in objs:
            objs[id(r)] = r
            todo.append(r)
    wanted_edges = {(id(o), id(t)): m for o, t, m in failures if o is not None and t is not None}
    wanted_nodes = {id(o): m for o, t, m in failures if o is not None and t is None}
    wanted_types = {id(t): m for o, t, m in failures if o is None}

    def path_to(i: int) -> str:
        parts = []
        while i in parent:
            i, step = parent[i]
            parts.append(step)
        return _label(objs[i], labels) + "".join(reversed(parts))

    owners = {id(o) for o, _, _ in failures if o is not None}
    while todo:
        o = todo.popleft()
        m = (wanted_nodes.get(id(o)) or wanted_types.get(id(type(o)))
             or wanted_edges.get((id(o), id(type(o)))))
        if m is not None:
            return ArenaEscapeError(path_to(id(o)), m)
        for step, c in _children(heap, o):
            m = wanted_edges.get((id(o), id(c)))
            if m is not None:
                return ArenaEscapeError(path_to(id(o)) + step, m)
            if id(c) not in objs and heap.contains(c):
                objs[id(c)] = c
                parent[id(c)] = (id(o), step)
                todo.append(c)
        if id(o) in owners:  # the bad reference is one no label names
            m = next(m for w, _, m in failures if w is o)
            return ArenaEscapeError(path_to(id(o)), m)
    return None
