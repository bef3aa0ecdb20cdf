"""Pairing a station by a one-time code (hub/pairing.py, kiosk/provision/): `kiosk-hub pair`,
the exchange over real HTTPS on loopback, and every refusal changing nothing."""

from __future__ import annotations

import json
import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub import layout, pairing
from hub.cli import main
from kiosk.packet.keys import load_hub_public_key, station_public_bytes
from kiosk.provision import protocol
from kiosk.provision.client import PairingFailed, pair

NEW = "3201-KCM-CIBINONG-01"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return status, out, err


def code_for(capsys, hub_dir: Path, station: str = NEW, *options: str) -> str:
    status, out, err = run(capsys, "pair", "--station", station, "--data-dir", hub_dir, *options)
    assert status == 0, err
    found = re.search(r": ([A-Z2-7]{5}-[A-Z2-7]{5})\n", out)
    assert found, out
    return found.group(1)


def pending_files(hub_dir: Path) -> dict[str, bytes]:
    folder = pairing.pairing_path(hub_dir)
    return {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def station_key() -> bytes:
    return station_public_bytes(Ed25519PrivateKey.generate())


def test_pair_prints_a_grouped_code_and_keeps_only_a_slow_hash_of_it(hub_dir, capsys):
    status, out, _ = run(
        capsys, "pair", "--station", NEW, "--region", "3201", "--data-dir", hub_dir
    )
    assert status == 0
    code = re.search(r"([A-Z2-7]{5}-[A-Z2-7]{5})", out).group(1)
    assert "valid once, until" in out and NEW in out
    record_file = pairing.pairing_path(hub_dir) / f"{NEW}.json"
    text = record_file.read_text()
    assert stat.S_IMODE(record_file.stat().st_mode) == 0o600
    for form in (code, code.replace("-", ""), code.lower()):
        assert form not in text
    record = json.loads(text)
    assert record["region"] == "3201" and record["kdf"]["name"] == "scrypt"
    assert record["kdf"]["n"] >= 2**15  # slow enough that a recorded exchange is no shortcut
    assert protocol.unb64(record["key"], "key") == protocol.derive_key(code, NEW)
    expires = datetime.fromisoformat(record["expires_at"])
    assert timedelta(hours=23) < expires - datetime.now(UTC) <= timedelta(hours=24)


def test_codes_are_random_and_read_back_forgivingly():
    codes = {protocol.new_code() for _ in range(200)}
    assert len(codes) == 200
    code = "K7QMX-4RTPA"
    assert protocol.normalise_code(" k7qmx 4rtpa ") == "K7QMX4RTPA"
    # a 0 typed for an O, a 1 for an I: the letters base32 means
    assert protocol.normalise_code("K7QM0-4RTPA") == protocol.normalise_code("K7QMO-4RTPA")
    assert protocol.derive_key(code, NEW) == protocol.derive_key("k7qmx4rtpa", NEW)
    assert protocol.derive_key(code, NEW) != protocol.derive_key(code, "3201-KCM-OTHER-01")
    for bad in ("", "K7QMX", "K7QMX-4RTPAA", "K7QMX-4RTP!"):
        with pytest.raises(ValueError, match="10 letters"):
            protocol.normalise_code(bad)


def test_pair_refuses_a_bad_station_id_or_a_missing_hub_in_one_line(tmp_path, hub_dir, capsys):
    status, _, err = run(capsys, "pair", "--station", "../etc", "--data-dir", hub_dir)
    assert status == 2 and err.count("\n") == 1 and "station id" in err
    status, _, err = run(capsys, "pair", "--station", NEW, "--data-dir", tmp_path / "none")
    assert status == 2 and "kiosk-hub init" in err


def test_a_station_pairs_over_https_and_the_hub_registers_its_key(
    hub_dir, serve, capsys, station_key
):
    code = code_for(capsys, hub_dir, NEW, "--region", "3201")
    served = serve()
    trust = pair(served.url, NEW, "3201", code.lower(), station_key)
    assert trust.hub_key == load_hub_public_key(layout.hub_public_key_path(hub_dir))
    assert trust.tls_certificate == layout.tls_certificate_path(hub_dir).read_bytes()
    assert layout.registered_stations(hub_dir)[NEW] == station_key
    assert served.hub.index.station_keys()[NEW] == station_key
    dashboard = served.client.get("/v1/dashboard").json()
    assert NEW in [row["station_id"] for row in dashboard["stations"]]
    # the code is spent: moved to used/, the derived key forgotten
    assert not (pairing.pairing_path(hub_dir) / f"{NEW}.json").exists()
    [used] = (pairing.pairing_path(hub_dir) / "used").glob(f"{NEW}.*.json")
    record = json.loads(used.read_text())
    assert "key" not in record and record["used_at"] and record["station_key_id"]


def test_a_wrong_code_is_refused_and_changes_nothing(hub_dir, serve, capsys, station_key):
    code = code_for(capsys, hub_dir)
    before = pending_files(hub_dir)
    served = serve()
    wrong = "AAAAA-AAAAA" if code != "AAAAA-AAAAA" else "BBBBB-BBBBB"
    with pytest.raises(PairingFailed, match="wrong for station") as refused:
        pair(served.url, NEW, "3201", wrong, station_key)
    assert refused.value.reason == protocol.WRONG_CODE
    assert str(refused.value).count("\n") == 0
    assert NEW not in layout.registered_stations(hub_dir)
    assert NEW not in served.hub.index.station_keys()
    assert pending_files(hub_dir) == before
    # the right code still works afterwards
    pair(served.url, NEW, "3201", code, station_key)
    assert NEW in layout.registered_stations(hub_dir)


def test_a_code_for_one_station_does_not_pair_another(hub_dir, serve, capsys, station_key):
    code = code_for(capsys, hub_dir, NEW)
    code_for(capsys, hub_dir, "3201-KCM-OTHER-01")
    served = serve()
    with pytest.raises(PairingFailed) as refused:
        pair(served.url, "3201-KCM-OTHER-01", "3201", code, station_key)
    assert refused.value.reason == protocol.WRONG_CODE
    assert "3201-KCM-OTHER-01" not in layout.registered_stations(hub_dir)


def test_an_expired_code_is_refused(hub_dir, serve, station_key):
    code, _ = pairing.make_code(
        hub_dir, NEW, valid=timedelta(hours=1), now=datetime.now(UTC) - timedelta(hours=2)
    )
    served = serve()
    with pytest.raises(PairingFailed, match="expired") as refused:
        pair(served.url, NEW, "3201", code, station_key)
    assert refused.value.reason == protocol.EXPIRED
    assert NEW not in layout.registered_stations(hub_dir)


def test_a_used_code_is_refused_the_second_time(hub_dir, serve, capsys, station_key):
    code = code_for(capsys, hub_dir)
    served = serve()
    pair(served.url, NEW, "3201", code, station_key)
    other = station_public_bytes(Ed25519PrivateKey.generate())
    with pytest.raises(PairingFailed, match="used already") as refused:
        pair(served.url, NEW, "3201", code, other)
    assert refused.value.reason == protocol.USED
    assert layout.registered_stations(hub_dir)[NEW] == station_key  # not the second key


def test_a_station_without_a_code_and_another_region_are_refused(
    hub_dir, serve, capsys, station_key
):
    served = serve()
    with pytest.raises(PairingFailed, match="no pairing code") as refused:
        pair(served.url, NEW, "3201", "K7QMX-4RTPA", station_key)
    assert refused.value.reason == protocol.NO_CODE
    code = code_for(capsys, hub_dir, NEW, "--region", "3201")
    with pytest.raises(PairingFailed, match="region 3201, not 3273") as refused:
        pair(served.url, NEW, "3273", code, station_key)
    assert refused.value.reason == protocol.OTHER_REGION
    assert NEW not in layout.registered_stations(hub_dir)
    pair(served.url, NEW, "3201", code, station_key)  # unspent by the refusal


def test_a_new_code_replaces_the_previous_one(hub_dir, serve, capsys, station_key):
    first = code_for(capsys, hub_dir)
    second = code_for(capsys, hub_dir)
    served = serve()
    if first != second:
        with pytest.raises(PairingFailed) as refused:
            pair(served.url, NEW, "3201", first, station_key)
        assert refused.value.reason == protocol.WRONG_CODE
    pair(served.url, NEW, "3201", second, station_key)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"station_id": "../x", "region": "3201"}',
        b'{"station_id": "JB-1", "region": "3201", "station_key": "AAAA", "nonce": "", "mac": ""}',
    ],
)
def test_a_malformed_request_is_a_400_and_changes_nothing(hub_dir, serve, capsys, body):
    code_for(capsys, hub_dir)
    before = pending_files(hub_dir)
    served = serve()
    response = served.client.post(protocol.PAIRING_PATH, content=body)
    assert response.status_code == 400
    assert response.json()["error"]
    assert pending_files(hub_dir) == before


def test_the_answer_carries_the_hubs_last_sequence_for_that_station_only(
    hub_dir, serve, sealed, station_keys, capsys
):
    """A re-flashed station learns the highest sequence the hub accepted from its id."""
    served = serve()
    for station, sequence in (("JB-BOGOR-01", 41), ("JB-BOGOR-01", 42), ("JB-BOGOR-02", 900)):
        assert served.send(sealed(station, sequence), station).status_code == 200
    # a packet the hub refused (not the station's key) does not count, whatever it says
    forged = sealed("JB-BOGOR-01", 5000, key=Ed25519PrivateKey.generate())
    assert served.send(forged).status_code == 422
    assert served.hub.index.last_sequences() == {"JB-BOGOR-01": 42, "JB-BOGOR-02": 900}
    assert served.hub.index.last_sequences("JB-BOGOR-02") == {"JB-BOGOR-02": 900}
    card = station_public_bytes(Ed25519PrivateKey.generate())  # the new card's key
    trust = pair(served.url, "JB-BOGOR-01", "3201", code_for(capsys, hub_dir, "JB-BOGOR-01"), card)
    assert trust.last_sequence == 42
    assert layout.registered_stations(hub_dir)["JB-BOGOR-01"] == card
    # a station the hub has nothing from starts from 0
    trust = pair(served.url, NEW, "3201", code_for(capsys, hub_dir, NEW), card)
    assert trust.last_sequence == 0


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda body: {**body, "last_sequence": 0}, id="lowered"),
        pytest.param(
            lambda body: {**body, "last_sequence": body["last_sequence"] + 1}, id="raised"
        ),
        pytest.param(
            lambda body: {k: v for k, v in body.items() if k != "last_sequence"}, id="dropped"
        ),
        pytest.param(lambda body: {**body, "last_sequence": "42"}, id="text"),
    ],
)
def test_a_tampered_last_sequence_fails_the_stations_mac_check(
    hub_dir, serve, sealed, capsys, station_key, monkeypatch, tamper
):
    """An on-path attacker who lowers the hub's number (so the new card reuses ids the hub
    accepted) or strips it is caught by the code's MAC, as a swapped certificate is."""
    from kiosk.provision import client

    served = serve()
    assert served.send(sealed("JB-BOGOR-01", 42)).status_code == 200
    real_post = client._post

    def on_path(base, body, context):
        answer = real_post(base, body, context)
        return httpx.Response(200, json=tamper(answer.json()))

    monkeypatch.setattr(client, "_post", on_path)
    code = code_for(capsys, hub_dir, "JB-BOGOR-01")
    with pytest.raises(PairingFailed, match="does not carry this pairing code's proof"):
        pair(served.url, "JB-BOGOR-01", "3201", code, station_key)


def test_the_answers_mac_covers_last_sequence():
    key = protocol.derive_key("K7QMX-4RTPA", NEW)
    fields = (key, NEW, "3201", b"k" * 32, b"n" * 16, b"hub", b"certificate")
    assert protocol.answer_mac(*fields, 42) != protocol.answer_mac(*fields, 0)
    assert protocol.answer_mac(*fields, 42) == protocol.answer_mac(*fields, 42)
