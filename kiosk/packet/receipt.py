"""The hub's receipt for packets carried on a USB stick: what lets an office with
no link purge what the hub already has.

`kiosk-hub import DIR` writes one receipt per station into ``DIR``, listing each
packet the hub holds (enrollment id and SHA-256), signed with the hub's TLS key.
At the next `kiosk export` to that stick, the kiosk checks the signature against
the hub certificate it pins (``keys/hub-tls.pem``), and marks those packets
acknowledged: the same state a verdict over the network gives, so they are
purged after ``[store] purge_after_days`` and not exported again. A receipt from
another hub, for another station, or changed by one byte is refused; a forged one
could only make a kiosk delete packets the hub never had, so nothing unsigned counts.

A receipt is a JSON file ``rekam-receipt-<station>-<time>.json``::

    {"format": 1, "purpose": "rekam-kiosk import receipt", "station_id": ...,
     "made_at": ..., "packets": [{"enrollment_id": ..., "sha256": ...}, ...],
     "signature": "<base64 ECDSA-SHA256 over SIGN_LABEL + the other fields, canonical>"}
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from kiosk.errors import KioskError

FORMAT = 1
PURPOSE = "rekam-kiosk import receipt"
SIGN_LABEL = b"rekam-kiosk import receipt v1\x00"
FILE_PATTERN = "rekam-receipt-*.json"
MAX_RECEIPT_BYTES = 4 * 1024 * 1024  # ~50,000 packets; a stick may hold anything else


class ReceiptRejected(KioskError, ValueError):
    """A receipt that does not count, and why."""


@dataclass(frozen=True)
class Receipt:
    station_id: str
    made_at: str
    packets: dict[str, str]  # enrollment id -> SHA-256 of the sealed packet the hub holds


def _canonical(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def receipt_name(station_id: str, made_at: datetime) -> str:
    return f"rekam-receipt-{station_id}-{made_at:%Y%m%d-%H%M%S}.json"


def make_receipt(
    station_id: str,
    packets: dict[str, str],
    signing_key: ec.EllipticCurvePrivateKey,
    made_at: datetime | None = None,
) -> bytes:
    """The signed receipt for ``packets`` (enrollment id -> SHA-256) of one station."""
    body = {
        "format": FORMAT,
        "purpose": PURPOSE,
        "station_id": station_id,
        "made_at": (made_at or datetime.now(UTC)).isoformat(),
        "packets": [
            {"enrollment_id": enrollment_id, "sha256": sha256}
            for enrollment_id, sha256 in sorted(packets.items())
        ],
    }
    signature = signing_key.sign(SIGN_LABEL + _canonical(body), ec.ECDSA(hashes.SHA256()))
    return _canonical({**body, "signature": base64.b64encode(signature).decode()})


def read_receipt(data: bytes, hub_certificate_pem: bytes) -> Receipt:
    """The receipt in ``data`` once its signature verifies with the pinned hub
    certificate; ReceiptRejected saying why otherwise."""
    if len(data) > MAX_RECEIPT_BYTES:
        raise ReceiptRejected(f"{len(data)} bytes: not a receipt")
    try:
        body = json.loads(data)
        signature = base64.b64decode(body.pop("signature"), validate=True)
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise ReceiptRejected(f"not a receipt ({exc})") from None
    if body.get("format") != FORMAT or body.get("purpose") != PURPOSE:
        raise ReceiptRejected("not a receipt of this format")
    public_key = x509.load_pem_x509_certificate(hub_certificate_pem).public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise ReceiptRejected("the pinned hub certificate has no EC key to check receipts with")
    try:
        public_key.verify(signature, SIGN_LABEL + _canonical(body), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise ReceiptRejected("the signature is not this hub's (another hub, or changed)") from None
    try:
        packets = {item["enrollment_id"]: item["sha256"] for item in body["packets"]}
        return Receipt(str(body["station_id"]), str(body["made_at"]), packets)
    except (KeyError, TypeError) as exc:
        raise ReceiptRejected(f"a signed receipt of an unknown shape ({exc})") from None
