"""Property tests: Python object graphs in arenas, as orbits see them.

Random graphs of the supported types (dict, list, tuple, set, frozenset, str,
bytes, bytearray, int, float, complex, bool, None, and instances of two
module-level classes, one plain and one with ``__slots__``) are built inside
``with arena:`` and passed to an orbit, which sends back a canonical digest
of what it reads from its snapshot.  Between calls, and between
``call_async`` and ``result()``, main mutates the graph: it sets, appends,
pops and deletes items, keys, members and attributes, stores values made
inside the arena and outside it, and links existing nodes (sharing, cycles).

Every call must either return exactly the digest main computes at the moment
of the call, or raise ``ArenaEscapeError`` before running -- and it must
raise exactly when a mutable object (list, dict, set, bytearray, instance)
that is not in the arena is reachable from the argument: immutable values
from outside the arena are copied in, so they never make a call fail.  The
pre-call check may replace references to immutable values by arena copies,
but it must never change what main sees, and once a call runs, everything
reachable from its argument is in the arena or static.  When an example's
objects are gone, so are their arena allocations.

The digest is canonical and linear in the size of the graph: mutable objects
are named by their address, which is the same in main and in the orbit (they
cross by address), and listed once each; dicts, lists and sets keep their
iteration order (the orbit reads the very same tables); frozensets are sorted
(an arena copy of one may order its members differently).

``ORBITPY_PROPERTY_RANDOM=1`` explores new examples on each run instead of
the same derandomized ones.
"""

from __future__ import annotations

import concurrent.futures
import gc
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import orbitpy
from conftest import snapshot_params
from orbitpy import _core

# ------------------------------------------------------------------ classes
# Module level, so that they exist before any orbit forks.


class Plain:
    """Instances get their attributes (names from ATTRS) one by one."""


class Slotted:
    __slots__ = ("x", "y", "z")


ATTRS = ("a", "b", "c", "d", "e")  # sorted; few, so that the shared keys never overflow
SLOTS = Slotted.__slots__
MUTABLE = (list, dict, set, bytearray, Plain, Slotted)
SCALAR_TYPES = (int, float, complex, str, bytes, bool, type(None))

# ------------------------------------------------------------------- digest

Digest = tuple[Any, tuple[tuple[int, Any], ...]]


def canon(root: object, use_vars: bool = False) -> Digest:
    """(the root's representation, ((address, shallow representation) of every
    reachable mutable object, sorted by address)).

    Immutable values are spelled out (type and repr); a mutable object is
    ``("ref", address)``.  `use_vars`: read a Plain instance's attributes from
    its ``__dict__`` (in the orbit: it then also shows attributes main did
    not expect); main must not, since materialising the ``__dict__`` of an
    arena object outside ``with arena:`` puts the dict outside the arena.
    """
    table: dict[int, Any] = {}
    todo: list[Any] = []

    def rep(x: Any) -> Any:
        t = type(x)
        if t in MUTABLE:
            if id(x) not in table:
                table[id(x)] = None
                todo.append(x)
            return ("ref", id(x))
        if t is tuple:
            return ("tuple", tuple(rep(i) for i in x))
        if t is frozenset:
            return ("frozenset", tuple(sorted((rep(i) for i in x), key=repr)))
        if t in SCALAR_TYPES:
            return (t.__name__, repr(x))
        return ("unexpected", t.__name__, repr(x))

    def shallow(x: Any) -> Any:
        t = type(x)
        if t is list:
            return ("list", tuple(rep(i) for i in x))
        if t is dict:
            return ("dict", tuple((rep(k), rep(v)) for k, v in x.items()))
        if t is set:
            return ("set", tuple(rep(i) for i in x))
        if t is bytearray:
            return ("bytearray", bytes(x))
        if t is Plain:
            if use_vars:
                items = sorted(vars(x).items())
            else:
                items = [(n, getattr(x, n)) for n in ATTRS if hasattr(x, n)]
            return ("Plain", tuple((n, rep(v)) for n, v in items))
        assert t is Slotted
        return ("Slotted", tuple((n, rep(getattr(x, n))) for n in SLOTS if hasattr(x, n)))

    top = rep(root)
    while todo:
        x = todo.pop()
        table[id(x)] = shallow(x)
        del x
    return top, tuple(sorted(table.items()))


def orbit_digest(root: object) -> Digest:
    """Runs in the orbit, on its snapshot."""
    assert orbitpy.in_orbit()
    return canon(root, use_vars=True)


# ------------------------------------------------------------- graph walks

def reachable(root: object) -> Iterator[Any]:
    """Every object reachable from root (each once), depth first, in a
    deterministic order; attributes by name, without touching ``__dict__``."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        yield x
        t = type(x)
        kids: list[Any]
        if t in (list, tuple, set, frozenset):
            kids = list(x)
        elif t is dict:
            kids = [y for kv in x.items() for y in kv]
        elif t is Plain:
            kids = [getattr(x, n) for n in ATTRS if hasattr(x, n)]
        elif t is Slotted:
            kids = [getattr(x, n) for n in SLOTS if hasattr(x, n)]
        else:
            kids = []
        stack.extend(reversed(kids))


def outsiders(root: object, arena: orbitpy.Arena) -> list[str]:
    """Reachable objects the orbit does not have: neither in the arena nor
    static (what the pre-call check lets through must be one or the other)."""
    return [f"{type(x).__name__} at {id(x):#x}: {x!r:.60}" for x in reachable(root)
            if not arena.contains(x) and not _core.is_static(x)]


def mutables(root: object) -> list[Any]:
    return [x for x in reachable(root) if type(x) in MUTABLE]


def escape(root: object, arena: orbitpy.Arena) -> str | None:
    """A reachable mutable object outside the arena (what must make a call
    fail), described; None if there is none."""
    for x in reachable(root):
        if type(x) in MUTABLE and not arena.contains(x):
            return f"{type(x).__name__} at {id(x):#x}: {x!r:.60}"
    return None


# --------------------------------------------------------------- building

Spec = tuple[Any, ...]


def fresh_scalar(v: Any) -> Any:
    """A new object equal to v (made where the current allocation goes);
    v itself for singletons and the interpreter's cached values."""
    t = type(v)
    if t is str:
        return (v + "\0")[:-1]
    if t is bytes:
        return bytes(bytearray(v))
    if t is int:
        return int(str(v))
    if t is float:
        return v * 1.0
    if t is complex:
        return complex(v.real, v.imag)
    return v


Placer = Callable[[int], AbstractContextManager[Any]]
CONTAINERS: dict[str, Callable[[list[Any]], Any]] = {
    "list": list, "tuple": tuple, "set": set, "frozenset": frozenset}


def build(spec: Spec, place: Placer | None = None, depth: int = 0) -> Any:
    """The object a spec describes.  Each node is made where this thread
    allocates (in the arena inside ``with arena:``), or, with `place`,
    inside ``place(depth)`` (its children first, at depth + 1)."""
    here = place(depth) if place is not None else nullcontext()
    kind = spec[0]
    if kind == "s":
        with here:
            return fresh_scalar(spec[1]) if spec[2] else spec[1]
    if kind == "bytearray":
        with here:
            return bytearray(spec[1])
    if kind in CONTAINERS:
        items = [build(c, place, depth + 1) for c in spec[1]]
        with here:
            return CONTAINERS[kind](items)
    if kind == "dict":
        pairs = [(build(k, place, depth + 1), build(v, place, depth + 1)) for k, v in spec[1]]
        with here:
            d: dict[Any, Any] = {}
            for k, v in pairs:
                d[k] = v
            return d
    assert kind in ("plain", "slotted"), spec
    attrs = [(name, build(v, place, depth + 1)) for name, v in spec[1]]
    with here:
        obj = Plain() if kind == "plain" else Slotted()
        for name, v in attrs:
            setattr(obj, name, v)
        return obj


# ------------------------------------------------------------- strategies

_scalars = st.one_of(
    st.integers(-10, 300),  # many of these are the interpreter's static small ints
    st.integers(),
    st.floats(allow_nan=False),
    st.complex_numbers(allow_nan=False, max_magnitude=1e9),
    st.text(max_size=5),  # '' and one-character strings are static too
    st.binary(max_size=5),
    st.booleans(),
    st.none(),
)
# ("s", value, fresh): fresh makes a new object where the build happens.
scalar_specs = st.tuples(st.just("s"), _scalars, st.booleans())
hashable_specs = st.recursive(
    scalar_specs,
    lambda c: st.tuples(st.sampled_from(["tuple", "frozenset"]), st.lists(c, max_size=3)),
    max_leaves=5,
)


def _containers(c: st.SearchStrategy[Spec]) -> st.SearchStrategy[Spec]:
    return st.one_of(
        st.tuples(st.just("list"), st.lists(c, max_size=4)),
        st.tuples(st.just("tuple"), st.lists(c, max_size=3)),
        st.tuples(st.just("dict"), st.lists(st.tuples(hashable_specs, c), max_size=3)),
        st.tuples(st.just("set"), st.lists(hashable_specs, max_size=4)),
        st.tuples(st.just("frozenset"), st.lists(hashable_specs, max_size=3)),
        st.tuples(st.just("bytearray"), st.binary(max_size=40)),
        st.tuples(st.just("plain"),
                  st.dictionaries(st.sampled_from(ATTRS), c, max_size=3).map(
                      lambda d: tuple(d.items()))),
        st.tuples(st.just("slotted"),
                  st.dictionaries(st.sampled_from(SLOTS), c, max_size=3).map(
                      lambda d: tuple(d.items()))),
    )


node_specs = st.recursive(st.one_of(scalar_specs, hashable_specs), _containers, max_leaves=10)
root_specs = st.one_of(
    st.tuples(st.just("list"), st.lists(node_specs, max_size=4)),
    st.tuples(st.just("dict"), st.lists(st.tuples(hashable_specs, node_specs), max_size=4)),
    st.tuples(st.just("plain"),
              st.dictionaries(st.sampled_from(ATTRS), node_specs, max_size=4).map(
                  lambda d: tuple(d.items()))),
    st.tuples(st.just("slotted"),
              st.dictionaries(st.sampled_from(SLOTS), node_specs, max_size=3).map(
                  lambda d: tuple(d.items()))),
    st.tuples(st.just("tuple"), st.lists(node_specs, min_size=1, max_size=3)),  # () is static
)


@dataclass(frozen=True)
class Mutation:
    """One change main makes to the graph.

    `target` picks a reachable mutable object and `op` an operation of its
    type; `aux` an index, key or attribute; `value` (a node spec) and `key`
    (a hashable spec) are built inside the arena, outside it, or "mixed"
    (outside at even depths, inside at odd ones: e.g. an outside tuple holding
    a new arena list that holds an outside list), per `where`; or `value` is
    an existing node (`source` "link") or an outside tuple
    around one ("wrap").  `ctx`: the mutation itself runs outside any
    ``with``, inside ``with arena:``, or in nested blocks."""

    target: int
    op: int
    aux: int
    source: str
    value: Spec
    key: Spec
    where: str
    ctx: str
    link: int


mutations = st.builds(
    Mutation,
    target=st.integers(0, 255),
    op=st.integers(0, 255),
    aux=st.integers(0, 255),
    source=st.sampled_from(["new", "new", "new", "link", "wrap"]),
    value=node_specs,
    key=hashable_specs,
    where=st.sampled_from(["in", "in", "out", "mixed"]),
    ctx=st.sampled_from(["outside", "inside", "nested"]),
    link=st.integers(0, 255),
)

# A step: ("mut", Mutation) | ("call",) | ("async",) | ("collect",)
sync_steps = st.lists(
    st.one_of(st.tuples(st.just("mut"), mutations), st.tuples(st.just("call"))),
    max_size=8)
async_steps = st.lists(
    st.one_of(
        st.tuples(st.just("mut"), mutations),
        st.tuples(st.just("mut"), mutations),
        st.tuples(st.just("async")),
        st.tuples(st.just("collect")),
        st.tuples(st.just("call")),
    ),
    max_size=10)


# ------------------------------------------------------------------ the rig

@dataclass
class Rig:
    arena: orbitpy.Arena
    digest: orbitpy.OrbitFunction[[object], Digest]
    calls: int = 0
    escapes: int = 0
    failed: bool = False
    pending: list[tuple[orbitpy.OrbitFuture[Digest], Digest]] = field(default_factory=list)

    def inside(self) -> AbstractContextManager[Any]:
        return self.arena

    def where(self, ctx: str) -> ExitStack:
        stack = ExitStack()
        if ctx in ("inside", "nested"):
            stack.enter_context(self.arena)
        if ctx == "nested":
            stack.enter_context(self.arena)
        return stack

    def make(self, spec: Spec, where: str) -> Any:
        if where == "mixed":  # outside the arena at even depths, inside at odd ones
            return build(spec, lambda depth: self.arena if depth % 2 else nullcontext())
        with self.where("inside" if where == "in" else "outside"):
            return build(spec)


@pytest.fixture
def rig(request: pytest.FixtureRequest,
        new_arena: Callable[..., orbitpy.Arena]) -> Iterator[Rig]:
    """One arena and one orbit for all the examples of a test."""
    mode = getattr(request, "param", None)
    arena = new_arena(64 << 20, mode)
    fn: orbitpy.OrbitFunction[[object], Digest] = orbitpy.orbit(timeout=30)(orbit_digest)
    r = Rig(arena, fn)
    gc.collect()
    gc.freeze()  # full collections after each example walk only what it made
    try:
        yield r
        if r.failed:  # the failure says it all
            return
        st_ = fn.orbit.stats()
        assert st_["crashes"] == 0 and st_["restarts"] == 0, st_
        assert r.calls >= 100, "the examples hardly called the orbit"
        assert r.escapes > 0, "no example stored an outside mutable"
    finally:
        gc.unfreeze()
        fn.orbit.close()


# ------------------------------------------------------------- operations

def apply(rig: Rig, root: Any, m: Mutation) -> None:
    """Apply mutation m to the graph from root (never raises)."""
    targets = mutables(root)
    if not targets:
        return
    t = targets[m.target % len(targets)]
    if m.source == "link":
        nodes = targets
        value = nodes[m.link % len(nodes)]
    elif m.source == "wrap":  # an outside tuple holding an existing node
        nodes = targets
        value = (nodes[m.link % len(nodes)], fresh_scalar(m.link + 1000))
    else:
        value = rig.make(m.value, m.where)
    key = rig.make(m.key, m.where)
    with rig.where(m.ctx):
        _mutate(t, m.op, m.aux, value, key)
    del t, targets, value, key


def _mutate(t: Any, op: int, aux: int, value: Any, key: Any) -> None:
    if type(t) is list:
        n = len(t)
        op %= 8
        if op == 0 or (n == 0 and op in (1, 2, 3)):
            t.append(value)
        elif op == 1:
            t[aux % n] = value
        elif op == 2:
            t.pop(aux % n)
        elif op == 3:
            del t[aux % n:]
        elif op == 4:
            t.insert(aux % (n + 1), value)
        elif op == 5:
            t.extend([value, key])
        elif op == 6:
            t.clear()
        else:
            t.extend(range(aux % 40))  # grows the item table
    elif type(t) is dict:
        keys = list(t)
        op %= 7
        if op == 0 or (not keys and op in (1, 2, 3)):
            t[key] = value
        elif op == 1:
            t[keys[aux % len(keys)]] = value
        elif op == 2:
            del t[keys[aux % len(keys)]]
        elif op == 3:
            t.popitem()
        elif op == 4:
            t.clear()
        elif op == 5:
            for i in range(aux % 20):  # grows (and moves) the key table
                t[(i, aux)] = i
        else:
            t.update({key: value, "k": key})
    elif type(t) is set:
        op %= 5
        if op == 0 or (not t and op in (1, 2)):
            t.add(key)
        elif op == 1:
            t.discard(list(t)[aux % len(t)])
        elif op == 2:
            t.pop()
        elif op == 3:
            t.clear()
        else:
            t.update(range(aux % 30))  # grows the table
    elif type(t) is bytearray:
        op %= 4
        if op == 0:
            t.extend(bytes(range(aux % 256)))
        elif op == 1 and t:
            t[aux % len(t)] = aux % 256
        elif op == 2:
            del t[aux % (len(t) + 1):]
        else:
            t[:] = bytes([aux % 256]) * (aux % 70)
    else:  # Plain or Slotted
        names = ATTRS if type(t) is Plain else SLOTS
        name = names[aux % len(names)]
        if op % 3 == 2 and hasattr(t, name):
            delattr(t, name)
        else:
            setattr(t, name, value if op % 3 == 0 else key)


# ------------------------------------------------------------------ calls
# The checks below hold no reference to arena objects when they fail (a
# failure's traceback would keep them alive past the test).


def issue(rig: Rig, root: Any, asynchronously: bool) -> Any:
    """Issue a call of the digest orbit on root, checking what main sees
    around it.  Returns the future of an async call (None otherwise)."""
    bad, want = escape(root, rig.arena), canon(root)
    refused: str | None = None
    got: Any = None
    try:
        if asynchronously:
            got = rig.digest.call_async(root)
        else:
            got = rig.digest(root)
    except orbitpy.ArenaEscapeError as e:
        refused = str(e)
    after, out = canon(root), outsiders(root, rig.arena)
    del root
    if refused is not None:
        assert bad is not None, \
            f"ArenaEscapeError although every mutable is in the arena: {refused}"
        assert after == want, "a refused call changed what main sees"
        rig.escapes += 1
        return None
    rig.calls += 1
    assert bad is None, f"the call ran although the orbit could reach {bad}"
    assert after == want, "the pre-call check changed what main sees"
    assert not out, f"the call ran with references out of the arena: {out}"
    if asynchronously:
        rig.pending.append((got, want))
        return got
    assert got == want, "the orbit saw another graph than main had at the call"
    return None


def collect(rig: Rig) -> None:
    """The results of the async calls issued so far, in order."""
    while rig.pending:
        fut, want = rig.pending.pop(0)
        assert fut.result(timeout=30) == want, \
            "an async call saw another graph than main had at call_async"


def run_steps(rig: Rig, root_spec: Spec, steps: list[tuple[Any, ...]]) -> None:
    """One example: build the graph, run the steps, a last sync call, then
    every arena allocation of the example must be gone with its objects."""
    try:
        _run_steps(rig, root_spec, steps)
    except BaseException:
        rig.failed = True
        raise


def _run_steps(rig: Rig, root_spec: Spec, steps: list[tuple[Any, ...]]) -> None:
    rig.pending.clear()  # left by a failed example
    allocations = rig.arena.stats()["allocations"]
    with rig.inside():
        root = build(root_spec)
    try:
        assert rig.arena.contains(root)
        for step in steps:
            if step[0] == "mut":
                apply(rig, root, step[1])
            elif step[0] == "call":
                issue(rig, root, asynchronously=False)
            elif step[0] == "async":
                issue(rig, root, asynchronously=True)
            else:
                collect(rig)
        issue(rig, root, asynchronously=False)  # and a last look, after everything
    finally:
        del root
        for fut, _ in rig.pending:  # a failed example leaves no call running
            concurrent.futures.wait([fut], timeout=30)
    collect(rig)
    orbitpy.collect_arenas()  # the example's cycles (links) are garbage now
    left = rig.arena.stats()["allocations"] - allocations
    assert left <= 0, f"{left} arena allocations outlived the example's objects"
    gc.freeze()  # what survived is the test's: the next collection need not walk it


# ------------------------------------------------------------------- tests

_RANDOM = os.environ.get("ORBITPY_PROPERTY_RANDOM") == "1"
_SETTINGS = {
    "deadline": None,
    "derandomize": not _RANDOM,
    "database": None,
    "phases": [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                              HealthCheck.data_too_large],
}


@pytest.mark.timeout(300)
@settings(max_examples=800, **_SETTINGS)
@given(root_spec=root_specs, steps=sync_steps)
def test_sync_calls_see_the_graph_main_has(rig: Rig, root_spec: Spec,
                                           steps: list[tuple[Any, ...]]) -> None:
    run_steps(rig, root_spec, steps)


@pytest.mark.timeout(300)
@settings(max_examples=800, **_SETTINGS)
@given(root_spec=root_specs, steps=async_steps)
def test_async_calls_see_the_graph_as_of_call_async(rig: Rig, root_spec: Spec,
                                                    steps: list[tuple[Any, ...]]) -> None:
    run_steps(rig, root_spec, steps)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("rig", snapshot_params(["mprotect", "full"]), indirect=True)
@settings(max_examples=250, **_SETTINGS)
@given(root_spec=root_specs, steps=async_steps)
def test_async_calls_in_other_snapshot_modes(rig: Rig, root_spec: Spec,
                                             steps: list[tuple[Any, ...]]) -> None:
    run_steps(rig, root_spec, steps)
