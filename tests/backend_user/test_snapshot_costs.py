"""Userspace backend: what a snapshot costs, in pages, and the staging ring.

In the 'uffd' and 'mprotect' modes a call copies exactly the pages main wrote
since the previous call of that orbit, and drops exactly the pages the orbit
wrote; in 'full' mode it copies every populated page.  While the orbit is
busy, the pages of queued calls go through a staging ring (ORBITPY_STAGING
bytes); when it is full, main waits for room.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from typing import Any

import numpy as np
import pytest

from snapshot_util import (
    PAGE,
    TRACKED_MODES,
    addr_of,
    delta,
    digest,
    page_starts,
    populated_pages,
)

# Each call here copies what main wrote since the previous call: counted
# exactly, with nothing copied in between.
pytestmark = pytest.mark.usefixtures("no_background_sync")


def run_python(code: str, env: dict[str, str] | None = None, args: list[str] | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ, ORBITPY_BGSYNC_MS="0")  # as no_background_sync
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *(args or [])],
                          env=full_env, capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------ exact incremental page counts

@pytest.mark.parametrize("k", [0, 1, 3, 10])
@pytest.mark.parametrize("tracked", TRACKED_MODES)
def test_pages_copied_is_exactly_the_pages_main_wrote(tracked: str, k: int, make_orbit: Any,
                                                      new_arena: Any) -> None:
    a = new_arena(1 << 20, tracked)
    buf = a.buffer(40 * PAGE)

    @make_orbit
    def check(b: memoryview) -> str:
        return digest(b)

    assert check(buf) == digest(buf)
    s0 = check.orbit.stats()
    assert s0["full_syncs"] == 1
    # k distinct pages, several writes to each (start, middle, end of page).
    for n, off in enumerate(page_starts(buf, k, step=3)):
        buf[off] = n + 1
        buf[off + PAGE // 2] = n + 2
        buf[off + PAGE - 1] = n + 3
    assert check(buf) == digest(buf)
    s1 = check.orbit.stats()
    assert delta(s1, s0, "pages_copied") == k
    assert delta(s1, s0, "pages_reset") == 0
    assert delta(s1, s0, "pages_synced") == k
    assert delta(s1, s0, "full_syncs") == 0
    assert delta(s1, s0, "calls") == 1
    assert k * PAGE <= delta(s1, s0, "bytes_synced") < k * PAGE + PAGE
    # Nothing written since: nothing copied.
    assert check(buf) == digest(buf)
    assert delta(check.orbit.stats(), s1, "pages_copied") == 0


@pytest.mark.parametrize("tracked", TRACKED_MODES)
def test_reads_in_main_are_not_copied(tracked: str, make_orbit: Any, new_arena: Any) -> None:
    a = new_arena(1 << 20, tracked)
    buf = a.buffer(64 * PAGE)

    @make_orbit
    def check(b: memoryview) -> str:
        return digest(b)

    check(buf)
    s0 = check.orbit.stats()
    assert digest(buf) == digest(bytes(len(buf)))  # reads every page
    assert np.frombuffer(buf, dtype=np.uint8).sum() == 0
    assert check(buf) == digest(buf)
    assert delta(check.orbit.stats(), s0, "pages_copied") == 0


@pytest.mark.parametrize("j", [0, 1, 3, 10])
@pytest.mark.parametrize("tracked", TRACKED_MODES)
def test_pages_reset_is_exactly_the_pages_the_orbit_wrote(tracked: str, j: int,
                                                          make_orbit: Any,
                                                          new_arena: Any) -> None:
    a = new_arena(1 << 20, tracked)
    buf = a.buffer(40 * PAGE)
    buf[PAGE * 7] = 9  # some pages populated in the base, others not
    offs = page_starts(buf, j, step=2)

    @make_orbit
    def write_pages(b: memoryview, offsets: list[int]) -> str:
        seen = digest(b)
        for off in offsets:
            b[off] = 0xFF
            b[off + 100] = 0xFE
        return seen

    assert write_pages(buf, []) == digest(buf)
    s0 = write_pages.orbit.stats()
    assert write_pages(buf, offs) == digest(buf)
    s1 = write_pages.orbit.stats()
    assert delta(s1, s0, "pages_reset") == 0  # dropped before the NEXT call
    assert delta(s1, s0, "pages_copied") == 0
    assert write_pages(buf, []) == digest(buf)  # and they are really gone
    s2 = write_pages.orbit.stats()
    assert delta(s2, s1, "pages_reset") == j
    assert delta(s2, s1, "pages_copied") == 0
    assert delta(s2, s1, "pages_synced") == j
    assert write_pages(buf, []) == digest(buf)
    assert delta(write_pages.orbit.stats(), s2, "pages_reset") == 0


@pytest.mark.parametrize("tracked", TRACKED_MODES)
def test_main_and_orbit_writes_counted_separately(tracked: str, make_orbit: Any,
                                                  new_arena: Any) -> None:
    a = new_arena(1 << 20, tracked)
    buf = a.buffer(40 * PAGE)
    offs = page_starts(buf, 12)

    @make_orbit
    def f(b: memoryview, offsets: list[int]) -> str:
        seen = digest(b)
        for off in offsets:
            b[off] = 1
        return seen

    f(buf, [])
    s0 = f.orbit.stats()
    assert f(buf, offs[:5]) == digest(buf)  # orbit writes pages 0..4
    for off in offs[3:10]:  # main writes pages 3..9 (overlapping 3, 4)
        buf[off] = 2
    assert f(buf, []) == digest(buf)
    s1 = f.orbit.stats()
    assert delta(s1, s0, "pages_copied") == 7
    assert delta(s1, s0, "pages_reset") == 5
    assert delta(s1, s0, "pages_synced") == 12


def test_full_mode_copies_every_populated_page(make_orbit: Any, new_arena: Any) -> None:
    a = new_arena(1 << 20, "full")
    buf = a.buffer(40 * PAGE)

    @make_orbit
    def check(b: memoryview) -> str:
        return digest(b)

    assert check(buf) == digest(buf)
    s = check.orbit.stats()
    assert s["full_syncs"] == 1
    for k in (0, 1, 3, 10):
        for off in page_starts(buf, k, step=3):
            buf[off + k] = k + 1
        populated = populated_pages(a.address, a.size)
        assert check(buf) == digest(buf)
        s1 = check.orbit.stats()
        assert delta(s1, s, "pages_copied") == populated
        assert delta(s1, s, "pages_copied") >= k
        assert delta(s1, s, "pages_reset") == 0
        assert s1["full_syncs"] == 1
        s = s1


@pytest.mark.parametrize("tracked", TRACKED_MODES)
def test_cost_does_not_depend_on_arena_size(tracked: str, make_orbit: Any,
                                            new_arena: Any) -> None:
    a = new_arena(256 << 20, tracked)
    buf = a.buffer(250 << 20)

    @make_orbit
    def peek(b: memoryview, offsets: list[int]) -> list[int]:
        return [b[o] for o in offsets]

    offs = [page_starts(buf, 1)[0], 100 << 20, (250 << 20) - 1]
    assert peek(buf, offs) == [0, 0, 0]
    s0 = peek.orbit.stats()
    for n, off in enumerate(offs):
        buf[off] = n + 1
    assert peek(buf, offs) == [1, 2, 3]
    s1 = peek.orbit.stats()
    assert delta(s1, s0, "pages_copied") == 3
    assert delta(s1, s0, "bytes_synced") < 4 * PAGE


# ------------------------------------------------ the mode stats() reports

def test_stats_report_the_mode_of_the_arenas_passed_as_arguments(
        make_orbit: Any, new_arena: Any) -> None:
    """An orbit that only ever synced 'full' (or 'mprotect') arenas, passed
    as arguments, should not report another mode in stats()."""
    for mode in ("full", "mprotect"):
        a = new_arena(1 << 20, mode)
        buf = a.buffer(PAGE)

        @make_orbit
        def f(b: memoryview) -> int:
            return len(b)

        assert f(buf) == PAGE
        assert f.orbit.stats()["snapshot_mode"] == mode


# ---------------------------------------------------------------- staging

_STAGING_SCRIPT = """
    import hashlib, time, sys
    import numpy as np
    import orbitpy

    PAGE = 4096
    mode = sys.argv[1] if len(sys.argv) > 1 else None
    a = orbitpy.arena(16 << 20, snapshot=mode)
    buf = a.buffer((16 << 20) - 2 * PAGE)
    arr = np.frombuffer(buf, dtype=np.uint8)
    npages = len(buf) // PAGE - 1
    first = (-arr.__array_interface__["data"][0]) % PAGE

    @orbitpy.orbit(areas=[a])
    def check(b, delay):
        time.sleep(delay)
        return hashlib.sha256(b).hexdigest()

    rng = np.random.default_rng(7)
    assert check(buf, 0) == hashlib.sha256(buf).hexdigest()
    for rnd in range(ROUNDS):
        futs = [(check.call_async(buf, 0.2), hashlib.sha256(buf).hexdigest())]
        for i in range(CALLS):
            n = [2000, 1, 5, 15, 16, 17, 300][i % 7]
            pages = rng.choice(npages, n, replace=False)
            arr[first + pages * PAGE + (i % 4000)] = (rnd * 31 + i) % 251 + 1
            futs.append((check.call_async(buf, 0), hashlib.sha256(buf).hexdigest()))
        for k, (f, want) in enumerate(futs):
            got = f.result(timeout=60)
            assert got == want, (rnd, k)
    assert check(buf, 0) == hashlib.sha256(buf).hexdigest()
    st = check.orbit.stats()
    assert st["full_syncs"] == 1 and st["crashes"] == 0, st
    check.orbit.close()
    print("OK", st["calls"], st["pages_copied"])
"""


def test_staging_queued_calls_behind_a_slow_call(mode: str, make_orbit: Any,
                                                 new_arena: Any) -> None:
    a = new_arena(16 << 20, mode)
    buf = a.buffer((16 << 20) - 2 * PAGE)
    arr = np.frombuffer(buf, dtype=np.uint8)
    npages = len(buf) // PAGE - 1
    first = (-addr_of(buf)) % PAGE

    @make_orbit(areas=[a])
    def check(b: memoryview, delay: float) -> str:
        time.sleep(delay)
        return digest(b)

    assert check(buf, 0) == digest(buf)
    s0 = check.orbit.stats()
    rng = np.random.default_rng(1)
    futs = [(check.call_async(buf, 0.3), digest(buf))]
    written = 0
    for i in range(6):
        pages = rng.choice(npages, 2000, replace=False)
        arr[first + pages * PAGE + i] = i + 1
        written += 2000
        futs.append((check.call_async(buf, 0), digest(buf)))
    assert [f.result(timeout=60) for f, _ in futs] == [want for _, want in futs]
    assert check(buf, 0) == digest(buf)
    s1 = check.orbit.stats()
    if mode in TRACKED_MODES:
        assert delta(s1, s0, "pages_copied") == written
    assert s1["full_syncs"] == 1


@pytest.mark.parametrize("staging_mode", ["uffd", "mprotect", "full"])
def test_staging_overflow_makes_main_wait_not_hang(staging_mode: str) -> None:
    code = _STAGING_SCRIPT.replace("ROUNDS", "2").replace("CALLS", "14")
    proc = run_python(code, env={"ORBITPY_STAGING": "65536"}, args=[staging_mode],
                      timeout=90)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("OK"), proc.stdout + proc.stderr
