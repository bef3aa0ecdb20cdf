"""The station's module inventory: every unit ever seen in it, in ``<data_dir>/modules.json``.

One entry per unit (told apart by ``ModuleInfo.identity``: kind, driver,
model, serial), with when it was first and last seen, how many captures it
made and how many calls failed, its last error and status, and whether it is
the unit ``installed`` in the station now. The running kiosk also writes each
kind's current status and ``updated_at``, so ``kiosk doctor`` can tell a
running kiosk's view from an old file.

The file is replaced whole and crash-safely (a private temp file, fsync,
``os.replace``, fsync of the folder): a power cut leaves the old file or the
new one, never half of one. A damaged file is set aside (``modules.json.damaged-
<time>``) with one log line and the inventory starts afresh: the kiosk never
stops for its inventory. Saving never raises either; a failure is logged once.

File format (``schema`` 1)::

    {"schema": 1, "station_id": "SIM-01", "updated_at": "2026-...+00:00",
     "running": true, "pid": 4242,
     "status": {"fingerprint": {"status": "up", "detail": "...", "since": "..."}, ...},
     "units": [{"kind": "fingerprint", "driver": "zhiantec", "model": "R307",
                "serial": "...", "serial_source": "notepad", "firmware": "...",
                "simulated": false, "first_seen": "...", "last_seen": "...",
                "captures": 120, "failures": 2, "last_error": "...",
                "status": "up", "installed": true}, ...]}

Every method may be called from any thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kiosk.drivers.base import ModuleInfo
from kiosk.store.sqlite import FILE_MODE, make_private_dir

log = logging.getLogger(__name__)

INVENTORY_NAME = "modules.json"  # inside the station's data_dir
SCHEMA = 1
_TEMP_SUFFIX = ".tmp"

Identity = tuple[str, str, str, str]  # ModuleInfo.identity: kind, driver, model, serial


def iso_time(seconds: float) -> str:
    """A wall-clock time as the inventory and the audit log write it (UTC, ms)."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def parse_time(text: str) -> float:
    """The inverse of :func:`iso_time`; ValueError for anything else."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"a time without a zone: {text!r}")
    return moment.timestamp()


@dataclass
class UnitRecord:
    """One unit the station has seen."""

    kind: str
    driver: str
    model: str
    serial: str
    first_seen: str
    last_seen: str
    serial_source: str = ""
    firmware: str = ""
    simulated: bool = False
    captures: int = 0  # successful device calls of the flow (not the supervisor's checks)
    failures: int = 0  # failed device calls and failed self-tests
    last_error: str = ""
    status: str = ""  # "up", "down", "selftest_failed", "removed" (swapped out)
    installed: bool = False  # the unit of its kind in the station now

    @property
    def identity(self) -> Identity:
        return (self.kind, self.driver, self.model, self.serial)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> UnitRecord:
        """A record from the file; ValueError if it is not one."""
        if not isinstance(data, dict):
            raise ValueError(f"a unit is an object, got {type(data).__name__}")
        fields = {field.name: field for field in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for name, value in data.items():
            if name not in fields:
                continue  # written by a newer kiosk: dropped, not fatal
            expected = {"bool": bool, "int": int}.get(str(fields[name].type), str)
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise ValueError(f"unit field {name!r}: expected {expected.__name__}")
            values[name] = value
        missing = [
            name
            for name, field in fields.items()
            if field.default is dataclasses.MISSING and name not in values
        ]
        if missing:
            raise ValueError(f"a unit without {', '.join(missing)}")
        return cls(**values)

    @classmethod
    def from_info(cls, info: ModuleInfo, now: str) -> UnitRecord:
        return cls(
            kind=str(info.kind),
            driver=info.driver,
            model=info.model,
            serial=info.serial,
            first_seen=now,
            last_seen=now,
            serial_source=info.serial_source,
            firmware=info.firmware,
            simulated=info.simulated,
        )


@dataclass(frozen=True)
class InventorySnapshot:
    """What an inventory file holds, as read (by ``kiosk doctor``)."""

    station_id: str
    updated_at: float | None  # wall clock; None if never saved by a kiosk
    running: bool  # False once the kiosk that wrote it stopped cleanly
    pid: int | None
    status: dict[str, dict[str, str]]  # kind -> {"status", "detail", "since"}
    units: list[UnitRecord]


def parse_inventory(text: str) -> InventorySnapshot:
    """The content of an inventory file; ValueError saying what is wrong if it is not one."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    schema = data.get("schema")
    if schema != SCHEMA:
        raise ValueError(f"schema {schema!r}, this kiosk reads schema {SCHEMA}")
    units = data.get("units", [])
    if not isinstance(units, list):
        raise ValueError("'units' is not a list")
    status = data.get("status", {})
    if not isinstance(status, dict) or not all(
        isinstance(entry, dict) and all(isinstance(value, str) for value in entry.values())
        for entry in status.values()
    ):
        raise ValueError("'status' is not an object of kinds")
    updated_at = data.get("updated_at")
    pid = data.get("pid")
    return InventorySnapshot(
        station_id=str(data.get("station_id", "")),
        updated_at=parse_time(updated_at) if isinstance(updated_at, str) else None,
        running=data.get("running") is True,
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        status={str(kind): dict(entry) for kind, entry in status.items()},
        units=[UnitRecord.from_dict(unit) for unit in units],
    )


def read_inventory(path: Path) -> InventorySnapshot | None:
    """The inventory file at ``path`` without changing it; None if there is none.

    Raises ValueError (damaged) or OSError (unreadable) with the reason.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte {exc.start})") from None
    return parse_inventory(text)


def write_private_file(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` crash-safely: a 0600 temp file beside it,
    fsync, os.replace, fsync of the folder (made 0700 if missing). Raises OSError."""
    make_private_dir(path.parent)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), FILE_MODE)  # mkstemp's 0600 already; said here for sure
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)  # the rename itself survives a power cut
    finally:
        os.close(folder)


class ModuleInventory:
    """Every unit the station has seen, kept in ``path`` (``<data_dir>/modules.json``).

    Loading never fails: a missing file is an empty inventory, a damaged or
    unreadable one is set aside and logged. Changes are kept in memory until
    :meth:`save` (or :meth:`save_if_due`); saving never raises.
    """

    def __init__(
        self, path: Path, *, station_id: str = "", clock: Callable[[], float] = time.time
    ) -> None:
        self.path = Path(path)
        self.station_id = station_id
        self._clock = clock
        self._lock = threading.RLock()
        self._units: dict[Identity, UnitRecord] = {}
        self._status: dict[str, dict[str, str]] = {}
        self._saved_at: float | None = None  # monotonic
        self._save_error = ""  # the last save failure logged, so a full disk logs once
        self._load()

    # -- reading -----------------------------------------------------------------

    def units(self) -> list[UnitRecord]:
        """Copies of every unit's record, in the order they were first seen."""
        with self._lock:
            return [dataclasses.replace(unit) for unit in self._units.values()]

    def unit(self, identity: Identity) -> UnitRecord | None:
        with self._lock:
            unit = self._units.get(tuple(identity))
            return dataclasses.replace(unit) if unit else None

    def installed(self, kind: str) -> UnitRecord | None:
        """The unit of ``kind`` in the station now, as last recorded."""
        with self._lock:
            for unit in self._units.values():
                if unit.kind == str(kind) and unit.installed:
                    return dataclasses.replace(unit)
        return None

    def kind_status(self) -> dict[str, dict[str, str]]:
        with self._lock:
            return {kind: dict(entry) for kind, entry in self._status.items()}

    # -- changing ------------------------------------------------------------------

    def seen(
        self, info: ModuleInfo, *, status: str | None = None, installed: bool = False
    ) -> UnitRecord:
        """Record that the unit ``info`` describes was seen now (added if new).

        ``installed`` makes it the installed unit of its kind: any other unit of
        that kind stops being installed and is marked "removed". Returns a copy.
        """
        now = iso_time(self._clock())
        with self._lock:
            unit = self._units.get(info.identity)
            if unit is None:
                unit = self._units[info.identity] = UnitRecord.from_info(info, now)
            unit.last_seen = now
            unit.firmware = info.firmware or unit.firmware
            unit.serial_source = info.serial_source or unit.serial_source
            unit.simulated = info.simulated
            if status is not None:
                unit.status = status
            if installed:
                for other in self._units.values():
                    if other.kind == unit.kind and other is not unit and other.installed:
                        other.installed = False
                        other.status = "removed"
                unit.installed = True
            return dataclasses.replace(unit)

    def count(
        self,
        identity: Identity,
        *,
        captures: int = 0,
        failures: int = 0,
        last_error: str = "",
        status: str | None = None,
    ) -> None:
        """Add to a known unit's counts; unknown units are ignored."""
        with self._lock:
            unit = self._units.get(tuple(identity))
            if unit is None:
                return
            unit.captures += max(0, captures)
            unit.failures += max(0, failures)
            if last_error:
                unit.last_error = last_error
            if status is not None:
                unit.status = status
            if captures or failures:
                unit.last_seen = iso_time(self._clock())

    def set_kind_status(self, kind: str, status: str, detail: str) -> None:
        """The running kiosk's status of the module of ``kind`` (not of a unit)."""
        with self._lock:
            entry = self._status.get(str(kind))
            if entry and entry.get("status") == status and entry.get("detail") == detail:
                return
            self._status[str(kind)] = {
                "status": status,
                "detail": detail,
                "since": iso_time(self._clock()),
            }

    # -- saving --------------------------------------------------------------------

    def as_dict(self, *, running: bool = True) -> dict[str, Any]:
        with self._lock:
            return {
                "schema": SCHEMA,
                "station_id": self.station_id,
                "updated_at": iso_time(self._clock()),
                "running": running,
                "pid": os.getpid(),
                "status": self.kind_status(),
                "units": [unit.as_dict() for unit in self._units.values()],
            }

    def save(self, *, running: bool = True) -> bool:
        """Write the file now; ``running=False`` when the kiosk stops. False if it
        could not be written (logged once per distinct failure), never raises."""
        with self._lock:
            text = json.dumps(self.as_dict(running=running), indent=1) + "\n"
            try:
                write_private_file(self.path, text)
            except OSError as exc:
                message = f"{self.path}: the module inventory could not be saved ({exc})"
                if message != self._save_error:
                    log.error("%s", message)
                    self._save_error = message
                return False
            if self._save_error:
                log.warning("%s: the module inventory is saved again", self.path)
                self._save_error = ""
            self._saved_at = time.monotonic()
            return True

    def save_if_due(self, interval_s: float) -> bool:
        """Save if the last save is ``interval_s`` or more ago: the running kiosk's
        heartbeat (``updated_at``). True if it saved."""
        with self._lock:
            if self._saved_at is not None and time.monotonic() - self._saved_at < interval_s:
                return False
            return self.save()

    # -- loading -------------------------------------------------------------------

    def _load(self) -> None:
        self._remove_stale_temp_files()
        try:
            snapshot = read_inventory(self.path)
        except (OSError, ValueError) as exc:
            self._set_aside(exc)
            return
        if snapshot is None:
            return
        for unit in snapshot.units:
            self._units[unit.identity] = unit
        # Statuses belong to the kiosk that wrote them: this one starts without.
        self.station_id = self.station_id or snapshot.station_id

    def _set_aside(self, problem: Exception) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        number = 1
        while target.exists():
            number += 1
            target = self.path.with_name(f"{self.path.name}.damaged-{stamp}-{number}")
        try:
            os.replace(self.path, target)
        except OSError as exc:
            log.error(
                "%s: the module inventory is damaged (%s) and could not be set aside (%s); "
                "starting a fresh inventory",
                self.path,
                problem,
                exc.strerror or exc,
            )
            return
        log.error(
            "%s: the module inventory is damaged (%s); set aside as %s, starting a fresh "
            "inventory (the units seen so far are listed again as they are found)",
            self.path,
            problem,
            target.name,
        )

    def _remove_stale_temp_files(self) -> None:
        """Temp files of a save a power cut interrupted: never the inventory itself."""
        with contextlib.suppress(OSError):
            for stale in self.path.parent.glob(f".{self.path.name}.*{_TEMP_SUFFIX}"):
                with contextlib.suppress(OSError):
                    stale.unlink()
