"""The local store: sealed packets only; what is committed is kept whole, whatever
happens to the station; what is damaged is set aside and reported, never dropped."""

from __future__ import annotations

import copy
import dataclasses
import errno
import hashlib
import json
import logging
import os
import random
import shutil
import sqlite3
import stat
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support import (
    TEST_HUB,
    TEST_STATION_KEY,
    VALID_NIK,
    PacketCatcher,
    stored_packet,
    test_sealer,
)

from kiosk.cli import main as kiosk_main
from kiosk.errors import StoreError
from kiosk.packet.build import Packet
from kiosk.packet.keys import station_public_bytes
from kiosk.packet.seal import MAGIC, open_sealed
from kiosk.simulate import enroll_one
from kiosk.store.export import export_packets
from kiosk.store.preflight import MIN_FREE_BYTES, check_data_dir
from kiosk.store.sqlite import (
    INDEX_NAME,
    PROVISIONED_MARKER,
    ROOM_FOR_ONE_BYTES,
    SCHEMA_VERSION,
    SEQUENCE_FLOOR,
    EnrollmentStore,
    PacketState,
    full_disk_message,
)

MB = 1024 * 1024


@pytest.fixture
def packet(make_flow) -> Packet:
    """A complete packet from the real flow on fake modules."""
    catcher = PacketCatcher()
    enroll_one(make_flow(sink=catcher), VALID_NIK)
    return catcher.packets[0]


def renamed(packet: Packet, enrollment_id: str, sequence: int | None = None, **manifest) -> Packet:
    """A copy of ``packet`` under another id (and sequence, and manifest fields, if given)."""
    changed = copy.deepcopy(packet.manifest)
    changed["enrollment_id"] = enrollment_id
    if sequence is not None:
        changed["sequence"] = sequence
    changed.update(manifest)
    return dataclasses.replace(packet, enrollment_id=enrollment_id, manifest=changed)


def eid(n: int) -> str:
    return f"TEST-01-20261128-{n:06d}"


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def names(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()}


def reopened(store: EnrollmentStore) -> EnrollmentStore:
    """Close ``store`` and open its folder again, as the next start of the kiosk does."""
    store.close()
    return EnrollmentStore(store.data_dir, store.sealer)


def assert_nothing_half_written(store: EnrollmentStore) -> None:
    """No temp file, and packets/ holds exactly the files of the rows on disk, whole."""
    on_disk = store.on_disk()
    assert names(store.packets_dir) == {stored.path.name for stored in on_disk}
    for stored in on_disk:
        assert stored_packet(store, stored.enrollment_id).enrollment_id == stored.enrollment_id


@pytest.fixture
def open_umask():
    """The loosest umask a service could run with: every file world-readable by default."""
    old = os.umask(0)
    yield
    os.umask(old)


# -- keeping enrollments ----------------------------------------------------------


def test_a_saved_enrollment_comes_back_whole(store, packet):
    assert store.count() == 0
    store.save(packet)
    assert store.count() == 1
    assert stored_packet(store, packet.enrollment_id) == packet
    stored = store.packet(packet.enrollment_id)
    assert stored.state is PacketState.SEALED
    assert stored.station_id == "TEST-01"
    assert stored.path.read_bytes().startswith(MAGIC)
    assert stored.size == stored.path.stat().st_size


def test_an_unknown_enrollment_is_not_there(store):
    assert store.packet(eid(99)) is None
    assert stored_packet(store, eid(99)) is None
    with pytest.raises(StoreError, match="no such packet"):
        store.read_sealed(eid(99))


def test_enrollments_survive_closing_and_reopening(tmp_path, packet):
    first = EnrollmentStore(tmp_path / "kiosk", test_sealer())  # the folder is made on first use
    first.save(packet)
    first.save(renamed(packet, eid(11)))
    first.close()
    again = EnrollmentStore(tmp_path / "kiosk")  # as `kiosk sync` opens it: no keys
    try:
        assert again.problems == []
        assert again.count() == 2
        assert stored_packet(again, packet.enrollment_id) == packet
        assert stored_packet(again, eid(11)).files == packet.files
    finally:
        again.close()


def test_the_index_runs_in_wal_mode_with_full_sync(store):
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_saves_from_several_threads_all_land(store, packet):
    errors = []

    def save(n: int) -> None:
        try:
            store.save(renamed(packet, eid(n), sequence=n))
        except Exception as exc:  # collected: a thread's exception would be lost
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(n,)) for n in range(1, 7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.count() == 6
    assert store.last_sequence() == 6
    assert_nothing_half_written(store)


def test_the_index_keeps_no_clear_data(store, packet):
    store.save(packet)
    wal = store.path.with_name(INDEX_NAME + "-wal").read_bytes()  # the row is here first
    store.close()
    index = store.path.read_bytes() + wal  # and here after the checkpoint
    assert packet.manifest["nik"].encode() not in index
    assert b"face" not in index  # no file names, no manifest


def test_opening_the_store_while_another_saves_never_takes_a_save_for_an_orphan(tmp_path, packet):
    """`kiosk sync` and `kiosk export` open the folder while the kiosk saves: their
    check of the files waits for a save's commit, never sees its file half-done."""
    kiosk = EnrollmentStore(tmp_path / "kiosk", test_sealer())
    done = threading.Event()
    errors = []

    def save_many() -> None:
        try:
            for n in range(1, 21):
                kiosk.save(renamed(packet, eid(n), sequence=n))
        except Exception as exc:  # collected: a thread's exception would be lost
            errors.append(exc)
        finally:
            done.set()

    saver = threading.Thread(target=save_many)
    saver.start()
    openings = 0
    try:
        while not done.is_set() or openings == 0:
            other = EnrollmentStore(tmp_path / "kiosk")  # its own connection, as a process
            try:
                assert other.problems == []
                assert other.backlog()[PacketState.QUARANTINED] == 0
            finally:
                other.close()
            openings += 1
    finally:
        saver.join()
    try:
        assert errors == []
        assert kiosk.count() == 20
        assert kiosk.problems == []
        assert_nothing_half_written(kiosk)
    finally:
        kiosk.close()


# -- privacy -------------------------------------------------------------------------


def test_the_data_folders_and_files_are_private_whatever_the_umask(tmp_path, packet, open_umask):
    data = tmp_path / "kiosk"
    store = EnrollmentStore(data, test_sealer())
    try:
        store.save(packet)
        for folder in (data, data / "packets", data / "quarantine"):
            assert mode(folder) == 0o700, folder
        for name in (INDEX_NAME, INDEX_NAME + "-wal", INDEX_NAME + "-shm"):
            assert mode(data / name) == 0o600, name
        assert mode(store.packet(packet.enrollment_id).path) == 0o600
    finally:
        store.close()


def test_an_existing_index_readable_by_others_is_made_private(tmp_path, packet, open_umask):
    data = tmp_path / "kiosk"
    data.mkdir()
    with sqlite3.connect(data / INDEX_NAME) as db:  # as a careless copy left it
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (x)")
    for name in (INDEX_NAME, INDEX_NAME + "-wal", INDEX_NAME + "-shm"):
        if (data / name).exists():
            (data / name).chmod(0o644)
    store = EnrollmentStore(data, test_sealer())
    try:
        store.save(packet)
        for name in (INDEX_NAME, INDEX_NAME + "-wal", INDEX_NAME + "-shm"):
            assert mode(data / name) == 0o600, name
    finally:
        store.close()


# -- sequence and retries -----------------------------------------------------------


def test_a_new_store_has_sequence_zero(store):
    assert store.last_sequence() == 0


def test_last_sequence_is_the_highest_committed(store, packet):
    store.save(renamed(packet, eid(3), sequence=3))
    assert store.last_sequence() == 3
    store.save(renamed(packet, eid(1), sequence=1))  # never goes back
    assert store.last_sequence() == 3


def test_last_sequence_survives_purge_and_reopening(store, packet):
    store.save(renamed(packet, eid(7), sequence=7))
    store.record_verdict(eid(7), accepted=True)
    assert store.purge(30, now=datetime.now(UTC) + timedelta(days=31)) == 1
    again = reopened(store)
    try:
        assert again.packet(eid(7)).state is PacketState.PURGED
        assert again.last_sequence() == 7
    finally:
        again.close()


def test_last_sequence_survives_rows_deleted_behind_its_back(tmp_path, packet):
    store = EnrollmentStore(tmp_path / "kiosk", test_sealer())
    store.save(renamed(packet, eid(7), sequence=7))
    store.close()
    with sqlite3.connect(store.path) as db:
        db.execute("DELETE FROM packets")
    again = EnrollmentStore(tmp_path / "kiosk")
    try:
        assert again.count() == 0
        assert again.last_sequence() == 7
    finally:
        again.close()


def write_marker(data_dir: Path, text: str) -> None:
    """The provisioning marker (kiosk/provision/station.py) as ``kiosk provision`` leaves it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / PROVISIONED_MARKER).write_text(text)


def test_a_sequence_floor_above_the_counter_raises_it_once(tmp_path, packet, caplog):
    """A re-flashed station: provisioning wrote the hub's last sequence plus the margin."""
    data = tmp_path / "kiosk"
    write_marker(data, json.dumps({"station_id": "TEST-01", SEQUENCE_FLOOR: 1042}))
    with caplog.at_level(logging.WARNING, logger="kiosk.store.sqlite"):
        store = EnrollmentStore(data, test_sealer())
    assert store.last_sequence() == 1042
    assert [r.getMessage() for r in caplog.records if "counter raised" in r.getMessage()] == [
        f"enrollment counter raised from 0 to 1042 ({SEQUENCE_FLOOR} of "
        f"{data / PROVISIONED_MARKER}): this station's next enrollment is numbered 1043"
    ]
    store.save(renamed(packet, eid(1043), sequence=1043))
    caplog.clear()
    again = reopened(store)  # the next start: above the floor already, nothing logged
    try:
        assert again.last_sequence() == 1043
        assert not [r for r in caplog.records if "counter raised" in r.getMessage()]
    finally:
        again.close()


def test_a_sequence_floor_below_the_counter_changes_nothing(tmp_path, packet):
    data = tmp_path / "kiosk"
    store = EnrollmentStore(data, test_sealer())
    store.save(renamed(packet, eid(7), sequence=7))
    store.close()
    write_marker(data, json.dumps({SEQUENCE_FLOOR: 5}))
    again = EnrollmentStore(data, test_sealer())
    try:
        assert again.last_sequence() == 7
    finally:
        again.close()
    write_marker(data, json.dumps({"station_id": "TEST-01"}))  # no floor: as before
    again = EnrollmentStore(data)
    try:
        assert again.last_sequence() == 7
    finally:
        again.close()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"sequence_floor": 10', "cannot be read"),
        ("\xff\xfe", "cannot be read"),
        ("[1042]", "not a JSON object"),
        ('{"sequence_floor": "1042"}', "not a whole number"),
        ('{"sequence_floor": -3}', "not a whole number"),
        ('{"sequence_floor": true}', "not a whole number"),
        ('{"sequence_floor": 1e400}', "not a whole number"),
        ('{"sequence_floor": 99999999999999999999999999}', "not a whole number"),
    ],
)
def test_a_damaged_marker_is_ignored_with_a_log_line(tmp_path, packet, caplog, text, words):
    data = tmp_path / "kiosk"
    write_marker(data, text)
    with caplog.at_level(logging.ERROR, logger="kiosk.store.sqlite"):
        store = EnrollmentStore(data, test_sealer())
    try:
        lines = [r.getMessage() for r in caplog.records if PROVISIONED_MARKER in r.getMessage()]
        assert len(lines) == 1 and words in lines[0], lines
        assert store.last_sequence() == 0
        store.save(renamed(packet, eid(1), sequence=1))  # the store works
        assert store.last_sequence() == 1
    finally:
        store.close()


def test_a_refused_save_does_not_move_the_sequence(store, packet, monkeypatch):
    store.save(renamed(packet, eid(1), sequence=1))
    monkeypatch.setattr(store, "_free_bytes", lambda: 0)
    with pytest.raises(StoreError, match="disk is full"):
        store.save(renamed(packet, eid(2), sequence=2))
    assert store.last_sequence() == 1
    assert store.packet(eid(2)) is None
    assert_nothing_half_written(store)


def test_a_retried_save_is_a_success_that_stores_nothing_new(store, packet, caplog):
    store.save(packet)
    sealed = store.read_sealed(packet.enrollment_id)
    # The flow builds the packet again on a retry: a later finished_at, same enrollment.
    retry = renamed(packet, packet.enrollment_id, finished_at="2026-11-28T09:31:00+00:00")
    with caplog.at_level(logging.INFO, logger="kiosk.store"):
        store.save(retry)
    assert store.count() == 1
    assert store.read_sealed(packet.enrollment_id) == sealed  # the first, untouched
    assert stored_packet(store, packet.enrollment_id) == packet
    assert len(names(store.packets_dir)) == 1
    assert any(
        record.levelno == logging.INFO
        and "already stored" in record.getMessage()
        and packet.enrollment_id in record.getMessage()
        for record in caplog.records
    )


# -- refusing ------------------------------------------------------------------------


def test_a_different_enrollment_under_a_stored_id_is_refused_and_the_first_kept(store, packet):
    store.save(packet)
    sealed = store.read_sealed(packet.enrollment_id)
    impostor = dataclasses.replace(
        renamed(packet, packet.enrollment_id, nik="3201010203900002"),
        files={"face.jpg": b"not a face"},
    )
    with pytest.raises(StoreError, match="already stored") as caught:
        store.save(impostor)
    assert packet.enrollment_id in str(caught.value)
    assert store.count() == 1
    assert store.read_sealed(packet.enrollment_id) == sealed
    assert stored_packet(store, packet.enrollment_id) == packet
    store.save(renamed(packet, eid(12)))  # the store still works
    assert store.count() == 2


def test_a_store_opened_without_keys_cannot_save(tmp_path, packet):
    store = EnrollmentStore(tmp_path / "kiosk")
    try:
        with pytest.raises(StoreError, match="opened without the station's keys"):
            store.save(packet)
        assert store.count() == 0
        assert names(store.packets_dir) == set()
    finally:
        store.close()


# -- a damaged index -----------------------------------------------------------------


def test_a_corrupt_index_is_reported_and_left_alone(tmp_path):
    data = tmp_path / "kiosk"
    data.mkdir()
    path = data / INDEX_NAME
    garbage = random.Random(7).randbytes(8192)
    path.write_bytes(garbage)
    with pytest.raises(StoreError) as caught:
        EnrollmentStore(data)
    message = str(caught.value)
    assert message.startswith(f"{path}: the index is damaged")
    assert "do not delete it" in message
    assert "\n" not in message
    assert not isinstance(caught.value, sqlite3.Error)
    assert path.read_bytes() == garbage  # evidence for the technician, untouched


def test_an_index_with_damaged_pages_is_reported(tmp_path, packet):
    store = EnrollmentStore(tmp_path / "kiosk", test_sealer())
    store.save(packet)
    store.close()  # folds the WAL back into the file
    data = bytearray(store.path.read_bytes())
    data[100:] = bytes(len(data) - 100)  # keep the header, wipe every page
    store.path.write_bytes(data)
    with pytest.raises(StoreError, match="the index is damaged"):
        EnrollmentStore(tmp_path / "kiosk")
    assert store.path.read_bytes() == data
    assert names(tmp_path / "kiosk" / "packets") == {f"{packet.enrollment_id}.rekam"}  # kept


def test_a_store_from_a_newer_kiosk_is_refused(tmp_path):
    data = tmp_path / "kiosk"
    data.mkdir()
    with sqlite3.connect(data / INDEX_NAME) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError) as caught:
        EnrollmentStore(data)
    message = str(caught.value)
    assert message.startswith(f"{data / INDEX_NAME}: made by a newer kiosk (schema 99")
    assert "update the kiosk software" in message
    with sqlite3.connect(data / INDEX_NAME) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 99  # not downgraded


def test_a_store_under_a_file_cannot_be_opened(tmp_path):
    (tmp_path / "kiosk").write_text("a file where the data folder should be")
    with pytest.raises(StoreError) as caught:
        EnrollmentStore(tmp_path / "kiosk")
    assert str(caught.value) == (
        f"{tmp_path / 'kiosk'}: not a folder; set station.data_dir to a folder, "
        "or move that file away"
    )
    assert (tmp_path / "kiosk").read_text() == "a file where the data folder should be"


def test_a_file_where_the_packets_folder_should_be_is_named(tmp_path):
    (tmp_path / "kiosk").mkdir()
    (tmp_path / "kiosk" / "packets").write_text("not a folder")
    with pytest.raises(StoreError, match=r"kiosk/packets: not a folder; "):
        EnrollmentStore(tmp_path / "kiosk")


# -- damaged packet files ------------------------------------------------------------


def three_saved(store: EnrollmentStore, packet: Packet) -> list[Path]:
    for n in (1, 2, 3):
        store.save(renamed(packet, eid(n), sequence=n))
    return [store.packet(eid(n)).path for n in (1, 2, 3)]


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(data)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])


@pytest.mark.parametrize(
    ("damage", "reason", "moved"),
    [
        (flip_a_byte, "its content changed since it was written (damaged)", True),
        (truncate, "bytes where", True),
        (Path.unlink, "missing", False),
    ],
    ids=["flipped-byte", "truncated", "deleted"],
)
def test_a_damaged_packet_is_quarantined_at_open_with_its_reason(
    store, packet, damage, reason, moved
):
    paths = three_saved(store, packet)
    damage(paths[1])
    store = reopened(store)
    try:
        [problem] = store.problems
        assert problem.startswith(f"{paths[1].name}: ")
        assert reason in problem and "quarantine" in problem
        stored = store.packet(eid(2))
        assert stored.state is PacketState.QUARANTINED
        assert reason in stored.reason
        assert names(store.packets_dir) == {paths[0].name, paths[2].name}
        assert names(store.quarantine_dir) == ({paths[1].name} if moved else set())
        assert [p.enrollment_id for p in store.waiting()] == [eid(1), eid(3)]
        assert store.count() == 2
        assert store.backlog()[PacketState.QUARANTINED] == 1
        for n in (1, 3):  # the others are whole
            assert stored_packet(store, eid(n)).enrollment_id == eid(n)
        with pytest.raises(StoreError, match="no such packet"):
            store.read_sealed(eid(2))
    finally:
        store.close()
    again = EnrollmentStore(store.data_dir)  # reported once, not again at every start
    try:
        assert again.problems == []
        assert again.packet(eid(2)).state is PacketState.QUARANTINED
    finally:
        again.close()


def test_a_stray_file_in_packets_is_quarantined_at_open(store, packet):
    three_saved(store, packet)
    stray = store.packets_dir / "TEST-01-20261128-000099.rekam"
    stray.write_bytes(b"a file no save wrote")
    store = reopened(store)
    try:
        [problem] = store.problems
        assert problem.startswith(f"{stray.name}: no index entry names it")
        assert not stray.exists()
        assert (store.quarantine_dir / stray.name).read_bytes() == b"a file no save wrote"
        assert store.count() == 3
        assert_nothing_half_written(store)
    finally:
        store.close()


def test_stray_files_of_one_name_are_all_kept_in_quarantine(store, packet):
    stray = store.packets_dir / "stray.rekam"
    for content in (b"first", b"second"):
        stray.write_bytes(content)
        store = reopened(store)
    try:
        quarantined = {path.read_bytes() for path in store.quarantine_dir.iterdir()}
        assert quarantined == {b"first", b"second"}
    finally:
        store.close()


def test_a_file_that_matches_the_index_but_is_no_sealed_packet_is_quarantined(store, packet):
    [path, *_] = three_saved(store, packet)
    garbage = b"x" * 1000
    path.write_bytes(garbage)
    with sqlite3.connect(store.path) as db:  # as if the index itself had been forged
        db.execute(
            "UPDATE packets SET sha256 = ?, size = ? WHERE enrollment_id = ?",
            (hashlib.sha256(garbage).hexdigest(), len(garbage), eid(1)),
        )
    store = reopened(store)
    try:
        assert store.packet(eid(1)).reason == "not a sealed packet"
        assert (store.quarantine_dir / path.name).read_bytes() == garbage
    finally:
        store.close()


def test_a_write_cut_short_leaves_a_temp_file_that_open_removes(store, packet):
    three_saved(store, packet)
    temp = store.packets_dir / ".TEST-01-20261128-000004.rekam.1a2b3c4d.tmp"
    temp.write_bytes(b"REKAMPKT half a packet")
    store = reopened(store)
    try:
        assert not temp.exists()
        assert store.problems == []  # never committed, never receipted: nothing lost
        assert_nothing_half_written(store)
    finally:
        store.close()


def test_a_packet_damaged_after_opening_is_quarantined_when_read(store, packet):
    paths = three_saved(store, packet)
    flip_a_byte(paths[0])
    with pytest.raises(StoreError) as caught:
        store.read_sealed(eid(1))
    message = str(caught.value)
    assert message.startswith(f"{paths[0]}: its content changed")
    assert str(store.quarantine_dir) in message
    stored = store.packet(eid(1))
    assert stored.state is PacketState.QUARANTINED
    assert "changed" in stored.reason
    assert (store.quarantine_dir / paths[0].name).exists()
    assert not paths[0].exists()
    assert [p.enrollment_id for p in store.waiting()] == [eid(2), eid(3)]


def test_a_packet_truncated_after_opening_is_quarantined_when_read(store, packet):
    paths = three_saved(store, packet)
    truncate(paths[2])
    with pytest.raises(StoreError, match="truncated or damaged"):
        store.read_sealed(eid(3))
    assert store.packet(eid(3)).state is PacketState.QUARANTINED
    assert names(store.quarantine_dir) == {paths[2].name}


def test_a_packet_deleted_after_opening_is_quarantined_when_read(store, packet):
    paths = three_saved(store, packet)
    paths[0].unlink()
    with pytest.raises(StoreError, match="cannot be read"):
        store.read_sealed(eid(1))
    assert store.packet(eid(1)).state is PacketState.QUARANTINED


# -- states --------------------------------------------------------------------------


def test_a_packet_goes_sealed_sent_acknowledged(store, packet):
    store.save(packet)
    enrollment_id = packet.enrollment_id
    assert store.packet(enrollment_id).state is PacketState.SEALED
    store.mark_sent(enrollment_id)
    assert store.packet(enrollment_id).state is PacketState.SENT
    store.record_verdict(enrollment_id, accepted=True)
    stored = store.packet(enrollment_id)
    assert stored.state is PacketState.ACKNOWLEDGED
    assert stored.reason is None
    assert store.waiting() == []
    store.mark_sent(enrollment_id)  # a late mark from a slow sender changes nothing
    assert store.packet(enrollment_id).state is PacketState.ACKNOWLEDGED
    assert stored_packet(store, enrollment_id) == packet  # still on disk until purged


def test_a_rejected_packet_keeps_its_reason_across_a_reopening(store, packet):
    store.save(packet)
    store.mark_sent(packet.enrollment_id)
    store.record_verdict(packet.enrollment_id, accepted=False, reason="bad signature")
    store = reopened(store)
    try:
        stored = store.packet(packet.enrollment_id)
        assert stored.state is PacketState.REJECTED
        assert stored.reason == "bad signature"
        assert store.waiting() == []
        assert [p.enrollment_id for p in store.on_disk()] == [packet.enrollment_id]
        store.record_verdict(packet.enrollment_id, accepted=True)  # decided once
        assert store.packet(packet.enrollment_id).state is PacketState.REJECTED
    finally:
        store.close()


def test_waiting_lists_sealed_and_sent_packets_oldest_first(store, packet):
    for n in (5, 2, 9, 4):  # saved in this order
        store.save(renamed(packet, eid(n), sequence=n))
    store.mark_sent(eid(2))
    store.record_verdict(eid(9), accepted=True)
    store.record_verdict(eid(4), accepted=False, reason="duplicate")
    assert [p.enrollment_id for p in store.waiting()] == [eid(5), eid(2)]
    assert [p.state for p in store.waiting()] == [PacketState.SEALED, PacketState.SENT]
    assert [p.enrollment_id for p in store.on_disk()] == [eid(5), eid(2), eid(9), eid(4)]


def test_backlog_counts_every_state(store, packet):
    assert store.backlog() == dict.fromkeys(PacketState, 0)
    for n in range(1, 7):
        store.save(renamed(packet, eid(n), sequence=n))
    store.mark_sent(eid(2))
    store.mark_sent(eid(3))
    store.record_verdict(eid(3), accepted=True)
    store.record_verdict(eid(4), accepted=True)
    store.record_verdict(eid(5), accepted=False, reason="unknown station")
    store.packet(eid(6)).path.unlink()
    with pytest.raises(StoreError):
        store.read_sealed(eid(6))
    assert store.backlog() == {
        PacketState.SEALED: 1,
        PacketState.SENT: 1,
        PacketState.ACKNOWLEDGED: 2,
        PacketState.REJECTED: 1,
        PacketState.QUARANTINED: 1,
        PacketState.PURGED: 0,
    }
    store.purge(0, now=datetime.now(UTC) + timedelta(seconds=1))
    assert store.backlog()[PacketState.ACKNOWLEDGED] == 0
    assert store.backlog()[PacketState.PURGED] == 2


def test_purge_deletes_only_acknowledged_files_older_than_the_days(store, packet):
    states = {
        1: PacketState.SEALED,
        2: PacketState.SENT,
        3: PacketState.ACKNOWLEDGED,
        4: PacketState.REJECTED,
        5: PacketState.ACKNOWLEDGED,
    }
    for n in states:
        store.save(renamed(packet, eid(n), sequence=n))
    store.mark_sent(eid(2))
    store.record_verdict(eid(3), accepted=True)
    store.record_verdict(eid(4), accepted=False, reason="bad signature")
    with sqlite3.connect(store.path) as db:  # acknowledged 40 days ago, the other just now
        long_ago = (datetime.now(UTC) - timedelta(days=40)).isoformat()
        db.execute("UPDATE packets SET changed_at = ? WHERE enrollment_id != ?", (long_ago, eid(5)))
    store.record_verdict(eid(5), accepted=True)
    paths = {n: store.packet(eid(n)).path for n in states}

    assert store.purge(30) == 1
    assert store.packet(eid(3)).state is PacketState.PURGED
    assert not paths[3].exists()
    for n in (1, 2, 4, 5):  # sealed, sent, rejected, and acknowledged too recently
        assert store.packet(eid(n)).state is states[n]
        assert paths[n].exists()
    assert store.purge(30) == 0

    in_a_year = datetime.now(UTC) + timedelta(days=365)
    assert store.purge(30, now=in_a_year) == 1  # only the other acknowledged one
    for n in (1, 2, 4):  # never purged, however old: the hub has not got them
        assert store.packet(eid(n)).state is states[n]
        assert stored_packet(store, eid(n)).enrollment_id == eid(n)
    assert store.count() == 5  # purged rows stay
    assert store.last_sequence() == 5
    with pytest.raises(StoreError, match="no such packet"):
        store.read_sealed(eid(3))
    store = reopened(store)  # a purged file is not missing
    try:
        assert store.problems == []
        assert names(store.packets_dir) == {paths[n].name for n in (1, 2, 4)}
    finally:
        store.close()


class PowerCut(BaseException):
    """The process stops here (a power cut): nothing after it runs."""


class CutAtPurgeUpdate:
    """The store's connection, with the power cut at a purge's UPDATE."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def execute(self, sql: str, *args):
        if sql.startswith("UPDATE packets SET state = ?, changed_at = ?"):
            raise PowerCut
        return self.db.execute(sql, *args)

    def __getattr__(self, name: str):
        return getattr(self.db, name)


def acknowledged_long_ago(store: EnrollmentStore, packet: Packet) -> Path:
    store.save(packet)
    store.record_verdict(packet.enrollment_id, accepted=True)
    return store.packet(packet.enrollment_id).path


@pytest.mark.parametrize("where", ["at the row", "at the unlink"])
def test_a_purge_cut_short_anywhere_leaves_no_false_alarm(store, packet, monkeypatch, where):
    path = acknowledged_long_ago(store, packet)
    later = datetime.now(UTC) + timedelta(days=31)
    if where == "at the row":
        real, store._db = store._db, CutAtPurgeUpdate(store._db)
    else:
        monkeypatch.setattr(Path, "unlink", lambda *_, **__: (_ for _ in ()).throw(PowerCut))
    with pytest.raises(PowerCut):
        store.purge(30, now=later)
    if where == "at the row":
        store._db = real
    monkeypatch.undo()
    store = reopened(store)
    try:
        assert store.problems == []  # no "missing" packet for a technician to chase
        assert names(store.quarantine_dir) == set()
        state = store.packet(packet.enrollment_id).state
        assert state in (PacketState.ACKNOWLEDGED, PacketState.PURGED)
        assert path.exists() == (state is PacketState.ACKNOWLEDGED)
        store.purge(30, now=later)  # and the purge can be done again
        assert store.packet(packet.enrollment_id).state is PacketState.PURGED
        assert not path.exists()
    finally:
        store.close()


def test_opening_deletes_the_file_of_a_purged_packet(store, packet):
    """A purge cut between its row and its unlink: opening finishes it."""
    path = acknowledged_long_ago(store, packet)
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE packets SET state = 'purged'")
    store = reopened(store)
    try:
        assert not path.exists()
        assert store.problems == []
        assert names(store.quarantine_dir) == set()
        assert store.packet(packet.enrollment_id).state is PacketState.PURGED
    finally:
        store.close()


def test_today_counts_the_days_enrollments_and_their_median_time(store, packet):
    for n, seconds in ((1, 100.0), (2, 140.0), (3, 180.0)):
        store.save(renamed(packet, eid(n), sequence=n, step_seconds={"face": 10.0, "nik": seconds}))
    store.save(renamed(packet, eid(4), sequence=4, step_seconds={}))  # no timing: counted only
    figures = store.today()
    assert figures == {"enrolled": 4, "median_seconds_per_citizen": 150.0}
    tomorrow = datetime.now(UTC) + timedelta(days=1, hours=1)
    assert store.today(now=tomorrow) == {"enrolled": 0, "median_seconds_per_citizen": None}
    store.packet(eid(3)).path.unlink()
    with pytest.raises(StoreError):
        store.read_sealed(eid(3))  # quarantined: not counted
    assert store.today() == {"enrolled": 3, "median_seconds_per_citizen": 130.0}


def test_station_id_is_the_newest_packets(store, packet):
    assert store.station_id() is None
    store.save(packet)
    assert store.station_id() == "TEST-01"


# -- a full disk: a real small filesystem ----------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """mount(size) -> the folder of a new tmpfs of ``size`` bytes, unmounted after."""
    mounted = []

    def mount(size: int) -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root (CI runs these as root)")
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(disk: Path, leave: int) -> Path:
    """Write a ballast file on ``disk`` so that about ``leave`` bytes stay free."""
    ballast = disk / "ballast"
    ballast.unlink(missing_ok=True)
    free = shutil.disk_usage(disk).free
    with open(ballast, "wb") as file:
        file.write(bytes(max(0, free - leave)))
    return ballast


def check_refusal(refusal: StoreError, store: EnrollmentStore) -> None:
    message = str(refusal)
    assert message == full_disk_message(store.data_dir)
    assert "disk is full" in message and "kiosk export --to DIR" in message
    assert "\n" not in message


def test_saves_until_the_disk_is_full_then_a_clear_refusal_and_then_saves_again(small_disk, packet):
    disk = small_disk(12 * MB)
    ballast = disk / "ballast"
    ballast.write_bytes(bytes(2 * MB))  # what the technician frees later
    store = EnrollmentStore(disk / "data", test_sealer())
    try:
        assert not store.has_room()  # 12 MB is short of the 20 MB a citizen may start with
        saved = []
        with pytest.raises(StoreError) as caught:
            for n in range(1, 200):
                store.save(renamed(packet, eid(n), sequence=n))
                saved.append(eid(n))
        check_refusal(caught.value, store)
        assert len(saved) >= 10  # the disk took packets until it was full
        refused = eid(len(saved) + 1)
        assert store.packet(refused) is None
        assert store.last_sequence() == len(saved)
        assert_nothing_half_written(store)
        assert [p.enrollment_id for p in store.waiting()] == saved

        store = reopened(store)  # it opens on a full disk, and finds nothing amiss
        assert store.problems == []
        assert [p.enrollment_id for p in store.on_disk()] == saved

        ballast.unlink()  # space freed
        store.save(renamed(packet, refused, sequence=len(saved) + 1))
        assert stored_packet(store, refused).enrollment_id == refused
        assert_nothing_half_written(store)
    finally:
        store.close()


def test_a_disk_that_fills_in_the_write_or_the_commit_leaves_nothing_half_written(
    small_disk, packet, monkeypatch
):
    """The store's own check passed (another process filled the disk meanwhile): the
    file's write or the index's commit meets the full disk itself."""
    disk = small_disk(6 * MB)
    store = EnrollmentStore(disk / "data", test_sealer())
    monkeypatch.setattr(store, "_free_bytes", lambda: 2**40)
    try:
        store.save(renamed(packet, eid(1), sequence=1))
        size = store.packet(eid(1)).size
        causes = set()
        n = 1
        for leave in range(size - 64 * 1024, size + 64 * 1024, 4096):
            ballast = fill(disk, leave)
            n += 1
            try:
                store.save(renamed(packet, eid(n), sequence=n))
            except StoreError as exc:
                check_refusal(exc, store)
                cause = exc.__cause__
                causes.add(getattr(cause, "sqlite_errorname", None) or errno.errorcode[cause.errno])
                assert store.packet(eid(n)) is None
                assert store.last_sequence() == n - 1
                n -= 1  # the flow tries the same enrollment again
            assert_nothing_half_written(store)
            ballast.unlink()
        assert causes == {"ENOSPC", "SQLITE_FULL"}  # both places met the full disk
        store = reopened(store)
        assert store.problems == []
        assert store.count() == n
        assert_nothing_half_written(store)
    finally:
        store.close()


def test_has_room_says_whether_one_more_enrollment_fits(small_disk):
    disk = small_disk(ROOM_FOR_ONE_BYTES + 4 * MB)
    store = EnrollmentStore(disk / "data", test_sealer())
    try:
        assert store.has_room()
        ballast = fill(disk, ROOM_FOR_ONE_BYTES - MB)
        assert not store.has_room()
        ballast.unlink()
        assert store.has_room()
    finally:
        store.close()


def test_a_save_that_would_leave_no_headroom_is_refused_before_writing(store, packet, monkeypatch):
    store.save(packet)
    size = store.packet(packet.enrollment_id).size
    real = shutil.disk_usage

    def nearly_full(path):  # room for the packet, not for the index's own growth
        return real(path)._replace(free=size + 1024)

    monkeypatch.setattr(shutil, "disk_usage", nearly_full)
    second = renamed(packet, eid(14))
    with pytest.raises(StoreError) as caught:
        store.save(second)
    check_refusal(caught.value, store)
    assert not store.has_room()
    assert store.count() == 1
    assert_nothing_half_written(store)
    monkeypatch.setattr(shutil, "disk_usage", real)
    store.save(second)
    assert store.count() == 2


def test_after_a_full_disk_kiosk_export_copies_every_committed_packet(
    small_disk, packet, tmp_path, capsys
):
    disk = small_disk(8 * MB)
    store = EnrollmentStore(disk / "data", test_sealer())
    try:
        saved = []
        with pytest.raises(StoreError, match="kiosk export --to DIR"):
            for n in range(1, 100):
                store.save(renamed(packet, eid(n), sequence=n))
                saved.append(eid(n))
        fill(disk, 0)  # and now really nothing left
        stick = tmp_path / "usb"
        stick.mkdir()
        # while the kiosk still runs with the store open
        assert kiosk_main(["export", "--to", str(stick), "--data-dir", str(store.data_dir)]) == 0
    finally:
        store.close()
    [exported] = list(stick.iterdir())
    assert f"exported {len(saved)} sealed packets to {exported}" in capsys.readouterr().out
    keys = {"TEST-01": station_public_bytes(TEST_STATION_KEY)}
    opened = [
        open_sealed(path.read_bytes(), hub_private_key=TEST_HUB, station_public_keys=keys)
        for path in sorted(exported.iterdir())
    ]
    assert [p.enrollment_id for p in opened] == saved
    assert all(p.files == packet.files for p in opened)


def test_an_export_to_a_full_stick_says_so_and_leaves_no_half_export(small_disk, store, packet):
    three_saved(store, packet)
    stick = small_disk(256 * 1024)  # room for one sealed packet, not three
    with pytest.raises(StoreError) as caught:
        export_packets(store.data_dir, stick, label="TEST-01")
    assert str(caught.value) == f"{stick}: full; use a USB stick with more room"
    assert list(stick.iterdir()) == []  # no .partial folder left to be taken for an export
    assert [p.state for p in store.waiting()] == [PacketState.SEALED] * 3  # nothing changed
    assert_nothing_half_written(store)


# -- before the window opens ----------------------------------------------------------


def test_preflight_makes_a_missing_data_folder_private(tmp_path, open_umask):
    folder = tmp_path / "var" / "rekam-kiosk"
    check_data_dir(folder)
    assert folder.is_dir()
    assert mode(folder) == 0o700
    assert list(folder.iterdir()) == []  # its write test leaves nothing behind


def test_preflight_accepts_an_existing_store_folder(store):
    check_data_dir(store.data_dir)


@pytest.mark.parametrize("folder", ["/proc/x", "/proc/self"])
def test_preflight_refuses_a_folder_under_proc_in_one_line(folder):
    with pytest.raises(StoreError) as caught:
        check_data_dir(Path(folder))
    message = str(caught.value)
    assert message.startswith(f"{folder}: ")
    assert "station.data_dir" in message
    assert "\n" not in message


def test_preflight_refuses_a_file_where_the_folder_should_be(tmp_path):
    (tmp_path / "kiosk").write_text("not a folder")
    with pytest.raises(StoreError, match=r"kiosk: not a folder; "):
        check_data_dir(tmp_path / "kiosk")


def test_preflight_refuses_a_disk_without_room(tmp_path):
    assert MIN_FREE_BYTES == 200 * MB
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(StoreError) as caught:
        check_data_dir(tmp_path, min_free_bytes=free + 2**40)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path}: only ")
    assert "MB free" in message and "kiosk export --to DIR" in message


def test_preflight_refuses_a_small_real_disk(small_disk):
    disk = small_disk(8 * MB)
    with pytest.raises(StoreError, match=r"only [0-9] MB free, the kiosk needs 200 MB"):
        check_data_dir(disk)
