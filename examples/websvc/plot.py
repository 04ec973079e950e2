"""Plot an overhead run of bench.py (its --json file): requests/s and p99
latency of the thread and orbit versions, per server and metrics load,
medians with the runs' range as error bars.

    python plot.py results/overhead-2026-12-06.json results/overhead.png

Needs matplotlib (``pip install matplotlib``; it is in orbitpy's ``bench``
extra).
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", help="bench.py --json output")
    ap.add_argument("png", help="where the plot goes")
    a = ap.parse_args()
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("plot.py needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(a.json) as f:
        runs: dict[str, list[dict[str, Any]]] = json.load(f)
    cells = sorted({tuple(k.split("|")[:2]) for k in runs},
                   key=lambda c: (c[0] != "uvicorn", int(c[1])))
    modes = ["thread", "orbit"]
    labels = [f"{server}\nmetrics load {int(load):,}" for server, load in cells]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, title in ((axes[0], "rps", "requests/s (higher is better)"),
                           (axes[1], "p99_ms", "p99 latency, ms (lower is better)")):
        width = 0.38
        for i, mode in enumerate(modes):
            meds, lo, hi = [], [], []
            for server, load in cells:
                vals = [r[key] for r in runs.get(f"{server}|{load}|{mode}", [])]
                m = statistics.median(vals) if vals else 0.0
                meds.append(m)
                lo.append(m - min(vals) if vals else 0.0)
                hi.append(max(vals) - m if vals else 0.0)
            xs = [j + (i - 0.5) * width for j in range(len(cells))]
            ax.bar(xs, meds, width, yerr=[lo, hi], capsize=3,
                   label=f"tasks in {'an orbit' if mode == 'orbit' else 'a thread'}",
                   color="#4c72b0" if mode == "orbit" else "#dd8452")
        ax.set_xticks(range(len(cells)), labels, fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    n = max(len(v) for v in runs.values())
    fig.suptitle(f"websvc under wrk -t2 -c50 -d30s: medians of {n} runs, bars span min-max",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(a.png, dpi=110)
    print(f"wrote {a.png}")


if __name__ == "__main__":
    main()
