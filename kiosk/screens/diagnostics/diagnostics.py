"""The technician's diagnostics, behind the technician's PIN (opened by the login screen).

Six tabs in a left column: Modul (each module's status, in colour, with a button
running its self-test live), Kamera (the camera's live picture with its brightness
and sharpness), Sidik jari (one test print: its picture on this screen only, its
NFIQ2Like score and verdict), Layar sentuh (a grid over the whole screen whose
cells turn green where a finger is felt; "Selesai" counts the cells never felt,
the dead zones), Inventaris and Log (the audit log of swaps).

What the screen shows is :class:`kiosk.health.diagnostics.Diagnostics`, the model
``kiosk doctor --json`` prints; the results the screen makes (self-tests, the touch
test, the test print's score, the camera's figures, never a picture) are saved in
``<data_dir>/diagnostics/`` for doctor to show. Blocking device calls run off the
UI thread (``in_background``); the screen is opened from the welcome screen only,
so no citizen's capture is using the modules meanwhile.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from kivy.clock import Clock
from kivy.core.window import Window
from kivy.factory import Factory
from kivy.graphics import Color, Line, Rectangle
from kivy.properties import (
    BooleanProperty,
    ListProperty,
    NumericProperty,
    ObjectProperty,
    StringProperty,
)
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.floatlayout import FloatLayout
from kivy.uix.modalview import ModalView
from kivy.uix.widget import Widget

from kiosk.drivers.base import FingerprintCapture, ModuleKind
from kiosk.errors import DeviceFault, DriverError
from kiosk.health.diagnostics import (
    Diagnostics,
    DiagnosticsFiles,
    FingerprintTest,
    ModuleReport,
    SavedDiagnostics,
    SelfTestRecord,
    TouchTest,
    camera_check,
    diagnostics_of,
    fingerprint_test,
    run_selftest,
)
from kiosk.health.inventory import parse_time
from kiosk.screens.base import TouchGuard, in_background, texture_from_array
from kiosk.screens.station import StationScreen

log = logging.getLogger(__name__)

TABS = ("modules", "camera", "fingerprint", "touch", "inventory", "log")
GRID = (10, 6)  # touch test cells across, down: 80 px squares on the 7-inch 800x480
PREVIEW_FPS = 15
MEASURE_EVERY_S = 0.5  # the camera's brightness and sharpness
RELOAD_EVERY_S = 10.0  # the saved results and the audit log are read again this often
GO = (0.0, 0.5, 0.25, 1)
WARN = (0.93, 0.55, 0.0, 1)
DANGER = (0.70, 0.12, 0.12, 1)
IDLE_CELL = (0.80, 0.82, 0.85, 1)
TONES = {"up": GO, "ok": GO, "starting": WARN, "degraded": WARN}  # anything else: DANGER


def when_text(seconds: float | None, unknown: str) -> str:
    """A time as the technician reads it: the clock today, the date otherwise."""
    if seconds is None:
        return unknown
    moment = datetime.fromtimestamp(seconds)
    if moment.date() == datetime.now().date():
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%Y-%m-%d %H:%M")


def _iso_when(text: str, unknown: str) -> str:
    try:
        return when_text(parse_time(text), unknown)
    except ValueError:
        return text or unknown


class ModuleRow(BoxLayout):
    """One module on the Modul tab (rule in diagnostics.kv)."""

    kind = StringProperty("")
    title = StringProperty("")
    unit = StringProperty("")
    last_test = StringProperty("")
    tone = ListProperty(DANGER)
    testing = BooleanProperty(False)
    screen = ObjectProperty(None)


class TouchGrid(Widget):
    """A ``cols`` x ``rows`` grid of cells; ``mark(x, y)`` turns the cell under a
    window point green. ``dead`` cells (shown after a test) are red."""

    cols = NumericProperty(GRID[0])
    rows = NumericProperty(GRID[1])

    def __init__(self, **kwargs: Any) -> None:
        self.touched: set[tuple[int, int]] = set()
        self.dead: set[tuple[int, int]] = set()
        self._colours: dict[tuple[int, int], Color] = {}
        super().__init__(**kwargs)
        self.bind(pos=self.redraw, size=self.redraw, cols=self.redraw, rows=self.redraw)

    def reset(self, dead: set[tuple[int, int]] | None = None) -> None:
        self.touched = set()
        self.dead = set(dead or ())
        self.redraw()

    def cell_at(self, x: float, y: float) -> tuple[int, int] | None:
        """The cell (col, row from the top) under the window point (x, y)."""
        lx, ly = self.to_widget(x, y)
        if not self.collide_point(lx, ly) or self.width <= 0 or self.height <= 0:
            return None
        col = min(int((lx - self.x) / self.width * self.cols), int(self.cols) - 1)
        row = min(int((self.top - ly) / self.height * self.rows), int(self.rows) - 1)
        return col, row

    def mark(self, x: float, y: float) -> None:
        cell = self.cell_at(x, y)
        if cell is None or cell in self.touched:
            return
        self.touched.add(cell)
        colour = self._colours.get(cell)
        if colour is not None:
            colour.rgba = GO

    def _tone(self, cell: tuple[int, int]) -> tuple[float, ...]:
        if cell in self.touched:
            return GO
        return DANGER if cell in self.dead else IDLE_CELL

    def redraw(self, *_args: Any) -> None:
        self.canvas.clear()
        self._colours = {}
        cols, rows = int(self.cols), int(self.rows)
        if cols < 1 or rows < 1:
            return
        w, h = self.width / cols, self.height / rows
        with self.canvas:
            Color(rgba=(1, 1, 1, 1))  # the lines between the cells
            Rectangle(pos=self.pos, size=self.size)
            for row in range(rows):
                for col in range(cols):
                    self._colours[(col, row)] = Color(rgba=self._tone((col, row)))
                    Rectangle(
                        pos=(self.x + col * w + 1, self.top - (row + 1) * h + 1),
                        size=(max(0, w - 2), max(0, h - 2)),
                    )
            Color(rgba=(1, 1, 1, 1))
            for col in range(1, cols):
                Line(points=[self.x + col * w, self.y, self.x + col * w, self.top], width=1)
            for row in range(1, rows):
                Line(points=[self.x, self.y + row * h, self.right, self.y + row * h], width=1)


class TouchTestView(FloatLayout):
    """The grid and the "Selesai" button over the whole screen: every touch marks its
    cell, the button's too (pressing it proves those cells work)."""

    grid = ObjectProperty(None)

    def on_touch_down(self, touch: Any) -> bool:
        if self.grid is not None:
            self.grid.mark(*touch.pos)
        return super().on_touch_down(touch)

    def on_touch_move(self, touch: Any) -> bool:
        if self.grid is not None:
            self.grid.mark(*touch.pos)
        return super().on_touch_move(touch)


class TouchTestDialog(TouchGuard, ModalView):
    """The touch test, covering the window (rule in diagnostics.kv)."""

    def __init__(self, on_done: Callable[[TouchGrid], None], **kwargs: Any) -> None:
        kwargs.setdefault("auto_dismiss", False)
        super().__init__(**kwargs)
        self._on_done = on_done

    def on_pre_open(self) -> None:
        self.mark_shown()

    @property
    def grid(self) -> TouchGrid:
        return self.ids.grid

    def done(self) -> None:
        self.dismiss()
        self._on_done(self.grid)


class DiagnosticsScreen(StationScreen):
    screen_name = "diagnostics"
    kv = Path(__file__).with_suffix(".kv")

    tab = StringProperty("modules")
    folder_known = BooleanProperty(True)
    # Kamera
    camera_state = StringProperty("")  # an i18n key while there is no picture, else ""
    camera_size = StringProperty("")
    camera_brightness = StringProperty("")
    camera_sharpness = StringProperty("")
    # Sidik jari
    finger_busy = BooleanProperty(False)
    finger_phase = StringProperty("")  # an i18n key
    finger_score = StringProperty("")
    finger_verdict = StringProperty("")
    # Layar sentuh, Inventaris, Log
    touch_result = StringProperty("")
    inventory_text = StringProperty("")
    log_text = StringProperty("")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # each tab's panel waits outside the tree until shown (held here: ids are weak)
        self.panels = {tab: self.ids[f"panel_{tab}"].__self__ for tab in TABS}
        for panel in self.panels.values():
            if panel.parent is not None:
                panel.parent.remove_widget(panel)
        self.rows: dict[str, ModuleRow] = {}
        self.model: Diagnostics | None = None
        self.touch_dialog: TouchTestDialog | None = None
        self._saved: SavedDiagnostics | None = None
        self._loaded_at = 0.0
        self._visit = 0  # a background result of an earlier visit is dropped
        self._live = None  # the camera preview's clock event
        self._camera = None  # the camera streaming to us
        self._texture = None
        self._frame_at = 0.0
        self._measured_at = 0.0
        self._camera_result = None  # the visit's latest camera check, saved when leaving
        self._print_job = None
        self.frames_shown = 0
        self.last_touch_test: TouchTest | None = None

    # -- where things are ------------------------------------------------------------

    @property
    def station(self) -> Any:
        return self.app.station

    def modules(self) -> Any:
        """The modules in use: the station's, else (tests) the flow's."""
        return getattr(self.station, "modules", None) or self.app.flow.modules

    def files(self) -> DiagnosticsFiles | None:
        config = getattr(self.station, "config", None)
        return DiagnosticsFiles(config.data_dir) if config is not None else None

    def kinds(self) -> list[ModuleKind]:
        config = getattr(self.station, "config", None)
        return [ModuleKind(k) for k in (config.modules if config is not None else ModuleKind)]

    # -- the screen's life -------------------------------------------------------------

    def entered(self) -> None:
        desk = self.app.flow.desk
        login = desk.login if desk is not None else None
        if desk is not None and (login is None or str(login.role) != "technician"):
            log.warning("diagnostics opened without the technician's login: closed")
            Clock.schedule_once(lambda _dt: self.leave())
            return
        self._visit += 1
        self.folder_known = self.files() is not None
        self.finger_busy = False
        self.finger_phase = self.finger_score = self.finger_verdict = ""
        self.ids.print_image.texture = None
        self._camera_result = None
        self._build_rows()
        self._reload()
        self.show("modules")

    def on_leave(self, *_args: Any) -> None:
        self._visit += 1
        self._stop_camera()
        job, self._print_job = self._print_job, None
        if job is not None:
            job.cancel()  # the reader stops waiting for a finger
        self.ids.print_image.texture = None  # a print never stays on screen
        self.finger_busy = False
        if self.touch_dialog is not None:
            self.touch_dialog.dismiss()
            self.touch_dialog = None

    def show(self, tab: str) -> None:
        if tab not in TABS:
            raise ValueError(f"no tab {tab!r}")
        if self.tab == "camera" and tab != "camera":
            self._stop_camera()
        if tab != "fingerprint":
            self.ids.print_image.texture = None  # a print stays on screen only while looked at
        self.tab = tab
        content = self.ids.content
        content.clear_widgets()
        content.add_widget(self.panels[tab])
        if tab == "camera":
            self._start_camera()
        self.refresh()

    def refresh(self) -> None:
        if time.monotonic() - self._loaded_at >= RELOAD_EVERY_S:
            self._reload()
        files = self.files()
        self.model = diagnostics_of(
            self.modules(),
            getattr(self.station, "supervision", None),
            files.data_dir if files is not None else None,  # the inventory, if unsupervised
            kinds=self.kinds(),
            saved=self._saved or SavedDiagnostics(),
        )
        for module in self.model.modules:
            row = self.rows.get(module.kind)
            if row is not None:
                self._show_row(row, module)
        self.touch_result = self._touch_text()
        self.inventory_text = "\n".join(self._inventory_lines())
        self.log_text = "\n".join(self._log_lines())

    def _reload(self) -> None:
        files = self.files()
        self._saved = files.load() if files is not None else SavedDiagnostics()
        self._loaded_at = time.monotonic()
        touch = self._saved.touch_test
        self.ids.touch_map.reset(set(touch.dead) if touch else set())

    def _save(self, save: Callable[[DiagnosticsFiles], Any]) -> None:
        """Write a result off the UI thread (a synced write to the SD card), then show it."""
        files = self.files()
        if files is None:
            return

        def run() -> None:
            save(files)
            Clock.schedule_once(lambda _dt: self._after_save())

        threading.Thread(target=run, name="diagnostics-save", daemon=True).start()

    def _after_save(self) -> None:
        self._loaded_at = 0.0  # read again at once
        if self.manager is not None and self.manager.current == self.name:
            self.refresh()

    # -- Modul ---------------------------------------------------------------------------

    def _build_rows(self) -> None:
        box = self.ids.module_rows
        box.clear_widgets()
        self.rows = {}
        for kind in self.kinds():
            row = Factory.ModuleRow(kind=str(kind), screen=self)
            self.rows[str(kind)] = row
            box.add_widget(row)

    def _show_row(self, row: ModuleRow, module: ModuleReport) -> None:
        kind = self.t(f"diagnostics.kinds.{module.kind}")
        if not module.required:
            kind = self.t("diagnostics.module.optional", kind=kind)
        status = self.t(f"diagnostics.status.{module.status}")
        if status.startswith("diagnostics."):
            status = module.status
        row.title = f"{kind}: {status}"
        row.tone = TONES.get(module.status, DANGER)
        unit = " ".join(p for p in (module.driver, module.model, module.serial) if p)
        if not unit:
            row.unit = self.t("diagnostics.module.not_identified")
        else:
            row.unit = self.t(
                "diagnostics.module.unit", unit=unit, source=module.serial_source or "?"
            )
        if not module.ok and module.detail:
            row.unit = f"{row.unit} · {module.detail}"
        row.last_test = self._selftest_text(module.last_selftest)

    def _selftest_text(self, test: SelfTestRecord | None) -> str:
        if test is None:
            return self.t("diagnostics.selftest.none")
        when = when_text(test.at, self.t("diagnostics.selftest.unknown_time"))
        took = f" ({test.duration_s:.2f} s)" if test.duration_s is not None else ""
        key = "diagnostics.selftest.passed" if test.passed else "diagnostics.selftest.failed"
        return self.t(key, when=when, took=took, detail=" ".join(test.detail.split()))

    def run_test(self, kind: str) -> None:
        """The row's "Uji" button: the module's self-test, live, off the UI thread."""
        row = self.rows.get(kind)
        if row is None or row.testing:
            return
        row.testing = True
        module = self.modules().by_kind()[ModuleKind(kind)]
        files, visit = self.files(), self._visit

        def work() -> SelfTestRecord:
            return run_selftest(ModuleKind(kind), module, files)

        in_background(work, lambda record: self._tested(visit, kind, module, record))

    def _tested(self, visit: int, kind: str, module: Any, record: SelfTestRecord | None) -> None:
        row = self.rows.get(kind)
        if row is not None:
            row.testing = False
        if record is None:
            return
        supervision = getattr(self.station, "supervision", None)
        if not record.passed and supervision is not None:
            # the supervision checks it again and takes it out of use if it stays bad
            supervision.report_fault(ModuleKind(kind), DeviceFault(record.detail), module)
        # shown now, whether or not it could be saved
        saved = self._saved or SavedDiagnostics()
        self._saved = dataclasses.replace(saved, selftests={**saved.selftests, kind: record})
        if visit == self._visit:
            self._loaded_at = time.monotonic()  # the file is being written: no need to read it
            self.refresh()

    # -- Kamera --------------------------------------------------------------------------

    def _start_camera(self) -> None:
        self.camera_state = "diagnostics.camera.waiting"
        self.camera_size = self.camera_brightness = self.camera_sharpness = ""
        self._frame_at = self._measured_at = 0.0
        self.ids.camera_preview.texture = None
        if self._live is None:
            self._live = Clock.schedule_interval(self._show_frame, 1 / PREVIEW_FPS)

    def _stop_camera(self) -> None:
        if self._live is not None:
            self._live.cancel()
            self._live = None
        camera, self._camera = self._camera, None
        if camera is not None:
            try:
                camera.stop_preview()
            except Exception as exc:
                log.warning("stopping the diagnostics preview: %s", exc)
        result, self._camera_result = self._camera_result, None
        if result is not None:
            self._save(lambda files: files.save_camera_check(result))

    def _show_frame(self, _dt: float) -> None:
        camera = self.modules().camera
        if camera is not self._camera:  # first frame, or a camera swapped meanwhile
            try:
                camera.start_preview()
            except Exception as exc:  # down: the Modul tab says why
                self.camera_state = "diagnostics.camera.no_frame"
                log.debug("no diagnostics preview: %s", exc)
                return
            self._camera = camera
        frame = camera.latest_frame()
        if frame is None or frame.captured_at == self._frame_at:
            if self._frame_at and time.time() - self._frame_at > 2.0:
                self.camera_state = "diagnostics.camera.no_frame"
            return
        self._frame_at = frame.captured_at
        self.camera_state = ""
        self._texture = texture_from_array(frame.image, self._texture)
        preview = self.ids.camera_preview
        if preview.texture is self._texture:
            preview.canvas.ask_update()
        else:
            preview.texture = self._texture
        self.frames_shown += 1
        now = time.monotonic()
        if now - self._measured_at >= MEASURE_EVERY_S:
            self._measured_at = now
            first = self._camera_result is None
            check = camera_check(frame.image, frame.module, at=frame.captured_at)
            self._camera_result = check
            self.camera_size = self.t(
                "diagnostics.camera.size", width=check.width, height=check.height
            )
            self.camera_brightness = self.t(
                "diagnostics.camera.brightness", value=f"{check.brightness:.0f}"
            )
            self.camera_sharpness = self.t(
                "diagnostics.camera.sharpness", value=f"{check.sharpness:.0f}"
            )
            if first:  # saved at once, and the latest again when the tab is left
                self._save(lambda files: files.save_camera_check(check))

    # -- Sidik jari ----------------------------------------------------------------------

    def capture_print(self) -> None:
        if self.finger_busy:
            return
        reader = self.modules().fingerprint
        self.finger_busy = True
        self.finger_phase = "diagnostics.fingerprint.capturing"
        self.finger_score = self.finger_verdict = ""
        self.ids.print_image.texture = None
        visit = self._visit

        def phase(value: Any) -> None:  # on the reader's thread
            Clock.schedule_once(lambda _dt: self._phase(visit, f"fingerprints.phase.{value}"))

        def work() -> tuple[FingerprintCapture, FingerprintTest] | Exception:
            start = time.monotonic()
            try:
                job = reader.capture(phase)
                self._print_job = job
                capture = job.result()
            except Exception as exc:  # a reader that does not answer is a result here
                return exc
            finally:
                self._print_job = None
            return capture, fingerprint_test(capture, duration_s=time.monotonic() - start)

        in_background(work, lambda result: self._printed(visit, reader, result))

    def _phase(self, visit: int, key: str) -> None:
        if visit == self._visit and self.finger_busy:
            self.finger_phase = key

    def _printed(self, visit: int, reader: Any, result: Any) -> None:
        if visit != self._visit:
            return  # the screen was left: the print is dropped unseen
        self.finger_busy = False
        self.finger_phase = ""
        if result is None or isinstance(result, Exception):
            detail = " ".join(str(result).split()) if result is not None else "?"
            self.finger_verdict = self.t("diagnostics.fingerprint.failed", detail=detail)
            supervision = getattr(self.station, "supervision", None)
            if isinstance(result, DriverError) and supervision is not None:
                supervision.report_fault(ModuleKind.FINGERPRINT, result, reader)
            return
        capture, test = result
        if capture.image is not None:  # on this screen only: never saved
            self.ids.print_image.texture = texture_from_array(capture.image)
        self.finger_score = self.t("diagnostics.fingerprint.score", score=f"{test.score:.0f}")
        if test.outcome != "captured":
            self.finger_verdict = self.t("diagnostics.fingerprint.no_finger")
        elif test.ok:
            self.finger_verdict = self.t("diagnostics.fingerprint.good")
        else:
            self.finger_verdict = self.t(test.problem)
        self._save(lambda files: files.save_fingerprint_test(test))

    # -- Layar sentuh ----------------------------------------------------------------------

    def start_touch_test(self) -> None:
        if self.touch_dialog is not None:
            return
        self.touch_dialog = Factory.TouchTestDialog(on_done=self._touch_done)
        self.touch_dialog.grid.reset()
        self.touch_dialog.open()

    def _touch_done(self, grid: TouchGrid) -> None:
        self.touch_dialog = None
        test = TouchTest.from_cells(
            int(grid.cols), int(grid.rows), grid.touched, screen=tuple(Window.size)
        )
        self.last_touch_test = test
        # shown at once, while it is being saved
        self._saved = dataclasses.replace(self._saved or SavedDiagnostics(), touch_test=test)
        self.ids.touch_map.reset(set(test.dead))
        self._loaded_at = time.monotonic()
        self._save(lambda files: files.save_touch_test(test))
        self.refresh()

    def _touch_text(self) -> str:
        test = self._saved.touch_test if self._saved is not None else None
        if test is None:
            return self.t("diagnostics.touch.none")
        when = when_text(test.at, "")
        if test.passed:
            return self.t("diagnostics.touch.all_good", when=when, cells=test.cells)
        return self.t("diagnostics.touch.dead", when=when, dead=test.dead_count, cells=test.cells)

    # -- Inventaris, Log --------------------------------------------------------------------

    def _inventory_lines(self) -> list[str]:
        model = self.model
        if model is None or not model.units:
            return [self.t("diagnostics.inventory.none")]
        lines = []
        for unit in model.units:
            if unit.installed:
                where = self.t("diagnostics.inventory.installed")
            elif unit.status in ("up", "down", "selftest_failed", "removed"):
                where = self.t(f"diagnostics.inventory.{unit.status}")
            else:
                where = self.t("diagnostics.inventory.not_installed")
            name = " ".join(p for p in (unit.driver, unit.model, unit.serial) if p)
            lines.append(
                self.t(
                    "diagnostics.inventory.unit",
                    kind=self.t(f"diagnostics.kinds.{unit.kind}"),
                    unit=name,
                    source=unit.serial_source or "?",
                    where=where,
                )
            )
            unknown = "?"
            lines.append(
                "    "
                + self.t(
                    "diagnostics.inventory.counts",
                    captures=unit.captures,
                    failures=unit.failures,
                    first=_iso_when(unit.first_seen, unknown),
                    last=_iso_when(unit.last_seen, unknown),
                )
            )
            if unit.last_error:
                error = " ".join(unit.last_error.split())
                lines.append("    " + self.t("diagnostics.inventory.last_error", error=error))
        return lines

    def _log_lines(self) -> list[str]:
        saved = self._saved
        if saved is None or not saved.audit:
            return [self.t("diagnostics.log.none")]
        lines = [self.t("diagnostics.log.count", shown=len(saved.audit), total=saved.audit_total)]
        for entry in saved.audit:
            event = self.t(f"diagnostics.event.{entry.event}")
            if event.startswith("diagnostics."):
                event = entry.event
            kind = self.t(f"diagnostics.kinds.{entry.kind}")
            line = f"{_iso_when(entry.time, '?')}  {kind}: {event}"
            old, new = entry.old or {}, entry.new or {}
            if entry.event == "swapped" and old and new:
                swap = self.t(
                    "diagnostics.log.swap",
                    old=f"{old.get('model', '')} {old.get('serial', '')}".strip(),
                    new=f"{new.get('model', '')} {new.get('serial', '')}".strip(),
                )
                line = f"{line}, {swap}"
            elif new or old:
                unit = new or old
                line = f"{line}, {unit.get('model', '')} {unit.get('serial', '')}".rstrip()
            lines.append(line)
            if entry.event in ("down", "selftest_failed", "tamper") and entry.detail:
                lines.append("    " + " ".join(entry.detail.split()))  # why
        return lines
