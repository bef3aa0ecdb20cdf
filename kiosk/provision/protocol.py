"""Pairing a station with its hub by a one-time code (docs/sync-protocol.md, "Pairing").

A technician runs ``kiosk-hub pair --station ID`` at the hub and reads the code it
prints (ten base32 characters, ``K7QMX-4RTPA``) to whoever provisions the station.
The station has nothing pinned yet, so the code authenticates both sides:

- both derive a key from the code with scrypt (slow and memory-hard: an on-path
  attacker who records one exchange cannot try 2^50 codes against it), salted with
  the station id, so a code is good for that station only;
- the station's request carries an HMAC under that key over its id, region, public
  key and a fresh nonce: the hub registers only the key the code vouches for;
- the hub's answer carries an HMAC over the same fields plus the hub's sealing key,
  its TLS certificate and the highest enrollment sequence it holds for the station
  (``last_sequence``): the station writes them (and from then on trusts that
  certificate alone) only when the MAC holds. A re-flashed station numbers its
  enrollments on from ``last_sequence + SEQUENCE_MARGIN``, never reusing an id the
  hub accepted from its old card.

The hub keeps only the derived key, never the code, and forgets it once used or
expired. The request and the answer are JSON; binary values are base64.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

PAIRING_PATH = "/v1/pairing"
CODE_LENGTH = 10  # base32 characters: 50 bits
CODE_GROUP = 5
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # RFC 4648 base32: no 0, 1, 8 or 9
# what a tired technician may type for a letter base32 does not use
_LOOK_ALIKES = str.maketrans({"0": "O", "1": "I", "8": "B", "9": "G"})
# scrypt: 32 MiB and about 0.1 s on a PC (a second on a Pi), once per pairing per side
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
NONCE_BYTES = 16
_KDF_LABEL = b"rekam-kiosk pairing v1\x00"
_REQUEST_LABEL = b"rekam-kiosk pairing request v1\x00"
# v2: the answer's MAC covers last_sequence too (a v1 station refuses a v2 answer)
_ANSWER_LABEL = b"rekam-kiosk pairing answer v2\x00"
# a re-flashed station numbers on from the hub's highest sequence for it plus this margin:
SEQUENCE_MARGIN = 1000  # room for recordings the old card may hold that never reached the hub
# the largest last_sequence a station takes from a hub's answer (a sequence is %06d, grows)
MAX_SEQUENCE = 10**12

# the hub's refusals (the ``reason`` of a 403 answer)
NO_CODE = "no_code"
WRONG_CODE = "wrong_code"
EXPIRED = "expired"
USED = "used"
OTHER_REGION = "other_region"


def new_code() -> str:
    """A fresh random code, grouped for reading aloud: ``K7QMX-4RTPA``."""
    return group("".join(secrets.choice(_ALPHABET) for _ in range(CODE_LENGTH)))


def group(code: str) -> str:
    return "-".join(code[i : i + CODE_GROUP] for i in range(0, len(code), CODE_GROUP))


def normalise_code(text: str) -> str:
    """The code's ten characters, upper case, without spaces or dashes; look-alike
    digits read as the letters they resemble. ValueError for anything else."""
    code = "".join(text.split()).replace("-", "").upper().translate(_LOOK_ALIKES)
    if len(code) != CODE_LENGTH or any(char not in _ALPHABET for char in code):
        raise ValueError(
            f"a pairing code is {CODE_LENGTH} letters and digits 2-7, e.g. K7QMX-4RTPA"
        )
    return code


def derive_key(code: str, station_id: str) -> bytes:
    """The 32-byte key both sides derive from the code (scrypt, salted by the station id)."""
    return hashlib.scrypt(
        normalise_code(code).encode("ascii"),
        salt=_KDF_LABEL + station_id.encode("utf-8"),
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        maxmem=64 * 1024 * 1024,
        dklen=32,
    )


def _fields(*values: bytes) -> bytes:
    """Length-prefixed fields: no value can be shifted into its neighbour."""
    return b"".join(len(value).to_bytes(4, "big") + value for value in values)


def _mac(key: bytes, purpose: bytes, message: bytes) -> bytes:
    subkey = hmac.new(key, purpose, hashlib.sha256).digest()
    return hmac.new(subkey, message, hashlib.sha256).digest()


def request_mac(
    key: bytes, station_id: str, region: str, station_key: bytes, nonce: bytes
) -> bytes:
    message = _fields(station_id.encode(), region.encode(), station_key, nonce)
    return _mac(key, b"station", _REQUEST_LABEL + message)


def answer_mac(
    key: bytes,
    station_id: str,
    region: str,
    station_key: bytes,
    nonce: bytes,
    hub_key: bytes,
    tls_certificate: bytes,
    last_sequence: int,
) -> bytes:
    message = _fields(
        station_id.encode(),
        region.encode(),
        station_key,
        nonce,
        hub_key,
        tls_certificate,
        str(int(last_sequence)).encode("ascii"),
    )
    return _mac(key, b"hub", _ANSWER_LABEL + message)


def same(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: object, what: str) -> bytes:
    """Base64 text to bytes; ValueError naming ``what`` otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"{what}: expected base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what}: not base64") from None
