"""The README's example and the demo do what the README says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_example_runs() -> None:
    text = README.read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code, "README has no python example"
    script = code.group(1) + (
        "\nassert isinstance(total, int) and isinstance(hot, list)\n"
        "hot_keys.orbit.close()\nprint('README example ok')\n")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "README example ok" in r.stdout


def test_demo_survives_injected_crash() -> None:
    r = subprocess.run([sys.executable, "-m", "orbitpy", "demo", "--rounds", "4",
                        "--crash-round", "2"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert re.search(r"round 2: orbit 'cache-expiry' \(pid \d+\) was killed by signal 11 "
                     r"\(SIGSEGV\)", out), out
    assert re.search(r"round 3: .*restarts 1\)", out), out
    assert "demo done" in out


def test_readme_documents_every_public_name() -> None:
    import orbitpy

    text = README.read_text()
    missing = [n for n in orbitpy.__all__
               if n not in text and n not in {"OrbitHandle", "OrbitFunction"}]
    assert not missing, f"public names missing from the README: {missing}"
