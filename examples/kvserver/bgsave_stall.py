"""BGSAVE: what it costs main, fork (Redis's way) vs orbit (issue 11).

    python bgsave_stall.py [--size 1G] [--modes inline,orbit] [--saves 6]
                           [--value-size 1000] [--write-rate 1000] [--json FILE]

For each mode (``--tasks`` of the server: ``inline`` forks for BGSAVE as Redis
does, ``orbit`` calls an orbit) it starts the server, fills it with DEBUG
POPULATE to --size bytes of arena (values of --value-size bytes), then, while

- a probe process sends GET of a random key, one at a time (1 ms apart), and
  records each request's send->reply time, and
- a writer process overwrites random keys with SET at --write-rate per second
  (so the save runs under writes: copy-on-write for the fork, dirty pages for
  the orbit) and logs each write and when it was acknowledged,

issues BGSAVE --saves times, each after --gap seconds of quiet, and measures
per BGSAVE: the BGSAVE command's latency at the client; main's stall inside
the server (INFO latest_fork_usec: the fork(), or the orbit call, of which
latest_bgsave_check_usec was orbitpy's pre-call check and
latest_bgsave_pages_copied the pages its snapshot copied); the probe's latency
during the save against the --gap seconds before it; the save's duration
(until INFO shows it ended); and that the dump verifies: its checksum, every
key, and every value being the one the dataset held when BGSAVE was accepted
(no write acknowledged before the BGSAVE was sent is missing, no write sent
after its reply is in it).

The first BGSAVE is reported apart from the others ("steady"): in orbit mode
it starts the BGSAVE orbit, whose process is forked then, and whose snapshot
receives every arena page main ever wrote (the whole dataset) and whose check
covers every object the call's arguments reach.  Later calls copy only the
pages main wrote since the previous BGSAVE, and check only what changed.

Prints a Markdown table: medians over the steady BGSAVEs, the first apart,
and the ratio fork/orbit of main's stall and of the probe's p99 and maximum
during the save.  Needs nothing beyond the standard library (and a built
orbitpy for the server).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import re
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench import start as start_server  # noqa: E402
from kvserver.dumpfile import FILENAME, read_dump  # noqa: E402

LOG = struct.Struct("<iqq")  # writer log record: key index, value's stamp (ns), acked at (ns)


# -- a minimal RESP client (no dependency; one request at a time) ----------------------
class Conn:
    def __init__(self, port: int, timeout: float = 600.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.sock.makefile("rb")

    def send(self, *args: bytes | str | int) -> None:
        self.sock.sendall(encode(args))

    def reply(self) -> Any:
        line = self.f.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2]
        if kind == b"*":
            return [self.reply() for _ in range(int(rest))]
        raise RuntimeError(f"bad reply {line!r}")

    def call(self, *args: bytes | str | int) -> Any:
        self.send(*args)
        return self.reply()

    def info(self) -> dict[str, str]:
        text = self.call("INFO").decode()
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def close(self) -> None:
        self.f.close()
        self.sock.close()


def encode(args: tuple[Any, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


# -- the load: probe and writer, each a process of its own (no shared GIL) --------------
def probe(port: int, nkeys: int, interval: float, stop: Any, out: Any) -> None:
    """GET a random key, one request at a time; (sent at ns, latency ns) each."""
    c = Conn(port)
    samples: list[int] = []
    rnd = random.Random(1)
    while not stop.is_set():
        req = encode((b"GET", b"key:%d" % rnd.randrange(nkeys)))
        t0 = time.monotonic_ns()
        c.sock.sendall(req)
        c.reply()
        samples += (t0, time.monotonic_ns() - t0)
        time.sleep(interval)
    c.close()
    out.send_bytes(struct.pack(f"<{len(samples)}q", *samples))
    out.close()


def writer(port: int, nkeys: int, rate: int, size: int, logpath: str, stop: Any) -> None:
    """SET random existing keys at `rate` per second (batches every 10 ms);
    each value says which key it is for and when it was made, and each write
    is logged with when its reply came."""
    c = Conn(port)
    rnd = random.Random(2)
    per_batch = max(1, rate // 100)
    period = per_batch / rate
    nxt = time.monotonic()
    with open(logpath, "wb", buffering=0) as log:
        while not stop.is_set():
            batch = []
            for _ in range(per_batch):
                j = rnd.randrange(nkeys)
                stamp = time.monotonic_ns()
                batch.append((j, stamp))
            c.sock.sendall(b"".join(
                encode((b"SET", b"key:%d" % j, (b"w:%d:%d:" % (j, stamp)).ljust(size, b"\0")))
                for j, stamp in batch))
            for _ in batch:
                if c.reply() != b"OK":
                    raise SystemExit("writer: SET failed")
            acked = time.monotonic_ns()
            log.write(b"".join(LOG.pack(j, stamp, acked) for j, stamp in batch))
            nxt += period
            delay = nxt - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                nxt = time.monotonic()  # behind: do not burst to catch up
    c.close()


# -- the server (started by bench.start) -------------------------------------------------
def populate(c: Conn, size: int, value_size: int) -> tuple[int, float]:
    """DEBUG POPULATE until the arena holds `size` bytes; (keys, seconds)."""
    t0 = time.monotonic()
    count = max(1000, size // (value_size + 128))
    while True:
        if c.call("DEBUG", "POPULATE", count, "key", value_size) != b"OK":
            raise SystemExit("DEBUG POPULATE failed")
        used = int(c.info()["used_memory"])
        if used >= size:
            return count, time.monotonic() - t0
        count += max(1000, int((size - used) / (used / count)) + 1)


def memory(pid: int) -> dict[str, int]:
    """Main's memory (bytes): RSS and its parts, and the biggest mapping
    (the arena): its RSS, and how much of it is transparent huge pages."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssShmem"):
                out[k] = int(v.split()[0]) * 1024
    maps: list[dict[str, int]] = []
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                # the arena is private anonymous memory (the orbits' copies
                # main maps are memfds, named)
                maps.append({} if head[1] == "rw-p" and len(head) == 5 else {"skip": 1})
            elif line.startswith(("Rss:", "AnonHugePages:", "KernelPageSize:")):
                maps[-1][head[0][:-1]] = int(head[1]) * 1024
    best = max((m for m in maps if "skip" not in m), key=lambda m: m.get("Rss", 0), default={})
    out["arena_rss"] = best.get("Rss", 0)
    out["arena_thp"] = best.get("AnonHugePages", 0)
    out["arena_page"] = best.get("KernelPageSize", 0)
    return out


def children_rss(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            kids = (task / "children").read_text().split()
        except FileNotFoundError:
            continue
        for kid in kids:
            try:
                with open(f"/proc/{kid}/status") as f:
                    total += sum(int(line.split()[1]) * 1024 for line in f
                                 if line.startswith("VmRSS:"))
            except FileNotFoundError:
                pass
    return total


def populated_value(j: int, size: int) -> bytes:
    """What DEBUG POPULATE stores for key j with values of `size` bytes."""
    return (b"value:%d" % j)[:size].ljust(size, b"\0")


# -- checking a dump against the writes ---------------------------------------------
def verify(path: str, nkeys: int, logpath: str, sent: int, replied: int) -> str:
    """'ok', or what is wrong: the dump must hold every key, each with the
    value it had when BGSAVE was accepted (between `sent` and `replied`)."""
    try:
        data, expires = read_dump(path)  # checks the CRC
    except (OSError, ValueError) as e:
        return f"unreadable: {e}"
    if len(data) != nkeys or expires:
        return f"{len(data)} keys ({len(expires)} with a TTL), expected {nkeys}"
    with open(logpath, "rb") as f:
        raw = f.read()
    must: dict[int, int] = {}  # key -> stamp of its last write acked before BGSAVE was sent
    for j, stamp, acked in LOG.iter_unpack(raw[:len(raw) - len(raw) % LOG.size]):
        if acked < sent and stamp > must.get(j, -1):
            must[j] = stamp
    bad = 0
    example = ""
    for j in range(nkeys):
        v = data.get(b"key:%d" % j)
        if v is None:
            return f"key:{j} missing"
        if v.startswith(b"w:"):
            jj, stamp_b, _ = v[2:].split(b":", 2)
            stamp = int(stamp_b)
            ok = int(jj) == j and stamp < replied and stamp >= must.get(j, -1)
        else:
            ok = v == populated_value(j, len(v)) and j not in must
            stamp = -1
        if not ok:
            bad += 1
            example = example or f"key:{j} has stamp {stamp}, needs >= {must.get(j, -1)} " \
                                 f"and < {replied}"
    return "ok" if not bad else f"{bad} keys wrong, e.g. {example}"


# -- one mode ---------------------------------------------------------------------------
def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def run_mode(mode: str, a: argparse.Namespace) -> dict[str, Any]:
    # Not much more than the data: in inline mode fork() copies the page
    # tables of the whole arena, its write-protect markers included.
    arena_size = a.arena_size or a.size + a.size // 4 + (128 << 20)
    ctx = mp.get_context("fork")
    with tempfile.TemporaryDirectory(prefix="kv-bgsave-", dir=a.dir) as d:
        proc, port = start_server(mode, d, arena_size)
        c = Conn(port)
        res: dict[str, Any] = {"mode": mode, "saves": []}
        try:
            pid = int(c.info()["process_id"])
            nkeys, secs = populate(c, a.size, a.value_size)
            info = c.info()
            res.update(keys=nkeys, populate_s=secs, used_memory=int(info["used_memory"]),
                       mem_populated=memory(pid))
            print(f"[{mode}] populated {nkeys} keys in {secs:.1f} s: used_memory "
                  f"{int(info['used_memory']) / 2**20:.0f} MiB, RSS "
                  f"{res['mem_populated']['VmRSS'] / 2**20:.0f} MiB", file=sys.stderr)
            stop = ctx.Event()
            probe_out, probe_in = ctx.Pipe(duplex=False)
            pr = ctx.Process(target=probe, args=(port, nkeys, a.probe_interval, stop, probe_in))
            pr.start()
            t_probe = time.monotonic_ns()
            logpath = os.path.join(d, "writes.log")
            open(logpath, "wb").close()
            wr = None
            if a.write_rate:
                wr = ctx.Process(target=writer, args=(port, nkeys, a.write_rate, a.value_size,
                                                      logpath, stop))
                wr.start()
            time.sleep(a.settle)  # orbit mode: the expiry and slow-log orbits sync the dataset
            windows = []
            for i in range(a.saves):
                time.sleep(a.gap)
                t_sent = time.monotonic_ns()
                reply = c.call("BGSAVE")
                t_reply = time.monotonic_ns()
                if reply != b"Background saving started":
                    raise SystemExit(f"BGSAVE: {reply!r}")
                while True:
                    info = c.info()
                    if info["rdb_bgsave_in_progress"] == "0":
                        break
                    time.sleep(0.02)
                t_done = time.monotonic_ns()
                mem = memory(pid)
                kids = children_rss(pid)
                status = info["rdb_last_bgsave_status"]
                check = verify(os.path.join(d, FILENAME), nkeys, logpath, t_sent, t_reply) \
                    if status == "ok" else "the save failed"
                s = {"i": i, "reply_ms": (t_reply - t_sent) / 1e6,
                     "stall_ms": int(info["latest_fork_usec"]) / 1e3,
                     "check_ms": int(info["latest_bgsave_check_usec"]) / 1e3,
                     "pages_copied": int(info["latest_bgsave_pages_copied"]),
                     "duration_s": (t_done - t_sent) / 1e9, "verified": check,
                     "rss": mem["VmRSS"], "rss_shmem": mem["RssShmem"], "children_rss": kids}
                res["saves"].append(s)
                windows.append((t_sent, t_done))
                print(f"[{mode}] BGSAVE {i}: reply {s['reply_ms']:.1f} ms, main's stall "
                      f"{s['stall_ms']:.1f} ms (check {s['check_ms']:.1f} ms, "
                      f"{s['pages_copied']} pages copied), {s['duration_s']:.1f} s, "
                      f"dump {check}", file=sys.stderr)
            stop.set()
            if not probe_out.poll(120):
                raise SystemExit("the probe did not answer (did the server die?)")
            raw = probe_out.recv_bytes()
            pr.join(30)
            if wr is not None:
                wr.join(30)
            samples = list(struct.iter_unpack("<qq", raw))
            with open(logpath, "rb") as f:
                res["writes"] = len(f.read()) // LOG.size
            res["mem_end"] = memory(pid)
            res["info_end"] = c.info()
        finally:
            c.close()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    # The probe's latency during each save (requests sent from BGSAVE to its
    # end) and in the --gap seconds before it.
    after = [lat / 1e6 for t, lat in samples if t_probe <= t < t_probe + a.settle * 1e9]
    res["after_populate_max_ms"] = max(after, default=float("nan"))
    for s, (t_sent, t_done) in zip(res["saves"], windows, strict=True):
        during = [lat / 1e6 for t, lat in samples if t_sent <= t <= t_done]
        before = [lat / 1e6 for t, lat in samples if t_sent - a.gap * 1e9 <= t < t_sent]
        s.update(n_during=len(during), p50=pct(during, 0.5), p99=pct(during, 0.99),
                 max=max(during, default=float("nan")), out_p50=pct(before, 0.5),
                 out_p99=pct(before, 0.99), out_max=max(before, default=float("nan")))
    return res


# -- the table ---------------------------------------------------------------------------
ROWS = [  # (label, key, format)
    ("main's stall starting BGSAVE (`latest_fork_usec`), ms", "stall_ms", "{:.1f}"),
    ("… of it, orbitpy's pre-call check, ms", "check_ms", "{:.1f}"),
    ("… pages its snapshot copied", "pages_copied", "{:.0f}"),
    ("BGSAVE reply at the client, ms", "reply_ms", "{:.1f}"),
    ("probe p50 during the save, ms", "p50", "{:.2f}"),
    ("probe p99 during the save, ms", "p99", "{:.1f}"),
    ("probe max during the save, ms", "max", "{:.1f}"),
    ("probe p50 / p99 / max before it, ms", ("out_p50", "out_p99", "out_max"),
     "{:.2f} / {:.1f} / {:.1f}"),
    ("save duration (until INFO says done), s", "duration_s", "{:.1f}"),
]
RATIO_KEYS = ("stall_ms", "reply_ms", "p99", "max")


def cell(saves: list[dict[str, Any]], key: Any, fmt: str) -> str:
    keys = key if isinstance(key, tuple) else (key,)
    return fmt.format(*(statistics.median(s[k] for s in saves) for k in keys))


def table(results: list[dict[str, Any]]) -> str:
    cols: list[tuple[str, list[dict[str, Any]]]] = []
    for r in results:
        name = {"inline": "fork", "orbit": "orbit"}.get(r["mode"], r["mode"])
        cols.append((f"{name}: first", r["saves"][:1]))
        if len(r["saves"]) > 1:
            cols.append((f"{name}: steady (median of {len(r['saves']) - 1})", r["saves"][1:]))
    by_mode = {r["mode"]: r for r in results}
    ratio = "inline" in by_mode and "orbit" in by_mode and len(by_mode["orbit"]["saves"]) > 1
    head = "| |" + "".join(f" {name} |" for name, _ in cols) + (" fork/orbit, steady |"
                                                               if ratio else "")
    lines = [head, "| --- |" + " ---: |" * (len(cols) + ratio)]
    for label, key, fmt in ROWS:
        row = f"| {label} |" + "".join(f" {cell(saves, key, fmt)} |" for _, saves in cols)
        if ratio:
            if key in RATIO_KEYS:
                f = statistics.median(s[key] for s in by_mode["inline"]["saves"][1:])
                o = statistics.median(s[key] for s in by_mode["orbit"]["saves"][1:])
                row += f" {f / o:.1f}x |" if o > 0 else " – |"
            else:
                row += " |"
        lines.append(row)
    lines.append("| dumps verified |" + "".join(
        f" {sum(s['verified'] == 'ok' for s in saves)}/{len(saves)} |" for _, saves in cols)
        + (" |" if ratio else ""))
    return "\n".join(lines)


def summary(results: list[dict[str, Any]]) -> str:
    out = []
    for r in results:
        m, e = r["mem_populated"], r["mem_end"]
        out.append(
            f"- `{r['mode']}`: {r['keys']:,} keys populated in {r['populate_s']:.1f} s; arena "
            f"used_memory {r['used_memory'] / 2**20:,.0f} MiB; main's RSS "
            f"{m['VmRSS'] / 2**20:,.0f} MiB after populating (arena mapping: "
            f"{m['arena_rss'] / 2**20:,.0f} MiB resident, {m['arena_thp'] / 2**20:,.0f} MiB of "
            f"it in transparent huge pages, page size {m['arena_page'] // 1024} KiB), "
            f"{e['VmRSS'] / 2**20:,.0f} MiB at the end ({e['RssShmem'] / 2**20:,.0f} MiB of it "
            f"shared memory: the orbits' copies main writes); {r['writes']:,} writes; probe max "
            f"{r['after_populate_max_ms']:.0f} ms in the {r['_settle']:g} s after populating")
    return "\n".join(out)


def parse_size(text: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]?)i?B?", text.strip(), re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    return int(float(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[
        m.group(2).upper()])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=parse_size, default=parse_size("1G"),
                   help="arena bytes to fill (1G, 64M, ...)")
    p.add_argument("--modes", default="inline,orbit", help="server --tasks modes to compare")
    p.add_argument("--saves", type=int, default=6, help="BGSAVEs per mode (the first apart)")
    p.add_argument("--value-size", type=int, default=1000)
    p.add_argument("--write-rate", type=int, default=1000, help="SETs per second (0: none)")
    p.add_argument("--gap", type=float, default=3.0,
                   help="seconds of quiet before each BGSAVE (the 'before' window)")
    p.add_argument("--settle", type=float, default=10.0,
                   help="seconds after populating, before the first BGSAVE's quiet gap")
    p.add_argument("--probe-interval", type=float, default=0.001)
    p.add_argument("--arena-size", type=int, default=0, help="default: 1.25x --size + 128 MiB")
    p.add_argument("--dir", default=None, help="where the dumps go (default: the temp dir)")
    p.add_argument("--json", help="also write the raw results here")
    a = p.parse_args()
    results = []
    for mode in a.modes.split(","):
        r = run_mode(mode, a)
        r["_settle"] = a.settle
        results.append(r)
    print(table(results))
    print()
    print(summary(results))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1, default=str)


if __name__ == "__main__":
    main()
