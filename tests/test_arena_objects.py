"""Python objects in arenas: placement, zero-copy calls, the pre-call checks.

``with arena:`` makes the objects this thread creates live in the arena; an
arena object passed to an orbit crosses by address and the orbit reads it from
its page snapshot.  Before every call main checks, from the pages changed since
the last check, that everything the orbit can reach is memory it has: outside
immutable values are copied in, tables that grew outside a block are moved in,
anything else raises ArenaEscapeError before the call is sent.

Every test starts from the same free-list state (see `settled_free_lists`):
after a full collection, with CPython's float, tuple and dict-key free lists
full of blocks from outside any arena -- what a program that has run a while
has.  The trap tests that are about free lists drain them on purpose.
"""

from __future__ import annotations

import gc
import random
import re
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import orbitpy
from conftest import snapshot_params
from objects_util import fill_free_lists

BIG = 1 << 40  # ints far beyond CPython's small-int cache: each one is a new object
TRACKED_MODES = ["uffd", "mprotect"]


# ------------------------------------------------------------------ helpers

@pytest.fixture(autouse=True)
def settled_free_lists() -> None:
    gc.collect()
    fill_free_lists()


def checks(arena: orbitpy.Arena) -> dict[str, int]:
    return dict(arena.stats()["checks"])


class WithDict:
    def __init__(self, a: Any, b: Any) -> None:
        self.a = a
        self.b = b


class WithSlots:
    __slots__ = ("a", "b")

    def __init__(self, a: Any, b: Any) -> None:
        self.a = a
        self.b = b


class Node:
    """Weak-referenceable, with a __dict__: for rings (reference cycles)."""

    def __init__(self, i: int) -> None:
        self.i = i
        self.peer: Node | None = None


def ring(n: int) -> list[Node]:
    nodes = [Node(i) for i in range(n)]
    for i in range(n):
        nodes[i].peer = nodes[(i + 1) % n]
    return nodes


def nested(n: int, depth: int = 10) -> Any:
    """`depth` levels of lists, dicts and instances around a big int.  (Floats
    and tuples have their own cases: free lists make them a trap of their own.)"""
    obj: Any = BIG + n
    for level in range(depth):
        kind = level % 4
        if kind == 0:
            obj = [obj, n]
        elif kind == 1:
            obj = {n + level: obj}
        elif kind == 2:
            obj = WithDict(obj, n)
        else:
            obj = WithSlots(obj, n)
    return obj


def levels(obj: Any) -> Iterator[Any]:
    """Every object of a `nested` structure, outermost first."""
    while True:
        yield obj
        if isinstance(obj, list):
            obj = obj[0]
        elif isinstance(obj, dict):
            obj = next(iter(obj.values()))
        elif isinstance(obj, (WithDict, WithSlots)):
            obj = obj.a
        else:
            return


# Each factory makes a new object from a runtime value (no constants).
KINDS: dict[str, Callable[[int], Any]] = {
    "dict": lambda n: {n: n + 1, n + 1: n},  # str-keyed tables: see the dict-keys trap
    "list": lambda n: [n, n + 1],
    "tuple": lambda n: (n, n + 1),
    "set": lambda n: {n, n + 1},
    "frozenset": lambda n: frozenset([n, n + 1]),
    "str": lambda n: "s" * (n % 7 + 20),
    "bytes": lambda n: bytes(range(n % 7 + 20)),
    "bytearray": lambda n: bytearray(n % 7 + 20),
    "int": lambda n: BIG + n,
    "float": lambda n: n / 7,
    "complex": lambda n: complex(n, 0.5),
    "instance with __dict__": lambda n: WithDict(n, n + 1),
    "instance with __slots__": lambda n: WithSlots(n, n + 1),
    "nested depth 10": nested,
}


def parts(kind: str, obj: Any) -> list[Any]:
    return list(levels(obj)) if kind == "nested depth 10" else [obj]


# ------------------------------------------------------------- 1. placement

@pytest.mark.parametrize("kind", list(KINDS))
def test_made_inside_a_block_lives_in_the_arena(kind: str, new_arena: Any) -> None:
    arena = new_arena(4 << 20)
    make = KINDS[kind]
    with arena:
        objs = [make(n) for n in range(1000, 1010)]
    missing = [type(p).__name__ for o in objs for p in parts(kind, o) if not arena.contains(p)]
    assert not missing, f"made inside the block but not in the arena: {missing}"


@pytest.mark.parametrize("kind", list(KINDS))
def test_made_outside_any_block_is_not_in_the_arena(kind: str, new_arena: Any) -> None:
    arena = new_arena(4 << 20)
    make = KINDS[kind]
    with arena:
        inside = [make(n) for n in range(1000, 1010)]
    outside = [make(n) for n in range(2000, 2010)]
    stray = [type(p).__name__ for o in outside for p in parts(kind, o) if arena.contains(p)]
    assert not stray, f"made outside any block but in the arena: {stray}"
    del inside


@pytest.mark.parametrize("kind", list(KINDS))
def test_memory_of_deleted_arena_objects_returns(kind: str, new_arena: Any) -> None:
    arena = new_arena(4 << 20)
    make = KINDS[kind]
    with arena:
        pass
    start = arena.stats()
    with arena:
        objs = [make(n) for n in range(1000, 1200)]
    assert arena.stats()["used"] > start["used"]
    del objs
    gc.collect()
    end = arena.stats()
    assert (end["used"], end["allocations"]) == (start["used"], start["allocations"])


def test_module_globals_growing_inside_a_block_keep_their_table_outside(
        new_arena: Any) -> None:
    """A dict made outside the arena that grows inside a block gets its new
    table from the arena (the allocator cannot tell tables from objects).
    For the interpreter's own dicts that an orbit reads from its fork (module
    globals, builtins, sys.modules, interned strings) the table is moved
    back to the heap when the block ends.  (Other outside containers grown
    inside a block are a documented limit: see the README.)"""
    a = new_arena(1 << 20)
    g = globals()
    names = [f"_grown_{i}" for i in range(300)]  # made outside: only the table grows
    try:
        with a:
            for n in names:
                g[n] = 7  # a small int: static, nothing new is made
        assert a.stats()["allocations"] == 0
    finally:
        for n in names:
            g.pop(n, None)


def test_other_modules_globals_grown_in_a_block_leave_the_arena_before_it_closes(
        new_arena: Any) -> None:
    """A block that grows another module's globals (setattr on a module)
    leaves its key table in the arena until an orbit starts or the arena
    closes (walking every module at each block's end would cost every
    block microseconds): close moves it out, so close succeeds and the
    module stays readable after the arena is unmapped."""
    import types
    mod = types.ModuleType("_orbitpy_grown")
    sys.modules[mod.__name__] = mod
    names = [f"_g{i}" for i in range(300)]  # made outside: only the table grows
    a = new_arena(1 << 20)
    try:
        with a:
            for name in names:
                setattr(mod, name, 7)  # a small int: static, nothing new is made
        a.close()  # the table is no live allocation of the arena's any more
        assert a.closed
        assert [getattr(mod, n) for n in names] == [7] * len(names)
        mod._after = 1  # type: ignore[attr-defined]  # the table is writable heap memory
    finally:
        del sys.modules[mod.__name__]


# -------------------------------------------------------------- 2. zero copy

def test_orbit_reads_arena_objects_in_place_as_of_call_time(
        mode: str, make_orbit: Any, new_arena: Any) -> None:
    arena = new_arena(16 << 20, mode)
    with arena:
        table = {k: [k - BIG, "v" * (k % 5 + 2)] for k in range(BIG, BIG + 500)}

    def look(t: dict[int, list[Any]]) -> tuple[int, int, list[Any], int]:
        return id(t), id(t[BIG]), list(t[BIG]), len(t)

    f = make_orbit(look, timeout=10)
    first = [0, "v" * (BIG % 5 + 2)]
    assert f(table) == (id(table), id(table[BIG]), first, 500)
    fut = f.call_async(table)
    # Main changes and frees what the call is reading: the call sees the arena
    # as it was when it was issued.
    with arena:
        table[BIG][1] = "changed" * 2
        del table[BIG + 1]
        table[BIG + 1000] = [1000, "new" * 2]
    assert fut.result(10) == (id(table), id(table[BIG]), first, 500)
    assert f(table) == (id(table), id(table[BIG]), [0, "changed" * 2], 500)


@pytest.mark.parametrize("snapshot", snapshot_params(TRACKED_MODES))
def test_check_cost_follows_changed_pages(snapshot: str, make_orbit: Any,
                                          new_arena: Any) -> None:
    arena = new_arena(64 << 20, snapshot)
    with arena:
        big = {k: k - BIG for k in range(BIG, BIG + 200_000)}

    def get(d: dict[int, int], k: int) -> tuple[int, int, int]:
        return id(d), len(d), d[k]

    f = make_orbit(get, timeout=30)
    c0 = checks(arena)
    assert f(big, BIG + 7) == (id(big), 200_000, 7)
    c1 = checks(arena)
    assert f(big, BIG + 7) == (id(big), 200_000, 7)
    c2 = checks(arena)
    with arena:
        big[BIG + 5] = -BIG
    assert f(big, BIG + 5) == (id(big), 200_000, -BIG)
    c3 = checks(arena)
    first, second, third = (c1["pages"] - c0["pages"], c2["pages"] - c1["pages"],
                            c3["pages"] - c2["pages"])
    assert first > 1000, "the first check must walk the whole table"
    assert second <= 8 and third <= 8, (first, second, third)
    assert c2["objects"] - c1["objects"] < 1000


# ------------------------------------------------------------------ 3. traps

FREE_LIST_KINDS: dict[str, Callable[[int], Any]] = {
    "float": lambda i: i / 3 + 0.5,
    "tuple": lambda i: (i, -i),
    "list": lambda i: [i],
    "dict": lambda i: {i: i},
}


@pytest.mark.parametrize("kind", list(FREE_LIST_KINDS))
def test_trap_free_lists_objects_made_inside_land_in_the_arena(kind: str,
                                                               new_arena: Any) -> None:
    """After a full collection (which CPython runs by itself too), objects of
    kinds CPython recycles through free lists, freed outside a block, must not
    be handed out again inside it."""
    make = FREE_LIST_KINDS[kind]
    arena = new_arena(4 << 20)
    with arena:
        pass
    gc.collect()
    junk = [make(i) for i in range(300)]
    del junk  # parked on the free list, if it is open
    with arena:
        made = [make(i) for i in range(300)]
    outside = sum(not arena.contains(o) for o in made)
    assert outside == 0, f"{outside} of 300 {kind}s made inside the block are not in the arena"


@pytest.mark.parametrize("kind", list(FREE_LIST_KINDS))
def test_trap_free_lists_freed_arena_objects_do_not_come_back_outside(
        kind: str, new_arena: Any) -> None:
    make = FREE_LIST_KINDS[kind]
    arena = new_arena(4 << 20)
    with arena:
        pass
    gc.collect()
    hold = [make(i) for i in range(3000)]  # take whatever the free list holds
    with arena:
        made = [make(i) for i in range(300)]
    assert all(arena.contains(o) for o in made)
    del made
    later = [make(i) for i in range(300)]
    back = sum(arena.contains(o) for o in later)
    assert back == 0, f"{back} of 300 {kind}s made outside any block are in the arena"
    del hold


def test_trap_free_list_dict_key_tables_stay_in_their_arena(make_orbit: Any,
                                                            new_arena: Any) -> None:
    """CPython parks the key tables of small str-keyed dicts on a free list.
    A table freed from arena a must return to a, not be handed to the next
    dict -- which may be made outside, or in arena b."""
    a, b = new_arena(4 << 20), new_arena(4 << 20)
    with a:
        pass
    hold = [{"k" + str(i): i} for i in range(200)]  # take every parked table
    with a:
        made = [{"x" + str(i): i} for i in range(50)]
    del made
    leftover = a.stats()["allocations"]
    with b:
        table = {"inner": {"x": 1}}

    def read(t: dict[str, dict[str, int]]) -> int:
        return t["inner"]["x"]

    f = make_orbit(read, timeout=10)
    try:
        got: Any = f(table)
    except orbitpy.OrbitError as e:
        got = e
    assert (leftover, got) == (0, 1)
    del hold


def test_calls_with_two_arenas_see_every_change_in_both(make_orbit: Any,
                                                      new_arena: Any) -> None:
    """One call, two object arenas: each is checked and scanned once, the
    snapshot reuses both scans, and what the checks themselves write (copies
    of outside values stored since) reaches the orbit in the same call."""
    a, b = new_arena(4 << 20), new_arena(4 << 20)
    with a:
        left = [[BIG + i] for i in range(300)]
    with b:
        right = {i: [BIG - i] for i in range(300)}

    def read(left: list[list[Any]], right: dict[int, list[Any]], i: int) -> tuple[Any, Any]:
        return left[i][0], right[i][0]

    f = make_orbit(read, timeout=10)
    assert f(left, right, 5) == (BIG + 5, BIG - 5)
    rng = random.Random(7)
    for n in range(30):
        i = rng.randrange(300)
        if n % 3 == 0:  # made outside both arenas: copied in by the checks
            left[i][0], right[i][0] = f"L{n}" * 3, (n, f"R{n}")
        else:
            with a:
                left[i][0] = BIG * 2 + n
            with b:
                right[i][0] = BIG * 3 + n
        assert f(left, right, i) == (left[i][0], right[i][0])
        assert a.contains(left[i][0]) and b.contains(right[i][0])


MISSING = "<missing>"


@pytest.mark.parametrize("registered", ["with instances", "before instances"])
@pytest.mark.parametrize("where", ["inside", "outside"])
def test_trap_shared_keys_attribute_added_after_orbit_start(
        where: str, registered: str, make_orbit: Any, new_arena: Any) -> None:
    """The orbit has the class's shared keys as they were at its fork; names
    the class gained since must still read right, by attribute and in vars().
    `registered`: whether the class had instances (hence keys) at the fork."""

    class Person:
        def __init__(self, name: str, age: int) -> None:
            self.name = name
            self.age = age

    names = ("name", "age", "email")

    def attrs(ps: list[Person]) -> list[tuple[list[Any], list[tuple[str, Any]]]]:
        return [([getattr(p, n, MISSING) for n in names], sorted(vars(p).items()))
                for p in ps]

    def expected() -> list[tuple[list[Any], list[tuple[str, Any]]]]:
        # getattr, not vars(): vars() would give each instance a dict made here
        return [([getattr(p, n, MISSING) for n in names],
                 sorted((n, getattr(p, n)) for n in names if hasattr(p, n)))
                for p in people]

    f = make_orbit(attrs, timeout=10)
    if registered == "before instances":
        assert f([]) == []  # the orbit forks: Person has no instance, its keys no names
    arena = new_arena(4 << 20)
    with arena:
        people = [Person("p" + str(i), BIG + i) for i in range(40)]
    assert f(people) == expected()  # the orbit forks (if it has not yet)

    def grow() -> None:
        for i, p in enumerate(people):
            if i % 2 == 0:
                p.email = p.name + "@example.org"  # a name the class's keys did not have
            if i % 3 == 0:
                p.age = -BIG - i

    if where == "inside":
        with arena:
            grow()
    else:
        grow()
    assert f(people) == expected()
    for p in people[:10]:
        p.age = BIG * 2  # changed again after the checks saw the instances
    assert f(people) == expected()


def test_trap_class_changed_after_orbit_start_restarts_the_orbit(
        make_orbit: Any, new_arena: Any) -> None:
    class Account:
        def __init__(self, owner: str) -> None:
            self.owner = owner

    arena = new_arena(1 << 20)
    with arena:
        accounts = {"acc": Account("ann" * 2)}

    def look(accts: dict[str, Account]) -> tuple[str, Any, str]:
        acc = accts["acc"]
        return type(acc).__name__, getattr(type(acc), "currency", None), acc.owner

    f = make_orbit(look, timeout=10)
    assert f(accounts) == ("Account", None, "annann")
    Account.currency = "EUR"  # type: ignore[attr-defined]
    # the orbit restarts (it had no call pending) and sees the class as now
    assert f(accounts) == ("Account", "EUR", "annann")
    assert f.orbit.stats()["class_refreshes"] == 1


@pytest.mark.parametrize("made", ["inside", "outside"])
def test_trap_class_created_after_orbit_start(
        made: str, make_orbit: Any, new_arena: Any) -> None:
    arena = new_arena(1 << 20)
    with arena:
        table: dict[str, Any] = {"n": [1]}

    def kinds(t: dict[str, Any]) -> list[str]:
        return [type(v).__name__ for v in t.values()]

    f = make_orbit(kinds, timeout=10)
    assert f(table) == ["list"]

    class Late:
        pass

    if made == "inside":
        with arena:
            table["late"] = Late()
        assert arena.contains(table["late"])
        # the orbit restarts and knows the class from then on
        assert f(table) == ["list", "Late"]
        assert f.orbit.stats()["class_refreshes"] == 1
    else:
        table["late"] = Late()
        # an object made outside the arena: that is the error, not its class
        with pytest.raises(orbitpy.ArenaEscapeError) as ei:
            f(table)
        assert ei.value.path == "t['late']"
        assert "not in the arena" in ei.value.reason and "Late" in ei.value.reason


def test_trap_outside_immutable_stored_after_fork_is_copied(make_orbit: Any,
                                                            new_arena: Any) -> None:
    arena = new_arena(4 << 20)
    with arena:
        table: dict[str, Any] = {"seed": [0]}

    def read(t: dict[str, Any]) -> dict[str, Any]:
        return dict(t)

    f = make_orbit(read, timeout=10)
    assert f(table) == {"seed": [0]}
    # (keys that are not among the interpreter's static identifier strings,
    # which need no copy)
    values: dict[str, Any] = {
        "v-str": "outside " + str(BIG), "v-int": BIG * 3 + 1, "v-float": BIG / 3,
        "v-bytes": bytes(range(30)), "v-complex": complex(BIG, 1),
        "v-tuple": ("t" + str(BIG), BIG + 2, BIG * 2.5),
        "v-frozenset": frozenset(["a" + str(BIG), BIG + 5]),
    }
    assert not any(arena.contains(v) for v in values.values())
    before = checks(arena)
    table.update(values)  # outside any block
    assert f(table) == {"seed": [0], **values}
    assert [k for k in values if not arena.contains(table[k])] == []
    assert [k for k in table if not arena.contains(k)] == []
    assert {k: table[k] for k in values} == values
    assert checks(arena)["copies"] - before["copies"] >= len(values)


MUTABLES: dict[str, Callable[[], Any]] = {
    "list": lambda: ["out", "side"],
    "dict": lambda: {"out": 1},
    "set": lambda: {"out"},
    "bytearray": lambda: bytearray(b"outside"),
    "WithDict": lambda: WithDict(1, 2),
}


@pytest.mark.parametrize("kind", list(MUTABLES))
def test_trap_outside_mutable_stored_after_fork_is_refused_with_its_path(
        kind: str, make_orbit: Any, new_arena: Any) -> None:
    class Person:
        def __init__(self, name: str) -> None:
            self.name = name
            self.history = [BIG + i for i in range(5)]

    arena = new_arena(1 << 20)
    with arena:
        table = {"ann": Person("ann" * 2), "bob": Person("bob" * 2)}

    def history(table: dict[str, Person]) -> list[Any]:
        return list(table["bob"].history)

    f = make_orbit(history, timeout=10)
    assert f(table) == [BIG + i for i in range(5)]
    table["bob"].history[3] = MUTABLES[kind]()
    with pytest.raises(orbitpy.ArenaEscapeError) as ei:
        f(table)
    assert ei.value.path == "table['bob'].history[3]"
    assert kind in ei.value.reason and "not in the arena" in ei.value.reason
    table["bob"].history[3] = 99
    assert f(table) == [BIG, BIG + 1, BIG + 2, 99, BIG + 4]


@pytest.mark.parametrize("container", ["list", "dict"])
def test_store_anywhere_in_a_multi_page_table_is_checked(container: str, make_orbit: Any,
                                                         new_arena: Any) -> None:
    """A table several pages long (a list's items, a dict's entries): a store
    into any of its pages -- the last, partly covered one too -- is seen by
    the next check, wherever the table starts in its first page."""
    n = 1500  # 12 KB of list items, ~36 KB of dict entries
    arena = new_arena(4 << 20)
    with arena:
        pad = [bytes(k * 16) for k in range(1, 40)]  # vary where the table starts
        table: Any = list(range(BIG, BIG + n)) if container == "list" else {
            i: BIG + i for i in range(n)}

    def pick(table: Any, i: int) -> Any:
        return table[i]

    f = make_orbit(pick, timeout=10)
    assert f(table, 0) == BIG
    for i in [0, 1, n // 4, n // 2, 3 * n // 4, n - 2, n - 1]:
        table[i] = bytearray(3)  # mutable, outside the arena: never copied
        with pytest.raises(orbitpy.ArenaEscapeError) as ei:
            f(table, i)
        assert ei.value.path == f"table[{i}]"
        table[i] = i  # a small int: static, fine
        assert f(table, i) == i
    del pad


def test_trap_class_freed_and_address_reused_is_not_taken_for_the_old(
        make_orbit: Any, new_arena: Any) -> None:
    def make_class(kind: str) -> type:
        return type("Thing", (), {"kind": kind})

    arena = new_arena(1 << 20)
    old = make_class("old")
    with arena:
        table: dict[str, Any] = {"thing": old()}

    def kind_of(t: dict[str, Any]) -> str:
        return str(type(t["thing"]).kind)

    f = make_orbit(kind_of, timeout=10)
    assert f(table) == "old"
    old_addr, old_ref = id(old), weakref.ref(old)
    del table["thing"], old
    gc.collect()
    assert old_ref() is None
    keep: list[type] = []
    new = make_class("new")
    while id(new) != old_addr and len(keep) < 200:
        keep.append(new)
        new = make_class("new")
    with arena:
        table["thing"] = new()
    reused = id(new) == old_addr
    try:
        got: Any = f(table)
    except Exception as e:  # the orbit took another object for the class, or crashed
        got = e
    # a class made after the orbit started: the orbit restarts to know it
    assert got == "new", f"class address {'reused' if reused else 'not reused'}"
    assert f.orbit.stats()["class_refreshes"] == 1


def test_trap_objects_present_at_fork_read_correctly_after_change_and_free(
        make_orbit: Any, new_arena: Any) -> None:
    rng = random.Random(1234)
    arena = new_arena(16 << 20)
    with arena:
        table: dict[int, Any] = {i: [str(i) * 3, BIG + i, {i: -i}] for i in range(2000)}

    f = make_orbit(repr, timeout=20)
    assert f(table) == repr(table)  # the orbit forks here: all of table is in it

    def mutate(n: int) -> None:
        for _ in range(n):
            k, op = rng.randrange(2000), rng.randrange(5)
            if op == 0:
                table[k] = [str(k) * 2, BIG - k]  # the old value is freed
            elif op == 1:
                table.pop(k, None)
            elif op == 2 and isinstance(table.get(k), list):
                table[k][0] = "v" + str(rng.random())
            elif op == 3:
                table[k] = {k: [k, BIG * 2 - k]}  # freed memory reused by another type
            else:
                table[k] = rng.random()

    def mutate_outside(n: int) -> None:
        """Outside any block only immutable values may be stored (they are copied in)."""
        for _ in range(n):
            k = rng.randrange(2000)
            if rng.randrange(2):
                table[k] = ("t" + str(k), BIG + k, rng.random())
            else:
                table.pop(k, None)

    for _ in range(6):
        with arena:
            mutate(300)
        mutate_outside(50)
        expected = repr(table)
        fut = f.call_async(table)
        with arena:
            mutate(300)  # change and free what the pending call reads
        assert fut.result(20) == expected
        assert f(table) == repr(table)


# -------------------------------------------------------------- 4. lifecycle

def test_orbit_refcount_changes_never_reach_main(make_orbit: Any, new_arena: Any) -> None:
    arena = new_arena(8 << 20)
    with arena:
        shared = ["shared" * 2]
        values = [str(i) * 4 for i in range(1000)]
        table = {"values": values, "shared": shared, "many": [shared] * 500}

    def hoard(t: dict[str, Any]) -> tuple[int, int, int]:
        keep: list[Any] = []
        for _ in range(50):
            keep.extend(t["values"])
            keep.extend(t["many"])
            keep.extend(t.values())
        return sys.getrefcount(t["shared"]), sum(map(len, t["values"])), len(keep)

    f = make_orbit(hoard, timeout=20)

    def counts() -> tuple[int, ...]:
        return tuple(sys.getrefcount(o) for o in (table, values, shared, values[0], values[-1]))

    f(table)  # the first check copies the keys (str constants) into the arena
    before, used = counts(), arena.stats()["used"]
    results = [f(table) if i % 2 else f.call_async(table).result(20) for i in range(50)]
    assert len(set(results)) == 1
    orbit_refs, total, held = results[0]
    assert orbit_refs > before[2] + 25_000  # the orbit did change the counts, in its copy
    assert (total, held) == (sum(map(len, values)), 50 * 1503)
    assert counts() == before
    assert arena.stats()["used"] == used
    assert all(x is shared for x in table["many"])


@pytest.mark.parametrize("registered", ["after instances", "before instances"])
def test_cycles_in_the_arena_are_collected_in_main(registered: str, make_orbit: Any,
                                                   new_arena: Any) -> None:
    """`registered`: when an orbit fork first saw the class.  "before
    instances": its shared keys gained every attribute name after that, so the
    check gives each instance a dict of its own."""

    class Peer:
        def __init__(self, i: int) -> None:
            self.i = i
            self.peer: Peer | None = None

    def walk(ps: list[Peer]) -> int:
        return sum(p.peer.i for p in ps if p.peer is not None)

    if registered == "before instances":
        make_orbit(walk, timeout=10)([])  # a fork registers Peer: no instance yet
    arena = new_arena(4 << 20)
    start = arena.stats()
    with arena:
        peers = [Peer(i) for i in range(200)]
        loop: list[Any] = [peers[0]]
        loop.append(loop)
    for i in range(200):
        peers[i].peer = peers[(i + 1) % 200]
    refs = [weakref.ref(p) for p in peers]
    f = make_orbit(walk, timeout=10)
    assert f(peers) == sum(range(200))
    del peers, loop
    orbitpy.collect_arenas()  # gc.collect() leaves arena objects alone (test_arena_gc.py)
    assert sum(r() is not None for r in refs) == 0
    end = arena.stats()
    assert (end["used"], end["allocations"]) == (start["used"], start["allocations"])


def test_orbit_may_collect_garbage_and_allocate(make_orbit: Any, new_arena: Any) -> None:
    arena = new_arena(32 << 20)
    with arena:
        data: dict[str, Any] = {"ring": ring(100), "vals": [str(i) * 4 for i in range(1000)]}

    def churn(d: dict[str, Any], rounds: int) -> list[int]:
        out = []
        for _ in range(rounds):
            gc.collect()
            junk = [[i, str(i)] for i in range(200_000)]
            cycles: list[list[Any]] = [[] for _ in range(1000)]
            for c in cycles:
                c.append(c)
            del cycles
            total = sum(n.peer.i for n in d["ring"]) + sum(map(len, d["vals"]))
            total += sum(n.peer.i for n in d.get("more", []))
            out.append(total + len(junk))
        gc.collect()
        return out

    f = make_orbit(churn, timeout=60)
    base = sum(range(100)) + sum(len(str(i) * 4) for i in range(1000)) + 200_000
    assert f(data, 2) == [base, base]
    for _ in range(3):
        gc.disable()  # leave garbage cycles in the arena for the orbit's collector
        try:
            with arena:
                data["more"] = ring(50)
                garbage = ring(30)
                del garbage
            assert f(data, 2) == [base + sum(range(50))] * 2
        finally:
            gc.enable()
        del data["more"]
        gc.collect()
    assert f(data, 1) == [base]
    assert f.orbit.stats()["crashes"] == 0


def test_building_and_deleting_a_million_entries_leaves_no_residue(new_arena: Any) -> None:
    # One round peaks near 110 MiB: an arena that leaked or fragmented would
    # run out within a few rounds.
    arena = new_arena(192 << 20)
    with arena:
        keep = {k: [k] for k in range(BIG, BIG + 1000)}
    start = arena.stats()["used"]
    peaks = []
    for _ in range(10):
        with arena:
            d = {k: k & 0xFF for k in range(BIG, BIG + 1_000_000)}
        peaks.append(arena.stats()["used"])
        del d
        gc.collect()
    end = arena.stats()["used"]
    assert abs(end - start) <= start // 100, (start, end)
    assert peaks[-1] <= peaks[0] * 1.01, peaks
    assert len(keep) == 1000


def test_arena_full_raises_and_keeps_what_was_built(make_orbit: Any, new_arena: Any) -> None:
    size = 1 << 20
    arena = new_arena(size)
    with arena:
        table: dict[int, str] = {}
    with pytest.raises(orbitpy.ArenaFull) as ei:
        with arena:
            while True:
                n = len(table)
                table[BIG + n] = "v" + str(n)
    err = ei.value
    assert isinstance(err, MemoryError)
    assert re.search(rf"arena of {size} bytes has no room for \d+ more bytes \(\d+ in use\)",
                     str(err)), str(err)
    n = len(table)
    assert n > 1000
    assert list(table) == list(range(BIG, BIG + n))
    assert all(table[BIG + i] == "v" + str(i) for i in range(n))

    def read(t: dict[int, str]) -> tuple[int, int, str]:
        return len(t), sum(map(len, t.values())), t[BIG + 200]

    f = make_orbit(read, timeout=10)
    assert f(table) == (n, sum(map(len, table.values())), "v200")
    for i in range(100):
        del table[BIG + i]
    with arena:
        table[BIG + 200] = "w" * 10  # replaces a value: no new table
    assert f(table) == (n - 100, sum(map(len, table.values())), "w" * 10)


# ---------------------------------------------------------------- 5. threads

def test_blocks_are_per_thread(new_arena: Any) -> None:
    arena = new_arena(64 << 20)
    count = 20_000

    def build(i: int) -> list[Any]:
        # no floats or tuples: their free lists are a trap of their own
        return [{i: BIG + i}, "x" * (i % 50 + 2), bytes(i % 50 + 2), {BIG - i}, WithDict(i, i)]

    barrier = threading.Barrier(2)
    progress = [0]
    results: dict[str, list[Any]] = {}
    overlap: list[int] = []

    def a() -> None:
        barrier.wait()
        with arena:
            seen = progress[0]
            made = [build(i) for i in range(count)]
            overlap.append(progress[0] - seen)
        results["a"] = made

    def b() -> None:
        barrier.wait()
        made = []
        for i in range(count):
            made.append(build(i))
            progress[0] = i + 1
        results["b"] = made

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [threading.Thread(target=a), threading.Thread(target=b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        sys.setswitchinterval(old)
    assert overlap and overlap[0] > 0, "B never ran while A was inside its block"

    def objects(made: list[list[Any]]) -> Iterator[Any]:
        for row in made:
            yield row
            d, s, by, st, inst = row
            yield from (d, d[next(iter(d))], s, by, st, next(iter(st)), inst)

    a_out = sum(not arena.contains(o) for o in objects(results["a"]))
    b_in = sum(arena.contains(o) for o in objects(results["b"]))
    assert (a_out, b_in) == (0, 0)


def test_nested_blocks_innermost_wins_and_leaving_restores_outer(new_arena: Any) -> None:
    outer, inner = new_arena(1 << 20), new_arena(1 << 20)
    with outer:
        before = [BIG + 1]
        with inner:
            mid = [BIG + 2]
        after = [BIG + 3]
    none = [BIG + 4]
    where = {name: (outer.contains(o), inner.contains(o), outer.contains(o[0]),
                    inner.contains(o[0]))
             for name, o in (("before", before), ("mid", mid), ("after", after),
                             ("none", none))}
    assert where == {"before": (True, False, True, False), "mid": (False, True, False, True),
                     "after": (True, False, True, False), "none": (False, False, False, False)}


def test_leaving_blocks_out_of_order_raises(new_arena: Any) -> None:
    a, b = new_arena(1 << 20), new_arena(1 << 20)
    err: BaseException | None = None
    a.__enter__()
    b.__enter__()
    try:
        try:
            a.__exit__(None, None, None)
        except RuntimeError as e:
            err = e
        still = [BIG]  # the failed exit left b the current arena
    finally:
        b.__exit__(None, None, None)
        a.__exit__(None, None, None)
    none = [BIG]
    assert isinstance(err, RuntimeError) and "order" in str(err)
    assert b.contains(still)
    assert not a.contains(none) and not b.contains(none)


# ------------------------------------------------------------ 6. in an orbit

@pytest.mark.parametrize("entered_in_main", [True, False])
def test_block_inside_an_orbit_raises_orbit_error(entered_in_main: bool, make_orbit: Any,
                                                  new_arena: Any) -> None:
    arena = new_arena(1 << 20)
    if entered_in_main:
        with arena:
            keep = [BIG]
        assert arena.contains(keep)

    def build(n: int) -> list[int]:
        with arena:
            return [n]

    f = make_orbit(build, timeout=10)
    for _ in range(2):
        with pytest.raises(orbitpy.OrbitError, match="cannot allocate in an arena") as ei:
            f(3)
        assert type(ei.value) is orbitpy.OrbitError  # the orbit's exception, not a crash
    assert f.orbit.stats()["crashes"] == 0
    assert not arena.contains([BIG])
