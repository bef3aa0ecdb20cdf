"""The embedded storage: blobs in a folder, the index in SQLite, shared by replicas."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta

import pytest

from hub.storage import (
    AlreadyAccepted,
    DirectoryBlobs,
    Heartbeat,
    SqliteIndex,
    StorageError,
    Upload,
    Verdict,
    open_blobs,
    open_index,
)

MOMENT = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def test_blobs_put_get_delete_and_list(tmp_path):
    blobs = DirectoryBlobs(tmp_path / "blobs")
    blobs.put("uploads/ab/000000000000-x", b"first")
    blobs.put("uploads/ab/000000000005-y", b"second")
    blobs.put("packets/ab.rekam", b"packet")
    blobs.put("packets/ab.rekam", b"replaced whole")
    assert blobs.get("packets/ab.rekam") == b"replaced whole"
    assert blobs.keys("uploads/ab/") == ["uploads/ab/000000000000-x", "uploads/ab/000000000005-y"]
    assert blobs.keys("pack") == ["packets/ab.rekam"]
    assert blobs.keys("nothing/") == []
    blobs.delete("uploads/ab/000000000000-x")
    blobs.delete("uploads/ab/000000000005-y")
    blobs.delete("uploads/ab/000000000005-y")  # absent: nothing happens
    assert not (tmp_path / "blobs" / "uploads" / "ab").exists()  # the upload's folder went
    with pytest.raises(KeyError):
        blobs.get("uploads/ab/000000000000-x")
    leftovers = [p for p in (tmp_path / "blobs").rglob("*") if p.name.startswith(".")]
    assert leftovers == []


@pytest.mark.parametrize("key", ["../escape", "/absolute", ".hidden", "a//b", "a/../b", "", "a b"])
def test_blob_keys_cannot_leave_the_folder(tmp_path, key):
    blobs = DirectoryBlobs(tmp_path / "blobs")
    with pytest.raises(ValueError):
        blobs.put(key, b"x")


def _upload(sha="a" * 64) -> Upload:
    return Upload(sha, "S-01", "S-01-20261128-000001", 100, 0, MOMENT)


def _verdict(sha: str, verdict="accepted") -> Verdict:
    return Verdict(sha, "S-01-20261128-000001", "S-01", verdict, None, None, MOMENT, 100, "k")


def _race(count: int, action) -> list:
    """``action(i)`` on ``count`` threads released together; their results."""
    results: list = [None] * count
    barrier = threading.Barrier(count)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = action(i)
        except Exception as exc:  # the race's loser is part of the result
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.fixture
def replicas(tmp_path):
    """Two indexes on one SQLite file: two hub processes sharing it."""
    made = [SqliteIndex(tmp_path / "index.sqlite3") for _ in range(2)]
    yield made
    for index in made:
        index.close()


def test_one_of_racing_appends_wins(replicas):
    replicas[0].create_or_get_upload(_upload())
    results = _race(8, lambda i: replicas[i % 2].advance_upload("a" * 64, 0, 10, f"k{i}"))
    assert results.count(True) == 1
    assert results.count(False) == 7
    (chunk,) = replicas[1].upload_chunks("a" * 64)
    assert chunk.key == f"k{results.index(True)}"
    assert replicas[0].get_upload("a" * 64).offset == 10


def test_creating_the_same_upload_twice_gives_the_one_row(replicas):
    results = _race(6, lambda i: replicas[i % 2].create_or_get_upload(_upload()))
    assert all(result == results[0] for result in results)
    assert len(replicas[0].uploads()) == 1


def test_only_one_version_of_an_enrollment_is_accepted(replicas):
    results = _race(4, lambda i: replicas[i % 2].record_verdict(_verdict(f"{i}" * 64)))
    winners = [r for r in results if isinstance(r, Verdict)]
    assert len(winners) == 1
    assert all(isinstance(r, AlreadyAccepted) for r in results if r not in winners)
    assert replicas[1].verdict_for_enrollment("S-01-20261128-000001") == winners[0]
    # rejections of the same enrollment are all kept; the accepted one is the answer
    replicas[0].record_verdict(_verdict("f" * 64, "rejected"))
    assert replicas[0].verdict_for_enrollment("S-01-20261128-000001") == winners[0]
    assert replicas[0].verdict_counts() == {"S-01": {"accepted": 1, "rejected": 1}}


def test_a_verdict_is_recorded_once_per_packet(replicas):
    first = replicas[0].record_verdict(_verdict("b" * 64, "rejected"))
    later = Verdict("b" * 64, "E", "S-01", "accepted", None, None, MOMENT, 1, "k")
    assert replicas[1].record_verdict(later) == first


def test_racing_heartbeats_with_one_sent_at_keep_one(replicas):
    beat = Heartbeat("S-01", MOMENT, MOMENT, {"n": 1})
    assert _race(6, lambda i: replicas[i % 2].record_heartbeat(beat)).count(True) == 1
    assert not replicas[0].record_heartbeat(
        Heartbeat("S-01", MOMENT - timedelta(microseconds=1), MOMENT, {})
    )
    # an offset other than UTC is the same instant, not a newer one
    same = MOMENT.astimezone(datetime.now().astimezone().tzinfo)
    assert not replicas[1].record_heartbeat(Heartbeat("S-01", same, MOMENT, {}))
    assert replicas[1].record_heartbeat(
        Heartbeat("S-01", MOMENT + timedelta(microseconds=1), MOMENT, {"n": 2})
    )
    assert replicas[0].heartbeats()[0].body == {"n": 2}


def test_an_index_from_a_newer_hub_is_refused(tmp_path):
    SqliteIndex(tmp_path / "index.sqlite3").close()
    with sqlite3.connect(tmp_path / "index.sqlite3") as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(StorageError, match="newer hub"):
        SqliteIndex(tmp_path / "index.sqlite3")


def test_a_damaged_index_is_a_storage_error(tmp_path):
    (tmp_path / "index.sqlite3").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StorageError, match="cannot be opened"):
        SqliteIndex(tmp_path / "index.sqlite3")


def test_backends_are_chosen_by_url(tmp_path):
    index = open_index(None, tmp_path)
    assert isinstance(index, SqliteIndex)
    assert index.path == tmp_path / "index.sqlite3"
    index.close()
    other = open_index(f"sqlite://{tmp_path}/other.sqlite3", tmp_path)
    assert other.path == tmp_path / "other.sqlite3"
    other.close()
    assert open_blobs(None, tmp_path).path == tmp_path / "blobs"
    assert open_blobs(f"file://{tmp_path}/elsewhere", tmp_path).path == tmp_path / "elsewhere"
    with pytest.raises(StorageError, match="postgresql://"):
        open_index("mysql://hub", tmp_path)
    with pytest.raises(StorageError, match="s3://"):
        open_blobs("ftp://hub", tmp_path)


def test_deleting_a_piece_whose_folder_another_request_just_removed(tmp_path, monkeypatch):
    """Two requests finishing one upload delete its pieces at once: the folder can
    vanish between one's unlink and its fsync of the folder (a 500 once, in CI)."""
    import hub.storage

    blobs = DirectoryBlobs(tmp_path / "blobs")
    blobs.put("uploads/abc/0", b"piece")
    real_fsync_dir = hub.storage.fsync_dir

    def other_request_first(path):
        path.rmdir()  # the other request removed the emptied folder
        real_fsync_dir(path)

    monkeypatch.setattr(hub.storage, "fsync_dir", other_request_first)
    blobs.delete("uploads/abc/0")  # no FileNotFoundError
    assert not (tmp_path / "blobs" / "uploads" / "abc").exists()
    assert list(blobs.keys("uploads/")) == []
