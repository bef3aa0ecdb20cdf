"""The station's durable queue: sealed packet files, indexed in SQLite.

Each finished enrollment is sealed in memory (kiosk.packet.seal) and written as
one file under ``packets/``; the clear packet never touches the disk. The index
(``index.sqlite3``, WAL, synchronous=FULL) holds only what sync needs: the
enrollment id, the file's SHA-256 and size, its state and when; never the NIK,
the manifest or a picture.

A save is: BEGIN; insert the index row; write a hidden temp file, fsync it,
rename it into place, fsync the folder; COMMIT. So a committed row always has
its whole file on disk, even after a power cut, and a crash before COMMIT
leaves at most a file no row names: an uncommitted save, whose receipt was
never shown. Opening the store checks every file the index names (size and
hash); a damaged or missing one, and any unnamed one, is moved to
``quarantine/`` and reported, never silently dropped.

States: sealed (direkam) -> sent (terkirim) -> acknowledged (diterima) by the hub,
or rejected (ditolak) with its reason; acknowledged packets are purged (the file
deleted, the row kept) after a configured number of days, and never before the
hub acknowledged them. The folder is private (0700) and the files 0600.

Several processes may open one data folder (the kiosk saves, `kiosk sync` sends).

The enrollment counter (``counters``, :meth:`EnrollmentStore.last_sequence`) never
goes back. A re-flashed station starts with an empty store, so ``kiosk provision``
writes a floor into its marker (``provisioned.json``, ``"sequence_floor"``: the
hub's highest sequence for the station plus a margin); opening the store raises the
counter to it, so the new card never makes an id the hub accepted from the old one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import statistics
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from kiosk.errors import StoreError
from kiosk.packet.build import Packet
from kiosk.packet.seal import PacketRejected, Sealer, inspect
from kiosk.store.durable import FILE_MODE, TEMP_PREFIX, fsync_dir, write_durably

log = logging.getLogger(__name__)

INDEX_NAME = "index.sqlite3"  # inside the station's data_dir
PACKETS_DIR = "packets"
QUARANTINE_DIR = "quarantine"
PACKET_SUFFIX = ".rekam"
DIR_MODE = 0o700
SIDE_FILES = ("-wal", "-shm")  # SQLite's companions of the main file in WAL mode
# Refuse a save unless the disk holds the packet plus this: room for the index's
# -wal and a checkpoint, so a commit never fails half-way for want of a page.
SAVE_HEADROOM_BYTES = 4 * 1024 * 1024
# Free space a citizen may start with: a sealed packet (~150 KB) and the headroom,
# with a wide margin.
ROOM_FOR_ONE_BYTES = 20 * 1024 * 1024
# written by `kiosk provision` (kiosk/provision/station.py) in the data folder
PROVISIONED_MARKER = "provisioned.json"
SEQUENCE_FLOOR = "sequence_floor"  # its key: the counter is never below this

SCHEMA = """
CREATE TABLE IF NOT EXISTS packets (
    enrollment_id TEXT PRIMARY KEY,
    station_id    TEXT NOT NULL,
    sequence      INTEGER NOT NULL,
    identity      TEXT NOT NULL,  -- Sealer.identity(): a keyed hash, tells a retry
    sha256        TEXT NOT NULL,  -- of the sealed file
    size          INTEGER NOT NULL,
    simulated     INTEGER NOT NULL,
    seconds       REAL,           -- the citizen's time at the kiosk, for the day's figures
    state         TEXT NOT NULL,
    reason        TEXT,           -- why the hub rejected it, or why it was quarantined
    sealed_at     TEXT NOT NULL,
    changed_at    TEXT NOT NULL   -- when the state last changed
);
CREATE INDEX IF NOT EXISTS packets_by_state ON packets (state, sealed_at);
CREATE TABLE IF NOT EXISTS counters (
    name          TEXT PRIMARY KEY,
    value         INTEGER NOT NULL
);
"""
SCHEMA_VERSION = 3  # 3: sealed packet files and their index (no clear data at all)


class PacketState(StrEnum):
    SEALED = "sealed"
    SENT = "sent"
    ACKNOWLEDGED = "acknowledged"
    REJECTED = "rejected"
    QUARANTINED = "quarantined"
    PURGED = "purged"


# The words the operator sees for each state (docs/sync-protocol.md).
OPERATOR_WORDS: dict[PacketState, str] = {
    PacketState.SEALED: "direkam",
    PacketState.SENT: "terkirim",
    PacketState.ACKNOWLEDGED: "diterima",
    PacketState.REJECTED: "ditolak",
    PacketState.QUARANTINED: "dikarantina",
    PacketState.PURGED: "dihapus",
}
WAITING = (PacketState.SEALED, PacketState.SENT)
ON_DISK = (*WAITING, PacketState.ACKNOWLEDGED, PacketState.REJECTED)


@dataclass(frozen=True)
class StoredPacket:
    enrollment_id: str
    station_id: str
    sha256: str
    size: int
    state: PacketState
    sealed_at: str
    reason: str | None
    path: Path


def full_disk_message(path: Path) -> str:
    return (
        f"{path}: the disk is full; free space on it, and carry the packets off "
        "with `kiosk export --to DIR`"
    )


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and its missing parents) with the data folder made 0700.

    An existing folder is left as it is: the technician may have set it up.
    """
    if path.is_dir():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=DIR_MODE)
    except FileExistsError:
        if not path.is_dir():
            raise
        return  # made by someone else meanwhile: theirs
    path.chmod(DIR_MODE)  # mkdir's mode is cut by the umask


def _make_private_file(path: Path) -> None:
    """Create ``path`` 0600 if missing, and make it 0600 if it exists."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # the umask cut the creation mode
    finally:
        os.close(fd)


def explain(exc: sqlite3.Error | OSError, path: Path) -> str:
    """A one-line message for an error on the store at ``path``."""
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return full_disk_message(path)
        return f"{path}: {exc.strerror or exc}"
    text = str(exc)
    code = getattr(exc, "sqlite_errorname", "")
    if code == "SQLITE_FULL" or "database or disk is full" in text:
        return full_disk_message(path)
    if code in ("SQLITE_NOTADB", "SQLITE_CORRUPT") or "malformed" in text:
        return f"{path}: the index is damaged ({text}); call a technician, do not delete it"
    return f"{path}: {text}"


def _now() -> str:
    return datetime.now(UTC).isoformat()


class EnrollmentStore:
    """Sealed packets of finished enrollments; safe to call from any thread.

    ``sealer`` is needed to save; `kiosk sync` and `kiosk export` open the store
    without one. ``problems`` lists what opening found and quarantined.
    """

    def __init__(self, data_dir: Path | str, sealer: Sealer | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / INDEX_NAME
        self.packets_dir = self.data_dir / PACKETS_DIR
        self.quarantine_dir = self.data_dir / QUARANTINE_DIR
        self.sealer = sealer
        self.problems: list[str] = []
        self._lock = threading.Lock()
        self._closed = False
        try:
            for folder in (self.data_dir, self.packets_dir, self.quarantine_dir):
                if folder.exists() and not folder.is_dir():  # else mkdir says "File exists"
                    raise StoreError(
                        f"{folder}: not a folder; set station.data_dir to a folder, "
                        "or move that file away"
                    )
                make_private_dir(folder)
            _make_private_file(self.path)
            self._db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=30
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a commit survives a power cut
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: made by a newer kiosk (schema {version}, this kiosk "
                    f"knows {SCHEMA_VERSION}); update the kiosk software"
                )
            self._db.executescript(SCHEMA)
            if version < SCHEMA_VERSION:  # a write: never on every open, the disk may be full
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            for suffix in SIDE_FILES:
                side = self.path.with_name(self.path.name + suffix)
                if side.exists():
                    side.chmod(FILE_MODE)
            floor = _sequence_floor(self.data_dir / PROVISIONED_MARKER)
            with self._lock:
                self._check_files(floor)
        except StoreError:  # a StoreError is an OSError: keep its own message
            self._close_quietly()
            raise
        except (sqlite3.Error, OSError) as exc:
            self._close_quietly()
            raise StoreError(explain(exc, self.path)) from exc

    def _close_quietly(self) -> None:
        db = getattr(self, "_db", None)  # absent when connect() itself failed
        if db is not None:
            db.close()

    # -- opening: every file checked --------------------------------------------------

    def _check_files(self, floor: int | None = None) -> None:
        """Quarantine what the index and the folder disagree on (caller holds the lock),
        and raise the enrollment counter to ``floor`` (the provisioning marker's).

        Runs under SQLite's write lock, which a save holds from before its file
        is written until its commit: no other process is half-way through a save.
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if floor is not None:
                self._raise_counter(floor)
            rows = self._db.execute(
                "SELECT enrollment_id, sha256, size FROM packets WHERE state IN (?, ?, ?, ?)",
                ON_DISK,
            ).fetchall()
            purged = {
                self._packet_path(row[0]).name
                for row in self._db.execute(
                    "SELECT enrollment_id FROM packets WHERE state = ?", (PacketState.PURGED,)
                )
            }
            named = set()
            for enrollment_id, sha256, size in rows:
                path = self._packet_path(enrollment_id)
                named.add(path.name)
                problem = _damage(path, sha256, size)
                if problem:
                    self._quarantine(enrollment_id, path, problem)
            for path in self.packets_dir.iterdir():
                if path.name in named:
                    continue
                if path.name.startswith(TEMP_PREFIX):  # a save cut short before its rename
                    log.info("%s: removing a packet whose writing was cut short", path)
                    path.unlink()
                    continue
                if path.name in purged:  # a purge cut short between its row and the unlink
                    log.info("%s: removing a purged packet's file", path)
                    path.unlink()
                    continue
                self._move_aside(path, "no index entry names it (a save cut short by a crash)")
            self._db.execute("COMMIT")
        finally:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")

    def _raise_counter(self, floor: int) -> None:
        """The counter becomes max(counter, floor), in the caller's write transaction;
        logged when it moves (once: from then on it is at the floor or above)."""
        row = self._db.execute("SELECT value FROM counters WHERE name = 'sequence'").fetchone()
        counter = row[0] if row else 0
        if floor <= counter:
            return
        self._db.execute(
            "INSERT INTO counters VALUES ('sequence', ?) ON CONFLICT (name) "
            "DO UPDATE SET value = max(value, excluded.value)",
            (floor,),
        )
        log.warning(
            "enrollment counter raised from %d to %d (%s of %s): this station's next "
            "enrollment is numbered %d",
            counter,
            floor,
            SEQUENCE_FLOOR,
            self.data_dir / PROVISIONED_MARKER,
            floor + 1,
        )

    def _quarantine(self, enrollment_id: str, path: Path, problem: str) -> None:
        self._move_aside(path, problem)
        self._db.execute(
            "UPDATE packets SET state = ?, reason = ?, changed_at = ? WHERE enrollment_id = ?",
            (PacketState.QUARANTINED, problem, _now(), enrollment_id),
        )

    def _move_aside(self, path: Path, problem: str) -> None:
        message = f"{path.name}: {problem}; moved to {self.quarantine_dir}"
        log.error("%s", message)
        self.problems.append(message)
        if path.exists():
            target = self.quarantine_dir / path.name
            n = 1
            while target.exists():
                n += 1
                target = self.quarantine_dir / f"{path.name}.{n}"
            os.replace(path, target)
            fsync_dir(self.packets_dir)

    def _packet_path(self, enrollment_id: str) -> Path:
        return self.packets_dir / f"{enrollment_id}{PACKET_SUFFIX}"

    # -- saving ---------------------------------------------------------------------

    def save(self, packet: Packet) -> None:
        """Seal ``packet`` and keep it durably, or raise StoreError and keep nothing.

        Saving an enrollment that is already stored (a retry after a commit whose
        success the caller did not learn) stores nothing new and is not an error;
        a different enrollment under a stored id is refused.
        """
        if self.sealer is None:
            raise StoreError(f"{self.path}: opened without the station's keys; cannot save")
        sealed = self.sealer.seal(packet)
        identity = self.sealer.identity(packet)
        path = self._packet_path(packet.enrollment_id)
        with self._lock:
            if self._free_bytes() < len(sealed) + SAVE_HEADROOM_BYTES:
                raise StoreError(full_disk_message(self.data_dir))
            try:
                self._db.execute("BEGIN IMMEDIATE")
                stored = self._db.execute(
                    "SELECT identity FROM packets WHERE enrollment_id = ?",
                    (packet.enrollment_id,),
                ).fetchone()
                if stored is not None:
                    self._db.execute("ROLLBACK")
                    if stored[0] != identity:
                        raise StoreError(
                            f"{self.path}: enrollment {packet.enrollment_id} is already stored "
                            "with another citizen's data; the first is kept, call a technician"
                        )
                    log.info("enrollment %s already stored; nothing new", packet.enrollment_id)
                    return
                now = _now()
                self._db.execute(
                    "INSERT INTO packets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
                    (
                        packet.enrollment_id,
                        self.sealer.station_id,
                        int(packet.manifest.get("sequence", 0)),
                        identity,
                        hashlib.sha256(sealed).hexdigest(),
                        len(sealed),
                        int(packet.simulated),
                        _citizen_seconds(packet.manifest),
                        PacketState.SEALED,
                        now,
                        now,
                    ),
                )
                self._db.execute(
                    "INSERT INTO counters VALUES ('sequence', ?) ON CONFLICT (name) "
                    "DO UPDATE SET value = max(value, excluded.value)",
                    (int(packet.manifest.get("sequence", 0)),),
                )
                write_durably(path, sealed)  # before COMMIT: a committed row has its file
                self._db.execute("COMMIT")
            except (sqlite3.Error, OSError) as exc:
                if isinstance(exc, StoreError):
                    raise
                with contextlib.suppress(sqlite3.Error):  # else SQLite undoes it on reopen
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    # A COMMIT that failed on a full disk may have rolled back by itself:
                    # the file is removed whenever no committed row names it.
                    if not self._is_stored(packet.enrollment_id):
                        with contextlib.suppress(OSError):
                            path.unlink()
                raise StoreError(explain(exc, self.data_dir)) from exc

    def _is_stored(self, enrollment_id: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM packets WHERE enrollment_id = ?", (enrollment_id,)
        ).fetchone()
        return row is not None

    def _free_bytes(self) -> int:
        try:
            return shutil.disk_usage(self.data_dir).free
        except OSError:  # the disk is gone: no room
            return 0

    def has_room(self) -> bool:
        return self._free_bytes() >= ROOM_FOR_ONE_BYTES

    def last_sequence(self) -> int:
        """The highest enrollment sequence ever committed here; 0 for a new store.

        Kept apart from the packets, so it survives their purge.
        """
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name = 'sequence'").fetchone()
        return row[0] if row else 0

    # -- reading, for sync and export -------------------------------------------------

    def _select(self, where: str, params: tuple) -> list[StoredPacket]:
        with self._lock:
            rows = self._db.execute(
                "SELECT enrollment_id, station_id, sha256, size, state, sealed_at, reason "
                f"FROM packets WHERE {where} ORDER BY sealed_at, sequence",
                params,
            ).fetchall()
        return [
            StoredPacket(*row[:4], PacketState(row[4]), *row[5:], self._packet_path(row[0]))
            for row in rows
        ]

    def packet(self, enrollment_id: str) -> StoredPacket | None:
        found = self._select("enrollment_id = ?", (enrollment_id,))
        return found[0] if found else None

    def waiting(self) -> list[StoredPacket]:
        """Packets the hub has not yet decided on, oldest first."""
        return self._select("state IN (?, ?)", WAITING)

    def on_disk(self) -> list[StoredPacket]:
        """Every packet whose file is here (for `kiosk export --all`), oldest first."""
        return self._select("state IN (?, ?, ?, ?)", ON_DISK)

    def read_sealed(self, enrollment_id: str) -> bytes:
        """The sealed bytes, checked against the index; a damaged file is quarantined
        and StoreError raised."""
        stored = self.packet(enrollment_id)
        if stored is None or stored.state not in ON_DISK:
            raise StoreError(f"{enrollment_id}: no such packet on this kiosk")
        try:
            data = stored.path.read_bytes()
        except OSError as exc:
            data, problem = b"", f"cannot be read ({exc.strerror})"
        else:
            problem = _mismatch(data, stored.sha256, stored.size)
        if problem:
            with self._lock:
                self._quarantine(enrollment_id, stored.path, problem)
            raise StoreError(f"{stored.path}: {problem}; moved to {self.quarantine_dir}")
        return data

    def count(self) -> int:
        """Enrollments ever committed here and not quarantined."""
        with self._lock:
            return self._db.execute(
                "SELECT count(*) FROM packets WHERE state != ?", (PacketState.QUARANTINED,)
            ).fetchone()[0]

    def backlog(self) -> dict[PacketState, int]:
        with self._lock:
            return _backlog(self._db)

    def today(self, now: datetime | None = None) -> dict:
        """The day's figures (local day): enrolled, and median seconds per citizen."""
        now = (now or datetime.now(UTC)).astimezone()
        start = now.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)
        with self._lock:
            rows = self._db.execute(
                "SELECT seconds FROM packets WHERE sealed_at >= ? AND state != ?",
                (start.isoformat(), PacketState.QUARANTINED),
            ).fetchall()
        seconds = [row[0] for row in rows if row[0] is not None]
        return {
            "enrolled": len(rows),
            "median_seconds_per_citizen": statistics.median(seconds) if seconds else None,
        }

    def station_id(self) -> str | None:
        """The station that sealed the newest packet here."""
        with self._lock:
            row = self._db.execute(
                "SELECT station_id FROM packets ORDER BY sealed_at DESC LIMIT 1"
            ).fetchone()
        return row[0] if row else None

    # -- what the hub said ------------------------------------------------------------

    def _set_state(self, enrollment_id: str, state: PacketState, reason: str | None, *old) -> None:
        with self._lock:
            try:
                self._db.execute(
                    "UPDATE packets SET state = ?, reason = ?, changed_at = ? "
                    f"WHERE enrollment_id = ? AND state IN ({', '.join('?' * len(old))})",
                    (state, reason, _now(), enrollment_id, *old),
                )
            except sqlite3.Error as exc:
                raise StoreError(explain(exc, self.path)) from exc

    def mark_sent(self, enrollment_id: str) -> None:
        self._set_state(enrollment_id, PacketState.SENT, None, PacketState.SEALED)

    def record_verdict(self, enrollment_id: str, accepted: bool, reason: str | None = None) -> None:
        """The hub's verdict: ACKNOWLEDGED, or REJECTED with its reason (kept here)."""
        state = PacketState.ACKNOWLEDGED if accepted else PacketState.REJECTED
        self._set_state(enrollment_id, state, None if accepted else reason, *WAITING)

    def purge(self, older_than_days: float, now: datetime | None = None) -> int:
        """Delete the files of packets the hub acknowledged more than ``older_than_days``
        ago; the rows stay (no biometrics in them). Returns how many were purged."""
        cutoff = (now or datetime.now(UTC)) - timedelta(days=older_than_days)
        with self._lock:
            rows = self._db.execute(
                "SELECT enrollment_id FROM packets WHERE state = ? AND changed_at < ?",
                (PacketState.ACKNOWLEDGED, cutoff.isoformat()),
            ).fetchall()
            for (enrollment_id,) in rows:
                # The row first: a crash before the unlink leaves a file that opening
                # deletes, where a file gone under an ACKNOWLEDGED row would read as damage.
                self._db.execute(
                    "UPDATE packets SET state = ?, changed_at = ? WHERE enrollment_id = ?",
                    (PacketState.PURGED, _now(), enrollment_id),
                )
                with contextlib.suppress(FileNotFoundError):
                    self._packet_path(enrollment_id).unlink()
            if rows:
                fsync_dir(self.packets_dir)
        return len(rows)

    def close(self) -> None:
        """Fold the -wal into the index and close it. Closing twice does nothing more."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(sqlite3.Error):  # committed data is safe in the -wal
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()


def _sequence_floor(marker: Path) -> int | None:
    """The marker's ``sequence_floor``; None when there is no marker or no floor in it.
    A marker that cannot be read, or a floor that is not a whole number from 0 up, is
    logged and ignored: the store still opens, its counter as it was."""
    try:
        data = json.loads(marker.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.error("%s: cannot be read (%s); no %s taken from it", marker, exc, SEQUENCE_FLOOR)
        return None
    if not isinstance(data, dict):
        log.error("%s: not a JSON object; no %s taken from it", marker, SEQUENCE_FLOOR)
        return None
    floor = data.get(SEQUENCE_FLOOR)
    if floor is None:
        return None
    if not isinstance(floor, int) or isinstance(floor, bool) or not 0 <= floor <= 2**53:
        log.error("%s: %s %r is not a whole number; ignored", marker, SEQUENCE_FLOOR, floor)
        return None
    return floor


def _citizen_seconds(manifest: dict) -> float | None:
    steps = manifest.get("step_seconds") or {}
    return round(sum(steps.values()), 3) if steps else None


def _mismatch(data: bytes, sha256: str, size: int) -> str | None:
    if len(data) != size:
        return f"{len(data)} bytes where {size} were written (truncated or damaged)"
    if hashlib.sha256(data).hexdigest() != sha256:
        return "its content changed since it was written (damaged)"
    return None


def _damage(path: Path, sha256: str, size: int) -> str | None:
    """What is wrong with the packet file at ``path``, or None when it is whole."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    problem = _mismatch(data, sha256, size)
    if problem is None:
        with contextlib.suppress(PacketRejected):  # the envelope's own check, cheap
            inspect(data)
            return None
        return "not a sealed packet"
    return problem


def read_backlog(data_dir: Path) -> dict[PacketState, int]:
    """How many packets are in each state, read without changing anything (for
    `kiosk doctor` beside a running kiosk). StoreError when there is no store."""
    path = Path(data_dir) / INDEX_NAME
    if not path.is_file():
        raise StoreError(f"{path}: no store yet (nothing recorded on this station)")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return _backlog(db)
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise StoreError(explain(exc, path)) from exc


def _backlog(db: sqlite3.Connection) -> dict[PacketState, int]:
    """How many packets are in each state, every state named (0 when none)."""
    counts = dict(db.execute("SELECT state, count(*) FROM packets GROUP BY state"))
    return {state: counts.get(state, 0) for state in PacketState}
