"""orbitpy's own health metrics for Prometheus, for any service that runs orbits.

    import orbitpy.metrics
    orbitpy.metrics.register()          # into prometheus_client's default REGISTRY

or ``registry.register(orbitpy.metrics.OrbitCollector())``.  Every scrape
reads ``fn.orbit.stats()`` and ``fn.orbit.latency`` of each live orbit of this
process, labelled ``orbit="<name>"``.  prometheus_client is optional for
orbitpy: it is imported when a collector is made
(``pip install prometheus_client``, or ``pip install orbitpy[metrics]``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from . import _orbit

# (metric name without the _total suffix, stats() key, help text)
COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("orbitpy_calls", "calls", "Calls the orbit answered (returned or raised)"),
    ("orbitpy_call_failures", "failed",
     "Calls that ended with an orbitpy error instead of an answer "
     "(crashed, timed out, cancelled, aborted, closed)"),
    ("orbitpy_call_timeouts", "timeouts", "Calls that overran their timeout (of the failures)"),
    ("orbitpy_calls_cancelled", "cancelled", "Calls cancelled (of the failures)"),
    ("orbitpy_restarts", "restarts", "Orbit process restarts (after crashes, timeouts, "
     "cancellations, restart() and class refreshes)"),
    ("orbitpy_crashes", "crashes", "Orbit processes that died during a call"),
    ("orbitpy_class_refreshes", "class_refreshes",
     "Restarts made to follow a class main changed after the orbit started"),
    ("orbitpy_pages_copied", "pages_copied", "Arena pages copied into the orbit's snapshot"),
    ("orbitpy_bytes_synced", "bytes_synced", "Bytes of arena memory synchronised into the orbit"),
)
LATENCY = "orbitpy_call_duration_seconds"


def _prometheus() -> Any:
    try:
        import prometheus_client.core
    except ImportError as e:
        raise ImportError("orbitpy.metrics needs prometheus_client: pip install "
                          "prometheus_client (or pip install orbitpy[metrics])") from e
    return prometheus_client.core


def _live_orbits() -> list[tuple[str, Any]]:
    """(label, handle) of this process's orbits, labels made unique."""
    seen: dict[str, int] = {}
    out = []
    handles = sorted(_orbit._live_handles, key=lambda h: (h.name, id(h)))
    for h in handles:
        if h._generation != _orbit._fork_generation and h._core is not None:
            continue  # inherited through a fork: the parent's orbit, not ours
        n = seen.get(h.name, 0) + 1
        seen[h.name] = n
        out.append((h.name if n == 1 else f"{h.name}#{n}", h))
    return out


class OrbitCollector:
    """A prometheus_client collector of every orbit of this process: counters
    from ``stats()`` (see COUNTERS), ``orbitpy_orbit_up`` (1 while the orbit
    process runs) and the ``orbitpy_call_duration_seconds`` histogram (issue to
    main taking the answer, failures included)."""

    def __init__(self) -> None:
        self._core = _prometheus()

    def describe(self) -> list[Any]:
        return []  # the orbits are known only at collect time

    def collect(self) -> Iterator[Any]:
        core = self._core
        counters = {name: core.CounterMetricFamily(name, text, labels=["orbit"])
                    for name, _, text in COUNTERS}
        up = core.GaugeMetricFamily("orbitpy_orbit_up",
                                    "1 while the orbit process is running", labels=["orbit"])
        latency = core.HistogramMetricFamily(
            LATENCY, "Orbit call durations, from issue to main taking the answer",
            labels=["orbit"])
        for label, h in _live_orbits():
            try:
                st = h.stats()
            except Exception:
                continue  # closed by another thread while we looked
            for name, key, _ in COUNTERS:
                counters[name].add_metric([label], st[key])
            up.add_metric([label], 1 if st["pid"] else 0)
            snap = h.latency.snapshot()
            buckets, running = [], 0
            for bound, n in zip((*snap.bounds, float("inf")), snap.counts, strict=True):
                running += n
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
            latency.add_metric([label], buckets, snap.sum)
        yield from counters.values()
        yield up
        yield latency


def register(registry: Any = None) -> OrbitCollector:
    """Register an OrbitCollector in `registry` (default: prometheus_client's
    REGISTRY) and return it (``registry.unregister(it)`` removes it)."""
    collector = OrbitCollector()
    if registry is None:
        registry = collector._core.REGISTRY
    registry.register(collector)
    return collector
