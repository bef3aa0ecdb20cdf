"""Sealing a packet: signed by the station, encrypted to the hub, every tampering refused."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import struct
import time
from datetime import UTC, datetime

import pytest
from support import VALID_NIK, PacketCatcher

from kiosk.errors import KioskError
from kiosk.packet import seal as sealing
from kiosk.packet.build import Packet
from kiosk.packet.keys import (
    HUB_PUBLIC_BYTES,
    HubPrivateKey,
    KeyFileError,
    KeyFileExists,
    KeyFileExposed,
    generate_hub_key,
    generate_station_key,
    key_id,
    load_hub_private_key,
    load_hub_public_key,
    load_station_key,
    load_station_public_key,
    save_hub_public_key,
    save_station_public_key,
    station_public_bytes,
)
from kiosk.packet.seal import (
    MAGIC,
    PacketRejected,
    Rejection,
    inspect,
    open_sealed,
    seal,
)
from kiosk.simulate import enroll_one

STATION = "TEST-01"
CREATED_AT = datetime(2026, 11, 28, 9, 31, tzinfo=UTC)


@pytest.fixture(scope="module")
def hub() -> HubPrivateKey:
    return HubPrivateKey.generate()


@pytest.fixture(scope="module")
def other_hub() -> HubPrivateKey:
    return HubPrivateKey.generate()


@pytest.fixture(scope="module")
def station_key():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def registered(station_key) -> dict[str, bytes]:
    return {STATION: station_public_bytes(station_key)}


@pytest.fixture
def packet(make_flow) -> Packet:
    flow = make_flow(sink=PacketCatcher())
    enroll_one(flow, VALID_NIK)
    (made,) = flow.sink.packets
    return made


@pytest.fixture
def sealed(packet, station_key, hub) -> bytes:
    return seal(
        packet,
        station_key=station_key,
        station_id=STATION,
        hub_public_key=hub.public_bytes(),
        created_at=CREATED_AT,
    )


def open_with(data: bytes, hub: HubPrivateKey, registered: dict[str, bytes]) -> Packet:
    return open_sealed(data, hub_private_key=hub, station_public_keys=registered)


def rejected(data: bytes, hub: HubPrivateKey, registered: dict[str, bytes]) -> PacketRejected:
    with pytest.raises(PacketRejected) as caught:
        open_with(data, hub, registered)
    return caught.value


def header_length(data: bytes) -> int:
    return struct.unpack_from(">I", data, len(MAGIC) + 1)[0]


# -- round trip ------------------------------------------------------------------


def test_round_trip_gives_back_the_packet(packet, sealed, hub, registered):
    opened = open_with(sealed, hub, registered)
    assert opened.enrollment_id == packet.enrollment_id
    assert opened.manifest == json.loads(packet.manifest_json())
    assert opened.manifest_json() == packet.manifest_json()
    assert opened.files == packet.files
    assert {"face.jpg", "signature.png"} <= set(opened.files)


def test_seal_time_and_overhead(packet, station_key, hub, capsys):
    clear = len(packet.manifest_json()) + sum(len(data) for data in packet.files.values())
    started = time.perf_counter()
    data = seal(
        packet, station_key=station_key, station_id=STATION, hub_public_key=hub.public_bytes()
    )
    seconds = time.perf_counter() - started
    with capsys.disabled():
        print(
            f"\nseal: {seconds * 1000:.1f} ms, {len(data)} bytes sealed, "
            f"{clear} bytes clear, overhead {len(data) - clear} bytes"
        )
    assert len(data) > clear


def test_sealed_bytes_hold_no_biometrics_nor_nik(packet, sealed):
    assert not re.search(rb"\d{16}", sealed)
    assert VALID_NIK.encode() not in sealed
    # JPEG by its JFIF marker (3 magic bytes alone turn up by chance in 140 KB of ciphertext)
    assert b"JFIF" in packet.files["face.jpg"][:16] and b"JFIF" not in sealed
    assert b"\x89PNG" not in sealed
    assert b"face.jpg" not in sealed and b"finger-" not in sealed
    for name, data in packet.files.items():  # the head of any part: JPEG, PNG, WSQ, templates
        assert data[:16] not in sealed, name
    assert b"NIST_COM" not in sealed  # the comment block each WSQ file carries


def test_sealing_is_randomised(packet, station_key, hub, sealed):
    again = seal(
        packet,
        station_key=station_key,
        station_id=STATION,
        hub_public_key=hub.public_bytes(),
        created_at=CREATED_AT,
    )
    assert again != sealed and len(again) == len(sealed)


def test_inspect_shows_the_envelope_only(packet, sealed, hub, station_key):
    header = inspect(sealed)
    assert header == {
        "format": 1,
        "suite": "HPKE-MLKEM768X25519-HKDFSHA256-ChaCha20Poly1305",
        "purpose": "rekam-kiosk enrollment packet",
        "hub_key_id": key_id(hub.public_bytes()),
        "station_id": STATION,
        "station_key_id": key_id(station_public_bytes(station_key)),
        "enrollment_id": packet.enrollment_id,
        "created_at": CREATED_AT.isoformat(),
        "body_bytes": len(sealed) - len(MAGIC) - 5 - header_length(sealed),
    }


def test_seal_refuses_a_packet_of_another_station(packet, station_key, hub):
    with pytest.raises(ValueError, match="TEST-01"):
        seal(packet, station_key=station_key, station_id="JB-02", hub_public_key=hub.public_bytes())


# -- tampering -------------------------------------------------------------------


def test_a_flipped_byte_anywhere_is_rejected(sealed, hub, registered):
    end_of_header = len(MAGIC) + 5 + header_length(sealed)
    positions = sorted(
        {0, 7, 8, 9, 12, 13, 20, end_of_header - 2, end_of_header - 1}
        | set(range(end_of_header, len(sealed), max(1, (len(sealed) - end_of_header) // 40)))
        | {len(sealed) - 17, len(sealed) - 1}
    )
    reasons = set()
    for position in positions:
        tampered = bytearray(sealed)
        tampered[position] ^= 0x01
        reasons.add(rejected(bytes(tampered), hub, registered).reason)
    assert Rejection.DECRYPTION_FAILED in reasons
    assert reasons & {Rejection.NOT_SEALED, Rejection.UNSUPPORTED_VERSION}


def test_a_changed_header_field_fails_decryption(sealed, hub, registered):
    start, length = len(MAGIC) + 5, header_length(sealed)
    header = sealed[start : start + length]
    changed = header.replace(b'"created_at":"2026-11-28T09:31', b'"created_at":"2026-11-28T09:32')
    assert changed != header
    reason = rejected(sealed[:start] + changed + sealed[start + length :], hub, registered).reason
    assert reason is Rejection.DECRYPTION_FAILED


@pytest.mark.parametrize("keep", [0, 4, 8, 12, 13, 100, -1, -16, -2000])
def test_a_truncated_packet_is_rejected(sealed, hub, registered, keep):
    cut = sealed[:keep]
    error = rejected(cut, hub, registered)
    assert error.reason in {Rejection.TRUNCATED, Rejection.NOT_SEALED, Rejection.BAD_HEADER}
    if keep < 0:
        assert error.reason is Rejection.TRUNCATED


def test_bytes_appended_to_a_packet_are_rejected(sealed, hub, registered):
    error = rejected(sealed + b"\x00", hub, registered)
    assert error.reason is Rejection.BAD_BODY and "the header says" in str(error)


def test_not_a_packet_and_a_header_not_json(hub, registered):
    assert rejected(b"%PDF-1.7 hello", hub, registered).reason is Rejection.NOT_SEALED
    no_json = MAGIC + struct.pack(">BI", 1, 5) + b"hello"
    error = rejected(no_json, hub, registered)
    assert error.reason is Rejection.BAD_HEADER and "not JSON" in str(error)
    future = MAGIC + struct.pack(">BI", 2, 2) + b"{}"
    assert rejected(future, hub, registered).reason is Rejection.UNSUPPORTED_VERSION


def test_sealed_for_hub_a_opened_by_hub_b(sealed, other_hub, registered):
    error = rejected(sealed, other_hub, registered)
    assert error.reason is Rejection.ANOTHER_HUB
    assert "another hub" in str(error)


def test_an_unregistered_station_or_key_is_rejected(packet, hub, registered):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    intruder = Ed25519PrivateKey.generate()
    forged = seal(
        packet, station_key=intruder, station_id=STATION, hub_public_key=hub.public_bytes()
    )
    assert rejected(forged, hub, registered).reason is Rejection.UNKNOWN_STATION_KEY
    assert rejected(forged, hub, {}).reason is Rejection.UNKNOWN_STATION


def test_a_signature_by_another_key_under_the_registered_key_id(packet, hub, registered):
    """A forger who names the registered key id in a header he makes himself."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    intruder = Ed25519PrivateKey.generate()
    forged = seal(
        packet, station_key=intruder, station_id=STATION, hub_public_key=hub.public_bytes()
    )
    header = inspect(forged)
    header["station_key_id"] = key_id(registered[STATION])
    rebuilt = reseal(hub, forged, header)
    assert rejected(rebuilt, hub, registered).reason is Rejection.BAD_SIGNATURE


def reseal(
    holder: HubPrivateKey,
    data: bytes,
    header: dict,
    to: bytes | None = None,
    body: bytes | None = None,
) -> bytes:
    """What someone holding ``holder``'s key can do: decrypt, then encrypt again
    (to ``to``, another hub's public key) under ``header``, without the station's key."""
    start, length = len(MAGIC) + 5, header_length(data)
    plaintext = sealing._SUITE.decrypt(
        data[start + length :], holder.hpke_key, info=sealing.INFO_LABEL + data[start:][:length]
    )
    plaintext = body if body is not None else plaintext
    recipient = sealing.hub_hpke_public_key(to or holder.public_bytes())
    header = dict(header, body_bytes=sealing._ENC_BYTES + len(plaintext) + 16)
    header_bytes = sealing._canonical(header)
    ciphertext = sealing._SUITE.encrypt(
        plaintext, recipient, info=sealing.INFO_LABEL + header_bytes
    )
    return MAGIC + struct.pack(">BI", 1, len(header_bytes)) + header_bytes + ciphertext


def test_rewrapped_for_another_hub_is_rejected(sealed, hub, other_hub, registered):
    header = dict(inspect(sealed), hub_key_id=other_hub.key_id())
    rewrapped = reseal(hub, sealed, header, to=other_hub.public_bytes())
    error = rejected(rewrapped, other_hub, registered)
    assert error.reason is Rejection.REWRAPPED
    assert hub.key_id() in str(error)


def test_a_part_altered_by_a_hub_key_holder_is_rejected(sealed, hub, registered, packet):
    start, length = len(MAGIC) + 5, header_length(sealed)
    plaintext = sealing._SUITE.decrypt(
        sealed[start + length :], hub.hpke_key, info=sealing.INFO_LABEL + sealed[start:][:length]
    )
    altered = bytearray(plaintext)
    altered[-1] ^= 0xFF  # the last byte of the last part
    rebuilt = reseal(hub, sealed, inspect(sealed), body=bytes(altered))
    # the header keeps its body_bytes: same length, so only the part's hash tells
    error = rejected(rebuilt, hub, registered)
    assert error.reason is Rejection.PART_HASH_MISMATCH
    last = sorted(packet.files)[-1]
    assert last in str(error)


def test_enrollment_id_in_header_and_manifest_must_match(packet, station_key, hub, registered):
    swapped = Packet(enrollment_id="TEST-01-OTHER", manifest=packet.manifest, files=packet.files)
    data = seal(
        swapped, station_key=station_key, station_id=STATION, hub_public_key=hub.public_bytes()
    )
    error = rejected(data, hub, registered)
    assert error.reason is Rejection.ENROLLMENT_MISMATCH
    assert "TEST-01-OTHER" in str(error)


@pytest.mark.parametrize(
    ("manifest", "reason"),
    [
        (b"not json", Rejection.BAD_MANIFEST),
        (b"[]", Rejection.BAD_MANIFEST),
        ({"station": {"id": "JB-99"}}, Rejection.STATION_MISMATCH),
    ],
)
def test_a_buggy_station_signing_a_bad_manifest_is_rejected(
    packet, station_key, hub, registered, monkeypatch, manifest, reason
):
    """What seal() itself refuses to make, signed by a registered station all the same."""
    if isinstance(manifest, dict):
        manifest = json.dumps(dict(packet.manifest, **manifest)).encode()
    monkeypatch.setattr(
        sealing, "_parts", lambda p: [("manifest.json", manifest), *sorted(p.files.items())]
    )
    data = seal(
        packet, station_key=station_key, station_id=STATION, hub_public_key=hub.public_bytes()
    )
    assert rejected(data, hub, registered).reason is reason


@pytest.mark.parametrize(
    ("change", "reason", "detail"),
    [
        ({"schema": 99}, Rejection.UNSUPPORTED_SCHEMA, "schema 99 is not one this software reads"),
        ({"schema": 2}, Rejection.UNSUPPORTED_SCHEMA, "schema 2"),
        ({"nik": None}, Rejection.BAD_MANIFEST, "'nik' missing or not a str"),
        ({"nik": "32010141019"}, Rejection.BAD_MANIFEST, "'nik' is not 16 digits"),
        ({"fingers": "all"}, Rejection.BAD_MANIFEST, "'fingers' missing or not a list"),
        ({"face": {"image": "portrait.jpg"}}, Rejection.BAD_MANIFEST, "lacks: portrait.jpg"),
        ({"signature": None}, Rejection.BAD_MANIFEST, "does not name: signature"),
    ],
)
def test_a_manifest_the_hub_cannot_read_is_rejected_saying_why(
    packet, station_key, hub, registered, change, reason, detail
):
    odd = Packet(packet.enrollment_id, {**packet.manifest, **change}, packet.files)
    data = seal(odd, station_key=station_key, station_id=STATION, hub_public_key=hub.public_bytes())
    error = rejected(data, hub, registered)
    assert error.reason is reason
    assert detail in str(error)


def test_rejection_is_a_kiosk_error_and_a_value_error(hub, registered):
    with pytest.raises(KioskError):
        open_with(b"", hub, registered)
    with pytest.raises(ValueError):
        open_with(b"", hub, registered)


# -- key files -------------------------------------------------------------------


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_key_files_are_private_and_load_back(tmp_path, packet, registered):
    old = os.umask(0o022)
    try:
        station = generate_station_key(tmp_path / "station.key")
        hub_key = generate_hub_key(tmp_path / "hub.key")
    finally:
        os.umask(old)
    assert mode(tmp_path / "station.key") == mode(tmp_path / "hub.key") == 0o600
    loaded_station = load_station_key(tmp_path / "station.key")
    loaded_hub = load_hub_private_key(tmp_path / "hub.key")
    assert station_public_bytes(loaded_station) == station_public_bytes(station)
    assert loaded_hub.public_bytes() == hub_key.public_bytes()
    assert len(hub_key.public_bytes()) == HUB_PUBLIC_BYTES == 1216
    assert re.fullmatch(r"[0-9a-f]{16}", hub_key.key_id())
    assert hub_key.key_id() == hashlib.sha256(hub_key.public_bytes()).hexdigest()[:16]

    save_station_public_key(tmp_path / "station.pub", station_public_bytes(station))
    save_hub_public_key(tmp_path / "hub.pub", hub_key.public_bytes())
    assert (tmp_path / "station.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert load_station_public_key(tmp_path / "station.pub") == station_public_bytes(station)
    assert load_hub_public_key(tmp_path / "hub.pub") == hub_key.public_bytes()

    # the keys from the files seal and open a packet
    data = seal(
        packet,
        station_key=loaded_station,
        station_id=STATION,
        hub_public_key=load_hub_public_key(tmp_path / "hub.pub"),
    )
    station_keys = {STATION: load_station_public_key(tmp_path / "station.pub")}
    assert open_with(data, loaded_hub, station_keys).files == packet.files


def test_key_files_are_never_overwritten(tmp_path):
    generate_station_key(tmp_path / "station.key")
    before = (tmp_path / "station.key").read_bytes()
    for make in (generate_station_key, generate_hub_key):
        with pytest.raises(FileExistsError, match="never overwritten"):
            make(tmp_path / "station.key")
    with pytest.raises(KeyFileExists):
        save_station_public_key(tmp_path / "station.key", b"\x00" * 32)
    assert (tmp_path / "station.key").read_bytes() == before


@pytest.mark.parametrize("loose", [0o640, 0o604, 0o644])
def test_a_key_file_others_may_read_is_refused(tmp_path, loose):
    generate_station_key(tmp_path / "station.key")
    generate_hub_key(tmp_path / "hub.key")
    for name, load in (("station.key", load_station_key), ("hub.key", load_hub_private_key)):
        path = tmp_path / name
        path.chmod(loose)
        with pytest.raises(KeyFileExposed, match=re.escape(f"chmod 600 {path}")):
            load(path)
        with pytest.raises(PermissionError):
            load(path)


def test_a_key_file_of_the_wrong_kind_is_refused(tmp_path):
    generate_station_key(tmp_path / "station.key")
    generate_hub_key(tmp_path / "hub.key")
    with pytest.raises(KeyFileError, match="expected 1 PEM block"):
        load_station_key(tmp_path / "hub.key")
    with pytest.raises(KeyFileError, match="expected 2 PEM blocks"):
        load_hub_private_key(tmp_path / "station.key")
    fd = os.open(tmp_path / "garbage.key", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    os.close(fd)
    with pytest.raises(KeyFileError, match="not a readable private key"):
        load_station_key(tmp_path / "garbage.key")
