"""What ``kiosk doctor`` and ``kiosk selftest`` find out about a station's modules.

Both only read: neither writes the inventory nor the audit log (those belong
to the running kiosk). ``doctor`` shows the running kiosk's view when its
inventory was updated in the last :data:`FRESH_S` seconds; otherwise it checks
each module itself. A check (:func:`check_module`) makes a fresh module, opens
it, reads its identity from the unit, runs its self-test, reads its health and
closes it, all on a thread of its own and bounded by a timeout, so a module
that hangs cannot hang the command.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kiosk.config import StationConfig
from kiosk.drivers.base import HealthStatus, Module, ModuleInfo, ModuleKind
from kiosk.errors import StoreError
from kiosk.health.diagnostics import (
    REQUIRED,
    Diagnostics,
    DiagnosticsFiles,
    ModuleReport,
    SavedDiagnostics,
    SelfTestRecord,
    identity_fields,
    latest,
    selftest_from_status,
    unit_of,
)
from kiosk.health.inventory import (
    INVENTORY_NAME,
    InventorySnapshot,
    UnitRecord,
    iso_time,
    read_inventory,
)
from kiosk.health.station import ModuleFactory, module_factory
from kiosk.store.sqlite import OPERATOR_WORDS, PacketState, read_backlog

FRESH_S = 90.0  # an inventory updated this recently belongs to a running kiosk (3 beats)
DOCTOR_SOURCE = "kiosk doctor"  # a self-test record made by doctor's own check
CHECK_TIMEOUT_S = 20.0  # per module: open, identify (5 s), self-test (10 s), close


@dataclass(frozen=True)
class ModuleCheck:
    """One module checked: made, opened, identified, self-tested, health read, closed."""

    kind: ModuleKind
    info: ModuleInfo | None  # None if it never got as far as identifying itself
    passed: bool  # every step succeeded and the self-test passed
    status: str  # the health after the self-test: "ok", "degraded", "failed"
    detail: str
    duration_s: float  # of the self-test if it ran, else of the whole check

    @property
    def required(self) -> bool:
        return self.kind in REQUIRED


def check_module(
    kind: ModuleKind, factory: ModuleFactory, timeout: float = CHECK_TIMEOUT_S
) -> ModuleCheck:
    """Check one module on a thread of its own, giving up after ``timeout`` seconds
    (the module is then closed from here, which unblocks a pending call)."""
    kind = ModuleKind(kind)
    held: list[Module] = []
    outcome: list[ModuleCheck] = []
    start = time.monotonic()

    def run() -> None:
        outcome.append(_check(kind, factory, held, start))

    thread = threading.Thread(target=run, name=f"check-{kind}", daemon=True)
    thread.start()
    thread.join(timeout)
    if outcome:
        return outcome[0]
    for module in held:  # closed on a thread of its own: close() waits for a hung open()
        threading.Thread(
            target=_close_quietly, args=(module,), name=f"check-{kind}-close", daemon=True
        ).start()
    info = _info_or_none(held[0]) if held else None
    return ModuleCheck(
        kind, info, False, "failed", f"no answer within {timeout:g} s", time.monotonic() - start
    )


def _check(
    kind: ModuleKind, factory: ModuleFactory, held: list[Module], start: float
) -> ModuleCheck:
    def failed(step: str, exc: BaseException, info: ModuleInfo | None = None) -> ModuleCheck:
        text = " ".join(str(exc).split())
        detail = f"did not {step}: {text or type(exc).__name__}"
        return ModuleCheck(kind, info, False, "failed", detail, time.monotonic() - start)

    try:
        module = factory()
    except Exception as exc:
        return failed("load", exc)
    held.append(module)
    try:
        try:
            module.open()
        except Exception as exc:
            return failed("open", exc, _info_or_none(module))
        try:
            info = module.identify()
        except Exception as exc:
            return failed("identify itself", exc, _info_or_none(module))
        result = module.self_test()
        health = module.health()
        if not result.passed:
            detail = f"self-test failed: {result.detail}"
            return ModuleCheck(kind, info, False, "failed", detail, result.duration_s)
        detail = result.detail if health.ok else f"{result.detail}; health: {health.detail}"
        passed = health.status is not HealthStatus.FAILED
        return ModuleCheck(kind, info, passed, str(health.status), detail, result.duration_s)
    finally:
        _close_quietly(module)


def _close_quietly(module: Module) -> None:
    with contextlib.suppress(
        Exception
    ):  # the check's answer stands; a failed close is the driver's
        module.close()


def _info_or_none(module: Module) -> ModuleInfo | None:
    try:
        return module.info()
    except Exception:
        return None


def check_station(
    factories: Mapping[ModuleKind, ModuleFactory], timeout: float = CHECK_TIMEOUT_S
) -> list[ModuleCheck]:
    """Check every module at once (each on its own thread), in the factories' order."""
    results: dict[ModuleKind, ModuleCheck] = {}

    def one(kind: ModuleKind, factory: ModuleFactory) -> None:
        results[kind] = check_module(kind, factory, timeout)

    threads = [
        threading.Thread(target=one, args=(kind, factory), name=f"doctor-{kind}", daemon=True)
        for kind, factory in factories.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 1.0)
    return [
        results.get(kind)
        or ModuleCheck(kind, None, False, "failed", f"no answer within {timeout:g} s", timeout)
        for kind in factories
    ]


def station_factories(config: StationConfig, simulate: bool) -> dict[ModuleKind, ModuleFactory]:
    return {kind: module_factory(config, kind, simulate) for kind in config.modules}


# -- kiosk doctor ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DoctorReport:
    data_dir: str
    station_id: str
    config_path: str
    source: str  # "kiosk": the running kiosk's view; "check": checked by doctor now
    source_detail: str
    inventory_path: str
    inventory_updated_at: float | None
    inventory_problem: str
    modules: list[ModuleReport]
    units: list[UnitRecord] = field(default_factory=list)
    packets: dict[str, int] = field(default_factory=dict)  # state -> count
    packets_problem: str = ""
    # what the diagnostics screen saved (touch test, test print, camera check, its
    # self-tests) and the audit log's latest events
    saved: SavedDiagnostics = field(default_factory=SavedDiagnostics)

    @property
    def diagnostics(self) -> Diagnostics:
        """The same model the diagnostics screen shows."""
        return Diagnostics(
            self.modules, self.units, self.saved, self.inventory_path, self.inventory_problem
        )

    @property
    def ok(self) -> bool:
        """Every required module is up (or passed its check)."""
        return all(module.ok for module in self.modules if module.required)

    def as_dict(self) -> dict[str, Any]:
        updated = self.inventory_updated_at
        return {
            "station_id": self.station_id,
            "config": self.config_path,
            "data_dir": self.data_dir,
            "ok": self.ok,
            "source": self.source,
            "source_detail": self.source_detail,
            "modules": [module.as_dict() for module in self.modules],
            "inventory": [unit.as_dict() for unit in self.units],
            "inventory_path": self.inventory_path,
            "inventory_updated_at": iso_time(updated) if updated is not None else None,
            "inventory_problem": self.inventory_problem,
            "packets": self.packets,
            "packets_problem": self.packets_problem,
            **self.saved.as_dict(),
        }

    def lines(self) -> list[str]:
        """The report as text for a terminal."""
        out = [f"station {self.station_id} ({self.config_path})", f"modules {self.source_detail}:"]
        for module in self.modules:
            unit = f"{module.model} {module.serial}".strip() or "(not identified)"
            source = f" [serial from {module.serial_source}]" if module.serial_source else ""
            firmware = f" firmware {module.firmware}" if module.firmware else ""
            role = "" if module.required else " (optional)"
            out.append(
                f"  {module.kind:<12} {module.status.upper():<9} {module.driver:<10} "
                f"{unit}{source}{firmware}{role}"
            )
            if module.detail:
                out.append(f"  {'':<12} {module.detail}")
            test = module.last_selftest
            if test is not None and test.source not in (DOCTOR_SOURCE, "kiosk"):  # not said above
                out.append(f"  {'':<12} last self-test: {_selftest_text(test)}")
        if self.inventory_problem:
            out.append(f"inventory {self.inventory_path}: {self.inventory_problem}")
        else:
            count = len(self.units)
            out.append(
                f"inventory {self.inventory_path}: {count} unit{'' if count == 1 else 's'} seen"
            )
        for unit in self.units:
            where = "installed" if unit.installed else unit.status or "not installed"
            error = f", last error: {unit.last_error}" if unit.last_error else ""
            out.append(
                f"  {unit.kind:<12} {unit.driver} {unit.model} {unit.serial} "
                f"[{unit.serial_source or '?'}] {where}; first seen {unit.first_seen}, "
                f"last seen {unit.last_seen}, {unit.captures} captures, "
                f"{unit.failures} failures{error}"
            )
        out.extend(_saved_lines(self.saved))
        if self.packets_problem:
            out.append(f"packets: {self.packets_problem}")
        else:
            counts = ", ".join(
                f"{count} {OPERATOR_WORDS[PacketState(state)]} ({state})"
                for state, count in self.packets.items()
            )
            out.append(f"packets: {counts}")
            if self.packets.get(PacketState.QUARANTINED):
                out.append(f"  damaged packets were set aside in {self.data_dir}/quarantine")
        failing = [m for m in self.modules if not m.ok]
        if not failing:
            out.append("result: OK")
        else:
            names = ", ".join(
                f"{m.kind} {m.status}{'' if m.required else ' (optional: a warning)'}"
                for m in failing
            )
            out.append(f"result: {'NOT OK' if not self.ok else 'OK with warnings'}: {names}")
        return out


def _short_time(seconds: float | None) -> str:
    if seconds is None:
        return "(time unknown)"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _selftest_text(test: SelfTestRecord) -> str:
    verdict = "passed" if test.passed else "FAILED"
    took = f", {test.duration_s:.2f} s" if test.duration_s is not None else ""
    who = {"screen": "the diagnostics screen", "kiosk": "the kiosk as it came up"}
    by = who.get(test.source, test.source)
    return f"{verdict} {_short_time(test.at)}{took}, by {by}: {test.detail}"


def _saved_lines(saved: SavedDiagnostics, audit_lines: int = 5) -> list[str]:
    """A few lines on the audit log and what the diagnostics screen found last."""
    count = saved.audit_total
    out = [f"audit log {saved.audit_path}: {count} event{'' if count == 1 else 's'}"]
    for entry in saved.audit[:audit_lines]:
        out.append(f"  {entry.time} {entry.event:<15} {entry.kind:<12} {entry.detail}")
    if count > audit_lines:
        out.append(f"  ... {count - audit_lines} older (--json shows {len(saved.audit)})")
    touch = saved.touch_test
    if touch is None:
        out.append("touch test: none yet (the diagnostics screen makes one)")
    else:
        cells = " ".join(f"({c},{r})" for c, r in touch.dead[:8])
        more = " ..." if touch.dead_count > 8 else ""
        where = f": (col,row) from the top left {cells}{more}" if touch.dead else ""
        out.append(
            f"touch test {_short_time(touch.at)}: {touch.dead_count} of {touch.cells} cells "
            f"never touched{where}"
        )
    finger = saved.fingerprint_test
    if finger is None:
        out.append("test print: none yet")
    else:
        out.append(
            f"test print {_short_time(finger.at)}: NFIQ2Like {finger.score:.0f}, {finger.verdict}"
            f" ({finger.unit.get('model', '')} {finger.unit.get('serial', '')})".rstrip()
        )
    camera = saved.camera_check
    if camera is None:
        out.append("camera check: none yet")
    else:
        out.append(
            f"camera check {_short_time(camera.at)}: {camera.width}x{camera.height}, "
            f"brightness {camera.brightness:.0f}, sharpness {camera.sharpness:.0f}"
        )
    for problem in saved.problems:
        out.append(f"diagnostics: {problem}")
    return out


def kiosk_is_running(
    snapshot: InventorySnapshot | None, now: float, fresh_s: float = FRESH_S
) -> bool:
    """Whether the inventory was written by a kiosk running now."""
    if snapshot is None or not snapshot.running or snapshot.updated_at is None:
        return False
    if snapshot.pid is not None and not _process_exists(snapshot.pid):
        return False  # it died within the last seconds, without marking the file
    return abs(now - snapshot.updated_at) <= fresh_s


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process is there
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # another user's process (the kiosk's), or a pid we cannot ask about
    return True


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def doctor(
    config: StationConfig,
    *,
    simulate: bool = False,
    fresh_s: float = FRESH_S,
    timeout: float = CHECK_TIMEOUT_S,
    clock: Callable[[], float] = time.time,
) -> DoctorReport:
    """The report ``kiosk doctor`` prints: the running kiosk's view, or checks made now."""
    path = Path(config.data_dir) / INVENTORY_NAME
    problem = ""
    try:
        snapshot = read_inventory(path)
    except (OSError, ValueError) as exc:
        snapshot, problem = None, f"unreadable ({exc}); the kiosk sets it aside at its next start"
    now = clock()
    units = snapshot.units if snapshot else []
    updated = snapshot.updated_at if snapshot else None
    saved = DiagnosticsFiles(config.data_dir).load()
    try:
        packets, packets_problem = read_backlog(config.data_dir), ""
    except StoreError as exc:
        packets, packets_problem = {}, str(exc)
    common = {
        "data_dir": str(config.data_dir),
        "packets": {str(state): count for state, count in packets.items()},
        "packets_problem": packets_problem,
        "station_id": config.station_id,
        "config_path": str(config.path),
        "inventory_path": str(path),
        "inventory_updated_at": updated,
        "inventory_problem": problem,
        "units": units,
        "saved": saved,
    }
    if snapshot is not None and kiosk_is_running(snapshot, now, fresh_s):
        assert updated is not None
        pid = f"pid {snapshot.pid}; " if snapshot.pid else ""
        modules = [_kiosk_view(kind, config, snapshot, simulate, saved) for kind in config.modules]
        detail = f"as seen by the running kiosk ({pid}inventory updated {_ago(now - updated)})"
        return DoctorReport(source="kiosk", source_detail=detail, modules=modules, **common)
    if problem:
        why = "the inventory is unreadable"
    elif snapshot is None:
        why = "no inventory yet"
    elif updated is None:
        why = "the inventory was never written by a running kiosk"
    elif not snapshot.running:
        why = f"the kiosk stopped {_ago(now - updated)}"
    else:
        why = f"no running kiosk: the inventory was last updated {_ago(now - updated)}"
    checked_at = clock()
    checks = check_station(station_factories(config, simulate), timeout)
    modules = [_checked_view(check, config, simulate, saved, checked_at) for check in checks]
    detail = f"checked by kiosk doctor now ({why})"
    return DoctorReport(source="check", source_detail=detail, modules=modules, **common)


def _configured_driver(config: StationConfig, kind: ModuleKind, simulate: bool) -> str:
    return "fake" if simulate else config.modules[kind].driver


def _kiosk_view(
    kind: ModuleKind,
    config: StationConfig,
    snapshot: InventorySnapshot,
    simulate: bool,
    saved: SavedDiagnostics,
) -> ModuleReport:
    entry = snapshot.status.get(str(kind), {})
    status = entry.get("status", "unknown")
    unit = next((u for u in snapshot.units if u.kind == str(kind) and u.installed), None)
    identity = identity_fields(unit)
    return ModuleReport(
        kind=str(kind),
        **{"driver": _configured_driver(config, kind, simulate), **identity},
        status=status,
        ok=status == "up",
        required=kind in REQUIRED,
        detail=entry.get("detail", "" if entry else "not reported by the kiosk"),
        last_selftest=latest(saved.selftests.get(str(kind)), selftest_from_status(kind, entry)),
    )


def _checked_view(
    check: ModuleCheck,
    config: StationConfig,
    simulate: bool,
    saved: SavedDiagnostics,
    checked_at: float,
) -> ModuleReport:
    identity = identity_fields(check.info)
    own = SelfTestRecord(
        str(check.kind),
        check.passed,
        check.detail,
        checked_at,
        check.duration_s,
        DOCTOR_SOURCE,
        unit_of(check.info),
    )
    return ModuleReport(
        kind=str(check.kind),
        **{"driver": _configured_driver(config, check.kind, simulate), **identity},
        status=check.status,
        ok=check.passed,
        required=check.required,
        detail=check.detail,
        last_selftest=latest(own, saved.selftests.get(str(check.kind))),
    )
