"""The module inventory (crash-safe, damaged files set aside), the audit log, StationModules."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest

from kiosk.config import ModuleConfig, SessionConfig, StationConfig
from kiosk.drivers.base import ModuleInfo, ModuleKind
from kiosk.drivers.camera.fake import FakeCamera
from kiosk.drivers.fingerprint.fake import FakeFingerprintReader
from kiosk.drivers.indicators.fake import FakeIndicators
from kiosk.drivers.signature.fake import FakeSignaturePad
from kiosk.health import inventory as inventory_module
from kiosk.health.audit import AuditLog, read_audit
from kiosk.health.inventory import ModuleInventory, read_inventory
from kiosk.health.station import StationModules, module_factory

READER_A = ModuleInfo(ModuleKind.FINGERPRINT, "zhiantec", "R307", "A1", "1.2", False, "notepad")
READER_B = ModuleInfo(ModuleKind.FINGERPRINT, "zhiantec", "R307", "B2", "1.2", False, "notepad")
CAMERA = ModuleInfo(ModuleKind.CAMERA, "picamera2", "imx708", "CAM-9", "", False, "board")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- the inventory ---------------------------------------------------------------------


def test_the_inventory_keeps_every_unit_and_which_one_is_installed(tmp_path):
    path = tmp_path / "data" / "modules.json"
    inventory = ModuleInventory(path, station_id="TEST-01")
    inventory.seen(READER_A, status="up", installed=True)
    inventory.count(READER_A.identity, captures=10, failures=1, last_error="timeout")
    inventory.seen(CAMERA, status="up", installed=True)
    inventory.seen(READER_B, status="up", installed=True)  # swapped in
    inventory.set_kind_status("fingerprint", "up", "swapped")
    assert inventory.save()
    data = json.loads(path.read_text())
    assert data["schema"] == 1 and data["station_id"] == "TEST-01" and data["running"] is True
    assert data["status"]["fingerprint"]["status"] == "up"
    units = {unit["serial"]: unit for unit in data["units"]}
    assert units["A1"]["installed"] is False and units["A1"]["status"] == "removed"
    assert (units["A1"]["captures"], units["A1"]["failures"]) == (10, 1)
    assert units["A1"]["last_error"] == "timeout"
    assert units["B2"]["installed"] is True and units["CAM-9"]["installed"] is True
    for unit in data["units"]:
        assert {
            "kind",
            "driver",
            "model",
            "serial",
            "serial_source",
            "firmware",
            "first_seen",
            "last_seen",
            "captures",
            "failures",
            "last_error",
            "status",
            "installed",
        } <= set(unit)
    again = ModuleInventory(path)
    assert again.installed("fingerprint").serial == "B2"
    assert [unit.serial for unit in again.units()] == ["A1", "CAM-9", "B2"]
    assert again.station_id == "TEST-01"


def test_the_inventory_file_and_its_folder_are_private(tmp_path):
    os.umask(0o000)
    try:
        inventory = ModuleInventory(tmp_path / "data" / "modules.json")
        inventory.seen(READER_A, installed=True)
        assert inventory.save()
    finally:
        os.umask(0o022)
    assert mode(tmp_path / "data") == 0o700
    assert mode(tmp_path / "data" / "modules.json") == 0o600


def test_a_save_replaces_the_file_whole(tmp_path):
    path = tmp_path / "modules.json"
    inventory = ModuleInventory(path)
    inventory.seen(READER_A, installed=True)
    inventory.save()
    before = path.stat().st_ino
    inventory.seen(READER_B, installed=True)
    inventory.save()
    assert path.stat().st_ino != before  # a new file renamed over the old, never rewritten
    assert [p.name for p in tmp_path.iterdir()] == ["modules.json"]  # no temp file left


def test_a_save_cut_short_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch, caplog):
    path = tmp_path / "modules.json"
    inventory = ModuleInventory(path)
    inventory.seen(READER_A, installed=True)
    inventory.save()
    old = path.read_bytes()

    def power_cut(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(inventory_module.os, "replace", power_cut)
    inventory.seen(READER_B, installed=True)
    assert inventory.save() is False  # never raises
    assert inventory.save() is False
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["modules.json"]
    errors = [r for r in caplog.records if "could not be saved" in r.getMessage()]
    assert len(errors) == 1  # a full disk is logged once, not at every heartbeat


def test_temp_files_of_an_interrupted_save_are_removed_at_load(tmp_path):
    (tmp_path / ".modules.json.x1y2.tmp").write_text('{"half": ')
    (tmp_path / "other.tmp").write_text("not ours")
    ModuleInventory(tmp_path / "modules.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.tmp"]


@pytest.mark.parametrize(
    "content",
    [
        b'{"schema": 1, "units": [{"kind": "camera"',  # torn
        b"\x00\x00\x00\x00",  # a power cut on some file systems
        b"\xff\xfe not text",
        b'{"schema": 1, "units": {"not": "a list"}}',
        b'{"schema": 1, "units": [{"kind": "camera", "captures": "many"}]}',
        b'{"schema": 99, "units": []}',
        b"[]",
    ],
)
def test_a_damaged_inventory_is_set_aside_and_a_fresh_one_started(tmp_path, caplog, content):
    path = tmp_path / "modules.json"
    path.write_bytes(content)
    with caplog.at_level(logging.ERROR):
        inventory = ModuleInventory(path)
    assert inventory.units() == []
    [aside] = [p for p in tmp_path.iterdir() if p.name.startswith("modules.json.damaged-")]
    assert aside.read_bytes() == content  # kept for whoever wants to look
    assert not path.exists()
    [message] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "damaged" in message and aside.name in message and "fresh inventory" in message
    inventory.seen(READER_A, installed=True)
    assert inventory.save()
    assert read_inventory(path).units[0].serial == "A1"


def test_read_inventory_reports_a_damaged_file_and_leaves_it(tmp_path):
    path = tmp_path / "modules.json"
    assert read_inventory(path) is None
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        read_inventory(path)
    assert path.read_text() == "{not json"


def test_the_heartbeat_saves_at_most_once_per_interval(tmp_path):
    inventory = ModuleInventory(tmp_path / "modules.json")
    assert inventory.save_if_due(60.0)
    assert not inventory.save_if_due(60.0)
    assert inventory.save_if_due(0.0)


# -- the audit log -----------------------------------------------------------------------


def test_the_audit_log_appends_one_private_json_line_per_event(tmp_path):
    os.umask(0o000)
    try:
        log = AuditLog(tmp_path / "data" / "audit.log")
        log.record("installed", "fingerprint", new=READER_A, detail="first unit")
        log.record("swapped", "fingerprint", old=READER_A, new=READER_B, detail="replaced")
    finally:
        os.umask(0o022)
    path = tmp_path / "data" / "audit.log"
    assert mode(path) == 0o600
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    swap = json.loads(lines[1])
    assert set(swap) == {"time", "event", "kind", "old", "new", "detail"}
    assert (swap["event"], swap["old"]["serial"], swap["new"]["serial"]) == ("swapped", "A1", "B2")
    assert swap["new"]["serial_source"] == "notepad"
    assert [entry.event for entry in read_audit(path)] == ["installed", "swapped"]


def test_an_unknown_audit_event_is_refused(tmp_path):
    with pytest.raises(ValueError):
        AuditLog(tmp_path / "audit.log").record("exploded", "camera")


def test_a_torn_last_line_is_skipped_with_a_warning_and_the_next_starts_afresh(tmp_path, caplog):
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    log.record("up", "camera", new=CAMERA)
    with path.open("ab") as file:
        file.write(b'{"time": "2026-01-01T00:00:00.000+00:00", "event": "do')  # power cut
    with caplog.at_level(logging.WARNING):
        assert [entry.event for entry in read_audit(path)] == ["up"]
    assert any("torn last line" in r.getMessage() for r in caplog.records)
    log.record("down", "camera", old=CAMERA, detail="cable pulled")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        entries = read_audit(path)
    assert [entry.event for entry in entries] == ["up", "down"]
    assert entries[1].detail == "cable pulled"
    assert any("damaged line 2" in r.getMessage() for r in caplog.records)
    assert read_audit(tmp_path / "missing.log") == []


def test_an_audit_write_that_fails_is_logged_not_raised(tmp_path, caplog):
    (tmp_path / "audit.log").mkdir()  # a folder where the file should be
    entry = AuditLog(tmp_path / "audit.log").record("down", "camera")
    assert entry.event == "down"
    assert any("not written" in r.getMessage() for r in caplog.records)


# -- the station's modules -----------------------------------------------------------------


class StubbornCamera(FakeCamera):
    """A camera whose driver raises while closing."""

    def _close(self) -> None:
        super()._close()
        raise RuntimeError("libcamera: device busy")


def fakes(**replace) -> StationModules:
    modules = {
        "camera": FakeCamera(),
        "fingerprint": FakeFingerprintReader(),
        "signature": FakeSignaturePad(),
        "indicators": FakeIndicators(),
    }
    return StationModules(**{**modules, **replace})


def test_close_closes_every_module_even_when_one_raises(caplog):
    modules = fakes(camera=StubbornCamera())
    assert modules.open() == {}
    with caplog.at_level(logging.ERROR):
        modules.close()  # raises nothing
    assert all(module.closed for module in modules.by_kind().values())
    assert any("camera module did not close cleanly" in r.getMessage() for r in caplog.records)


def test_replace_puts_a_fresh_module_in_use_and_refuses_another_kind():
    modules = fakes()
    old = modules.fingerprint
    fresh = FakeFingerprintReader(serial="FPR-NEW")
    assert modules.replace(ModuleKind.FINGERPRINT, fresh) is old
    assert modules.fingerprint is fresh
    assert modules.by_kind()[ModuleKind.FINGERPRINT] is fresh
    with pytest.raises(ValueError, match="camera module cannot serve as the station's fingerprint"):
        modules.replace(ModuleKind.FINGERPRINT, FakeCamera())
    assert modules.fingerprint is fresh


def test_module_factory_makes_a_fresh_instance_each_call(tmp_path):
    config = StationConfig(
        tmp_path / "station.toml",
        "TEST-01",
        "0000",
        "id",
        tmp_path,
        {kind: ModuleConfig("fake", {"serial": f"S-{kind}"}) for kind in ModuleKind},
        SessionConfig(),
    )
    make = module_factory(config, ModuleKind.FINGERPRINT)
    first, second = make(), make()
    assert first is not second and first.closed
    assert first.info().serial == second.info().serial == "S-fingerprint"
    simulated = module_factory(config, ModuleKind.FINGERPRINT, simulate=True)()
    assert simulated.info().serial == "SIM-FPR-0001"  # the fake's own defaults
