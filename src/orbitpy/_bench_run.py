"""python -m orbitpy bench: run the benchmark suite and write its report.

The benchmarks live in the repository's ``benchmarks/`` folder (pytest-benchmark
files, not part of the installed package), so the command needs a checkout of
the repository: it looks for ``benchmarks/`` in the current directory and its
parents, then next to the package's source (an editable install).

One pytest run (``python -m pytest benchmarks --benchmark-json=...``) in a
subprocess; this process shows a progress bar (tqdm) fed by the benchmarks'
conftest through a pipe (ORBITPY_BENCH_PROGRESS_FD), then runs
``benchmarks/report.py`` on the JSON, which writes the Markdown report and
the PNG plots next to it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import select
import subprocess
import sys
import time
from pathlib import Path

from orbitpy.errors import EXIT_OK, EXIT_USAGE

# What the bench extra brings (pip install 'orbitpy[bench]'), by import name.
NEEDS = {"pytest": "pytest", "pytest_benchmark": "pytest-benchmark", "tqdm": "tqdm",
         "matplotlib": "matplotlib", "psutil": "psutil"}
# Expected wall time on the 2-core VM the README's numbers come from, idle.
EXPECTED_S = {"quick": 90, "full": 7 * 60}


class UsageError(Exception):
    """A problem with the command line or the environment, said plainly."""


def find_benchmarks(start: Path | None = None) -> Path:
    """The repository's benchmarks/ folder: in `start` (default: the current
    directory) or a parent of it, else next to the package's source."""
    here = (start or Path.cwd()).resolve()
    candidates = [p / "benchmarks" for p in (here, *here.parents)]
    candidates += [p / "benchmarks" for p in Path(__file__).resolve().parents]
    for c in candidates:
        if (c / "conftest.py").is_file() and (c / "report.py").is_file():
            return c
    raise UsageError(
        "python -m orbitpy bench needs a checkout of the orbitpy repository: the "
        "benchmarks/ folder is not part of the installed package and none was found in "
        f"{here} or its parents.  Run it from the repository, e.g. `git clone ... && cd "
        "orbitpy && pip install '.[bench]' && python -m orbitpy bench --quick`.")


def check_out_dir(out: Path) -> Path:
    """Create `out` if needed; a clear error if it cannot be a writable folder."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {out}: cannot create the directory: {e.strerror}") from e
    if not os.access(out, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: the directory is not writable")
    return out.resolve()


def check_dependencies() -> None:
    import importlib.util

    missing = [pkg for mod, pkg in NEEDS.items() if importlib.util.find_spec(mod) is None]
    if missing:
        raise UsageError(f"missing: {', '.join(missing)}; install the bench extra: "
                         "pip install 'orbitpy[bench]' (from the repository: "
                         "pip install -e '.[bench]')")


def fmt_s(s: float) -> str:
    return f"{s / 60:.0f} min" if s >= 120 else f"{s:.0f} s"


def run_pytest(bench: Path, out: Path, quick: bool, extra: list[str]) -> int:
    """The suite in one pytest run; a tqdm bar from the conftest's progress
    lines ("total N", "start NODEID", "done NODEID")."""
    from tqdm import tqdm

    rfd, wfd = os.pipe()
    os.set_blocking(rfd, False)
    env = dict(os.environ, ORBITPY_BENCH_PROGRESS_FD=str(wfd),
               ORBITPY_BENCH_QUICK="1" if quick else "0")
    cmd = [sys.executable, "-m", "pytest", str(bench), "--benchmark-only",
           f"--benchmark-json={out / 'bench.json'}", "--benchmark-save-data",
           "-p", "no:cacheprovider", "-q", "-o", "timeout=1800", *extra]
    log_path = out / "pytest.log"
    bar = tqdm(total=None, unit="bench", dynamic_ncols=True, file=sys.stderr,
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}] "
                          "{postfix}")
    buf = b""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=bench.parent, env=env, stdout=log,
                                stderr=subprocess.STDOUT, pass_fds=(wfd,))
        os.close(wfd)
        try:
            while True:
                done = proc.poll() is not None
                ready, _, _ = select.select([rfd], [], [], 0 if done else 0.5)
                chunk = b""
                if ready:
                    try:
                        chunk = os.read(rfd, 65536)
                    except BlockingIOError:
                        chunk = b""
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    kind, _, arg = raw.decode(errors="replace").partition(" ")
                    if kind == "total":
                        bar.total = int(arg)
                        bar.refresh()
                    elif kind == "start":
                        bar.set_postfix_str(arg.rsplit("/", 1)[-1][:60], refresh=True)
                    elif kind == "done":
                        bar.update(1)
                # Orbits forked by the run hold the pipe's write end too, so
                # the end of the run is the process's exit, not EOF.
                if done and not chunk:
                    break
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait(30)
            raise
        finally:
            bar.close()
            os.close(rfd)
    return proc.returncode if proc.returncode is not None else 1


def bench(quick: bool = False, out: str | None = None, pytest_args: list[str] | None = None,
          start: Path | None = None) -> int:
    try:
        bench_dir = find_benchmarks(start)
        out_dir = check_out_dir(Path(out) if out else bench_dir / "results"
                                / datetime.date.today().isoformat())
        check_dependencies()
    except UsageError as e:
        print(f"python -m orbitpy bench: {e}", file=sys.stderr)
        return EXIT_USAGE
    mode = "quick" if quick else "full"
    print(f"orbitpy benchmark suite, {mode} mode: expected about {fmt_s(EXPECTED_S[mode])} "
          f"on an idle 2-core machine (more on a busy one); benchmarks from {bench_dir}, "
          f"results to {out_dir}")
    if not quick:
        print("the full mode builds heaps of up to 8 GB (it needs ~11 GB free memory); "
              "use --quick for a 3-minute run")
    t0 = time.monotonic()
    rc = run_pytest(bench_dir, out_dir, quick, pytest_args or [])
    wall = time.monotonic() - t0
    json_path = out_dir / "bench.json"
    if not json_path.is_file():
        print(f"the benchmark run failed (exit {rc}) before writing results; see "
              f"{out_dir / 'pytest.log'}", file=sys.stderr)
        return rc or 1
    r = subprocess.run([sys.executable, str(bench_dir / "report.py"), str(json_path),
                        "--md", str(out_dir / "report.md"), "--plots", str(out_dir)],
                       cwd=bench_dir.parent, check=False)
    print(f"done in {wall:.0f} s: {json_path}, {out_dir / 'report.md'} and plots "
          f"{out_dir}/*.png; pytest's output in {out_dir / 'pytest.log'}")
    if rc:
        print(f"pytest exited with {rc}: see {out_dir / 'pytest.log'}", file=sys.stderr)
        return rc
    return r.returncode or EXIT_OK


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    b = sub.add_parser(
        "bench", help="run the benchmark suite (needs the repository's benchmarks/ and the "
                      "bench extra) and write JSON, a Markdown report and PNG plots",
        description="Run the benchmark suite in one pytest-benchmark run and write to DIR "
                    "bench.json, report.md and PNG plots.  Needs a checkout of the "
                    "repository (benchmarks/ is not in the wheel) and "
                    "pip install 'orbitpy[bench]'.")
    b.add_argument("--quick", action="store_true",
                   help=f"fewer sizes and rounds: about {fmt_s(EXPECTED_S['quick'])} on 2 cores "
                        f"(the full run: about {fmt_s(EXPECTED_S['full'])})")
    b.add_argument("--out", metavar="DIR",
                   help="where to write the results (default: benchmarks/results/<date>/)")
    b.add_argument("pytest_args", nargs="*", metavar="PYTEST_ARG",
                   help="passed on to pytest after --, e.g. -- -k heap")
