"""Benchmark plumbing: collection of bench_*.py, leak check, run conditions.

The benchmark modules are named bench_*.py so that no test run collects them
by accident (pytest's default pattern is test_*.py and pyproject.toml's
testpaths names tests/ only); they are collected when benchmarks/ (or one of
its files) is named on the command line:

    python -m pytest benchmarks --benchmark-only --benchmark-json=bench.json
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ._benchutil import child_pids, quick, spin_us

HERE = Path(__file__).resolve().parent


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    if file_path.suffix != ".py" or not file_path.name.startswith("bench_"):
        return None
    session = parent.session
    if session.isinitpath(file_path):
        return None  # named explicitly: pytest collects it itself
    if not session.isinitpath(HERE):
        return None  # benchmarks/ was not asked for
    return pytest.Module.from_parent(parent, path=file_path)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # Defaults that suit these tables (explicit command-line values win):
    # rows in name order (k0, k1, k10, ...), and the columns that matter.
    opt = config.option
    if getattr(opt, "benchmark_sort", None) == "min":
        opt.benchmark_sort = "name"
    if hasattr(opt, "benchmark_columns") and opt.benchmark_columns is None:
        opt.benchmark_columns = ["median", "iqr", "min", "mean", "max", "rounds"]


@pytest.hookimpl(trylast=True)  # after pytest's own reordering by fixture
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Modules whose benchmarks open `with arena:` blocks in this process
    # (INSTALLS_ARENA_HOOKS = True) run last: the first such block installs
    # orbitpy's allocator hooks and turns CPython's free lists off for good,
    # which slows every later allocation-heavy benchmark of the run.
    items.sort(key=lambda it: bool(getattr(getattr(it, "module", None),
                                           "INSTALLS_ARENA_HOOKS", False)))


# ------------------------------------------------------------ progress
# `python -m orbitpy bench` reads these lines from a pipe to draw its
# progress bar (ORBITPY_BENCH_PROGRESS_FD: the pipe's write end).

def _progress(line: str) -> None:
    fd = os.environ.get("ORBITPY_BENCH_PROGRESS_FD")
    if not fd:
        return
    try:
        os.write(int(fd), (line + "\n").encode())
    except (OSError, ValueError):
        pass


def pytest_collection_finish(session: pytest.Session) -> None:
    _progress(f"total {len(session.items)}")


def pytest_runtest_logstart(nodeid: str, location: Any) -> None:
    _progress(f"start {nodeid}")


def pytest_runtest_logfinish(nodeid: str, location: Any) -> None:
    _progress(f"done {nodeid}")


# ------------------------------------------------------------ run conditions

def _system_busy_ticks() -> tuple[int, int]:
    """(busy, steal) clock ticks of the whole machine since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    return user + nice + system + irq + softirq, steal


def _own_ticks() -> int:
    """CPU ticks of this process and of the children it has reaped."""
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15])  # utime stime cutime cstime


_conditions: dict[str, Any] = {}


@pytest.fixture(scope="session", autouse=True)
def run_conditions() -> Iterator[None]:
    """Record how busy the machine was with other work during the run, and
    check that the benchmarks leave no process behind."""
    hz = os.sysconf("SC_CLK_TCK")
    before_children = child_pids()
    busy0, steal0 = _system_busy_ticks()
    own0 = _own_ticks()
    t0 = time.monotonic()
    _conditions["loadavg_start"] = os.getloadavg()
    yield
    wall = time.monotonic() - t0
    deadline = time.monotonic() + 5
    extra = child_pids() - before_children
    while extra and time.monotonic() < deadline:
        time.sleep(0.02)
        extra = child_pids() - before_children
    busy1, steal1 = _system_busy_ticks()
    own1 = _own_ticks()
    _conditions.update(
        loadavg_end=os.getloadavg(),
        wall_s=round(wall, 1),
        # CPUs' worth of work done by processes other than this one and
        # the children it reaped (orbits, workers), averaged over the run.
        other_cpus_busy=round(max(0, (busy1 - busy0) - (own1 - own0)) / hz / wall, 2)
        if wall > 0 else 0.0,
        steal_cpus=round((steal1 - steal0) / hz / wall, 2) if wall > 0 else 0.0,
        leftover_children=sorted(extra),
    )
    assert not extra, f"processes left behind by the benchmarks: {sorted(extra)}"


def pytest_benchmark_update_machine_info(config: Any, machine_info: dict[str, Any]) -> None:
    import orbitpy

    machine_info["orbitpy"] = {
        "version": orbitpy.__version__,
        "default_snapshot_mode": orbitpy.default_snapshot_mode(),
        "ORBITPY_SPIN_US": spin_us(),
        "cpus": os.cpu_count(),
        "quick": quick(),
    }
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            machine_info["orbitpy"]["thp"] = f.read().strip()
    except OSError:
        pass


def pytest_benchmark_update_json(config: Any, benchmarks: Any, output_json: dict[str, Any]) -> None:
    output_json["run_conditions"] = dict(_conditions)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _conditions:
        return
    c = _conditions
    terminalreporter.write_line(
        f"run conditions: other processes kept {c.get('other_cpus_busy')} CPUs busy on "
        f"average (steal {c.get('steal_cpus')}); load average "
        f"{c['loadavg_start'][0]:.2f} -> {c.get('loadavg_end', (0,))[0]:.2f}")
    if (c.get("other_cpus_busy") or 0) > 0.2:
        terminalreporter.write_line(
            "WARNING: the machine was busy with other work: the numbers are not "
            "representative", yellow=True, bold=True)


@pytest.fixture(scope="module")
def no_background_sync() -> Iterator[None]:
    """Stop orbitpy's copying between calls for a module whose benchmarks
    time what one call copies (it would copy some of a round's dirty pages
    before the timed call, which then copies fewer than the round wrote)."""
    from orbitpy import _core

    previous = _core.set_background_sync(0)
    try:
        yield
    finally:
        _core.set_background_sync(previous)
