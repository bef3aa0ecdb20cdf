"""The ZhianTec serial protocol (R307, R503, AS608, ZFM-20): frames, codes, image packing.

Pure Python, no I/O and no threads: the driver and the emulator both build on it.

A frame on the wire (all fields big-endian)::

    EF 01 | address (4) | identifier (1) | length (2) | payload | checksum (2)

``length`` counts the payload and the checksum (``len(payload) + 2``); the
checksum is the low 16 bits of the sum of the identifier, both length bytes and
every payload byte. A command's payload starts with its instruction code; an
acknowledgement's payload starts with a confirmation code.

Encode a command and decode the answer incrementally::

    frame = command(Instruction.GET_IMAGE).encode()
    decoder = FrameDecoder()
    for item in decoder.feed(serial_port.read(64)):
        if isinstance(item, FrameError):
            ...  # a broken frame: count it, the decoder has already resynchronised
        elif item.kind == PacketKind.ACK and item.payload[0] == Confirmation.NO_FINGER:
            ...

Sources for the codes: the R307/ZFM user manuals as transcribed by pyfingerprint
(``pyfingerprint.py``), Adafruit-Fingerprint-Sensor-Library (``Adafruit_Fingerprint.h``)
and the R503 manual's extended table (0x1F and above).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

HEADER = 0xEF01
HEADER_BYTES = HEADER.to_bytes(2, "big")
DEFAULT_ADDRESS = 0xFFFFFFFF
DEFAULT_PASSWORD = 0x00000000

MAX_PAYLOAD = 256  # the largest data packet (packet size code 3)
MAX_LENGTH = MAX_PAYLOAD + 2  # the length field counts the checksum too
FRAME_OVERHEAD = 11  # header 2 + address 4 + identifier 1 + length 2 + checksum 2
MAX_FRAME = FRAME_OVERHEAD + MAX_PAYLOAD

NOTEPAD_PAGES = 16
NOTEPAD_PAGE_SIZE = 32
IMAGE_SIZE = (256, 288)  # width, height of an uploaded image
IMAGE_BYTES = IMAGE_SIZE[0] * IMAGE_SIZE[1] // 2  # 4 bits a pixel: 36,864 bytes
PACKET_SIZES = (32, 64, 128, 256)  # data payload bytes by packet size code (system parameter 6)
DEFAULT_PACKET_SIZE_CODE = 2  # 128 bytes, as delivered
BAUD_UNIT = 9600  # the baud rate is stored as a multiple N of 9600 (N = 1..12)
TEMPLATE_BYTES = 512  # a character file or template as UpChar sends it


class PacketKind(enum.IntEnum):
    """The packet identifier byte."""

    COMMAND = 0x01
    DATA = 0x02
    ACK = 0x07
    END_DATA = 0x08


class Instruction(enum.IntEnum):
    """Instruction codes (first payload byte of a command). Aliases: pyfingerprint's names."""

    GET_IMAGE = 0x01  # GenImg; pyfingerprint readImage
    IMAGE_2_TZ = 0x02  # Img2Tz / GenChar; convertImage
    MATCH = 0x03  # compareCharacteristics
    SEARCH = 0x04  # searchTemplate
    REG_MODEL = 0x05  # createTemplate
    STORE = 0x06  # storeTemplate
    LOAD_CHAR = 0x07  # loadTemplate
    UP_CHAR = 0x08  # sensor to host; downloadCharacteristics
    DOWN_CHAR = 0x09  # host to sensor; uploadCharacteristics
    UP_IMAGE = 0x0A  # sensor to host; downloadImage
    DOWN_IMAGE = 0x0B  # host to sensor
    DELETE_CHAR = 0x0C  # deleteTemplate
    EMPTY = 0x0D  # clearDatabase
    SET_SYS_PARA = 0x0E  # setSystemParameter
    READ_SYS_PARA = 0x0F  # getSystemParameters
    SET_PASSWORD = 0x12
    VERIFY_PASSWORD = 0x13
    GET_RANDOM = 0x14  # generateRandomNumber
    SET_ADDRESS = 0x15
    WRITE_NOTEPAD = 0x18
    READ_NOTEPAD = 0x19
    HIGH_SPEED_SEARCH = 0x1B
    TEMPLATE_COUNT = 0x1D
    TEMPLATE_INDEX = 0x1F  # ReadIndexTable


class Confirmation(enum.IntEnum):
    """Confirmation codes (first payload byte of an acknowledgement)."""

    OK = 0x00
    PACKET_ERROR = 0x01
    NO_FINGER = 0x02
    ENROLL_FAILED = 0x03
    DISORDERED_IMAGE = 0x06
    SMALL_IMAGE = 0x07
    NOT_MATCHING = 0x08
    NOT_FOUND = 0x09
    ENROLL_MISMATCH = 0x0A
    BAD_LOCATION = 0x0B
    READ_TEMPLATE_FAILED = 0x0C
    UPLOAD_FAILED = 0x0D
    RECEIVE_FAILED = 0x0E
    UPLOAD_IMAGE_FAILED = 0x0F
    DELETE_FAILED = 0x10
    CLEAR_FAILED = 0x11
    WRONG_PASSWORD = 0x13
    INVALID_IMAGE = 0x15
    FLASH_ERROR = 0x18
    NO_DEFINITION = 0x19
    INVALID_REGISTER = 0x1A
    BAD_CONFIGURATION = 0x1B
    BAD_NOTEPAD_PAGE = 0x1C
    COMMUNICATION = 0x1D
    LIBRARY_FULL = 0x1F  # R503 and later
    ADDRESS_WRONG = 0x20
    PASSWORD_REQUIRED = 0x21
    TEMPLATE_EMPTY = 0x22
    LIBRARY_EMPTY = 0x24
    TIMEOUT = 0x26
    ALREADY_EXISTS = 0x27
    SENSOR_FAILURE = 0x29


_KINDS = frozenset(int(kind) for kind in PacketKind)

_MEANINGS = {
    Confirmation.OK: "OK",
    Confirmation.PACKET_ERROR: "error receiving the packet",
    Confirmation.NO_FINGER: "no finger on the sensor",
    Confirmation.ENROLL_FAILED: "failed to capture the finger image",
    Confirmation.DISORDERED_IMAGE: "image too disordered to extract features",
    Confirmation.SMALL_IMAGE: "too few feature points or image too small",
    Confirmation.NOT_MATCHING: "the fingers do not match",
    Confirmation.NOT_FOUND: "no matching finger found in the library",
    Confirmation.ENROLL_MISMATCH: "failed to combine the character files (different fingers)",
    Confirmation.BAD_LOCATION: "page id beyond the finger library",
    Confirmation.READ_TEMPLATE_FAILED: "error reading the template, or the template is invalid",
    Confirmation.UPLOAD_FAILED: "error uploading the template",
    Confirmation.RECEIVE_FAILED: "cannot receive the following data packets",
    Confirmation.UPLOAD_IMAGE_FAILED: "error uploading the image",
    Confirmation.DELETE_FAILED: "failed to delete the template",
    Confirmation.CLEAR_FAILED: "failed to clear the finger library",
    Confirmation.WRONG_PASSWORD: "wrong password",
    Confirmation.INVALID_IMAGE: "no valid primary image in the image buffer",
    Confirmation.FLASH_ERROR: "error writing flash",
    Confirmation.NO_DEFINITION: "undefined error",
    Confirmation.INVALID_REGISTER: "invalid register number",
    Confirmation.BAD_CONFIGURATION: "incorrect register configuration",
    Confirmation.BAD_NOTEPAD_PAGE: "wrong notepad page number",
    Confirmation.COMMUNICATION: "failed to operate the communication port",
    Confirmation.LIBRARY_FULL: "the finger library is full",
    Confirmation.ADDRESS_WRONG: "wrong address",
    Confirmation.PASSWORD_REQUIRED: "the password must be verified first",
    Confirmation.TEMPLATE_EMPTY: "the template is empty",
    Confirmation.LIBRARY_EMPTY: "the finger library is empty",
    Confirmation.TIMEOUT: "timeout",
    Confirmation.ALREADY_EXISTS: "the fingerprint already exists",
    Confirmation.SENSOR_FAILURE: "sensor hardware error",
}


def describe(code: int) -> str:
    """A short English meaning of a confirmation code, e.g. ``describe(0x02)``."""
    try:
        return _MEANINGS[Confirmation(code)]
    except ValueError:
        return f"unknown confirmation code 0x{code:02x}"


class FrameError(ValueError):
    """A broken frame on the wire: bad checksum, length out of range or unknown identifier.

    ``reason`` is ``"checksum"``, ``"length"`` or ``"identifier"``; ``address`` is the
    frame's address field (the module it was meant for).
    """

    def __init__(self, message: str, *, reason: str = "", address: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.address = address


def checksum(kind: int, payload: bytes) -> int:
    """The frame checksum: identifier + both length bytes + payload bytes, low 16 bits."""
    length = len(payload) + 2
    return (kind + (length >> 8) + (length & 0xFF) + sum(payload)) & 0xFFFF


def encode_frame(kind: int, payload: bytes, address: int = DEFAULT_ADDRESS) -> bytes:
    """The raw bytes of a frame, without range checks on the payload (faults, fuzzing)."""
    length = len(payload) + 2
    return b"".join(
        (
            HEADER_BYTES,
            address.to_bytes(4, "big"),
            bytes((kind,)),
            length.to_bytes(2, "big"),
            payload,
            checksum(kind, payload).to_bytes(2, "big"),
        )
    )


@dataclass(frozen=True)
class Packet:
    """One decoded or to-be-sent frame: its identifier, payload and module address."""

    kind: int
    payload: bytes
    address: int = DEFAULT_ADDRESS

    def encode(self) -> bytes:
        """The frame's bytes. Raises ValueError on a bad identifier, address or payload size."""
        if self.kind not in _KINDS:
            raise ValueError(f"unknown packet identifier 0x{self.kind:02x}")
        if not 0 <= self.address <= 0xFFFFFFFF:
            raise ValueError(f"address 0x{self.address:x} does not fit in 4 bytes")
        if len(self.payload) > MAX_PAYLOAD:
            raise ValueError(f"payload of {len(self.payload)} bytes exceeds {MAX_PAYLOAD}")
        return encode_frame(self.kind, bytes(self.payload), self.address)


def command(instruction: int, *params: bytes | int, address: int = DEFAULT_ADDRESS) -> Packet:
    """A command packet: the instruction then its parameters (an int is one byte).

    ``command(Instruction.STORE, 1, (5).to_bytes(2, "big"))`` stores buffer 1 at page 5.
    """
    parts = [bytes((instruction,))]
    for param in params:
        parts.append(bytes((param,)) if isinstance(param, int) else bytes(param))
    return Packet(PacketKind.COMMAND, b"".join(parts), address)


def ack(code: int, *params: bytes | int, address: int = DEFAULT_ADDRESS) -> Packet:
    """An acknowledgement packet: the confirmation code then its parameters."""
    parts = [bytes((code,))]
    for param in params:
        parts.append(bytes((param,)) if isinstance(param, int) else bytes(param))
    return Packet(PacketKind.ACK, b"".join(parts), address)


class FrameDecoder:
    """Turns a byte stream into packets, resynchronising on the header after any damage.

    ``feed(data)`` returns, in stream order, a :class:`Packet` per good frame and a
    :class:`FrameError` per broken one. Bytes before a header are skipped; after a
    broken frame decoding resumes one byte past its header, so a good frame hidden
    in the broken one's bytes is still found. A partial frame waits for more bytes;
    at most one frame's worth (``MAX_FRAME - 1`` bytes) is ever kept.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.skipped_bytes = 0  # bytes discarded: stray bytes and the heads of broken frames

    @property
    def buffered(self) -> int:
        """How many bytes wait for the rest of their frame."""
        return len(self._buffer)

    def reset(self) -> None:
        """Forget a partial frame (after a timeout, say); it counts as skipped."""
        self.skipped_bytes += len(self._buffer)
        self._buffer.clear()

    def feed(self, data: bytes) -> list[Packet | FrameError]:
        """Add bytes from the wire; return the packets and errors now complete."""
        buf = self._buffer
        buf += data
        out: list[Packet | FrameError] = []
        pos = 0
        end = len(buf)
        while True:
            start = buf.find(HEADER_BYTES, pos)
            if start < 0:
                # keep a trailing 0xEF: it may be the first half of a header
                keep = 1 if end > pos and buf[end - 1] == HEADER_BYTES[0] else 0
                self.skipped_bytes += end - pos - keep
                pos = end - keep
                break
            self.skipped_bytes += start - pos
            pos = start
            if end - pos < 7:
                break
            address = int.from_bytes(buf[pos + 2 : pos + 6], "big")
            kind = buf[pos + 6]
            if kind not in _KINDS:
                message = f"unknown packet identifier 0x{kind:02x}"
                out.append(FrameError(message, reason="identifier", address=address))
                self.skipped_bytes += 1
                pos += 1
                continue
            if end - pos < 9:
                break
            length = int.from_bytes(buf[pos + 7 : pos + 9], "big")
            if not 2 <= length <= MAX_LENGTH:
                message = f"length {length} out of range 2..{MAX_LENGTH}"
                out.append(FrameError(message, reason="length", address=address))
                self.skipped_bytes += 1
                pos += 1
                continue
            total = 9 + length
            if end - pos < total:
                break
            payload = bytes(buf[pos + 9 : pos + total - 2])
            received = int.from_bytes(buf[pos + total - 2 : pos + total], "big")
            expected = checksum(kind, payload)
            if received != expected:
                message = f"bad checksum 0x{received:04x}, expected 0x{expected:04x}"
                out.append(FrameError(message, reason="checksum", address=address))
                self.skipped_bytes += 1
                pos += 1
                continue
            out.append(Packet(PacketKind(kind), payload, address))
            pos += total
        del buf[:pos]
        return out


def unpack_image(
    data: bytes, width: int = IMAGE_SIZE[0], height: int = IMAGE_SIZE[1]
) -> np.ndarray:
    """An uploaded image (4 bits a pixel, high nibble first) as uint8 (height, width), v*17.

    Raises ValueError when ``data`` is not exactly ``width * height / 2`` bytes.
    """
    expected = width * height // 2
    if width % 2 or len(data) != expected:
        raise ValueError(f"image data is {len(data)} bytes, expected {expected}")
    packed = np.frombuffer(bytes(data), dtype=np.uint8)
    pixels = np.empty(packed.size * 2, dtype=np.uint8)
    pixels[0::2] = packed >> 4
    pixels[1::2] = packed & 0x0F
    return (pixels * 17).reshape(height, width)


def pack_image(image: np.ndarray) -> bytes:
    """An 8-bit grayscale (height, width) image as the sensor uploads it: 4 bits a pixel.

    Each pixel is rounded to the nearest of the 16 levels, so
    ``unpack_image(pack_image(x))`` differs from ``x`` by at most 8.
    """
    pixels = np.asarray(image)
    if pixels.ndim != 2 or pixels.shape[1] % 2:
        raise ValueError(f"expected a 2-D image of even width, got shape {pixels.shape}")
    levels = ((pixels.astype(np.uint16) + 8) // 17).astype(np.uint8).ravel()
    return ((levels[0::2] << 4) | levels[1::2]).tobytes()


def packet_size(code: int) -> int:
    """Data packet payload bytes for a packet size code 0..3. Raises ValueError otherwise."""
    if not 0 <= code < len(PACKET_SIZES):
        raise ValueError(f"packet size code {code} is not 0..3")
    return PACKET_SIZES[code]
