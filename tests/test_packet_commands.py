"""`kiosk keys` and `kiosk packet inspect/verify`, run as a technician runs them."""

from __future__ import annotations

import json
import re
import stat

import pytest
from support import VALID_NIK, PacketCatcher

from kiosk.cli import main
from kiosk.packet.keys import load_hub_public_key, load_station_key
from kiosk.packet.seal import seal
from kiosk.simulate import enroll_one

STATION = "TEST-01"  # the station id make_flow gives


@pytest.fixture
def keys(tmp_path, capsys):
    assert main(["keys", "station", str(tmp_path / "station.key")]) == 0
    assert main(["keys", "hub", str(tmp_path / "hub.key")]) == 0
    capsys.readouterr()
    return tmp_path


@pytest.fixture
def sealed_file(keys, make_flow):
    flow = make_flow(sink=PacketCatcher())
    enroll_one(flow, VALID_NIK)
    (packet,) = flow.sink.packets
    data = seal(
        packet,
        station_key=load_station_key(keys / "station.key"),
        station_id=STATION,
        hub_public_key=load_hub_public_key(keys / "hub.key.pub"),
    )
    path = keys / f"{packet.enrollment_id}.rkp"
    path.write_bytes(data)
    return path


def verify(keys, path, station=STATION) -> list[str]:
    return [
        "packet",
        "verify",
        str(path),
        "--hub-key",
        str(keys / "hub.key"),
        "--station",
        f"{station}={keys / 'station.key.pub'}",
    ]


def test_keys_are_made_private_with_their_public_half_and_never_overwritten(tmp_path, capsys):
    for role in ("station", "hub"):
        path = tmp_path / f"{role}.key"
        assert main(["keys", role, str(path)]) == 0
        out = capsys.readouterr().out
        assert re.search(rf"{role} key [0-9a-f]{{16}}: private key in {path}", out)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert (tmp_path / f"{role}.key.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY")
        before = path.read_bytes()
        assert main(["keys", role, str(path)]) == 2
        assert "never overwritten" in capsys.readouterr().err
        assert path.read_bytes() == before


def test_inspect_shows_the_envelope_and_nothing_of_the_citizen(sealed_file, capsys):
    assert main(["packet", "inspect", str(sealed_file)]) == 0
    out = capsys.readouterr().out
    header = json.loads(out)
    assert header["station_id"] == STATION and header["enrollment_id"] in sealed_file.name
    assert VALID_NIK not in out and "finger" not in out


def test_verify_opens_and_checks_a_good_packet(keys, sealed_file, capsys):
    assert main(verify(keys, sealed_file)) == 0
    out = capsys.readouterr().out
    assert "OK: enrollment" in out and "10 fingerprints" in out and VALID_NIK not in out


def test_verify_says_exactly_what_is_wrong(keys, sealed_file, capsys):
    data = bytearray(sealed_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    sealed_file.write_bytes(bytes(data))
    assert main(verify(keys, sealed_file)) == 1
    assert "REJECTED: decryption failed" in capsys.readouterr().out


def test_verify_rejects_a_station_that_is_not_registered(keys, sealed_file, capsys):
    assert main(verify(keys, sealed_file, station="ANOTHER-01")) == 1
    assert "REJECTED: unknown station" in capsys.readouterr().out


def test_a_missing_file_or_key_is_one_line(keys, capsys):
    assert main(verify(keys, keys / "nothing.rkp")) == 2
    assert capsys.readouterr().err.strip().endswith("cannot be read (No such file or directory)")
    command = verify(keys, keys / "nothing.rkp")
    command[4] = str(keys / "no-hub.key")
    assert main(command) == 2
    assert "the private key cannot be read" in capsys.readouterr().err
