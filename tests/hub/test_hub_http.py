"""The hub over real HTTPS on loopback: uploads (tus core), verdicts, heartbeats."""

from __future__ import annotations

import hashlib
import socket
import ssl
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support import wait_for

from hub import layout
from hub.service import Hub
from hub.storage import packet_key, quarantine_key
from kiosk.packet.keys import HubPrivateKey
from kiosk.packet.seal import Rejection

STATION = "JB-BOGOR-01"  # the first of conftest's stations
OTHER_STATION = "JB-BOGOR-02"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_packet_is_accepted_end_to_end_and_kept(serve, sealed):
    served = serve()
    data = sealed()
    created = served.create(data)
    assert created.status_code == 201
    assert created.headers["Location"] == f"/v1/uploads/{sha(data)}"
    assert created.headers["Upload-Offset"] == "0"
    assert created.headers["Rekam-Protocol"] == "1"

    done = served.patch(data, 0)
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["verdict"] == "accepted"
    assert body["sha256"] == sha(data)
    assert body["enrollment_id"] == f"{STATION}-20261128-000001"
    assert body["reason"] is None
    assert datetime.fromisoformat(body["received_at"]).tzinfo is not None

    assert served.hub.blobs.get(packet_key(sha(data))) == data
    assert served.hub.blobs.keys("uploads/") == []  # the pieces are gone once it is kept
    fetched = served.client.get(f"/v1/packets/{body['enrollment_id']}")
    assert fetched.status_code == 200
    assert fetched.json() == body | {"detail": None}
    head = served.client.head(f"/v1/uploads/{sha(data)}")
    assert head.status_code == 200
    assert head.headers["Upload-Offset"] == head.headers["Upload-Length"] == str(len(data))
    assert head.headers["Cache-Control"] == "no-store"


def test_unknown_upload_and_packet_are_404(serve):
    served = serve()
    assert served.client.head(f"/v1/uploads/{'0' * 64}").status_code == 404
    missing = served.client.get("/v1/packets/NOBODY-20261128-000001")
    assert missing.status_code == 404
    assert "NOBODY" in missing.json()["error"]


def _drop_mid_body(served, data: bytes, offset: int, sent: int, context: ssl.SSLContext) -> None:
    """A PATCH announcing the rest of ``data`` that sends only ``sent`` bytes, then the
    station's side closes: what a kiosk stopped mid-upload does.

    The close is a clean one (FIN after the bytes, then reading what the server sent,
    its TLS session tickets): closing with unread bytes would send a reset, and a reset
    discards what still sits in the hub's receive buffer, which is bytes in flight.
    """
    with (
        socket.create_connection(("127.0.0.1", served.port)) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(
            (
                f"PATCH /v1/uploads/{sha(data)} HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{served.port}\r\n"
                "Tus-Resumable: 1.0.0\r\nRekam-Protocol: 1\r\n"
                f"Upload-Offset: {offset}\r\n"
                "Content-Type: application/offset+octet-stream\r\n"
                f"Content-Length: {len(data) - offset}\r\n\r\n"
            ).encode()
            + data[offset : offset + sent]
        )
        tls.shutdown(socket.SHUT_WR)  # also leaves TLS: what is drained below stays raw
        tls.settimeout(10)
        while tls.recv(4096):
            pass


def test_a_patch_dropped_mid_body_keeps_what_arrived_and_resumes(serve, sealed, hub_dir, pinned):
    served = serve()
    data = sealed()
    assert served.create(data).status_code == 201
    half = len(data) // 2
    _drop_mid_body(served, data, 0, half, pinned(hub_dir))

    def offset() -> int:
        return int(served.client.head(f"/v1/uploads/{sha(data)}").headers["Upload-Offset"])

    assert wait_for(lambda: offset() == half, timeout=10), offset()
    # a second drop, from the hub's offset, costs only its own bytes in flight
    _drop_mid_body(served, data, half, 1000, pinned(hub_dir))
    assert wait_for(lambda: offset() == half + 1000, timeout=10), offset()

    done = served.patch(data, half + 1000)
    assert done.status_code == 200, done.text
    assert done.json()["verdict"] == "accepted"
    assert served.hub.blobs.get(packet_key(sha(data))) == data


def test_a_patch_that_stalls_keeps_what_arrived(serve, sealed, hub_dir, pinned):
    served = serve(idle_timeout=0.5)  # a 2G link that goes silent sends no FIN at all
    data = sealed()
    served.create(data)
    with (
        socket.create_connection(("127.0.0.1", served.port)) as raw,
        pinned(hub_dir).wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(
            (
                f"PATCH /v1/uploads/{sha(data)} HTTP/1.1\r\nHost: hub\r\n"
                "Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
                f"Content-Length: {len(data)}\r\n\r\n"
            ).encode()
            + data[:3000]
        )
        tls.settimeout(10)
        answer = ""  # the hub gives up on the body and says so
        while "stopped short" not in answer and (piece := tls.recv(4096)):
            answer += piece.decode()
    assert answer.startswith("HTTP/1.1 400")
    assert "stopped short" in answer
    head = served.client.head(f"/v1/uploads/{sha(data)}")
    assert head.headers["Upload-Offset"] == "3000"
    assert served.patch(data, 3000).json()["verdict"] == "accepted"


def test_an_upload_complete_but_not_judged_is_finished_by_an_empty_patch(serve, sealed):
    served = serve()
    data = sealed()
    served.create(data)
    served.hub.append(sha(data), 0, data)  # every byte kept, then the hub died before judging
    head = served.client.head(f"/v1/uploads/{sha(data)}")
    assert head.headers["Upload-Offset"] == str(len(data))
    done = served.patch(data, len(data), body=b"")
    assert done.status_code == 200
    assert done.json()["verdict"] == "accepted"
    assert served.hub.index.get_upload(sha(data)) is None


def test_a_wrong_offset_is_409_with_the_hubs_offset(serve, sealed):
    served = serve()
    data = sealed()
    served.create(data)
    wrong = served.patch(data, 5)
    assert wrong.status_code == 409
    assert wrong.headers["Upload-Offset"] == "0"
    part = served.patch(data, 0, body=data[:1000])
    assert part.status_code == 204
    assert part.headers["Upload-Offset"] == "1000"
    again = served.patch(data, 0, body=data[:1000])
    assert again.status_code == 409
    assert again.headers["Upload-Offset"] == "1000"
    assert served.patch(data, 1000).json()["verdict"] == "accepted"


def test_a_body_past_the_length_is_refused_and_nothing_kept(serve, sealed):
    served = serve()
    data = sealed()
    served.create(data)
    past = served.patch(data, 0, body=data + b"more")
    assert past.status_code == 400
    assert served.client.head(f"/v1/uploads/{sha(data)}").headers["Upload-Offset"] == "0"


def test_creating_again_finds_the_upload_and_its_offset(serve, sealed):
    served = serve()
    data = sealed()
    served.create(data)
    served.patch(data, 0, body=data[:777])
    again = served.create(data)
    assert again.status_code == 201
    assert again.headers["Upload-Offset"] == "777"


def test_a_duplicate_upload_returns_the_verdict_without_storing_twice(serve, sealed):
    served = serve()
    data = sealed()
    first = served.send(data).json()
    duplicate = served.create(data)
    assert duplicate.status_code == 200
    assert duplicate.json()["received_at"] == first["received_at"]
    assert served.hub.blobs.keys("packets/") == [packet_key(sha(data))]
    assert served.hub.blobs.keys("uploads/") == []
    assert served.hub.index.verdict_counts() == {STATION: {"accepted": 1, "rejected": 0}}
    # the last PATCH repeated (its answer was lost) gets the same verdict
    repeated = served.patch(data, len(data))
    assert repeated.status_code == 200
    assert repeated.json()["received_at"] == first["received_at"]


def test_a_replay_with_other_content_is_409_and_quarantined(serve, sealed):
    served = serve()
    original = sealed()
    served.send(original)
    replay = sealed(created_at=datetime(2026, 11, 29, tzinfo=UTC))  # same enrollment
    assert sha(replay) != sha(original)
    refused = served.create(replay)
    assert refused.status_code == 409
    assert "accepted already" in refused.json()["error"]
    kept = served.client.get(f"/v1/packets/{STATION}-20261128-000001").json()
    assert kept["sha256"] == sha(original)
    # the same replay arriving by USB stick is refused and kept for an investigator
    with pytest.raises(Exception, match="accepted already"):
        served.hub.submit(replay)
    assert served.hub.blobs.get(quarantine_key(sha(replay))) == replay
    assert served.hub.blobs.keys("packets/") == [packet_key(sha(original))]


def test_a_replay_found_at_completion_is_409_and_leaves_no_upload(serve, sealed):
    served = serve()
    original, other = sealed(), sealed(created_at=datetime(2026, 11, 29, tzinfo=UTC))
    assert served.create(other).status_code == 201  # begun before the original arrived
    assert served.send(original).json()["verdict"] == "accepted"
    late = served.patch(other, 0)
    assert late.status_code == 409
    assert "accepted already" in late.json()["error"]
    assert served.hub.index.get_upload(sha(other)) is None
    assert served.hub.blobs.keys("uploads/") == []
    assert served.hub.blobs.get(quarantine_key(sha(other))) == other


def _flip(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :]


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ("flipped byte", Rejection.DECRYPTION_FAILED),
        ("truncated", Rejection.TRUNCATED),
        ("unregistered key", Rejection.UNKNOWN_STATION_KEY),
        ("another hub", Rejection.ANOTHER_HUB),
        ("not a packet", Rejection.NOT_SEALED),
    ],
)
def test_a_tampered_packet_is_422_with_its_reason_and_kept_in_quarantine(
    serve, sealed, tamper, reason
):
    served = serve()
    data = {
        "flipped byte": lambda: _flip(sealed()),
        "truncated": lambda: sealed()[:-100],
        "unregistered key": lambda: sealed(key=Ed25519PrivateKey.generate()),
        "another hub": lambda: sealed(hub_public_key=HubPrivateKey.generate().public_bytes()),
        "not a packet": lambda: b"PK\x03\x04 a zip file, not a packet" * 10,
    }[tamper]()
    headers = served.upload_headers(data, STATION, f"{STATION}-20261128-000001")
    created = served.client.post("/v1/uploads", headers=headers)
    assert created.status_code == 201
    done = served.patch(data, 0)
    assert done.status_code == 422, done.text
    body = done.json()
    assert (body["verdict"], body["reason"]) == ("rejected", reason.value)
    assert body["error"]
    assert served.hub.blobs.get(quarantine_key(sha(data))) == data
    assert served.hub.blobs.keys("packets/") == []
    # asked again, the same packet gets the same answer, not a second judgement
    again = served.client.post("/v1/uploads", headers=headers)
    assert (again.status_code, again.json()["received_at"]) == (422, body["received_at"])
    # a good packet of the same enrollment is still accepted after the bad one
    assert served.send(sealed()).json()["verdict"] == "accepted"


def test_upload_refusals(serve, sealed):
    served = serve()
    data = sealed()
    stranger = served.client.post(
        "/v1/uploads", headers=served.upload_headers(data, "XX-NOWHERE-9", "XX-NOWHERE-9-1")
    )
    assert stranger.status_code == 403
    assert "not registered" in stranger.json()["error"]
    huge = served.upload_headers(data, STATION, "E") | {"Upload-Length": str(4 * 1024 * 1024 + 1)}
    assert served.client.post("/v1/uploads", headers=huge).status_code == 413
    bad = served.upload_headers(data, STATION, "E") | {"Upload-Metadata": "station !!!"}
    refused = served.client.post("/v1/uploads", headers=bad)
    assert refused.status_code == 400
    assert "base64" in refused.json()["error"]
    newer = served.upload_headers(data, STATION, "E") | {"Rekam-Protocol": "2"}
    assert served.client.post("/v1/uploads", headers=newer).status_code == 400
    nul = served.client.post("/v1/uploads", headers=served.upload_headers(data, STATION, "E\x00"))
    assert nul.status_code == 400  # PostgreSQL text cannot hold a NUL: refused before the index
    assert "enrollment: expected letters" in nul.json()["error"]
    wrong_type = served.client.patch(
        f"/v1/uploads/{sha(data)}", headers={"Upload-Offset": "0"}, content=b"x"
    )
    assert wrong_type.status_code == 415


def test_a_station_registered_while_the_hub_runs_is_known_at_once(serve, sealed, hub_dir):
    served = serve()
    key = Ed25519PrivateKey.generate()
    layout.add_station(hub_dir, "JB-NEW-03", key.public_key().public_bytes_raw())
    data = sealed("JB-NEW-03", 1, key=key)
    assert served.send(data, station="JB-NEW-03").json()["verdict"] == "accepted"


def _heartbeat(station: str, sent_at: datetime, **extra) -> dict:
    return {
        "station_id": station,
        "sent_at": sent_at.isoformat(),
        "software": "rekam-kiosk 0.1.0",
        "modules": [],
        "backlog": {"direkam": 2},
        "today": {"enrolled": 5},
        **extra,
    }


def test_heartbeats_are_checked_for_signature_and_replay(serve, station_keys):
    served = serve()
    key = station_keys[STATION]
    moment = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
    assert served.heartbeat(key, _heartbeat(STATION, moment)).status_code == 204
    replayed = served.heartbeat(key, _heartbeat(STATION, moment))
    assert replayed.status_code == 409
    assert "not newer" in replayed.json()["error"]
    older = served.heartbeat(key, _heartbeat(STATION, moment - timedelta(seconds=30)))
    assert older.status_code == 409
    later = moment + timedelta(seconds=30)
    assert served.heartbeat(key, _heartbeat(STATION, later)).status_code == 204

    other = station_keys[OTHER_STATION]
    forged = served.heartbeat(other, _heartbeat(STATION, later + timedelta(minutes=1)))
    assert forged.status_code == 403
    stranger = Ed25519PrivateKey.generate()
    unknown = served.heartbeat(stranger, _heartbeat("XX-NOWHERE-9", later))
    assert unknown.status_code == 403
    elsewhere = served.heartbeat(
        key, _heartbeat(OTHER_STATION, later + timedelta(minutes=2)), station=STATION
    )
    assert elsewhere.status_code == 400
    unsigned = served.client.post(f"/v1/stations/{STATION}/heartbeat", content=b"{}")
    assert unsigned.status_code == 403
    (kept,) = served.hub.index.heartbeats()
    assert kept.sent_at == later


def test_health(serve):
    served = serve()
    answer = served.client.get("/v1/health")
    assert answer.status_code == 200
    assert answer.json() == {"ok": True, "simulation": True}


def test_tls_is_the_pinned_certificate_only(serve, tmp_path, pinned):
    served = serve()
    other = tmp_path / "other"
    layout.init_hub(other)
    stranger = pinned(other)  # trusts another hub's certificate
    with (
        pytest.raises(ssl.SSLCertVerificationError),
        socket.create_connection(("127.0.0.1", served.port)) as raw,
    ):
        stranger.wrap_socket(raw, server_hostname="127.0.0.1")


def test_an_upload_resumes_on_another_replica(serve, sealed, hub_dir):
    first = serve()
    second = serve(Hub.open(hub_dir))  # another replica: the same index and blobs
    data = sealed()
    assert first.create(data).status_code == 201
    assert first.patch(data, 0, body=data[:5000]).status_code == 204
    head = second.client.head(f"/v1/uploads/{sha(data)}")
    assert head.headers["Upload-Offset"] == "5000"
    # the first replica does not take bytes the second already has
    assert second.patch(data, 5000, body=data[5000:9000]).status_code == 204
    late = first.patch(data, 5000, body=data[5000:9000])
    assert (late.status_code, late.headers["Upload-Offset"]) == (409, "9000")
    done = second.patch(data, 9000)
    assert done.json()["verdict"] == "accepted"
    assert first.client.get(f"/v1/packets/{STATION}-20261128-000001").json()["verdict"] == (
        "accepted"
    )


def test_a_replica_with_a_stale_stations_folder_does_not_undo_a_new_key(hub_dir, tmp_path):
    """Replicas share the index; each reads its own stations/ folder at start."""
    import os
    import shutil

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from kiosk.packet.keys import station_public_bytes

    stale_dir = tmp_path / "replica-b"
    shutil.copytree(hub_dir, stale_dir)  # replica B: a copy made before the new key
    index = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    blobs = f"file:///{tmp_path / 'shared-blobs'}"
    Hub.open(hub_dir, database=index, blobs=blobs).close()
    old_file = layout.stations_path(stale_dir) / f"{STATION}.pub"
    os.utime(old_file, (old_file.stat().st_mtime - 3600,) * 2)  # written an hour earlier
    new_key = station_public_bytes(Ed25519PrivateKey.generate())
    (layout.stations_path(hub_dir) / f"{STATION}.pub").unlink()
    layout.add_station(hub_dir, STATION, new_key)  # re-provisioned on replica A
    Hub.open(hub_dir, database=index, blobs=blobs).close()
    stale = Hub.open(stale_dir, database=index, blobs=blobs)  # replica B restarts
    try:
        assert stale.station_keys()[STATION] == new_key
    finally:
        stale.close()


def test_a_replica_finishing_an_upload_another_just_finished_returns_its_verdict(
    hub_dir, sealed, monkeypatch
):
    """Two replicas complete one upload at once: the loser finds the pieces gone (the
    winner dropped them) and answers the winner's verdict, not a 500."""
    loser, winner = Hub.open(hub_dir), Hub.open(hub_dir)  # two replicas, one index and bucket
    try:
        data = sealed()
        digest = hashlib.sha256(data).hexdigest()
        enrollment = f"{STATION}-20261128-000001"
        loser.create_upload(
            station_id=STATION, enrollment_id=enrollment, sha256=digest, length=len(data)
        )
        loser.append(digest, 0, data)
        listed = loser.index.upload_chunks

        def winner_finishes_meanwhile(sha256):
            chunks = listed(sha256)
            assert winner.finish(sha256).accepted
            return chunks

        monkeypatch.setattr(loser.index, "upload_chunks", winner_finishes_meanwhile)
        verdict = loser.finish(digest)
        assert verdict.accepted and verdict.sha256 == digest
        assert loser.blobs.get(packet_key(digest)) == data
        assert loser.blobs.keys(f"uploads/{digest}/") == []
    finally:
        loser.close()
        winner.close()
