"""The local store: what is committed is kept whole, whatever happens to the station."""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import random
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from support import VALID_NIK, PacketCatcher

from kiosk.cli import main as kiosk_main
from kiosk.errors import ClearTextRefused, StoreError
from kiosk.packet.build import Packet
from kiosk.simulate import enroll_one
from kiosk.store.preflight import MIN_FREE_BYTES, check_data_dir
from kiosk.store.sqlite import SCHEMA_VERSION, EnrollmentStore


@pytest.fixture
def packet(make_flow) -> Packet:
    """A complete packet from the real flow on fake modules."""
    catcher = PacketCatcher()
    enroll_one(make_flow(sink=catcher), VALID_NIK)
    return catcher.packets[0]


def renamed(packet: Packet, enrollment_id: str, sequence: int | None = None) -> Packet:
    """A copy of ``packet`` stored under another id (and sequence, if given)."""
    manifest = copy.deepcopy(packet.manifest)
    manifest["enrollment_id"] = enrollment_id
    if sequence is not None:
        manifest["sequence"] = sequence
    return dataclasses.replace(packet, enrollment_id=enrollment_id, manifest=manifest)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def open_umask():
    """The loosest umask a service could run with: every file world-readable by default."""
    old = os.umask(0)
    yield
    os.umask(old)


def expected_files(manifest: dict) -> set[str]:
    """Every file the manifest refers to, plus the sensor templates."""
    names = {manifest["face"]["image"], manifest["signature"]["image"]}
    names.add(manifest["signature"]["strokes"])
    for finger in manifest["fingers"]:
        if finger["image"]:
            names.add(finger["image"])
            names.add(finger["image"].removesuffix(".wsq") + ".template")
    return names


def stored_ids(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("SELECT enrollment_id FROM enrollments")]


# -- keeping enrollments ----------------------------------------------------------


def test_a_saved_enrollment_comes_back_whole(store, packet):
    assert store.count() == 0
    store.save(packet)
    assert store.count() == 1
    assert store.manifest(packet.enrollment_id) == packet.manifest
    assert store.files(packet.enrollment_id) == packet.files
    assert store.files(packet.enrollment_id).keys() == expected_files(packet.manifest)


def test_unknown_enrollment_has_no_manifest_and_no_files(store):
    assert store.manifest("NOPE-20261128-000000") is None
    assert store.files("NOPE-20261128-000000") == {}


def test_enrollments_survive_closing_and_reopening(tmp_path, packet):
    path = tmp_path / "data" / "enrollments.sqlite3"  # the folder is made on first use
    first = EnrollmentStore(path)
    first.save(packet)
    first.save(renamed(packet, "TEST-01-20261128-00000B"))
    first.close()
    again = EnrollmentStore(path)
    try:
        assert again.count() == 2
        assert again.files("TEST-01-20261128-00000B") == packet.files
    finally:
        again.close()


def test_the_store_runs_in_wal_mode_with_full_sync(store):
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_saves_from_several_threads_all_land(store, packet):
    errors = []

    def save(n: int) -> None:
        try:
            store.save(renamed(packet, f"TEST-01-20261128-{n:06X}"))
        except Exception as exc:  # collected: a thread's exception would be lost
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.count() == 6


# -- privacy -------------------------------------------------------------------------


def test_the_data_folder_and_store_files_are_private_whatever_the_umask(
    tmp_path, packet, open_umask
):
    path = tmp_path / "data" / "enrollments.sqlite3"
    store = EnrollmentStore(path)
    try:
        store.save(packet)
        assert mode(path.parent) == 0o700
        for name in ("enrollments.sqlite3", "enrollments.sqlite3-wal", "enrollments.sqlite3-shm"):
            assert mode(path.parent / name) == 0o600, name
    finally:
        store.close()


def test_an_existing_store_readable_by_others_is_made_private(tmp_path, packet, open_umask):
    path = tmp_path / "enrollments.sqlite3"
    with sqlite3.connect(path) as db:  # as an older kiosk left it: 0644 under umask 022
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (x)")
    path.chmod(0o644)
    store = EnrollmentStore(path)
    try:
        store.save(packet)
        assert mode(path) == 0o600
        assert mode(tmp_path / "enrollments.sqlite3-wal") == 0o600
        assert mode(tmp_path / "enrollments.sqlite3-shm") == 0o600
    finally:
        store.close()


# -- sequence and retries -----------------------------------------------------------


def test_a_new_store_has_sequence_zero(store):
    assert store.last_sequence() == 0


def test_last_sequence_is_the_highest_committed(store, packet):
    store.save(renamed(packet, "TEST-01-20261128-000003", sequence=3))
    assert store.last_sequence() == 3
    store.save(renamed(packet, "TEST-01-20261128-000001", sequence=1))  # never goes back
    assert store.last_sequence() == 3


def test_last_sequence_survives_deleted_enrollments_and_reopening(tmp_path, packet):
    path = tmp_path / "enrollments.sqlite3"
    store = EnrollmentStore(path)
    store.save(renamed(packet, "TEST-01-20261128-000007", sequence=7))
    store.close()
    with sqlite3.connect(path) as db:  # e.g. sent to the hub and pruned
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("DELETE FROM enrollments")
    again = EnrollmentStore(path)
    try:
        assert again.count() == 0
        assert again.last_sequence() == 7
    finally:
        again.close()


def test_a_refused_save_does_not_move_the_sequence(store, packet):
    store.save(renamed(packet, "TEST-01-20261128-000001", sequence=1))
    store._db.execute(
        f"PRAGMA max_page_count = {store._db.execute('PRAGMA page_count').fetchone()[0]}"
    )
    with pytest.raises(StoreError, match="disk is full"):
        store.save(renamed(packet, "TEST-01-20261128-000002", sequence=2))
    assert store.last_sequence() == 1


def test_a_retried_save_is_a_success_that_stores_nothing_new(store, packet, caplog):
    store.save(packet)
    # The flow builds the packet again on a retry: a later finished_at, same enrollment.
    retry = dataclasses.replace(
        packet, manifest={**packet.manifest, "finished_at": "2026-11-28T09:31:00+00:00"}
    )
    with caplog.at_level(logging.INFO, logger="kiosk.store"):
        store.save(retry)
    assert store.count() == 1
    assert store.manifest(packet.enrollment_id) == packet.manifest
    assert store.files(packet.enrollment_id) == packet.files
    assert any(
        record.levelno == logging.INFO
        and "already stored" in record.getMessage()
        and packet.enrollment_id in record.getMessage()
        for record in caplog.records
    )


# -- refusing ------------------------------------------------------------------------


def test_a_different_enrollment_under_a_stored_id_is_refused_and_the_first_copy_kept(store, packet):
    store.save(packet)
    changed = copy.deepcopy(packet.manifest)
    changed["nik"] = "3201010203900002"
    impostor = dataclasses.replace(packet, manifest=changed, files={"face.jpg": b"not a face"})
    with pytest.raises(StoreError, match="already stored") as caught:
        store.save(impostor)
    assert packet.enrollment_id in str(caught.value)
    assert store.count() == 1
    assert store.manifest(packet.enrollment_id) == packet.manifest
    assert store.files(packet.enrollment_id) == packet.files
    store.save(renamed(packet, "TEST-01-20261128-00000C"))  # the store still works
    assert store.count() == 2


def test_a_packet_from_a_real_module_is_refused_and_nothing_written(store, packet):
    manifest = copy.deepcopy(packet.manifest)
    manifest["modules"][0]["simulated"] = False  # the camera
    real = dataclasses.replace(packet, manifest=manifest)
    with pytest.raises(ClearTextRefused, match="sealing is not built yet") as caught:
        store.save(real)
    assert isinstance(caught.value, StoreError)
    assert isinstance(caught.value, PermissionError)
    assert store.count() == 0
    assert store.files(packet.enrollment_id) == {}


def test_a_packet_without_module_identity_is_refused(store, packet):
    anonymous = dataclasses.replace(packet, manifest={**packet.manifest, "modules": []})
    with pytest.raises(ClearTextRefused):
        store.save(anonymous)
    assert store.count() == 0


# -- damage --------------------------------------------------------------------------


def test_a_corrupt_database_is_reported_and_left_alone(tmp_path):
    path = tmp_path / "enrollments.sqlite3"
    garbage = bytes(random.Random(7).randrange(256) for _ in range(8192))
    path.write_bytes(garbage)
    with pytest.raises(StoreError) as caught:
        EnrollmentStore(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: the store file is damaged")
    assert "do not delete it" in message
    assert not isinstance(caught.value, sqlite3.Error)
    assert path.read_bytes() == garbage  # evidence for the technician, untouched


def test_a_database_with_damaged_pages_is_reported(tmp_path, packet):
    path = tmp_path / "damaged.sqlite3"  # not the fixture store's file, which stays open
    store = EnrollmentStore(path)
    store.save(packet)
    store.close()  # the last connection folds the WAL back into the file
    data = bytearray(path.read_bytes())
    data[100:] = bytes(len(data) - 100)  # keep the header, wipe every page
    path.write_bytes(data)
    with pytest.raises(StoreError, match="the store file is damaged"):
        EnrollmentStore(path)
    assert path.read_bytes() == data


def test_a_store_from_a_newer_kiosk_is_refused(tmp_path):
    path = tmp_path / "enrollments.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError) as caught:
        EnrollmentStore(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: made by a newer kiosk (schema 99")
    assert "update the kiosk software" in message
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 99  # not downgraded


def test_a_store_under_a_file_cannot_be_opened(tmp_path):
    (tmp_path / "data").write_text("a file where the data folder should be")
    with pytest.raises(StoreError, match="cannot open the store"):
        EnrollmentStore(tmp_path / "data" / "enrollments.sqlite3")


FULL_DISK = (
    "{path}: the disk is full; free space on it, and carry the enrollments off "
    "with `kiosk export --to DIR` (never copy the .sqlite3 file alone)"
)


def fill_the_disk(store: EnrollmentStore) -> None:
    """A real SQLITE_FULL: the database may not grow by more than two pages."""
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages + 2}")


def test_a_full_disk_is_reported_and_nothing_half_written(store, packet):
    store.save(packet)
    fill_the_disk(store)
    second = renamed(packet, "TEST-01-20261128-00000D")
    with pytest.raises(StoreError) as caught:
        store.save(second)
    assert str(caught.value) == FULL_DISK.format(path=store.path)
    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    assert caught.value.__cause__.sqlite_errorname == "SQLITE_FULL"
    assert store.count() == 1
    assert store.manifest(second.enrollment_id) is None
    assert store.files(second.enrollment_id) == {}
    assert store.files(packet.enrollment_id) == packet.files

    store._db.execute("PRAGMA max_page_count = 1073741823")  # space freed
    store.save(second)
    assert store.count() == 2


def three_saved_then_a_full_disk(store, packet, refusal: str) -> list[str]:
    """Commit three enrollments, fill the disk, and check a fourth save is refused
    with ``refusal`` in its message; returns the committed ids."""
    committed = [f"TEST-01-20261128-{n:06d}" for n in range(1, 4)]
    for n, enrollment_id in enumerate(committed, 1):
        store.save(renamed(packet, enrollment_id, sequence=n))
    fill_the_disk(store)
    with pytest.raises(StoreError, match=refusal):
        store.save(renamed(packet, "TEST-01-20261128-000004", sequence=4))
    return committed


def test_after_a_full_disk_the_main_file_alone_holds_every_committed_enrollment(
    store, packet, tmp_path
):
    committed = three_saved_then_a_full_disk(store, packet, refusal="disk is full")
    # The kiosk is still running; a technician copies the .sqlite3 file without its -wal.
    alone = tmp_path / "copied" / "enrollments.sqlite3"
    alone.parent.mkdir()
    shutil.copyfile(store.path, alone)
    with sqlite3.connect(alone) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert sorted(stored_ids(alone)) == committed
    copy_ = EnrollmentStore(alone)
    try:
        assert copy_.files(committed[-1]) == packet.files
        assert copy_.last_sequence() == 3
    finally:
        copy_.close()


def test_after_a_full_disk_kiosk_export_copies_every_committed_enrollment(
    store, packet, tmp_path, capsys
):
    committed = three_saved_then_a_full_disk(store, packet, refusal="kiosk export --to DIR")
    stick = tmp_path / "usb"
    stick.mkdir()
    # while the kiosk still runs with the store open
    assert kiosk_main(["export", "--to", str(stick), "--data-dir", str(store.path.parent)]) == 0
    [exported] = list(stick.iterdir())
    assert exported.suffix == ".sqlite3"
    assert mode(exported) == 0o600
    assert str(exported) in capsys.readouterr().out
    with sqlite3.connect(exported) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one file
    assert sorted(stored_ids(exported)) == committed
    assert list(stick.iterdir()) == [exported]


def test_a_save_that_would_fill_the_disk_is_refused_before_writing(store, packet, monkeypatch):
    """On a real disk the commit could fit in the -wal and the copy into the main file
    fail; a save is refused while the disk cannot hold the packet twice."""
    store.save(packet)
    real = shutil.disk_usage

    def nearly_full(path):
        return real(path)._replace(free=sum(map(len, packet.files.values())))

    monkeypatch.setattr(shutil, "disk_usage", nearly_full)
    second = renamed(packet, "TEST-01-20261128-00000E")
    with pytest.raises(StoreError) as caught:
        store.save(second)
    assert str(caught.value) == FULL_DISK.format(path=store.path)
    assert store.count() == 1
    monkeypatch.setattr(shutil, "disk_usage", real)
    store.save(second)
    assert store.count() == 2


# -- before the window opens ----------------------------------------------------------


def test_preflight_makes_a_missing_data_folder_private(tmp_path, open_umask):
    folder = tmp_path / "var" / "rekam-kiosk"
    check_data_dir(folder)
    assert folder.is_dir()
    assert mode(folder) == 0o700
    assert list(folder.iterdir()) == []  # its write test leaves nothing behind


def test_preflight_accepts_an_existing_store_folder(store):
    check_data_dir(store.path.parent)


@pytest.mark.parametrize("folder", ["/proc/x", "/proc/self"])
def test_preflight_refuses_a_folder_under_proc_in_one_line(folder):
    with pytest.raises(StoreError) as caught:
        check_data_dir(Path(folder))
    message = str(caught.value)
    assert message.startswith(f"{folder}: ")
    assert "station.data_dir" in message
    assert "\n" not in message


def test_preflight_refuses_a_file_where_the_folder_should_be(tmp_path):
    (tmp_path / "data").write_text("not a folder")
    with pytest.raises(StoreError, match=r"data: not a folder; "):
        check_data_dir(tmp_path / "data")


def test_preflight_refuses_a_disk_without_room(tmp_path):
    assert MIN_FREE_BYTES == 200 * 1024 * 1024
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(StoreError) as caught:
        check_data_dir(tmp_path, min_free_bytes=free + 2**40)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path}: only ")
    assert "MB free" in message and "kiosk export --to DIR" in message


# -- power cuts ----------------------------------------------------------------------

WRITER = """
import dataclasses
import itertools
import sys

from kiosk.config import SIMULATION_PATH, load_config
from kiosk.health.station import StationModules
from kiosk.flow.machine import EnrollmentFlow
from kiosk.simulate import enroll_one
from kiosk.store.sqlite import EnrollmentStore


class Catcher:
    def save(self, packet):
        self.packet = packet

    def has_room(self):
        return True

    def last_sequence(self):
        return 0


catcher = Catcher()
modules = StationModules.from_config(load_config(SIMULATION_PATH), simulate=True)
modules.open()
enroll_one(EnrollmentFlow(station_id="CUT", modules=modules, sink=catcher), "3201014101900001")
store = EnrollmentStore(sys.argv[1])
print("ready", flush=True)
for n in itertools.count():
    enrollment_id = f"{sys.argv[2]}-{n:06d}"
    manifest = {**catcher.packet.manifest, "enrollment_id": enrollment_id, "sequence": n}
    store.save(dataclasses.replace(catcher.packet, enrollment_id=enrollment_id, manifest=manifest))
    print(enrollment_id, flush=True)  # only after the commit
"""


def test_a_power_cut_mid_write_loses_nothing_committed_and_leaves_nothing_torn(tmp_path):
    path = tmp_path / "enrollments.sqlite3"
    rng = random.Random()
    acknowledged: list[str] = []
    for round_ in range(3):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), f"CUT-{round_}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert writer.stdout.readline() == "ready\n", writer.stderr.read()
            # Let it commit a few enrollments, then cut the power at a random moment.
            for _ in range(rng.randint(1, 4)):
                acknowledged.append(writer.stdout.readline().strip())
            timer = threading.Timer(rng.uniform(0.0, 0.05), writer.send_signal, [signal.SIGKILL])
            timer.start()
            acknowledged.extend(line.strip() for line in writer.stdout)
            timer.join()
        finally:
            writer.kill()
            writer.wait(timeout=10)
        assert writer.returncode == -signal.SIGKILL

    store = EnrollmentStore(path)
    try:
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        ids = stored_ids(path)
        assert set(acknowledged) <= set(ids)  # nothing committed is lost
        assert len(ids) - len(acknowledged) <= 3  # at most one unacknowledged per cut
        assert store.count() == len(ids)
        reference = store.files(ids[0])
        for enrollment_id in ids:
            manifest = store.manifest(enrollment_id)
            assert manifest["enrollment_id"] == enrollment_id
            files = store.files(enrollment_id)
            assert files.keys() == expected_files(manifest)
            assert files == reference  # copies of one packet: a torn write would differ
        assert store.last_sequence() == max(store.manifest(i)["sequence"] for i in ids)
        with sqlite3.connect(path) as db:
            orphans = db.execute(
                "SELECT count(*) FROM enrollment_files WHERE enrollment_id NOT IN "
                "(SELECT enrollment_id FROM enrollments)"
            ).fetchone()[0]
        assert orphans == 0
    finally:
        store.close()
    assert os.path.exists(path)
