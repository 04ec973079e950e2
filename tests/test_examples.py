"""The examples in examples/ run and do what they say."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_deadlock_detector_finds_and_resolves_its_deadlocks() -> None:
    r = subprocess.run([sys.executable, str(EXAMPLES / "deadlock_detector.py")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    out = r.stdout
    last = out.strip().splitlines()[-1]
    assert last.startswith("RESULT "), out
    res = json.loads(last[len("RESULT "):])
    assert res["ok"] is True, out
    # The two deadlocks the workload builds, each found once ...
    assert res["deadlocks"] == [["T1", "T2"], ["T3", "T4", "T5"]], out
    # ... and broken by aborting one transaction of each cycle; T6, blocked
    # behind T1 but in no cycle, is never a victim.
    victims = res["victims"]
    assert len(victims) == 2, out
    assert sorted(v in ("T1", "T2") for v in victims) == [False, True], out
    assert all(v in ("T1", "T2", "T3", "T4", "T5") for v in victims), out
    assert "T6" not in victims
    # Resolved: every transaction committed (the victims after a retry) and
    # the lock table and wait-for graph are empty at the end.
    assert res["committed"] == ["T1", "T2", "T3", "T4", "T5", "T6"], out
    assert sorted(res["retries"]) == sorted(victims), out
    assert res["locks_left"] == 0 and res["waiting_left"] == 0, out
    # What it printed about them.
    assert re.search(r"deadlock T1 -> T2 -> T1: T1 waits for B \(held by T2\); "
                     r"T2 waits for A \(held by T1\)", out), out
    assert re.search(r"deadlock T3 -> T4 -> T5 -> T3: ", out), out
    assert len(re.findall(r"^    aborted T\d \(the youngest in the cycle\), released ", out,
                          re.M)) == 2, out
    assert "2 deadlock(s) found and resolved" in out
