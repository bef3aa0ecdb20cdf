"""The ZhianTec driver on the sensor emulator, end to end through the real flow and module
supervision: ten fingers captured and saved; the cable pulled while the flow waits for a
finger (the step pauses, nothing hangs); another unit put in (supervision finds it, tests
it, the step resumes) and each finger in the packet names the reader that took it."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import support
from support import VALID_NIK, PacketCatcher, fake_modules

from kiosk.drivers.base import FingerPhase, ModuleKind
from kiosk.drivers.camera.fake import FakeCamera
from kiosk.drivers.fingerprint.emulator import SensorEmulator
from kiosk.drivers.fingerprint.synthetic import GOOD_SAMPLE_NAMES, synthetic_print
from kiosk.drivers.fingerprint.zhiantec import ZhiantecReader
from kiosk.drivers.indicators.fake import FakeIndicators
from kiosk.drivers.signature.fake import FakeSignaturePad
from kiosk.flow.fingers import FINGER_ORDER
from kiosk.flow.machine import EnrollmentFlow, Step
from kiosk.flow.supervision import follow_supervision
from kiosk.health.audit import read_audit
from kiosk.health.supervisor import ModuleStatus, StationSupervisor
from kiosk.packet.wsq import decode_wsq

FIRST_ID = "00112233AABBCCDD"  # in the first unit's notepad: the kiosk has seen it before
# ten different fingers that pass the quality check (a finger given twice is refused)
GOOD = list(GOOD_SAMPLE_NAMES)
# The citizen's other fingers, for the spare unit: none of GOOD, so whichever of them
# the first unit served (a finger placed while supervision tested a unit is lifted
# unused, and the next one comes), the spare never repeats one (a repeat is refused).
SPARE_FINGERS = [synthetic_print("good", seed) for seed in range(7, 15)]
PULLED_AT = 5  # the cable comes out while the flow waits for the fifth finger


def wait_until(condition, timeout: float = 5.0) -> float:
    """As support.wait_until, with the longer wait a pty and a supervisor need here."""
    return support.wait_until(condition, timeout)


def sensor(gap_s: float = 0.25, fingers: list = GOOD, **options) -> SensorEmulator:
    """A unit with a citizen who puts each finger on after ``gap_s`` and lifts it once
    its image is uploaded; ``fingers`` in the order the citizen gives them."""
    return SensorEmulator(fingers=fingers, auto_fingers=True, hold_s=0.05, gap_s=gap_s, **options)


class Station:
    """The fingerprint socket of the kiosk: whichever emulator is plugged in now. The
    supervisor's factory builds a reader on its *current* port (a reader's port is fixed)."""

    def __init__(self) -> None:
        self.unit: SensorEmulator | None = None
        self.port = ""
        self.units: list[SensorEmulator] = []
        self.told_to_lift = 0

    def plug(self, unit: SensorEmulator) -> None:
        self.units.append(unit)
        self.port = unit.start()
        self.unit = unit

    def pull(self) -> None:
        unit, self.unit = self.unit, None
        unit.stop()

    def present(self) -> bool:  # the device path exists while a unit is plugged in
        return self.unit is not None and os.path.exists(self.port)

    def reader(self) -> ZhiantecReader:
        return ZhiantecReader(port=self.port, wait_s=3.0, read_timeout_s=0.3, poll_s=0.02)

    def heed(self, flow: EnrollmentFlow) -> None:
        """A flow listener: the citizen does what the screen says. The emulator's citizen
        lifts a finger only once its image is uploaded, so a finger that arrived before the
        capture began (while supervision was still testing the unit, on a slow machine)
        would otherwise rest on the glass through LIFT_FIRST until wait_s ran out."""
        unit = self.unit
        if flow.finger_phase is FingerPhase.LIFT_FIRST and unit is not None:
            self.told_to_lift += 1
            unit.lift_finger()

    def close(self) -> None:
        for unit in self.units:
            unit.stop()


@pytest.fixture
def station():
    station = Station()
    yield station
    station.close()


@pytest.fixture
def kiosk(tmp_path, station):
    """kiosk(first_unit) -> (flow, supervision): a flow on the emulator's reader (fake
    camera, pad and lights), under supervision, every module UP."""
    made = []

    def make(
        first: SensorEmulator, presence: bool = True
    ) -> tuple[EnrollmentFlow, StationSupervisor]:
        station.plug(first)
        modules = fake_modules()
        modules.fingerprint.close()
        modules.replace(ModuleKind.FINGERPRINT, station.reader())  # opened by supervision
        factories = {
            ModuleKind.CAMERA: FakeCamera,
            ModuleKind.FINGERPRINT: station.reader,
            ModuleKind.SIGNATURE: FakeSignaturePad,
            ModuleKind.INDICATORS: FakeIndicators,
        }
        supervision = StationSupervisor(
            factories,
            modules,
            tmp_path,
            station_id="TEST-01",
            appears={ModuleKind.FINGERPRINT: station.present} if presence else None,
            poll_s=0.05,
            backoff=(0.05, 0.2),
        )
        flow = EnrollmentFlow(station_id="TEST-01", modules=modules, sink=PacketCatcher())
        follow_supervision(flow, supervision)
        flow.subscribe(station.heed)
        made.append((supervision, modules))
        supervision.start()
        wait_until(lambda: all(s is ModuleStatus.UP for s, _, _ in supervision.status().values()))
        return flow, supervision

    yield make
    for supervision, modules in made:
        assert supervision.stop()
        modules.close()


def to_fingers(flow: EnrollmentFlow) -> None:
    flow.start("id")
    assert flow.submit_nik(VALID_NIK).ok
    flow.accept_consent()
    assert flow.capture_face().accepted
    flow.accept_face()
    assert flow.step is Step.FINGERPRINTS


def capture(flow: EnrollmentFlow) -> None:
    """The current finger, taken (a citizen slow to come is asked again)."""
    finger = flow.current_finger
    for _ in range(3):
        result = flow.capture_finger()
        if result.accepted:
            return
        assert result.problem == "quality.finger.no_finger", result
        assert flow.current_finger is finger
    pytest.fail(f"{finger.name} was never taken")


def sign_and_save(flow: EnrollmentFlow):
    flow.modules.signature.sign()
    assert flow.submit_signature().ok
    assert flow.save() is not None
    return flow.sink.packets[0]


def finger_list(packet) -> list[dict]:
    return packet.manifest["fingers"]


def finger_images(packet) -> list[np.ndarray]:
    return [decode_wsq(packet.files[entry["image"]]) for entry in finger_list(packet)]


def templates(packet) -> list[bytes]:
    names = (f"finger-{entry['position']:02d}.template" for entry in finger_list(packet))
    return [packet.files.get(name, b"") for name in names]


def units_of_fingers(packet) -> list[dict]:
    units = packet.manifest["modules"]
    return [units[entry["module"]] for entry in finger_list(packet)]


def test_ten_fingers_from_the_emulated_sensor_are_saved_naming_its_unit(kiosk, tmp_path):
    # more than ten different fingers: one lifted unused must not bring a repeat round
    unit = sensor(fingers=GOOD + SPARE_FINGERS, notepad={0: b"REKAM1" + FIRST_ID.encode()})
    flow, _ = kiosk(unit)
    to_fingers(flow)
    while flow.step is Step.FINGERPRINTS:
        capture(flow)
    packet = sign_and_save(flow)

    assert [e["position"] for e in finger_list(packet)] == sorted(int(f) for f in FINGER_ORDER)
    for image in finger_images(packet):
        assert image.shape == (288, 256) and image.dtype == np.uint8
    assert all(len(template) == 512 for template in templates(packet))
    assert all(entry["dpi"] == 500 for entry in finger_list(packet))
    for named in units_of_fingers(packet):
        assert named["driver"] == "zhiantec" and named["kind"] == "fingerprint"
        assert named["serial"] == FIRST_ID and named["serial_source"] == "notepad"
        assert named["simulated"] is True
    assert unit.notepad[0].startswith(b"REKAM1" + FIRST_ID.encode())  # read, not rewritten
    events = [e.event for e in read_audit(tmp_path / "audit.log") if e.kind == "fingerprint"]
    assert events == ["installed"]


@pytest.mark.parametrize("watched_by", ["presence", "driver"])
def test_a_sensor_pulled_mid_capture_pauses_the_step_and_another_unit_resumes_it(
    kiosk, station, tmp_path, watched_by
):
    """``presence``: supervision sees the device path vanish; ``driver``: no presence
    check, the reader's own DeviceUnavailable on the dead line is reported by the flow."""
    first = sensor(gap_s=0.6, notepad={0: b"REKAM1" + FIRST_ID.encode()})
    flow, supervision = kiosk(first, presence=watched_by == "presence")
    to_fingers(flow)
    for _ in range(PULLED_AT - 1):
        capture(flow)
    waiting_for = flow.current_finger
    assert waiting_for is FINGER_ORDER[PULLED_AT - 1]

    # the flow waits for finger N on its own thread (as the screen's worker would)
    results = []
    capturing = threading.Thread(target=lambda: results.append(flow.capture_finger()))
    capturing.start()
    wait_until(lambda: flow.finger_phase is FingerPhase.WAITING, timeout=2.0)
    assert not first.finger_on_glass  # the citizen has not put it on yet
    pulled = time.monotonic()
    station.pull()
    status = supervision.supervisor(ModuleKind.FINGERPRINT)
    wait_until(lambda: status.status[0] is ModuleStatus.DOWN, timeout=2.0)
    to_down = time.monotonic() - pulled
    wait_until(lambda: flow.fault is ModuleKind.FINGERPRINT, timeout=2.0)
    to_fault = time.monotonic() - pulled
    capturing.join(timeout=3.0)
    assert not capturing.is_alive(), "the capture hung on a pulled cable"
    assert to_down < 2.0 and to_fault < 2.0
    (result,) = results
    assert not result.accepted
    assert result.fault is ModuleKind.FINGERPRINT or result.stale
    (down,) = [e for e in read_audit(tmp_path / "audit.log") if e.event == "down"]
    assert down.old["serial"] == FIRST_ID
    if watched_by == "driver":  # the capture itself met the dead line
        assert result.fault is ModuleKind.FINGERPRINT
        assert down.detail.startswith("fault reported:"), down.detail
    else:  # seen by supervision; the capture may have been cancelled first (stale)
        assert down.detail.startswith(("unplugged", "fault reported:")), down.detail
    assert ModuleKind.FINGERPRINT in flow.down
    assert flow.step is Step.FINGERPRINTS and flow.current_finger is waiting_for
    assert flow.operator_called
    assert flow.capture_finger().fault is ModuleKind.FINGERPRINT  # waits, doesn't poke it
    print(f"{watched_by}: pull -> DOWN {to_down:.3f} s, -> flow.fault {to_fault:.3f} s", end="")
    print(f" ({'fault' if result.fault else 'stale'}; {down.detail[:60]})")

    # the technician's spare: a unit never seen, so the kiosk writes it a new id
    second = sensor(fingers=SPARE_FINGERS)  # the citizen goes on with finger N
    plugged = time.monotonic()
    station.plug(second)
    wait_until(lambda: flow.fault is None and ModuleKind.FINGERPRINT not in flow.down)
    to_up = time.monotonic() - plugged
    print(f"{watched_by}: new unit -> UP {to_up:.3f} s")
    assert status.status[0] is ModuleStatus.UP
    new = flow.modules.fingerprint.info()
    assert new.serial not in ("", FIRST_ID) and new.serial_source == "notepad"
    assert second.notepad[0] == b"REKAM1" + new.serial.encode() + bytes(10)
    assert flow.current_finger is waiting_for  # the step goes on where it was

    while flow.step is Step.FINGERPRINTS:
        capture(flow)
    packet = sign_and_save(flow)

    serials = [unit["serial"] for unit in units_of_fingers(packet)]
    by_position = dict(zip((e["position"] for e in finger_list(packet)), serials, strict=True))
    in_order = [by_position[int(f)] for f in FINGER_ORDER]
    assert in_order == [FIRST_ID] * (PULLED_AT - 1) + [new.serial] * (11 - PULLED_AT)
    for image in finger_images(packet):
        assert image.shape == (288, 256)
    assert all(len(template) == 512 for template in templates(packet))
    swaps = [e for e in read_audit(tmp_path / "audit.log") if e.event == "swapped"]
    assert len(swaps) == 1
    assert swaps[0].kind == "fingerprint"
    assert swaps[0].old["serial"] == FIRST_ID and swaps[0].new["serial"] == new.serial
