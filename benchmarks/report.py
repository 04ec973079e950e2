"""Summarise a pytest-benchmark JSON of benchmarks/ as markdown: the medians
and the ratios the README quotes, with each target's verdict.

    python benchmarks/report.py bench.json
"""

from __future__ import annotations

import argparse
import json
import sys
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
    args = ap.parse_args(argv)
    print("\n".join(report(load(args.json))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
