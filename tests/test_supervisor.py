"""Module supervision: up, down on a fault or a failed health, backoff, swaps, presence, stop."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import support

from kiosk.config import ModuleConfig, SessionConfig, StationConfig
from kiosk.drivers import registry
from kiosk.drivers.base import Health, HealthStatus, ModuleKind
from kiosk.drivers.fingerprint.fake import FakeFingerprintReader
from kiosk.errors import DeviceFault, DeviceUnavailable
from kiosk.health.audit import AuditLog, read_audit
from kiosk.health.inventory import ModuleInventory, read_inventory
from kiosk.health.station import StationModules
from kiosk.health.supervisor import (
    DevicePresence,
    ModuleStatus,
    ModuleSupervisor,
    StationSupervisor,
    backoff_delay,
    device_paths,
)

FINGERPRINT = ModuleKind.FINGERPRINT
FAST = {"poll_s": 0.02, "backoff": (0.02, 0.1)}


def wait_until(predicate, timeout: float = 2.0) -> float:
    """As support.wait_until, with this file's shorter default."""
    return support.wait_until(predicate, timeout)


class SickableReader(FakeFingerprintReader):
    """A fake reader whose health turns FAILED when ``sick`` is set (a stalled sensor)."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.sick = False

    def _health(self) -> Health:
        return (
            Health(HealthStatus.FAILED, "sensor stopped") if self.sick else Health(HealthStatus.OK)
        )


class DeadReader(FakeFingerprintReader):
    """A reader whose cable is not plugged in: open() fails, and says when it was tried."""

    attempts: list[float]

    def _open(self) -> None:
        self.attempts.append(time.monotonic())
        raise DeviceUnavailable("no reader on /dev/ttyUSB0")


class StuckReader(FakeFingerprintReader):
    """A reader whose self-test hangs until the reader is closed."""

    def _self_test(self) -> str:
        while not self.closed:
            time.sleep(0.01)
        raise DeviceUnavailable("closed while testing")


class Units:
    """A factory of readers: each call makes a fresh unit, with the next serial."""

    def __init__(self, *serials: str, cls=FakeFingerprintReader, **options) -> None:
        self.serials = list(serials) or ["FPR-A"]
        self.cls = cls
        self.options = options
        self.made: list[FakeFingerprintReader] = []

    def __call__(self) -> FakeFingerprintReader:
        serial = self.serials[min(len(self.made), len(self.serials) - 1)]
        unit = self.cls(serial=serial, **self.options)
        self.made.append(unit)
        return unit


class Events:
    """A status listener that keeps every call."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.lock = threading.Lock()

    def __call__(self, kind, status, module, detail) -> None:
        assert threading.current_thread().name.startswith("supervise-")
        with self.lock:
            self.calls.append((kind, status, module, detail))

    def statuses(self) -> list[ModuleStatus]:
        with self.lock:
            return [call[1] for call in self.calls]


@pytest.fixture
def started(tmp_path):
    """started(factory, **options) -> (supervisor, events), stopped after the test."""
    made = []

    def start(factory, **options):
        events = Events()
        supervisor = ModuleSupervisor(
            FINGERPRINT,
            factory,
            inventory=ModuleInventory(tmp_path / "modules.json"),
            audit=AuditLog(tmp_path / "audit.log"),
            on_status=events,
            **{**FAST, **options},
        )
        made.append(supervisor)
        supervisor.start()
        return supervisor, events

    yield start
    for supervisor in made:
        assert supervisor.stop()


def is_up(supervisor) -> bool:
    return supervisor.status[0] is ModuleStatus.UP


def is_down(supervisor) -> bool:
    return supervisor.status[0] is ModuleStatus.DOWN


def audit_events(tmp_path: Path) -> list[str]:
    return [entry.event for entry in read_audit(tmp_path / "audit.log")]


def supervise_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("supervise-")]


# -- up and down ------------------------------------------------------------------------


def test_a_working_module_comes_up_on_its_own_named_thread(started, tmp_path):
    units = Units("FPR-A")
    supervisor, events = started(units)
    wait_until(lambda: events.statuses() == [ModuleStatus.UP])  # called after the status is set
    assert "supervise-fingerprint" in supervise_threads()
    [reader] = units.made
    assert supervisor.module is reader and not reader.closed
    assert events.calls[-1][:3] == (FINGERPRINT, ModuleStatus.UP, reader)
    assert "installed" in supervisor.status[1] and "self-test passed" in supervisor.status[1]
    assert audit_events(tmp_path) == ["installed"]
    [unit] = ModuleInventory(tmp_path / "modules.json").units()
    assert (unit.serial, unit.installed, unit.status) == ("FPR-A", True, "up")


def test_a_failed_health_is_down_within_two_seconds_then_up_again_after_the_backoff(started):
    units = Units("FPR-A", cls=SickableReader)
    supervisor, events = started(units, poll_s=0.5, backoff=(0.3, 10.0))
    wait_until(lambda: is_up(supervisor))
    first = units.made[0]
    first.sick = True
    assert wait_until(lambda: is_down(supervisor), timeout=2.0) < 2.0
    assert first.closed
    assert "sensor stopped" in supervisor.status[1]
    down_at = time.monotonic()
    wait_until(lambda: is_up(supervisor), timeout=2.0)
    assert time.monotonic() - down_at >= 0.25  # waited for the first backoff step
    assert supervisor.module is units.made[1] and supervisor.module is not first
    wait_until(lambda: events.statuses() == [ModuleStatus.UP, ModuleStatus.DOWN, ModuleStatus.UP])


def test_a_reported_device_unavailable_is_down_at_once(started, tmp_path):
    units = Units("FPR-A")
    # The default poll of 0.5 s: the report wakes the thread rather than waiting for it.
    supervisor, _events = started(units, poll_s=0.5, backoff=(0.5, 10.0))
    wait_until(lambda: is_up(supervisor))
    reader = units.made[0]
    reported = time.monotonic()
    supervisor.report_fault(DeviceUnavailable("reader not answering"), reader)
    wait_until(lambda: is_down(supervisor), timeout=2.0)
    assert time.monotonic() - reported < 0.4
    assert reader.closed
    assert "reader not answering" in supervisor.status[1]
    wait_until(lambda: is_up(supervisor), timeout=2.0)  # a fresh instance, same unit
    assert audit_events(tmp_path) == ["installed", "down", "reconnected"]


def test_another_fault_runs_the_self_test_and_keeps_a_passing_module(started, tmp_path):
    units = Units("FPR-A")
    supervisor, events = started(units)
    wait_until(lambda: is_up(supervisor))
    supervisor.report_fault(DeviceFault("checksum error in a frame"))
    time.sleep(0.2)
    assert is_up(supervisor) and supervisor.module is units.made[0]
    assert events.statuses() == [ModuleStatus.UP]


def test_a_fault_then_a_failing_self_test_is_down(started, tmp_path):
    # The reader's next behaviour after one good capture: unplugged, so its self-test fails.
    units = Units("FPR-A", script=["good", "unplugged"])
    supervisor, _events = started(units, backoff=(5.0, 10.0))
    wait_until(lambda: is_up(supervisor))
    supervisor.module.capture().result()
    supervisor.report_fault(DeviceFault("checksum error in a frame"))
    wait_until(lambda: is_down(supervisor))
    assert "self-test after a fault failed" in supervisor.status[1]
    assert audit_events(tmp_path) == ["installed", "selftest_failed"]


def test_a_fault_of_a_replaced_instance_is_ignored(started):
    units = Units("FPR-A")
    supervisor, _events = started(units)
    wait_until(lambda: is_up(supervisor))
    supervisor.report_fault(DeviceUnavailable("old cable"), FakeFingerprintReader())
    time.sleep(0.15)
    assert is_up(supervisor) and len(units.made) == 1


# -- swaps and reconnections --------------------------------------------------------------


def test_another_unit_after_a_fault_is_a_swap(started, tmp_path):
    units = Units("FPR-A", "FPR-B")
    supervisor, _events = started(units)
    wait_until(lambda: is_up(supervisor))
    supervisor.report_fault(DeviceUnavailable("unplugged"))
    wait_until(lambda: is_up(supervisor) and supervisor.info.serial == "FPR-B")
    assert "swapped" in supervisor.status[1]
    entries = read_audit(tmp_path / "audit.log")
    assert [entry.event for entry in entries] == ["installed", "down", "swapped"]
    swap = entries[-1]
    assert swap.kind == "fingerprint"
    assert (swap.old["serial"], swap.new["serial"]) == ("FPR-A", "FPR-B")
    supervisor.stop()
    units_seen = {unit.serial: unit for unit in ModuleInventory(tmp_path / "modules.json").units()}
    assert units_seen["FPR-A"].installed is False and units_seen["FPR-A"].status == "removed"
    assert units_seen["FPR-B"].installed is True and units_seen["FPR-B"].status == "up"


def test_the_same_unit_back_is_reconnected_not_swapped(started, tmp_path):
    units = Units("FPR-A")
    supervisor, _events = started(units)
    wait_until(lambda: is_up(supervisor))
    supervisor.report_fault(DeviceUnavailable("unplugged"))
    wait_until(lambda: len(units.made) == 2 and is_up(supervisor))
    assert audit_events(tmp_path) == ["installed", "down", "reconnected"]
    assert [unit.serial for unit in ModuleInventory(tmp_path / "modules.json").units()] == ["FPR-A"]


def test_a_unit_changed_while_the_kiosk_was_off_is_a_swap_at_start(started, tmp_path):
    first, _ = started(Units("FPR-A"))
    wait_until(lambda: is_up(first))
    first.stop()
    again, _ = started(Units("FPR-A"))  # the next start of the kiosk, same unit
    wait_until(lambda: is_up(again))
    again.stop()
    swapped, _ = started(Units("FPR-B"))  # a unit changed while the kiosk was off
    wait_until(lambda: is_up(swapped))
    assert audit_events(tmp_path) == ["installed", "up", "swapped"]


def test_the_inventory_counts_the_flows_captures_not_the_supervisors_checks(started, tmp_path):
    units = Units("FPR-A")
    supervisor, _events = started(units)
    wait_until(lambda: is_up(supervisor))
    for _ in range(3):
        supervisor.module.capture().result()
    inventory = supervisor._inventory
    wait_until(lambda: inventory.installed(FINGERPRINT).captures == 3)
    supervisor.report_fault(DeviceFault("odd frame"))  # a self-test that passes: not a capture
    time.sleep(0.15)
    assert inventory.installed(FINGERPRINT).captures == 3
    assert inventory.installed(FINGERPRINT).failures == 0


# -- presence ---------------------------------------------------------------------------


def test_an_absent_device_is_not_tried_until_it_appears(started):
    plugged = threading.Event()
    units = Units("FPR-A")
    supervisor, _events = started(units, poll_s=0.5, appears=plugged.is_set)
    wait_until(lambda: is_down(supervisor))
    time.sleep(0.6)
    assert units.made == []
    assert "not connected" in supervisor.status[1]
    plugged.set()
    assert wait_until(lambda: is_up(supervisor), timeout=1.5) < 1.2


def test_a_vanished_device_path_is_down(started):
    plugged = threading.Event()
    plugged.set()
    supervisor, _events = started(Units("FPR-A"), appears=plugged.is_set)
    wait_until(lambda: is_up(supervisor))
    plugged.clear()
    wait_until(lambda: is_down(supervisor), timeout=1.0)
    assert "unplugged" in supervisor.status[1]


def test_device_paths_come_from_the_port_or_device_option(tmp_path):
    modules = {kind: ModuleConfig("fake") for kind in ModuleKind}
    modules[FINGERPRINT] = ModuleConfig("zhiantec", {"port": "/dev/serial/by-id/usb-FTDI-if00"})
    modules[ModuleKind.CAMERA] = ModuleConfig("v4l2", {"device": 0})  # an index: no path
    config = StationConfig(
        tmp_path / "s.toml", "T-1", "0000", "id", tmp_path, modules, SessionConfig()
    )
    assert device_paths(config) == {FINGERPRINT: "/dev/serial/by-id/usb-FTDI-if00"}
    (tmp_path / "ttyUSB0").touch()
    assert DevicePresence(tmp_path / "ttyUSB0")()
    assert not DevicePresence(tmp_path / "ttyUSB1")()


# -- backoff and stopping ------------------------------------------------------------------


def test_backoff_doubles_up_to_its_cap():
    delays = [backoff_delay(failures, 0.5, 10.0) for failures in range(8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert backoff_delay(10_000, 0.5, 10.0) == 10.0


def test_a_dead_module_is_retried_with_capped_backoff_and_logged_down_once(started, tmp_path):
    attempts: list[float] = []

    class Dead(DeadReader):
        pass

    Dead.attempts = attempts
    supervisor, events = started(Units("FPR-A", cls=Dead), backoff=(0.02, 0.08))
    wait_until(lambda: len(attempts) >= 7, timeout=3.0)
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    assert gaps[0] < gaps[2]  # doubling at first
    assert all(0.015 < gap < 0.4 for gap in gaps[3:6])  # then capped near 0.08 s
    assert is_down(supervisor) and "no reader on /dev/ttyUSB0" in supervisor.status[1]
    assert events.statuses() == [ModuleStatus.DOWN]  # the same failure again is not news
    assert audit_events(tmp_path) == ["down"]


def test_stop_joins_the_thread_even_during_a_hung_self_test(started):
    units = Units("FPR-A", cls=StuckReader)
    supervisor, _events = started(units)
    wait_until(lambda: len(units.made) == 1)
    time.sleep(0.05)
    begun = time.monotonic()
    assert supervisor.stop()
    assert time.monotonic() - begun < 2.0
    assert "supervise-fingerprint" not in supervise_threads()
    assert units.made[0].closed


# -- the station ----------------------------------------------------------------------------


def fake_station(tmp_path: Path) -> StationConfig:
    modules = {kind: ModuleConfig("fake") for kind in ModuleKind}
    return StationConfig(
        tmp_path / "station.toml", "TEST-01", "0000", "id", tmp_path, modules, SessionConfig()
    )


def test_the_station_supervisor_brings_every_module_up_and_swaps_in_fresh_ones(tmp_path):
    config = fake_station(tmp_path)
    modules = StationModules.from_config(config)
    initial = modules.by_kind()
    supervisor = StationSupervisor(config, modules, heartbeat_s=0.1, **FAST)
    seen = Events()
    supervisor.subscribe(seen)
    begun = time.monotonic()
    supervisor.start()
    assert time.monotonic() - begun < 0.5  # the window need not wait for the modules
    try:
        wait_until(lambda: all(s is ModuleStatus.UP for s, _, _ in supervisor.status().values()))
        assert modules.by_kind() == initial  # the instances from the config came up
        assert all(not module.closed for module in initial.values())
        assert supervisor.status()[FINGERPRINT][2].serial == "SIM-FPR-0001"
        assert len(supervise_threads()) == len(ModuleKind)
        snapshot = read_inventory(tmp_path / "modules.json")
        assert snapshot.running and snapshot.station_id == "TEST-01"
        assert time.time() - snapshot.updated_at < 5

        old = modules.fingerprint
        supervisor.report_fault(FINGERPRINT, DeviceUnavailable("cable pulled"), old)
        wait_until(lambda: modules.fingerprint is not old and not modules.fingerprint.closed)
        assert old.closed
        assert supervisor.status()[FINGERPRINT][0] is ModuleStatus.UP
        assert [c[1] for c in seen.calls if c[0] is FINGERPRINT][-2:] == [
            ModuleStatus.DOWN,
            ModuleStatus.UP,
        ]
        heartbeat = read_inventory(tmp_path / "modules.json").updated_at
        wait_until(lambda: read_inventory(tmp_path / "modules.json").updated_at > heartbeat)
    finally:
        assert supervisor.stop()
    assert supervise_threads() == []
    assert all(module.closed for module in modules.by_kind().values())
    data = json.loads((tmp_path / "modules.json").read_text())
    assert data["running"] is False
    assert {unit["kind"] for unit in data["units"] if unit["installed"]} == {
        str(kind) for kind in ModuleKind
    }


# -- the real fingerprint driver, on the emulator ------------------------------------------


@pytest.mark.skipif(
    "zhiantec" not in registry.available(FINGERPRINT), reason="no zhiantec driver installed"
)
def test_a_zhiantec_reader_whose_emulator_goes_away_is_down_within_two_seconds(tmp_path):
    emulator = subprocess.Popen(
        [sys.executable, "-m", "kiosk.cli", "emulate", "fingerprint"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        port = emulator.stdout.readline().strip()  # its first line: the pty's path
        assert port.startswith("/dev/")
        supervisor = ModuleSupervisor(
            FINGERPRINT,
            lambda: registry.create(FINGERPRINT, "zhiantec", {"port": port}),
            inventory=ModuleInventory(tmp_path / "modules.json"),
            audit=AuditLog(tmp_path / "audit.log"),
            appears=DevicePresence(port),
        )
        supervisor.start()
        try:
            wait_until(lambda: is_up(supervisor), timeout=10.0)
            assert supervisor.info.driver == "zhiantec"
            assert supervisor.info.serial_source == "notepad"
            emulator.terminate()  # the cable is pulled: the pty goes away
            assert wait_until(lambda: is_down(supervisor), timeout=2.0) < 2.0
            assert "unplugged" in supervisor.status[1]
        finally:
            assert supervisor.stop()
    finally:
        emulator.kill()
        emulator.wait(timeout=10)
