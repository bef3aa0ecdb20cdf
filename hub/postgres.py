"""The hub's index in PostgreSQL, for a district that runs several hub replicas.

:class:`PostgresIndex` implements hub.storage.Index with the semantics of
SqliteIndex, table for table, and stays right when several replicas (and several
threads in each) call it at once on the same rows. The queries are hub.storage.SqlIndex's,
shared with SqliteIndex; this module brings the connections, the transactions, the
schema, the time columns and the heartbeat upsert:

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
UTC. Heartbeat bodies are kept as the JSON text SqliteIndex keeps. Ids are ordered with
``COLLATE "C"`` (byte order, as SQLite does) whatever the database's locale.

Connections come from a small pool (``max_connections`` per index object); a
connection that broke (the server restarted, the network dropped) is dropped
from the pool and the call raises StorageError. Nothing is retried here: a write
whose commit was lost in flight cannot be told from one that never happened,
and the station's protocol already retries (HEAD, then PATCH from the offset).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import errors

from hub.storage import Heartbeat, SqlIndex, StorageError, in_utc

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


def _read_time(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


class _QmarkCursor(psycopg.Cursor):
    """A cursor taking the ``?`` placeholders hub.storage.SqlIndex writes its SQL with
    (none of that SQL has a ``?`` or a ``%`` of its own)."""

    def execute(self, query: str, params: Any = None, **options: Any) -> _QmarkCursor:
        return super().execute(query.replace("?", "%s"), params, **options)


class PostgresIndex(SqlIndex):
    """The hub's index in the PostgreSQL database at ``url`` (``postgresql://...``).

    ``connect_timeout`` bounds each new connection (seconds); at most
    ``max_connections`` are open at once per object, more callers wait for one.
    Raises StorageError when the server cannot be reached or the schema is newer.
    """

    _byte_order = '"C"'
    _unique_violation = errors.UniqueViolation
    _store_time = staticmethod(in_utc)
    _load_time = staticmethod(_read_time)

    def __init__(self, url: str, *, connect_timeout: int = 10, max_connections: int = 16) -> None:
        self.url = url
        self._shown = redacted(url)
        self._where = f"PostgreSQL index {self._shown}"
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
            raise StorageError(f"{self._where}: cannot connect ({_one_line(exc)})") from None
        return connection

    @contextmanager
    def _transaction(self, write: bool = True) -> Iterator[psycopg.Cursor]:
        """A cursor (taking ``?``) in a fresh transaction, committed when the block ends
        without error. READ COMMITTED whether or not it writes: the writes' own row locks
        and unique keys settle the races.

        A unique-key violation passes through as is (callers settle races with it);
        any other database error becomes StorageError, and a broken connection is closed.
        """
        if self._closed:
            raise StorageError(f"{self._where}: the index is closed")
        with self._slots:
            connection = self._take()
            try:
                with connection.transaction(), _QmarkCursor(connection) as cursor:
                    yield cursor
            except errors.UniqueViolation:
                self._give_back(connection)
                raise
            except psycopg.Error as exc:
                self._give_back(connection)
                raise StorageError(f"{self._where}: {_one_line(exc)}") from exc
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
            db.execute("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK,))
            db.execute(_SCHEMA[0])
            row = db.execute("SELECT version FROM rekam_hub_schema").fetchone()
            if row is not None and row[0] > SCHEMA_VERSION:
                raise StorageError(
                    f"{self._where}: schema {row[0]} was made by a newer hub "
                    f"(this one knows {SCHEMA_VERSION}); refusing to change it"
                )
            for statement in _SCHEMA[1:]:
                db.execute(statement)
            db.execute(
                "INSERT INTO rekam_hub_schema (version) VALUES (?) "
                "ON CONFLICT (only_row) DO UPDATE SET version = excluded.version",
                (SCHEMA_VERSION,),
            )

    # -- heartbeats --------------------------------------------------------------------

    def record_heartbeat(self, heartbeat: Heartbeat) -> bool:
        with self._transaction() as db:
            changed = db.execute(
                "INSERT INTO heartbeats (station_id, sent_at, received_at, body) "
                "VALUES (?, ?, ?, ?) "
                "ON CONFLICT (station_id) DO UPDATE SET sent_at = excluded.sent_at, "
                "received_at = excluded.received_at, body = excluded.body "
                "WHERE heartbeats.sent_at < excluded.sent_at",
                (
                    heartbeat.station_id,
                    in_utc(heartbeat.sent_at),
                    in_utc(heartbeat.received_at),
                    self._heartbeat_body(heartbeat),
                ),
            ).rowcount
        return changed == 1


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
