"""python -m websvc --port P [--host H] [--tasks orbit|thread] [...]"""

from __future__ import annotations

import argparse
import logging
import os

import uvicorn


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m websvc")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--tasks", choices=("orbit", "thread"), default="orbit",
                   help="run the watchdog, metrics and session expiry in orbits or threads")
    p.add_argument("--stuck-after", type=float, default=1.0,
                   help="seconds after which an in-flight request is reported stuck")
    p.add_argument("--metrics-load", type=int, default=0,
                   help="synthetic records added to each metrics run (a CPU-heavy task)")
    p.add_argument("--session-ttl", type=float, default=300.0)
    p.add_argument("--faults", action="store_true", help="enable POST /debug/fault")
    p.add_argument("--log-level", default="info")
    args = p.parse_args()
    os.environ.update(WEBSVC_TASKS=args.tasks, WEBSVC_STUCK_AFTER=str(args.stuck_after),
                      WEBSVC_METRICS_LOAD=str(args.metrics_load),
                      WEBSVC_SESSION_TTL=str(args.session_ttl),
                      WEBSVC_FAULTS="1" if args.faults else "0")
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    uvicorn.run("websvc.app:app", host=args.host, port=args.port, lifespan="on",
                access_log=False, log_level=args.log_level, timeout_graceful_shutdown=10)


if __name__ == "__main__":
    main()
