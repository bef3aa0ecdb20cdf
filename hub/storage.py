"""Where the hub keeps things: packet bytes in :class:`Blobs`, everything else in an :class:`Index`.

Two protocols, each with an embedded implementation that needs nothing but a
folder (:class:`DirectoryBlobs`, :class:`SqliteIndex`) and one for a district
that runs several hub replicas (``hub.postgres.PostgresIndex``, ``hub.s3.S3Blobs``),
chosen by :func:`open_index` and :func:`open_blobs`.

Replicas share nothing but the index and the blobs: a station's upload may
resume on another replica than the one that received its first bytes, so
partial uploads live in the blobs (one blob per received piece, named in the
index) and never on a replica's own disk. Every index method is safe when
several replicas call it at once on the same rows: each write is one
transaction, and the races that matter are settled by the database (a
compare-and-set on an upload's offset, a unique key on a packet's SHA-256, a
unique accepted packet per enrollment, a heartbeat newer than the last).

Blob keys used by the hub (see hub/service.py)::

    uploads/<sha256>/<start, 12 digits>-<random>   a received piece of an upload
    packets/<sha256>.rekam                         an accepted sealed packet
    quarantine/<sha256>.rekam                      a rejected one, kept for an investigator

The queries are written once, in :class:`SqlIndex`, for both index backends
(PostgreSQL's cursor turns ``?`` into ``%s``); each backend keeps its own
transactions, schema (BLOB becomes BYTEA, INTEGER offsets BIGINT) and time
columns: SQLite keeps ISO 8601 UTC strings, as everywhere in the project.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from kiosk.store.durable import fsync_dir, write_durably

ACCEPTED = "accepted"
REJECTED = "rejected"

# A key is path-like: segments of letters, digits, ".", "_", "-", not starting with a
# dot (temporary files do), so a key can never climb out of the blob folder.
_KEY = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*")


class StorageError(Exception):
    """The hub's index or blob store failed or was misconfigured."""


def check_key(key: str) -> str:
    """``key`` itself when it is a valid blob key; ValueError otherwise."""
    if not _KEY.fullmatch(key) or ".." in key.split("/"):
        raise ValueError(f"not a valid blob key: {key!r}")
    return key


def chunk_key(sha256: str, start: int) -> str:
    """A fresh, unique key for a piece of an upload starting at byte ``start``.

    Unique (a random tail), so two replicas receiving the same bytes at the same
    offset never overwrite each other's piece: the index names the one that won.
    """
    return f"uploads/{sha256}/{start:012d}-{uuid.uuid4().hex[:16]}"


def packet_key(sha256: str) -> str:
    return f"packets/{sha256}.rekam"


def quarantine_key(sha256: str) -> str:
    return f"quarantine/{sha256}.rekam"


def now() -> datetime:
    return datetime.now(UTC)


def in_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; ValueError for a time without an offset."""
    if moment.tzinfo is None:
        raise ValueError("times must carry a UTC offset")
    return moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return in_utc(moment).isoformat()


def micros(moment: datetime) -> int:
    """Microseconds since the epoch: what heartbeats are ordered by (exact, no float)."""
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


# -- records ------------------------------------------------------------------------


@dataclass(frozen=True)
class Station:
    station_id: str
    public_key: bytes  # Ed25519, 32 raw bytes
    registered_at: datetime


@dataclass(frozen=True)
class Upload:
    """An upload in progress; ``sha256`` (of the whole sealed packet) is its id."""

    sha256: str
    station_id: str
    enrollment_id: str  # as the station's metadata said; the packet's header decides
    length: int
    offset: int  # bytes received so far, in order, from 0
    created_at: datetime


@dataclass(frozen=True)
class Chunk:
    """A received piece of an upload: bytes ``start`` to ``end`` are in blob ``key``."""

    start: int
    end: int
    key: str


@dataclass(frozen=True)
class Verdict:
    """What the hub decided about one sealed packet (one SHA-256)."""

    sha256: str
    enrollment_id: str
    station_id: str
    verdict: str  # ACCEPTED or REJECTED
    reason: str | None  # a kiosk.packet.seal.Rejection value (or the hub's replay reason)
    detail: str | None  # the check's own words, for the investigator
    received_at: datetime
    size: int
    blob_key: str  # packets/... or quarantine/...
    simulated: bool = False

    @property
    def accepted(self) -> bool:
        return self.verdict == ACCEPTED


@dataclass(frozen=True)
class Heartbeat:
    station_id: str
    sent_at: datetime  # the station's clock
    received_at: datetime  # the hub's clock
    body: dict = field(default_factory=dict)


class AlreadyAccepted(StorageError):
    """Another packet (another SHA-256) of this enrollment was accepted already: a replay."""

    def __init__(self, existing: Verdict) -> None:
        super().__init__(
            f"enrollment {existing.enrollment_id} was accepted already as {existing.sha256}"
        )
        self.existing = existing


# -- protocols ----------------------------------------------------------------------


@runtime_checkable
class Blobs(Protocol):
    """Packet bytes by key (see :func:`check_key`). Safe to call from several threads
    and several replicas at once; a put of a key that exists replaces it whole."""

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``; durable when it returns (fsync / the store's ack)."""

    def get(self, key: str) -> bytes:
        """The bytes under ``key``; KeyError if there are none."""

    def delete(self, key: str) -> None:
        """Remove ``key``; nothing happens if it is absent."""

    def keys(self, prefix: str) -> list[str]:
        """Every key starting with ``prefix`` (plain string prefix), sorted."""


@runtime_checkable
class Index(Protocol):
    """Stations, uploads in progress, verdicts and heartbeats: the hub's shared state.

    Every method is one transaction, safe while other threads and other hub
    replicas call the same methods on the same rows.
    """

    # stations
    def register_station(self, station_id: str, public_key: bytes, registered_at: datetime) -> None:
        """Add a station, or give a re-provisioned one its new key (the old one stops working)."""

    def station_keys(self) -> dict[str, bytes]:
        """Station id -> Ed25519 public key bytes, for every registered station."""

    def stations(self) -> list[Station]:
        """Every registered station, by id."""

    # uploads
    def create_or_get_upload(self, upload: Upload) -> Upload:
        """Insert ``upload`` (its offset taken as 0) unless its SHA-256 exists; the stored one.

        Two replicas creating the same upload at once both get the one row.
        """

    def get_upload(self, sha256: str) -> Upload | None: ...

    def advance_upload(self, sha256: str, from_offset: int, new_offset: int, key: str) -> bool:
        """Compare-and-set: move the offset from ``from_offset`` to ``new_offset`` and name
        blob ``key`` as the bytes in between, only if the offset still is ``from_offset``.

        False (and nothing changed) when it is not, or the upload is gone: another
        request got there first, and the caller deletes its blob.
        """

    def upload_chunks(self, sha256: str) -> list[Chunk]:
        """The upload's pieces in order of ``start`` (contiguous from 0 to its offset)."""

    def delete_upload(self, sha256: str) -> None:
        """Forget the upload and its pieces (the caller deletes the blobs); no error if absent."""

    def uploads(self) -> list[Upload]:
        """Every upload in progress, oldest first."""

    # verdicts
    def record_verdict(self, verdict: Verdict) -> Verdict:
        """Store ``verdict`` unless one exists for its SHA-256; the stored one.

        Raises AlreadyAccepted when ``verdict`` is an acceptance and another SHA-256
        of the same enrollment was accepted already (decided by a unique key, so two
        replicas accepting two versions at once cannot both win).
        """

    def verdict_for_sha(self, sha256: str) -> Verdict | None: ...

    def verdict_for_enrollment(self, enrollment_id: str) -> Verdict | None:
        """The accepted packet of the enrollment, else its latest rejected one, else None."""

    def verdict_counts(self) -> dict[str, dict[str, int]]:
        """Station id -> {"accepted": n, "rejected": m} (only stations with verdicts)."""

    def recent_verdicts(self, limit: int) -> list[Verdict]:
        """The ``limit`` latest verdicts, newest first."""

    def last_sequences(self, station_id: str | None = None) -> dict[str, int]:
        """Station id -> the highest sequence among its accepted packets (the digits
        after the last ``-`` of ``<station id>-<YYYYMMDD>-<sequence>``), for every
        station with one, or for ``station_id`` alone: what a re-flashed station
        numbers on from (hub/pairing.py, the dashboard)."""

    # heartbeats
    def record_heartbeat(self, heartbeat: Heartbeat) -> bool:
        """Keep ``heartbeat`` as the station's latest if its ``sent_at`` is newer than the
        latest kept; False (a replay, nothing changed) when it is not."""

    def heartbeats(self) -> list[Heartbeat]:
        """Each station's latest heartbeat, by station id."""

    def close(self) -> None:
        """Release connections; idempotent."""


# -- embedded blobs: a folder -------------------------------------------------------


class DirectoryBlobs:
    """Blobs as files under ``path``: each put is a temporary file, fsync, rename, fsync
    of the folder, so a power cut leaves the old bytes or the new, never a torn file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def _file(self, key: str) -> Path:
        return self.path / check_key(key)

    def put(self, key: str, data: bytes) -> None:
        target = self._file(key)
        self._make_parents(target.parent)
        write_durably(target, data)

    def get(self, key: str) -> bytes:
        try:
            return self._file(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def delete(self, key: str) -> None:
        target = self._file(key)
        try:
            target.unlink()
            fsync_dir(target.parent)
        except FileNotFoundError:  # gone already, or its emptied folder with it: another
            return  # replica or request finishing the same upload got there first
        # an upload's folder goes once its last piece does; never the top folders
        folder = target.parent
        while folder != self.path and folder.parent != self.path:
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent

    def keys(self, prefix: str) -> list[str]:
        # walk only the deepest folder the prefix names in full
        head = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.path / head if head else self.path
        if head and not _KEY.fullmatch(head):
            return []
        found = []
        for folder, subfolders, files in os.walk(start):
            subfolders[:] = [name for name in subfolders if not name.startswith(".")]
            relative = Path(folder).relative_to(self.path).as_posix()
            for name in files:
                if name.startswith("."):
                    continue
                key = name if relative == "." else f"{relative}/{name}"
                if key.startswith(prefix):
                    found.append(key)
        return sorted(found)

    def _make_parents(self, folder: Path) -> None:
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for made in reversed(missing):
            made.mkdir(exist_ok=True)
            fsync_dir(made.parent)  # the new folder's name is durable too


# -- the index in SQL: what both backends share -------------------------------------

_VERDICT_COLUMNS = (
    "sha256, enrollment_id, station_id, verdict, reason, detail, received_at, size, blob_key, "
    "simulated"
)
_UPLOAD_COLUMNS = "sha256, station_id, enrollment_id, total_bytes, received_bytes, created_at"
# "no limit" as a LIMIT both take (PostgreSQL refuses SQLite's -1, SQLite refuses NULL)
_NO_LIMIT = 2**63 - 1


class SqlIndex(ABC):
    """The :class:`Index` methods of :class:`SqliteIndex` and ``hub.postgres.PostgresIndex``,
    each query written once, with ``?`` placeholders.

    A backend brings what really differs: ``_transaction`` (a context manager yielding an
    object whose ``execute(sql, params)`` takes ``?`` and returns a cursor; one transaction,
    committed when the block ends without error), schema creation, ``close`` and
    ``record_heartbeat``; and as attributes ``_where`` (how its error messages name it),
    ``_byte_order`` (the collation ordering ids byte by byte), ``_unique_violation`` (what
    a broken unique key raises out of ``_transaction``) and ``_store_time`` /
    ``_load_time`` (a datetime to its time columns and back).
    """

    _where: str
    _byte_order: str
    _unique_violation: type[Exception]
    _store_time: Callable[[datetime], object]
    _load_time: Callable[[Any], datetime]

    @abstractmethod
    def _transaction(self, write: bool = True) -> AbstractContextManager[Any]:
        """One transaction; ``write`` says whether the block writes."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def record_heartbeat(self, heartbeat: Heartbeat) -> bool: ...

    # stations

    def register_station(self, station_id: str, public_key: bytes, registered_at: datetime) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO stations (station_id, public_key, registered_at) VALUES (?, ?, ?) "
                "ON CONFLICT (station_id) DO UPDATE SET public_key = excluded.public_key, "
                "registered_at = excluded.registered_at "
                "WHERE stations.public_key <> excluded.public_key",
                (station_id, bytes(public_key), self._store_time(registered_at)),
            )

    def station_keys(self) -> dict[str, bytes]:
        with self._transaction(write=False) as db:
            rows = db.execute("SELECT station_id, public_key FROM stations").fetchall()
        return {station_id: bytes(key) for station_id, key in rows}

    def stations(self) -> list[Station]:
        with self._transaction(write=False) as db:
            rows = db.execute(
                "SELECT station_id, public_key, registered_at FROM stations "
                f"ORDER BY station_id COLLATE {self._byte_order}"
            ).fetchall()
        return [Station(s, bytes(k), self._load_time(at)) for s, k, at in rows]

    # uploads

    def create_or_get_upload(self, upload: Upload) -> Upload:
        values = (
            upload.sha256,
            upload.station_id,
            upload.enrollment_id,
            upload.length,
            self._store_time(upload.created_at),
        )
        with self._transaction() as db:
            # PostgreSQL (READ COMMITTED): the INSERT waits for a concurrent creator's commit
            # and then does nothing; the SELECT, a new statement with a new snapshot, sees its
            # row. Only a replica finishing (deleting) the upload in between makes it go round.
            # SQLite's write transaction holds the file's write lock: the first round does.
            for _ in range(3):
                db.execute(
                    f"INSERT INTO uploads ({_UPLOAD_COLUMNS}) VALUES (?, ?, ?, ?, 0, ?) "
                    "ON CONFLICT (sha256) DO NOTHING",
                    values,
                )
                row = db.execute(
                    f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE sha256 = ?", (upload.sha256,)
                ).fetchone()
                if row is not None:
                    return self._upload(row)
        raise StorageError(
            f"{self._where}: upload {upload.sha256[:16]} kept vanishing while it was created"
        )

    def get_upload(self, sha256: str) -> Upload | None:
        with self._transaction(write=False) as db:
            row = db.execute(
                f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE sha256 = ?", (sha256,)
            ).fetchone()
        return self._upload(row) if row else None

    def advance_upload(self, sha256: str, from_offset: int, new_offset: int, key: str) -> bool:
        if new_offset <= from_offset:
            raise ValueError(f"an upload only moves forward ({from_offset} -> {new_offset})")
        with self._transaction() as db:
            # a concurrent UPDATE of the row makes this one wait for its commit (PostgreSQL's
            # row lock, SQLite's write lock), then check the WHERE on the new row: the loser
            # moves nothing
            moved = db.execute(
                "UPDATE uploads SET received_bytes = ? WHERE sha256 = ? AND received_bytes = ?",
                (new_offset, sha256, from_offset),
            ).rowcount
            if moved != 1:
                return False
            db.execute(
                "INSERT INTO upload_chunks (sha256, start_byte, end_byte, blob_key) "
                "VALUES (?, ?, ?, ?)",
                (sha256, from_offset, new_offset, key),
            )
        return True

    def upload_chunks(self, sha256: str) -> list[Chunk]:
        with self._transaction(write=False) as db:
            rows = db.execute(
                "SELECT start_byte, end_byte, blob_key FROM upload_chunks WHERE sha256 = ? "
                "ORDER BY start_byte",
                (sha256,),
            ).fetchall()
        return [Chunk(start, end, key) for start, end, key in rows]

    def delete_upload(self, sha256: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM upload_chunks WHERE sha256 = ?", (sha256,))
            db.execute("DELETE FROM uploads WHERE sha256 = ?", (sha256,))

    def uploads(self) -> list[Upload]:
        with self._transaction(write=False) as db:
            rows = db.execute(
                f"SELECT {_UPLOAD_COLUMNS} FROM uploads "
                f"ORDER BY created_at, sha256 COLLATE {self._byte_order}"
            ).fetchall()
        return [self._upload(row) for row in rows]

    # verdicts

    def record_verdict(self, verdict: Verdict) -> Verdict:
        values = (
            verdict.sha256,
            verdict.enrollment_id,
            verdict.station_id,
            verdict.verdict,
            verdict.reason,
            verdict.detail,
            self._store_time(verdict.received_at),
            verdict.size,
            verdict.blob_key,
            bool(verdict.simulated),  # SQLite keeps it as the integer 1 or 0
        )
        try:
            with self._transaction() as db:
                inserted = db.execute(
                    f"INSERT INTO verdicts ({_VERDICT_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sha256) DO NOTHING",
                    values,
                ).rowcount
                if not inserted:  # a verdict on these very bytes exists: it stands
                    row = db.execute(
                        f"SELECT {_VERDICT_COLUMNS} FROM verdicts WHERE sha256 = ?",
                        (verdict.sha256,),
                    ).fetchone()
                    return self._verdict(row)
        except self._unique_violation:
            # ON CONFLICT settles only its own key: a replica inserting these very bytes at
            # the same moment trips one_accepted_per_enrollment first. Then its verdict stands.
            same = self.verdict_for_sha(verdict.sha256)
            if same is not None:
                return same
            # one_accepted_per_enrollment: another SHA-256 of the enrollment won
            existing = self._accepted(verdict.enrollment_id)
            if existing is None:  # pragma: no cover - an accepted verdict is never deleted
                raise StorageError(
                    f"enrollment {verdict.enrollment_id}: a unique key refused the verdict, "
                    "and no accepted packet holds it"
                ) from None
            raise AlreadyAccepted(existing) from None
        return verdict

    def _accepted(self, enrollment_id: str) -> Verdict | None:
        with self._transaction(write=False) as db:
            row = db.execute(
                f"SELECT {_VERDICT_COLUMNS} FROM verdicts "
                "WHERE enrollment_id = ? AND verdict = 'accepted'",
                (enrollment_id,),
            ).fetchone()
        return self._verdict(row) if row else None

    def verdict_for_sha(self, sha256: str) -> Verdict | None:
        with self._transaction(write=False) as db:
            row = db.execute(
                f"SELECT {_VERDICT_COLUMNS} FROM verdicts WHERE sha256 = ?", (sha256,)
            ).fetchone()
        return self._verdict(row) if row else None

    def verdict_for_enrollment(self, enrollment_id: str) -> Verdict | None:
        with self._transaction(write=False) as db:
            row = db.execute(
                f"SELECT {_VERDICT_COLUMNS} FROM verdicts WHERE enrollment_id = ? "
                "ORDER BY CASE verdict WHEN 'accepted' THEN 0 ELSE 1 END, received_at DESC, "
                f"sha256 COLLATE {self._byte_order} LIMIT 1",
                (enrollment_id,),
            ).fetchone()
        return self._verdict(row) if row else None

    def verdict_counts(self) -> dict[str, dict[str, int]]:
        with self._transaction(write=False) as db:
            rows = db.execute(
                "SELECT station_id, verdict, COUNT(*) FROM verdicts GROUP BY station_id, verdict"
            ).fetchall()
        counts: dict[str, dict[str, int]] = {}
        for station_id, verdict, count in rows:
            counts.setdefault(station_id, {ACCEPTED: 0, REJECTED: 0})[verdict] = count
        return counts

    def recent_verdicts(self, limit: int) -> list[Verdict]:
        with self._transaction(write=False) as db:
            rows = db.execute(
                f"SELECT {_VERDICT_COLUMNS} FROM verdicts "
                f"ORDER BY received_at DESC, sha256 COLLATE {self._byte_order} LIMIT ?",
                (limit if limit >= 0 else _NO_LIMIT,),  # as SQLite: a negative limit is none
            ).fetchall()
        return [self._verdict(row) for row in rows]

    def last_sequences(self, station_id: str | None = None) -> dict[str, int]:
        # Portable SQL, one pass: an accepted packet's id is the station's own (the packet
        # is signed by its key); the sequence starts 11 characters after the station id
        # (``-YYYYMMDD-``). Only all-digit sequences of at most 18 digits are cast (a
        # BIGINT): ltrim by the digits leaves nothing of them, in SQLite as in PostgreSQL.
        sequence = "substr(enrollment_id, length(station_id) + 11)"
        query = (
            f"SELECT station_id, MAX(CASE WHEN {sequence} <> '' "
            f"AND ltrim({sequence}, '0123456789') = '' AND length({sequence}) <= 18 "
            f"THEN CAST({sequence} AS BIGINT) END) FROM verdicts "
            "WHERE verdict = 'accepted' "
            "AND substr(enrollment_id, 1, length(station_id) + 1) = station_id || '-' "
            "AND substr(enrollment_id, length(station_id) + 10, 1) = '-'"
        )
        params: tuple = ()
        if station_id is not None:
            query += " AND station_id = ?"
            params = (station_id,)
        with self._transaction(write=False) as db:
            rows = db.execute(query + " GROUP BY station_id", params).fetchall()
        return {station: int(highest) for station, highest in rows if highest is not None}

    # heartbeats

    def heartbeats(self) -> list[Heartbeat]:
        with self._transaction(write=False) as db:
            rows = db.execute(
                "SELECT station_id, sent_at, received_at, body FROM heartbeats "
                f"ORDER BY station_id COLLATE {self._byte_order}"
            ).fetchall()
        return [
            Heartbeat(s, self._load_time(sent), self._load_time(got), json.loads(body))
            for s, sent, got, body in rows
        ]

    # rows

    @staticmethod
    def _heartbeat_body(heartbeat: Heartbeat) -> str:
        """The body as both backends keep it: JSON text (not PostgreSQL's jsonb, which would
        refuse ``\\u0000`` and reorder keys), keys sorted."""
        return json.dumps(heartbeat.body, ensure_ascii=False, sort_keys=True)

    def _upload(self, row: tuple) -> Upload:
        sha256, station_id, enrollment_id, length, offset, created_at = row
        return Upload(
            sha256, station_id, enrollment_id, length, offset, self._load_time(created_at)
        )

    def _verdict(self, row: tuple) -> Verdict:
        sha256, enrollment_id, station_id, verdict, reason, detail, at, size, key, simulated = row
        return Verdict(
            sha256=sha256,
            enrollment_id=enrollment_id,
            station_id=station_id,
            verdict=verdict,
            reason=reason,
            detail=detail,
            received_at=self._load_time(at),
            size=size,
            blob_key=key,
            simulated=bool(simulated),
        )


# -- embedded index: SQLite ---------------------------------------------------------

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS stations (
    station_id TEXT PRIMARY KEY,
    public_key BLOB NOT NULL,
    registered_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS uploads (
    sha256 TEXT PRIMARY KEY,
    station_id TEXT NOT NULL,
    enrollment_id TEXT NOT NULL,
    total_bytes INTEGER NOT NULL,
    received_bytes INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS upload_chunks (
    sha256 TEXT NOT NULL,
    start_byte INTEGER NOT NULL,
    end_byte INTEGER NOT NULL,
    blob_key TEXT NOT NULL,
    PRIMARY KEY (sha256, start_byte)
);
CREATE TABLE IF NOT EXISTS verdicts (
    sha256 TEXT PRIMARY KEY,
    enrollment_id TEXT NOT NULL,
    station_id TEXT NOT NULL,
    verdict TEXT NOT NULL,
    reason TEXT,
    detail TEXT,
    received_at TEXT NOT NULL,
    size INTEGER NOT NULL,
    blob_key TEXT NOT NULL,
    simulated INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS one_accepted_per_enrollment
    ON verdicts (enrollment_id) WHERE verdict = 'accepted';
CREATE INDEX IF NOT EXISTS verdicts_by_enrollment ON verdicts (enrollment_id, received_at);
CREATE INDEX IF NOT EXISTS verdicts_by_time ON verdicts (received_at);
CREATE TABLE IF NOT EXISTS heartbeats (
    station_id TEXT PRIMARY KEY,
    sent_at TEXT NOT NULL,
    sent_us INTEGER NOT NULL,
    received_at TEXT NOT NULL,
    body TEXT NOT NULL
);
"""


class SqliteIndex(SqlIndex):
    """The index in one SQLite file (WAL, synchronous=FULL: a commit survives a power cut).

    One connection per object, behind a lock; several processes may share the file
    (write transactions are BEGIN IMMEDIATE, with a busy timeout). Times are ISO 8601
    text; heartbeats are ordered by ``sent_us`` (text does not order them).
    """

    _byte_order = "BINARY"
    _unique_violation = sqlite3.IntegrityError
    _store_time = staticmethod(_iso)
    _load_time = staticmethod(datetime.fromisoformat)

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._where = str(self.path)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        try:
            self._open()
        except sqlite3.Error as exc:
            self.close()
            raise StorageError(f"{self.path}: the index cannot be opened ({exc})") from None

    def _open(self) -> None:
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            self._db.close()
            self._db = None
            raise StorageError(
                f"{self.path}: index schema {version} was made by a newer hub "
                f"(this one knows {SCHEMA_VERSION}); refusing to change it"
            )
        with self._transaction() as db:
            # statement by statement: executescript would commit outside the transaction
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def _transaction(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction; a writing one takes the write lock at once (BEGIN IMMEDIATE),
        so its reads and writes see one state even with another process on the file."""
        with self._lock:
            if self._db is None:
                raise StorageError(f"{self.path}: the index is closed")
            self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def record_heartbeat(self, heartbeat: Heartbeat) -> bool:
        with self._transaction() as db:
            changed = db.execute(
                "INSERT INTO heartbeats (station_id, sent_at, sent_us, received_at, body) "
                "VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (station_id) DO UPDATE SET sent_at = excluded.sent_at, "
                "sent_us = excluded.sent_us, received_at = excluded.received_at, "
                "body = excluded.body WHERE heartbeats.sent_us < excluded.sent_us",
                (
                    heartbeat.station_id,
                    _iso(heartbeat.sent_at),
                    micros(heartbeat.sent_at),
                    _iso(heartbeat.received_at),
                    self._heartbeat_body(heartbeat),
                ),
            ).rowcount
        return changed == 1


# -- choosing a backend -------------------------------------------------------------

INDEX_FILE = "index.sqlite3"
BLOBS_FOLDER = "blobs"


def open_index(url: str | None, data_dir: Path | str) -> Index:
    """The index named by ``url``: None (the data folder's SQLite file),
    ``sqlite:///<path>``, or ``postgresql://...`` (hub.postgres.PostgresIndex(url))."""
    if url is None:
        return SqliteIndex(Path(data_dir) / INDEX_FILE)
    if url.startswith("sqlite:///"):
        return SqliteIndex(Path(url.removeprefix("sqlite://")))
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from hub.postgres import PostgresIndex
        except ImportError as exc:
            raise StorageError(
                f"PostgreSQL index unavailable ({exc}); install the hub extra: "
                "pip install 'rekam-kiosk[hub]'"
            ) from None
        return PostgresIndex(url)
    raise StorageError(f"--database {url!r}: expected postgresql://... or sqlite:///<path>")


def open_blobs(url: str | None, data_dir: Path | str) -> Blobs:
    """The blob store named by ``url``: None (the data folder's ``blobs/``),
    ``file:///<path>``, or ``s3://<bucket>?endpoint=...`` (hub.s3.S3Blobs(url))."""
    if url is None:
        return DirectoryBlobs(Path(data_dir) / BLOBS_FOLDER)
    if url.startswith("file:///"):
        return DirectoryBlobs(Path(url.removeprefix("file://")))
    if url.startswith("s3://"):
        try:
            from hub.s3 import S3Blobs
        except ImportError as exc:
            raise StorageError(
                f"S3 blob store unavailable ({exc}); install the hub extra: "
                "pip install 'rekam-kiosk[hub]'"
            ) from None
        return S3Blobs(url)
    raise StorageError(f"--blobs {url!r}: expected s3://<bucket>?endpoint=... or file:///<path>")
