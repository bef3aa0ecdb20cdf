"""sd_notify's protocol: datagrams on $NOTIFY_SOCKET, the watchdog's interval, and
nothing at all outside systemd."""

from __future__ import annotations

import os
import socket

from kiosk.notify import notify, watchdog_interval


def test_messages_arrive_as_one_datagram_each_on_a_path_or_abstract_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify")
    abstract = f"@rekam-test-{os.getpid()}"
    for address, bound in ((path, path), (abstract, "\0" + abstract[1:])):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
            listener.bind(bound)
            listener.settimeout(2)
            monkeypatch.setenv("NOTIFY_SOCKET", address)
            assert notify("READY=1") and notify("STATUS=siap")
            assert [listener.recv(64), listener.recv(64)] == [b"READY=1", b"STATUS=siap"]


def test_outside_systemd_or_with_its_socket_gone_nothing_is_raised(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert notify("WATCHDOG=1") is False
    assert "cannot tell systemd 'WATCHDOG=1'" in caplog.text


def test_the_watchdog_interval_is_for_this_process_only(monkeypatch, caplog):
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert watchdog_interval() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # meant for a parent
    assert watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_PID", "not a pid")
    assert watchdog_interval() is None
    assert "malformed" in caplog.text
    monkeypatch.delenv("WATCHDOG_PID")
    monkeypatch.setenv("WATCHDOG_USEC", "0")
    assert watchdog_interval() is None
