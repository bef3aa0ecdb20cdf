"""One-time pairing codes at the hub (kiosk/provision/protocol.py has the exchange).

``kiosk-hub pair --station ID`` makes a code for one station, valid for a day and
once. The hub keeps, in ``<hub dir>/pairing/<station id>.json`` (0600), only the key
scrypt derives from the code, the region it was made for and when it expires: the
code itself is printed and forgotten. A new code for a station replaces its
previous one. A used code is moved to ``pairing/used/`` (an audit trail: which key
it registered, when); a rename claims it, so two requests racing with one code
register one station key, never two.

:func:`pair` answers a station's pairing request: a wrong, expired or used code,
or a code for another region, is a :class:`PairingRefused` and changes nothing.
The answer carries the highest enrollment sequence the hub accepted from that
station id (``last_sequence``, 0 when none), so a re-flashed station does not
number its enrollments from 1 again.

Example::

    code = make_code(Path("/var/lib/kiosk-hub"), "3201-KCM-CIBINONG-01", region="3201")
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hub import layout
from kiosk.packet.keys import STATION_PUBLIC_BYTES, key_id
from kiosk.provision import protocol
from kiosk.store.durable import fsync_dir, write_durably

PAIRING = "pairing"
USED = "used"
DEFAULT_VALID = timedelta(hours=24)
MAX_REQUEST_BYTES = 4096


class PairingRefused(Exception):
    """The hub does not pair this request; ``reason`` is one of protocol's refusals."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class BadPairingRequest(ValueError):
    """The request is not a pairing request this hub reads."""


@dataclass(frozen=True)
class Paired:
    """A station paired: what the hub sends back (the MAC made from the code's key)."""

    station_id: str
    region: str
    hub_key: bytes
    tls_certificate: bytes
    last_sequence: int  # the highest enrollment sequence the hub holds for the station
    mac: bytes

    def body(self) -> dict[str, Any]:
        return {
            "station_id": self.station_id,
            "region": self.region,
            "hub_key": protocol.b64(self.hub_key),
            "tls_certificate": self.tls_certificate.decode("ascii"),
            "last_sequence": self.last_sequence,
            "mac": protocol.b64(self.mac),
        }


def pairing_path(hub_dir: Path) -> Path:
    return Path(hub_dir) / PAIRING


def _pending(hub_dir: Path, station_id: str) -> Path:
    return pairing_path(hub_dir) / f"{station_id}.json"


def make_code(
    hub_dir: Path,
    station_id: str,
    *,
    region: str | None = None,
    valid: timedelta = DEFAULT_VALID,
    now: datetime | None = None,
) -> tuple[str, datetime]:
    """A new pairing code for ``station_id`` (replacing any earlier one) and its expiry."""
    if not layout.STATION_ID.fullmatch(station_id):
        raise ValueError(
            f"station id {station_id!r:.80}: letters, digits, '.', '_' or '-' (at most 64)"
        )
    if region is not None and not region.strip():
        raise ValueError("--region: give the region code, e.g. 3201")
    if valid <= timedelta(0):
        raise ValueError("a pairing code must be valid for some time")
    if not Path(hub_dir).is_dir():
        raise FileNotFoundError(f"{hub_dir}: no hub data folder; make one with `kiosk-hub init`")
    now = now or datetime.now(UTC)
    code = protocol.new_code()
    record = {
        "station_id": station_id,
        "region": region,
        "kdf": {"name": "scrypt", "n": protocol.SCRYPT_N, "r": protocol.SCRYPT_R, "p": 1},
        "key": protocol.b64(protocol.derive_key(code, station_id)),
        "made_at": now.isoformat(),
        "expires_at": (now + valid).isoformat(),
    }
    folder = pairing_path(hub_dir)
    folder.mkdir(mode=0o700, exist_ok=True)
    write_durably(_pending(hub_dir, station_id), json.dumps(record, indent=1).encode())
    return code, now + valid


def _read_request(body: bytes) -> tuple[str, str, bytes, bytes, bytes]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadPairingRequest("the pairing request is not JSON") from None
    if not isinstance(data, dict):
        raise BadPairingRequest("the pairing request is not a JSON object")
    station_id, region = data.get("station_id"), data.get("region")
    if not isinstance(station_id, str) or not layout.STATION_ID.fullmatch(station_id):
        raise BadPairingRequest("station_id: letters, digits, '.', '_' or '-' (at most 64)")
    if not isinstance(region, str) or not region.strip() or len(region) > 64:
        raise BadPairingRequest("region: expected the station's region")
    try:
        station_key = protocol.unb64(data.get("station_key"), "station_key")
        nonce = protocol.unb64(data.get("nonce"), "nonce")
        mac = protocol.unb64(data.get("mac"), "mac")
    except ValueError as exc:
        raise BadPairingRequest(str(exc)) from None
    if len(station_key) != STATION_PUBLIC_BYTES or len(nonce) != protocol.NONCE_BYTES:
        raise BadPairingRequest("station_key or nonce: wrong length")
    return station_id, region, station_key, nonce, mac


def pair(hub: Any, body: bytes, *, now: datetime | None = None) -> Paired:
    """Check a station's pairing request against its code; register its key if it holds.

    ``hub`` is a hub.service.Hub with a data folder. Raises BadPairingRequest for a
    malformed request and PairingRefused (nothing changed) for a code that does not
    hold.
    """
    station_id, region, station_key, nonce, mac = _read_request(body)
    hub_dir = Path(hub.data_dir)
    pending = _pending(hub_dir, station_id)
    try:
        record = json.loads(pending.read_bytes())
    except FileNotFoundError:
        used = sorted((pairing_path(hub_dir) / USED).glob(f"{station_id}.*.json"))
        if used:
            raise PairingRefused(
                protocol.USED,
                f"the pairing code for station {station_id} was used already; make a new "
                f"one at the hub: kiosk-hub pair --station {station_id}",
            ) from None
        raise PairingRefused(
            protocol.NO_CODE,
            f"the hub has no pairing code for station {station_id}; make one at the hub: "
            f"kiosk-hub pair --station {station_id}",
        ) from None
    now = now or datetime.now(UTC)
    if datetime.fromisoformat(record["expires_at"]) <= now:
        raise PairingRefused(
            protocol.EXPIRED,
            f"the pairing code for station {station_id} expired at "
            f"{record['expires_at'][:16].replace('T', ' ')} UTC; make a new one at the hub: "
            f"kiosk-hub pair --station {station_id}",
        )
    key = protocol.unb64(record["key"], "key")
    expected = protocol.request_mac(key, station_id, region, station_key, nonce)
    if not protocol.same(mac, expected):
        hub.log.warning("pairing of station %s refused: a wrong code", station_id)
        raise PairingRefused(
            protocol.WRONG_CODE,
            f"the pairing code is wrong for station {station_id} (check the station id "
            "and the code as the hub printed them)",
        )
    if record.get("region") and record["region"] != region:
        raise PairingRefused(
            protocol.OTHER_REGION,
            f"the pairing code for station {station_id} was made for region "
            f"{record['region']}, not {region}",
        )
    # a re-flashed station numbers on from here (its new card's counter starts at 0);
    # asked before the claim, so an index that fails leaves the code unspent
    last_sequence = hub.index.last_sequences(station_id).get(station_id, 0)
    _claim(hub_dir, pending, record, station_key, now)
    layout.add_station(hub_dir, station_id, station_key)
    hub.register_station(station_id, station_key)
    hub.log.info(
        "station %s paired (key %s, region %s, last sequence %d)",
        station_id,
        key_id(station_key),
        region,
        last_sequence,
    )
    hub_key = hub.private_key.public_bytes()
    certificate = layout.tls_certificate_path(hub_dir).read_bytes()
    return Paired(
        station_id,
        region,
        hub_key,
        certificate,
        last_sequence,
        protocol.answer_mac(
            key, station_id, region, station_key, nonce, hub_key, certificate, last_sequence
        ),
    )


def _claim(hub_dir: Path, pending: Path, record: dict, station_key: bytes, now: datetime) -> None:
    """Move the code to ``used/`` (the rename is the claim); PairingRefused if another
    request claimed it first."""
    used = pairing_path(hub_dir) / USED
    used.mkdir(mode=0o700, exist_ok=True)
    station_id = record["station_id"]
    target = used / f"{station_id}.{now.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}.json"
    try:
        os.rename(pending, target)
    except FileNotFoundError:
        raise PairingRefused(
            protocol.USED, f"the pairing code for station {station_id} was used already"
        ) from None
    fsync_dir(pending.parent)
    record = {**record, "used_at": now.isoformat(), "station_key_id": key_id(station_key)}
    del record["key"]  # spent: nothing of the code stays
    write_durably(target, json.dumps(record, indent=1).encode())
