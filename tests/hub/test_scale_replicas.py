"""Two hub replicas on one PostgreSQL database and one S3 bucket, behind one station.

Replica A is the hub app under uvicorn in a thread of this process; replica B is
``kiosk-hub serve --database postgresql://... --blobs s3://...`` in a process of its
own, with a copy of the data folder (the keys and the TLS certificate; nothing else
is shared but the index and the bucket). The station talks to either over HTTPS,
trusting only the hub's certificate, as a kiosk does behind a load balancer.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import ssl
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from scale_servers import free_port

from hub import layout
from hub.postgres import PostgresIndex
from hub.s3 import S3Blobs
from hub.service import Hub
from hub.storage import ACCEPTED, REJECTED, packet_key, quarantine_key
from kiosk.packet.keys import load_hub_private_key, station_public_bytes
from kiosk.packet.seal import open_sealed

pytest_plugins = ["scale_fixtures"]

TUS = {"Tus-Resumable": "1.0.0", "Rekam-Protocol": "1"}
STATION = "JB-BOGOR-01"  # registered in conftest's hub_dir, with JB-BOGOR-02
OTHER_STATION = "JB-BOGOR-02"
REPLICA_START_TIMEOUT = 30.0


@dataclass
class District:
    a: object  # conftest's Served: .create, .patch, .send, .heartbeat, .client
    b: object
    index: PostgresIndex  # the auditor's own view of the shared state
    blobs: S3Blobs
    hub_dir: Path

    @property
    def replicas(self) -> tuple:
        return self.a, self.b


def _wait_healthy(client: httpx.Client, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + REPLICA_START_TIMEOUT
    while True:
        if process.poll() is not None:
            pytest.fail(f"kiosk-hub serve exited ({process.returncode}):\n{log.read_text()}")
        try:
            if client.get("/v1/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"kiosk-hub serve did not answer within {REPLICA_START_TIMEOUT} s")
        time.sleep(0.05)


@pytest.fixture
def district(serve, hub_dir, tmp_path, pg_url, s3_url):
    index = PostgresIndex(pg_url)
    blobs = S3Blobs(s3_url)
    a = serve(Hub.open(hub_dir, database=pg_url, blobs=s3_url))

    b_dir = tmp_path / "replica-b"
    shutil.copytree(hub_dir, b_dir)
    port = free_port()
    log = tmp_path / "replica-b.log"
    with log.open("wb") as output:  # the environment holds the S3 credentials (s3_env)
        process = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "serve", "--data-dir", str(b_dir),
             "--database", pg_url, "--blobs", s3_url, "--port", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    # conftest's Served (its station-side helpers), for a replica this process does not run
    url = f"https://127.0.0.1:{port}"
    b = type(a)(None, url, port, httpx.Client(base_url=url, verify=pinned(hub_dir), timeout=10))
    try:
        _wait_healthy(b.client, process, log)
        yield District(a, b, index, blobs, hub_dir)
    finally:
        b.client.close()
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        index.close()
        blobs.close()
    # the scale path keeps nothing on a replica's disk: no embedded index, no blob folder
    for folder in (hub_dir, b_dir):
        assert not (folder / "index.sqlite3").exists()
        assert not (folder / "blobs").exists()


def pinned(hub_dir: Path) -> ssl.SSLContext:
    """Trusts the hub's certificate and nothing else, as a station does."""
    return ssl.create_default_context(cafile=str(layout.tls_certificate_path(hub_dir)))


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def head(replica, data: bytes) -> httpx.Response:
    return replica.client.head(f"/v1/uploads/{digest(data)}", headers=TUS)


def enrollment_of(data: bytes) -> str:
    length = int.from_bytes(data[9:13], "big")
    return json.loads(data[13 : 13 + length])["enrollment_id"]


def send_alternating(replicas, data: bytes, pieces: int, first: int = 0) -> httpx.Response:
    """Create on one replica, then each piece to the next one, resuming from its HEAD."""
    created = replicas[first % 2].create(data)
    assert created.status_code == 201, created.text
    cuts = [len(data) * i // pieces for i in range(pieces + 1)]
    answer = None
    for i in range(pieces):
        replica = replicas[(first + 1 + i) % 2]
        offset = int(head(replica, data).headers["Upload-Offset"])
        assert offset == cuts[i]
        answer = replica.patch(data, offset, body=data[offset : cuts[i + 1]])
    return answer


def assert_verified(district: District, hub_keys: dict[str, bytes], sha256: str) -> str:
    """The accepted packet in the bucket: its SHA-256 and every check of open_sealed."""
    data = district.blobs.get(packet_key(sha256))
    assert digest(data) == sha256
    private = load_hub_private_key(layout.hub_key_path(district.hub_dir))
    return open_sealed(data, hub_private_key=private, station_public_keys=hub_keys).enrollment_id


@pytest.fixture
def hub_keys(station_keys) -> dict[str, bytes]:
    return {station: station_public_bytes(key) for station, key in station_keys.items()}


def test_an_upload_begun_on_one_replica_is_finished_on_the_other(district, sealed, hub_keys):
    data = sealed(STATION, 1)
    half = len(data) // 2
    created = district.a.create(data)
    assert (created.status_code, created.headers["Upload-Offset"]) == (201, "0")
    first = district.a.patch(data, 0, body=data[:half])
    assert (first.status_code, first.headers["Upload-Offset"]) == (204, str(half))
    # the piece is in the bucket, named in the index: nothing on replica A's disk
    assert len(district.blobs.keys(f"uploads/{digest(data)}/")) == 1

    resumed = head(district.b, data)
    assert resumed.headers["Upload-Offset"] == str(half)
    assert district.b.patch(data, 0, body=data[:10]).status_code == 409  # a stale offset
    done = district.b.patch(data, half)
    assert done.status_code == 200, done.text
    assert done.json()["verdict"] == ACCEPTED

    seen_on_a = district.a.client.get(f"/v1/packets/{enrollment_of(data)}")
    assert (seen_on_a.status_code, seen_on_a.json()["sha256"]) == (200, digest(data))
    assert district.blobs.keys("uploads/") == []
    assert district.index.uploads() == []
    assert assert_verified(district, hub_keys, digest(data)) == enrollment_of(data)


def test_the_same_packet_sent_to_both_at_once_is_stored_once(district, sealed, hub_keys):
    for sequence in range(1, 6):
        data = sealed(STATION, sequence)
        with ThreadPoolExecutor(2) as pool:
            created = list(pool.map(lambda r, d=data: r.create(d), district.replicas))
        assert [c.status_code for c in created] == [201, 201]
        with ThreadPoolExecutor(2) as pool:
            sent = list(pool.map(lambda r, d=data: r.patch(d, 0), district.replicas))
        statuses = sorted(answer.status_code for answer in sent)
        # the loser of the compare-and-set is told where the upload is (tus 409), or
        # reaches the end after the winner and reads the same verdict
        assert statuses in ([200, 200], [200, 409]), [a.text for a in sent]
        for answer in sent:
            if answer.status_code == 409:
                assert answer.headers["Upload-Offset"] == str(len(data))
            else:
                assert answer.json()["sha256"] == digest(data)
        for replica in district.replicas:  # asking again: the packet is at the hub
            again = replica.create(data)
            assert (again.status_code, again.json()["verdict"]) == (200, ACCEPTED)

    accepted = district.index.recent_verdicts(100)
    assert len(accepted) == 5 and all(v.verdict == ACCEPTED for v in accepted)
    assert len(district.blobs.keys("packets/")) == 5
    assert district.blobs.keys("uploads/") == []
    assert district.blobs.keys("quarantine/") == []


def test_a_packet_accepted_on_one_replica_is_a_duplicate_on_the_other(district, sealed):
    data = sealed(STATION, 7)
    assert district.a.send(data).status_code == 200
    duplicate = district.b.create(data)
    assert duplicate.status_code == 200
    assert (duplicate.json()["verdict"], duplicate.json()["sha256"]) == (ACCEPTED, digest(data))
    # the same enrollment sealed again (other bytes): a replay, refused by the other replica
    replay = sealed(STATION, 7, created_at=datetime(2026, 11, 28, 10, 0, tzinfo=UTC))
    assert digest(replay) != digest(data)
    refused = district.b.create(replay)
    assert refused.status_code == 409, refused.text
    assert district.index.verdict_for_enrollment(enrollment_of(data)).sha256 == digest(data)
    assert district.blobs.keys("packets/") == [packet_key(digest(data))]


def test_two_versions_of_an_enrollment_sent_to_both_at_once_one_is_accepted(district, sealed):
    one = sealed(STATION, 8)
    other = sealed(STATION, 8, created_at=datetime(2026, 11, 28, 10, 0, tzinfo=UTC))
    for replica, data in zip(district.replicas, (one, other), strict=True):
        assert replica.create(data).status_code == 201
    with ThreadPoolExecutor(2) as pool:
        sent = list(pool.map(lambda r, d: r.patch(d, 0), district.replicas, (one, other)))
    assert sorted(answer.status_code for answer in sent) == [200, 409], [a.text for a in sent]
    winner = (one, other)[[a.status_code for a in sent].index(200)]
    loser = other if winner is one else one
    assert district.index.verdict_for_enrollment(enrollment_of(one)).sha256 == digest(winner)
    assert district.index.verdict_for_sha(digest(loser)).verdict == REJECTED
    assert district.blobs.keys("packets/") == [packet_key(digest(winner))]
    assert district.blobs.keys("quarantine/") == [quarantine_key(digest(loser))]


def test_the_dashboard_of_one_replica_shows_a_heartbeat_sent_to_the_other(district, station_keys):
    sent_at = datetime(2026, 11, 28, 9, 45, 12, 250000, tzinfo=UTC)
    body = {
        "station_id": STATION,
        "sent_at": sent_at.isoformat(),
        "software": "rekam-kiosk 0.1.0",
        "modules": [],
        "backlog": {"direkam": 3, "terkirim": 1},
        "today": {"enrolled": 11},
    }
    assert district.a.heartbeat(station_keys[STATION], body).status_code == 204
    board = district.b.client.get("/v1/dashboard").json()
    (row,) = [row for row in board["stations"] if row["station_id"] == STATION]
    assert row["sent_at"] == sent_at.isoformat()
    assert row["backlog"]["direkam"] == 3 and row["backlog"]["terkirim"] == 1
    assert row["last_seen"] is not None
    # the same heartbeat again, to the other replica: a replay
    assert district.b.heartbeat(station_keys[STATION], body).status_code == 409
    newer = {**body, "sent_at": (sent_at + timedelta(seconds=30)).isoformat()}
    assert district.b.heartbeat(station_keys[STATION], newer).status_code == 204
    board = district.a.client.get("/v1/dashboard").json()
    (row,) = [row for row in board["stations"] if row["station_id"] == STATION]
    assert row["sent_at"] == newer["sent_at"]


def test_n_sealed_packets_are_n_verified_packets_in_the_index_and_the_bucket(
    district, sealed, hub_keys
):
    n = 12
    packets = [sealed((STATION, OTHER_STATION)[i % 2], 100 + i) for i in range(n)]

    def deliver(i: int) -> httpx.Response:
        return send_alternating(district.replicas, packets[i], pieces=3, first=i)

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(deliver, range(n)))
    assert [a.status_code for a in answers] == [200] * n, [a.text for a in answers]

    assert district.index.verdict_counts() == {
        STATION: {ACCEPTED: n // 2, REJECTED: 0},
        OTHER_STATION: {ACCEPTED: n // 2, REJECTED: 0},
    }
    stored = district.blobs.keys("packets/")
    assert stored == sorted(packet_key(digest(data)) for data in packets)
    opened = {assert_verified(district, hub_keys, digest(data)) for data in packets}
    assert opened == {enrollment_of(data) for data in packets}
    assert len(opened) == n
    assert district.index.uploads() == []
    assert district.blobs.keys("uploads/") == []
