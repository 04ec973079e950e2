"""What entering and leaving ``with arena:`` costs: a service enters a block
per request (a key-value server per write command), so this is on its hot
path.  Group "arena-scope", all in one run:

nullcontext        ``with contextlib.nullcontext():`` (the floor: a context
                   manager that does nothing)
arena              ``with arena:`` with nothing inside, no event loop
arena-in-loop      the same inside a coroutine of a running asyncio loop,
                   where each block is also watched for spanning an await
arena-store        ``with arena: ring[i] = (i, i, i)``: a block that makes
                   and stores one small object, as a request would

Each timed round runs ROUNDS blocks (the per-block cost is the median round
over ROUNDS); the ratios to nullcontext are what report.py prints.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import orbitpy

ROUNDS = 1000
# `with arena:` blocks in this process: conftest.py runs this module after
# the others (the allocator hooks it installs stay for the rest of the run).
INSTALLS_ARENA_HOOKS = True


@pytest.fixture(scope="module")
def arena() -> Iterator[orbitpy.Arena]:
    a = orbitpy.arena(64 << 20)
    yield a


def _blocks(cm: Any) -> Callable[[], None]:
    def run() -> None:
        for _ in range(ROUNDS):
            with cm:
                pass
    return run


@pytest.mark.benchmark(group="arena-scope")
def test_nullcontext(benchmark: Any) -> None:
    benchmark(_blocks(contextlib.nullcontext()))


@pytest.mark.benchmark(group="arena-scope")
def test_arena(benchmark: Any, arena: orbitpy.Arena) -> None:
    benchmark(_blocks(arena))


@pytest.mark.benchmark(group="arena-scope")
def test_arena_in_loop(benchmark: Any, arena: orbitpy.Arena) -> None:
    async def main() -> None:
        benchmark(_blocks(arena))  # the loop runs: every block is watched
    asyncio.run(main())


@pytest.mark.benchmark(group="arena-scope")
def test_arena_store(benchmark: Any, arena: orbitpy.Arena) -> None:
    with arena:
        ring: list[Any] = [None] * ROUNDS

    def run() -> None:
        for i in range(ROUNDS):
            with arena:
                ring[i] = (i, i, i)
    benchmark(run)
    assert arena.contains(ring[ROUNDS - 1])
