"""The service's settings, read from the environment (``python -m websvc``
sets it from its options; under gunicorn set WEBSVC_* yourself)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    tasks: str = "orbit"            # where the auxiliary tasks run: "orbit" or "thread"
    stuck_after: float = 1.0        # seconds before an in-flight request counts as stuck
    watchdog_every: float = 0.1     # seconds between watchdog runs
    metrics_every: float = 1.0      # seconds between metrics computations
    expiry_every: float = 1.0       # seconds between session expiry runs
    session_ttl: float = 300.0      # default session lifetime, seconds
    ring_size: int = 65536          # request records kept for the metrics
    metrics_load: int = 0           # extra synthetic records per metrics run (CPU-heavy mode)
    faults: bool = False            # enable POST /debug/fault (fault injection)
    arena_mb: int = 256             # the arena's size
    task_timeout: float = 5.0       # seconds a task run may take (orbit: then killed)
    task_memory_mb: int = 512       # each task orbit's memory_limit, MiB
    fault_memory_cap_mb: int = 2048  # what the "memory" fault takes at most, MiB

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        tasks = env.get("WEBSVC_TASKS", cls.tasks)
        if tasks not in ("orbit", "thread"):
            raise ValueError(f"WEBSVC_TASKS must be 'orbit' or 'thread', got {tasks!r}")
        return cls(
            tasks=tasks,
            stuck_after=float(env.get("WEBSVC_STUCK_AFTER", cls.stuck_after)),
            watchdog_every=float(env.get("WEBSVC_WATCHDOG_EVERY", cls.watchdog_every)),
            metrics_every=float(env.get("WEBSVC_METRICS_EVERY", cls.metrics_every)),
            expiry_every=float(env.get("WEBSVC_EXPIRY_EVERY", cls.expiry_every)),
            session_ttl=float(env.get("WEBSVC_SESSION_TTL", cls.session_ttl)),
            ring_size=int(env.get("WEBSVC_RING_SIZE", cls.ring_size)),
            metrics_load=int(env.get("WEBSVC_METRICS_LOAD", cls.metrics_load)),
            faults=env.get("WEBSVC_FAULTS", "") == "1",
            arena_mb=int(env.get("WEBSVC_ARENA_MB", cls.arena_mb)),
            task_timeout=float(env.get("WEBSVC_TASK_TIMEOUT", cls.task_timeout)),
            task_memory_mb=int(env.get("WEBSVC_TASK_MEMORY_MB", cls.task_memory_mb)),
            fault_memory_cap_mb=int(env.get("WEBSVC_FAULT_MEMORY_CAP_MB",
                                            cls.fault_memory_cap_mb)),
        )
