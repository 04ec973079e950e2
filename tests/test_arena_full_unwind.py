"""A full arena must raise ArenaFull out of ``with arena:``, wherever the block is.

CPython, while unwinding an exception to a handler (the ``with`` block's
exit, an ``except``), pushes the raising instruction's offset as an int.
Offsets above 256 are not cached small ints, so that int is allocated, and
inside ``with arena:`` it was allocated in the arena: when the arena was
full, that allocation failed, raised MemoryError again, and the unwinder went
back to the same handler, forever (found by examples/kvserver).  Now, once
the arena refuses an allocation in a block, the thread allocates in the usual
heap until the block ends (see _heap/heap_hooks.c), and the block ends with
ArenaFull.

The full-arena runs are subprocesses with a timeout: a regression hangs the
thread at 100% CPU, which the guard turns into a failure.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

GUARD = 60  # seconds: each script takes well under one on an idle machine

# Fills the arena to its last bytes (big blocks, then ever smaller ones) into
# a list made outside it.  One block per size: a block's first refusal ends
# its filling (the rest of the block allocates outside the arena).
FILL = textwrap.dedent("""\
    import asyncio, gc, orbitpy
    arena = orbitpy.arena(1 << 20)  # ~1 MiB: < 100000 blocks
    keep = [None] * 100000
    def fill(i):
        for make in (lambda: bytes(1000), lambda: bytes(10), lambda: 10**6 + i):
            try:
                with arena:
                    while True:
                        keep[i] = make()
                        i += 1
            except MemoryError as e:
                assert type(e) is orbitpy.ArenaFull, repr(e)
        return i
    """)

# 200 statements of two code units each put the `with` block past offset 256.
PADDING = "\n".join(f"    x{i} = {i}" for i in range(200))
LATE_BLOCK = FILL + textwrap.dedent("""\
    SRC = '''
    def run(arena, fill, keep):
    {padding}
        i = fill(0)
        try:
            with arena:
                while True:  # fails at once: the arena is full
                    keep[i] = 10**6 + i
                    i += 1
        except MemoryError as e:
            return type(e).__name__
    '''
    ns = {{}}
    exec(SRC, ns)
    print(ns["run"](arena, fill, keep), flush=True)
    """).format(padding=PADDING)


def run_script(script: str) -> list[str]:
    try:
        r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           timeout=GUARD)
    except subprocess.TimeoutExpired:
        pytest.fail("the script never ended: the unwinder loops on a failed allocation")
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.split()


def test_full_arena_raises_out_of_a_with_block_late_in_a_long_function() -> None:
    assert run_script(LATE_BLOCK) == ["ArenaFull"]


def test_full_arena_raises_out_of_a_with_block_early_in_a_function() -> None:
    """The same block at a small offset (the offset is a cached int)."""
    assert run_script(LATE_BLOCK.replace(PADDING, "    pass")) == ["ArenaFull"]


def test_after_a_full_block_the_thread_allocates_normally_and_freed_room_is_reused() -> None:
    script = FILL + textwrap.dedent("""\
        n = fill(0)
        try:
            with arena:
                keep[n] = [10**6]
        except orbitpy.ArenaFull:
            print("full")
        # The block is over: new objects are the usual heap's again, and
        # nothing falls back any more.
        after = [10**6 + 1]
        print("outside" if not arena.contains(after) else "inside")
        keep[:] = [None] * len(keep)
        gc.collect()
        with arena:
            again = [n + 10**6]
        print("reused" if arena.contains(again) and arena.contains(again[0]) else "not")
        """)
    assert run_script(script) == ["full", "outside", "reused"]


def test_objects_made_after_a_refusal_are_outside_and_refused_in_arena_state() -> None:
    """A program that catches the MemoryError inside the block goes on
    allocating outside the arena; storing such an object into arena state is
    refused by the next call, naming the path."""
    script = FILL + textwrap.dedent("""\
        with arena:
            state = {"log": []}
        def count(s):
            return len(s["log"])
        f = orbitpy.orbit(timeout=30)(count)
        try:
            print(f(state))
            n = fill(0)
            with arena:
                try:
                    keep[n] = bytes(1000)
                except MemoryError:
                    late = ["made after the refusal"]
                    state["log"].append(late)
            print("outside" if not arena.contains(late) else "inside")
            keep[:] = [None] * len(keep)  # room to move the log's new table in
            gc.collect()
            try:
                f(state)
            except orbitpy.ArenaEscapeError as e:
                print("refused", e.path)
        finally:
            f.orbit.close()
        """)
    assert run_script(script) == ["0", "outside", "refused", "s['log'][0]"]


def test_blocks_of_another_arena_inside_a_refusing_block() -> None:
    """An inner block of another arena allocates in that arena; when it ends
    the outer block falls back again (its refusal is kept), and a MemoryError
    out of it still ends it with ArenaFull."""
    script = FILL + textwrap.dedent("""\
        other = orbitpy.arena(1 << 20)
        n = fill(0)
        try:
            with arena:
                try:
                    keep[n] = bytes(1000)
                except MemoryError:
                    pass
                with other:
                    inner = [10**6]
                print("inner-in-other" if other.contains(inner) else "inner-elsewhere")
                outer = [10**6 + 1]
                print("outer-outside" if not arena.contains(outer) else "outer-inside")
                raise MemoryError  # as an allocation the arena refused would
        except orbitpy.ArenaFull:
            print("ArenaFull")
        """)
    assert run_script(script) == ["inner-in-other", "outer-outside", "ArenaFull"]


def test_full_arena_in_an_allocating_coroutine_raises_arena_full() -> None:
    script = FILL + textwrap.dedent("""\
        n = fill(0)
        @arena.allocating
        async def grow(i):
            await asyncio.sleep(0)
            while True:
                keep[i] = 10**6 + i
                i += 1
                if i % 100 == 0:
                    await asyncio.sleep(0)
        async def main():
            try:
                await asyncio.wait_for(grow(n), 30)
            except MemoryError as e:
                print(type(e).__name__)
            after = [10**6]
            print("outside" if not arena.contains(after) else "inside")
        asyncio.run(main())
        keep[:] = [None] * len(keep)
        gc.collect()
        with arena:
            again = [10**6 + 2]
        print("reused" if arena.contains(again) else "not")
        """)
    assert run_script(script) == ["ArenaFull", "outside", "reused"]
