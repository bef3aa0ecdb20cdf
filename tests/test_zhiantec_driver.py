"""The ZhianTec driver against the sensor emulator on a pseudo-terminal.

The real driver code talks to the emulator over a real serial port (a pty): identity in
the notepad, captures in phases, faults, pulled cables, close from another thread, the
speed switch. Each test keeps its timings short (``read_timeout_s``, ``wait_s``).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from kiosk.drivers.base import (
    FingerPhase,
    FingerprintReader,
    HealthStatus,
    ModuleKind,
    Outcome,
)
from kiosk.drivers.fingerprint.emulator import SensorEmulator, load_finger
from kiosk.drivers.fingerprint.zhiantec import ZhiantecReader, transfer_seconds
from kiosk.drivers.registry import backend_class, create
from kiosk.errors import (
    CaptureCancelled,
    CaptureTimeout,
    ConfigError,
    DeviceClosed,
    DeviceFault,
    DeviceUnavailable,
)

PHASES = [FingerPhase.WAITING, FingerPhase.DETECTED, FingerPhase.LIFT]


@pytest.fixture
def sensor():
    with SensorEmulator() as emulator:
        yield emulator


@pytest.fixture
def make_reader():
    """make_reader(port, **options) -> an open ZhiantecReader, closed after the test."""
    readers = []

    def make(port: str, **options) -> ZhiantecReader:
        options.setdefault("read_timeout_s", 0.3)
        options.setdefault("wait_s", 2.0)
        reader = ZhiantecReader(port=port, **options)
        readers.append(reader)
        reader.open()
        return reader

    yield make
    for reader in readers:
        reader.close()


class Citizen:
    """An on_phase callback: puts a finger on the glass when the reader waits for one and
    lifts it when told to; notes each phase (``phases``, and an event per phase)."""

    def __init__(self, sensor: SensorEmulator, finger: str | None = None) -> None:
        self.sensor = sensor
        self.finger = finger
        self.phases: list[FingerPhase] = []
        self.reached = {phase: threading.Event() for phase in FingerPhase}

    def __call__(self, phase: FingerPhase) -> None:  # on the reader's thread
        self.phases.append(phase)
        if phase is FingerPhase.WAITING:
            self.sensor.place_finger(self.finger)
        elif phase in (FingerPhase.LIFT, FingerPhase.LIFT_FIRST):
            self.sensor.lift_finger()
        self.reached[phase].set()


def timed(call):
    started = time.monotonic()
    try:
        return call(), time.monotonic() - started
    except Exception as exc:
        return exc, time.monotonic() - started


# -- identity ---------------------------------------------------------------------------


def test_registered_as_the_zhiantec_fingerprint_driver_and_satisfies_the_contract(sensor):
    assert backend_class(ModuleKind.FINGERPRINT, "zhiantec") is ZhiantecReader
    reader = create(ModuleKind.FINGERPRINT, "zhiantec", {"port": sensor.port})
    assert isinstance(reader, FingerprintReader)
    assert reader.closed


def test_first_sight_writes_an_id_to_the_notepad_and_the_next_open_reads_it_back(
    sensor, make_reader
):
    first = make_reader(sensor.port)
    info = first.info()
    assert info.serial_source == "notepad"
    assert len(info.serial) == 16 and int(info.serial, 16) >= 0
    assert sensor.notepad[0] == b"REKAM1" + info.serial.encode() + bytes(10)
    assert info.driver == "zhiantec" and info.kind is ModuleKind.FINGERPRINT
    assert info.model == "ZhianTec-protocol sensor, library 1000 (R307-like)"
    assert info.simulated  # a pty: an emulator, never a citizen's data
    first.close()

    again = make_reader(sensor.port)
    assert again.info() == info
    assert again.identify() == info


def test_another_unit_has_another_identity_and_a_foreign_notepad_page_is_kept(make_reader):
    ours = b"REKAM1" + b"00112233AABBCCDD"
    with (
        SensorEmulator(notepad={0: ours}) as known,
        SensorEmulator(model="AS608", notepad={0: b"KIOSK-07 (someone else's)"}) as other,
    ):
        known_info = make_reader(known.port).info()
        other_info = make_reader(other.port).info()
        assert known_info.serial == "00112233AABBCCDD"
        assert other_info.serial not in ("", known_info.serial)
        assert known_info.identity != other_info.identity
        assert other.notepad[0].startswith(b"KIOSK-07")  # not overwritten
        assert other.notepad[1] == b"REKAM1" + other_info.serial.encode() + bytes(10)
        assert other_info.model == "ZhianTec-protocol sensor, library 300 (AS608-like)"


def test_a_by_id_link_names_the_usb_adapter_and_one_port_has_one_reader(
    sensor, make_reader, tmp_path, monkeypatch
):
    from serial.tools import list_ports, list_ports_common

    adapter = list_ports_common.ListPortInfo(sensor.port, skip_link_detection=True)
    adapter.vid, adapter.pid = 0x10C4, 0xEA60
    adapter.manufacturer, adapter.product = "Silicon Labs", "CP2102 USB to UART Bridge"
    monkeypatch.setattr(list_ports, "comports", lambda: [adapter])
    by_id = tmp_path / "usb-Silicon_Labs_CP2102-if00-port0"
    by_id.symlink_to(sensor.port)

    info = make_reader(str(by_id)).info()
    assert info.firmware.endswith("USB adapter Silicon Labs CP2102 USB to UART Bridge (10c4:ea60)")
    assert info.simulated  # still a pty behind the link
    with pytest.raises(DeviceUnavailable):  # held exclusively by the first reader
        make_reader(sensor.port)


# -- captures ---------------------------------------------------------------------------


def test_ten_fingers_in_phases_with_the_sensors_template(make_reader):
    script = ["good_1", "good_2", "good_3", "good_4", "poor"]
    with SensorEmulator(fingers=script, auto_fingers=True, hold_s=0.05, gap_s=0.25) as sensor:
        reader = make_reader(sensor.port)
        for number in range(10):
            phases = []
            capture = reader.capture(phases.append).result()
            assert capture.outcome is Outcome.CAPTURED
            assert phases[-3:] == PHASES
            assert phases[:-3] in ([], [FingerPhase.LIFT_FIRST])
            finger = load_finger(script[number % len(script)])
            assert capture.image.shape == (288, 256)
            assert np.abs(capture.image.astype(int) - finger).max() <= 8  # 4 bits a pixel
            assert capture.module == reader.info() and capture.dpi == 500
            if script[number % len(script)] == "poor":
                assert capture.template == b""  # too few features: the image still counts
            else:
                assert len(capture.template) == 512
        assert sensor.stats["images_uploaded"] == 10


def test_a_finger_left_on_the_glass_must_be_lifted_first(sensor, make_reader):
    reader = make_reader(sensor.port)
    sensor.place_finger("good_1")  # still there from before
    citizen = Citizen(sensor, "good_2")
    capture = reader.capture(citizen).result()
    assert citizen.phases == [FingerPhase.LIFT_FIRST, *PHASES]
    assert np.abs(capture.image.astype(int) - load_finger("good_2")).max() <= 8


def test_no_finger_within_wait_s(sensor, make_reader):
    reader = make_reader(sensor.port, wait_s=0.4)
    phases = []
    capture, seconds = timed(lambda: reader.capture(phases.append).result())
    assert capture.outcome is Outcome.NO_FINGER and capture.image is None
    assert phases == [FingerPhase.WAITING]
    assert 0.4 <= seconds < 1.0


def test_a_finger_never_lifted_is_no_finger_too(sensor, make_reader):
    reader = make_reader(sensor.port, wait_s=0.3)
    sensor.place_finger()
    phases = []
    assert reader.capture(phases.append).result().outcome is Outcome.NO_FINGER
    assert phases == [FingerPhase.LIFT_FIRST]


def test_a_transfer_past_transfer_s_is_a_capture_timeout(make_reader):
    with SensorEmulator(pace=True) as sensor:  # 7 s at 57600 baud
        reader = make_reader(sensor.port, transfer_s=0.3)
        error, seconds = timed(lambda: reader.capture(Citizen(sensor)).result())
        assert isinstance(error, CaptureTimeout) and "transfer_s" in str(error)
        assert seconds < 1.5


# -- faults -----------------------------------------------------------------------------


def test_wrong_password_is_a_clear_fault_and_the_right_one_opens(make_reader):
    with SensorEmulator(password=0x1234) as sensor:
        with pytest.raises(DeviceFault, match="refused the password"):
            make_reader(sensor.port)
        assert make_reader(sensor.port, password=0x1234).info().serial


def test_a_missing_port_or_a_silent_sensor_is_unavailable(sensor, make_reader):
    error, seconds = timed(lambda: make_reader("/dev/serial/by-id/no-such-sensor"))
    assert isinstance(error, DeviceUnavailable) and seconds < 1
    with SensorEmulator(baudrate=9600) as elsewhere:  # hears our 57600 as noise
        error, seconds = timed(lambda: make_reader(elsewhere.port))
        assert isinstance(error, DeviceUnavailable)
        assert "no answer" in str(error) and "57600" in str(error)
        assert seconds < 1.5


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("garble", DeviceFault),
        ("bad_checksum", DeviceFault),
        ("truncate", DeviceFault),
        ("oversize", DeviceFault),
        ("silence", DeviceUnavailable),
    ],
)
def test_a_broken_answer_is_our_error_and_the_next_call_works(sensor, make_reader, fault, error):
    reader = make_reader(sensor.port, wait_s=0.2)
    sensor.inject(fault)  # the answer to the first GetImage
    with pytest.raises(error):
        reader.capture().result()
    assert reader.health().status is HealthStatus.DEGRADED
    capture = reader.capture(Citizen(sensor)).result()
    assert capture.outcome is Outcome.CAPTURED  # the port was reopened
    assert reader.health().status is HealthStatus.OK
    assert "reopened 1 times" in reader.health().detail


def test_stray_bytes_before_an_answer_are_skipped(sensor, make_reader):
    reader = make_reader(sensor.port)
    sensor.inject("stray", count=5)
    assert reader.capture(Citizen(sensor)).result().outcome is Outcome.CAPTURED
    assert reader.stats.errors == 0


def test_a_broken_data_packet_mid_image_then_the_next_capture_works(sensor, make_reader):
    reader = make_reader(sensor.port)
    sensor.place_finger()
    # the answers to GetImage and UpImage and 99 data packets come behind stray bytes
    # (harmless); the 100th data packet is garbled
    sensor.inject("stray", count=2 + 99)
    sensor.inject("bad_checksum")
    with pytest.raises(DeviceFault, match="garbled"):
        reader.capture(Citizen(sensor)).result()
    capture = reader.capture(Citizen(sensor)).result()
    assert capture.outcome is Outcome.CAPTURED  # the rest drained, the port reopened
    assert sensor.stats["images_uploaded"] == 2


def test_pulling_the_cable_mid_transfer_fails_fast_and_a_new_sensor_opens(make_reader):
    sensor = SensorEmulator(pace=True)
    sensor.start()
    try:
        reader = make_reader(sensor.port)
        info = reader.info()
        citizen = Citizen(sensor)
        job = reader.capture(citizen)
        assert citizen.reached[FingerPhase.LIFT].wait(2)
        time.sleep(0.3)  # some of the image is on its way
        sensor.stop()
        error, seconds = timed(job.result)
        assert isinstance(error, DeviceUnavailable) and seconds < 2
        error, seconds = timed(lambda: reader.capture().result())
        assert isinstance(error, DeviceUnavailable) and seconds < 2  # the port is gone
        assert reader.health().status is HealthStatus.DEGRADED
        _, seconds = timed(reader.close)
        assert seconds < 1
    finally:
        sensor.stop()
    with SensorEmulator() as replacement:
        other = make_reader(replacement.port)
        assert other.info().serial != info.serial
        assert other.capture(Citizen(replacement)).result().outcome is Outcome.CAPTURED


def test_pulling_the_cable_while_waiting_for_a_finger(make_reader):
    with SensorEmulator() as sensor:
        reader = make_reader(sensor.port, wait_s=10)
        waiting = threading.Event()
        job = reader.capture(lambda phase: waiting.set())
        assert waiting.wait(2)
        sensor.stop()
        error, seconds = timed(job.result)
        assert isinstance(error, DeviceUnavailable) and seconds < 2


@pytest.mark.parametrize("pace", [False, True])
def test_close_from_another_thread_cancels_a_pending_capture(make_reader, pace):
    with SensorEmulator(pace=pace) as sensor:
        reader = make_reader(sensor.port, wait_s=10)
        # mid-transfer, or waiting for a finger that does not come
        citizen = Citizen(sensor) if pace else lambda phase: None
        wanted = FingerPhase.LIFT if pace else FingerPhase.WAITING
        reached = threading.Event()
        job = reader.capture(lambda phase: (citizen(phase), phase is wanted and reached.set()))
        assert reached.wait(2)
        time.sleep(0.1)
        closer = threading.Thread(target=reader.close)
        started = time.monotonic()
        closer.start()
        with pytest.raises(CaptureCancelled):
            job.result()
        closer.join(2)
        assert time.monotonic() - started < 0.5
        assert reader.closed and not closer.is_alive()
        with pytest.raises(DeviceClosed):
            reader.capture()


def test_reopen_after_close_drains_an_interrupted_image(make_reader):
    with SensorEmulator(pace=True, baudrate=115200) as sensor:
        reader = make_reader(sensor.port, baudrate=115200)
        citizen = Citizen(sensor)
        job = reader.capture(citizen)
        assert citizen.reached[FingerPhase.LIFT].wait(2)
        time.sleep(2.5)  # of about 3.4 s
        reader.close()  # the sensor goes on sending the rest of the image
        with pytest.raises(CaptureCancelled):
            job.result()
        reader.open()  # drains the rest before its handshake
        assert reader.self_test().passed
        assert sensor.stats["images_uploaded"] == 1 and not sensor.stats["bytes_lost"]


# -- the speed switch -----------------------------------------------------------------------


def test_fast_baudrate_switches_the_sensor_and_close_sets_it_back(sensor, make_reader):
    reader = make_reader(sensor.port, fast_baudrate=115200)
    assert sensor.baudrate == 115200
    assert reader.health().detail == "baud 115200"
    assert reader.capture(Citizen(sensor)).result().outcome is Outcome.CAPTURED
    assert reader.self_test().passed
    reader.close()
    deadline = time.monotonic() + 1.0  # the sensor switches just after its answer
    while sensor.baudrate != 57600 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert sensor.baudrate == 57600


def test_a_sensor_left_at_the_fast_speed_by_a_power_cut_is_found(make_reader):
    with SensorEmulator(baudrate=115200) as sensor:  # switched, then the power went
        reader = make_reader(sensor.port, fast_baudrate=115200)
        assert reader.health().detail == "baud 115200"
        assert sensor.baudrate == 115200
        assert reader.capture(Citizen(sensor)).result().outcome is Outcome.CAPTURED


def test_default_transfer_deadline_follows_the_baud_rate():
    assert transfer_seconds(57600) == pytest.approx(36864 * 10 / 57600 * 1.5 + 1)
    assert transfer_seconds(115200) == pytest.approx(5.8)


# -- self-test, health, options -------------------------------------------------------------


def test_self_test_exercises_the_sensor_and_fails_without_raising(sensor, make_reader):
    reader = make_reader(sensor.port)
    result = reader.self_test()
    assert result.passed, result.detail
    assert "handshake at 57600 baud" in result.detail and "library 1000" in result.detail
    assert "no finger" in result.detail
    sensor.stop()
    result = reader.self_test()
    assert not result.passed and "DeviceUnavailable" in result.detail


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"port": ""}, "port"),
        ({"baudrate": 56000}, "9600 x N"),
        ({"baudrate": 9600 * 13}, "9600 x N"),
        ({"fast_baudrate": True}, "fast_baudrate"),
        ({"address": -1}, "32 bits"),
        ({"password": 1 << 32}, "32 bits"),
        ({"wait_s": 0}, "wait_s"),
        ({"poll_s": float("nan")}, "poll_s"),
        ({"transfer_s": -1}, "transfer_s"),
    ],
)
def test_options_are_checked_by_the_registry(options, words):
    options = {"port": "/dev/ttyUSB0", **options}
    with pytest.raises(ConfigError, match=words):
        create(ModuleKind.FINGERPRINT, "zhiantec", options)
