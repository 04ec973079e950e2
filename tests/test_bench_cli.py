"""python -m orbitpy bench: argument handling and its errors, without running
the benchmark suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orbitpy import __main__ as cli
from orbitpy import _bench_run

REPO = Path(__file__).resolve().parent.parent


def test_help_names_the_options() -> None:
    r = subprocess.run([sys.executable, "-m", "orbitpy", "bench", "--help"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    for word in ("--quick", "--out", "benchmarks/", "orbitpy[bench]"):
        assert word in r.stdout, (word, r.stdout)


def test_bad_out_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    ran = []
    monkeypatch.setattr(_bench_run, "run_pytest", lambda *a: ran.append(a) or 0)
    assert cli.main(["bench", "--quick", "--out", str(not_a_dir)]) == 2
    err = capsys.readouterr().err
    assert f"--out {not_a_dir}: exists and is not a directory" in err
    assert cli.main(["bench", "--out", str(not_a_dir / "sub")]) == 2
    assert "cannot create the directory" in capsys.readouterr().err
    assert not ran


def test_without_a_checkout_says_the_repository_is_needed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_bench_run, "__file__", str(tmp_path / "site" / "_bench_run.py"))
    assert _bench_run.bench(quick=True, out=str(tmp_path / "out"), start=tmp_path) == 2
    err = capsys.readouterr().err
    assert "needs a checkout of the orbitpy repository" in err
    assert "benchmarks/" in err


def test_finds_the_checkout_from_a_subdirectory() -> None:
    assert _bench_run.find_benchmarks(REPO / "tests") == REPO / "benchmarks"


def test_unknown_option_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "--quik"])
    assert e.value.code == 2
