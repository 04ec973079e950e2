"""Interpreter-wide state that code run inside `with arena:` fills (README,
Limits): an orbit whose call maps no arena must not fault on it.

Imports and the showing of warnings run outside the thread's arena
(_heap/heap_outside.c); what remains (ABC caches, a module's
__warningregistry__, module globals' tables, the type attribute cache, the
collector's lists) is cut off in each new orbit (_heap/heap_fork_scrub.c).
Each case runs in its own interpreter: a fault there must not take the test
run down, and each needs a fresh interpreter's caches."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def run(script: str) -> None:
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(script)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]


def test_abc_caches_filled_inside_a_block() -> None:
    run("""
        import collections, collections.abc, gc
        import orbitpy
        arena = orbitpy.arena(16 << 20)
        class Plain:
            pass
        class MyDict(dict):
            pass
        with arena:
            # First checks of these classes against these ABCs: the ABCs
            # cache weak references to the classes, made in the arena.
            isinstance(Plain(), collections.abc.Mapping)
            isinstance(MyDict(), collections.abc.Sized)
            counts = collections.Counter("abracadabra")   # an ABC check too
        @orbitpy.orbit(timeout=30)
        def f():
            class Other:
                pass
            for _ in range(3):
                isinstance(Other(), collections.abc.Mapping)
                isinstance(Plain(), collections.abc.Mapping)
                isinstance(MyDict(), collections.abc.Sized)
            gc.collect()
            return 1
        assert f() == 1
        assert isinstance(MyDict(), collections.abc.Sized)   # main keeps its caches
        f.orbit.close()
        print("ok")
    """)


@pytest.mark.parametrize("action", ["default", "always", "once", "module"])
def test_warning_issued_inside_a_block(action: str) -> None:
    run(f"""
        import sys, warnings
        import orbitpy
        warnings.simplefilter({action!r})
        arena = orbitpy.arena(16 << 20)
        def warn(msg):
            warnings.warn(msg, UserWarning)
        with arena:
            # The module's __warningregistry__ is made here; showing the
            # warning reads (and may import) linecache and fills its cache.
            warn("made in the block " + str(1))
        reg = globals().get("__warningregistry__")
        @orbitpy.orbit(timeout=30)
        def f():
            warn("made in the orbit")
            warn("made in the block " + str(1))
            return 1
        assert f() == 1
        assert not arena.contains(sys.modules["linecache"])
        f.orbit.close()
        print("ok")
    """)


def test_module_imported_inside_a_block() -> None:
    run("""
        import datetime, sys
        import orbitpy
        assert "_strptime" not in sys.modules
        arena = orbitpy.arena(16 << 20)
        with arena:
            # strptime imports _strptime on first use: the module is the
            # interpreter's, not arena state.
            when = datetime.datetime.strptime("2024-05-06", "%Y-%m-%d")
            import colorsys
        assert arena.contains(when)
        assert not arena.contains(sys.modules["_strptime"])
        assert not arena.contains(colorsys) and not arena.contains(colorsys.rgb_to_hsv)
        @orbitpy.orbit(timeout=30)
        def f():
            return datetime.datetime.strptime("2025-01-02", "%Y-%m-%d").year
        assert f() == 2025
        f.orbit.close()
        print("ok")
    """)


def test_young_arena_objects_in_the_collectors_lists() -> None:
    run("""
        import gc
        import orbitpy
        arena = orbitpy.arena(16 << 20)
        gc.disable()   # no collection parks the arena objects before the fork
        heap_objs, arena_objs = [], []
        for i in range(2000):
            heap_objs.append([i])          # interleaved in generation 0
            with arena:
                x = [i]
            arena_objs.append(x)
        @orbitpy.orbit(timeout=30)
        def f():
            heap_objs.clear()              # unlinks them from the collector's lists
            gc.collect()
            return len(arena_objs)
        assert f() == 2000
        assert f() == 2000
        f.orbit.close()
        print("ok")
    """)


def test_module_global_container_grown_inside_a_block() -> None:
    run("""
        import orbitpy
        arena = orbitpy.arena(16 << 20)
        seen, names, ids = [], {}, set()   # empty: their tables come on first use
        with arena:
            seen.append(1)
            names["a"] = 1
            ids.update(range(100))
        @orbitpy.orbit(timeout=30)
        def f():
            seen.append(2)
            names["b"] = 2
            ids.update(range(100, 200))
            return len(seen) + len(names) + len(ids)
        assert f() == 2 + 2 + 200
        f.orbit.close()
        print("ok")
    """)


def test_type_cache_names_made_inside_a_block() -> None:
    run("""
        import orbitpy
        arena = orbitpy.arena(16 << 20)
        class Config:
            pass
        cfg = Config()
        with arena:
            # Attribute names made in the arena: the type attribute cache
            # keeps a reference to each name it looks up.
            names = ["opt_%d" % i for i in range(3000)]
            for n in names:
                getattr(cfg, n, None)
        @orbitpy.orbit(timeout=30)
        def f():
            # Other names on the same type replace those cache entries.
            return sum(getattr(cfg, "other_%d" % i, 1) for i in range(20000))
        assert f() == 20000
        f.orbit.close()
        print("ok")
    """)
