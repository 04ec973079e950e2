"""examples/kvserver: DEBUG POPULATE, INFO latest_fork_usec, and the BGSAVE
stall experiment (examples/kvserver/bgsave_stall.py) on a tiny dataset.

The experiment's numbers are not checked here (they depend on the machine);
that it runs, and that every dump it takes verifies, is.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

KVSERVER = Path(__file__).resolve().parent.parent / "examples" / "kvserver"
sys.path.insert(0, str(KVSERVER))
from kvserver.dumpfile import read_dump  # noqa: E402

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(params=["inline", "orbit"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[redis.Redis, Path]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kvserver", "--port", "0", "--dir", str(tmp_path),
         "--tasks", request.param], cwd=KVSERVER, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"ready on [\d.]+:(\d+)", line)
    assert m, line
    r = redis.Redis(port=int(m.group(1)), socket_timeout=60, protocol=2)
    try:
        yield r, tmp_path
    finally:
        r.close()
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
        proc.stdout.close()


def test_debug_populate_and_the_bgsave_stall_in_info(
        server: tuple[redis.Redis, Path]) -> None:
    r, directory = server
    r.set("key:3", "mine")
    # As Redis: prefix:N for N < count, value "value:N" padded with zero
    # bytes to the size given; keys that exist are left alone.
    assert r.execute_command("DEBUG", "POPULATE", 1000, "key", 16) == b"OK"
    assert r.dbsize() == 1000
    assert r.get("key:7") == b"value:7" + b"\0" * 9
    assert r.get("key:3") == b"mine"
    assert r.execute_command("DEBUG", "POPULATE", 10, "p") == b"OK"  # no size: unpadded
    assert r.get("p:9") == b"value:9"
    with pytest.raises(redis.ResponseError):
        r.execute_command("DEBUG", "POPULATE", "x")
    info = r.info()
    assert info["used_memory_rss"] > info["used_memory"] > 1000 * 16
    assert r.bgsave()
    deadline = time.monotonic() + 120
    while (p := r.info("persistence"))["rdb_bgsave_in_progress"] or p["rdb_saves"] < 1:
        assert time.monotonic() < deadline, "the BGSAVE did not end"
        time.sleep(0.05)
    assert p["rdb_last_bgsave_status"] == "ok"
    stats = r.info("stats")
    # main's time in fork(), or in the orbit call (its check and the pages
    # its snapshot copied: the whole dataset, for the orbit's first call)
    assert stats["latest_fork_usec"] > 0
    if r.info("server")["kvserver_tasks"] == "orbit":
        assert stats["latest_bgsave_pages_copied"] > 0
        assert 0 < stats["latest_bgsave_check_usec"] <= stats["latest_fork_usec"]
    else:
        assert stats["latest_bgsave_pages_copied"] == stats["latest_bgsave_check_usec"] == 0
    data, _ = read_dump(str(directory / "dump.kvs"))
    assert len(data) == 1010 and data[b"key:999"] == b"value:999" + b"\0" * 7


@pytest.mark.timeout(400)
def test_bgsave_stall_experiment_runs_and_its_dumps_verify(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, str(KVSERVER / "bgsave_stall.py"), "--size", "4M", "--saves", "2",
         "--gap", "0.3", "--settle", "0.5", "--write-rate", "200", "--value-size", "200",
         "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=380)
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    out = r.stdout
    assert "| dumps verified | 1/1 | 1/1 | 1/1 | 1/1 | |" in out, out + r.stderr
    assert re.search(r"^\| main's stall starting BGSAVE .*x \|$", out, re.M), out
    assert "`inline`:" in out and "`orbit`:" in out, out
