"""The technician's diagnostics screen in the real window: a module's self-test run by
a tap, the camera's live picture with its figures, a test print with its score, the
touch test's dead zones, and what it saves for `kiosk doctor`."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from test_doctor import station_file

from kiosk.config import load_config
from kiosk.flow.machine import Step
from kiosk.health.diagnostics import (
    CAMERA_CHECK_NAME,
    DIAGNOSTICS_DIR,
    FINGERPRINT_TEST_NAME,
    SELFTESTS_NAME,
    TOUCH_TEST_NAME,
)
from kiosk.operator_pin import hash_pin

pytestmark = pytest.mark.ui

TECHNICIAN_PIN = "2468"
_HASH: list[str] = []  # Argon2 is slow by design: one hash for the whole run


def technician_hash() -> str:
    if not _HASH:
        _HASH.append(hash_pin(TECHNICIAN_PIN))
    return _HASH[0]


@pytest.fixture
def diagnostics(kiosk, tmp_path) -> Iterator:
    """open_diagnostics(**fake behaviours) -> the diagnostics screen, opened as the
    login screen opens it (the technician logged in), on the simulation station's
    config with its data folder in tmp_path."""
    from kiosk.screens.station import StationServices
    from kiosk.staff import TECHNICIAN, Desk

    app = kiosk.app
    before = app.station

    def open_diagnostics(**behaviours):
        flow = kiosk.attach(**behaviours)
        desk = Desk({}, technician_hash())
        flow.desk = desk
        assert desk.log_in(TECHNICIAN, TECHNICIAN_PIN) is not None
        config = load_config(station_file(tmp_path))
        app.station = StationServices(config=config, modules=flow.modules)
        app.open_station("diagnostics")
        kiosk.pump(0.2)
        # a touch while the screen manager is still switching is dropped: wait it out
        kiosk.wait_for(lambda: not app.root.transition.is_active, what="the switch")
        assert kiosk.screen.name == "diagnostics"
        return kiosk.screen

    yield open_diagnostics
    app.close_station()
    app.station = before
    kiosk.pump(0.1)


def saved(tmp_path, name: str) -> dict:
    return json.loads((tmp_path / "data" / DIAGNOSTICS_DIR / name).read_text())


def run_test(kiosk, screen, kind: str) -> None:
    row = screen.rows[kind]
    kiosk.tap(row.ids.test)
    kiosk.wait_for(lambda: not row.testing and "diagnostics." not in row.last_test, what=kind)
    kiosk.wait_for(lambda: "LULUS" in row.last_test or "GAGAL" in row.last_test, what=kind)


def steady_pictures(monkeypatch) -> None:
    """The same time and duration on every run, so the screenshots only change when the
    screen does (as conftest's FIXED_DATE does for the receipt)."""
    import dataclasses

    from kiosk.screens.diagnostics import diagnostics as screen_module

    real = screen_module.run_selftest

    def steady(*args, **kwargs):
        return dataclasses.replace(real(*args, **kwargs), duration_s=0.05)

    monkeypatch.setattr(screen_module, "run_selftest", steady)
    monkeypatch.setattr(screen_module, "when_text", lambda _seconds, _unknown: "09:30:12")


def test_modules_self_test_camera_and_a_test_print(kiosk, diagnostics, tmp_path, monkeypatch):
    steady_pictures(monkeypatch)
    screen = diagnostics()
    assert set(screen.rows) == {"camera", "fingerprint", "signature", "indicators"}
    reader = screen.rows["fingerprint"]
    assert reader.title == "Pembaca sidik jari: baik" and "SIM-FPR-0001" in reader.unit
    assert reader.last_test == "Uji mandiri: belum pernah"
    # the self-test, live: a tap, and the row says how it went
    run_test(kiosk, screen, "fingerprint")
    assert reader.last_test.startswith("Uji mandiri LULUS ") and "256x288" in reader.last_test
    kiosk.wait_for(lambda: (tmp_path / "data" / DIAGNOSTICS_DIR / SELFTESTS_NAME).exists())
    kept = saved(tmp_path, SELFTESTS_NAME)["selftests"]["fingerprint"]
    assert kept["passed"] is True and kept["source"] == "screen" and kept["duration_s"] >= 0
    run_test(kiosk, screen, "camera")
    kiosk.screenshot("tech-02-diagnostics-modules")
    kiosk.flow.set_language("en")
    kiosk.wait_for(lambda: reader.title == "Fingerprint reader: OK", what="English")
    assert reader.last_test.startswith("Self-test PASSED ")
    kiosk.screenshot("en-tech-02-diagnostics-modules")
    kiosk.flow.set_language("id")
    kiosk.wait_for(lambda: reader.title.startswith("Pembaca"), what="Bahasa Indonesia")

    # the camera's live picture and its figures
    kiosk.tap(kiosk.widget("tab_camera"))
    preview = kiosk.widget("camera_preview")
    kiosk.wait_for(lambda: preview.texture is not None and screen.frames_shown >= 3)
    kiosk.wait_for(lambda: screen.camera_brightness != "", what="the camera's figures")
    assert screen.camera_size == "Gambar 640 x 480"
    assert screen.camera_brightness.startswith("Kecerahan ")
    assert int(screen.camera_sharpness.split()[-1]) > 0
    kiosk.wait_for(lambda: (tmp_path / "data" / DIAGNOSTICS_DIR / CAMERA_CHECK_NAME).exists())
    assert saved(tmp_path, CAMERA_CHECK_NAME)["width"] == 640

    # a test print from the fake reader: its picture on screen, its score
    kiosk.tap(kiosk.widget("tab_fingerprint"))
    assert screen._camera is None  # the camera stopped streaming with its tab
    kiosk.tap(kiosk.widget("capture_print"))
    kiosk.wait_for(lambda: screen.finger_score != "", what="the test print's score")
    assert kiosk.widget("print_image").texture is not None
    score = int(screen.finger_score.split()[-3])
    assert score >= 40 and screen.finger_verdict == "Baik: cukup jelas untuk perekaman."
    kiosk.wait_for(lambda: (tmp_path / "data" / DIAGNOSTICS_DIR / FINGERPRINT_TEST_NAME).exists())
    test = saved(tmp_path, FINGERPRINT_TEST_NAME)
    assert round(test["score"]) == score and test["verdict"] == "good"
    assert "image" not in test and len(json.dumps(test)) < 1024  # the numbers, not the print

    # closing goes back to the welcome screen and forgets the print
    kiosk.tap(kiosk.widget("close"))
    kiosk.wait_for(lambda: kiosk.screen.name == Step.WELCOME, what="the welcome screen")
    assert screen.ids.print_image.texture is None
    assert kiosk.flow.desk.login is None  # the technician is logged out


def test_a_module_failing_its_self_test_is_shown_failed(kiosk, diagnostics):
    screen = diagnostics(fingerprint=("unplugged",))
    run_test(kiosk, screen, "fingerprint")
    reader = screen.rows["fingerprint"]
    assert reader.last_test.startswith("Uji mandiri GAGAL ")
    assert "not answering" in reader.last_test
    kiosk.wait_for(lambda: "terganggu" in reader.title, what="the health after the failure")
    kiosk.tap(kiosk.widget("tab_fingerprint"))
    kiosk.tap(kiosk.widget("capture_print"))
    kiosk.wait_for(lambda: screen.finger_verdict != "", what="the reader's failure")
    assert screen.finger_verdict.startswith("Pembaca tidak menjawab")
    assert screen.ids.print_image.texture is None


def test_the_touch_test_reports_and_saves_the_dead_zones(kiosk, diagnostics, tmp_path):
    screen = diagnostics()
    kiosk.tap(kiosk.widget("tab_touch"))
    assert screen.touch_result == "Belum ada uji sentuh."
    kiosk.tap(kiosk.widget("start_touch"))
    dialog = screen.touch_dialog
    kiosk.wait_for(lambda: dialog.parent is not None, what="the touch grid")
    kiosk.pump(0.3)
    grid = dialog.grid
    assert grid.size == [800, 480]  # the whole screen
    cols, rows = int(grid.cols), int(grid.rows)
    # a finger across the two top rows, and down the left column
    for y in (0.93, 0.76):
        kiosk.draw(grid, [(x / 40, y) for x in range(1, 40)])
    kiosk.draw(grid, [(0.04, 1 - y / 40) for y in range(1, 40)])
    assert {(col, 0) for col in range(cols)} <= grid.touched
    assert {(0, row) for row in range(rows)} <= grid.touched
    kiosk.screenshot("tech-03-diagnostics-touch")
    kiosk.tap(dialog.ids.done)  # its own cell counts as touched
    kiosk.wait_for(lambda: dialog.parent is None and screen.touch_dialog is None)
    touched = 2 * cols + (rows - 2) + 1  # two rows, the rest of the column, "Selesai"
    dead = cols * rows - touched
    assert screen.last_touch_test.dead_count == dead
    assert screen.touch_result.endswith(
        f"{dead} dari {cols * rows} kotak tidak pernah terasa (zona mati, merah)."
    )
    kiosk.wait_for(lambda: (tmp_path / "data" / DIAGNOSTICS_DIR / TOUCH_TEST_NAME).exists())
    result = saved(tmp_path, TOUCH_TEST_NAME)
    assert result["dead_count"] == dead and result["cells"] == cols * rows
    assert [0, 0] not in result["dead"] and [cols - 1, rows - 1] in result["dead"]
    assert result["screen"] == [800, 480]
    assert screen.ids.touch_map.dead == set(screen.last_touch_test.dead)  # the map in red


def test_inventory_and_log_tabs_show_the_kiosks_records(kiosk, diagnostics, tmp_path):
    from kiosk.drivers.base import ModuleInfo, ModuleKind
    from kiosk.health.audit import AuditEvent, AuditLog
    from kiosk.health.inventory import ModuleInventory

    old = ModuleInfo(ModuleKind.FINGERPRINT, "zhiantec", "R307", "A1B2", "", False, "notepad")
    new = ModuleInfo(ModuleKind.FINGERPRINT, "zhiantec", "R307", "C3D4", "", False, "notepad")
    inventory = ModuleInventory(tmp_path / "data" / "modules.json", station_id="SIM-01")
    inventory.seen(old, status="up", installed=True)
    inventory.seen(new, status="up", installed=True)
    inventory.save(running=False)
    AuditLog(tmp_path / "data" / "audit.log").record(
        AuditEvent.SWAPPED, "fingerprint", old=old, new=new, detail="swapped"
    )
    screen = diagnostics()
    kiosk.tap(kiosk.widget("tab_inventory"))
    assert "Pembaca sidik jari: zhiantec R307 C3D4 [notepad], terpasang" in screen.inventory_text
    assert "A1B2 [notepad], dilepas (diganti)" in screen.inventory_text
    kiosk.tap(kiosk.widget("tab_log"))
    assert "1 kejadian terbaru dari 1" in screen.log_text
    assert "Pembaca sidik jari: diganti, R307 A1B2 diganti R307 C3D4" in screen.log_text


@pytest.mark.parametrize("size", [(800, 480), (1280, 800)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_every_tab_fits_in_both_languages(kiosk, diagnostics, tmp_path, size):
    from kivy.core.window import Window
    from test_layout import PANELS, touch_targets
    from test_overflow import LONGEST_STATION_ID, overflowing

    from kiosk.health.diagnostics import DiagnosticsFiles, TouchTest

    Window.size = size
    (tmp_path / "data").mkdir(exist_ok=True)
    DiagnosticsFiles(tmp_path / "data").save_touch_test(TouchTest.from_cells(10, 6, []))
    screen = diagnostics(fingerprint=("unplugged",))
    kiosk.flow.station_id = LONGEST_STATION_ID
    run_test(kiosk, screen, "fingerprint")  # the longest row: a failure with its detail
    found = []
    for language in ("id", "en"):
        kiosk.flow.set_language(language)
        for tab in ("modules", "camera", "fingerprint", "touch", "inventory", "log"):
            screen.show(tab)
            if tab == "fingerprint":
                screen.finger_phase = "fingerprints.phase.lift_first"
                screen.finger_score = screen.t("diagnostics.fingerprint.score", score="100")
                screen.finger_verdict = screen.t("quality.finger.dry")
            kiosk.pump(0.15)
            found += [f"{size} {language} {tab}: {p}" for p in overflowing(screen, size)]
            for widget in touch_targets(screen):
                smallest = min(widget.size) / PANELS[size]
                name = getattr(widget, "text", "")
                if smallest < 9.0:
                    found.append(f"{size} {language} {tab}: {name!r} is {smallest:.1f} mm")
        screen.show("touch")
        screen.start_touch_test()
        kiosk.pump(0.3)
        dialog = screen.touch_dialog
        found += [f"{size} {language} touch grid: {p}" for p in overflowing(dialog, size)]
        dialog.dismiss()
        screen.touch_dialog = None
        kiosk.pump(0.2)
    kiosk.flow.set_language("id")
    Window.size = (800, 480)
    assert not found, "\n".join(found)


def test_under_supervision_the_rows_show_the_kiosks_own_view(kiosk, diagnostics, tmp_path):
    from support import wait_until

    from kiosk.drivers.camera.fake import FakeCamera
    from kiosk.drivers.fingerprint.fake import FakeFingerprintReader
    from kiosk.drivers.indicators.fake import FakeIndicators
    from kiosk.drivers.signature.fake import FakeSignaturePad
    from kiosk.health.supervisor import ModuleStatus, StationSupervisor
    from kiosk.screens.diagnostics.diagnostics import DANGER, GO

    screen = diagnostics(fingerprint=("unplugged",))
    factories = {
        "camera": FakeCamera,
        "fingerprint": lambda: FakeFingerprintReader(script=["unplugged"]),
        "signature": FakeSignaturePad,
        "indicators": FakeIndicators,
    }
    supervision = StationSupervisor(
        factories, kiosk.flow.modules, tmp_path / "data", poll_s=0.05, backoff=(0.05, 0.2)
    )
    supervision.start()
    try:
        wait_until(
            lambda: all(s is not ModuleStatus.STARTING for s, _, _ in supervision.status().values())
        )
        kiosk.app.station.supervision = supervision
        screen._loaded_at = 0.0  # read the audit log the supervision has written
        kiosk.pump(1.2)  # the next refresh
        camera, reader = screen.rows["camera"], screen.rows["fingerprint"]
        assert camera.title == "Kamera: aktif" and tuple(camera.tone) == GO
        assert camera.last_test.startswith("Uji mandiri LULUS ")  # as it came up
        assert reader.title == "Pembaca sidik jari: mati" and tuple(reader.tone) == DANGER
        assert reader.last_test.startswith("Uji mandiri GAGAL ")
        kiosk.tap(kiosk.widget("tab_inventory"))
        assert "SIM-CAM-0001 [simulated], terpasang" in screen.inventory_text
        kiosk.tap(kiosk.widget("tab_log"))
        assert "Pembaca sidik jari: gagal uji mandiri" in screen.log_text
    finally:
        kiosk.app.station.supervision = None
        supervision.stop()


def test_the_technicians_pin_on_the_login_screen_opens_the_diagnostics(kiosk, tmp_path):
    from kiosk.screens.station import StationServices
    from kiosk.staff import Desk

    app = kiosk.app
    before = app.station
    flow = kiosk.attach()
    flow.desk = Desk({}, technician_hash())
    app.station = StationServices(config=load_config(station_file(tmp_path)), modules=flow.modules)
    try:
        kiosk.screen.refresh()  # the welcome screen shows its staff button
        kiosk.pump(0.2)
        kiosk.tap(kiosk.widget("staff_login"))
        kiosk.wait_for(lambda: kiosk.screen.name == "login", what="the login screen")
        kiosk.pump(0.2)
        [technician] = kiosk.widget("names").children  # the only name: chosen already
        assert technician.chosen
        for digit in TECHNICIAN_PIN:
            kiosk.tap(kiosk._key(digit), settle=0)
        kiosk.tap(kiosk._key(kiosk.widget("keypad").ok_text))
        kiosk.wait_for(lambda: kiosk.screen.name == "diagnostics", what="the diagnostics")
        assert kiosk.screen.tab == "modules" and len(kiosk.screen.rows) == 4
        # a touch while the screen manager is still switching is dropped: wait it out
        kiosk.wait_for(lambda: not kiosk.app.root.transition.is_active, what="the switch")
        kiosk.tap(kiosk.widget("close"))
        kiosk.wait_for(lambda: kiosk.screen.name == Step.WELCOME, what="the welcome screen")
    finally:
        app.close_station()
        app.station = before
