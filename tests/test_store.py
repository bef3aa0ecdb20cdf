"""The local store: what is committed is kept whole, whatever happens to the station."""

from __future__ import annotations

import copy
import dataclasses
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from support import VALID_NIK, PacketCatcher

from kiosk.errors import ClearTextRefused, StoreError
from kiosk.packet.build import Packet
from kiosk.simulate import enroll_one
from kiosk.store.sqlite import SCHEMA_VERSION, EnrollmentStore


@pytest.fixture
def packet(make_flow) -> Packet:
    """A complete packet from the real flow on fake modules."""
    catcher = PacketCatcher()
    enroll_one(make_flow(sink=catcher), VALID_NIK)
    return catcher.packets[0]


def renamed(packet: Packet, enrollment_id: str) -> Packet:
    manifest = copy.deepcopy(packet.manifest)
    manifest["enrollment_id"] = enrollment_id
    return dataclasses.replace(packet, enrollment_id=enrollment_id, manifest=manifest)


def expected_files(manifest: dict) -> set[str]:
    """Every file the manifest refers to, plus the sensor templates."""
    names = {manifest["face"]["image"], manifest["signature"]["image"]}
    names.add(manifest["signature"]["strokes"])
    for finger in manifest["fingers"]:
        if finger["image"]:
            names.add(finger["image"])
            names.add(finger["image"].replace(".png", ".template"))
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


# -- refusing ------------------------------------------------------------------------


def test_a_duplicate_enrollment_id_is_refused_and_the_first_copy_kept(store, packet):
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
    manifest["modules"]["camera"]["simulated"] = False
    real = dataclasses.replace(packet, manifest=manifest)
    with pytest.raises(ClearTextRefused, match="sealing is not built yet") as caught:
        store.save(real)
    assert isinstance(caught.value, StoreError)
    assert isinstance(caught.value, PermissionError)
    assert store.count() == 0
    assert store.files(packet.enrollment_id) == {}


def test_a_packet_without_module_identity_is_refused(store, packet):
    anonymous = dataclasses.replace(packet, manifest={**packet.manifest, "modules": {}})
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


def test_a_full_disk_is_reported_and_nothing_half_written(store, packet):
    store.save(packet)
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    # A real SQLITE_FULL: the database may not grow by more than two pages.
    store._db.execute(f"PRAGMA max_page_count = {pages + 2}")
    second = renamed(packet, "TEST-01-20261128-00000D")
    with pytest.raises(StoreError) as caught:
        store.save(second)
    assert str(caught.value) == (
        f"{store.path}: the disk is full; free space or carry packets off on a USB stick"
    )
    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    assert caught.value.__cause__.sqlite_errorname == "SQLITE_FULL"
    assert store.count() == 1
    assert store.manifest(second.enrollment_id) is None
    assert store.files(second.enrollment_id) == {}
    assert store.files(packet.enrollment_id) == packet.files

    store._db.execute("PRAGMA max_page_count = 1073741823")  # space freed
    store.save(second)
    assert store.count() == 2


# -- power cuts ----------------------------------------------------------------------

WRITER = """
import dataclasses
import itertools
import sys

from kiosk.config import SIMULATION_PATH, load_config
from kiosk.drivers.station import StationModules
from kiosk.flow.machine import EnrollmentFlow
from kiosk.simulate import enroll_one
from kiosk.store.sqlite import EnrollmentStore


class Catcher:
    def save(self, packet):
        self.packet = packet


catcher = Catcher()
modules = StationModules.from_config(load_config(SIMULATION_PATH), simulate=True)
modules.open()
enroll_one(EnrollmentFlow(station_id="CUT", modules=modules, sink=catcher), "3201014101900001")
store = EnrollmentStore(sys.argv[1])
print("ready", flush=True)
for n in itertools.count():
    enrollment_id = f"{sys.argv[2]}-{n:06d}"
    manifest = {**catcher.packet.manifest, "enrollment_id": enrollment_id}
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
        with sqlite3.connect(path) as db:
            orphans = db.execute(
                "SELECT count(*) FROM enrollment_files WHERE enrollment_id NOT IN "
                "(SELECT enrollment_id FROM enrollments)"
            ).fetchone()[0]
        assert orphans == 0
    finally:
        store.close()
    assert os.path.exists(path)
