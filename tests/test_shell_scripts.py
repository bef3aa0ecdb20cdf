"""Every shell script in the repository passes shellcheck with no finding at all."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def shell_scripts() -> list[Path]:
    """Files tracked by git that start with a shell's #! line."""
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    scripts = []
    for name in tracked:
        path = ROOT / name
        if path.is_file():
            with path.open("rb") as file:
                first = file.readline()
            if first.startswith(b"#!") and first.rstrip().endswith((b"sh", b"bash")):
                scripts.append(path)
    return scripts


def test_the_scripts_are_found():
    names = {path.relative_to(ROOT).as_posix() for path in shell_scripts()}
    assert {"bootstrap.sh", ".ci/run"} <= names


def test_shellcheck_finds_nothing():
    result = subprocess.run(
        ["shellcheck", "--severity=style", *map(str, shell_scripts())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (result.returncode, result.stdout) == (0, "")


def test_shellcheck_would_report_a_finding(tmp_path):
    script = tmp_path / "careless.sh"
    script.write_text("#!/bin/sh\nrm -rf $1/data\n")  # an unquoted variable (SC2086)
    result = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
    assert result.returncode != 0 and "SC2086" in result.stdout
