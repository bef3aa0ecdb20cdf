"""The hub's index in PostgreSQL, for a district that runs several hub replicas.

:class:`PostgresIndex` implements hub.storage.Index with the semantics of
SqliteIndex, table for table, and stays right when several replicas (and several
threads in each) call it at once on the same rows:

- every method is one transaction (READ COMMITTED), committed before it returns;
- an upload's offset moves by compare-and-set (``UPDATE ... WHERE received_bytes =
  <from>``): of two requests appending at the same offset, the second waits for the
  first's row lock, sees the moved offset and changes nothing;
- creating an upload is ``INSERT ... ON CONFLICT DO NOTHING``: both creators get the
  one row;
- one verdict per SHA-256 (primary key) and one accepted packet per enrollment (a
  partial unique index): two replicas accepting two versions of an enrollment at
  once cannot both win, the loser gets AlreadyAccepted;
- a heartbeat is kept only if its ``sent_at`` is newer than the kept one, in one
  ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` (atomic in PostgreSQL).

The schema is made at first start, under an advisory lock (two replicas starting
together do not race to create it), and versioned in ``rekam_hub_schema``: a
database made by a newer hub is refused rather than modified.

Times are ``timestamptz`` (microseconds, like Python's datetime), read back in
UTC. Heartbeat bodies are kept as the JSON text SqliteIndex keeps (not jsonb,
which would refuse ``\\u0000`` and reorder keys). Ids are ordered with
``COLLATE "C"`` (byte order, as SQLite does) whatever the database's locale.

Connections come from a small pool (``max_connections`` per index object); a
connection that broke (the server restarted, the network dropped) is dropped
from the pool and the call raises StorageError. Nothing is retried here: a write
whose commit was lost in flight cannot be told from one that never happened,
and the station's protocol already retries (HEAD, then PATCH from the offset).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import errors

from hub.storage import (
    ACCEPTED,
    REJECTED,
    AlreadyAccepted,
    Chunk,
    Heartbeat,
    Station,
    StorageError,
    Upload,
    Verdict,
)

SCHEMA_VERSION = 1
# pg_advisory_xact_lock key for schema changes: "rekamhub" in ASCII, as a bigint
_SCHEMA_LOCK = int.from_bytes(b"rekamhub", "big") & 0x7FFF_FFFF_FFFF_FFFF
_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS rekam_hub_schema (
        only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
        version INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS stations (
        station_id TEXT PRIMARY KEY,
        public_key BYTEA NOT NULL,
        registered_at TIMESTAMPTZ NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS uploads (
        sha256 TEXT PRIMARY KEY,
        station_id TEXT NOT NULL,
        enrollment_id TEXT NOT NULL,
        total_bytes BIGINT NOT NULL,
        received_bytes BIGINT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS upload_chunks (
        sha256 TEXT NOT NULL,
        start_byte BIGINT NOT NULL,
        end_byte BIGINT NOT NULL,
        blob_key TEXT NOT NULL,
        PRIMARY KEY (sha256, start_byte)
    )""",
    """CREATE TABLE IF NOT EXISTS verdicts (
        sha256 TEXT PRIMARY KEY,
        enrollment_id TEXT NOT NULL,
        station_id TEXT NOT NULL,
        verdict TEXT NOT NULL,
        reason TEXT,
        detail TEXT,
        received_at TIMESTAMPTZ NOT NULL,
        size BIGINT NOT NULL,
        blob_key TEXT NOT NULL,
        simulated BOOLEAN NOT NULL
    )""",
    """CREATE UNIQUE INDEX IF NOT EXISTS one_accepted_per_enrollment
        ON verdicts (enrollment_id) WHERE verdict = 'accepted'""",
    """CREATE INDEX IF NOT EXISTS verdicts_by_enrollment
        ON verdicts (enrollment_id, received_at)""",
    "CREATE INDEX IF NOT EXISTS verdicts_by_time ON verdicts (received_at)",
    """CREATE TABLE IF NOT EXISTS heartbeats (
        station_id TEXT PRIMARY KEY,
        sent_at TIMESTAMPTZ NOT NULL,
        received_at TIMESTAMPTZ NOT NULL,
        body TEXT NOT NULL
    )""",
]

_VERDICT_COLUMNS = (
    "sha256, enrollment_id, station_id, verdict, reason, detail, received_at, size, blob_key, "
    "simulated"
)
_UPLOAD_COLUMNS = "sha256, station_id, enrollment_id, total_bytes, received_bytes, created_at"
# password=... in a URL's query or a key=value connection string
_PASSWORD_OPTION = re.compile(r"((?:^|[?&\s])password\s*=\s*)('[^']*'|[^&\s]*)")


def redacted(url: str) -> str:
    """``url`` (a URL or a ``key=value`` connection string) without its password, fit for
    a log line or an error message."""
    url = _PASSWORD_OPTION.sub(r"\1***", url)
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


class PostgresIndex:
    """The hub's index in the PostgreSQL database at ``url`` (``postgresql://...``).

    ``connect_timeout`` bounds each new connection (seconds); at most
    ``max_connections`` are open at once per object, more callers wait for one.
    Raises StorageError when the server cannot be reached or the schema is newer.
    """

    def __init__(self, url: str, *, connect_timeout: int = 10, max_connections: int = 16) -> None:
        self.url = url
        self._shown = redacted(url)
        self._connect_timeout = connect_timeout
        self._idle: list[psycopg.Connection] = []
        self._slots = threading.BoundedSemaphore(max_connections)
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._make_schema()
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"PostgresIndex({self._shown!r})"

    # -- connections -------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection:
        try:
            connection = psycopg.connect(
                self.url,
                autocommit=True,  # each method opens its own transaction, explicitly
                connect_timeout=self._connect_timeout,
                application_name="kiosk-hub",
            )
            connection.execute("SET TIME ZONE 'UTC'")
        except psycopg.Error as exc:
            raise StorageError(
                f"PostgreSQL index {self._shown}: cannot connect ({_one_line(exc)})"
            ) from None
        return connection

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Cursor]:
        """A cursor in a fresh transaction, committed when the block ends without error.

        A unique-key violation passes through as is (callers settle races with it);
        any other database error becomes StorageError, and a broken connection is closed.
        """
        if self._closed:
            raise StorageError(f"PostgreSQL index {self._shown}: the index is closed")
        with self._slots:
            connection = self._take()
            try:
                with connection.transaction(), connection.cursor() as cursor:
                    yield cursor
            except errors.UniqueViolation:
                self._give_back(connection)
                raise
            except psycopg.Error as exc:
                self._give_back(connection)
                raise StorageError(f"PostgreSQL index {self._shown}: {_one_line(exc)}") from exc
            except BaseException:
                self._give_back(connection)
                raise
            self._give_back(connection)

    def _take(self) -> psycopg.Connection:
        with self._lock:
            while self._idle:
                connection = self._idle.pop()
                if not (connection.closed or connection.broken):
                    return connection
                connection.close()
        return self._connect()

    def _give_back(self, connection: psycopg.Connection) -> None:
        """Back to the pool, unless it broke, is inside a transaction, or the index closed."""
        healthy = not (connection.closed or connection.broken) and (
            connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        )
        with self._lock:
            if healthy and not self._closed:
                self._idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _make_schema(self) -> None:
        with self._transaction() as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            db.execute(_SCHEMA[0])
            row = db.execute("SELECT version FROM rekam_hub_schema").fetchone()
            if row is not None and row[0] > SCHEMA_VERSION:
                raise StorageError(
                    f"PostgreSQL index {self._shown}: schema {row[0]} was made by a newer hub "
                    f"(this one knows {SCHEMA_VERSION}); refusing to change it"
                )
            for statement in _SCHEMA[1:]:
                db.execute(statement)
            db.execute(
                "INSERT INTO rekam_hub_schema (version) VALUES (%s) "
                "ON CONFLICT (only_row) DO UPDATE SET version = excluded.version",
                (SCHEMA_VERSION,),
            )

    # -- stations ----------------------------------------------------------------------

    def register_station(self, station_id: str, public_key: bytes, registered_at: datetime) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO stations (station_id, public_key, registered_at) "
                "VALUES (%s, %s, %s) "
                "ON CONFLICT (station_id) DO UPDATE SET public_key = excluded.public_key, "
                "registered_at = excluded.registered_at "
                "WHERE stations.public_key <> excluded.public_key",
                (station_id, bytes(public_key), _utc(registered_at)),
            )

    def station_keys(self) -> dict[str, bytes]:
        with self._transaction() as db:
            rows = db.execute("SELECT station_id, public_key FROM stations").fetchall()
        return {station_id: bytes(key) for station_id, key in rows}

    def stations(self) -> list[Station]:
        with self._transaction() as db:
            rows = db.execute(
                "SELECT station_id, public_key, registered_at FROM stations "
                'ORDER BY station_id COLLATE "C"'
            ).fetchall()
        return [Station(s, bytes(k), _read_time(at)) for s, k, at in rows]

    # -- uploads -----------------------------------------------------------------------

    def create_or_get_upload(self, upload: Upload) -> Upload:
        values = (
            upload.sha256,
            upload.station_id,
            upload.enrollment_id,
            upload.length,
            _utc(upload.created_at),
        )
        with self._transaction() as db:
            # READ COMMITTED: the INSERT waits for a concurrent creator's commit and then
            # does nothing; the SELECT, a new statement with a new snapshot, sees its row.
            # Only a replica finishing (deleting) the upload in between makes it go round.
            for _ in range(3):
                row = (
                    db.execute(
                        f"INSERT INTO uploads ({_UPLOAD_COLUMNS}) VALUES (%s, %s, %s, %s, 0, %s) "
                        f"ON CONFLICT (sha256) DO NOTHING RETURNING {_UPLOAD_COLUMNS}",
                        values,
                    ).fetchone()
                    or db.execute(
                        f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE sha256 = %s", (upload.sha256,)
                    ).fetchone()
                )
                if row is not None:
                    return _upload(row)
        raise StorageError(
            f"PostgreSQL index {self._shown}: upload {upload.sha256[:16]} kept vanishing "
            "while it was created"
        )

    def get_upload(self, sha256: str) -> Upload | None:
        with self._transaction() as db:
            row = db.execute(
                f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE sha256 = %s", (sha256,)
            ).fetchone()
        return _upload(row) if row else None

    def advance_upload(self, sha256: str, from_offset: int, new_offset: int, key: str) -> bool:
        if new_offset <= from_offset:
            raise ValueError(f"an upload only moves forward ({from_offset} -> {new_offset})")
        with self._transaction() as db:
            # a concurrent UPDATE of the row makes this one wait for its commit, then
            # re-check the WHERE on the new row: the loser moves nothing
            moved = db.execute(
                "UPDATE uploads SET received_bytes = %s WHERE sha256 = %s AND received_bytes = %s",
                (new_offset, sha256, from_offset),
            ).rowcount
            if moved != 1:
                return False
            db.execute(
                "INSERT INTO upload_chunks (sha256, start_byte, end_byte, blob_key) "
                "VALUES (%s, %s, %s, %s)",
                (sha256, from_offset, new_offset, key),
            )
        return True

    def upload_chunks(self, sha256: str) -> list[Chunk]:
        with self._transaction() as db:
            rows = db.execute(
                "SELECT start_byte, end_byte, blob_key FROM upload_chunks WHERE sha256 = %s "
                "ORDER BY start_byte",
                (sha256,),
            ).fetchall()
        return [Chunk(start, end, key) for start, end, key in rows]

    def delete_upload(self, sha256: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM upload_chunks WHERE sha256 = %s", (sha256,))
            db.execute("DELETE FROM uploads WHERE sha256 = %s", (sha256,))

    def uploads(self) -> list[Upload]:
        with self._transaction() as db:
            rows = db.execute(
                f'SELECT {_UPLOAD_COLUMNS} FROM uploads ORDER BY created_at, sha256 COLLATE "C"'
            ).fetchall()
        return [_upload(row) for row in rows]

    # -- verdicts ----------------------------------------------------------------------

    def record_verdict(self, verdict: Verdict) -> Verdict:
        values = (
            verdict.sha256,
            verdict.enrollment_id,
            verdict.station_id,
            verdict.verdict,
            verdict.reason,
            verdict.detail,
            _utc(verdict.received_at),
            verdict.size,
            verdict.blob_key,
            bool(verdict.simulated),
        )
        try:
            with self._transaction() as db:
                inserted = db.execute(
                    f"INSERT INTO verdicts ({_VERDICT_COLUMNS}) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (sha256) DO NOTHING RETURNING sha256",
                    values,
                ).fetchone()
                if inserted is None:  # a verdict on these very bytes exists: it stands
                    row = db.execute(
                        f"SELECT {_VERDICT_COLUMNS} FROM verdicts WHERE sha256 = %s",
                        (verdict.sha256,),
                    ).fetchone()
                    return _verdict(row)
        except errors.UniqueViolation:
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
        with self._transaction() as db:
            row = db.execute(
                f"SELECT {_VERDICT_COLUMNS} FROM verdicts "
                "WHERE enrollment_id = %s AND verdict = 'accepted'",
                (enrollment_id,),
            ).fetchone()
        return _verdict(row) if row else None

    def verdict_for_sha(self, sha256: str) -> Verdict | None:
        with self._transaction() as db:
            row = db.execute(
                f"SELECT {_VERDICT_COLUMNS} FROM verdicts WHERE sha256 = %s", (sha256,)
            ).fetchone()
        return _verdict(row) if row else None

    def verdict_for_enrollment(self, enrollment_id: str) -> Verdict | None:
        with self._transaction() as db:
            row = db.execute(
                f"SELECT {_VERDICT_COLUMNS} FROM verdicts WHERE enrollment_id = %s "
                "ORDER BY CASE verdict WHEN 'accepted' THEN 0 ELSE 1 END, received_at DESC, "
                'sha256 COLLATE "C" LIMIT 1',
                (enrollment_id,),
            ).fetchone()
        return _verdict(row) if row else None

    def verdict_counts(self) -> dict[str, dict[str, int]]:
        with self._transaction() as db:
            rows = db.execute(
                "SELECT station_id, verdict, COUNT(*) FROM verdicts GROUP BY station_id, verdict"
            ).fetchall()
        counts: dict[str, dict[str, int]] = {}
        for station_id, verdict, count in rows:
            counts.setdefault(station_id, {ACCEPTED: 0, REJECTED: 0})[verdict] = count
        return counts

    def recent_verdicts(self, limit: int) -> list[Verdict]:
        with self._transaction() as db:
            rows = db.execute(
                f"SELECT {_VERDICT_COLUMNS} FROM verdicts "
                'ORDER BY received_at DESC, sha256 COLLATE "C" LIMIT %s',
                (limit if limit >= 0 else None,),  # as SQLite: a negative limit is none
            ).fetchall()
        return [_verdict(row) for row in rows]

    # -- heartbeats --------------------------------------------------------------------

    def record_heartbeat(self, heartbeat: Heartbeat) -> bool:
        with self._transaction() as db:
            changed = db.execute(
                "INSERT INTO heartbeats (station_id, sent_at, received_at, body) "
                "VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (station_id) DO UPDATE SET sent_at = excluded.sent_at, "
                "received_at = excluded.received_at, body = excluded.body "
                "WHERE heartbeats.sent_at < excluded.sent_at",
                (
                    heartbeat.station_id,
                    _utc(heartbeat.sent_at),
                    _utc(heartbeat.received_at),
                    json.dumps(heartbeat.body, ensure_ascii=False, sort_keys=True),
                ),
            ).rowcount
        return changed == 1

    def heartbeats(self) -> list[Heartbeat]:
        with self._transaction() as db:
            rows = db.execute(
                "SELECT station_id, sent_at, received_at, body FROM heartbeats "
                'ORDER BY station_id COLLATE "C"'
            ).fetchall()
        return [
            Heartbeat(s, _read_time(sent), _read_time(got), json.loads(body))
            for s, sent, got, body in rows
        ]


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("times must carry a UTC offset")
    return moment.astimezone(UTC)


def _read_time(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _upload(row: tuple) -> Upload:
    sha256, station_id, enrollment_id, length, offset, created_at = row
    return Upload(sha256, station_id, enrollment_id, length, offset, _read_time(created_at))


def _verdict(row: tuple) -> Verdict:
    sha256, enrollment_id, station_id, verdict, reason, detail, at, size, key, simulated = row
    return Verdict(
        sha256=sha256,
        enrollment_id=enrollment_id,
        station_id=station_id,
        verdict=verdict,
        reason=reason,
        detail=detail,
        received_at=_read_time(at),
        size=size,
        blob_key=key,
        simulated=bool(simulated),
    )
