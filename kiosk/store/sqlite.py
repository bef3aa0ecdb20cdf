"""Finished enrollments in one SQLite database (WAL), committed before the
receipt is shown, so a power cut after the receipt loses nothing.

Until sealing exists, the store refuses any packet captured by a real module:
real biometrics must never rest on disk in clear.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

from kiosk.errors import ClearTextRefused, StoreError
from kiosk.packet.build import Packet

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
"""
SCHEMA_VERSION = 1


def _explain(exc: sqlite3.Error, path: Path) -> str:
    text = str(exc)
    code = getattr(exc, "sqlite_errorname", "")
    if code == "SQLITE_FULL" or "database or disk is full" in text:
        return f"{path}: the disk is full; free space or carry packets off on a USB stick"
    if code in ("SQLITE_NOTADB", "SQLITE_CORRUPT") or "malformed" in text:
        return f"{path}: the store file is damaged ({text}); call a technician, do not delete it"
    return f"{path}: {text}"


class EnrollmentStore:
    """SQLite store of finished enrollments, safe to call from any thread."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
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
        except StoreError:  # a StoreError is an OSError: keep its own message
            self._close_quietly()
            raise
        except sqlite3.Error as exc:
            self._close_quietly()
            raise StoreError(_explain(exc, self.path)) from exc
        except OSError as exc:
            self._close_quietly()
            raise StoreError(f"{self.path}: cannot open the store ({exc.strerror})") from exc

    def _close_quietly(self) -> None:
        db = getattr(self, "_db", None)  # absent when connect() itself failed
        if db is not None:
            db.close()

    def save(self, packet: Packet) -> None:
        if not packet.simulated:
            raise ClearTextRefused(
                "refusing to store an enrollment from real modules unsealed; "
                "packet sealing is not built yet"
            )
        stored_at = datetime.now(UTC).isoformat()
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "INSERT INTO enrollments VALUES (?, ?, ?, ?)",
                    (
                        packet.enrollment_id,
                        stored_at,
                        int(packet.simulated),
                        packet.manifest_json().decode(),
                    ),
                )
                self._db.executemany(
                    "INSERT INTO enrollment_files VALUES (?, ?, ?)",
                    [(packet.enrollment_id, name, data) for name, data in packet.files.items()],
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):  # SQLite undoes it on reopen
                        self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.IntegrityError):
                    message = f"{self.path}: enrollment {packet.enrollment_id} is already stored"
                    raise StoreError(message) from exc
                raise StoreError(_explain(exc, self.path)) from exc

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
        with self._lock:
            self._db.close()
