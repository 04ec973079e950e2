"""orbitpy.metrics: orbitpy's health metrics through prometheus_client."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

import orbitpy
import orbitpy.metrics


def scrape(registry: Any) -> dict[tuple[str, str], float]:
    """{(sample name, orbit label): value}; histogram buckets as name{le}."""
    text = prometheus_client.generate_latest(registry).decode()
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            name = s.name + (f"{{le={s.labels['le']}}}" if "le" in s.labels else "")
            out[(name, s.labels.get("orbit", ""))] = s.value
    return out


def test_counters_and_latency_follow_calls_and_a_crash_restart(make_orbit: Any) -> None:
    registry = prometheus_client.CollectorRegistry()
    orbitpy.metrics.register(registry)

    @make_orbit(name="metrics-probe")
    def probe(x: int) -> int:
        if x < 0:
            os._exit(3)  # a real crash of the orbit process
        return x + 1

    before = scrape(registry)
    assert before[("orbitpy_calls_total", "metrics-probe")] == 0
    assert before[("orbitpy_orbit_up", "metrics-probe")] == 0
    assert before[("orbitpy_call_duration_seconds_count", "metrics-probe")] == 0

    assert probe(1) == 2
    assert probe.call_async(2).result(timeout=30) == 3
    after = scrape(registry)
    assert after[("orbitpy_calls_total", "metrics-probe")] == 2
    assert after[("orbitpy_orbit_up", "metrics-probe")] == 1
    assert after[("orbitpy_call_duration_seconds_count", "metrics-probe")] == 2
    assert after[("orbitpy_call_duration_seconds_sum", "metrics-probe")] > 0
    assert after[("orbitpy_call_duration_seconds_bucket{le=+Inf}", "metrics-probe")] == 2
    assert after[("orbitpy_crashes_total", "metrics-probe")] == 0

    with pytest.raises(orbitpy.OrbitCrashed):
        probe(-1)
    assert probe(5) == 6  # restarted
    crashed = scrape(registry)
    assert crashed[("orbitpy_crashes_total", "metrics-probe")] == 1
    assert crashed[("orbitpy_call_failures_total", "metrics-probe")] == 1
    assert crashed[("orbitpy_restarts_total", "metrics-probe")] >= 1
    assert crashed[("orbitpy_calls_total", "metrics-probe")] == 3
    # the failed call counts in the latency too
    assert crashed[("orbitpy_call_duration_seconds_count", "metrics-probe")] == 4


def test_latency_counts_acall_calls_and_their_failures(make_orbit: Any) -> None:
    """orbitpy_call_duration_seconds counts the calls awaited with
    fn.acall(), as it counts the others (it missed them: websvc's orbits,
    called only with acall, showed a count of 0)."""
    import asyncio

    registry = prometheus_client.CollectorRegistry()
    orbitpy.metrics.register(registry)

    @make_orbit(name="metrics-acall")
    def probe(x: int) -> int:
        if x < 0:
            os._exit(3)
        return x + 1

    async def calls() -> None:
        assert await probe.acall(1) == 2  # starts the orbit (issued off the loop)
        assert await probe.acall(2) == 3  # issued on the loop
        with pytest.raises(orbitpy.OrbitCrashed):
            await probe.acall(-1)

    asyncio.run(asyncio.wait_for(calls(), 30))
    m = scrape(registry)
    assert m[("orbitpy_calls_total", "metrics-acall")] == 2
    assert m[("orbitpy_call_failures_total", "metrics-acall")] == 1
    assert m[("orbitpy_call_duration_seconds_count", "metrics-acall")] == 3
    assert m[("orbitpy_call_duration_seconds_bucket{le=+Inf}", "metrics-acall")] == 3
    assert m[("orbitpy_call_duration_seconds_sum", "metrics-acall")] > 0


def test_synced_pages_are_counted(make_orbit: Any) -> None:
    registry = prometheus_client.CollectorRegistry()
    orbitpy.metrics.register(registry)
    arena = orbitpy.Arena(1 << 20)
    try:
        buf = arena.buffer(8192)

        @make_orbit(name="metrics-sync", areas=[arena])
        def first() -> int:
            return int(buf[0])

        first()
        buf[0] = 7
        buf[4096] = 1
        assert first() == 7
        st = scrape(registry)
        assert st[("orbitpy_pages_copied_total", "metrics-sync")] >= 1
        assert st[("orbitpy_bytes_synced_total", "metrics-sync")] >= 4096
    finally:
        first.orbit.close()
        buf.release()
        arena.close()


def test_orbits_with_one_name_get_distinct_labels(make_orbit: Any) -> None:
    registry = prometheus_client.CollectorRegistry()
    orbitpy.metrics.register(registry)
    a = make_orbit(lambda: 1, name="twin")
    b = make_orbit(lambda: 2, name="twin")
    assert a() + b() == 3
    st = scrape(registry)
    assert st[("orbitpy_calls_total", "twin")] == 1
    assert st[("orbitpy_calls_total", "twin#2")] == 1


def test_missing_prometheus_client_is_named_in_the_error() -> None:
    code = ("import sys; sys.modules['prometheus_client'] = None\n"
            "import orbitpy.metrics\n"
            "try:\n"
            "    orbitpy.metrics.register()\n"
            "except ImportError as e:\n"
            "    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert "pip install prometheus_client" in r.stdout, (r.stdout, r.stderr)
