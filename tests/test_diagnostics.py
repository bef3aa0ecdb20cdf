"""The technician's diagnostics model (kiosk/health/diagnostics.py): self-tests, the touch
test, the test print and the camera check, saved without an image, and shown alike by
the diagnostics screen and `kiosk doctor --json`."""

from __future__ import annotations

import json
import stat
import time
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from support import fake_modules, wait_until
from test_doctor import UNPLUGGED_READER, doctor_json, run, station_file

from kiosk.config import load_config
from kiosk.drivers.base import ModuleKind
from kiosk.drivers.camera.fake import FakeCamera
from kiosk.drivers.fingerprint.fake import FakeFingerprintReader
from kiosk.health.audit import AuditEvent, AuditLog
from kiosk.health.diagnostics import (
    DIAGNOSTICS_DIR,
    TOUCH_TEST_NAME,
    CameraCheck,
    DiagnosticsFiles,
    FingerprintTest,
    SelfTestRecord,
    TouchTest,
    camera_check,
    camera_measures,
    fingerprint_test,
    live_diagnostics,
    run_selftest,
    selftest_from_status,
)
from kiosk.health.doctor import doctor
from kiosk.health.station import StationModules
from kiosk.health.supervisor import ModuleStatus, StationSupervisor

# -- the touch test ---------------------------------------------------------------------------


def test_a_touch_test_names_the_cells_never_touched_and_round_trips(tmp_path):
    touched = {(c, r) for c in range(10) for r in range(6)} - {(0, 0), (9, 5), (4, 2)}
    test = TouchTest.from_cells(10, 6, touched, screen=(800, 480), at=1_800_000_000.0)
    assert test.cells == 60 and test.dead_count == 3 and not test.passed
    assert test.dead == ((0, 0), (4, 2), (9, 5))  # row by row, from the top left
    files = DiagnosticsFiles(tmp_path / "data")
    assert files.save_touch_test(test)
    path = tmp_path / "data" / DIAGNOSTICS_DIR / TOUCH_TEST_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [TOUCH_TEST_NAME]  # no temp file left
    data = json.loads(path.read_text())
    assert data["dead"] == [[0, 0], [4, 2], [9, 5]] and data["dead_count"] == 3
    assert data["screen"] == [800, 480] and data["at"].startswith("2027-01-15T08:00:00")
    assert files.load().touch_test == test
    # a whole screen touched: no dead zone
    everything = {(c, r) for c in range(10) for r in range(6)}
    assert TouchTest.from_cells(10, 6, everything).passed


def test_a_new_touch_test_replaces_the_last_one_whole(tmp_path):
    files = DiagnosticsFiles(tmp_path)
    files.save_touch_test(TouchTest.from_cells(4, 3, []))
    files.save_touch_test(TouchTest.from_cells(4, 3, [(0, 0)]))
    assert files.load().touch_test.dead_count == 11


@pytest.mark.parametrize(
    "body",
    ["{torn", '{"schema": 1, "cols": 4, "rows": 3, "dead": [[9, 9]], "at": "x"}', '"text"'],
)
def test_a_damaged_result_file_is_reported_and_left_alone(tmp_path, body):
    files = DiagnosticsFiles(tmp_path)
    path = files.path(TOUCH_TEST_NAME)
    path.parent.mkdir()
    path.write_text(body)
    saved = files.load()
    assert saved.touch_test is None
    [problem] = saved.problems
    assert str(path) in problem and "unreadable" in problem
    assert path.read_text() == body


def test_a_grid_too_large_or_empty_is_refused():
    with pytest.raises(ValueError, match=r"1\.\.64 cells"):
        TouchTest.from_cells(0, 6, [])


# -- the camera check and the test print -----------------------------------------------------


def test_camera_measures_tell_dark_from_bright_and_sharp_from_blurred():
    with FakeCamera(script=["face"]) as camera:
        camera.start_preview()
        wait_until(lambda: camera.latest_frame() is not None)
        frame = camera.latest_frame()
    brightness, sharpness = camera_measures(frame.image)
    dark_brightness, _ = camera_measures((frame.image // 8).astype(np.uint8))
    _, blurred_sharpness = camera_measures(cv2.GaussianBlur(frame.image, (0, 0), 4))
    assert 60 < brightness < 200 and dark_brightness < brightness / 4
    assert blurred_sharpness < sharpness / 3
    check = camera_check(frame.image, frame.module)
    assert (check.width, check.height) == (640, 480)
    assert check.unit == {"driver": "fake", "model": "Rekam SimCam 640", "serial": "SIM-CAM-0001"}


@pytest.mark.parametrize(
    ("behaviour", "ok", "verdict"),
    [("good", True, "good"), ("poor", False, None), ("no_finger", False, "no_finger")],
)
def test_a_test_print_is_judged_by_the_enrollments_own_check(behaviour, ok, verdict):
    with FakeFingerprintReader(script=[behaviour]) as reader:
        capture = reader.capture().result()
    test = fingerprint_test(capture, duration_s=0.2)
    assert test.ok is ok
    if verdict is not None:
        assert test.verdict == verdict
    if behaviour == "good":
        assert test.score >= 40 and test.problem == ""
    elif behaviour == "poor":
        assert test.problem.startswith("quality.finger.") and test.verdict != "good"
    else:
        assert test.score == 0 and test.outcome == "no_finger"
    again = FingerprintTest.from_dict(json.loads(json.dumps(test.as_dict())))
    assert again.as_dict() == test.as_dict()


def test_no_image_is_ever_saved(tmp_path):
    files = DiagnosticsFiles(tmp_path)
    with FakeFingerprintReader() as reader:
        capture = reader.capture().result()
    files.save_fingerprint_test(fingerprint_test(capture))
    with FakeCamera() as camera:
        files.save_camera_check(camera_check(camera.still().result().image, camera.info()))
    for path in (tmp_path / DIAGNOSTICS_DIR).iterdir():
        assert path.stat().st_size < 1024, path  # numbers only: an image would be far larger
        data = json.loads(path.read_text())
        assert "image" not in data and "template" not in data
    assert isinstance(files.load().camera_check, CameraCheck)


# -- self-tests and the live model ------------------------------------------------------------


def test_a_self_test_run_from_the_screen_is_kept_per_kind(tmp_path):
    files = DiagnosticsFiles(tmp_path)
    modules = fake_modules(fingerprint=("unplugged",))
    try:
        good = run_selftest(ModuleKind.CAMERA, modules.camera, files)
        bad = run_selftest(ModuleKind.FINGERPRINT, modules.fingerprint, files)
    finally:
        modules.close()
    assert good.passed and "frame 640x480" in good.detail and good.source == "screen"
    assert not bad.passed and "not answering" in bad.detail
    assert bad.duration_s is not None and bad.duration_s < 5 and bad.at <= time.time()
    assert bad.unit["serial"] == "SIM-FPR-0001"
    kept = files.load().selftests
    assert set(kept) == {"camera", "fingerprint"}
    assert kept["fingerprint"].passed is False and kept["camera"].passed is True


def test_the_supervisions_own_self_test_is_read_from_its_status():
    entry = {"status": "up", "detail": "installed x; self-test passed: frame ok", "since": ""}
    record = selftest_from_status("camera", entry)
    assert record.passed and record.detail == "frame ok" and record.source == "kiosk"
    failed = selftest_from_status(
        "camera",
        {"status": "down", "detail": "self-test failed on a: b", "since": "2026-11-28T09:00:00Z"},
    )
    assert not failed.passed and failed.at is not None
    assert selftest_from_status("camera", {"status": "down", "detail": "unplugged"}) is None


def unsupervised_station(tmp_path, **modules):
    config = load_config(station_file(tmp_path))
    return SimpleNamespace(config=config, modules=fake_modules(**modules), supervision=None)


def test_the_live_model_without_supervision_reads_each_modules_health(tmp_path):
    station = unsupervised_station(tmp_path)
    try:
        diagnostics = live_diagnostics(station)
    finally:
        station.modules.close()
    assert [m.kind for m in diagnostics.modules] == [str(kind) for kind in ModuleKind]
    camera = diagnostics.module("camera")
    assert camera.status == "ok" and camera.ok and camera.serial == "SIM-CAM-0001"
    assert camera.driver == "fake" and camera.simulated and camera.last_selftest is None
    assert diagnostics.units == [] and diagnostics.audit == []


@pytest.fixture
def supervised(tmp_path):
    """supervised(**tables) -> a station whose modules run under supervision."""
    made = []

    def start(**tables: str) -> SimpleNamespace:
        config = load_config(station_file(tmp_path, **tables))
        modules = StationModules.from_config(config)
        supervision = StationSupervisor(config, modules, poll_s=0.02, backoff=(0.05, 0.2))
        made.append((supervision, modules))
        supervision.start()
        wait_until(
            lambda: all(s is not ModuleStatus.STARTING for s, _, _ in supervision.status().values())
        )
        return SimpleNamespace(config=config, modules=modules, supervision=supervision)

    yield start
    for supervision, modules in made:
        supervision.stop()
        modules.close()


def test_a_failing_module_shows_failed_with_its_self_test(supervised):
    station = supervised(fingerprint=UNPLUGGED_READER)
    diagnostics = live_diagnostics(station)
    reader = diagnostics.module("fingerprint")
    assert reader.status == "down" and not reader.ok and reader.required
    assert reader.last_selftest is not None and reader.last_selftest.passed is False
    assert reader.last_selftest.source == "kiosk" and reader.last_selftest.at is not None
    camera = diagnostics.module("camera")
    assert camera.status == "up" and camera.ok and camera.last_selftest.passed
    assert {unit.serial for unit in diagnostics.units} >= {"SIM-CAM-0001", "SIM-FPR-0001"}
    events = [(entry.event, entry.kind) for entry in diagnostics.audit]
    assert ("selftest_failed", "fingerprint") in events and ("installed", "camera") in events


def test_the_screens_self_test_wins_over_an_older_one(supervised):
    station = supervised()
    files = DiagnosticsFiles(station.config.data_dir)
    record = run_selftest(ModuleKind.CAMERA, station.modules.camera, files)
    camera = live_diagnostics(station).module("camera")
    assert camera.last_selftest == SelfTestRecord.from_dict(record.as_dict())
    assert camera.last_selftest.source == "screen"


def test_the_audit_log_is_shown_latest_first_and_bounded(tmp_path):
    log = AuditLog(tmp_path / "audit.log")
    for n in range(60):
        log.record(AuditEvent.SWAPPED if n % 2 else AuditEvent.DOWN, "camera", detail=f"#{n}")
    saved = DiagnosticsFiles(tmp_path, audit_shown=50).load()
    assert saved.audit_total == 60 and len(saved.audit) == 50
    assert saved.audit[0].detail == "#59" and saved.audit[-1].detail == "#10"


# -- kiosk doctor carries the same ------------------------------------------------------------


def save_every_result(data_dir) -> None:
    files = DiagnosticsFiles(data_dir)
    files.save_touch_test(TouchTest.from_cells(10, 6, [(0, 0)], screen=(800, 480)))
    with FakeFingerprintReader() as reader:
        files.save_fingerprint_test(fingerprint_test(reader.capture().result()))
    with FakeCamera() as camera:
        files.save_camera_check(camera_check(camera.still().result().image, camera.info()))
    AuditLog(data_dir / "audit.log").record(AuditEvent.SWAPPED, "fingerprint", detail="swap")


def test_doctor_json_has_every_section_of_the_screen_with_real_values(tmp_path, capsys):
    path = station_file(tmp_path)
    save_every_result(tmp_path / "data")
    code, report = doctor_json(capsys, path)
    assert code == 0
    for key in ("audit", "audit_total", "touch_test", "fingerprint_test", "camera_check"):
        assert key in report, key
    assert report["touch_test"]["dead_count"] == 59 and report["touch_test"]["cells"] == 60
    assert report["fingerprint_test"]["ok"] is True and report["fingerprint_test"]["score"] >= 40
    assert report["fingerprint_test"]["verdict"] == "good"
    assert report["camera_check"]["width"] == 1280 and report["camera_check"]["brightness"] > 0
    assert report["audit_total"] == 1 and report["audit"][0]["event"] == "swapped"
    assert report["diagnostics_problem"] == ""
    for module in report["modules"]:  # doctor's own check is each module's last self-test
        test = module["last_selftest"]
        assert test["passed"] is True and test["source"] == "kiosk doctor"
        assert test["duration_s"] is not None and test["at"]
    # the screen's model is the same: every key it has, doctor has
    config = load_config(path)
    report_model = doctor(config)
    assert set(report_model.diagnostics.as_dict()) <= set(report_model.as_dict())


def test_doctor_json_shows_a_failing_module_failed(tmp_path, capsys):
    code, report = doctor_json(capsys, station_file(tmp_path, fingerprint=UNPLUGGED_READER))
    assert code == 1
    reader = report["modules"][1]
    assert reader["status"] == "failed" and reader["last_selftest"]["passed"] is False
    assert "not answering" in reader["last_selftest"]["detail"]
    assert report["touch_test"] is None and report["fingerprint_test"] is None


def test_doctor_json_holds_no_image_bytes(tmp_path, capsys):
    path = station_file(tmp_path)
    save_every_result(tmp_path / "data")
    code, out, _ = run(capsys, "doctor", "--json", "--config", str(path))
    assert code == 0
    assert len(out) < 20_000  # a 256x288 print alone would be 73,728 bytes

    def walk(value):
        if isinstance(value, dict):
            for key, inner in value.items():
                assert key not in ("image", "template", "preview"), key
                walk(inner)
        elif isinstance(value, list):
            assert len(value) <= 64, "a long list: an image?"
            for inner in value:
                walk(inner)
        elif isinstance(value, str):
            assert len(value) < 1000, "a long text: encoded bytes?"

    walk(json.loads(out))


def test_doctor_text_has_a_line_for_each_result(tmp_path, capsys):
    path = station_file(tmp_path)
    save_every_result(tmp_path / "data")
    code, out, _ = run(capsys, "doctor", "--config", str(path))
    assert code == 0
    lines = out.splitlines()
    assert any(line.startswith("audit log ") and line.endswith(": 1 event") for line in lines)
    assert any("swapped" in line and "fingerprint" in line for line in lines)
    [touch] = [line for line in lines if line.startswith("touch test ")]
    assert "59 of 60 cells never touched" in touch
    [finger] = [line for line in lines if line.startswith("test print ")]
    assert "NFIQ2Like" in finger and "good" in finger
    [camera] = [line for line in lines if line.startswith("camera check ")]
    assert "1280x960" in camera and "brightness" in camera and "sharpness" in camera
    assert lines[-1] == "result: OK"


def test_doctor_with_the_kiosk_running_shows_the_screens_self_test(tmp_path, capsys, supervised):
    station = supervised()
    run_selftest(
        ModuleKind.FINGERPRINT,
        station.modules.fingerprint,
        DiagnosticsFiles(station.config.data_dir),
    )
    code, report = doctor_json(capsys, station.config.path)
    assert code == 0 and report["source"] == "kiosk"
    reader = report["modules"][1]
    assert reader["last_selftest"]["source"] == "screen" and reader["last_selftest"]["passed"]
    camera = report["modules"][0]
    assert camera["last_selftest"]["source"] == "kiosk"  # the supervision's, as it came up
    _, out, _ = run(capsys, "doctor", "--config", str(station.config.path))
    assert "last self-test: passed" in out and "by the diagnostics screen" in out
