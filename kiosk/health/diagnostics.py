"""What the technician's diagnostics show, for the screen and ``kiosk doctor --json`` alike.

One model, :class:`Diagnostics`: per module its kind, driver, the unit's
identity, status and last self-test (passed or not, when, how long); the
station's inventory; the audit log of swaps (latest first, at most
:data:`AUDIT_SHOWN` entries); and the last checks the diagnostics screen made:
the touch test (which cells of a grid over the whole screen were never touched:
the dead zones), the test fingerprint (its NFIQ2Like score and verdict) and the
camera check (frame size, mean brightness, sharpness).

The screen saves its results as small JSON files in ``<data_dir>/diagnostics/``
(each written whole and crash-safely, private, like the inventory); ``kiosk
doctor`` reads them. Nothing here ever keeps an image: a test print and a
camera frame are shown on the screen and measured, and only the numbers are
saved (biometrics never rest on disk in clear)::

    files = DiagnosticsFiles(config.data_dir)
    files.save_touch_test(TouchTest.from_cells(cols=10, rows=6, touched=cells))
    saved = files.load()  # never raises; a damaged file is named in saved.problems
    print(saved.touch_test.dead_count if saved.touch_test else "no touch test yet")
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from kiosk.drivers.base import HealthStatus, Module, ModuleInfo, ModuleKind
from kiosk.health.audit import AUDIT_NAME, AuditEntry, read_audit
from kiosk.health.inventory import (
    INVENTORY_NAME,
    UnitRecord,
    iso_time,
    parse_time,
    read_inventory,
    write_private_file,
)

if TYPE_CHECKING:
    from kiosk.drivers.base import FingerprintCapture

log = logging.getLogger(__name__)

DIAGNOSTICS_DIR = "diagnostics"  # inside the station's data_dir
SELFTESTS_NAME = "selftests.json"
TOUCH_TEST_NAME = "touch-test.json"
FINGERPRINT_TEST_NAME = "fingerprint-test.json"
CAMERA_CHECK_NAME = "camera-check.json"
SCHEMA = 1
AUDIT_SHOWN = 50  # the latest audit events shown (the log itself keeps every one)
# Without these the station cannot enroll; the lights and buzzer only help.
REQUIRED = (ModuleKind.CAMERA, ModuleKind.FINGERPRINT, ModuleKind.SIGNATURE)
SHARPNESS_WIDTH = 320  # a frame is measured at this width: figures compare across cameras
MAX_GRID = 64  # cells a side of a touch test grid


def _when(seconds: float | None) -> str | None:
    return iso_time(seconds) if seconds is not None else None


def _number(data: Mapping[str, Any], name: str, *, minimum: float = 0.0) -> float:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a number")
    if value < minimum:
        raise ValueError(f"{name}: expected at least {minimum:g}")
    return float(value)


def _whole(data: Mapping[str, Any], name: str, low: int, high: int) -> int:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name}: expected a whole number {low}..{high}")
    return value


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name, "")
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected text")
    return value


def _time(data: Mapping[str, Any], name: str = "at") -> float:
    value = data.get(name)
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a time")
    return parse_time(value)


def _unit(data: Mapping[str, Any]) -> dict[str, str]:
    unit = data.get("unit", {})
    if not isinstance(unit, dict) or not all(isinstance(v, str) for v in unit.values()):
        raise ValueError("unit: expected an object of texts")
    return dict(unit)


def unit_of(info: ModuleInfo | None) -> dict[str, str]:
    """What a saved result keeps of the unit it was made on (no more than the audit log)."""
    if info is None:
        return {}
    return {"driver": info.driver, "model": info.model, "serial": info.serial}


# -- the results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SelfTestRecord:
    """One module's self-test: who ran it (``source``: "screen", "kiosk doctor", or
    "kiosk", the supervision's test when the module came up), when and how long.
    ``at`` and ``duration_s`` are None where the source does not say."""

    kind: str
    passed: bool
    detail: str
    at: float | None
    duration_s: float | None = None
    source: str = "screen"
    unit: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "passed": self.passed,
            "detail": self.detail,
            "at": _when(self.at),
            "duration_s": round(self.duration_s, 3) if self.duration_s is not None else None,
            "source": self.source,
            "unit": dict(self.unit),
        }

    @classmethod
    def from_dict(cls, data: object) -> SelfTestRecord:
        if not isinstance(data, dict):
            raise ValueError("a self-test is an object")
        passed = data.get("passed")
        if not isinstance(passed, bool):
            raise ValueError("passed: expected true or false")
        duration = data.get("duration_s")
        return cls(
            kind=str(ModuleKind(_text(data, "kind"))),
            passed=passed,
            detail=_text(data, "detail"),
            at=_time(data),
            duration_s=None if duration is None else _number(data, "duration_s"),
            source=_text(data, "source") or "screen",
            unit=_unit(data),
        )


def selftest_from_status(kind: str, entry: Mapping[str, str] | None) -> SelfTestRecord | None:
    """The supervision's own self-test, read from a kind's status in the inventory
    ({"status", "detail", "since"}): its detail says "self-test passed: ..." or
    "self-test failed ...: ..." when the module last came up or failed its test."""
    if not entry:
        return None
    detail = entry.get("detail", "")
    if "self-test passed: " in detail:
        passed, text = True, detail.split("self-test passed: ", 1)[1]
    elif "self-test failed" in detail or "self-test after a fault failed" in detail:
        passed, text = False, detail
    else:
        return None
    try:
        at = parse_time(entry["since"]) if entry.get("since") else None
    except ValueError:
        at = None
    return SelfTestRecord(str(kind), passed, text, at, None, source="kiosk")


def latest(*records: SelfTestRecord | None) -> SelfTestRecord | None:
    """The most recent of ``records`` (one without a time counts as oldest)."""
    known = [record for record in records if record is not None]
    if not known:
        return None
    return max(known, key=lambda record: record.at if record.at is not None else -math.inf)


@dataclass(frozen=True)
class TouchTest:
    """A touch test: a ``cols`` x ``rows`` grid over the whole screen; ``dead`` are the
    cells never touched, (col, row) with row 0 at the top."""

    at: float
    cols: int
    rows: int
    dead: tuple[tuple[int, int], ...]
    screen: tuple[int, int] = (0, 0)  # the window's size in pixels when tested

    @property
    def cells(self) -> int:
        return self.cols * self.rows

    @property
    def dead_count(self) -> int:
        return len(self.dead)

    @property
    def passed(self) -> bool:
        return not self.dead

    @classmethod
    def from_cells(
        cls,
        cols: int,
        rows: int,
        touched: Iterable[tuple[int, int]],
        *,
        screen: tuple[int, int] = (0, 0),
        at: float | None = None,
    ) -> TouchTest:
        """The result of a test in which ``touched`` cells were touched."""
        if not (1 <= cols <= MAX_GRID and 1 <= rows <= MAX_GRID):
            raise ValueError(f"a touch grid is 1..{MAX_GRID} cells a side, got {cols}x{rows}")
        hit = set(touched)
        dead = tuple((c, r) for r in range(rows) for c in range(cols) if (c, r) not in hit)
        width, height = screen
        return cls(time.time() if at is None else at, cols, rows, dead, (int(width), int(height)))

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": iso_time(self.at),
            "cols": self.cols,
            "rows": self.rows,
            "cells": self.cells,
            "dead_count": self.dead_count,
            "dead": [list(cell) for cell in self.dead],
            "screen": list(self.screen),
            "passed": self.passed,
        }

    @classmethod
    def from_dict(cls, data: object) -> TouchTest:
        if not isinstance(data, dict):
            raise ValueError("a touch test is an object")
        cols, rows = _whole(data, "cols", 1, MAX_GRID), _whole(data, "rows", 1, MAX_GRID)
        dead = data.get("dead")
        if not isinstance(dead, list):
            raise ValueError("dead: expected a list of [col, row]")
        cells = []
        for cell in dead:
            if (
                not isinstance(cell, list)
                or len(cell) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in cell)
                or not (0 <= cell[0] < cols and 0 <= cell[1] < rows)
            ):
                raise ValueError(f"dead: {cell!r} is not a cell of a {cols}x{rows} grid")
            cells.append((cell[0], cell[1]))
        screen = data.get("screen", [0, 0])
        if not (
            isinstance(screen, list)
            and len(screen) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in screen)
        ):
            raise ValueError("screen: expected [width, height]")
        return cls(
            _time(data),
            cols,
            rows,
            tuple(sorted(set(cells), key=lambda c: (c[1], c[0]))),
            (screen[0], screen[1]),
        )


@dataclass(frozen=True)
class FingerprintTest:
    """A test print: when, on which reader, its NFIQ2Like score (0..100) and verdict
    (``problem`` is the quality problem's i18n key, "" for a good print). Never the image."""

    at: float
    outcome: str  # "captured", "no_finger", ...
    score: float
    ok: bool
    problem: str = ""
    unit: dict[str, str] = field(default_factory=dict)
    duration_s: float | None = None

    @property
    def verdict(self) -> str:
        if self.outcome != "captured":
            return self.outcome
        return "good" if self.ok else self.problem.rsplit(".", 1)[-1] or "poor"

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": iso_time(self.at),
            "outcome": self.outcome,
            "score": self.score,
            "ok": self.ok,
            "verdict": self.verdict,
            "problem": self.problem,
            "unit": dict(self.unit),
            "duration_s": round(self.duration_s, 3) if self.duration_s is not None else None,
        }

    @classmethod
    def from_dict(cls, data: object) -> FingerprintTest:
        if not isinstance(data, dict):
            raise ValueError("a fingerprint test is an object")
        ok = data.get("ok")
        if not isinstance(ok, bool):
            raise ValueError("ok: expected true or false")
        duration = data.get("duration_s")
        return cls(
            at=_time(data),
            outcome=_text(data, "outcome"),
            score=_number(data, "score"),
            ok=ok,
            problem=_text(data, "problem"),
            unit=_unit(data),
            duration_s=None if duration is None else _number(data, "duration_s"),
        )


def fingerprint_test(
    capture: FingerprintCapture, *, duration_s: float | None = None, at: float | None = None
) -> FingerprintTest:
    """Judge a test print with the enrollment's own quality check; keeps only the numbers."""
    from kiosk.drivers.base import Outcome
    from kiosk.quality.fingerprint import SensorSignals, assess_fingerprint

    when = capture.captured_at if at is None else at
    unit = unit_of(capture.module)
    if capture.outcome is not Outcome.CAPTURED or capture.image is None:
        return FingerprintTest(when, str(capture.outcome), 0.0, False, "", unit, duration_s)
    quality = assess_fingerprint(capture.image, SensorSignals.from_capture(capture))
    problem = str(quality.problem) if quality.problem is not None else ""
    return FingerprintTest(when, "captured", quality.score, quality.ok, problem, unit, duration_s)


@dataclass(frozen=True)
class CameraCheck:
    """A camera check: the preview frame's size, its mean brightness (grey 0..255) and
    sharpness (variance of the Laplacian at 320 px wide). Never the image."""

    at: float
    width: int
    height: int
    brightness: float
    sharpness: float
    unit: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": iso_time(self.at),
            "width": self.width,
            "height": self.height,
            "brightness": self.brightness,
            "sharpness": self.sharpness,
            "unit": dict(self.unit),
        }

    @classmethod
    def from_dict(cls, data: object) -> CameraCheck:
        if not isinstance(data, dict):
            raise ValueError("a camera check is an object")
        return cls(
            at=_time(data),
            width=_whole(data, "width", 1, 65536),
            height=_whole(data, "height", 1, 65536),
            brightness=_number(data, "brightness"),
            sharpness=_number(data, "sharpness"),
            unit=_unit(data),
        )


def camera_measures(image: np.ndarray) -> tuple[float, float]:
    """Mean brightness (grey 0..255) and sharpness (variance of the Laplacian of the
    grey frame scaled to 320 px wide) of an RGB or grey uint8 frame."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    height, width = gray.shape[:2]
    if width != SHARPNESS_WIDTH:
        size = (SHARPNESS_WIDTH, max(1, round(height * SHARPNESS_WIDTH / width)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    brightness = float(gray.mean())
    sharpness = float(cv2.Laplacian(gray, cv2.CV_32F).var())
    return round(brightness, 1), round(sharpness, 1)


def camera_check(
    image: np.ndarray, info: ModuleInfo | None = None, at: float | None = None
) -> CameraCheck:
    """Measure one preview frame; keeps only the numbers."""
    brightness, sharpness = camera_measures(image)
    height, width = image.shape[:2]
    return CameraCheck(
        time.time() if at is None else at, width, height, brightness, sharpness, unit_of(info)
    )


# -- the files ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SavedDiagnostics:
    """What the diagnostics screen saved, and the audit log (latest first, bounded)."""

    selftests: dict[str, SelfTestRecord] = field(default_factory=dict)
    touch_test: TouchTest | None = None
    fingerprint_test: FingerprintTest | None = None
    camera_check: CameraCheck | None = None
    audit: list[AuditEntry] = field(default_factory=list)
    audit_total: int = 0
    audit_path: str = ""
    folder: str = ""
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        def maybe(record: Any) -> dict[str, Any] | None:
            return record.as_dict() if record is not None else None

        return {
            "audit": [entry.as_dict() for entry in self.audit],
            "audit_total": self.audit_total,
            "audit_path": self.audit_path,
            "touch_test": maybe(self.touch_test),
            "fingerprint_test": maybe(self.fingerprint_test),
            "camera_check": maybe(self.camera_check),
            "diagnostics_path": self.folder,
            "diagnostics_problem": "; ".join(self.problems),
        }


class DiagnosticsFiles:
    """The diagnostics screen's results in ``<data_dir>/diagnostics/``. Saving replaces
    a file whole (temp file, fsync, rename; 0600 in a 0700 folder) and never raises:
    a failure is logged and False returned. Loading never raises either."""

    def __init__(self, data_dir: Path | str, *, audit_shown: int = AUDIT_SHOWN) -> None:
        self.data_dir = Path(data_dir)
        self.folder = self.data_dir / DIAGNOSTICS_DIR
        self.audit_path = self.data_dir / AUDIT_NAME
        self.audit_shown = audit_shown
        self._lock = threading.Lock()

    def path(self, name: str) -> Path:
        return self.folder / name

    # -- saving -----------------------------------------------------------------------

    def save_touch_test(self, test: TouchTest) -> bool:
        return self._write(TOUCH_TEST_NAME, test.as_dict())

    def save_fingerprint_test(self, test: FingerprintTest) -> bool:
        return self._write(FINGERPRINT_TEST_NAME, test.as_dict())

    def save_camera_check(self, check: CameraCheck) -> bool:
        return self._write(CAMERA_CHECK_NAME, check.as_dict())

    def save_selftest(self, record: SelfTestRecord) -> bool:
        """Keep ``record`` as its kind's last self-test (the others stay)."""
        with self._lock:
            try:
                known = self._read_selftests()
            except (OSError, ValueError) as exc:
                log.warning("%s: starting afresh (%s)", self.path(SELFTESTS_NAME), exc)
                known = {}
            known[record.kind] = record
            body = {kind: entry.as_dict() for kind, entry in known.items()}
            return self._write(SELFTESTS_NAME, {"selftests": body}, locked=True)

    def _write(self, name: str, data: dict[str, Any], *, locked: bool = False) -> bool:
        text = json.dumps({"schema": SCHEMA, **data}, indent=1) + "\n"
        path = self.path(name)
        try:
            if locked:
                write_private_file(path, text)
            else:
                with self._lock:
                    write_private_file(path, text)
        except OSError as exc:
            log.error("%s: the diagnostics result could not be saved (%s)", path, exc)
            return False
        return True

    # -- loading ----------------------------------------------------------------------

    def _read(self, name: str) -> dict[str, Any] | None:
        try:
            text = self.path(name).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except UnicodeDecodeError:
            raise ValueError("not UTF-8 text") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise ValueError(f"not a schema {SCHEMA} diagnostics file")
        return data

    def _read_selftests(self) -> dict[str, SelfTestRecord]:
        data = self._read(SELFTESTS_NAME)
        if data is None:
            return {}
        entries = data.get("selftests", {})
        if not isinstance(entries, dict):
            raise ValueError("selftests: expected an object of kinds")
        return {str(kind): SelfTestRecord.from_dict(entry) for kind, entry in entries.items()}

    def load(self) -> SavedDiagnostics:
        """Everything saved, and the audit log's latest events; a damaged file is
        named in ``problems`` (and left where it is), never raised."""
        problems: list[str] = []
        values: dict[str, Any] = {}

        def attempt(name: str, read: Callable[[], Any]) -> Any:
            try:
                return read()
            except (OSError, ValueError) as exc:
                problems.append(f"{self.path(name)}: unreadable ({exc})")
                return None

        def one(name: str, parse: Callable[[object], Any]) -> Any:
            data = attempt(name, lambda: self._read(name))
            if data is None:
                return None
            return attempt(name, lambda: parse(data))

        values["selftests"] = attempt(SELFTESTS_NAME, self._read_selftests) or {}
        values["touch_test"] = one(TOUCH_TEST_NAME, TouchTest.from_dict)
        values["fingerprint_test"] = one(FINGERPRINT_TEST_NAME, FingerprintTest.from_dict)
        values["camera_check"] = one(CAMERA_CHECK_NAME, CameraCheck.from_dict)
        try:
            entries = read_audit(self.audit_path)
        except OSError as exc:
            problems.append(f"{self.audit_path}: unreadable ({exc.strerror or exc})")
            entries = []
        return SavedDiagnostics(
            **values,
            audit=list(reversed(entries))[: self.audit_shown],
            audit_total=len(entries),
            audit_path=str(self.audit_path),
            folder=str(self.folder),
            problems=problems,
        )


# -- the model ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModuleReport:
    """One configured module: what ``kiosk doctor`` and the diagnostics screen show."""

    kind: str
    driver: str
    # the running kiosk's "up", "down", "starting"; a check's or a module's own
    # health "ok", "degraded", "failed"
    status: str
    ok: bool
    required: bool
    detail: str = ""
    model: str = ""
    serial: str = ""
    serial_source: str = ""
    firmware: str = ""
    simulated: bool = False
    last_selftest: SelfTestRecord | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "driver": self.driver,
            "model": self.model,
            "serial": self.serial,
            "serial_source": self.serial_source,
            "firmware": self.firmware,
            "simulated": self.simulated,
            "status": self.status,
            "ok": self.ok,
            "required": self.required,
            "detail": self.detail,
            "last_selftest": self.last_selftest.as_dict() if self.last_selftest else None,
        }


def identity_fields(unit: ModuleInfo | UnitRecord | None) -> dict[str, Any]:
    """What a report shows of a unit, from a live module or the inventory alike."""
    if unit is None:
        return {}
    names = ("driver", "model", "serial", "serial_source", "firmware", "simulated")
    return {name: getattr(unit, name) for name in names}


@dataclass(frozen=True)
class Diagnostics:
    """Everything the diagnostics screen shows; ``as_dict()`` is the part of ``kiosk
    doctor --json`` that carries it (the same keys)."""

    modules: list[ModuleReport]
    units: list[UnitRecord]
    saved: SavedDiagnostics
    inventory_path: str = ""
    inventory_problem: str = ""

    def module(self, kind: str) -> ModuleReport | None:
        return next((m for m in self.modules if m.kind == str(kind)), None)

    @property
    def audit(self) -> list[AuditEntry]:
        return self.saved.audit

    def as_dict(self) -> dict[str, Any]:
        return {
            "modules": [module.as_dict() for module in self.modules],
            "inventory": [unit.as_dict() for unit in self.units],
            "inventory_path": self.inventory_path,
            "inventory_problem": self.inventory_problem,
            **self.saved.as_dict(),
        }


def live_module(
    kind: ModuleKind,
    module: Module,
    *,
    supervised: tuple[str, str, ModuleInfo | None] | None = None,
    status_entry: Mapping[str, str] | None = None,
    saved: SelfTestRecord | None = None,
) -> ModuleReport:
    """A module in use by the running kiosk: its status from the supervision
    (``supervised``: status, detail, unit) if it is supervised, else its own health."""
    kind = ModuleKind(kind)
    try:
        info: ModuleInfo | None = module.info()
    except Exception:
        info = None
    if supervised is not None:
        status, detail, unit = supervised
        status = str(status)
        ok = status == "up"
        info = unit or info
    else:
        try:
            health = module.health()
            status, detail = str(health.status), health.detail
        except Exception as exc:  # health() must not raise; if it does, it is not healthy
            status, detail = str(HealthStatus.FAILED), f"{type(exc).__name__}: {exc}"
        ok = status != str(HealthStatus.FAILED)
    return ModuleReport(
        kind=str(kind),
        **{"driver": "", **identity_fields(info)},
        status=status,
        ok=ok,
        required=kind in REQUIRED,
        detail=detail,
        last_selftest=latest(saved, selftest_from_status(str(kind), status_entry)),
    )


def live_diagnostics(station: Any) -> Diagnostics:
    """The diagnostics of the running kiosk's ``station`` (``.config``, ``.modules``,
    ``.supervision`` or None): see :func:`diagnostics_of`."""
    return diagnostics_of(
        station.modules,
        getattr(station, "supervision", None),
        station.config.data_dir,
        kinds=list(station.config.modules),
    )


def diagnostics_of(
    modules: Any,
    supervision: Any = None,
    data_dir: Path | str | None = None,
    *,
    kinds: Iterable[ModuleKind] | None = None,
    saved: SavedDiagnostics | None = None,
) -> Diagnostics:
    """The diagnostics of the modules the kiosk holds (a StationModules): each one's
    status as the supervision has it (its own health when unsupervised), the
    inventory as the supervision keeps it (or as last saved in ``data_dir``), and
    what was saved in ``data_dir``. ``saved`` spares reading the files again (they
    are read when it is None and ``data_dir`` is given): the screen reads them
    seldom and the statuses every second."""
    folder = Path(data_dir) if data_dir is not None else None
    if saved is None:
        saved = DiagnosticsFiles(folder).load() if folder is not None else SavedDiagnostics()
    statuses: dict[ModuleKind, Any] = {}
    kind_status: dict[str, dict[str, str]] = {}
    inventory_path = str(folder / INVENTORY_NAME) if folder is not None else ""
    problem = ""
    units: list[UnitRecord] = []
    if supervision is not None:
        statuses = supervision.status()
        kind_status = supervision.inventory.kind_status()
        units = supervision.inventory.units()
        inventory_path = str(supervision.inventory.path)
    elif folder is not None:
        try:
            snapshot = read_inventory(folder / INVENTORY_NAME)
        except (OSError, ValueError) as exc:
            snapshot, problem = None, f"unreadable ({exc})"
        units = snapshot.units if snapshot else []
    held = modules.by_kind()
    reports = []
    for kind in kinds if kinds is not None else held:
        kind = ModuleKind(kind)
        entry = statuses.get(kind)
        supervised = (str(entry[0]), entry[1], entry[2]) if entry is not None else None
        reports.append(
            live_module(
                kind,
                held[kind],
                supervised=supervised,
                status_entry=kind_status.get(str(kind)),
                saved=saved.selftests.get(str(kind)),
            )
        )
    return Diagnostics(reports, units, saved, inventory_path, problem)


def run_selftest(
    kind: ModuleKind, module: Module, files: DiagnosticsFiles | None = None
) -> SelfTestRecord:
    """Run ``module``'s self-test now (blocking: off the UI thread) and keep its result
    as the kind's last self-test in ``files``."""
    at = time.time()
    try:
        info: ModuleInfo | None = module.info()
    except Exception:
        info = None
    result = module.self_test()  # never raises
    record = SelfTestRecord(
        str(ModuleKind(kind)),
        result.passed,
        result.detail,
        at,
        result.duration_s,
        "screen",
        unit_of(info),
    )
    if files is not None:
        files.save_selftest(record)
    return record
