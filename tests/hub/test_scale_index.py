"""PostgresIndex keeps the Index protocol exactly as SqliteIndex does, and stays right when
two replicas (two index objects, two connections, two threads) race on the same rows.

Every conformance test runs on both, so a difference in semantics fails one of them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest
from scale_servers import PostgresServer, free_port

from hub.postgres import PostgresIndex, redacted
from hub.storage import (
    ACCEPTED,
    REJECTED,
    AlreadyAccepted,
    Chunk,
    Heartbeat,
    Index,
    SqliteIndex,
    StorageError,
    Upload,
    Verdict,
    open_index,
)

pytest_plugins = ["scale_fixtures"]

T0 = datetime(2026, 11, 28, 9, 31, 5, 123456, tzinfo=UTC)
KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))


def sha(n: int) -> str:
    return f"{n:064x}"


def upload(n: int, length: int = 100, *, enrollment: str | None = None) -> Upload:
    return Upload(
        sha256=sha(n),
        station_id="JB-01",
        enrollment_id=enrollment or f"JB-01-20261128-{n:06d}",
        length=length,
        offset=0,
        created_at=T0 + timedelta(seconds=n),
    )


def verdict(n: int, enrollment: str, kind: str = ACCEPTED, at: datetime = T0) -> Verdict:
    rejected = kind == REJECTED
    return Verdict(
        sha256=sha(n),
        enrollment_id=enrollment,
        station_id="JB-01",
        verdict=kind,
        reason="bad signature" if rejected else None,
        detail="not signed by station 'JB-01'" if rejected else None,
        received_at=at,
        size=1000 + n,
        blob_key=f"{'quarantine' if rejected else 'packets'}/{sha(n)}.rekam",
        simulated=not rejected,
    )


def beat(station: str, sent_at: datetime, **body) -> Heartbeat:
    return Heartbeat(station, sent_at, T0, {"station_id": station, **body})


# -- the two implementations, and a second "replica" on the same storage -------------------

Opener = Callable[[], Index]


@pytest.fixture(params=["sqlite", "postgres"])
def open_replica(request, tmp_path) -> Iterator[Opener]:
    """Opens another index object on one shared store (a replica's view of it)."""
    if request.param == "sqlite":
        path = tmp_path / "index.sqlite3"

        def make() -> Index:
            return SqliteIndex(path)
    else:
        url = request.getfixturevalue("pg_url")

        def make() -> Index:
            return PostgresIndex(url)

    opened: list[Index] = []

    def opener() -> Index:
        opened.append(make())
        return opened[-1]

    yield opener
    for index in opened:
        index.close()


@pytest.fixture
def index(open_replica) -> Index:
    return open_replica()


@pytest.fixture
def replicas(open_replica) -> tuple[Index, Index]:
    return open_replica(), open_replica()


def race(*calls: Callable[[], object]) -> list[object]:
    """Run ``calls`` at once (released together by a barrier); results or exceptions."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait()
        try:
            return call()
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


# -- conformance ---------------------------------------------------------------------------


def test_both_implement_the_protocol(index):
    assert isinstance(index, Index)


def test_stations_register_rekey_and_list_in_byte_order(index):
    later = T0 + timedelta(days=1)
    index.register_station("b-02", KEY_A, T0)
    index.register_station("B-01", KEY_A, T0)
    index.register_station("b-02", KEY_A, later)  # the same key again: nothing changes
    assert [(s.station_id, s.registered_at) for s in index.stations()] == [
        ("B-01", T0),
        ("b-02", T0),
    ]
    index.register_station("b-02", KEY_B, later)  # re-provisioned: the new key, its time
    assert index.station_keys() == {"B-01": KEY_A, "b-02": KEY_B}
    assert index.stations()[1].registered_at == later


def test_an_upload_is_created_once_at_offset_zero(index):
    first = index.create_or_get_upload(
        Upload(sha(1), "JB-01", "JB-01-20261128-000001", 100, 40, T0)
    )
    assert first == Upload(sha(1), "JB-01", "JB-01-20261128-000001", 100, 0, T0)
    again = index.create_or_get_upload(upload(1, length=999, enrollment="other"))
    assert again == first  # the stored one, not the new fields
    assert index.get_upload(sha(1)) == first
    assert index.get_upload(sha(2)) is None


def test_offsets_move_by_compare_and_set(index):
    index.create_or_get_upload(upload(1))
    assert index.advance_upload(sha(1), 0, 40, "uploads/a/0")
    assert not index.advance_upload(sha(1), 0, 40, "uploads/a/other")  # stale offset
    assert not index.advance_upload(sha(1), 50, 60, "uploads/a/gap")
    assert not index.advance_upload(sha(9), 0, 10, "uploads/none/0")  # no such upload
    with pytest.raises(ValueError, match="forward"):
        index.advance_upload(sha(1), 40, 40, "uploads/a/empty")
    assert index.advance_upload(sha(1), 40, 100, "uploads/a/40")
    assert index.get_upload(sha(1)).offset == 100
    assert index.upload_chunks(sha(1)) == [
        Chunk(0, 40, "uploads/a/0"),
        Chunk(40, 100, "uploads/a/40"),
    ]


def test_deleting_an_upload_forgets_its_pieces(index):
    index.create_or_get_upload(upload(1))
    index.advance_upload(sha(1), 0, 10, "uploads/a/0")
    index.delete_upload(sha(1))
    index.delete_upload(sha(1))  # absent: no error
    assert index.get_upload(sha(1)) is None
    assert index.upload_chunks(sha(1)) == []
    again = index.create_or_get_upload(upload(1))
    assert (again.offset, index.upload_chunks(sha(1))) == (0, [])


def test_uploads_are_listed_oldest_first(index):
    for n in (3, 1, 2):
        index.create_or_get_upload(upload(n))
    assert [u.sha256 for u in index.uploads()] == [sha(1), sha(2), sha(3)]


def test_times_keep_microseconds_and_come_back_in_utc(index):
    jakarta = timezone(timedelta(hours=7))
    moment = datetime(2026, 11, 28, 16, 31, 5, 7, tzinfo=jakarta)
    index.create_or_get_upload(Upload(sha(1), "JB-01", "e", 10, 0, moment))
    stored = index.get_upload(sha(1)).created_at
    assert stored == moment
    assert stored.utcoffset() == timedelta(0)
    with pytest.raises(ValueError, match="UTC offset"):
        index.create_or_get_upload(Upload(sha(2), "JB-01", "e", 10, 0, datetime(2026, 1, 1)))


def test_a_verdict_is_recorded_once_per_sha256(index):
    first = verdict(1, "JB-01-20261128-000001", REJECTED)
    assert index.record_verdict(first) == first
    # the same bytes judged again (another replica, a retry): the first verdict stands
    assert index.record_verdict(verdict(1, "JB-01-20261128-000001", ACCEPTED)) == first
    assert index.verdict_for_sha(sha(1)) == first
    assert index.verdict_for_sha(sha(2)) is None


def test_one_accepted_packet_per_enrollment(index):
    enrollment = "JB-01-20261128-000007"
    index.record_verdict(verdict(1, enrollment, REJECTED, T0))
    index.record_verdict(verdict(2, enrollment, REJECTED, T0 + timedelta(1)))
    assert index.verdict_for_enrollment(enrollment).sha256 == sha(2)  # the latest rejected
    accepted = index.record_verdict(verdict(3, enrollment, ACCEPTED, T0))
    with pytest.raises(AlreadyAccepted) as refused:
        index.record_verdict(verdict(4, enrollment, ACCEPTED, T0 + timedelta(2)))
    assert refused.value.existing == accepted
    assert index.verdict_for_sha(sha(4)) is None
    # a replay is kept as a rejection: allowed beside the accepted one
    index.record_verdict(verdict(5, enrollment, REJECTED, T0 + timedelta(3)))
    assert index.verdict_for_enrollment(enrollment) == accepted
    assert index.verdict_for_enrollment("JB-01-20261128-000099") is None


def test_counts_and_recent_verdicts(index):
    for n in range(5):
        kind = REJECTED if n == 2 else ACCEPTED
        index.record_verdict(verdict(n, f"E-{n}", kind, T0 + timedelta(minutes=n)))
    index.record_verdict(
        Verdict(sha(9), "F-1", "KB-02", ACCEPTED, None, None, T0, 1, "packets/x.rekam")
    )
    assert index.verdict_counts() == {
        "JB-01": {ACCEPTED: 4, REJECTED: 1},
        "KB-02": {ACCEPTED: 1, REJECTED: 0},
    }
    assert [v.sha256 for v in index.recent_verdicts(3)] == [sha(4), sha(3), sha(2)]
    assert len(index.recent_verdicts(-1)) == 6  # SQLite's LIMIT -1: no limit
    recent = index.recent_verdicts(1)[0]
    assert (recent.simulated, recent.size, recent.received_at) == (
        True,
        1004,
        T0 + timedelta(minutes=4),
    )


def test_last_sequences_read_the_accepted_ids_numerically(index):
    """What a re-flashed station numbers on from (hub/pairing.py): the highest sequence of
    each station's accepted packets, compared as numbers, whatever the date."""
    for n, enrollment, kind in (
        (1, "JB-01-20261130-000007", ACCEPTED),
        (2, "JB-01-20261128-999999", ACCEPTED),
        (3, "JB-01-20261127-1000000", ACCEPTED),  # past six digits: still the highest
        (4, "JB-01-20261201-5000000", REJECTED),  # refused: not the station's
        (5, "JB-01-20261201-00012x", ACCEPTED),  # not a number: skipped
        (6, "JB-01-x", ACCEPTED),
        (7, "OTHER-20261128-9000000", ACCEPTED),  # another station's id
    ):
        index.record_verdict(verdict(n, enrollment, kind))
    index.record_verdict(
        Verdict(sha(9), "JB-01-2-20261128-000042", "JB-01-2", ACCEPTED, None, None, T0, 1, "p")
    )
    assert index.last_sequences() == {"JB-01": 1_000_000, "JB-01-2": 42}
    assert index.last_sequences("JB-01-2") == {"JB-01-2": 42}
    assert index.last_sequences("KB-09") == {}


def test_heartbeats_refuse_replays_and_keep_the_latest(index):
    assert index.record_heartbeat(beat("JB-01", T0, backlog={"direkam": 2}, note="Kab. Bogor ✓"))
    assert not index.record_heartbeat(beat("JB-01", T0, backlog={"direkam": 9}))  # same sent_at
    assert not index.record_heartbeat(beat("JB-01", T0 - timedelta(microseconds=1)))
    assert index.record_heartbeat(beat("JB-01", T0 + timedelta(microseconds=1), backlog={}))
    index.record_heartbeat(beat("AA-09", T0))
    kept = index.heartbeats()
    assert [h.station_id for h in kept] == ["AA-09", "JB-01"]
    assert kept[1].sent_at == T0 + timedelta(microseconds=1)
    assert kept[1].body == {"station_id": "JB-01", "backlog": {}}
    first = index.heartbeats()[0]
    assert first.body == {"station_id": "AA-09"} and first.received_at == T0


def test_heartbeat_bodies_come_back_as_sent(index):
    body = {"modules": [{"serial": "A\u0000B", "failures": 0}], "ratio": 0.1, "nik": "Rp 1.000"}
    index.record_heartbeat(beat("JB-01", T0, **body))
    assert index.heartbeats()[0].body == {"station_id": "JB-01", **body}


def test_a_closed_index_refuses_calls(index):
    index.close()
    index.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        index.stations()


def test_what_one_replica_writes_the_other_reads(replicas):
    a, b = replicas
    a.register_station("JB-01", KEY_A, T0)
    a.create_or_get_upload(upload(1))
    a.advance_upload(sha(1), 0, 30, "uploads/x/0")
    assert b.station_keys() == {"JB-01": KEY_A}
    assert b.get_upload(sha(1)).offset == 30
    assert b.advance_upload(sha(1), 30, 100, "uploads/x/30")
    assert [c.key for c in a.upload_chunks(sha(1))] == ["uploads/x/0", "uploads/x/30"]


# -- races between replicas ----------------------------------------------------------------


def test_two_replicas_appending_at_one_offset_exactly_one_wins(replicas):
    a, b = replicas
    rounds = 20
    for n in range(rounds):
        a.create_or_get_upload(upload(n, length=100))
    for n in range(rounds):
        results = race(
            lambda n=n: a.advance_upload(sha(n), 0, 50, f"uploads/{n}/a"),
            lambda n=n: b.advance_upload(sha(n), 0, 60, f"uploads/{n}/b"),
        )
        assert sorted(results) == [False, True], results
        winner = "a" if results[0] else "b"
        chunks = b.upload_chunks(sha(n))
        assert chunks == [Chunk(0, 50 if winner == "a" else 60, f"uploads/{n}/{winner}")]
        assert a.get_upload(sha(n)).offset == chunks[0].end


def test_many_threads_appending_at_one_offset_exactly_one_wins(replicas):
    a, b = replicas
    a.create_or_get_upload(upload(1, length=100))
    calls = [
        lambda i=i: (a if i % 2 else b).advance_upload(sha(1), 0, 10 + i, f"uploads/1/{i}")
        for i in range(8)
    ]
    results = race(*calls)
    assert results.count(True) == 1 and results.count(False) == 7, results
    (chunk,) = a.upload_chunks(sha(1))
    assert chunk.key == f"uploads/1/{results.index(True)}"
    assert a.get_upload(sha(1)).offset == chunk.end


def test_two_replicas_creating_one_upload_share_the_row(replicas):
    a, b = replicas
    for n in range(10):
        made = race(
            lambda n=n: a.create_or_get_upload(upload(n)),
            lambda n=n: b.create_or_get_upload(upload(n)),
        )
        assert made[0] == made[1] == upload(n)
    assert len(a.uploads()) == 10


def test_two_replicas_accepting_two_versions_of_an_enrollment_one_wins(replicas):
    a, b = replicas
    for n in range(10):
        enrollment = f"JB-01-20261128-{n:06d}"
        results = race(
            lambda n=n, e=enrollment: a.record_verdict(verdict(2 * n, e)),
            lambda n=n, e=enrollment: b.record_verdict(verdict(2 * n + 1, e)),
        )
        won = [r for r in results if isinstance(r, Verdict)]
        lost = [r for r in results if isinstance(r, AlreadyAccepted)]
        assert len(won) == 1 and len(lost) == 1, results
        assert lost[0].existing == won[0]
        assert a.verdict_for_enrollment(enrollment) == won[0]
    assert a.verdict_counts() == {"JB-01": {ACCEPTED: 10, REJECTED: 0}}


def test_two_replicas_judging_the_same_bytes_record_one_verdict(replicas):
    a, b = replicas
    for n in range(10):
        mine = verdict(n, f"E-{n}", ACCEPTED, T0)
        theirs = verdict(n, f"E-{n}", ACCEPTED, T0 + timedelta(seconds=1))
        results = race(lambda m=mine: a.record_verdict(m), lambda t=theirs: b.record_verdict(t))
        assert results[0] == results[1] and results[0] in (mine, theirs), results
    assert len(a.recent_verdicts(100)) == 10


def test_racing_heartbeats_keep_the_newest_and_replays_are_refused(replicas):
    a, b = replicas
    for n in range(10):
        older, newer = T0 + timedelta(seconds=2 * n), T0 + timedelta(seconds=2 * n + 1)
        results = race(
            lambda t=older: a.record_heartbeat(beat("JB-01", t, n=0)),
            lambda t=newer: b.record_heartbeat(beat("JB-01", t, n=1)),
        )
        assert results[1] is True  # the newer one is always kept
        (kept,) = a.heartbeats()
        assert (kept.sent_at, kept.body["n"]) == (newer, 1)
        same = race(
            lambda t=newer: a.record_heartbeat(beat("JB-01", t)),
            lambda t=newer: b.record_heartbeat(beat("JB-01", t)),
        )
        assert same == [False, False]  # a replay, on either replica


# -- PostgreSQL only -----------------------------------------------------------------------


def test_open_index_chooses_postgres_by_url(pg_url):
    index = open_index(pg_url, "/nonexistent")
    try:
        assert isinstance(index, PostgresIndex)
    finally:
        index.close()


def test_replicas_starting_together_make_the_schema_once(pg_url):
    opened = race(*[lambda: PostgresIndex(pg_url) for _ in range(4)])
    try:
        assert all(isinstance(index, PostgresIndex) for index in opened), opened
        opened[0].register_station("JB-01", KEY_A, T0)
        assert opened[3].station_keys() == {"JB-01": KEY_A}
    finally:
        for index in opened:
            if isinstance(index, PostgresIndex):
                index.close()


def test_a_schema_made_by_a_newer_hub_is_refused(pg_url):
    PostgresIndex(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as connection:
        connection.execute("UPDATE rekam_hub_schema SET version = 99")
    with pytest.raises(StorageError, match="schema 99 was made by a newer hub"):
        PostgresIndex(pg_url)


def test_an_unreachable_server_is_a_clear_error_without_the_password():
    url = f"postgresql://hub:s3cret@127.0.0.1:{free_port()}/rekam"
    with pytest.raises(StorageError, match="cannot connect") as failed:
        PostgresIndex(url, connect_timeout=2)
    assert "s3cret" not in str(failed.value)
    assert "hub:***@127.0.0.1" in str(failed.value)


def test_a_connection_lost_mid_life_is_an_error_then_the_index_recovers(
    postgres: PostgresServer, pg_url
):
    index = PostgresIndex(pg_url)
    try:
        index.register_station("JB-01", KEY_A, T0)
        with psycopg.connect(postgres.url(), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'kiosk-hub' AND datname = %s",
                (pg_url.rsplit("/", 1)[1],),
            )
        with pytest.raises(StorageError):
            index.station_keys()
        assert index.station_keys() == {"JB-01": KEY_A}  # a new connection
    finally:
        index.close()


def test_a_commit_is_durable_across_a_new_connection(pg_url):
    index = PostgresIndex(pg_url)
    index.record_verdict(verdict(1, "E-1"))
    index.close()
    with psycopg.connect(pg_url) as connection:
        (count,) = connection.execute(
            "SELECT count(*) FROM verdicts WHERE sha256 = %s", (sha(1),)
        ).fetchone()
    assert count == 1


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://hub:s3cret@db.prov.local:5432/rekam",
        "postgresql://hub@db.prov.local/rekam?sslmode=require&password=s3cret",
        "postgresql://hub:s3cret@[::1]:5432/rekam",
    ],
)
def test_a_database_url_is_shown_without_its_password(url):
    shown = redacted(url)
    assert "s3cret" not in shown
    assert "db.prov.local" in shown or "[::1]" in shown
