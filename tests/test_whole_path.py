"""The README's whole path on one laptop, run exactly as written there:
simulate -> kiosk-hub serve -> kiosk sync -> the dashboard."""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"
BLOCK = re.compile(r"<!-- whole-path[^>]*-->\s*```sh\n(.*?)```\s*<!-- /whole-path -->", re.DOTALL)
README_PORT = "8443"


def readme_commands() -> list[str]:
    [block] = BLOCK.findall(README.read_text())
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def wait_for_port(port: str, hub: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert hub.poll() is None, log.read_text()
        try:
            socket.create_connection(("127.0.0.1", int(port)), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"the hub did not listen on {port} within {timeout} s")


def test_the_readme_path_records_sends_and_shows_five_citizens(tmp_path):
    commands = readme_commands()
    assert [shlex.split(c)[0] for c in commands] == [
        ".venv/bin/kiosk",
        ".venv/bin/kiosk-hub",
        ".venv/bin/kiosk",
        ".venv/bin/kiosk-hub",
    ]
    port = free_port()  # the README's 8443 may be taken on this machine
    bin_dir = str(Path(sys.executable).parent)
    hub = None
    outputs = []
    try:
        for command in commands:
            words = [
                word.replace(".venv/bin", bin_dir).replace(README_PORT, port)
                for word in shlex.split(command.removesuffix("&"))
            ]
            if command.endswith("&"):
                log = tmp_path / "hub.log"  # a file: a full pipe would stall the hub
                with log.open("wb") as out:
                    hub = subprocess.Popen(words, cwd=tmp_path, stdout=out, stderr=out)
                wait_for_port(port, hub, log)
                continue
            result = subprocess.run(
                words, cwd=tmp_path, capture_output=True, text=True, timeout=120
            )
            assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
            outputs.append(result.stdout)
    finally:
        if hub is not None:
            hub.terminate()
            hub.wait(timeout=20)
    simulated, synced, dashboard = outputs
    assert "completed 5 of 5 enrollments" in simulated
    assert "5 diterima" in synced and "0 still waiting" in synced
    assert "SIMULATION" in dashboard
    assert "SIM-01" in dashboard and "5 packets accepted" in dashboard
    # nothing left to send, and the kiosk knows the hub accepted every packet
    again = subprocess.run(
        [f"{bin_dir}/kiosk", "export", "--to", str(tmp_path), "--data-dir", "sim"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert again.stdout.startswith("exported 0 sealed packets"), again.stderr
