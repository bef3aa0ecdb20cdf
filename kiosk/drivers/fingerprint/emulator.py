"""A ZhianTec fingerprint sensor (R307, R503, AS608, ZFM-20) emulated on a pseudo-terminal.

The emulator opens a pty, serves the sensor's serial protocol on it from one named
thread, and hands out the device path: any real client (our ZhianTec driver,
pyfingerprint, a terminal program) talks to it exactly as to a sensor on
/dev/ttyUSB0::

    with SensorEmulator(fingers=["good_1"]) as sensor:
        reader = PyFingerprint(sensor.port, 57600, 0xFFFFFFFF, 0)
        reader.readImage()         # False: the glass is empty
        sensor.place_finger()      # the next finger of the script: good_1
        reader.readImage()         # True

What is emulated, and how faithfully:

- Frames and codes as the datasheets give them (:mod:`.zhiantec_protocol`); the
  module answers only frames carrying its address, and the answer to SetAdder
  already carries the new address.
- The line speed: when the client's port is set to another baud rate than the
  sensor's (``check_baud``), the sensor hears noise and answers nothing, as a real
  one would. SetSysPara 4 answers at the old rate, then switches.
- ``pace=True`` sends each byte at the current baud rate (10 bits a byte), so an
  image upload at 57600 baud takes about 7 s, as on the wire. Bytes from the
  client are not paced (commands are short).
- The handshake password: when it is not 0, every command but VfyPwd is refused
  with 0x21 ("verify the password first", the R503 code; the R307 manual only
  says the module "refuses") until VfyPwd succeeds. A frame with a bad checksum
  gets 0x01 (error receiving the packet), as the datasheet says for every
  instruction; so does an unknown instruction or a command whose parameters are
  too short (0x01 is the only code every model defines for a packet it cannot use).
- Images are 256 x 288, uploaded 4 bits a pixel. A "character file" (512 bytes)
  is derived from the captured image: the ridge orientation of each 16 x 16 block.
  Two captures of the same finger match (score near 300), different fingers do
  not; a faint or partial print (``samples/poor.png``) fails with 0x07 (too few
  feature points). Scores are compared against the security level.
- The library and the notepad live as long as the emulator object (a module's
  flash); :meth:`start` after :meth:`stop` is a power cycle: a new pty, the
  handshake and the buffers forgotten.

Faults: :meth:`inject` damages the next frames the sensor sends (``garble``,
``truncate``, ``oversize``, ``bad_checksum``, ``silence``, ``stray``, ``slow``);
``fault_rate`` damages frames at random (``seed`` makes it repeatable).
:func:`bad_frames` yields broken frames for fuzzing a client.

Run it from a shell (the device path is the first line printed)::

    python -m kiosk.drivers.fingerprint.emulator --model R307 --notepad-id KIOSK-07
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import fcntl
import itertools
import os
import random
import select
import signal
import struct
import sys
import termios
import threading
import time
import tty
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from kiosk.drivers.fingerprint.zhiantec_protocol import (
    BAUD_UNIT,
    DEFAULT_ADDRESS,
    DEFAULT_PACKET_SIZE_CODE,
    IMAGE_BYTES,
    IMAGE_SIZE,
    MAX_PAYLOAD,
    NOTEPAD_PAGE_SIZE,
    NOTEPAD_PAGES,
    TEMPLATE_BYTES,
    Confirmation,
    FrameDecoder,
    FrameError,
    Instruction,
    Packet,
    PacketKind,
    ack,
    encode_frame,
    pack_image,
    packet_size,
    unpack_image,
)

SAMPLES = Path(__file__).parent / "samples"
DEFAULT_FINGERS = ("good_1", "good_2", "good_3", "good_4", "poor")
FAULTS = ("garble", "truncate", "oversize", "bad_checksum", "silence", "stray", "slow")
BAD_FRAME_KINDS = (
    "garble",
    "truncate",
    "oversize",
    "bad_checksum",
    "stray",
    "bad_length",
    "unknown_identifier",
)
IMAGE_SHAPE = (IMAGE_SIZE[1], IMAGE_SIZE[0])  # numpy (height, width)
BLOCK = 16  # pixels a side of a block of the orientation field
MIN_BLOCKS = 40  # blocks with clear ridges below which a print has too few features
FRAME_GAP_S = 0.25  # a partial frame older than this is dropped (the module's receive timeout)
WRITE_STALL_S = 2.0  # a UART does not wait: bytes the client does not take in time are lost
STATUS_PASS, STATUS_PASSWORD, STATUS_IMAGE = 0x02, 0x04, 0x08
SCORE_THRESHOLDS = {1: 30, 2: 45, 3: 60, 4: 80, 5: 100}  # by security level, scores 0..300


@dataclass(frozen=True)
class ModelSpec:
    """What tells the models apart on the wire."""

    name: str
    library_size: int
    system_id: int = 0x0009  # "fixed value 0x0009" in the ZFM manuals
    security_level: int = 3


MODELS = {
    spec.name: spec
    for spec in (
        ModelSpec("R307", 1000),
        ModelSpec("R503", 200),
        ModelSpec("AS608", 300),
        ModelSpec("ZFM-20", 162),
    )
}


# -- fingers --------------------------------------------------------------------------------


def load_finger(finger: np.ndarray | str | Path) -> np.ndarray:
    """A finger image as the glass sees it: uint8 (288, 256).

    ``finger`` is an array, a sample name (``"good_1"`` .. ``"good_4"``, ``"poor"``)
    or the path of an image file. Raises ValueError on a wrong size or an unreadable file.
    """
    if isinstance(finger, np.ndarray):
        image = finger
    else:
        path = Path(finger)
        if not path.suffix and not path.exists():
            path = SAMPLES / f"{finger}.png"
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise ValueError(f"finger image {path} is missing or unreadable")
    if image.shape != IMAGE_SHAPE or image.dtype != np.uint8:
        raise ValueError(
            f"a finger image must be uint8 {IMAGE_SHAPE}, got {image.dtype} {image.shape}"
        )
    return image


def finger_directory(where: str) -> list[np.ndarray]:
    """The fingers of the CLI's ``--fingers``: ``"samples"`` or a directory of PNG files."""
    if where == "samples":
        return [load_finger(name) for name in DEFAULT_FINGERS]
    files = sorted(Path(where).glob("*.png"))
    if not files:
        raise ValueError(f"no .png finger images in {where}")
    return [load_finger(path) for path in files]


# -- character files ------------------------------------------------------------------------

_TEMPLATE_MAGIC = b"\x03\x01"
_NO_RIDGES = 0xFF  # the orientation byte of a block without clear ridges


def character_file(image: np.ndarray) -> tuple[bytes, int]:
    """The 512-byte character file of an image and how many blocks have clear ridges.

    Bytes 0-1 are a marker, then one byte a block (18 x 16 blocks, row by row): the
    ridge orientation in degrees 0..179, or 0xFF where the block has no clear ridges.
    """
    pixels = image.astype(np.float32)
    gx = cv2.Sobel(pixels, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(pixels, cv2.CV_32F, 0, 1, ksize=3)
    rows, cols = pixels.shape[0] // BLOCK, pixels.shape[1] // BLOCK

    def blocks(values: np.ndarray) -> np.ndarray:
        return values.reshape(rows, BLOCK, cols, BLOCK).sum(axis=(1, 3))

    gxx, gyy, gxy = blocks(gx * gx), blocks(gy * gy), blocks(gx * gy)
    cos2, sin2 = gxx - gyy, 2 * gxy
    coherence = np.hypot(cos2, sin2) / (gxx + gyy + 1e-6)
    contrast = pixels.reshape(rows, BLOCK, cols, BLOCK).std(axis=(1, 3))
    clear = (coherence > 0.4) & (contrast > 20)
    degrees = np.round(np.degrees(np.arctan2(sin2, cos2) / 2)) % 180
    codes = np.where(clear, degrees, _NO_RIDGES).astype(np.uint8).ravel()
    data = _TEMPLATE_MAGIC + codes.tobytes()
    return data.ljust(TEMPLATE_BYTES, b"\x00"), int(clear.sum())


def _orientations(template: bytes) -> np.ndarray | None:
    """Doubled-angle orientations in radians (NaN where no ridges), or None if no template."""
    if template[:2] != _TEMPLATE_MAGIC:
        return None
    count = IMAGE_SHAPE[0] // BLOCK * (IMAGE_SHAPE[1] // BLOCK)
    codes = np.frombuffer(template[2 : 2 + count], dtype=np.uint8).astype(np.float64)
    codes[codes >= 180] = np.nan
    return np.radians(codes * 2)


def match_score(first: bytes, second: bytes) -> int:
    """How alike two character files are, 0..300 (the same finger scores near 300)."""
    a, b = _orientations(first), _orientations(second)
    if a is None or b is None:
        return 0
    both = ~np.isnan(a) & ~np.isnan(b)
    if both.sum() < MIN_BLOCKS // 2:
        return 0
    similarity = float(np.mean(np.cos(a[both] - b[both])))
    return round(300 * min(1.0, max(0.0, (similarity - 0.75) / 0.25)))


def merge_templates(first: bytes, second: bytes) -> bytes:
    """RegModel: the mean orientation where both files have ridges, either one elsewhere."""
    a, b = _orientations(first), _orientations(second)
    assert a is not None and b is not None
    vectors = np.nan_to_num(np.exp(1j * a)) + np.nan_to_num(np.exp(1j * b))
    none = np.isnan(a) & np.isnan(b)
    degrees = np.round(np.degrees(np.angle(vectors)) / 2) % 180
    codes = np.where(none, _NO_RIDGES, degrees).astype(np.uint8)
    return (_TEMPLATE_MAGIC + codes.tobytes()).ljust(TEMPLATE_BYTES, b"\x00")


# -- broken frames --------------------------------------------------------------------------


def damage_frame(frame: bytes, kind: str, rng: random.Random) -> bytes:
    """``frame`` as a fault of ``kind`` (one of FAULTS or BAD_FRAME_KINDS) puts it on the wire.

    ``silence`` gives no bytes; ``slow`` leaves the bytes alone (the delay is the sender's).
    """
    damaged = bytearray(frame)
    if kind == "garble":
        damaged[rng.randrange(len(damaged))] ^= rng.randrange(1, 256)
    elif kind == "truncate":
        del damaged[rng.randrange(1, len(damaged)) :]
    elif kind == "oversize":
        payload = rng.randbytes(MAX_PAYLOAD + 1 + rng.randrange(64))
        damaged = bytearray(encode_frame(frame[6], payload, int.from_bytes(frame[2:6], "big")))
    elif kind == "bad_checksum":
        damaged[-1 - rng.randrange(2)] ^= rng.randrange(1, 256)
    elif kind == "stray":
        junk = bytes(rng.choice(range(0x00, 0xEF)) for _ in range(rng.randrange(1, 17)))
        damaged[:0] = junk
    elif kind == "bad_length":
        damaged[7:9] = rng.choice((0, 1, MAX_PAYLOAD + 3, 0xFFFF)).to_bytes(2, "big")
    elif kind == "unknown_identifier":
        damaged[6] = rng.choice([k for k in range(256) if k not in set(PacketKind)])
    elif kind == "silence":
        return b""
    elif kind != "slow":
        raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULTS + BAD_FRAME_KINDS)}")
    return bytes(damaged)


def bad_frames(rng: random.Random) -> Iterator[bytes]:
    """Endless broken frames, each the wire bytes of one fault, for fuzzing a client.

    Each item is a plausible sensor frame (an acknowledgement or a data packet)
    garbled, truncated, oversized, with a wrong checksum, a bad length or identifier,
    or behind stray bytes::

        for wire in itertools.islice(bad_frames(random.Random(3)), 500):
            ...
    """
    while True:
        if rng.random() < 0.5:
            payload = bytes((rng.choice(list(Confirmation)),)) + rng.randbytes(rng.randrange(17))
            frame = Packet(PacketKind.ACK, payload).encode()
        else:
            kind = rng.choice((PacketKind.DATA, PacketKind.END_DATA))
            frame = Packet(kind, rng.randbytes(rng.choice((32, 64, 128, 256)))).encode()
        yield damage_frame(frame, rng.choice(BAD_FRAME_KINDS), rng)


# -- the line -------------------------------------------------------------------------------

_TCGETS2 = 0x802C542A  # Linux on x86 and ARM: struct termios2, with the speeds as numbers
_BAUD_CONSTANTS = {
    getattr(termios, f"B{rate}"): rate
    for rate in (9600, 19200, 38400, 57600, 115200, 230400)
    if hasattr(termios, f"B{rate}")
}


def line_speed(fd: int) -> int | None:
    """The baud rate the client has set on the pty, or None when it cannot be told."""
    with contextlib.suppress(OSError):
        raw = fcntl.ioctl(fd, _TCGETS2, bytes(44))
        speed = struct.unpack("4IB19s2I", raw)[-1]
        if speed:
            return speed
    with contextlib.suppress(termios.error):
        return _BAUD_CONSTANTS.get(termios.tcgetattr(fd)[5])
    return None


class _Stopped(Exception):
    """The emulator is stopping: abandon the answer being sent."""


# -- the sensor -----------------------------------------------------------------------------


class SensorEmulator:
    """A ZhianTec sensor on a pseudo-terminal, served from one thread until :meth:`stop`.

    Options:

    - ``model``: a name of :data:`MODELS` (library size, system id);
    - ``password``, ``address``: the module's handshake password and address;
    - ``notepad``: initial notepad pages, ``{page: bytes}`` (up to 32 bytes each);
    - ``baudrate``: the module's current rate, a multiple of 9600 up to 115200;
    - ``pace``: send bytes no faster than the baud rate allows;
    - ``check_baud``: ignore a client whose port is set to another rate;
    - ``fingers``: the script of fingers (arrays, sample names or paths) that
      :meth:`place_finger` takes in turn, cycling; by default the five samples;
    - ``auto_fingers``: a citizen puts the fingers on the glass by themselves, when the
      kiosk asks (polls an empty glass): each finger comes ``gap_s`` after the last was
      lifted and stays at least ``hold_s``, until its image has been uploaded (or
      captured, if ``lift_after_upload`` is False), or ``patience_s`` past ``hold_s`` if
      it is never taken (the screen then asks the citizen to lift it);
    - ``capture_noise``: the standard deviation of noise added to each capture;
    - ``fault_rate``, ``faults``, ``seed``, ``slow_s``: random faults on the frames
      sent (see :meth:`inject`).

    Test hooks: :meth:`place_finger`, :meth:`lift_finger`, :attr:`finger_on_glass`,
    :meth:`inject`, :attr:`stats` (a Counter of what happened), :attr:`library`.
    """

    def __init__(
        self,
        *,
        model: str = "R307",
        password: int = 0,
        address: int = DEFAULT_ADDRESS,
        notepad: dict[int, bytes] | None = None,
        baudrate: int = 57600,
        pace: bool = False,
        check_baud: bool = True,
        fingers: Sequence[np.ndarray | str | Path] | None = None,
        auto_fingers: bool = False,
        hold_s: float = 1.0,
        gap_s: float = 1.0,
        lift_after_upload: bool = True,
        patience_s: float = 4.0,
        capture_noise: float = 0.0,
        fault_rate: float = 0.0,
        faults: Sequence[str] = FAULTS,
        seed: int | None = None,
        slow_s: float = 1.0,
        name: str = "fingerprint-emulator",
    ) -> None:
        if model not in MODELS:
            raise ValueError(f"unknown sensor model {model!r}; known: {', '.join(MODELS)}")
        if baudrate % BAUD_UNIT or not 1 <= baudrate // BAUD_UNIT <= 12:
            raise ValueError(f"baud rate {baudrate} is not a multiple 1..12 of 9600")
        if not 0 <= password <= 0xFFFFFFFF or not 0 <= address <= 0xFFFFFFFF:
            raise ValueError("password and address are 32-bit numbers")
        for fault in faults:
            if fault not in FAULTS:
                raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
        self.spec = MODELS[model]
        self.password = password
        self.address = address
        self.baudrate = baudrate
        self.security_level = self.spec.security_level
        self.packet_size_code = DEFAULT_PACKET_SIZE_CODE
        self.notepad = [bytes(NOTEPAD_PAGE_SIZE)] * NOTEPAD_PAGES
        for page, data in (notepad or {}).items():
            if not 0 <= page < NOTEPAD_PAGES or len(data) > NOTEPAD_PAGE_SIZE:
                raise ValueError(f"notepad page {page} must be 0..15 with at most 32 bytes")
            self.notepad[page] = bytes(data).ljust(NOTEPAD_PAGE_SIZE, b"\x00")
        self.library: dict[int, bytes] = {}  # page id -> template: the module's flash
        self.pace = pace
        self.check_baud = check_baud
        self.fault_rate = fault_rate
        self.faults = tuple(faults)
        self.slow_s = slow_s
        self.capture_noise = capture_noise
        self.name = name
        self.stats: collections.Counter[str] = collections.Counter()
        self._rng = random.Random(seed)
        self._fingers = [load_finger(f) for f in (DEFAULT_FINGERS if fingers is None else fingers)]
        self._next_finger = itertools.cycle(range(len(self._fingers)))
        self._auto = auto_fingers
        self._hold_s, self._gap_s = hold_s, gap_s
        self._lift_after_upload = lift_after_upload
        self._patience_s = patience_s
        self._asked = False  # the kiosk polled an empty glass since the last finger came
        if auto_fingers and not self._fingers:
            raise ValueError("auto_fingers needs at least one finger")
        self._lock = threading.RLock()  # guards the glass: test hooks run on other threads
        self._glass: np.ndarray | None = None
        self._glass_count = 0  # how many fingers have been placed: tells one from the next
        self._placed_at = 0.0
        self._next_place_at = 0.0
        self._captured_of = 0  # which placement the image buffer holds (0: none)
        self._uploaded_of = 0  # which placement's image was uploaded last
        self._injected: collections.deque[str] = collections.deque()
        self._master = self._slave = -1
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.port: str | None = None
        self._power_on()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> str:
        """Open a fresh pty and serve it; return its device path (also :attr:`port`)."""
        if self._thread is not None:
            raise RuntimeError("the emulator is already running")
        self._power_on()
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self._stopping.clear()
        self._next_place_at = time.monotonic() + self._gap_s
        self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
        self._thread.start()
        return self.port

    def stop(self) -> None:
        """Pull the cable: stop serving and close the pty, so a client's reads fail. Idempotent."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        thread.join()
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._master = self._slave = -1

    close = stop

    @property
    def closed(self) -> bool:
        return self._thread is None

    def __enter__(self) -> SensorEmulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _power_on(self) -> None:
        """What a power cycle forgets: the handshake, the buffers, a half-received transfer."""
        self.verified = self.password == 0
        self.image_buffer: bytes | None = None
        self.char_buffers = {1: bytes(TEMPLATE_BYTES), 2: bytes(TEMPLATE_BYTES)}
        self._last_search_passed = False
        self._decoder = FrameDecoder()
        self._receiving: tuple[int, bytearray] | None = None  # (0 image / buffer id, bytes)
        self._line_free_at = 0.0

    # -- the glass ------------------------------------------------------------------------

    def place_finger(self, finger: np.ndarray | str | Path | None = None) -> None:
        """Put a finger on the glass: the given one, or the next of the script."""
        if finger is None and not self._fingers:
            raise ValueError("no fingers in the script: pass one to place_finger()")
        image = None if finger is None else load_finger(finger)
        with self._lock:
            if image is None:
                image = self._fingers[next(self._next_finger)]
            self._glass = image
            self._glass_count += 1
            self._placed_at = time.monotonic()

    def lift_finger(self) -> None:
        """Take the finger off the glass."""
        with self._lock:
            self._glass = None
            self._next_place_at = time.monotonic() + self._gap_s

    @property
    def finger_on_glass(self) -> bool:
        """Whether a finger is on the glass now."""
        self._move_citizen(time.monotonic())
        return self._glass is not None

    @property
    def fingers(self) -> list[np.ndarray]:
        """The script of fingers :meth:`place_finger` takes in turn."""
        return list(self._fingers)

    def _move_citizen(self, now: float) -> None:
        """In auto mode, place and lift fingers as the timings say."""
        if not self._auto:
            return
        with self._lock:
            if self._glass is None:
                if self._asked and now >= self._next_place_at:
                    self._asked = False
                    self.place_finger()
                return
            done = self._uploaded_of if self._lift_after_upload else self._captured_of
            held = now - self._placed_at
            taken = done == self._glass_count
            if held >= self._hold_s and (taken or held >= self._hold_s + self._patience_s):
                self.lift_finger()

    # -- faults ---------------------------------------------------------------------------

    def inject(self, kind: str, count: int = 1) -> None:
        """Damage the next ``count`` frames the sensor sends (see the module docstring).

        ``slow`` delays a frame by ``slow_s``; ``silence`` drops it; ``stray`` puts junk
        before it; the others break it. Raises ValueError for an unknown kind.
        """
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULTS)}")
        self._injected.extend([kind] * count)

    def _next_fault(self) -> str | None:
        if self._injected:
            return self._injected.popleft()
        if self.fault_rate and self._rng.random() < self.fault_rate:
            return self._rng.choice(self.faults)
        return None

    # -- the serving thread ---------------------------------------------------------------

    def _serve(self) -> None:
        last_byte_at = 0.0
        while not self._stopping.is_set():
            readable, _, _ = select.select([self._master], [], [], 0.02)
            now = time.monotonic()
            self._move_citizen(now)
            data = b""
            if readable:
                try:
                    data = os.read(self._master, 4096)
                except BlockingIOError:
                    continue
                except OSError:
                    return  # the pty is gone
            if not data:
                if self._decoder.buffered and now - last_byte_at > FRAME_GAP_S:
                    self.stats["partial_frames_dropped"] += 1
                    self._decoder.reset()
                continue
            last_byte_at = now
            if self.check_baud and line_speed(self._slave) not in (None, self.baudrate):
                self.stats["bytes_at_wrong_baud"] += len(data)  # noise to the sensor's UART
                continue
            try:
                for item in self._decoder.feed(data):
                    self._receive(item)
            except _Stopped:
                return

    def _receive(self, item: Packet | FrameError) -> None:
        if isinstance(item, FrameError):
            self.stats[f"bad_frames_{item.reason}"] += 1
            # the address field is readable even when the checksum is not right
            if item.reason == "checksum" and item.address == self.address:
                self._receiving = None
                self._answer(Confirmation.PACKET_ERROR)
            return
        if item.address != self.address:
            self.stats["other_address"] += 1
            return
        if item.kind == PacketKind.COMMAND:
            self._receiving = None
            self._command(item.payload)
        elif self._receiving is not None:
            target, data = self._receiving
            limit = IMAGE_BYTES if target == 0 else TEMPLATE_BYTES
            if len(data) < limit:  # the buffer is this big; an endless sender cannot grow it
                data.extend(item.payload[: limit - len(data)])
            if item.kind == PacketKind.END_DATA:
                self._finish_download()
        else:
            self.stats["unexpected_packets"] += 1

    def _command(self, payload: bytes) -> None:
        self.stats["commands"] += 1
        if not payload:
            self._answer(Confirmation.PACKET_ERROR)
            return
        code, params = payload[0], payload[1:]
        handler = _HANDLERS.get(code)
        if handler is None:
            self.stats["unknown_instructions"] += 1
            self._answer(Confirmation.PACKET_ERROR)
            return
        if not self.verified and code != Instruction.VERIFY_PASSWORD:
            self._answer(Confirmation.PASSWORD_REQUIRED)
            return
        needed = _PARAM_BYTES.get(code, 0)
        if len(params) < needed:
            self._answer(Confirmation.PACKET_ERROR)
            return
        handler(self, params)

    # -- sending --------------------------------------------------------------------------

    def _answer(self, code: int, *params: bytes | int) -> None:
        self._send(ack(code, *params, address=self.address).encode())

    def _send_data(self, data: bytes) -> None:
        size = packet_size(self.packet_size_code)
        chunks = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
        for number, chunk in enumerate(chunks, 1):
            kind = PacketKind.END_DATA if number == len(chunks) else PacketKind.DATA
            self._send(Packet(kind, chunk, self.address).encode())

    def _send(self, frame: bytes) -> None:
        fault = self._next_fault()
        if fault is not None:
            self.stats[f"fault_{fault}"] += 1
            if fault == "slow" and self._stopping.wait(self.slow_s):
                raise _Stopped
            frame = damage_frame(frame, fault, self._rng)
        self._write(frame)

    def _write(self, data: bytes) -> None:
        """Write to the line, paced at the baud rate when asked; never block for long."""
        seconds_a_byte = 10 / self.baudrate
        chunk = max(1, int(0.005 / seconds_a_byte)) if self.pace else len(data) or 1
        view = memoryview(data)
        if self.pace:
            self._line_free_at = max(self._line_free_at, time.monotonic())
        while view:
            if self.pace:
                delay = self._line_free_at - time.monotonic()
                if delay > 0 and self._stopping.wait(delay):
                    raise _Stopped
            part = view[:chunk]
            written = self._write_some(part)
            if written is None:
                self.stats["bytes_lost"] += len(view)
                return
            view = view[written:]
            if self.pace:
                self._line_free_at += written * seconds_a_byte
        self.stats["bytes_sent"] += len(data)

    def _write_some(self, data: memoryview) -> int | None:
        deadline = time.monotonic() + WRITE_STALL_S
        while not self._stopping.is_set():
            try:
                return os.write(self._master, data)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return None  # nobody reads: the bytes fall off the end of the wire
                select.select([], [self._master], [], 0.02)
            except OSError:
                return None
        raise _Stopped

    # -- instructions ---------------------------------------------------------------------

    def _verify_password(self, params: bytes) -> None:
        if int.from_bytes(params[:4], "big") == self.password:
            self.verified = True
            self._answer(Confirmation.OK)
        else:
            self._answer(Confirmation.WRONG_PASSWORD)

    def _set_password(self, params: bytes) -> None:
        self.password = int.from_bytes(params[:4], "big")
        self._answer(Confirmation.OK)

    def _set_address(self, params: bytes) -> None:
        self.address = int.from_bytes(params[:4], "big")
        self._answer(Confirmation.OK)  # already from the new address, as the manual shows

    def _set_system_parameter(self, params: bytes) -> None:
        number, value = params[0], params[1]
        if number == 4:
            if not 1 <= value <= 12:
                self._answer(Confirmation.BAD_CONFIGURATION)
                return
            self._answer(Confirmation.OK)  # at the old rate; the new one applies after
            self.baudrate = value * BAUD_UNIT
        elif number == 5:
            if not 1 <= value <= 5:
                self._answer(Confirmation.BAD_CONFIGURATION)
                return
            self.security_level = value
            self._answer(Confirmation.OK)
        elif number == 6:
            if not 0 <= value <= 3:
                self._answer(Confirmation.BAD_CONFIGURATION)
                return
            self.packet_size_code = value
            self._answer(Confirmation.OK)
        else:
            self._answer(Confirmation.INVALID_REGISTER)

    def _read_system_parameters(self, params: bytes) -> None:
        status = (
            (STATUS_PASS if self._last_search_passed else 0)
            | (STATUS_PASSWORD if self.verified else 0)
            | (STATUS_IMAGE if self.image_buffer is not None else 0)
        )
        body = struct.pack(
            ">HHHHIHH",
            status,
            self.spec.system_id,
            self.spec.library_size,
            self.security_level,
            self.address,
            self.packet_size_code,
            self.baudrate // BAUD_UNIT,
        )
        self._answer(Confirmation.OK, body)

    def _get_image(self, params: bytes) -> None:
        self._move_citizen(time.monotonic())
        with self._lock:
            image, placement = self._glass, self._glass_count
        if image is None:
            with self._lock:
                self._asked = True  # the kiosk waits for a finger: the citizen gives one
            self._answer(Confirmation.NO_FINGER)
            return
        if self.capture_noise:
            noise = np.random.default_rng(self._rng.getrandbits(32)).normal(
                0, self.capture_noise, image.shape
            )
            image = np.clip(image + noise, 0, 255).astype(np.uint8)
        self.image_buffer = pack_image(image)
        with self._lock:
            self._captured_of = placement
        self._answer(Confirmation.OK)

    def _image_to_character_file(self, params: bytes) -> None:
        buffer_id = params[0]
        if buffer_id not in self.char_buffers:
            self._answer(Confirmation.PACKET_ERROR)
        elif self.image_buffer is None:
            self._answer(Confirmation.INVALID_IMAGE)
        else:
            data, clear_blocks = character_file(unpack_image(self.image_buffer))
            if clear_blocks < MIN_BLOCKS:
                self._answer(Confirmation.SMALL_IMAGE)
                return
            self.char_buffers[buffer_id] = data
            self._answer(Confirmation.OK)

    def _threshold(self) -> int:
        return SCORE_THRESHOLDS[self.security_level]

    def _match(self, params: bytes) -> None:
        score = match_score(self.char_buffers[1], self.char_buffers[2])
        passed = score >= self._threshold()
        self._last_search_passed = passed
        code = Confirmation.OK if passed else Confirmation.NOT_MATCHING
        self._answer(code, score.to_bytes(2, "big"))

    def _search(self, params: bytes) -> None:
        buffer_id, start, count = params[0], *struct.unpack(">HH", params[1:5])
        if buffer_id not in self.char_buffers:
            self._answer(Confirmation.PACKET_ERROR)
            return
        if start >= self.spec.library_size:
            self._answer(Confirmation.BAD_LOCATION)
            return
        probe = self.char_buffers[buffer_id]
        best_page, best_score = 0, 0
        for page in range(start, min(start + count, self.spec.library_size)):
            template = self.library.get(page)
            if template is not None:
                score = match_score(probe, template)
                if score > best_score:
                    best_page, best_score = page, score
        self._last_search_passed = best_score >= self._threshold()
        if self._last_search_passed:
            self._answer(Confirmation.OK, struct.pack(">HH", best_page, best_score))
        else:
            self._answer(Confirmation.NOT_FOUND, bytes(4))

    def _register_model(self, params: bytes) -> None:
        first, second = self.char_buffers[1], self.char_buffers[2]
        if match_score(first, second) < self._threshold():
            self._answer(Confirmation.ENROLL_MISMATCH)
            return
        merged = merge_templates(first, second)
        self.char_buffers = {1: merged, 2: merged}
        self._answer(Confirmation.OK)

    def _store(self, params: bytes) -> None:
        buffer_id, page = params[0], int.from_bytes(params[1:3], "big")
        if buffer_id not in self.char_buffers:
            self._answer(Confirmation.PACKET_ERROR)
        elif page >= self.spec.library_size:
            self._answer(Confirmation.BAD_LOCATION)
        else:
            self.library[page] = self.char_buffers[buffer_id]
            self._answer(Confirmation.OK)

    def _load_char(self, params: bytes) -> None:
        buffer_id, page = params[0], int.from_bytes(params[1:3], "big")
        if buffer_id not in self.char_buffers:
            self._answer(Confirmation.PACKET_ERROR)
        elif page >= self.spec.library_size:
            self._answer(Confirmation.BAD_LOCATION)
        elif page not in self.library:
            self._answer(Confirmation.READ_TEMPLATE_FAILED)
        else:
            self.char_buffers[buffer_id] = self.library[page]
            self._answer(Confirmation.OK)

    def _upload_char(self, params: bytes) -> None:
        buffer_id = params[0]
        if buffer_id not in self.char_buffers:
            self._answer(Confirmation.UPLOAD_FAILED)
            return
        self._answer(Confirmation.OK)
        self._send_data(self.char_buffers[buffer_id])

    def _download_char(self, params: bytes) -> None:
        buffer_id = params[0]
        if buffer_id not in self.char_buffers:
            self._answer(Confirmation.RECEIVE_FAILED)
            return
        self._answer(Confirmation.OK)
        self._receiving = (buffer_id, bytearray())

    def _upload_image(self, params: bytes) -> None:
        if self.image_buffer is None:
            self._answer(Confirmation.UPLOAD_IMAGE_FAILED)
            return
        with self._lock:
            placement = self._captured_of
        self._answer(Confirmation.OK)
        self._send_data(self.image_buffer)
        with self._lock:
            self._uploaded_of = placement
        self.stats["images_uploaded"] += 1

    def _download_image(self, params: bytes) -> None:
        self._answer(Confirmation.OK)
        self._receiving = (0, bytearray())

    def _finish_download(self) -> None:
        assert self._receiving is not None
        target, data = self._receiving
        self._receiving = None
        if target == 0:
            self.image_buffer = bytes(data).ljust(IMAGE_BYTES, b"\x00")
            with self._lock:
                self._captured_of = 0
        else:
            self.char_buffers[target] = bytes(data).ljust(TEMPLATE_BYTES, b"\x00")

    def _delete(self, params: bytes) -> None:
        page, count = struct.unpack(">HH", params[:4])
        if page + count > self.spec.library_size:
            self._answer(Confirmation.DELETE_FAILED)
            return
        for number in range(page, page + count):
            self.library.pop(number, None)
        self._answer(Confirmation.OK)

    def _empty(self, params: bytes) -> None:
        self.library.clear()
        self._answer(Confirmation.OK)

    def _random(self, params: bytes) -> None:
        self._answer(Confirmation.OK, self._rng.getrandbits(32).to_bytes(4, "big"))

    def _write_notepad(self, params: bytes) -> None:
        page, data = params[0], params[1:]
        if page >= NOTEPAD_PAGES:
            self._answer(Confirmation.BAD_NOTEPAD_PAGE)
        elif len(data) != NOTEPAD_PAGE_SIZE:
            self._answer(Confirmation.PACKET_ERROR)
        else:
            self.notepad[page] = bytes(data)
            self._answer(Confirmation.OK)

    def _read_notepad(self, params: bytes) -> None:
        page = params[0]
        if page >= NOTEPAD_PAGES:
            self._answer(Confirmation.BAD_NOTEPAD_PAGE)
        else:
            self._answer(Confirmation.OK, self.notepad[page])

    def _template_count(self, params: bytes) -> None:
        self._answer(Confirmation.OK, len(self.library).to_bytes(2, "big"))

    def _template_index(self, params: bytes) -> None:
        page = params[0]
        if page > 3:
            self._answer(Confirmation.PACKET_ERROR)
            return
        table = bytearray(32)
        for number in self.library:
            offset = number - page * 256
            if 0 <= offset < 256:
                table[offset // 8] |= 1 << (offset % 8)
        self._answer(Confirmation.OK, bytes(table))


_HANDLERS: dict[int, Callable[[SensorEmulator, bytes], None]] = {
    Instruction.GET_IMAGE: SensorEmulator._get_image,
    Instruction.IMAGE_2_TZ: SensorEmulator._image_to_character_file,
    Instruction.MATCH: SensorEmulator._match,
    Instruction.SEARCH: SensorEmulator._search,
    Instruction.HIGH_SPEED_SEARCH: SensorEmulator._search,
    Instruction.REG_MODEL: SensorEmulator._register_model,
    Instruction.STORE: SensorEmulator._store,
    Instruction.LOAD_CHAR: SensorEmulator._load_char,
    Instruction.UP_CHAR: SensorEmulator._upload_char,
    Instruction.DOWN_CHAR: SensorEmulator._download_char,
    Instruction.UP_IMAGE: SensorEmulator._upload_image,
    Instruction.DOWN_IMAGE: SensorEmulator._download_image,
    Instruction.DELETE_CHAR: SensorEmulator._delete,
    Instruction.EMPTY: SensorEmulator._empty,
    Instruction.SET_SYS_PARA: SensorEmulator._set_system_parameter,
    Instruction.READ_SYS_PARA: SensorEmulator._read_system_parameters,
    Instruction.SET_PASSWORD: SensorEmulator._set_password,
    Instruction.VERIFY_PASSWORD: SensorEmulator._verify_password,
    Instruction.GET_RANDOM: SensorEmulator._random,
    Instruction.SET_ADDRESS: SensorEmulator._set_address,
    Instruction.WRITE_NOTEPAD: SensorEmulator._write_notepad,
    Instruction.READ_NOTEPAD: SensorEmulator._read_notepad,
    Instruction.TEMPLATE_COUNT: SensorEmulator._template_count,
    Instruction.TEMPLATE_INDEX: SensorEmulator._template_index,
}

# parameter bytes each instruction needs after its code; fewer is a malformed packet (0x01)
_PARAM_BYTES = {
    Instruction.IMAGE_2_TZ: 1,
    Instruction.SEARCH: 5,
    Instruction.HIGH_SPEED_SEARCH: 5,
    Instruction.STORE: 3,
    Instruction.LOAD_CHAR: 3,
    Instruction.UP_CHAR: 1,
    Instruction.DOWN_CHAR: 1,
    Instruction.DELETE_CHAR: 4,
    Instruction.SET_SYS_PARA: 2,
    Instruction.SET_PASSWORD: 4,
    Instruction.VERIFY_PASSWORD: 4,
    Instruction.SET_ADDRESS: 4,
    Instruction.WRITE_NOTEPAD: 1,
    Instruction.READ_NOTEPAD: 1,
    Instruction.TEMPLATE_INDEX: 1,
}


# -- command line ---------------------------------------------------------------------------


def _number(text: str) -> int:
    return int(text, 0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kiosk emulate fingerprint",
        description="Emulate a ZhianTec fingerprint sensor on a pseudo-terminal. The first "
        "line printed is its device path; it runs until SIGTERM or Ctrl-C. A citizen puts "
        "the fingers on the glass in turn, each lifted once its image has been uploaded.",
    )
    parser.add_argument("--model", choices=sorted(MODELS), default="R307")
    parser.add_argument("--baudrate", type=int, default=57600, help="the sensor's rate")
    parser.add_argument("--pace", action="store_true", help="send at the baud rate's speed")
    parser.add_argument("--password", type=_number, default=0, help="handshake password")
    parser.add_argument("--address", type=_number, default=DEFAULT_ADDRESS)
    parser.add_argument("--notepad-id", metavar="TEXT", help="write TEXT to notepad page 0")
    parser.add_argument(
        "--fingers", metavar="DIR", default="samples", help='a directory of PNGs, or "samples"'
    )
    parser.add_argument("--hold-s", type=float, default=2.0, help="least time a finger stays")
    parser.add_argument("--gap-s", type=float, default=2.0, help="time between fingers")
    parser.add_argument("--fault", choices=FAULTS, action="append", default=[], help="inject")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="0..1 of frames sent")
    parser.add_argument("--seed", type=int, help="for repeatable random faults")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run an emulator from the command line until SIGTERM or SIGINT; 0 on a clean stop."""
    parser = _parser()
    args = parser.parse_args(argv)
    notepad = {}
    if args.notepad_id is not None:
        text = args.notepad_id.encode()
        if len(text) > NOTEPAD_PAGE_SIZE:
            parser.error(f"--notepad-id is {len(text)} bytes; a notepad page holds 32")
        notepad[0] = text
    try:
        sensor = SensorEmulator(
            model=args.model,
            baudrate=args.baudrate,
            pace=args.pace,
            password=args.password,
            address=args.address,
            notepad=notepad,
            fingers=finger_directory(args.fingers),
            auto_fingers=True,
            hold_s=args.hold_s,
            gap_s=args.gap_s,
            fault_rate=args.fault_rate,
            seed=args.seed,
        )
    except ValueError as error:
        print(f"kiosk emulate fingerprint: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with sensor:
            for fault in args.fault:
                sensor.inject(fault)
            print(sensor.port, flush=True)
            print(
                f"{args.model} at {args.baudrate} baud, {len(sensor.fingers)} fingers",
                file=sys.stderr,
                flush=True,
            )
            while not stop.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
