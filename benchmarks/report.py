"""Summarise a pytest-benchmark JSON of benchmarks/ as markdown: the medians
and the ratios the README quotes, with each target's verdict.

    python benchmarks/report.py bench.json [--md report.md] [--plots DIR]

--plots writes the PNG plots (plots.py, matplotlib) to DIR; the latency CDF
needs the raw samples (``pytest --benchmark-save-data``, which
``python -m orbitpy bench`` passes).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

US = 1e6
KS = [0, 1, 10, 100, 1000]
SYNC_ORDER = ["plain-call", "futex-spin-split", "futex-sleep-same", "futex-sleep-split",
              "orbit", "orbit-pause-1", "orbit-pause-5", "orbit-spin0", "orbit-spin0-same",
              "orbit-spin0-split", "mp-pipe", "process-pool"]
SYNC_TEXT = {
    "plain-call": "plain function call in this thread",
    "futex-spin-split": "futex round trip (C), spin {spin} µs then sleep, 2 CPUs",
    "futex-sleep-same": "futex round trip (C), sleeping, 1 CPU",
    "futex-sleep-split": "futex round trip (C), sleeping, 2 CPUs",
    "orbit": "**orbit `fn()`**, default (spin {spin} µs), unpinned",
    "orbit-pause-1": "orbit `fn()`, default, main sleeps 1 ms before each call",
    "orbit-pause-5": "orbit `fn()`, default, main sleeps 5 ms before each call",
    "orbit-spin0": "orbit `fn()`, ORBITPY_SPIN_US=0, unpinned",
    "orbit-spin0-same": "orbit `fn()`, ORBITPY_SPIN_US=0, 1 CPU",
    "orbit-spin0-split": "orbit `fn()`, ORBITPY_SPIN_US=0, 2 CPUs",
    "mp-pipe": "`multiprocessing.Pipe` round trip to a worker",
    "process-pool": "`ProcessPoolExecutor(1).submit(f).result()`",
}
CALL_ASYNC_BUDGET_US = (15.0, 1.0)  # fixed + per dirty page
SYNC_LIMIT = 1.5
HEAP_LIMIT = 1.2
# bench_arena_objects.py: at this fraction of records changed, the orbit call
# must be this many times faster than each alternative.
OBJ_TARGET_FRACTION = 0.001
OBJ_TARGETS = {"pool": 100.0, "fork": 30.0}
OBJ_TEXT = {"orbit": "orbit `fn(table, keys)`",
            "pool": "`ProcessPoolExecutor(1)` (pickles the table)",
            "fork": "`os.fork()` per call"}


def fmt_us(seconds: float) -> str:
    us = seconds * US
    if us >= 1000:
        return f"{us:,.0f}"
    if us >= 100:
        return f"{us:.0f}"
    if us >= 10:
        return f"{us:.1f}"
    if us >= 1:
        return f"{us:.2f}"
    return f"{us:.3f}"


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |",
           "|" + "|".join(" --- " if i == 0 else " ---: " for i in range(len(head))) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def load(path: str) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)


def report(data: dict[str, Any]) -> list[str]:
    benches = data.get("benchmarks", [])
    ca: dict[tuple[str, str, int], dict[str, Any]] = {}
    sync: dict[str, dict[str, Any]] = {}
    heap: dict[tuple[str, int], dict[str, Any]] = {}
    objs: dict[tuple[str, float], dict[str, Any]] = {}
    for b in benches:
        e = b.get("extra_info", {})
        if e.get("kind") == "call_async":
            ca[(e["mode"], e["state"], int(e["k"]))] = b
        elif e.get("kind") == "sync":
            sync[e["variant"]] = b
        elif e.get("kind") == "heap":
            heap[(e["variant"], int(e["heap_mb"]))] = b
        elif e.get("kind") == "arena_objects":
            objs[(e["variant"], float(e["fraction"]))] = b

    def med(b: dict[str, Any]) -> float:
        return float(b["stats"]["median"])

    out: list[str] = []
    orb = data.get("machine_info", {}).get("orbitpy", {})
    spin = orb.get("ORBITPY_SPIN_US", 100)
    cond = data.get("run_conditions", {})
    commit = data.get("commit_info", {})
    if commit.get("id"):
        dirty = " (with uncommitted changes)" if commit.get("dirty") else ""
        out.append(f"Commit {commit['id'][:10]}{dirty}.")
    out.append(f"pytest-benchmark run of {data.get('datetime', '?')}; "
               f"{data.get('machine_info', {}).get('python_version', '?')}, "
               f"{orb.get('cpus', '?')} CPUs, default snapshot mode "
               f"{orb.get('default_snapshot_mode', '?')}. All times are medians in µs.")
    if cond:
        busy = cond.get("other_cpus_busy", 0) or 0
        out.append(f"Other processes kept {busy} CPUs busy on average during the run "
                   f"(steal {cond.get('steal_cpus', 0)}); the run took {cond.get('wall_s')} s.")
        if busy > 0.2:
            out.append("**Warning: the machine was busy with other work; these numbers are "
                       "not representative.**")
    out.append("")

    # ---------------------------------------------------------- call_async
    if ca:
        fixed, per_page = CALL_ASYNC_BUDGET_US
        out.append("### 1. `call_async` return time (snapshot taken), 16 MiB arena, "
                   "8 MiB resident buffer")
        out.append("")
        ks = sorted({k for (_, _, k) in ca})
        rows = []
        modes = [m for m in ("uffd", "mprotect", "full") if any(x[0] == m for x in ca)]
        for mode in modes:
            for state in ("idle", "busy", "hot"):
                if not any((mode, state, k) in ca for k in ks):
                    continue
                cells = [fmt_us(med(ca[(mode, state, k)])) if (mode, state, k) in ca else "–"
                         for k in ks]
                rows.append([f"{mode}, orbit {state}"] + cells)
        rows.append([f"target: {fixed:g} + {per_page:g}·k"]
                    + [f"{fixed + per_page * k:g}" for k in ks])
        out += table(["dirty pages k →"] + [str(k) for k in ks], rows)
        out.append("")
        out.append("Ratio median / target (≤ 1 meets it):")
        out.append("")
        rows = []
        for mode in modes:
            for state in ("idle", "busy", "hot"):
                if not any((mode, state, k) in ca for k in ks):
                    continue
                cells = []
                for k in ks:
                    b = ca.get((mode, state, k))
                    if b is None:
                        cells.append("–")
                        continue
                    r = med(b) * US / (fixed + per_page * k)
                    cells.append(f"{r:.2f}" if r <= 1 else f"**{r:.2f}**")
                rows.append([f"{mode}, orbit {state}"] + cells)
        out += table(["dirty pages k →"] + [str(k) for k in ks], rows)
        out.append("")
        for mode in modes:
            for state in ("idle", "busy"):
                pts = [(k, med(ca[(mode, state, k)]) * US) for k in ks if (mode, state, k) in ca]
                if len(pts) >= 2 and pts[-1][0] > pts[0][0]:
                    (k0, t0), (k1, t1) = pts[0], pts[-1]
                    slope = (t1 - t0) / (k1 - k0)
                    out.append(f"- {mode}, {state}: {t0:.1f} µs at k={k0}, "
                               f"{slope:.2f} µs per extra dirty page up to k={k1}")
        default = [(m, s, k) for (m, s, k) in ca if m == orb.get("default_snapshot_mode", "uffd")
                   and s in ("idle", "busy")]
        if default:
            ok = all(med(ca[x]) * US <= fixed + per_page * x[2] for x in default)
            out.append(f"- Target (default mode, idle and busy, every k): {verdict(ok)}")
        out.append("")

    # ---------------------------------------------------------- sync call
    if sync:
        out.append("### 2. Synchronous empty call `fn()` vs a bare futex round trip")
        out.append("")
        fs = sync.get("futex-sleep-split")
        f1 = sync.get("futex-sleep-same")
        fp = sync.get("futex-spin-split")
        rows = []
        for v in SYNC_ORDER + sorted(set(sync) - set(SYNC_ORDER)):
            b = sync.get(v)
            if b is None:
                continue
            rows.append([SYNC_TEXT.get(v, v).format(spin=spin), fmt_us(med(b)),
                         fmt_us(float(b["stats"]["iqr"])),
                         f"{med(b) / med(fs):.2f}" if fs else "–",
                         f"{med(b) / med(f1):.2f}" if f1 else "–",
                         f"{med(b) / med(fp):.1f}" if fp else "–"])
        out += table(["variant", "median µs", "IQR µs", "÷ futex sleep 2 CPUs",
                      "÷ futex sleep 1 CPU", "÷ futex spin 2 CPUs"], rows)
        out.append("")

        def ratio_line(label: str, a: Any, b: Any) -> None:
            if a and b:
                r = med(a) / med(b)
                out.append(f"- {label}: {fmt_us(med(a))} / {fmt_us(med(b))} µs = {r:.2f}× → "
                           f"{verdict(r <= SYNC_LIMIT)} (limit {SYNC_LIMIT}×)")

        o = sync.get("orbit")
        ratio_line("**Target**, orbit `fn()` (default) vs the bare futex round trip "
                   "(sleeping, 2 CPUs)", o, fs)
        ratio_line("Like for like, both sleeping, 2 CPUs", sync.get("orbit-spin0-split"), fs)
        ratio_line("Like for like, both sleeping, 1 CPU", sync.get("orbit-spin0-same"), f1)
        ratio_line("Default orbit vs the sleeping futex on 1 CPU (its best case)", o, f1)
        if o and fp:
            out.append(f"- Like for like, both spinning {spin} µs on 2 CPUs: "
                       f"{med(o) / med(fp):.0f}× ({fmt_us(med(o) - med(fp))} µs of Python, "
                       f"socket and bookkeeping above the futex)")
        out.append("")

    # ---------------------------------------------------------- heap
    if heap:
        out.append("### 3. Call latency vs main's heap size")
        out.append("")
        sizes = sorted({mb for (_, mb) in heap})
        rows = []
        for v, text in (("sync-call", "orbit `fn()` (orbit started with that heap)"),
                        ("fork-per-call", "`os.fork()` + child `_exit` + `waitpid`")):
            cells = [fmt_us(med(heap[(v, mb)])) if (v, mb) in heap else "–" for mb in sizes]
            if (v, sizes[0]) in heap and (v, sizes[-1]) in heap and len(sizes) > 1:
                cells.append(f"{med(heap[(v, sizes[-1])]) / med(heap[(v, sizes[0])]):.2f}")
            else:
                cells.append("–")
            rows.append([text] + cells)
        rss = [str(heap[(v, mb)]["extra_info"].get("rss_mb", "?"))
               for mb in sizes for v in ("sync-call",) if (v, mb) in heap]
        out += table(["µs, heap →"] + [f"{mb} MB" for mb in sizes]
                     + [f"{sizes[-1]} MB ÷ {sizes[0]} MB"], rows)
        out.append("")
        if rss:
            out.append(f"(resident size of main while measuring: {' / '.join(rss)} MB)")
        s0, s1 = heap.get(("sync-call", sizes[0])), heap.get(("sync-call", sizes[-1]))
        if s0 and s1 and len(sizes) > 1:
            r = med(s1) / med(s0)
            out.append(f"- Target: {sizes[-1]} MB / {sizes[0]} MB sync call ≤ {HEAP_LIMIT}×: "
                       f"{r:.2f}× → {verdict(r <= HEAP_LIMIT)}")
        f1 = heap.get(("fork-per-call", sizes[-1]))
        if f1 and s1:
            out.append(f"- At {sizes[-1]} MB a fork per call costs {med(f1) / med(s1):,.0f}× "
                       f"an orbit call")
        out.append("")

    # ---------------------------------------------------------- objects
    if objs:
        out += report_objects(objs, data.get("machine_info", {}).get("python_version", "?"))
    out += report_table1(benches)
    out += report_snapshot(benches)
    out += report_gil(benches)
    out += report_deadlock(benches)
    out += report_memory(benches)
    return out


def by_kind(benches: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [b for b in benches if b.get("extra_info", {}).get("kind") == kind]


def med(b: dict[str, Any]) -> float:
    return float(b["stats"]["median"])


def med_range(b: dict[str, Any], fmt: Any = fmt_us) -> str:
    """median (min–max)"""
    st = b["stats"]
    return f"{fmt(float(st['median']))} ({fmt(float(st['min']))}–{fmt(float(st['max']))})"


def ratio(x: float) -> str:
    return f"{x:,.0f}×" if x >= 100 else (f"{x:.1f}×" if x >= 10 else f"{x:.2f}×")


TABLE1_TEXT = {
    "orbit-sync": "**orbit `fn(buf)`**",
    "orbit-async": "**orbit `fn.call_async(buf)`** returning",
    "fork": "`os.fork()` per call (child runs the task, parent waits)",
    "mp-pickle": "`multiprocessing` worker, state pickled over a Pipe",
    "process-pool": "`ProcessPoolExecutor(1).submit(task, state)`",
    "thread": "a worker thread (no copy, no isolation)",
    "subinterpreter": "a subinterpreter, state copied in as bytes",
}
FORK_TARGET = 10_000.0
ORBIT_HEAP_LIMIT = 1.1
PAGES_PER_S_TARGET = 250_000
GIL_P99_LIMIT = 1.1
USS_LIMIT_MB = 30.0


def report_table1(benches: list[dict[str, Any]]) -> list[str]:
    t1 = {(b["extra_info"]["variant"], int(b["extra_info"]["heap_mb"])): b
          for b in by_kind(benches, "table1")}
    if not t1:
        return []
    sizes = sorted({mb for (_, mb) in t1})
    e0 = next(iter(t1.values()))["extra_info"]
    out = ["### 5. Table 1: one small task, called 100 times, against main's heap size", "",
           f"The task reads one byte of each page of a {e0['state_bytes'] >> 20} MiB state, "
           f"{e0['dirty_pages']} pages of which main changed before each call.  Main's heap: "
           f"{e0['heap']}.  Median µs per call (min–max of the 100 calls); "
           f"÷ orbit: the median over the orbit sync call's at the same heap.", ""]
    rows = []
    for v in [v for v in TABLE1_TEXT if any((v, mb) in t1 for mb in sizes)]:
        cells = [med_range(t1[(v, mb)]) if (v, mb) in t1 else "–" for mb in sizes]
        cells += [ratio(med(t1[(v, mb)]) / med(t1[("orbit-sync", mb)]))
                  if (v, mb) in t1 and ("orbit-sync", mb) in t1 else "–" for mb in sizes]
        a, z = t1.get((v, sizes[0])), t1.get((v, sizes[-1]))
        cells.append(f"{med(z) / med(a):.2f}" if a and z and len(sizes) > 1 else "–")
        rows.append([TABLE1_TEXT[v]] + cells)
    out += table(["µs per call, heap →"] + [f"{mb:,} MB" for mb in sizes]
                 + [f"÷ orbit at {mb:,} MB" for mb in sizes]
                 + [f"{sizes[-1]:,} ÷ {sizes[0]} MB"], rows)
    out.append("")
    big, small = sizes[-1], sizes[0]
    o_big, o_small, f_big = (t1.get(("orbit-sync", big)), t1.get(("orbit-sync", small)),
                             t1.get(("fork", big)))
    if o_big and f_big:
        r = med(f_big) / med(o_big)
        out.append(f"- Target: at {big:,} MB an orbit call ≥ {FORK_TARGET:,.0f}× faster than "
                   f"a fork per call: {ratio(r)} → {verdict(r >= FORK_TARGET)}"
                   + ("" if big >= 8192 else " (the target is stated at 8 GB: full mode)"))
    if o_big and o_small and big > small:
        r = med(o_big) / med(o_small)
        out.append(f"- Target: orbit call at {big:,} MB within {ORBIT_HEAP_LIMIT}× of "
                   f"{small} MB: {r:.2f}× → {verdict(r <= ORBIT_HEAP_LIMIT)}")
    out.append("")
    return out


def report_snapshot(benches: list[dict[str, Any]]) -> list[str]:
    snap = by_kind(benches, "snapshot")
    if not snap:
        return []
    out = ["### 6. Snapshot scaling: `call_async` returning (snapshot taken) per mode", ""]
    modes = [m for m in ("uffd", "mprotect", "full")
             if any(b["extra_info"]["mode"] == m for b in snap)]
    dirty = {(b["extra_info"]["mode"], int(b["extra_info"]["k"])): b
             for b in snap if b["extra_info"]["sweep"] == "dirty"}
    if dirty:
        ks = sorted({k for (_, k) in dirty})
        arenas = {k: next(b["extra_info"]["arena_mb"] for (m, kk), b in dirty.items() if kk == k)
                  for k in ks}
        out.append("Against dirty pages k (every other page; arena twice the resident "
                   "buffer, at least 16 MiB).  Median µs (min–max); pages/s = k ÷ median:")
        out.append("")
        rows = []
        for m in modes:
            rows.append([f"{m}, µs"] + [med_range(dirty[(m, k)]) if (m, k) in dirty else "–"
                                        for k in ks])
            rows.append([f"{m}, pages/s"] + [f"{k / med(dirty[(m, k)]):,.0f}"
                                             if (m, k) in dirty else "–" for k in ks])
        out += table(["k →"] + [f"{k:,} ({arenas[k]} MiB arena)" for k in ks], rows)
        out.append("")
        for m in modes:
            pts = [(k, med(dirty[(m, k)])) for k in ks if (m, k) in dirty]
            if len(pts) >= 2:
                (k0, t0), (k1, t1) = pts[0], pts[-1]
                per = (t1 - t0) / (k1 - k0)
                out.append(f"- {m}: {fmt_us(t0)} µs at k={k0:,}; {per * US:.2f} µs per extra "
                           f"page up to k={k1:,} ({1 / per if per > 0 else float('inf'):,.0f} "
                           f"extra pages/s)")
        top = max((k for (m, k) in dirty if m == "uffd"), default=None)
        if top is not None:
            pps = top / med(dirty[("uffd", top)])
            out.append(f"- Target: uffd ≥ {PAGES_PER_S_TARGET:,} dirty pages/s (at k={top:,}): "
                       f"{pps:,.0f} → {verdict(pps >= PAGES_PER_S_TARGET)}")
        out.append("")
    size = {(b["extra_info"]["mode"], int(b["extra_info"]["arena_mb"])): b
            for b in snap if b["extra_info"]["sweep"] == "size"}
    if size:
        sizes = sorted({mb for (_, mb) in size})
        k = next(iter(size.values()))["extra_info"]["k"]
        out.append(f"Against the arena's size, {k} dirty pages, half the arena resident. "
                   f"Median µs (min–max):")
        out.append("")
        rows = [[m] + [med_range(size[(m, mb)]) if (m, mb) in size else "–" for mb in sizes]
                for m in modes]
        out += table(["mode, arena →"] + [f"{mb:,} MiB" for mb in sizes], rows)
        out.append("")
    return out


def report_gil(benches: list[dict[str, Any]]) -> list[str]:
    gil = {b["extra_info"]["variant"]: b for b in by_kind(benches, "gil")}
    if not gil:
        return []
    e0 = next(iter(gil.values()))["extra_info"]
    out = ["### 7. GIL relief: main serving requests, a maintenance scan every 100 ms", "",
           f"Each request: a few hundred µs of Python and two writes to a {e0['entries']:,}-"
           f"entry table in an arena; the scan of the table takes {e0['scan_ms']} ms of "
           f"Python; {e0['seconds']:g} s per variant (two stretches, mirrored order).  "
           f"Latencies in µs.", ""]
    text = {"none": "no maintenance task", "thread": "scan in a thread",
            "orbit": "**scan in an orbit** (`call_async`)",
            "process": "control: the same scan in a plain forked process"}
    base = gil.get("none")
    rows = []
    for v in ("none", "thread", "orbit", "process"):
        b = gil.get(v)
        if b is None:
            continue
        e = b["extra_info"]
        rows.append([text[v], f"{e['throughput']:,.0f}", fmt_us(e["p50_s"]), fmt_us(e["p99_s"]),
                     fmt_us(e["p999_s"]), fmt_us(float(b["stats"]["max"])), str(e["scans"]),
                     f"{e['throughput'] / base['extra_info']['throughput']:.2f}" if base else "–",
                     f"{e['p99_s'] / base['extra_info']['p99_s']:.2f}" if base else "–"])
    out += table(["variant", "requests/s", "p50", "p99", "p99.9", "max", "scans",
                  "throughput ÷ none", "p99 ÷ none"], rows)
    out.append("")
    o, t = gil.get("orbit"), gil.get("thread")
    if o and base:
        r = o["extra_info"]["p99_s"] / base["extra_info"]["p99_s"]
        out.append(f"- Target: orbit p99 ≤ {GIL_P99_LIMIT}× main alone: {r:.2f}× → "
                   f"{verdict(r <= GIL_P99_LIMIT)}")
    if o and t:
        r = o["extra_info"]["p99_s"] / t["extra_info"]["p99_s"]
        out.append(f"- Target: orbit p99 better than the thread's: {r:.2f}× → "
                   f"{verdict(r < 1)}")
    c = gil.get("process")
    if o and c and base:
        cp = c["extra_info"]["p99_s"] / base["extra_info"]["p99_s"]
        out.append(f"- Control: the same scan in a plain process (no orbitpy) costs main "
                   f"{cp:.2f}× its p99 alone and "
                   f"{c['extra_info']['throughput'] / base['extra_info']['throughput']:.2f}× its "
                   f"throughput: the share of the orbit's cost that is the other CPU "
                   f"working, not orbitpy.  Orbit ÷ control p99: "
                   f"{o['extra_info']['p99_s'] / c['extra_info']['p99_s']:.2f}×")
    out.append("")
    return out


def report_deadlock(benches: list[dict[str, Any]]) -> list[str]:
    dl = {b["extra_info"]["variant"]: b for b in by_kind(benches, "deadlock")}
    if not dl:
        return []
    e0 = next(iter(dl.values()))["extra_info"]
    out = ["### 8. The deadlock detector (examples/deadlock_detector.py) under load", "",
           f"{e0['workers']} threads run transactions of {e0['locks_per_txn']} of "
           f"{e0['locks']} locks in random order; main serves requests and runs the "
           f"detector every {e0['detect_every_ms']:g} ms.  Detection latency: from the "
           f"cycle's completion to its victim's abort, ms.", ""]
    rows = []
    for v in ("inline", "thread", "orbit"):
        b = dl.get(v)
        if b is None:
            continue
        e = b["extra_info"]
        rows.append([v, med_range(b, fmt_ms), str(e["deadlocks"]),
                     f"{e['requests_per_s']:,.0f}", fmt_us(e["main_p50_s"]),
                     fmt_us(e["main_p99_s"]), f"{e['commits_per_s']:,.0f}"])
    out += table(["detector", "detection ms (min–max)", "deadlocks", "main requests/s",
                  "main p50 µs", "main p99 µs", "commits/s"], rows)
    out.append("")
    return out


def report_memory(benches: list[dict[str, Any]]) -> list[str]:
    mem = {b["extra_info"]["case"]: b["extra_info"] for b in by_kind(benches, "memory")}
    if not mem:
        return []
    heap = next(iter(mem.values()))["heap_mb"]
    out = [f"### 9. Memory per orbit: created at start-up or after main built a "
           f"{heap:,} MB heap", "", "MB, from /proc/PID/smaps (psutil):", ""]
    rows = []
    for case in ("startup", "after-heap"):
        e = mem.get(case)
        if e is None:
            continue
        for step, m in e["steps"].items():
            rows.append([case, step, f"{m['orbit_uss_mb']:,.1f}", f"{m['orbit_pss_mb']:,.1f}",
                         f"{m['orbit_rss_mb']:,.1f}", f"{m['main_uss_mb']:,.1f}"])
    out += table(["orbit created", "after", "orbit USS", "orbit PSS", "orbit RSS",
                  "main USS"], rows)
    out.append("")
    s = mem.get("startup")
    if s:
        uss = max(m["orbit_uss_mb"] for m in s["steps"].values())
        out.append(f"- Target: an orbit created at start-up ≤ {USS_LIMIT_MB:g} MB unique after "
                   f"main grows to {heap:,} MB: {uss:,.1f} MB → {verdict(uss <= USS_LIMIT_MB)}")
    a = mem.get("after-heap")
    if a and "heap-rewritten" in a["steps"]:
        out.append(f"- Created after the heap: the orbit shares it copy-on-write (PSS about "
                   f"half); once main rewrites it, every page is copied in main and the "
                   f"orbit is left the only owner of the old ones: USS "
                   f"{a['steps']['heap-rewritten']['orbit_uss_mb']:,.0f} MB.  Create orbits "
                   f"early, before main's heap grows.")
    out.append("")
    return out


def pct(f: float) -> str:
    return f"{f * 100:g} %"


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:,.0f}" if ms >= 100 else (f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}")


def report_objects(objs: dict[tuple[str, float], dict[str, Any]], python: str) -> list[str]:
    """Section 4: bench_arena_objects.py (how an orbit reads arena objects
    depends on the Python: CPython >= 3.12 reads them without writing)."""
    def med(b: dict[str, Any]) -> float:
        return float(b["stats"]["median"])

    out: list[str] = []
    any_b = next(iter(objs.values()))["extra_info"]
    out.append(f"### 4. Python objects in an arena: {any_b.get('records', 0):,} records, "
               f"a sync call that reads the changed ones (CPython {python})")
    out.append("")
    out.append(f"A dict of `__slots__` records in a {any_b.get('arena_mb')} MiB arena "
               f"({any_b.get('arena_used_mb')} MiB used, built in {any_b.get('build_s')} s); "
               f"main also holds a {any_b.get('ballast_mb')} MiB bytearray (resident size "
               f"{any_b.get('rss_mb')} MB).  Medians in ms; each round changes a fraction of "
               f"the records at random (outside the timing) and makes one call.")
    out.append("")
    fracs = sorted({f for (_, f) in objs})
    rows = []
    for v in ("orbit", "pool", "fork"):
        if not any((v, f) in objs for f in fracs):
            continue
        rows.append([OBJ_TEXT[v]] + [fmt_ms(med(objs[(v, f)])) if (v, f) in objs else "–"
                                     for f in fracs])
    for v in ("pool", "fork"):
        if not any((v, f) in objs for f in fracs):
            continue
        cells = []
        for f in fracs:
            o, b = objs.get(("orbit", f)), objs.get((v, f))
            cells.append(f"{med(b) / med(o):,.0f}×" if o and b else "–")
        rows.append([f"{v} ÷ orbit"] + cells)
    changed = {f: next(b["extra_info"]["changed"] for (_, g), b in objs.items() if g == f)
               for f in fracs}
    out += table(["ms, records changed →"] + [f"{pct(f)} ({changed[f]:,})" for f in fracs],
                 rows)
    out.append("")
    for v, limit in OBJ_TARGETS.items():
        o, b = objs.get(("orbit", OBJ_TARGET_FRACTION)), objs.get((v, OBJ_TARGET_FRACTION))
        if o and b:
            r = med(b) / med(o)
            out.append(f"- Target at {pct(OBJ_TARGET_FRACTION)} changed: orbit ≥ {limit:g}× "
                       f"faster than {v}: {fmt_ms(med(b))} / {fmt_ms(med(o))} ms = {r:,.1f}× → "
                       f"{verdict(r >= limit)}")
    out.append("")

    orbit = {f: objs[("orbit", f)]["extra_info"] for f in fracs if ("orbit", f) in objs}
    if not orbit:
        return out
    out.append("Where an orbit call's time goes (medians per call; \"issue\" is `call_async` "
               "returning: pre-call check + snapshot taken; from separate diagnostic rounds):")
    out.append("")
    base = orbit.get(0.0)

    def rest_s(e: dict[str, Any]) -> float:  # issue minus check: pickling + snapshot
        return float(e["issue_s"]) - float(e["diag_check_s"])

    def per_page(e: dict[str, Any], cost: float, cost0: float, pages: str) -> str:
        """µs per page above the no-change call (base)."""
        if base is None or e is base:
            return "–"
        extra = float(e[pages]) - float(base[pages])
        return f"{(cost - cost0) * 1e6 / extra:.2f}" if extra > 0 else "–"

    rows = []
    for f, e in orbit.items():
        n = int(e["changed"])
        check = per_page(e, float(e["check_s"]), float(base["check_s"]) if base else 0.0,
                         "check_pages")
        snap = per_page(e, rest_s(e), rest_s(base) if base else 0.0, "diag_pages_copied")
        rows.append([
            f"{pct(f)} ({n:,})", fmt_ms(med(objs[("orbit", f)])),
            f"{float(e['pages_copied']):,.0f}", f"{float(e['pages_reset']):,.0f}",
            f"{float(e['check_objects']):,.0f}", fmt_ms(float(e["check_s"])), check,
            fmt_ms(float(e["issue_s"])), snap, fmt_ms(float(e["orbit_compute_s"])),
            f"{float(e['orbit_compute_s']) * 1e6 / n:.1f}" if n else "–"])
    out += table(["changed", "call ms", "pages copied", "pages reset", "objects checked",
                  "check ms", "check µs / page", "issue ms",
                  "snapshot µs / page", "orbit work ms", "orbit µs / record"], rows)
    out.append("")
    out.append("(Per page: above the no-change call, ÷ the extra pages.  check: the "
               "pre-call check's own clock (`arena.stats()['checks']['ns']`) ÷ the pages it "
               "looked at; snapshot: issue − check (pickling the arguments, finding and "
               "copying the dirty pages) ÷ the pages copied (`orbit.stats()['pages_copied']`). "
               "Orbit work: the sum, timed inside the orbit.)")
    out.append("")
    e0 = next(iter(orbit.values()))
    if e0.get("first_call_s") is not None:
        out.append(f"- First call after the build: {e0['first_call_s'] * 1e3:,.0f} ms: the "
                   f"orbit is forked, the check looks at every page "
                   f"({e0['first_call_check_pages']:,} pages, "
                   f"{e0['first_call_check_objects']:,} objects, "
                   f"{e0['first_call_check_s'] * 1e3:,.0f} ms) and "
                   f"{e0['first_call_pages_copied']:,} pages are copied; later calls are "
                   f"incremental.")
    gcs = sum(int(e.get("gc_full_collections", 0)) for e in orbit.values())
    if gcs:
        out.append(f"- **{gcs} full garbage collection(s) in main during the orbit rounds**: "
                   f"each writes the header of every tracked arena object, so the next call "
                   f"re-checks and copies nearly the whole table.")
    out.append("")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", help="pytest-benchmark --benchmark-json output")
    ap.add_argument("--md", metavar="FILE", help="also write the report to FILE")
    ap.add_argument("--plots", metavar="DIR", help="write PNG plots to DIR (matplotlib)")
    args = ap.parse_args(argv)
    data = load(args.json)
    text = "\n".join(report(data))
    if args.plots:
        # plots.py beside this file (run as a script or as benchmarks.report)
        spec = importlib.util.spec_from_file_location("bench_plots",
                                                      Path(__file__).with_name("plots.py"))
        assert spec is not None and spec.loader is not None
        plots = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(plots)
        written = plots.write_plots(data, Path(args.plots))
        if written:
            text += "\n### Plots\n\n" + "\n".join(f"![{p.stem}]({p.name})" for p in written)
            text += "\n"
    print(text)
    if args.md:
        Path(args.md).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
