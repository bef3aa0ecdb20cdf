"""Finished enrollments in one SQLite database (WAL), committed before the
receipt is shown, so a power cut after the receipt loses nothing.

Each committed save is checkpointed into the main file at once, so the main
file alone holds every committed enrollment even when the disk then fills up.
The folder is private (0700) and the files are 0600, whatever the umask.

Until sealing exists, the store refuses any packet captured by a real module:
real biometrics must never rest on disk in clear.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

from kiosk.errors import ClearTextRefused, StoreError
from kiosk.packet.build import Packet

log = logging.getLogger(__name__)

STORE_NAME = "enrollments.sqlite3"  # inside the station's data_dir
DIR_MODE = 0o700
FILE_MODE = 0o600
SIDE_FILES = ("-wal", "-shm")  # SQLite's companions of the main file in WAL mode
# A commit is written twice (the -wal, then the main file): refuse a save unless the
# disk holds the packet twice plus this, so a commit never lives in the -wal alone.
SAVE_HEADROOM_BYTES = 4 * 1024 * 1024

SCHEMA = """
CREATE TABLE IF NOT EXISTS enrollments (
    enrollment_id TEXT PRIMARY KEY,
    stored_at     TEXT NOT NULL,
    simulated     INTEGER NOT NULL,
    manifest      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS enrollment_files (
    enrollment_id TEXT NOT NULL REFERENCES enrollments (enrollment_id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    content       BLOB NOT NULL,
    PRIMARY KEY (enrollment_id, name)
);
CREATE TABLE IF NOT EXISTS counters (
    name          TEXT PRIMARY KEY,
    value         INTEGER NOT NULL
);
"""
SCHEMA_VERSION = 2  # 2: the counters table (the enrollment sequence)
# free space a citizen may start with: a packet (under 1 MB) and room for SQLite's
# journal and checkpoints, with a wide margin
ROOM_FOR_ONE_BYTES = 20 * 1024 * 1024


def full_disk_message(path: Path) -> str:
    return (
        f"{path}: the disk is full; free space on it, and carry the enrollments off "
        "with `kiosk export --to DIR` (never copy the .sqlite3 file alone)"
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
        os.fchmod(fd, FILE_MODE)  # the umask cut the creation mode; older kiosks made 0644
    finally:
        os.close(fd)


def explain(exc: sqlite3.Error, path: Path) -> str:
    """A one-line message for an SQLite error on the store at ``path``."""
    text = str(exc)
    code = getattr(exc, "sqlite_errorname", "")
    if code == "SQLITE_FULL" or "database or disk is full" in text:
        return full_disk_message(path)
    if code in ("SQLITE_NOTADB", "SQLITE_CORRUPT") or "malformed" in text:
        return f"{path}: the store file is damaged ({text}); call a technician, do not delete it"
    return f"{path}: {text}"


class EnrollmentStore:
    """SQLite store of finished enrollments, safe to call from any thread."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._closed = False
        try:
            make_private_dir(self.path.parent)
            _make_private_file(self.path)
            for suffix in SIDE_FILES:  # left by an older kiosk; new ones get the main file's mode
                side = self.path.with_name(self.path.name + suffix)
                if side.exists():
                    side.chmod(FILE_MODE)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a commit survives a power cut
            self._db.execute("PRAGMA foreign_keys=ON")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: made by a newer kiosk (schema {version}, this kiosk "
                    f"knows {SCHEMA_VERSION}); update the kiosk software"
                )
            self._db.executescript(SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._checkpoint("PASSIVE")  # a store left by a crash: fold its -wal in now
        except StoreError:  # a StoreError is an OSError: keep its own message
            self._close_quietly()
            raise
        except sqlite3.Error as exc:
            self._close_quietly()
            raise StoreError(explain(exc, self.path)) from exc
        except OSError as exc:
            self._close_quietly()
            raise StoreError(f"{self.path}: cannot open the store ({exc.strerror})") from exc

    def _close_quietly(self) -> None:
        db = getattr(self, "_db", None)  # absent when connect() itself failed
        if db is not None:
            db.close()

    def save(self, packet: Packet) -> None:
        """Commit ``packet`` whole, or raise StoreError and keep nothing of it.

        Saving an enrollment that is already stored (a retry after a commit whose
        success the caller did not learn) stores nothing new and is not an error;
        a different enrollment under a stored id is refused.
        """
        if not packet.simulated:
            raise ClearTextRefused(
                "refusing to store an enrollment from real modules unsealed; "
                "packet sealing is not built yet"
            )
        stored_at = datetime.now(UTC).isoformat()
        manifest = packet.manifest_json()
        needed = 2 * (len(manifest) + sum(map(len, packet.files.values()))) + SAVE_HEADROOM_BYTES
        with self._lock:
            try:
                free = shutil.disk_usage(self.path.parent).free
            except OSError:
                free = needed  # cannot tell: let SQLite find out
            if free < needed:
                raise StoreError(full_disk_message(self.path))
            try:
                self._db.execute("BEGIN IMMEDIATE")
                stored = self._db.execute(
                    "SELECT manifest FROM enrollments WHERE enrollment_id = ?",
                    (packet.enrollment_id,),
                ).fetchone()
                if stored is not None:
                    self._db.execute("ROLLBACK")
                    self._check_same_enrollment(packet, json.loads(stored[0]))
                    log.info(
                        "enrollment %s already stored; nothing new written", packet.enrollment_id
                    )
                    return
                self._db.execute(
                    "INSERT INTO enrollments VALUES (?, ?, ?, ?)",
                    (packet.enrollment_id, stored_at, int(packet.simulated), manifest.decode()),
                )
                self._db.executemany(
                    "INSERT INTO enrollment_files VALUES (?, ?, ?)",
                    [(packet.enrollment_id, name, data) for name, data in packet.files.items()],
                )
                self._db.execute(
                    "INSERT INTO counters VALUES ('sequence', ?) ON CONFLICT (name) "
                    "DO UPDATE SET value = max(value, excluded.value)",
                    (int(packet.manifest.get("sequence", 0)),),
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):  # SQLite undoes it on reopen
                        self._db.execute("ROLLBACK")
                raise StoreError(explain(exc, self.path)) from exc
            self._checkpoint("PASSIVE")

    def _check_same_enrollment(self, packet: Packet, stored: dict) -> None:
        """Refuse ``packet`` if the enrollment stored under its id is another one."""
        identity = ("station", "nik", "started_at", "sequence")
        if any(stored.get(key) != packet.manifest.get(key) for key in identity):
            raise StoreError(
                f"{self.path}: enrollment {packet.enrollment_id} is already stored with "
                "another citizen's data; the first is kept, call a technician"
            )

    def _checkpoint(self, mode: str) -> None:
        """Copy committed pages from the -wal into the main file (caller holds the lock).

        Never raises: what is committed is safe in the -wal; only the main file lags.
        """
        try:
            busy, frames, copied = self._db.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.Error as exc:
            log.warning("%s: the -wal could not be copied into the store (%s)", self.path, exc)
            return
        if busy or copied < frames:
            log.warning(
                "%s: %d of %d -wal pages copied into the store; the rest follow later "
                "(to copy the store use `kiosk export`)",
                self.path,
                max(copied, 0),
                frames,
            )

    def has_room(self) -> bool:
        try:
            return shutil.disk_usage(self.path.parent).free >= ROOM_FOR_ONE_BYTES
        except OSError:  # the disk is gone: no room
            return False

    def last_sequence(self) -> int:
        """The highest enrollment sequence ever committed here; 0 for a new store.

        Kept apart from the enrollments, so it survives their deletion.
        """
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name = 'sequence'").fetchone()
        return row[0] if row else 0

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM enrollments").fetchone()[0]

    def manifest(self, enrollment_id: str) -> dict | None:
        with self._lock:
            row = self._db.execute(
                "SELECT manifest FROM enrollments WHERE enrollment_id = ?", (enrollment_id,)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def files(self, enrollment_id: str) -> dict[str, bytes]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, content FROM enrollment_files WHERE enrollment_id = ?",
                (enrollment_id,),
            ).fetchall()
        return dict(rows)

    def close(self) -> None:
        """Fold the -wal into the main file, empty it and close the database.

        Closing twice does nothing more.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._checkpoint("TRUNCATE")
            self._db.close()
