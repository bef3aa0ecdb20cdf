"""Seal a packet for the hub: signed by the station, encrypted to the hub. No I/O here.

A sealed packet is what the kiosk writes to disk and sends: a stolen SD card or
a copied file reveals no biometrics, and the hub accepts only what a registered
station signed for it. This module works in memory only; the clear packet is
never written anywhere by it.

Layout of a sealed packet (format 1; integers big-endian)::

    magic     8 bytes   b"REKAMPKT"
    version   1 byte    1
    hlen      4 bytes   length of the header
    header    hlen      JSON, UTF-8, keys sorted, no spaces (the envelope, in clear)
    enc       1120      the HPKE encapsulated key (ML-KEM-768 + X25519)
    ct        rest      the HPKE ciphertext of the body, with its 16-byte tag

The header names only what the hub needs before it decrypts, and nothing about
the citizen: ``format``, ``suite``, ``purpose``, ``hub_key_id``, ``station_id``,
``station_key_id``, ``enrollment_id``, ``created_at`` and ``body_bytes`` (the
length of enc + ct, so a truncated file is told from a tampered one).

The suite is HPKE (RFC 9180), base mode, with KEM ML-KEM-768 + X25519, KDF
HKDF-SHA256 and AEAD ChaCha20-Poly1305 (fast on a Pi without AES instructions):
:data:`SUITE_NAME`. The HPKE ``info`` is :data:`INFO_LABEL` followed by the
header bytes, so the header is bound to the key schedule: a changed header (or
one byte of ct) fails decryption. (``cryptography`` exposes AAD only through a
private function; ``info`` authenticates the header just as well.)

The body (the HPKE plaintext) is::

    signature   64 bytes  Ed25519, by the station, over SIGN_LABEL + statement
    slen        4 bytes
    statement   slen      JSON, canonical as the header: {"header": <the header>,
                          "parts": [{"name", "size", "sha256"}, ...]}
    parts       rest      each part's bytes, one after the other, in statement order

The statement holds the whole header, so the signature covers the hub's key id
and the purpose: a packet cannot be re-wrapped for another hub without the
station's key. The parts are the manifest (``manifest.json``, first, as
:meth:`Packet.manifest_json` writes it) and then the files in name order: a
deterministic container with no timestamps or compression choices to pin down,
read back by the sizes the signature covers. Part names, sizes and hashes stay
inside the encryption: which files a packet holds tells which fingers are
missing, and that is not for the SD card to say.

Example::

    sealed = seal(packet, station_key=key, station_id="JB-BOGOR-01", hub_public_key=hub_pub)
    packet = open_sealed(sealed, hub_private_key=hub_key, station_public_keys=registered)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from kiosk.errors import KioskError
from kiosk.packet import schema
from kiosk.packet.build import Packet
from kiosk.packet.keys import (
    STATION_PUBLIC_BYTES,
    HubPrivateKey,
    StationKeyFiles,
    hub_hpke_public_key,
    key_id,
    load_hub_public_key,
    load_station_key,
    station_public_bytes,
)

MAGIC = b"REKAMPKT"
FORMAT_VERSION = 1
SUITE_NAME = "HPKE-MLKEM768X25519-HKDFSHA256-ChaCha20Poly1305"
PURPOSE = "rekam-kiosk enrollment packet"
INFO_LABEL = b"rekam-kiosk packet v1 hpke info\x00"
SIGN_LABEL = b"rekam-kiosk packet v1 signature\x00"
IDENTITY_LABEL = b"rekam-kiosk store identity v1\x00"
MANIFEST_NAME = "manifest.json"

_SUITE = Suite(KEM.MLKEM768_X25519, KDF.HKDF_SHA256, AEAD.CHACHA20_POLY1305)
_PREFIX = struct.Struct(">8sBI")  # magic, version, header length
_LENGTH = struct.Struct(">I")
_ENC_BYTES = KEM.MLKEM768_X25519.enc_length()
_TAG_BYTES = 16
_SIGNATURE_BYTES = 64
_HEADER_FIELDS = {
    "format": int,
    "suite": str,
    "purpose": str,
    "hub_key_id": str,
    "station_id": str,
    "station_key_id": str,
    "enrollment_id": str,
    "created_at": str,
    "body_bytes": int,
}
MAX_HEADER_BYTES = 4096  # a header is a few hundred bytes; refuse to parse megabytes


class Rejection(StrEnum):
    """Why a sealed packet was refused: one value per check, for the hub and its logs."""

    NOT_SEALED = "not a sealed packet"
    UNSUPPORTED_VERSION = "unsupported format version"
    TRUNCATED = "truncated"
    BAD_HEADER = "header is not valid"
    UNSUPPORTED_SUITE = "unsupported suite"
    WRONG_PURPOSE = "not an enrollment packet"
    ANOTHER_HUB = "sealed for another hub"
    UNKNOWN_STATION = "unknown station"
    UNKNOWN_STATION_KEY = "station key not registered"
    DECRYPTION_FAILED = "decryption failed"
    BAD_BODY = "body is malformed"
    BAD_SIGNATURE = "bad signature"
    REWRAPPED = "signed for another envelope"
    PART_HASH_MISMATCH = "part hash mismatch"
    BAD_MANIFEST = "manifest is not valid"
    UNSUPPORTED_SCHEMA = "unsupported manifest schema"
    ENROLLMENT_MISMATCH = "enrollment id mismatch"
    STATION_MISMATCH = "station id mismatch"


class PacketRejected(KioskError, ValueError):
    """A sealed packet failed a check; ``reason`` says which, the message says how."""

    def __init__(self, reason: Rejection, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _canonical(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def _parts(packet: Packet) -> list[tuple[str, bytes]]:
    if MANIFEST_NAME in packet.files:
        raise ValueError(f"a packet file may not be named {MANIFEST_NAME!r}: the manifest is")
    return [(MANIFEST_NAME, packet.manifest_json()), *sorted(packet.files.items())]


def seal(
    packet: Packet,
    *,
    station_key: Ed25519PrivateKey,
    station_id: str,
    hub_public_key: bytes,
    created_at: datetime | None = None,
) -> bytes:
    """The sealed bytes of ``packet``: signed with ``station_key``, encrypted to the hub.

    ``hub_public_key`` is the hub's public key bytes (see kiosk.packet.keys);
    ``created_at`` defaults to now (UTC). Raises ValueError when the packet names
    another station than ``station_id``, or KeyFileError for a malformed hub key.
    """
    manifest_station = (packet.manifest.get("station") or {}).get("id")
    if manifest_station != station_id:
        raise ValueError(f"the packet was made at {manifest_station!r}, not at {station_id!r}")
    recipient = hub_hpke_public_key(hub_public_key)
    parts = _parts(packet)
    statement_parts = [
        {"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for name, data in parts
    ]
    plaintext_bytes = _SIGNATURE_BYTES + _LENGTH.size + sum(len(data) for _, data in parts)
    header = {
        "format": FORMAT_VERSION,
        "suite": SUITE_NAME,
        "purpose": PURPOSE,
        "hub_key_id": key_id(hub_public_key),
        "station_id": station_id,
        "station_key_id": key_id(station_public_bytes(station_key)),
        "enrollment_id": packet.enrollment_id,
        "created_at": (created_at or datetime.now(UTC)).isoformat(),
        "body_bytes": 0,  # filled in below, once the statement's length is known
    }
    # body_bytes depends on the statement, which holds the header: fix it by iterating
    while True:
        statement = _canonical({"header": header, "parts": statement_parts})
        body_bytes = _ENC_BYTES + plaintext_bytes + len(statement) + _TAG_BYTES
        if header["body_bytes"] == body_bytes:
            break
        header["body_bytes"] = body_bytes
    header_bytes = _canonical(header)
    signature = station_key.sign(SIGN_LABEL + statement)
    plaintext = b"".join(
        [signature, _LENGTH.pack(len(statement)), statement, *(data for _, data in parts)]
    )
    body = _SUITE.encrypt(plaintext, recipient, info=INFO_LABEL + header_bytes)
    return _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header_bytes)) + header_bytes + body


@dataclass(frozen=True)
class Sealer:
    """What a station seals with: its id, its signing key and the hub's public key."""

    station_id: str
    station_key: Ed25519PrivateKey = field(repr=False)
    hub_public_key: bytes = field(repr=False)

    @classmethod
    def from_key_files(cls, files: StationKeyFiles, station_id: str) -> Sealer:
        """Load the station's keys; KeyFileError/KeyFileExposed/OSError name the file."""
        return cls(
            station_id, load_station_key(files.station_key), load_hub_public_key(files.hub_public)
        )

    def seal(self, packet: Packet) -> bytes:
        return seal(
            packet,
            station_key=self.station_key,
            station_id=self.station_id,
            hub_public_key=self.hub_public_key,
        )

    def identity(self, packet: Packet) -> str:
        """A keyed hash of who the packet is about (station, NIK, start, sequence): lets
        the store tell a retried save from another citizen's under the same id without
        keeping the NIK, or a hash of it anyone could reverse by trying every NIK."""
        secret = hashlib.sha256(IDENTITY_LABEL + self.station_key.private_bytes_raw()).digest()
        who = _canonical([packet.manifest.get(key) for key in ("station", "nik", "started_at")])
        return hmac.new(secret, who, hashlib.sha256).hexdigest()


def _split(data: bytes) -> tuple[dict, bytes, bytes]:
    """The header (checked for shape), its bytes and the body of a sealed packet."""
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        if len(data) < len(MAGIC) and MAGIC.startswith(data):
            raise PacketRejected(Rejection.TRUNCATED, f"only {len(data)} bytes")
        raise PacketRejected(Rejection.NOT_SEALED, "the file does not start with REKAMPKT")
    if len(data) < _PREFIX.size:
        raise PacketRejected(Rejection.TRUNCATED, f"only {len(data)} bytes")
    _, version, header_length = _PREFIX.unpack_from(data)
    if version != FORMAT_VERSION:
        raise PacketRejected(
            Rejection.UNSUPPORTED_VERSION,
            f"format {version}; this software reads format {FORMAT_VERSION}",
        )
    if header_length > MAX_HEADER_BYTES:
        raise PacketRejected(Rejection.BAD_HEADER, f"{header_length} bytes long")
    end = _PREFIX.size + header_length
    if len(data) < end:
        raise PacketRejected(
            Rejection.TRUNCATED, f"the header needs {header_length} bytes, {len(data)} in all"
        )
    header_bytes = data[_PREFIX.size : end]
    try:
        header = json.loads(header_bytes.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PacketRejected(Rejection.BAD_HEADER, f"not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise PacketRejected(Rejection.BAD_HEADER, "not a JSON object")
    for name, kind in _HEADER_FIELDS.items():
        if type(header.get(name)) is not kind:
            raise PacketRejected(Rejection.BAD_HEADER, f"{name!r} missing or not {kind.__name__}")
    if set(header) != set(_HEADER_FIELDS):
        raise PacketRejected(Rejection.BAD_HEADER, f"unexpected fields {sorted(set(header))}")
    if _canonical(header) != header_bytes:
        raise PacketRejected(Rejection.BAD_HEADER, "not in canonical form")
    if header["format"] != FORMAT_VERSION:
        raise PacketRejected(Rejection.UNSUPPORTED_VERSION, f"header says {header['format']}")
    body = data[end:]
    if len(body) != header["body_bytes"]:
        reason = Rejection.TRUNCATED if len(body) < header["body_bytes"] else Rejection.BAD_BODY
        raise PacketRejected(
            reason, f"the body has {len(body)} bytes, the header says {header['body_bytes']}"
        )
    return header, header_bytes, body


def inspect(data: bytes) -> dict:
    """The envelope header of a sealed packet, read without any key (no biometrics in it).

    Raises PacketRejected when the envelope itself is malformed or truncated; a
    header that reads well is not yet proof of anything (see open_sealed).
    """
    header, _, _ = _split(data)
    return header


def open_sealed(
    data: bytes, *, hub_private_key: HubPrivateKey, station_public_keys: Mapping[str, bytes]
) -> Packet:
    """The packet inside ``data``, once every check passed; raises PacketRejected otherwise.

    ``station_public_keys`` maps each registered station id to its Ed25519 public
    key bytes. Checks, in order: envelope (magic, version, length, header), suite
    and purpose, this hub's key id, the station and its key, decryption (which also
    authenticates the header), the station's signature, the statement's header
    against the envelope's (re-wrapping), each part's SHA-256, and the manifest's
    enrollment and station ids against the header's.
    """
    header, header_bytes, body = _split(data)
    if header["suite"] != SUITE_NAME:
        raise PacketRejected(Rejection.UNSUPPORTED_SUITE, header["suite"])
    if header["purpose"] != PURPOSE:
        raise PacketRejected(Rejection.WRONG_PURPOSE, f"purpose {header['purpose']!r}")
    this_hub = hub_private_key.key_id()
    if header["hub_key_id"] != this_hub:
        raise PacketRejected(
            Rejection.ANOTHER_HUB, f"hub key {header['hub_key_id']}, this hub's is {this_hub}"
        )
    station_id = header["station_id"]
    station_public = station_public_keys.get(station_id)
    if station_public is None:
        raise PacketRejected(Rejection.UNKNOWN_STATION, f"{station_id!r} is not registered")
    if (
        len(station_public) != STATION_PUBLIC_BYTES
        or key_id(station_public) != header["station_key_id"]
    ):
        raise PacketRejected(
            Rejection.UNKNOWN_STATION_KEY,
            f"{station_id!r} signed with key {header['station_key_id']}, "
            f"registered is {key_id(station_public)}",
        )
    try:
        plaintext = _SUITE.decrypt(body, hub_private_key.hpke_key, info=INFO_LABEL + header_bytes)
    except InvalidTag:
        raise PacketRejected(
            Rejection.DECRYPTION_FAILED, "the header or the ciphertext was altered"
        ) from None
    except ValueError as exc:  # an encapsulated key the KEM cannot use
        raise PacketRejected(Rejection.DECRYPTION_FAILED, str(exc)) from None

    if len(plaintext) < _SIGNATURE_BYTES + _LENGTH.size:
        raise PacketRejected(Rejection.BAD_BODY, "too short for a signature and a statement")
    signature = plaintext[:_SIGNATURE_BYTES]
    (statement_length,) = _LENGTH.unpack_from(plaintext, _SIGNATURE_BYTES)
    start = _SIGNATURE_BYTES + _LENGTH.size
    statement = plaintext[start : start + statement_length]
    if len(statement) != statement_length:
        raise PacketRejected(Rejection.BAD_BODY, "the statement is cut short")
    try:
        Ed25519PublicKey.from_public_bytes(station_public).verify(signature, SIGN_LABEL + statement)
    except InvalidSignature:
        raise PacketRejected(
            Rejection.BAD_SIGNATURE, f"not signed by station {station_id!r}"
        ) from None
    signed = _statement(statement)
    if signed["header"] != header:
        raise PacketRejected(
            Rejection.REWRAPPED,
            f"the station signed it for hub {signed['header'].get('hub_key_id')}; "
            "the envelope differs from what was signed",
        )
    files = _read_parts(plaintext[start + statement_length :], signed["parts"])
    return _packet(header, files)


def _statement(statement: bytes) -> dict:
    """The signed statement, checked for shape (a registered station may still be buggy)."""
    try:
        signed = json.loads(statement)
        header, parts = signed["header"], signed["parts"]
        names = [part["name"] for part in parts]
        shapes_ok = isinstance(header, dict) and all(
            type(part["size"]) is int
            and part["size"] >= 0
            and isinstance(part["sha256"], str)
            and isinstance(part["name"], str)
            for part in parts
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise PacketRejected(Rejection.BAD_BODY, f"the statement is malformed ({exc})") from None
    if not shapes_ok or len(set(names)) != len(names) or names[:1] != [MANIFEST_NAME]:
        raise PacketRejected(Rejection.BAD_BODY, "the statement's parts are malformed")
    return signed


def _read_parts(data: bytes, parts: list[dict]) -> dict[str, bytes]:
    if sum(part["size"] for part in parts) != len(data):
        raise PacketRejected(
            Rejection.PART_HASH_MISMATCH, "the parts' sizes do not add up to the body"
        )
    files: dict[str, bytes] = {}
    offset = 0
    for part in parts:
        content = data[offset : offset + part["size"]]
        offset += part["size"]
        if hashlib.sha256(content).hexdigest() != part["sha256"]:
            raise PacketRejected(Rejection.PART_HASH_MISMATCH, f"{part['name']} was altered")
        files[part["name"]] = content
    return files


def _packet(header: dict, files: dict[str, bytes]) -> Packet:
    try:
        manifest = json.loads(files.pop(MANIFEST_NAME))
    except (KeyError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PacketRejected(Rejection.BAD_MANIFEST, f"{MANIFEST_NAME}: {exc}") from None
    if not isinstance(manifest, dict):
        raise PacketRejected(Rejection.BAD_MANIFEST, "not a JSON object")
    if manifest.get("enrollment_id") != header["enrollment_id"]:
        raise PacketRejected(
            Rejection.ENROLLMENT_MISMATCH,
            f"header {header['enrollment_id']!r}, manifest {manifest.get('enrollment_id')!r}",
        )
    station = manifest.get("station")
    if not isinstance(station, dict) or station.get("id") != header["station_id"]:
        raise PacketRejected(
            Rejection.STATION_MISMATCH,
            f"header {header['station_id']!r}, manifest {_shown_station(station)}",
        )
    unreadable = schema.problem(manifest, files)
    if unreadable:
        newer = unreadable.startswith("schema ")
        raise PacketRejected(
            Rejection.UNSUPPORTED_SCHEMA if newer else Rejection.BAD_MANIFEST, unreadable
        )
    return Packet(enrollment_id=header["enrollment_id"], manifest=manifest, files=files)


def _shown_station(station: object) -> str:
    return repr(station.get("id")) if isinstance(station, dict) else repr(station)
