"""Stale globals: noticing that main rebound a module global an orbit
function reads, after the orbit process was forked.

The orbit is a fork of main: it sees main's memory as it was at the fork,
plus its arenas as of each call.  A module global rebound in main later
(``CONFIG = load()``) keeps its old value in the orbit, silently.  At each
fork this records the identity (``id``) of every global the function reads;
each call compares the current identities with them (a few dict lookups),
and a difference is reported once per orbit and global.

Only rebinding is seen.  Mutating the object in place (``CONFIG["x"] = 1``)
keeps its identity and is not reported, although the orbit does not see that
either (only arena objects are re-synchronised on each call).  An identity
is the object's address: a global rebound twice between two calls, the
second time to an object that reuses the address of the value recorded at
the fork, goes unnoticed.

The orbit is not restarted automatically: it may hold state of its own
across calls (caches, open connections) that a restart would drop, and a
rebinding may be harmless to it; the warning says how to fix it.
"""

from __future__ import annotations

import dis
import os
import sys
import types
import warnings
from collections.abc import Callable
from typing import Any

from .errors import OrbitStaleGlobalWarning

_READS = frozenset({"LOAD_GLOBAL", "LOAD_NAME"})
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def global_names(fn: Callable[..., Any]) -> tuple[str, ...]:
    """The names fn looks up in its module's globals: in its code, in code
    nested in it (inner functions, lambdas, comprehensions) and, through the
    plain functions of the same module it reads (helpers), in theirs."""
    g = getattr(fn, "__globals__", None)
    code = getattr(fn, "__code__", None)
    if not isinstance(g, dict) or not isinstance(code, types.CodeType):
        return ()
    names: dict[str, None] = {}
    seen: set[int] = set()
    todo = [code]
    while todo:
        c = todo.pop()
        if id(c) in seen:
            continue
        seen.add(id(c))
        for ins in dis.get_instructions(c):
            if ins.opname not in _READS or ins.argval in names:
                continue
            names[ins.argval] = None
            helper = g.get(ins.argval)
            if isinstance(helper, types.FunctionType) and helper.__globals__ is g:
                todo.append(helper.__code__)
        todo.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    return tuple(names)


class GlobalsWatch:
    """The globals one orbit function reads, and their identities when its
    orbit process was last forked.

    ``watched`` ((name, id) pairs) is replaced whole, never changed in place:
    a call racing a fork reads the old tuple or the new one."""

    __slots__ = ("_fn", "_all", "globals", "watched", "warned")

    def __init__(self, fn: Callable[..., Any]) -> None:
        self._fn = fn
        self._all: tuple[str, ...] | None = None  # found at the first fork
        self.globals: dict[str, Any] = fn.__globals__  # type: ignore[attr-defined]
        self.watched: tuple[tuple[str, int], ...] = ()
        self.warned: set[str] = set()

    @classmethod
    def of(cls, fn: Callable[..., Any]) -> GlobalsWatch | None:
        """A watch for fn, or None when it reads no module globals of its own
        (not a plain Python function)."""
        if not isinstance(getattr(fn, "__globals__", None), dict) or \
                not isinstance(getattr(fn, "__code__", None), types.CodeType):
            return None
        return cls(fn)

    def forked(self) -> None:
        """Main, right before the orbit process is forked (GIL held through
        the fork): record what the orbit will see."""
        if self._all is None:
            # Lazily: helpers defined after the decorated function exist now.
            self._all = global_names(self._fn)
        g = self.globals
        # Modules are left out: they are rarely rebound (importlib.reload
        # refills the same module object), and are most of what functions
        # read, so watching them would cost every call for nothing.
        self.watched = tuple((n, id(g[n])) for n in self._all
                             if n in g and n not in self.warned
                             and not isinstance(g[n], types.ModuleType))

    def changed(self) -> bool:
        """True if a watched global is rebound (the per-call check: one dict
        lookup per name)."""
        get = self.globals.get
        for name, ident in self.watched:
            if id(get(name)) != ident:
                return True
        return False

    def report(self, what: str) -> None:
        """Warn about each global rebound since the fork, once, and stop
        watching it."""
        g = self.globals
        stale = [name for name, ident in self.watched if id(g.get(name)) != ident]
        self.watched = tuple((n, i) for n, i in self.watched if n not in stale)
        for name in stale:
            if name in self.warned:
                continue
            self.warned.add(name)
            change = "rebound" if name in g else "deleted"
            warnings.warn(OrbitStaleGlobalWarning(
                f"orbit function {what!r} reads the module global {name!r}, {change} in "
                f"main after its orbit process started: the orbit still sees the old "
                f"value. Pass it as an argument (or keep the state in an arena), or "
                f"restart the orbit (fn.orbit.restart()) after changing it.",
                function=what, name=name),
                stacklevel=_caller_level())


def _caller_level() -> int:
    """stacklevel for warnings.warn called from report(): the first frame
    outside orbitpy (the user's call)."""
    level = 2  # report()'s caller
    f = sys._getframe(2)
    while f is not None and f.f_code.co_filename.startswith(_PACKAGE_DIR):
        f = f.f_back  # type: ignore[assignment]
        level += 1
    return level
