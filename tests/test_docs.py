"""The README's code blocks and the demo do what the README says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"

# A block preceded by this HTML comment is a fragment, not run (say why in
# the comment: <!-- readme-test: skip (why) -->).  Keep them rare.
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\b[^>]*-->\s*$")


def readme_python_blocks() -> list[tuple[int, str]]:
    """(line number, code) of every ```python block the test must run."""
    text = README.read_text()
    blocks = []
    for m in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M):
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        if not SKIP.search(before):
            blocks.append((text.count("\n", 0, m.start()) + 1, m.group(1)))
    return blocks


def test_readme_has_python_blocks() -> None:
    assert len(readme_python_blocks()) >= 2


@pytest.mark.parametrize("line,code", readme_python_blocks(),
                         ids=lambda v: f"line{v}" if isinstance(v, int) else "")
def test_readme_block_runs_verbatim(line: int, code: str, tmp_path: Path) -> None:
    """Each block runs as printed, alone, in a fresh interpreter."""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path)
    assert r.returncode == 0, f"README.md line {line}:\n{code}\n{r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr


def test_demo_survives_injected_crash() -> None:
    r = subprocess.run([sys.executable, "-m", "orbitpy", "demo", "--rounds", "4",
                        "--crash-round", "2"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    first_round = out.index("round 1:")
    assert re.search(r"crash.*on purpose.*round 2", out[:first_round], re.S), out
    assert re.search(r"round 2: orbit 'cache-expiry' \(pid \d+\) was killed by signal 11 "
                     r"\(SIGSEGV\)", out), out
    # Counters are labelled as stats() names them.
    assert re.search(r"round 3: .*\bpages_copied=\d+.*\bcalls=\d+.*\brestarts=1\b", out), out
    assert "demo done" in out


def test_readme_documents_every_public_name() -> None:
    import orbitpy

    text = README.read_text()
    missing = [n for n in orbitpy.__all__
               if n not in text and n not in {"OrbitHandle", "OrbitFunction"}]
    assert not missing, f"public names missing from the README: {missing}"


def test_readme_security_notes_say_results_are_unpickled_in_main() -> None:
    text = README.read_text()
    m = re.search(r"^## Security notes\n(.*?)^## ", text, re.S | re.M)
    assert m, "README has no '## Security notes' section (outside Limits)"
    notes = m.group(1)
    assert "unpickled in main" in notes and "__reduce__" in notes, notes
