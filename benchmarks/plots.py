"""PNG plots of a pytest-benchmark JSON of benchmarks/ (matplotlib, the bench
extra); report.py --plots DIR calls write_plots.

heap.png      Table 1: median latency per call against main's heap size,
              log-log, one line per way of running the task.
snapshot.png  call_async (snapshot taken) against dirty pages and against the
              arena's size, per snapshot mode, log-log.
gil_cdf.png   GIL relief: CDF of main's request latency per variant (needs the
              raw samples: pytest --benchmark-save-data).
memory.png    orbit USS and PSS per case and step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

US = 1e6


def _kind(data: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [b for b in data.get("benchmarks", [])
            if b.get("extra_info", {}).get("kind") == kind]


def _med(b: dict[str, Any]) -> float:
    return float(b["stats"]["median"])


def write_plots(data: dict[str, Any], out: Path) -> list[Path]:
    """Write the plots the data allows; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        path = out / name
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    t1 = _kind(data, "table1")
    if t1:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for v in dict.fromkeys(b["extra_info"]["variant"] for b in t1):
            pts = sorted((int(b["extra_info"]["heap_mb"]), _med(b) * US)
                         for b in t1 if b["extra_info"]["variant"] == v)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=v)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("main's heap, MB (4 KiB pages)")
        ax.set_ylabel("median latency per call, µs")
        ax.set_title("One small task per call against heap size")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        save(fig, "heap.png")

    snap = _kind(data, "snapshot")
    if snap:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.2))
        for mode in dict.fromkeys(b["extra_info"]["mode"] for b in snap):
            for ax, sweep, key in ((a1, "dirty", "k"), (a2, "size", "arena_mb")):
                pts = sorted((int(b["extra_info"][key]), _med(b) * US) for b in snap
                             if b["extra_info"]["mode"] == mode
                             and b["extra_info"]["sweep"] == sweep)
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=mode)
        a1.set_xlabel("dirty pages per call")
        a2.set_xlabel("arena size, MiB (half resident, fixed dirty set)")
        a1.set_xscale("log")
        a2.set_xscale("log", base=2)  # few sizes: label them, not the minor ticks
        for ax in (a1, a2):
            ax.set_yscale("log")
            ax.set_ylabel("call_async returning, median µs")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle("Snapshot cost per mode")
        save(fig, "snapshot.png")

    gil = [b for b in _kind(data, "gil") if b["stats"].get("data")]
    if gil:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for b in gil:
            xs = sorted(float(x) * US for x in b["stats"]["data"])
            n = len(xs)
            ax.plot(xs, [(i + 1) / n for i in range(n)], label=b["extra_info"]["variant"])
        ax.set_xscale("log")
        ax.set_xlabel("main's request latency, µs")
        ax.set_ylabel("fraction of requests")
        ax.set_title("GIL relief: maintenance scan every 100 ms")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        save(fig, "gil_cdf.png")

    mem = _kind(data, "memory")
    if mem:
        labels, uss, pss = [], [], []
        for b in mem:
            e = b["extra_info"]
            for step, m in e["steps"].items():
                labels.append(f"{e['case']}\n{step}")
                uss.append(m["orbit_uss_mb"])
                pss.append(m["orbit_pss_mb"])
        fig, ax = plt.subplots(figsize=(8, 4.5))
        xs = range(len(labels))
        ax.bar([x - 0.2 for x in xs], uss, width=0.4, label="USS")
        ax.bar([x + 0.2 for x in xs], pss, width=0.4, label="PSS")
        ax.set_xticks(list(xs))
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_ylabel("orbit process, MB")
        ax.set_title("Memory per orbit")
        ax.legend()
        save(fig, "memory.png")
    return written
