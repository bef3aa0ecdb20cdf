"""Telling systemd the kiosk is up and alive: sd_notify(3)'s datagram protocol.

Under ``Type=notify`` systemd passes a socket in ``$NOTIFY_SOCKET``; the service
sends ``READY=1`` once it serves, and with ``WatchdogSec=`` a ``WATCHDOG=1`` at
least every ``$WATCHDOG_USEC`` microseconds, or it is killed and restarted. The
protocol is one datagram per message, as systemd's own documentation describes
for services that do not link libsystemd. Outside systemd every call is a no-op::

    notify("READY=1")
    interval = watchdog_interval()   # seconds, or None when no watchdog is asked for
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(message: str) -> bool:
    """Send ``message`` (e.g. "READY=1", "WATCHDOG=1", "STATUS=...") to systemd; False
    when not started by systemd. A failure to send is logged, never raised: the
    kiosk must not stop because its supervisor's socket went away."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("cannot tell systemd %r: %s", message, exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds within which systemd wants a ``WATCHDOG=1``, or None when it wants none
    (no ``$WATCHDOG_USEC``, or the watchdog is meant for another process)."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    try:
        if not usec or (pid and int(pid) != os.getpid()):
            return None
        seconds = int(usec) / 1_000_000
    except ValueError:
        log.warning("ignoring a malformed WATCHDOG_USEC/WATCHDOG_PID: %r/%r", usec, pid)
        return None
    return seconds if seconds > 0 else None
