"""bootstrap.sh refuses a 32-bit system in one line, before installing anything."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

BOOTSTRAP = Path(__file__).resolve().parent.parent / "bootstrap.sh"


def _run(tmp_path: Path, architecture: str, *args: str) -> subprocess.CompletedProcess:
    """bootstrap.sh with a dpkg that reports ``architecture`` and an apt-get that
    records being called."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "dpkg").write_text(f'#!/bin/sh\necho "{architecture}"\n')
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\ntouch "{tmp_path}/apt-get-ran"\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    return subprocess.run(
        ["bash", str(BOOTSTRAP), *args], capture_output=True, text=True, env=env, timeout=60
    )


@pytest.mark.parametrize("architecture", ["armhf", "armel", "i386"])
def test_a_32_bit_system_is_refused_in_one_line_before_anything_is_installed(
    tmp_path, architecture
):
    result = _run(tmp_path, architecture, "run")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "needs a 64-bit system" in result.stderr
    assert "Raspberry Pi OS (64-bit)" in result.stderr
    assert not (tmp_path / "apt-get-ran").exists()


@pytest.mark.parametrize("architecture", ["arm64", "amd64"])
def test_a_64_bit_system_goes_on(tmp_path, architecture):
    result = _run(tmp_path, architecture, "no-such-command")
    assert result.returncode == 2 and "usage:" in result.stderr  # past the check
