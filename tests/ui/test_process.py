"""`kiosk run` as a process: it starts, refuses to close its window, and stops
cleanly on SIGTERM (how systemd stops it) and SIGINT (Ctrl+C)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.ui


def start_kiosk(tmp_path, stderr, **environment: str) -> subprocess.Popen:
    """`kiosk run --simulate` in its own process, with its home in ``tmp_path``."""
    env = dict(os.environ, HOME=str(tmp_path), KIVY_HOME=str(tmp_path / "kivy"), **environment)
    env.pop("KIVY_NO_CONSOLELOG", None)
    if not env.get("DISPLAY"):
        env["SDL_VIDEODRIVER"] = "offscreen"
    return subprocess.Popen(
        [sys.executable, "-m", "kiosk.cli", "run", "--simulate"],
        env=env,
        stderr=stderr,
        text=True,
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_kiosk_run_stops_cleanly_on_a_signal(tmp_path, signum):
    process = start_kiosk(tmp_path, subprocess.PIPE)
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


def test_kiosk_run_tells_systemd_it_is_ready_and_pings_the_watchdog_from_the_ui(tmp_path):
    """The sd_notify datagrams a Type=notify unit with WatchdogSec= waits for, on a
    real socket: READY=1 once the first screen is up, WATCHDOG=1 from the UI's loop
    (every third of WATCHDOG_USEC), STOPPING=1 on SIGTERM."""
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(address)
        listener.settimeout(60)
        process = start_kiosk(
            tmp_path, subprocess.DEVNULL, NOTIFY_SOCKET=address, WATCHDOG_USEC="1500000"
        )
        try:
            messages = [listener.recv(256).decode()]
            assert messages == ["READY=1"]
            listener.settimeout(2.0)  # the UI pings every 0.5 s
            started = time.monotonic()
            while messages.count("WATCHDOG=1") < 4:
                messages.append(listener.recv(256).decode())
            assert time.monotonic() - started < 5
            process.send_signal(signal.SIGTERM)
            while messages[-1] != "STOPPING=1":
                messages.append(listener.recv(256).decode())
            assert process.wait(timeout=20) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert set(messages) == {"READY=1", "WATCHDOG=1", "STOPPING=1"}


def test_on_the_stations_display_only_the_touchscreen_is_read():
    """SDL on KMS/DRM also turns each touch into a mouse event: with Kivy's mouse
    provider beside mtdev (the image's one provider) every tap would count twice."""
    from kivy.config import Config

    from kiosk.app import configure_input

    saved = Config.get("input", "mouse")
    try:
        configure_input({"SDL_VIDEODRIVER": "kmsdrm"})
        assert not Config.has_option("input", "mouse")
        configure_input({})  # a PC or the test display: the mouse is the input
        assert Config.get("input", "mouse") == "mouse,disable_multitouch"
    finally:
        Config.set("input", "mouse", saved)
