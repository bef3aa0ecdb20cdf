"""The ZhianTec sensor emulator, checked against a real client: pyfingerprint over the pty.

Where pyfingerprint has no call (notepad, raw faults), a small raw client sends frames
through pyserial and decodes answers with our codec.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import serial
from PIL import Image
from pyfingerprint.pyfingerprint import PyFingerprint

from kiosk.drivers.fingerprint.emulator import (
    BAD_FRAME_KINDS,
    FAULTS,
    MODELS,
    SensorEmulator,
    bad_frames,
    damage_frame,
    load_finger,
)
from kiosk.drivers.fingerprint.zhiantec_protocol import (
    DEFAULT_ADDRESS,
    MAX_FRAME,
    Confirmation,
    FrameDecoder,
    FrameError,
    Instruction,
    Packet,
    PacketKind,
    command,
    encode_frame,
    pack_image,
    unpack_image,
)


class RawClient:
    """Frames over pyserial, answers through FrameDecoder: for what pyfingerprint cannot do."""

    def __init__(self, port: str, baudrate: int = 57600) -> None:
        self.serial = serial.Serial(port, baudrate, timeout=0.05)
        self.decoder = FrameDecoder()
        self.pending: list[Packet | FrameError] = []

    def send(self, data: bytes | Packet) -> None:
        self.serial.write(data.encode() if isinstance(data, Packet) else data)

    def receive(self, timeout: float = 1.0) -> Packet | FrameError | None:
        deadline = time.monotonic() + timeout
        while not self.pending and time.monotonic() < deadline:
            self.pending += self.decoder.feed(self.serial.read(4096))
        return self.pending.pop(0) if self.pending else None

    def ask(
        self,
        instruction: int,
        *params: bytes | int,
        address: int = DEFAULT_ADDRESS,
        timeout: float = 1.0,
    ) -> Packet | FrameError | None:
        self.send(command(instruction, *params, address=address))
        return self.receive(timeout)

    def upload_image(self) -> bytes:
        """UpImage: the acknowledgement, then data packets up to the end-of-data one."""
        assert self.ask(Instruction.UP_IMAGE).payload == b"\x00"
        data = bytearray()
        while True:
            packet = self.receive()
            data += packet.payload
            if packet.kind == PacketKind.END_DATA:
                return bytes(data)

    def close(self) -> None:
        self.serial.close()


@pytest.fixture
def sensor() -> Iterator[SensorEmulator]:
    with SensorEmulator(fingers=["good_1", "good_1", "good_2"]) as emulator:
        yield emulator


@pytest.fixture
def connect():
    """connect(port, baudrate=57600, password=0) -> PyFingerprint, closed after the test."""
    opened: list[PyFingerprint] = []

    def make(port: str, baudrate: int = 57600, password: int = 0) -> PyFingerprint:
        reader = PyFingerprint(port, baudrate, 0xFFFFFFFF, password)
        opened.append(reader)
        return reader

    yield make
    for reader in opened:
        reader._PyFingerprint__serial.close()


@pytest.fixture
def raw():
    """raw(port, baudrate=57600) -> RawClient, closed after the test."""
    opened: list[RawClient] = []

    def make(port: str, baudrate: int = 57600) -> RawClient:
        opened.append(RawClient(port, baudrate))
        return opened[-1]

    yield make
    for client in opened:
        client.close()


def enroll_one(sensor: SensorEmulator, reader: PyFingerprint, finger: str = "good_1") -> int:
    """Two captures of a finger into a template stored at the first free page."""
    for buffer_id in (1, 2):
        sensor.place_finger(finger)
        assert reader.readImage()
        assert reader.convertImage(buffer_id)
        sensor.lift_finger()
    assert reader.createTemplate()
    return reader.storeTemplate()


# -- pyfingerprint, unchanged -----------------------------------------------------------------


def test_handshake_and_no_finger(sensor, connect):
    reader = connect(sensor.port)
    assert reader.verifyPassword()
    assert not sensor.finger_on_glass
    assert reader.readImage() is False


def test_enroll_store_search_with_pyfingerprint(sensor, connect):
    reader = connect(sensor.port)
    assert reader.verifyPassword()
    assert enroll_one(sensor, reader) == 0
    assert reader.getTemplateCount() == 1
    assert reader.getTemplateIndex(0)[:2] == [True, False]
    assert sensor.library.keys() == {0}

    sensor.place_finger("good_1")  # the same finger again: found at page 0
    assert reader.readImage() and reader.convertImage(1)
    position, score = reader.searchTemplate()
    assert position == 0 and score > 200

    characteristics = reader.downloadCharacteristics(1)
    assert len(characteristics) == 512
    assert reader.compareCharacteristics() > 200  # buffer 2 still holds the template


def test_different_fingers_do_not_match(sensor, connect):
    reader = connect(sensor.port)
    enroll_one(sensor, reader)  # good_1 at page 0
    sensor.place_finger("good_2")
    assert reader.readImage() and reader.convertImage(1)
    assert reader.searchTemplate() == (-1, -1)
    sensor.place_finger("good_4")
    assert reader.readImage() and reader.convertImage(2)
    assert reader.compareCharacteristics() == 0
    assert reader.createTemplate() is False  # 0x0A: not one finger


def test_poor_print_has_too_few_features_and_no_image_is_invalid(sensor, connect):
    reader = connect(sensor.port)
    with pytest.raises(Exception, match="image is invalid"):
        reader.convertImage(1)  # 0x15: nothing captured yet
    sensor.place_finger("poor")
    assert reader.readImage()
    with pytest.raises(Exception, match="too few feature points"):
        reader.convertImage(1)  # 0x07


def test_download_image_matches_the_placed_finger_at_4_bits(sensor, connect, tmp_path):
    reader = connect(sensor.port)
    sensor.place_finger("good_3")
    assert reader.readImage()
    reader.downloadImage(str(tmp_path / "finger.png"))
    received = np.asarray(Image.open(tmp_path / "finger.png"))
    placed = load_finger("good_3")
    assert received.shape == (288, 256)
    assert np.array_equal(received, unpack_image(pack_image(placed)))
    assert np.abs(received.astype(int) - placed.astype(int)).max() <= 8


@pytest.mark.parametrize("model", sorted(MODELS))
def test_system_parameters_per_model(connect, model):
    with SensorEmulator(model=model) as sensor:
        reader = connect(sensor.port)
        status, system_id, capacity, security, address, size_code, baud = (
            reader.getSystemParameters()
        )
        assert capacity == MODELS[model].library_size
        assert (system_id, security, address) == (0x0009, 3, 0xFFFFFFFF)
        assert (size_code, baud) == (2, 6)  # 128-byte packets, 6 x 9600
        assert status & 0x04  # handshake verified (the default password needs none)


def test_security_level_and_packet_size(sensor, connect):
    reader = connect(sensor.port)
    enroll_one(sensor, reader)
    reader.setSecurityLevel(5)
    reader.setMaxPacketSize(32)
    assert reader.getSecurityLevel() == 5 and reader.getMaxPacketSize() == 32
    assert len(reader.downloadCharacteristics(1)) == 512  # now in 16 packets


def test_set_baud_rate_moves_the_sensor_to_the_new_rate(sensor, connect, raw):
    reader = connect(sensor.port)
    reader.setBaudRate(115200)  # answered at 57600, then the sensor switches
    deadline = time.monotonic() + 1.0  # just after its answer, on the sensor's own thread
    while sensor.baudrate != 115200 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert sensor.baudrate == 115200
    reader._PyFingerprint__serial.close()
    old = raw(sensor.port, 57600)
    assert old.ask(Instruction.READ_SYS_PARA, timeout=0.3) is None  # noise at the wrong rate
    old.close()
    assert sensor.stats["bytes_at_wrong_baud"] > 0
    reader = connect(sensor.port, 115200)
    assert reader.getBaudRate() == 115200


def test_upload_characteristics_round_trip(sensor, connect):
    reader = connect(sensor.port)
    data = [random.Random(2).randrange(256) for _ in range(512)]
    assert reader.uploadCharacteristics(2, data)


def test_delete_and_clear(sensor, connect):
    reader = connect(sensor.port)
    enroll_one(sensor, reader)
    assert reader.deleteTemplate(0)
    assert reader.getTemplateCount() == 0
    enroll_one(sensor, reader)
    assert reader.clearDatabase() and sensor.library == {}
    assert isinstance(reader.generateRandomNumber(), int)


def test_wrong_password_then_right_one(connect):
    with SensorEmulator(password=0x1234) as sensor:
        stranger = connect(sensor.port, password=0)
        assert stranger.verifyPassword() is False  # 0x13
        with pytest.raises(Exception, match="0x21"):
            stranger.readImage()  # refused until the handshake succeeds
        stranger._PyFingerprint__serial.close()
        owner = connect(sensor.port, password=0x1234)
        assert owner.verifyPassword()
        assert owner.readImage() is False


# -- raw frames ---------------------------------------------------------------------------------


def test_bad_checksum_command_gets_packet_error(sensor, raw):
    client = raw(sensor.port)
    frame = bytearray(command(Instruction.GET_IMAGE).encode())
    frame[-1] ^= 0x01
    client.send(bytes(frame))
    assert client.receive().payload == bytes([Confirmation.PACKET_ERROR])
    assert client.ask(Instruction.GET_IMAGE).payload == bytes([Confirmation.NO_FINGER])


def test_unknown_instruction_and_short_parameters_get_packet_error(sensor, raw):
    client = raw(sensor.port)
    assert client.ask(0x40).payload == bytes([Confirmation.PACKET_ERROR])
    assert client.ask(Instruction.STORE, 1).payload == bytes([Confirmation.PACKET_ERROR])
    assert client.ask(Instruction.SET_SYS_PARA, 9, 1).payload == bytes(
        [Confirmation.INVALID_REGISTER]
    )
    assert client.ask(Instruction.SET_SYS_PARA, 4, 13).payload == bytes(
        [Confirmation.BAD_CONFIGURATION]
    )


def test_other_address_is_ignored_and_set_address_answers_from_the_new_one(sensor, raw):
    client = raw(sensor.port)
    assert client.ask(Instruction.GET_IMAGE, address=0x12345678, timeout=0.3) is None
    answer = client.ask(Instruction.SET_ADDRESS, (0x0A0B0C0D).to_bytes(4, "big"))
    assert answer.address == 0x0A0B0C0D and answer.payload == b"\x00"
    assert client.ask(Instruction.GET_IMAGE, timeout=0.3) is None  # the old address: not ours
    assert client.ask(Instruction.GET_IMAGE, address=0x0A0B0C0D).payload == b"\x02"


def test_notepad_write_read_and_bad_page(raw):
    with SensorEmulator(notepad={0: b"KIOSK-07"}) as sensor:
        client = raw(sensor.port)
        page0 = client.ask(Instruction.READ_NOTEPAD, 0)
        assert page0.payload == b"\x00" + b"KIOSK-07".ljust(32, b"\x00")
        data = bytes(range(32))
        assert client.ask(Instruction.WRITE_NOTEPAD, 5, data).payload == b"\x00"
        assert client.ask(Instruction.READ_NOTEPAD, 5).payload == b"\x00" + data
        bad = bytes([Confirmation.BAD_NOTEPAD_PAGE])
        assert client.ask(Instruction.READ_NOTEPAD, 16).payload == bad
        assert client.ask(Instruction.WRITE_NOTEPAD, 16, data).payload == bad


def test_down_image_then_up_image_returns_it(sensor, raw):
    client = raw(sensor.port)
    image = pack_image(load_finger("good_4"))
    assert client.ask(Instruction.DOWN_IMAGE).payload == b"\x00"
    chunks = [image[i : i + 128] for i in range(0, len(image), 128)]
    for chunk in chunks + [bytes(128)] * 50:  # too much: the image buffer keeps its size
        client.send(Packet(PacketKind.DATA, chunk))
    client.send(Packet(PacketKind.END_DATA, bytes(128)))
    assert client.upload_image() == image


def test_truncated_command_is_dropped_after_the_receive_timeout(sensor, raw):
    client = raw(sensor.port)
    client.send(command(Instruction.READ_SYS_PARA).encode()[:7])
    time.sleep(0.4)
    assert client.ask(Instruction.GET_IMAGE).payload == b"\x02"
    assert sensor.stats["partial_frames_dropped"] == 1


def test_power_cycle_keeps_flash_and_forgets_the_handshake(connect, raw):
    sensor = SensorEmulator(password=7, notepad={1: b"id"})
    first = sensor.start()
    client = raw(first)
    assert client.ask(Instruction.VERIFY_PASSWORD, (7).to_bytes(4, "big")).payload == b"\x00"
    assert client.ask(Instruction.GET_IMAGE).payload == b"\x02"
    sensor.stop()
    try:
        second = sensor.start()
        client = raw(second)
        assert client.ask(Instruction.GET_IMAGE).payload == b"\x21"
        assert client.ask(Instruction.VERIFY_PASSWORD, (7).to_bytes(4, "big")).payload == b"\0"
        assert client.ask(Instruction.READ_NOTEPAD, 1).payload[1:3] == b"id"
    finally:
        sensor.stop()


# -- the cable, the line and faults -------------------------------------------------------------


def test_stop_makes_a_blocked_read_fail_not_hang(raw):
    sensor = SensorEmulator()
    port = sensor.start()
    line = serial.Serial(port, 57600, timeout=5)
    outcome: list[object] = []

    def blocked_read() -> None:
        started = time.monotonic()
        try:
            outcome.append(line.read(10))
        except serial.SerialException as error:
            outcome.append(error)
        outcome.append(time.monotonic() - started)

    reader = threading.Thread(target=blocked_read, name="test-blocked-read")
    reader.start()
    time.sleep(0.2)
    sensor.stop()
    reader.join(timeout=2)
    line.close()
    assert not reader.is_alive()
    assert isinstance(outcome[0], serial.SerialException)
    assert outcome[1] < 1.5
    assert sensor.closed and not any(t.name == sensor.name for t in threading.enumerate())
    sensor.stop()  # idempotent


def test_pacing_sends_at_the_baud_rate(raw):
    with SensorEmulator(pace=True) as sensor:
        sensor.place_finger("good_1")
        client = raw(sensor.port)
        assert client.ask(Instruction.GET_IMAGE).payload == b"\x00"
        client.send(command(Instruction.UP_IMAGE))
        assert client.receive().payload == b"\x00"
        client.serial.timeout = 2
        started = time.monotonic()
        received = len(client.serial.read(2880))
        elapsed = time.monotonic() - started
        # 2880 bytes x 10 bits / 57600 baud = 0.5 s; the whole image would take about 7 s
        assert received == 2880
        assert 0.4 < elapsed < 1.2
    # stop() ended the upload mid-way, at once


@pytest.mark.parametrize("fault", FAULTS)
def test_injected_faults_reach_the_client(fault, raw):
    with SensorEmulator(seed=5, slow_s=0.3) as sensor:
        client = raw(sensor.port)
        sensor.inject(fault)
        started = time.monotonic()
        first = client.ask(Instruction.GET_IMAGE, timeout=0.5)
        elapsed = time.monotonic() - started
        no_finger = Packet(PacketKind.ACK, b"\x02")
        if fault in ("silence", "truncate"):
            assert first is None
        elif fault == "stray":
            assert first == no_finger and client.decoder.skipped_bytes > 0
        elif fault == "slow":
            assert first == no_finger and elapsed >= 0.3
        elif fault == "oversize":
            assert isinstance(first, FrameError) and first.reason == "length"
        else:  # garble, bad_checksum: a broken frame or, if the address was hit, not ours
            assert first != no_finger
        assert sensor.stats[f"fault_{fault}"] == 1
        client.decoder.reset()
        time.sleep(0.3)  # let a truncated answer's tail time out at the client
        client.serial.reset_input_buffer()
        client.pending.clear()
        assert client.ask(Instruction.GET_IMAGE) == no_finger  # the next answer is clean


def test_unknown_fault_is_refused():
    with pytest.raises(ValueError, match="unknown fault"):
        SensorEmulator().inject("meteor")
    with pytest.raises(ValueError, match="unknown sensor model"):
        SensorEmulator(model="R999")


def test_random_faults_are_repeatable_by_seed(raw):
    def run() -> list[str]:
        with SensorEmulator(fault_rate=0.5, seed=11, slow_s=0.01) as sensor:
            client = raw(sensor.port)
            for _ in range(10):
                client.ask(Instruction.TEMPLATE_COUNT, timeout=0.1)
            return sorted(k for k in sensor.stats.elements() if k.startswith("fault_"))

    first = run()
    assert first and first == run()


def test_bad_frames_cover_every_kind_and_never_hurt_the_decoder():
    rng = random.Random(9)
    decoder = FrameDecoder()
    items = list(itertools.islice(bad_frames(rng), 400))
    assert all(isinstance(item, bytes) and item for item in items)
    for item in items:
        decoder.feed(item)
        assert decoder.buffered < MAX_FRAME
    frame = encode_frame(PacketKind.ACK, b"\x00")
    for kind in BAD_FRAME_KINDS:
        damaged = damage_frame(frame, kind, random.Random(kind))
        assert damaged != frame, kind
        assert Packet(PacketKind.ACK, b"\x00") not in FrameDecoder().feed(damaged) or (
            kind == "stray"
        )


# -- the citizen --------------------------------------------------------------------------------


def test_auto_fingers_hold_until_uploaded_then_the_next_comes(raw):
    with SensorEmulator(
        fingers=["good_1", "good_2"], auto_fingers=True, hold_s=0.2, gap_s=0.3
    ) as sensor:
        client = raw(sensor.port)
        assert client.ask(Instruction.GET_IMAGE).payload == b"\x02"  # not come yet
        deadline = time.monotonic() + 1
        while client.ask(Instruction.GET_IMAGE).payload != b"\x00":
            assert time.monotonic() < deadline
        time.sleep(0.25)
        assert sensor.finger_on_glass  # held past hold_s: waiting for the upload
        client.upload_image()
        time.sleep(0.05)
        assert not sensor.finger_on_glass  # lifted once uploaded
        assert client.ask(Instruction.GET_IMAGE).payload == b"\x02"
        time.sleep(0.3)
        assert sensor.finger_on_glass  # the next finger, after gap_s
        assert client.ask(Instruction.GET_IMAGE).payload == b"\x00"
        assert client.upload_image() == pack_image(load_finger("good_2"))


# -- the command line ---------------------------------------------------------------------------


def test_command_line_prints_the_port_first_and_stops_on_sigterm(raw):
    process = subprocess.Popen(
        [sys.executable, "-m", "kiosk.drivers.fingerprint.emulator", "--notepad-id", "KIOSK-07"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        port = process.stdout.readline().strip()
        assert port.startswith("/dev/")
        client = raw(port)
        page0 = client.ask(Instruction.READ_NOTEPAD, 0)
        assert page0.payload[1:9] == b"KIOSK-07"
        client.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()


def test_the_auto_citizen_waits_to_be_asked_and_lifts_a_finger_never_taken():
    """The emulated citizen of `kiosk emulate fingerprint` gives a finger only once the
    kiosk polls an empty glass (not while they read the consent), and lifts one the
    kiosk never takes after hold_s + patience_s, as the screen would ask."""
    from kiosk.drivers.base import Outcome
    from kiosk.drivers.fingerprint.zhiantec import ZhiantecReader

    with SensorEmulator(auto_fingers=True, hold_s=0.2, gap_s=0.1, patience_s=0.5) as sensor:
        time.sleep(0.6)  # the citizen is still reading: nobody asked for a finger yet
        assert not sensor.finger_on_glass
        with ZhiantecReader(port=sensor.port, wait_s=3.0, read_timeout_s=0.5) as reader:
            assert reader.capture().result().outcome is Outcome.CAPTURED
        sensor.place_finger()  # a finger the kiosk never takes...
        deadline = time.monotonic() + 2.0
        while sensor.finger_on_glass and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not sensor.finger_on_glass  # ...is lifted once the citizen is told
