"""`kiosk run` as a process: it starts, refuses to close its window, and stops
cleanly on SIGTERM (how systemd stops it) and SIGINT (Ctrl+C)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.ui


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_kiosk_run_stops_cleanly_on_a_signal(tmp_path, signum):
    env = dict(os.environ, HOME=str(tmp_path), KIVY_HOME=str(tmp_path / "kivy"))
    env.pop("KIVY_NO_CONSOLELOG", None)
    if not env.get("DISPLAY"):
        env["SDL_VIDEODRIVER"] = "offscreen"
    process = subprocess.Popen(
        [sys.executable, "-m", "kiosk.cli", "run", "--simulate"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        started = time.monotonic()
        for line in process.stderr:
            if "Start application main loop" in line:
                break
            assert time.monotonic() - started < 60, "the window did not start"
        assert process.poll() is None, "the kiosk exited on its own"
        time.sleep(1.0)
        process.send_signal(signum)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # the simulation station keeps its store and keys under the user's data folder
    data = tmp_path / ".local/share/rekam-kiosk/simulation"
    assert (data / "index.sqlite3").exists() and (data / "keys" / "station.key").exists()
