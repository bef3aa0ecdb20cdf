"""The benchmarks still run: each quick one, with the smallest arguments, as a
process. They print figures and assert nothing about time (benchmarks/README.md);
this only keeps them from rotting when the code they call changes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.mark.parametrize(
    ("script", "args", "prints"),
    [
        ("quality_checks.py", ["--runs", "2"], "KiB sealed"),
        ("face_quality.py", ["--runs", "2"], "verdicts and guidance right"),
        ("fingerprint_quality.py", ["--seeds", "1", "--runs", "2"], "median per-image quality"),
        (
            "fingerprint_matching.py",
            ["--fingers", "10", "--impressions", "2", "--runs", "2"],
            "false non-match",
        ),
        ("simulate_enrollments.py", ["--citizens", "2", "--rounds", "1"], "median per citizen"),
        ("config_fuzz.py", ["20"], ""),
        ("zhiantec_fuzz.py", ["30"], "worst overrun"),
        ("crash_safety.py", ["--enrollments", "5"], "kills (SIGKILL)"),
        ("sync_throughput.py", ["--packets", "3", "--hub", "embedded"], "packets/s"),
    ],
)
def test_a_benchmark_runs_and_prints_its_figures(script, args, prints, tmp_path):
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert prints in result.stdout
