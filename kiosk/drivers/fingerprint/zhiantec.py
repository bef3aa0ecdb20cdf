"""ZhianTec-protocol fingerprint sensors (R307, R503, AS608, ZFM-20, ...) on a serial port.

Our own client over pyserial and the shared codec (:mod:`.zhiantec_protocol`), not
pyfingerprint: that library writes the image to a file through PIL (biometrics at rest in
clear), has no notepad commands, waits ~24 s on a silent sensor, never resynchronises after
a stray byte and raises bare ``Exception``.

Wiring: the sensor's TX/RX/5V/GND to a USB-UART adapter (or the Pi's UART), named in the
station file by its stable path::

    [modules.fingerprint]
    driver = "zhiantec"
    port = "/dev/serial/by-id/usb-Silicon_Labs_CP2102_USB_to_UART_Bridge_Controller_0001-if00-port0"
    fast_baudrate = 115200       # optional: halves the image transfer

Options (keywords of :class:`ZhiantecReader`):

================  ===========  =============================================================
option            default      meaning
================  ===========  =============================================================
port              (required)   device path, normally /dev/serial/by-id/...
baudrate          57600        the sensor's speed as delivered: 9600 x N, N = 1..12
fast_baudrate     none         if set (e.g. 115200), switch the sensor to it after the
                               handshake (SetSysPara 4) and back to ``baudrate`` at close
address           0xFFFFFFFF   the sensor's module address
password          0            the handshake password (VerifyPassword)
wait_s            10           time for a finger to arrive (and an old one to leave):
                               after it, the capture is ``Outcome.NO_FINGER``
transfer_s        derived      deadline of the image transfer; by default 36,864 bytes
                               x 10 bits / baud in use x 1.5 + 1 s (10.6 s at 57,600,
                               5.8 s at 115,200)
poll_s            0.05         pause between two GetImage polls
read_timeout_s    1.0          how long one answer may take before the sensor counts as
                               not answering (``DeviceUnavailable``)
================  ===========  =============================================================

A speed switch is kept in the sensor's flash on most modules (R307, AS608); some apply it
only at the next power-up. So the driver never assumes: at open it tries the speed it last
used, then ``baudrate``, then ``fast_baudrate``, and after a switch it checks which speed the
sensor really answers at. An orderly close sets the sensor back to ``baudrate`` so that other
tools find it as delivered; after a power cut mid-session it is found at the fast speed.

Identity: the sensors have no readable serial number. The kiosk writes ``REKAM1`` and a
random 16-hex-digit id into a notepad page (page 0, or the first free one) the first time it
sees a unit, and reads it back ever after (``serial_source="notepad"``): the identity travels
with the sensor, not with the USB adapter. A sensor behind a pseudo-terminal (/dev/pts/*) is
an emulator: its info says ``simulated=True``.

Faults: a pulled cable or a silent sensor is ``DeviceUnavailable``; a garbled or truncated
frame or a refusing confirmation code is ``DeviceFault`` (with the code's meaning); a
transfer past ``transfer_s`` or a call past its deadline is ``CaptureTimeout``. After any
fault the next call reopens the port cleanly (drain, flush, reset the decoder, handshake).

A capture: GetImage is polled until a finger is imaged (LIFT_FIRST first while an old one
is still on the glass); the image is then in the sensor's ImageBuffer and the finger is no
longer needed, so DETECTED and LIFT come at once, before the 7 s transfer. The image is
uploaded first, untouched, then converted (Img2Tz) and its template uploaded (UpChar).

Tests run this driver against the sensor emulator on a pseudo-terminal::

    sensor = SensorEmulator(auto_fingers=True)
    with sensor, ZhiantecReader(port=sensor.port, wait_s=5) as reader:
        capture = reader.capture(print).result()  # phases printed on the reader's thread
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import serial

from kiosk.drivers.base import (
    FingerPhase,
    FingerprintCapture,
    Health,
    HealthStatus,
    ModuleBase,
    ModuleInfo,
    ModuleKind,
    Outcome,
    positive_seconds,
)
from kiosk.drivers.fingerprint.zhiantec_protocol import (
    BAUD_UNIT,
    DEFAULT_ADDRESS,
    DEFAULT_PASSWORD,
    FRAME_OVERHEAD,
    IMAGE_BYTES,
    NOTEPAD_PAGE_SIZE,
    NOTEPAD_PAGES,
    Confirmation,
    FrameDecoder,
    FrameError,
    Instruction,
    Packet,
    PacketKind,
    command,
    describe,
    packet_size,
    unpack_image,
)
from kiosk.drivers.worker import Deadline, Job
from kiosk.errors import (
    CaptureCancelled,
    CaptureTimeout,
    DeviceFault,
    DeviceUnavailable,
    KioskError,
)

try:
    import fcntl
    import termios
except ImportError:  # not on Linux: no lock to hand over between two handles
    fcntl = termios = None  # type: ignore[assignment]

# what pyserial lets through from the OS when the line goes away (tcflush on a dead pty)
_LINE_ERRORS: tuple[type[Exception], ...] = (serial.SerialException, OSError)
if termios is not None:
    _LINE_ERRORS += (termios.error,)

log = logging.getLogger(__name__)

READ_SLICE_S = 0.05  # one blocking read at most: cancels and deadlines are checked between
QUIET_S = 0.1  # silence that ends a drain: the sensor has finished what it was sending
SWITCH_SETTLE_S = 0.05  # after SetSysPara's answer, before talking at the new speed
IDENTIFY_S = 4.5  # within ModuleBase.identify's 5 s deadline
SELF_TEST_S = 9.5  # within ModuleBase.self_test's 10 s deadline
RESTORE_S = 1.0  # an orderly close spends at most this on setting the speed back
CLOSE_WAIT_S = 0.5  # close() waits this long for the device's thread to leave the port
MAX_TEMPLATE_BYTES = 4096  # UpChar sends 512 on every sensor known; refuse a runaway stream
TEMPLATE_WIRE_BYTES = 1024  # a 512-byte template in 32-byte packets, with its framing, and more

NOTEPAD_MARKER = b"REKAM1"
NOTEPAD_ID_DIGITS = 16
LIBRARY_MODELS = {1000: "R307", 300: "AS608", 200: "R503", 162: "ZFM-20"}  # a likely match


def uart_seconds(size: int, baudrate: int) -> float:
    """Time ``size`` bytes take on the wire at ``baudrate``: 10 bits a byte (8N1)."""
    return size * 10 / baudrate


def transfer_seconds(baudrate: int) -> float:
    """The default image transfer deadline at ``baudrate``: 1.5 x the raw UART time + 1 s."""
    return uart_seconds(IMAGE_BYTES, baudrate) * 1.5 + 1.0


class _Internal(KioskError):
    """Errors that steer the driver's own retries; callers get the public parent."""

    def public(self) -> KioskError:
        parent = next(cls for cls in type(self).__mro__[1:] if not cls.__name__.startswith("_"))
        return parent(str(self))


class _NoAnswer(_Internal, DeviceUnavailable):
    """Not a byte came back within the time allowed."""


class _Incomplete(_Internal, DeviceFault):
    """Bytes came back, but no whole frame within the time allowed."""


class _Refused(_Internal, DeviceFault):
    """The sensor answered the handshake, and said no."""


@dataclass(frozen=True)
class SystemParameters:
    """What ReadSysPara tells: 16 bytes of words, big-endian."""

    status: int
    system_id: int
    library_size: int
    security_level: int
    address: int
    packet_code: int
    baud_factor: int

    @classmethod
    def parse(cls, data: bytes) -> SystemParameters:
        """From the 16 bytes after the confirmation code; DeviceFault if they are unusable."""
        if len(data) < 16:
            raise DeviceFault(f"ReadSysPara: {len(data)} bytes of parameters, expected 16")
        word = [int.from_bytes(data[i : i + 2], "big") for i in range(0, 16, 2)]
        params = cls(
            status=word[0],
            system_id=word[1],
            library_size=word[2],
            security_level=word[3],
            address=int.from_bytes(data[8:12], "big"),
            packet_code=word[6],
            baud_factor=word[7],
        )
        if not 0 <= params.packet_code <= 3:
            raise DeviceFault(f"ReadSysPara: packet size code {params.packet_code}, expected 0..3")
        return params

    @property
    def packet_bytes(self) -> int:
        return packet_size(self.packet_code)

    def problems(self, address: int) -> list[str]:
        """What makes no sense for a working sensor, for the self-test."""
        found = []
        if self.library_size == 0:
            found.append("finger library size 0")
        if not 1 <= self.security_level <= 5:
            found.append(f"security level {self.security_level} (expected 1..5)")
        if not 1 <= self.baud_factor <= 12:
            found.append(f"baud factor {self.baud_factor} (expected 1..12)")
        if self.address != address:
            found.append(f"address 0x{self.address:08X} (we talk to 0x{address:08X})")
        return found


def _baud_option(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a whole number of baud, got {value!r}")
    if value % BAUD_UNIT or not 1 <= value // BAUD_UNIT <= 12:
        raise ValueError(
            f"{name} must be 9600 x N with N = 1..12 (e.g. 57600, 115200), got {value}"
        )
    return value


def _word_option(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a whole number (e.g. 0xFFFFFFFF), got {value!r}")
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{name} must fit in 32 bits (0 to 0xFFFFFFFF), got {value}")
    return value


def usb_description(port: str) -> str:
    """The USB adapter behind ``port`` ("Silicon Labs CP2102 (10c4:ea60)"), or ""."""
    try:
        from serial.tools import list_ports

        device = os.path.realpath(port)
        for found in list_ports.comports():
            if os.path.realpath(found.device) != device or found.vid is None:
                continue
            name = " ".join(part for part in (found.manufacturer, found.product) if part)
            return f"{name or 'USB serial'} ({found.vid:04x}:{found.pid or 0:04x})"
    except Exception as exc:  # only a description: never a reason to fail
        log.debug("no USB description for %s: %s", port, exc)
    return ""


class ZhiantecReader(ModuleBase):
    """A ZhianTec-protocol fingerprint sensor: 256 x 288 images at 500 dpi, with the
    sensor's own 512-byte template. See the module docstring for options and faults.

    ``capture`` runs on the reader's thread; ``close`` from any thread ends a pending
    capture (CaptureCancelled) within about half a second.
    """

    kind: ClassVar[ModuleKind] = ModuleKind.FINGERPRINT

    def __init__(
        self,
        *,
        port: str,
        baudrate: int = 57600,
        fast_baudrate: int | None = None,
        address: int = DEFAULT_ADDRESS,
        password: int = DEFAULT_PASSWORD,
        wait_s: float = 10.0,
        transfer_s: float | None = None,
        poll_s: float = 0.05,
        read_timeout_s: float = 1.0,
    ) -> None:
        super().__init__()
        if not isinstance(port, str) or not port.strip():
            raise ValueError(f"port must name the serial device, got {port!r}")
        self.port = port
        self.baudrate = _baud_option("baudrate", baudrate)
        fast = None if fast_baudrate is None else _baud_option("fast_baudrate", fast_baudrate)
        self.fast_baudrate = None if fast == self.baudrate else fast
        self.address = _word_option("address", address)
        self.password = _word_option("password", password)
        self.wait_s = positive_seconds("wait_s", wait_s)
        self.transfer_s = None if transfer_s is None else positive_seconds("transfer_s", transfer_s)
        self.poll_s = positive_seconds("poll_s", poll_s)
        self.read_timeout_s = positive_seconds("read_timeout_s", read_timeout_s)
        self.simulated = os.path.realpath(port).startswith("/dev/pts/")

        self._io = threading.RLock()  # held for one read or write on the port
        self._closing = threading.Event()
        self._port: serial.Serial | None = None
        self._decoder = FrameDecoder()
        self._pending: collections.deque[Packet] = collections.deque()
        self._baud = self.baudrate  # the speed the sensor last answered at
        self._params: SystemParameters | None = None
        self._stale = True  # the link needs a (re)handshake before the next command
        self._uploading = False  # data packets may be on their way: drain before talking
        self._busy = False  # a device call is running on the reader's thread
        self._reopens = 0
        self._usb = ""
        self._info = ModuleInfo(
            kind=self.kind,
            driver="zhiantec",
            model="ZhianTec-protocol sensor",
            serial="",
            simulated=self.simulated,
        )

    # -- contract ---------------------------------------------------------------

    def info(self) -> ModuleInfo:
        return self._info

    def capture(
        self, on_phase: Callable[[FingerPhase], None] | None = None
    ) -> Job[FingerprintCapture]:
        """One impression in phases (LIFT_FIRST if a finger is already on the glass,
        WAITING, DETECTED, LIFT), each reported to ``on_phase`` on the reader's thread.

        The job's value is CAPTURED (image and template; template b"" when the sensor
        finds the image too poor to convert) or NO_FINGER after ``wait_s``. It raises
        DeviceUnavailable, DeviceFault, CaptureTimeout (transfer past ``transfer_s``)
        or CaptureCancelled.
        """
        phase = on_phase or (lambda _phase: None)
        transfer = self._transfer_limit()
        template = uart_seconds(TEMPLATE_WIRE_BYTES, self._baud)
        deadline = self._link_budget() + self.wait_s + transfer + template
        deadline += 5 * self.read_timeout_s + 1.0  # GetImage, UpImage, Img2Tz, UpChar answers
        return self._run("capture", lambda job: self._capture(job, phase, transfer), deadline)

    @property
    def open_s(self) -> float:
        """The longest ``open()`` takes (drain, two speeds, the switch, the identity)."""
        return QUIET_S + 4 * self.read_timeout_s + self._switch_budget() + IDENTIFY_S

    def close(self) -> None:
        """Idempotent, from any thread. When idle, first sets the sensor back to
        ``baudrate`` (at most RESTORE_S); a pending capture ends with CaptureCancelled."""
        with self._lock:
            restore = (
                self._opened and not self._busy and not self._stale and self._baud != self.baudrate
            )
        if restore:
            try:
                self._run("restore baudrate", self._restore_baudrate, RESTORE_S).result()
            except KioskError as exc:  # best effort: the next open tries both speeds
                log.info("fingerprint sensor left at %d baud: %s", self._baud, exc)
        super().close()

    # -- ModuleBase hooks ---------------------------------------------------------

    def _open(self) -> None:
        self._closing.clear()
        clock = Deadline(f"open {self.port}", self.open_s, self._closing)
        self._usb = usb_description(self.port)
        try:
            self._connect(clock, drain=True)
            assert self._params is not None  # read by _connect
            self._info = self._read_identity(clock, self._params)
        except BaseException as exc:
            self._stale = True
            self._close_port()
            if isinstance(exc, _Internal):
                raise exc.public() from None
            raise

    def _close(self) -> None:
        """From any thread: wake a blocked read, wait briefly for the reader's thread to
        leave the port, then close it."""
        self._closing.set()
        port = self._port
        if port is not None:
            with contextlib.suppress(Exception):
                port.cancel_read()
                port.cancel_write()
        got = self._io.acquire(timeout=CLOSE_WAIT_S)
        try:
            self._close_port()
        finally:
            if got:
                self._io.release()
        self._stale = True

    def _identify(self) -> ModuleInfo:
        clock = Deadline("identify", IDENTIFY_S, self._closing)
        with self._device_call():
            self._link(clock)
            self._info = self._read_identity(clock, self._read_parameters(clock))
        return self._info

    def _self_test(self) -> str:
        clock = Deadline("self-test", SELF_TEST_S, self._closing)
        with self._device_call():
            self._link(clock)
            problem = self._probe(clock)
            if problem:
                raise DeviceUnavailable(f"handshake at {self._baud} baud: {problem}")
            params = self._read_parameters(clock)
            problems = params.problems(self.address)
            if problems:
                raise DeviceFault(f"system parameters make no sense: {'; '.join(problems)}")
            answer = self._confirmed(
                self._ask(clock, Instruction.TEMPLATE_COUNT, answer=3), "TemplateCount", 3
            )
            stored = int.from_bytes(answer[1:3], "big")
            started = time.monotonic()
            finger = self._get_image(clock)
            took_ms = (time.monotonic() - started) * 1000
        seen = "a finger on the glass" if finger else "no finger"
        return (
            f"handshake at {self._baud} baud; library {params.library_size} "
            f"({stored} templates stored); packets of {params.packet_bytes} bytes; "
            f"GetImage answered in {took_ms:.0f} ms ({seen})"
        )

    def _health(self) -> Health:
        detail = f"baud {self._baud}"
        if self._reopens:
            detail += f"; port reopened {self._reopens} times"
        return Health(HealthStatus.OK, detail)

    def _translate(self, exc: Exception) -> KioskError:
        text = f"fingerprint sensor on {self.port}: {type(exc).__name__}: {exc}"
        if isinstance(exc, _LINE_ERRORS):  # also a write timeout: the line takes no bytes
            return DeviceUnavailable(text)
        if isinstance(exc, TimeoutError):
            return CaptureTimeout(text)
        return DeviceFault(text)  # FrameError, ValueError from bad image data, ...

    # -- capture ------------------------------------------------------------------

    def _capture(
        self, job: Job, phase: Callable[[FingerPhase], None], transfer_s: float
    ) -> FingerprintCapture:
        with self._device_call():
            self._link(job)
            until = time.monotonic() + self.wait_s
            finger = self._get_image(job)
            if finger:
                phase(FingerPhase.LIFT_FIRST)
                while finger:
                    if time.monotonic() >= until:
                        return FingerprintCapture(outcome=Outcome.NO_FINGER, module=self.info())
                    job.sleep(self.poll_s)
                    finger = self._get_image(job)
            phase(FingerPhase.WAITING)
            while not finger:
                if time.monotonic() >= until:
                    return FingerprintCapture(outcome=Outcome.NO_FINGER, module=self.info())
                job.sleep(self.poll_s)
                finger = self._get_image(job)
            # The image is in the sensor's ImageBuffer now: the finger is no longer needed.
            phase(FingerPhase.DETECTED)
            phase(FingerPhase.LIFT)
            # The image first, untouched, then the template (Img2Tz works on the same buffer).
            image = self._upload_image(job, transfer_s)
            template = self._template(job)
        return FingerprintCapture(
            outcome=Outcome.CAPTURED,
            module=self.info(),
            image=image,
            template=template,
            dpi=500,
        )

    def _get_image(self, clock: Deadline) -> bool:
        """One GetImage: True if a finger was imaged (now in the ImageBuffer)."""
        code = self._ask(clock, Instruction.GET_IMAGE, answer=1)[0]
        if code == Confirmation.OK:
            return True
        if code in (Confirmation.NO_FINGER, Confirmation.ENROLL_FAILED):
            return False  # ENROLL_FAILED: a finger arriving or leaving blurred the image
        raise DeviceFault(f"GetImage: the sensor answered 0x{code:02x} ({describe(code)})")

    def _upload_image(self, job: Job, transfer_s: float) -> np.ndarray:
        started = time.monotonic()
        self._uploading = True  # from the command on: the data may come whatever we read
        self._confirmed(self._ask(job, Instruction.UP_IMAGE, answer=1), "UpImage")
        data = self._receive_data(job, started + transfer_s, IMAGE_BYTES, "the image", transfer_s)
        if len(data) != IMAGE_BYTES:
            raise DeviceFault(f"UpImage: {len(data)} bytes of image, expected {IMAGE_BYTES}")
        return unpack_image(data)

    def _template(self, job: Job) -> bytes:
        """The sensor's template of the image in its buffer; b"" if it is too poor."""
        code = self._ask(job, Instruction.IMAGE_2_TZ, 1, answer=1)[0]
        if code in (Confirmation.DISORDERED_IMAGE, Confirmation.SMALL_IMAGE):
            return b""
        if code != Confirmation.OK:
            raise DeviceFault(f"Img2Tz: the sensor answered 0x{code:02x} ({describe(code)})")
        self._uploading = True
        self._confirmed(self._ask(job, Instruction.UP_CHAR, 1, answer=1), "UpChar")
        wire_s = uart_seconds(TEMPLATE_WIRE_BYTES, self._baud)
        limit = time.monotonic() + 2 * self.read_timeout_s + wire_s
        data = self._receive_data(job, limit, MAX_TEMPLATE_BYTES, "the template", None)
        if not data:
            raise DeviceFault("UpChar: an empty template")
        return data

    # -- identity -----------------------------------------------------------------

    def _read_identity(self, clock: Deadline, params: SystemParameters) -> ModuleInfo:
        unit_id, source = self._notepad_id(clock)
        if not unit_id:
            unit_id, source = "", "none"
        likely = LIBRARY_MODELS.get(params.library_size)
        model = f"ZhianTec-protocol sensor, library {params.library_size}"
        if likely:
            model += f" ({likely}-like)"
        firmware = f"system id 0x{params.system_id:04x}"
        if self._usb:
            firmware += f"; USB adapter {self._usb}"
        return ModuleInfo(
            kind=self.kind,
            driver="zhiantec",
            model=model,
            serial=unit_id,
            firmware=firmware,
            simulated=self.simulated,
            serial_source=source,
        )

    def _notepad_id(self, clock: Deadline) -> tuple[str, str]:
        """Our id from a notepad page, written to the first free page on first sight."""
        free = None
        for page in range(NOTEPAD_PAGES):
            content = self._read_notepad(clock, page)
            unit_id = _parse_notepad(content)
            if unit_id:
                return unit_id, "notepad"
            if free is None and content in (bytes(NOTEPAD_PAGE_SIZE), b"\xff" * NOTEPAD_PAGE_SIZE):
                free = page
            if page == 0 and free == 0:
                break  # the usual case: page 0 is ours to take
        if free is None:
            log.warning("fingerprint sensor: no free notepad page for the kiosk's id")
            return "", ""
        unit_id = secrets.token_hex(NOTEPAD_ID_DIGITS // 2).upper()
        page_data = (NOTEPAD_MARKER + unit_id.encode()).ljust(NOTEPAD_PAGE_SIZE, b"\0")
        answer = self._ask(clock, Instruction.WRITE_NOTEPAD, free, page_data, answer=1)
        self._confirmed(answer, "WriteNotepad")
        if _parse_notepad(self._read_notepad(clock, free)) != unit_id:
            log.warning("fingerprint sensor: the notepad id did not stick (page %d)", free)
            return "", ""
        log.info("fingerprint sensor: new unit, id %s written to notepad page %d", unit_id, free)
        return unit_id, "notepad"

    def _read_notepad(self, clock: Deadline, page: int) -> bytes:
        answer = self._ask(clock, Instruction.READ_NOTEPAD, page, answer=1 + NOTEPAD_PAGE_SIZE)
        return self._confirmed(answer, "ReadNotepad", 1 + NOTEPAD_PAGE_SIZE)[1:]

    def _read_parameters(self, clock: Deadline) -> SystemParameters:
        answer = self._ask(clock, Instruction.READ_SYS_PARA, answer=17)
        answer = self._confirmed(answer, "ReadSysPara", 17)
        self._params = SystemParameters.parse(answer[1:17])
        return self._params

    # -- the link: open, handshake, speed -------------------------------------------

    def _connect(self, clock: Deadline, *, drain: bool) -> None:
        """(Re)open the port, drain what the sensor may still send (the rest of an
        interrupted image; a previous run's), find its speed, shake hands, read its
        parameters and switch to ``fast_baudrate`` if asked."""
        self._reopen_port()
        if drain or self._uploading:
            self._drain(clock, self._transfer_limit())
        self._uploading = False
        tried: list[str] = []
        for baud in dict.fromkeys(b for b in (self._baud, self.baudrate, self.fast_baudrate) if b):
            self._set_speed(baud)
            problem = self._probe(clock)
            if not problem:
                break
            tried.append(f"{baud} ({problem})")
        else:
            raise DeviceUnavailable(
                f"no answer from the fingerprint sensor on {self.port} at "
                f"{'; '.join(tried)} baud (address 0x{self.address:08X}): "
                "check its power, wiring, baudrate and address"
            )
        self._params = None
        self._read_parameters(clock)
        if self.fast_baudrate and self._baud != self.fast_baudrate:
            self._switch_speed(clock, self.fast_baudrate)
        self._stale = False

    def _link(self, clock: Deadline) -> None:
        """Make sure the link is fit to use: after a fault, reconnect first."""
        if self._stale or self._port is None:
            self._reopens += 1
            log.info("fingerprint sensor: reopening %s after a fault", self.port)
            self._connect(clock, drain=False)

    def _probe(self, clock: Deadline) -> str:
        """VerifyPassword at the port's speed: "" when the sensor accepts, else what came
        back instead (a wrong speed gives silence or garbage); _Refused if it says no."""
        self._reset_input()
        try:
            answer = self._ask(
                clock,
                Instruction.VERIFY_PASSWORD,
                self.password.to_bytes(4, "big"),
                answer=1,
            )
        except (DeviceUnavailable, DeviceFault) as exc:
            if not isinstance(exc, _NoAnswer | DeviceFault):
                raise  # the port itself failed
            self._reset_input()
            return str(exc)
        code = answer[0]
        if code == Confirmation.OK:
            return ""
        if code == Confirmation.WRONG_PASSWORD:
            raise _Refused(
                f"the fingerprint sensor on {self.port} refused the password "
                f"(0x{code:02x} {describe(code)}): set password in [modules.fingerprint]"
            )
        raise _Refused(f"handshake: the sensor answered 0x{code:02x} ({describe(code)})")

    def _switch_speed(self, clock: Deadline, target: int) -> None:
        """SetSysPara 4 to ``target``; the answer comes at the old speed. Then find the
        speed the sensor really talks at (some apply it only at the next power-up)."""
        old = self._baud
        code = self._ask(clock, Instruction.SET_SYS_PARA, 4, target // BAUD_UNIT, answer=1)[0]
        if code != Confirmation.OK:
            log.warning(
                "fingerprint sensor refused %d baud (0x%02x %s): staying at %d",
                target,
                code,
                describe(code),
                old,
            )
            return
        clock.sleep(SWITCH_SETTLE_S)
        for baud in (target, old):
            self._set_speed(baud)
            if not self._probe(clock):
                if baud != target:
                    log.warning("fingerprint sensor stays at %d baud until its next power-up", old)
                else:
                    log.info("fingerprint sensor switched to %d baud", target)
                return
        raise DeviceUnavailable(
            f"the fingerprint sensor stopped answering after the switch to {target} baud"
        )

    def _restore_baudrate(self, job: Job) -> None:
        with self._device_call():
            if self._stale or self._port is None:
                return
            self._switch_speed(job, self.baudrate)

    def _switch_budget(self) -> float:
        return 3 * self.read_timeout_s + SWITCH_SETTLE_S if self.fast_baudrate else 0.0

    def _link_budget(self) -> float:
        """Time a call may need to reconnect first (drain, two speeds, switch)."""
        if not self._stale:
            return 0.0
        drain = self._transfer_limit() if self._uploading else 0.0
        return drain + 4 * self.read_timeout_s + self._switch_budget()

    def _transfer_limit(self) -> float:
        return self.transfer_s if self.transfer_s is not None else transfer_seconds(self._baud)

    @contextlib.contextmanager
    def _device_call(self) -> Iterator[None]:
        """Around every call on the reader's thread: any fault leaves the link stale, and
        leaves as one of our public errors."""
        self._busy = True
        try:
            yield
        except _Internal as exc:
            self._stale = True
            raise exc.public() from None
        except BaseException:
            self._stale = True
            raise
        finally:
            self._busy = False

    # -- the port -----------------------------------------------------------------

    def _reopen_port(self) -> None:
        """A fresh handle on the port, opened before the old one is closed so the line
        never hangs up (no EOF on a pty, no DTR drop on a USB adapter)."""
        old = self._port
        if old is not None and fcntl is not None:
            with contextlib.suppress(Exception):
                fcntl.flock(old.fileno(), fcntl.LOCK_UN)  # hand the exclusive lock over
        new = None
        try:
            new = serial.Serial(
                port=self.port,
                baudrate=self._baud,
                timeout=READ_SLICE_S,
                write_timeout=self.read_timeout_s,
                exclusive=True,
            )
        finally:
            with self._io:
                self._port = new
                self._reset_input()
            if old is not None:
                with contextlib.suppress(Exception):
                    old.close()

    def _close_port(self) -> None:
        with self._io:
            port, self._port = self._port, None
            self._pending.clear()
            self._decoder.reset()
        if port is not None:
            with contextlib.suppress(Exception):
                port.close()

    def _set_speed(self, baud: int) -> None:
        with self._io:
            port = self._live_port()
            if port.baudrate != baud:
                port.baudrate = baud
            self._baud = baud
            self._reset_input()

    def _reset_input(self) -> None:
        """Forget whatever came before: the port's input, the decoder, queued packets."""
        with self._io:
            if self._port is not None:
                self._port.reset_input_buffer()
            self._decoder.reset()
            self._pending.clear()

    def _live_port(self) -> serial.Serial:
        if self._closing.is_set():
            raise CaptureCancelled("the fingerprint reader was closed")
        if self._port is None:
            raise DeviceUnavailable(f"the port {self.port} is not open")
        return self._port

    def _drain(self, clock: Deadline, budget_s: float) -> None:
        """Read and drop what the sensor still sends (the rest of an interrupted image)
        until it has been quiet for QUIET_S, or the budget is spent."""
        until = time.monotonic() + min(budget_s, clock.remaining())
        quiet_since = time.monotonic()
        while time.monotonic() < until:
            clock.check()
            with self._io:
                data = self._live_port().read(4096)
            now = time.monotonic()
            if data:
                quiet_since = now
            elif now - quiet_since >= QUIET_S:
                break
        self._reset_input()

    def _ask(
        self, clock: Deadline, instruction: Instruction, *params: bytes | int, answer: int
    ) -> bytes:
        """Send one command, return the acknowledgement's payload (confirmation code
        first). ``answer`` is the payload length expected, to read a frame at once."""
        clock.check()
        frame = command(instruction, *params, address=self.address).encode()
        with self._io:
            port = self._live_port()
            self._reset_input()  # a late frame from before must not pass for this answer
            port.write(frame)
        reply = self._next_packet(clock, self.read_timeout_s, FRAME_OVERHEAD + answer)
        if reply.kind != PacketKind.ACK:
            raise DeviceFault(
                f"{instruction.name}: expected an acknowledgement, got a "
                f"{PacketKind(reply.kind).name} packet"
            )
        if not reply.payload:
            raise DeviceFault(f"{instruction.name}: an empty acknowledgement")
        return reply.payload

    def _confirmed(self, payload: bytes, what: str, length: int = 1) -> bytes:
        """``payload`` if its confirmation code is OK and it is long enough; else DeviceFault."""
        code = payload[0]
        if code != Confirmation.OK:
            raise DeviceFault(f"{what}: the sensor answered 0x{code:02x} ({describe(code)})")
        if len(payload) < length:
            raise DeviceFault(f"{what}: an answer of {len(payload)} bytes, expected {length}")
        return payload

    def _receive_data(
        self, job: Job, until: float, limit: int, what: str, transfer_s: float | None
    ) -> bytes:
        """The DATA packets up to END_DATA, by ``until`` (CaptureTimeout past it)."""
        chunks: list[bytes] = []
        received = 0
        frame = FRAME_OVERHEAD + (self._params.packet_bytes if self._params else 128)
        while True:
            left = until - time.monotonic()
            try:
                if left <= 0:
                    raise _NoAnswer("time is up")
                packet = self._next_packet(job, min(self.read_timeout_s, left), frame)
            except (_NoAnswer, _Incomplete) as exc:
                if time.monotonic() < until:
                    stopped = f"the sensor stopped sending {what} after {received} bytes"
                    raise type(exc)(stopped) from exc
                if transfer_s is None:
                    raise CaptureTimeout(f"{what} not received in time") from exc
                raise CaptureTimeout(
                    f"{what} took longer than transfer_s = {transfer_s:g} s "
                    f"({received} of {limit} bytes)"
                ) from exc
            if packet.kind not in (PacketKind.DATA, PacketKind.END_DATA):
                raise DeviceFault(f"an acknowledgement in the middle of {what}")
            received += len(packet.payload)
            if received > limit:
                raise DeviceFault(f"more than {limit} bytes of {what}")
            chunks.append(packet.payload)
            if packet.kind == PacketKind.END_DATA:
                self._uploading = False
                return b"".join(chunks)

    def _next_packet(self, clock: Deadline, limit_s: float, frame_bytes: int) -> Packet:
        """The next whole frame within ``limit_s``: _NoAnswer if not a byte came,
        _Incomplete if some did, DeviceFault for a broken frame or a stranger's address."""
        if not self._pending:
            until = time.monotonic() + limit_s
            heard = False
            while not self._pending:
                clock.check()
                if time.monotonic() >= until:
                    if heard:
                        raise _Incomplete(
                            f"an incomplete answer within {limit_s:g} s "
                            f"({self._decoder.buffered} bytes of a frame)"
                        )
                    raise _NoAnswer(
                        f"the fingerprint sensor on {self.port} did not answer within {limit_s:g} s"
                    )
                with self._io:
                    data = self._live_port().read(max(1, frame_bytes - self._decoder.buffered))
                if not data:
                    continue
                heard = True
                for item in self._decoder.feed(data):
                    if isinstance(item, FrameError):
                        raise DeviceFault(f"a garbled frame from the fingerprint sensor: {item}")
                    self._pending.append(item)
        packet = self._pending.popleft()
        if packet.address != self.address:
            raise DeviceFault(
                f"an answer from address 0x{packet.address:08X}, expected 0x{self.address:08X}"
            )
        return packet


def _parse_notepad(page: bytes) -> str:
    """The kiosk's id in a notepad page, or "" when the page holds something else."""
    if not page.startswith(NOTEPAD_MARKER):
        return ""
    digits = page[len(NOTEPAD_MARKER) : len(NOTEPAD_MARKER) + NOTEPAD_ID_DIGITS]
    text = digits.decode("latin-1")
    if len(text) != NOTEPAD_ID_DIGITS or not all(c in string.hexdigits for c in text):
        return ""
    return text.upper()
