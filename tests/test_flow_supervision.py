"""The flow under module supervision: a reader pulled mid-enrollment pauses the
step, a replacement is detected and the citizen goes on with nothing lost; a
module that stays down can be skipped and the enrollment is saved incomplete."""

from __future__ import annotations

import pytest
from support import VALID_NIK, PacketCatcher, fake_modules, wait_until
from test_flow import to_face, to_fingerprints

from kiosk.drivers.base import ModuleKind, Signal
from kiosk.drivers.camera.fake import FakeCamera
from kiosk.drivers.fingerprint.fake import FakeFingerprintReader
from kiosk.drivers.fingerprint.synthetic import GOOD_SAMPLE_NAMES
from kiosk.drivers.indicators.fake import FakeIndicators
from kiosk.drivers.signature.fake import FakeSignaturePad
from kiosk.errors import FlowError
from kiosk.flow.fingers import FINGER_ORDER
from kiosk.flow.machine import EnrollmentFlow, Step
from kiosk.flow.supervision import follow_supervision
from kiosk.health.audit import read_audit
from kiosk.health.supervisor import ModuleStatus, StationSupervisor


class Readers:
    """Hands out the reader in the station: the first is pulled after four fingers,
    the technician's spare (another serial) comes next."""

    def __init__(self) -> None:
        self.units = [
            FakeFingerprintReader(serial="FPR-A", script=["good"] * 4 + ["unplugged"]),
            # the spare reads the citizen's fingers five to ten
            FakeFingerprintReader(serial="FPR-B", script=list(GOOD_SAMPLE_NAMES[4:])),
        ]
        self.made = 0

    def __call__(self) -> FakeFingerprintReader:
        unit = self.units[min(self.made, len(self.units) - 1)]
        self.made += 1
        return unit


@pytest.fixture
def supervised(tmp_path):
    readers = Readers()
    modules = fake_modules()
    modules.fingerprint.close()
    modules.replace(ModuleKind.FINGERPRINT, readers.units[0])
    factories = {
        ModuleKind.CAMERA: FakeCamera,
        ModuleKind.FINGERPRINT: readers,
        ModuleKind.SIGNATURE: FakeSignaturePad,
        ModuleKind.INDICATORS: FakeIndicators,
    }
    supervision = StationSupervisor(
        factories, modules, tmp_path, station_id="TEST-01", poll_s=0.05, backoff=(0.05, 0.2)
    )
    flow = EnrollmentFlow(station_id="TEST-01", modules=modules, sink=PacketCatcher())
    follow_supervision(flow, supervision)
    supervision.start()
    wait_until(lambda: all(s is ModuleStatus.UP for s, _, _ in supervision.status().values()))
    yield flow, supervision, tmp_path
    supervision.stop()
    modules.close()


def test_a_pulled_reader_pauses_the_step_and_its_replacement_resumes_it(supervised):
    flow, _, data_dir = supervised
    to_fingerprints(flow)
    for _ in range(4):
        assert flow.capture_finger().accepted
    pulled = flow.capture_finger()  # the fifth: the cable comes out
    assert pulled.fault is ModuleKind.FINGERPRINT
    assert flow.operator_called and flow.modules.indicators.current is not None
    # supervision finds the spare, tests it and the step goes on by itself
    wait_until(lambda: flow.fault is None and ModuleKind.FINGERPRINT not in flow.down)
    assert flow.modules.fingerprint.info().serial == "FPR-B"
    while flow.step is Step.FINGERPRINTS:
        assert flow.capture_finger().accepted
    flow.modules.signature.sign()
    assert flow.submit_signature().ok
    assert flow.save() is not None

    packet = flow.sink.packets[0]
    units = packet.manifest["modules"]
    serials = [units[f["module"]]["serial"] for f in packet.manifest["fingers"]]
    assert serials == ["FPR-A"] * 4 + ["FPR-B"] * 6  # each finger names its own reader
    swaps = [e for e in read_audit(data_dir / "audit.log") if e.event == "swapped"]
    assert len(swaps) == 1
    assert swaps[0].old["serial"] == "FPR-A" and swaps[0].new["serial"] == "FPR-B"


def test_a_module_going_down_mid_step_is_shown_within_two_seconds(supervised):
    flow, supervision, _ = supervised
    to_fingerprints(flow)
    camera = flow.modules.camera
    camera._script.entries = ("fail",)  # the camera dies while the citizen gives fingers
    supervision.report_fault(ModuleKind.CAMERA, OSError("pulled"))
    took = wait_until(lambda: ModuleKind.CAMERA in flow.down)
    assert took < 2.0
    assert flow.fault is None  # the fingerprint step does not need the camera
    assert flow.step is Step.FINGERPRINTS


def test_a_module_that_stays_down_is_skipped_and_the_enrollment_saved_incomplete(make_flow):
    flow = make_flow(sink=PacketCatcher())
    to_face(flow)
    with pytest.raises(FlowError):
        flow.skip_missing()  # nothing is down: the photo must be taken
    flow.module_down(ModuleKind.CAMERA)
    assert flow.fault is ModuleKind.CAMERA and flow.problem == "flow.fault.camera"
    assert flow.modules.indicators.current is Signal.FAULT
    result = flow.capture_face()  # supervision has it: the flow does not poke it
    assert result.fault is ModuleKind.CAMERA and not result.accepted
    flow.skip_missing()
    assert flow.step is Step.FINGERPRINTS
    while flow.step is Step.FINGERPRINTS:
        assert flow.capture_finger().accepted
    flow.modules.signature.sign()
    assert flow.submit_signature().ok
    assert flow.save() is not None
    manifest = flow.sink.packets[0].manifest
    assert manifest["incomplete"] is True and manifest["missing"] == {"camera": "module_down"}
    assert manifest["face"] is None
    assert [u["kind"] for u in manifest["modules"]] == ["fingerprint", "signature"]


def test_captured_fingers_are_kept_when_the_reader_is_skipped(make_flow):
    flow = make_flow(sink=PacketCatcher())
    to_fingerprints(flow)
    for _ in range(3):
        assert flow.capture_finger().accepted
    flow.module_down(ModuleKind.FINGERPRINT)
    flow.skip_missing()
    assert flow.step is Step.SIGNATURE
    flow.modules.signature.sign()
    assert flow.submit_signature().ok
    assert flow.save() is not None
    manifest = flow.sink.packets[0].manifest
    assert manifest["missing"] == {"fingerprint": "module_down"}
    assert [f["position"] for f in manifest["fingers"]] == [int(f) for f in FINGER_ORDER[:3]]


def test_a_step_whose_module_is_already_down_says_so_on_arrival(make_flow):
    flow = make_flow()
    flow.start("id")
    assert flow.submit_nik(VALID_NIK).ok
    flow.module_down(ModuleKind.FINGERPRINT)  # while the citizen reads the consent
    assert flow.fault is None
    flow.accept_consent()
    assert flow.capture_face().accepted
    flow.accept_face()
    assert flow.fault is ModuleKind.FINGERPRINT
    assert flow.problem == "flow.fault.fingerprint"


def test_a_module_back_up_clears_the_fault_and_the_step_goes_on(make_flow):
    flow = make_flow()
    to_face(flow)
    flow.module_down(ModuleKind.CAMERA)
    flow.module_up(ModuleKind.CAMERA)
    assert flow.fault is None and not flow.down
    assert flow.capture_face().accepted
    flow.accept_face()


def test_the_lights_buttons_and_case_switch_reach_the_flow_through_supervision(tmp_path):
    """The real GPIO driver on gpiozero's mock pins, under supervision: the call
    button calls the operator, and so does an opened case, which is audited."""
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    from kiosk.drivers.indicators.gpio import GpioIndicators

    pins = MockFactory(pin_class=MockPWMPin)
    modules = fake_modules()
    modules.indicators.close()
    modules.replace(ModuleKind.INDICATORS, GpioIndicators(pin_factory=pins, tamper="GPIO24"))
    factories = {ModuleKind.INDICATORS: lambda: GpioIndicators(pin_factory=pins, tamper="GPIO24")}
    supervision = StationSupervisor(factories, modules, tmp_path, poll_s=0.05, backoff=(0.05, 0.2))
    flow = EnrollmentFlow(station_id="TEST-01", modules=modules, sink=PacketCatcher())
    follow_supervision(flow, supervision)
    supervision.start()
    try:
        wait_until(lambda: supervision.status()[ModuleKind.INDICATORS][0] is ModuleStatus.UP)
        pins.pin("GPIO24").drive_low()  # the lid is on: the case switch is closed
        # the flow's state is shown once the light is up, though it began before
        wait_until(lambda: flow.modules.indicators.health().detail == "showing idle")
        flow.start("id")
        pins.pin("GPIO23").drive_low()  # the citizen presses the call button
        pins.pin("GPIO23").drive_high()
        wait_until(lambda: flow.operator_called)
        flow.cancel()
        assert not flow.operator_called
        pins.pin("GPIO24").drive_high()  # the case is opened
        wait_until(lambda: flow.operator_called)
        tamper = [e for e in read_audit(tmp_path / "audit.log") if e.event == "tamper"]
        assert len(tamper) == 1 and tamper[0].kind == "indicators"
    finally:
        supervision.stop()
        modules.close()


def test_the_call_button_calls_the_operator(make_flow):
    flow = make_flow()
    flow.start("id")
    flow.call_operator()
    assert flow.operator_called
    assert flow.modules.indicators.current is Signal.ATTENTION
    flow.cancel()
    assert not flow.operator_called
