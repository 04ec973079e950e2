"""gunicorn configuration: one service (arena, orbits) per worker.

    cd examples/websvc
    gunicorn -k uvicorn.workers.UvicornWorker -w 2 -c websvc/gunicorn_conf.py websvc.app:app

Each worker makes its own arena and orbit functions in post_fork, after the
worker process exists.  That matters with ``--preload``: the app is then
imported once, in the master, and the workers are forks of it.  An arena
made at import would be the master's, and a worker cannot use an inherited
arena (orbitpy refuses calls passing it: each worker's orbits snapshot that
worker's memory, which the master's arena is not); an orbit started in the
master would be the master's child, not the worker's.  So nothing of orbitpy
is made at import; post_fork makes it per worker (without ``--preload`` the
lifespan would make it too, post_fork just does it first).
"""

from __future__ import annotations

import os
from typing import Any

bind = os.environ.get("WEBSVC_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEBSVC_WORKERS", "2"))
worker_class = "uvicorn.workers.UvicornWorker"
graceful_timeout = 10
timeout = 30
accesslog = None


def post_fork(server: Any, worker: Any) -> None:
    from websvc import service

    service.create()  # this worker's arena, tables and orbit functions
    server.log.info("websvc: worker %d made its arena and orbits", worker.pid)
