"""python -m kvserver --port P --dir D [--tasks inline|thread|orbit] [--load]"""

from __future__ import annotations

import argparse
import asyncio

from .server import serve


def main() -> None:
    p = argparse.ArgumentParser(prog="kvserver", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=6379, help="0: any free port (printed)")
    p.add_argument("--dir", default=".", help="where SAVE/BGSAVE write dump.kvs")
    p.add_argument("--tasks", choices=("inline", "thread", "orbit"), default="orbit")
    p.add_argument("--arena-size", type=int, default=0,
                   help="bytes for the dataset (default 256 MiB, or 8x the dump loaded)")
    p.add_argument("--load", action="store_true", help="load DIR/dump.kvs at start")
    a = p.parse_args()
    asyncio.run(serve(a.host, a.port, a.dir, a.tasks, a.arena_size, a.load))


if __name__ == "__main__":
    main()
