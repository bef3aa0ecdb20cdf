"""The station's audit log of its modules: ``<data_dir>/audit.log``, append-only.

One JSON object per line, written with a single ``write()`` on a file opened
``O_APPEND`` and fsync'd before :meth:`AuditLog.record` returns, so a line is
on the card once recorded. The file is 0600. A power cut can tear only the last
line; :func:`read_audit` skips a torn or damaged line with a warning, and the
next record starts on a fresh line::

    {"time": "2026-11-28T09:14:03.120+00:00", "event": "swapped", "kind": "fingerprint",
     "old": {"kind": "fingerprint", "driver": "zhiantec", "model": "R307", "serial": "A1",
             "serial_source": "notepad", "firmware": "..."},
     "new": {... the unit now in the station ...}, "detail": "..."}

Events (:class:`AuditEvent`): ``installed`` (the first unit of a kind),
``up`` (the known unit came up as the kiosk started), ``reconnected`` (the same
unit back after being down), ``swapped`` (another unit in its place),
``down`` and ``selftest_failed``.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiosk.drivers.base import ModuleInfo
from kiosk.health.inventory import UnitRecord, iso_time
from kiosk.store.sqlite import FILE_MODE, make_private_dir

log = logging.getLogger(__name__)

AUDIT_NAME = "audit.log"  # inside the station's data_dir


class AuditEvent(enum.StrEnum):
    INSTALLED = "installed"
    UP = "up"
    RECONNECTED = "reconnected"
    SWAPPED = "swapped"
    DOWN = "down"
    SELFTEST_FAILED = "selftest_failed"
    TAMPER = "tamper"  # the kiosk's case was opened


@dataclass(frozen=True)
class AuditEntry:
    time: str
    event: str
    kind: str
    old: dict[str, Any] | None = None
    new: dict[str, Any] | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # the fields, in order: one line of the log


def unit_identity(unit: ModuleInfo | UnitRecord | None) -> dict[str, Any] | None:
    """What the audit log keeps of a unit: enough to find it in the inventory."""
    if unit is None:
        return None
    return {
        "kind": str(unit.kind),
        "driver": unit.driver,
        "model": unit.model,
        "serial": unit.serial,
        "serial_source": unit.serial_source,
        "firmware": unit.firmware,
    }


class AuditLog:
    """Appends events to ``path``; :meth:`record` may be called from any thread and
    never raises (a failed write is logged)."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()

    def record(
        self,
        event: AuditEvent | str,
        kind: str,
        *,
        old: ModuleInfo | UnitRecord | None = None,
        new: ModuleInfo | UnitRecord | None = None,
        detail: str = "",
    ) -> AuditEntry:
        """Append one line and fsync it; returns the entry written (or not, if the
        disk refused it: that is logged)."""
        entry = AuditEntry(
            time=iso_time(self._clock()),
            event=str(AuditEvent(event)),
            kind=str(kind),
            old=unit_identity(old),
            new=unit_identity(new),
            detail=detail,
        )
        line = json.dumps(entry.as_dict()) + "\n"  # json escapes newlines: one line
        with self._lock:
            try:
                self._append(line.encode("utf-8"))
            except OSError as exc:
                log.error("%s: audit event %s %s not written (%s)", self.path, kind, event, exc)
        return entry

    def _append(self, data: bytes) -> None:
        make_private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, FILE_MODE)
        try:
            info = os.fstat(fd)
            if info.st_mode & 0o777 != FILE_MODE:
                os.fchmod(fd, FILE_MODE)
            # A line torn by a power cut has no newline: start this one on its own line.
            if info.st_size and os.pread(fd, 1, info.st_size - 1) != b"\n":
                data = b"\n" + data
            written = os.write(fd, data)  # one write: lines never interleave
            if written != len(data):
                raise OSError(f"only {written} of {len(data)} bytes written (disk full?)")
            os.fsync(fd)
        finally:
            os.close(fd)


def read_audit(path: Path) -> list[AuditEntry]:
    """Every entry of the audit log at ``path``, oldest first ([] if there is none).

    A torn last line (a power cut mid-write) or a damaged line is skipped with a
    warning in the log.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    entries = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            entries.append(_entry(json.loads(raw)))
        except (ValueError, TypeError) as exc:
            torn = number == len(lines)  # no newline after it: the write did not finish
            what = "torn last line (a power cut mid-write?)" if torn else "damaged line"
            log.warning("%s: %s %d skipped (%s)", path, what, number, exc)
    return entries


def _entry(data: object) -> AuditEntry:
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    text = {name: data.get(name) for name in ("time", "event", "kind")}
    if not all(isinstance(value, str) for value in text.values()):
        raise ValueError("time, event and kind must be text")
    old, new = data.get("old"), data.get("new")
    if not all(value is None or isinstance(value, dict) for value in (old, new)):
        raise ValueError("old and new must be objects or null")
    detail = data.get("detail", "")
    return AuditEntry(
        time=text["time"],
        event=text["event"],
        kind=text["kind"],
        old=old,
        new=new,
        detail=detail if isinstance(detail, str) else str(detail),
    )
