"""One worker's service: its arena state, its task runner and the loops that
drive the auxiliary tasks, and what they found (stuck requests, metrics)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

import orbitpy.metrics

from . import tasks
from .runners import make_runner, note_failure, note_ok
from .settings import Settings
from .state import State

log = logging.getLogger("websvc")
FAULT_KINDS = tasks.FAULT_KINDS


class Service:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state = State(settings.ring_size, settings.arena_mb)
        self.runner = make_runner(settings.tasks, {"watchdog": tasks.watchdog,
                                                   "metrics": tasks.metrics,
                                                   "expiry": tasks.expiry},
                                  timeout=settings.task_timeout,
                                  memory_limit=settings.task_memory_mb << 20)
        self.faults: dict[str, str] = {}  # task -> fault kind for its next run
        self.stuck: list[dict[str, Any]] = []
        self.stuck_checked = 0.0
        self._stuck_logged: set[int] = set()
        # Histograms per route, added up from the metrics task's reports.
        self.histograms: dict[str, tuple[list[int], list[float]]] = {}
        self.quantiles: dict[str, list[float]] = {}
        self.records_lost = 0
        self.metrics_seen = -1
        self.expired = 0
        self.registry = CollectorRegistry()
        self.registry.register(_ServiceCollector(self))
        orbitpy.metrics.register(self.registry)
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = False

    # -- the loops

    def start(self) -> None:
        s = self.settings
        for name, every, step in (("watchdog", s.watchdog_every, self._watchdog),
                                  ("metrics", s.metrics_every, self._metrics),
                                  ("expiry", s.expiry_every, self._expiry)):
            self._loops.append(asyncio.create_task(self._loop(name, every, step),
                                                   name=f"websvc-{name}"))

    async def _loop(self, name: str, every: float,
                    step: Callable[[], Awaitable[None]]) -> None:
        status = self.runner.status[name]
        # Not only cancel(): on Python 3.11 asyncio.wait_for (ThreadRunner)
        # swallows a cancellation that arrives as the awaited run completes.
        while not self._stopping:
            started = time.monotonic()
            try:
                await step()
                note_ok(status)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a crashed or failed task: log, go on
                note_failure(status, e)
                log.error("task %s failed (%s mode): %s", name, self.runner.mode,
                          status.last_error)
            await asyncio.sleep(max(0.0, every - (time.monotonic() - started)))

    def _fault(self, task: str) -> tasks.Fault | None:
        kind = self.faults.pop(task, None)
        return None if kind is None else (kind, self.settings.fault_memory_cap_mb << 20)

    async def _watchdog(self) -> None:
        s = self.settings
        reports = await self.runner.run("watchdog", self.state.inflight, time.time(),
                                        s.stuck_after, fault=self._fault("watchdog"))
        self.stuck = reports
        self.stuck_checked = time.time()
        for r in reports:
            if r["request"] not in self._stuck_logged:
                self._stuck_logged.add(r["request"])
                log.warning("stuck request %d: %s", r["request"], r["diagnosis"])
        if len(self._stuck_logged) > 10000:
            self._stuck_logged = {r["request"] for r in reports}

    async def _metrics(self) -> None:
        st = self.state
        (report,) = await self.runner.run("metrics", st.ring, st.head, self.metrics_seen,
                                          self.settings.metrics_load,
                                          fault=self._fault("metrics"))
        for route, counts in report["new"].items():
            got = self.histograms.get(route)
            if got is None:
                got = self.histograms[route] = ([0] * len(counts), [0.0])
            for i, n in enumerate(counts):
                got[0][i] += n
            got[1][0] += report["sums"][route]
        self.quantiles = report["quantiles"]
        self.records_lost += report["lost"]
        self.metrics_seen = report["head"]

    async def _expiry(self) -> None:
        batches = await self.runner.run("expiry", self.state.sessions, time.time(),
                                        fault=self._fault("expiry"))
        for batch in batches:
            self.expired += self.state.expire_sessions(batch)

    async def stop(self) -> None:
        self._stopping = True
        for t in self._loops:
            t.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops.clear()
        self.runner.close()

    def describe_tasks(self) -> dict[str, Any]:
        out = {}
        for name, status in self.runner.status.items():
            out[name] = {"runs": status.runs, "failures": status.failures,
                         "last_error": status.last_error, "last_ok": status.last_ok,
                         "fault_pending": self.faults.get(name),
                         **self.runner.describe(name)}
        return {"mode": self.runner.mode, "worker": os.getpid(), "tasks": out}


class _ServiceCollector:
    """The service's metrics, from the metrics task's latest report."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        svc = self.service
        hist = HistogramMetricFamily("websvc_request_duration_seconds",
                                     "Request durations per route", labels=["route"])
        for route, (counts, total) in sorted(svc.histograms.items()):
            buckets, running = [], 0
            for bound, n in zip((*tasks.BUCKETS, float("inf")), counts, strict=True):
                running += n
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
            hist.add_metric([route], buckets, total[0])
        yield hist
        quant = GaugeMetricFamily("websvc_request_duration_quantile_seconds",
                                  "Request duration quantiles per route over the last "
                                  "records (the ring)", labels=["route", "quantile"])
        for route, values in sorted(svc.quantiles.items()):
            for q, v in zip(tasks.QUANTILES, values, strict=True):
                quant.add_metric([route, repr(q)], v)
        yield quant
        st = svc.state
        yield GaugeMetricFamily("websvc_requests_in_flight", "Requests in flight",
                                value=len(st.inflight))
        yield GaugeMetricFamily("websvc_sessions", "Sessions kept", value=len(st.sessions))
        yield GaugeMetricFamily("websvc_stuck_requests", "Stuck requests at the last "
                                "watchdog run", value=len(svc.stuck))
        yield CounterMetricFamily("websvc_sessions_expired", "Sessions removed by the "
                                  "expiry task", value=svc.expired)
        yield CounterMetricFamily("websvc_request_records_lost", "Request records "
                                  "overwritten before the metrics task read them",
                                  value=svc.records_lost)
        runs = CounterMetricFamily("websvc_task_runs", "Runs of each auxiliary task",
                                   labels=["task", "mode"])
        fails = CounterMetricFamily("websvc_task_failures", "Failed runs of each "
                                    "auxiliary task", labels=["task", "mode"])
        for name, status in svc.runner.status.items():
            runs.add_metric([name, svc.runner.mode], status.runs)
            fails.add_metric([name, svc.runner.mode], status.failures)
        yield runs
        yield fails


_current: Service | None = None


def current() -> Service | None:
    return _current


def create(settings: Settings | None = None) -> Service:
    """This process's service (made once per worker process, after any fork:
    see gunicorn_conf.py)."""
    global _current
    if _current is None:
        _current = Service(settings or Settings.from_env())
    return _current


def forget() -> None:
    global _current
    if _current is not None:
        _current.state.close()
    _current = None
