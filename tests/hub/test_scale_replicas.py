"""Two hub replicas on one PostgreSQL database and one S3 bucket, behind one station.

Replica A is the hub app under uvicorn in a thread of this process; replica B is
``kiosk-hub serve --database postgresql://... --blobs s3://...`` in a process of its
own, with a copy of A's data folder (the keys, the TLS certificate, the stations):
nothing else is shared but the index and the bucket. The station talks to either
over HTTPS, trusting only the hub's certificate, as a kiosk does behind a load
balancer. The district is made once for the module; each test has stations of its
own and looks only at what its stations sent.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from scale_servers import PostgresServer, SeaweedServer, free_port, shared_storage

from hub import layout
from hub.app import create_app
from hub.cli import listening_socket
from hub.postgres import PostgresIndex
from hub.s3 import S3Blobs
from hub.service import HEARTBEAT_LABEL, Hub
from hub.storage import ACCEPTED, INDEX_FILE, REJECTED, packet_key, quarantine_key
from kiosk.packet.keys import load_hub_private_key, load_hub_public_key, station_public_bytes
from kiosk.packet.seal import open_sealed, seal

pytest_plugins = ["scale_fixtures"]

TUS = {"Tus-Resumable": "1.0.0", "Rekam-Protocol": "1"}
SEALED_AT = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
START_TIMEOUT = 30.0
_station_numbers = itertools.count(1)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def enrollment_of(data: bytes) -> str:
    length = int.from_bytes(data[9:13], "big")
    return json.loads(data[13 : 13 + length])["enrollment_id"]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@dataclass
class Replica:
    """One hub replica as a station sees it: the protocol's requests, over pinned HTTPS."""

    name: str
    client: httpx.Client

    def create(self, data: bytes, enrollment: str | None = None) -> httpx.Response:
        header = json.loads(data[13 : 13 + int.from_bytes(data[9:13], "big")])
        metadata = (
            f"station {_b64(header['station_id'])},"
            f"enrollment {_b64(enrollment or header['enrollment_id'])},"
            f"sha256 {_b64(digest(data))}"
        )
        headers = {**TUS, "Upload-Length": str(len(data)), "Upload-Metadata": metadata}
        return self.client.post("/v1/uploads", headers=headers)

    def head(self, data: bytes) -> httpx.Response:
        return self.client.head(f"/v1/uploads/{digest(data)}", headers=TUS)

    def patch(self, data: bytes, offset: int, body: bytes | None = None) -> httpx.Response:
        headers = {
            **TUS,
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
        }
        content = data[offset:] if body is None else body
        return self.client.patch(f"/v1/uploads/{digest(data)}", headers=headers, content=content)

    def send(self, data: bytes) -> httpx.Response:
        created = self.create(data)
        assert created.status_code == 201, created.text
        return self.patch(data, int(created.headers["Upload-Offset"]))

    def heartbeat(self, key: Ed25519PrivateKey, body: dict) -> httpx.Response:
        payload = json.dumps(body).encode()
        signature = base64.b64encode(key.sign(HEARTBEAT_LABEL + payload)).decode()
        return self.client.post(
            f"/v1/stations/{body['station_id']}/heartbeat",
            content=payload,
            headers={**TUS, "Rekam-Signature": signature, "Content-Type": "application/json"},
        )

    def dashboard_row(self, station_id: str) -> dict:
        board = self.client.get("/v1/dashboard").json()
        (row,) = [row for row in board["stations"] if row["station_id"] == station_id]
        return row


def _pinned(hub_dir: Path) -> ssl.SSLContext:
    """Trusts the hub's certificate and nothing else, as a station does."""
    return ssl.create_default_context(cafile=str(layout.tls_certificate_path(hub_dir)))


class ThreadReplica:
    """The hub app under uvicorn, in a thread of this process."""

    def __init__(self, hub: Hub, hub_dir: Path) -> None:
        self.hub = hub
        sock = listening_socket("127.0.0.1", 0)
        port = sock.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(
                create_app(hub, body_idle_timeout=5),
                ssl_certfile=str(layout.tls_certificate_path(hub_dir)),
                ssl_keyfile=str(layout.tls_key_path(hub_dir)),
                log_level="warning",
            )
        )
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, name="replica-a", daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                pytest.fail("replica A (uvicorn in a thread) did not start")
            time.sleep(0.02)
        self.url = f"https://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.hub.close()


class ProcessReplica:
    """``kiosk-hub serve`` with --database and --blobs, in a process of its own."""

    def __init__(self, hub_dir: Path, database: str, blobs: str, log: Path) -> None:
        port = free_port()
        self.log = log
        with log.open("wb") as output:  # the S3 credentials come in the environment
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hub.cli", "serve", "--data-dir", str(hub_dir),
                 "--database", database, "--blobs", blobs, "--port", str(port)],
                stdout=output,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.url = f"https://127.0.0.1:{port}"

    def wait_healthy(self, client: httpx.Client) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                pytest.fail(
                    f"kiosk-hub serve exited ({self.process.returncode}):\n{self.log.read_text()}"
                )
            try:
                if client.get("/v1/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"kiosk-hub serve did not answer within {START_TIMEOUT} s")
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class District:
    a: Replica
    b: Replica
    index: PostgresIndex  # the auditor's own view of the shared index and bucket
    blobs: S3Blobs
    folders: tuple[Path, Path]  # each replica's data folder
    database: str  # the URLs every replica is given
    bucket: str

    @property
    def replicas(self) -> tuple[Replica, Replica]:
        return self.a, self.b

    def open(self, data: bytes) -> str:
        """The accepted packet in the bucket, checked: its SHA-256 and all of open_sealed."""
        stored = self.blobs.get(packet_key(digest(data)))
        assert stored == data
        packet = open_sealed(
            stored,
            hub_private_key=load_hub_private_key(layout.hub_key_path(self.folders[0])),
            station_public_keys=self.index.station_keys(),
        )
        return packet.enrollment_id


@pytest.fixture(scope="module")
def district(
    postgres: PostgresServer, seaweed: SeaweedServer, tmp_path_factory
) -> Iterator[District]:
    root = tmp_path_factory.mktemp("district")
    with shared_storage(postgres, seaweed, root) as shared, contextlib.ExitStack() as stack:
        folders, database, bucket = shared.folders, shared.database, shared.bucket
        process = ProcessReplica(folders[1], database, bucket, root / "replica-b.log")
        stack.callback(process.stop)
        thread = ThreadReplica(Hub.open(folders[0], database=database, blobs=bucket), folders[0])
        stack.callback(thread.stop)
        a, b = (
            Replica(name, httpx.Client(base_url=url, verify=_pinned(folders[0]), timeout=20))
            for name, url in (("A", thread.url), ("B", process.url))
        )
        stack.callback(a.client.close)
        stack.callback(b.client.close)
        process.wait_healthy(b.client)
        yield District(a, b, shared.index, shared.blobs, folders, database, bucket)
    # the scale path keeps nothing on a replica's disk: no embedded index, no blob folder
    for folder in folders:
        assert not (folder / INDEX_FILE).exists()
        assert not (folder / "blobs").exists()


@dataclass
class Station:
    """A station of the district: registered in every replica's data folder."""

    station_id: str
    key: Ed25519PrivateKey
    hub_public: bytes
    make_packet: object

    def seal(self, sequence: int, sealed_at: datetime = SEALED_AT) -> bytes:
        return seal(
            self.make_packet(self.station_id, sequence),
            station_key=self.key,
            station_id=self.station_id,
            hub_public_key=self.hub_public,
            created_at=sealed_at,
        )


@pytest.fixture
def new_station(district, make_packet):
    """new_station(): a new station, its key in every replica's stations/ (the way a
    district registers a station: each replica registers it in the shared index on the
    first request it sees from it)."""

    def make() -> Station:
        station_id = f"JB-SCALE-{next(_station_numbers):02d}"
        key = Ed25519PrivateKey.generate()
        for folder in district.folders:
            layout.add_station(folder, station_id, station_public_bytes(key))
        hub_public = load_hub_public_key(layout.hub_public_key_path(district.folders[0]))
        return Station(station_id, key, hub_public, make_packet)

    return make


def send_alternating(replicas, data: bytes, pieces: int, first: int = 0) -> httpx.Response:
    """Create on one replica, then each piece to the next one, resuming from its HEAD."""
    created = replicas[first % 2].create(data)
    assert created.status_code == 201, created.text
    cuts = [len(data) * i // pieces for i in range(pieces + 1)]
    answer = None
    for i in range(pieces):
        replica = replicas[(first + 1 + i) % 2]
        offset = int(replica.head(data).headers["Upload-Offset"])
        assert offset == cuts[i]
        answer = replica.patch(data, offset, body=data[offset : cuts[i + 1]])
    return answer


# -- the tests -------------------------------------------------------------------------------


def test_an_upload_begun_on_one_replica_is_finished_on_the_other(district, new_station):
    data = new_station().seal(1)
    half = len(data) // 2
    created = district.a.create(data)
    assert (created.status_code, created.headers["Upload-Offset"]) == (201, "0")
    first = district.a.patch(data, 0, body=data[:half])
    assert (first.status_code, first.headers["Upload-Offset"]) == (204, str(half))
    # the piece is in the bucket, named in the shared index: nothing on replica A's disk
    assert len(district.blobs.keys(f"uploads/{digest(data)}/")) == 1
    assert district.index.get_upload(digest(data)).offset == half

    assert district.b.head(data).headers["Upload-Offset"] == str(half)
    stale = district.b.patch(data, 0, body=data[:10])
    assert (stale.status_code, stale.headers["Upload-Offset"]) == (409, str(half))
    done = district.b.patch(data, half)
    assert done.status_code == 200, done.text
    assert (done.json()["verdict"], done.json()["sha256"]) == (ACCEPTED, digest(data))

    seen_on_a = district.a.client.get(f"/v1/packets/{enrollment_of(data)}")
    assert (seen_on_a.status_code, seen_on_a.json()["sha256"]) == (200, digest(data))
    assert district.blobs.keys(f"uploads/{digest(data)}/") == []
    assert district.index.get_upload(digest(data)) is None
    assert district.open(data) == enrollment_of(data)


def test_the_same_packet_sent_to_both_at_once_is_stored_once(district, new_station):
    station = new_station()
    before = set(district.blobs.keys("packets/"))
    packets = [station.seal(sequence) for sequence in range(1, 6)]
    for data in packets:
        with ThreadPoolExecutor(2) as pool:
            created = list(pool.map(lambda r, d=data: r.create(d), district.replicas))
        assert [c.status_code for c in created] == [201, 201], [c.text for c in created]
        with ThreadPoolExecutor(2) as pool:
            sent = list(pool.map(lambda r, d=data: r.patch(d, 0), district.replicas))
        # the loser of the compare-and-set is told where the upload is (tus 409), or
        # reaches the end after the winner and reads the same verdict
        statuses = sorted(answer.status_code for answer in sent)
        assert statuses in ([200, 200], [200, 409]), [a.text for a in sent]
        for answer in sent:
            if answer.status_code == 409:
                assert answer.headers["Upload-Offset"] == str(len(data))
            else:
                assert answer.json()["sha256"] == digest(data)
        for replica in district.replicas:  # asking again, anywhere: the packet is at the hub
            again = replica.create(data)
            assert (again.status_code, again.json()["verdict"]) == (200, ACCEPTED)
        assert district.blobs.keys(f"uploads/{digest(data)}/") == []

    counts = district.index.verdict_counts()[station.station_id]
    assert counts == {ACCEPTED: 5, REJECTED: 0}
    added = set(district.blobs.keys("packets/")) - before
    assert added == {packet_key(digest(data)) for data in packets}
    quarantined = set(district.blobs.keys("quarantine/"))
    assert not quarantined & {quarantine_key(digest(data)) for data in packets}


def test_a_packet_accepted_on_one_replica_is_a_duplicate_on_the_other(district, new_station):
    station = new_station()
    data = station.seal(7)
    assert district.a.send(data).status_code == 200
    duplicate = district.b.create(data)
    assert duplicate.status_code == 200
    assert (duplicate.json()["verdict"], duplicate.json()["sha256"]) == (ACCEPTED, digest(data))
    # the same enrollment sealed again (other bytes): a replay, refused by the other replica
    replay = station.seal(7, sealed_at=SEALED_AT + timedelta(minutes=30))
    assert digest(replay) != digest(data)
    refused = district.b.create(replay)
    assert refused.status_code == 409, refused.text
    assert district.index.verdict_for_enrollment(enrollment_of(data)).sha256 == digest(data)
    assert district.index.verdict_counts()[station.station_id] == {ACCEPTED: 1, REJECTED: 0}


def test_two_versions_of_an_enrollment_sent_to_both_at_once_one_is_accepted(district, new_station):
    station = new_station()
    for round_ in range(3):
        one = station.seal(round_ + 1)
        other = station.seal(round_ + 1, sealed_at=SEALED_AT + timedelta(minutes=30))
        for replica, data in zip(district.replicas, (one, other), strict=True):
            assert replica.create(data).status_code == 201
        with ThreadPoolExecutor(2) as pool:
            sent = list(pool.map(lambda r, d: r.patch(d, 0), district.replicas, (one, other)))
        assert sorted(a.status_code for a in sent) == [200, 409], [a.text for a in sent]
        winner, loser = (one, other) if sent[0].status_code == 200 else (other, one)
        assert district.index.verdict_for_enrollment(enrollment_of(one)).sha256 == digest(winner)
        assert district.index.verdict_for_sha(digest(loser)).verdict == REJECTED
        assert district.blobs.get(packet_key(digest(winner))) == winner
        with pytest.raises(KeyError):
            district.blobs.get(packet_key(digest(loser)))
        assert district.blobs.get(quarantine_key(digest(loser))) == loser
    assert district.index.verdict_counts()[station.station_id] == {ACCEPTED: 3, REJECTED: 3}


def test_the_losing_version_leaves_no_upload_behind(district, new_station):
    """Its bytes are in quarantine; its upload and pieces are gone from index and bucket."""
    station = new_station()
    one = station.seal(1)
    other = station.seal(1, sealed_at=SEALED_AT + timedelta(minutes=30))
    for replica, data in zip(district.replicas, (one, other), strict=True):
        assert replica.create(data).status_code == 201
    with ThreadPoolExecutor(2) as pool:
        sent = list(pool.map(lambda r, d: r.patch(d, 0), district.replicas, (one, other)))
    assert sorted(a.status_code for a in sent) == [200, 409], [a.text for a in sent]
    for data in (one, other):
        assert district.index.get_upload(digest(data)) is None
        assert district.blobs.keys(f"uploads/{digest(data)}/") == []


def test_the_dashboard_of_one_replica_shows_a_heartbeat_sent_to_the_other(district, new_station):
    station = new_station()
    sent_at = datetime(2026, 11, 28, 9, 45, 12, 250000, tzinfo=UTC)
    body = {
        "station_id": station.station_id,
        "sent_at": sent_at.isoformat(),
        "software": "rekam-kiosk 0.1.0",
        "modules": [],
        "backlog": {"direkam": 3, "terkirim": 1},
        "today": {"enrolled": 11},
    }
    assert district.a.heartbeat(station.key, body).status_code == 204
    row = district.b.dashboard_row(station.station_id)
    assert row["sent_at"] == sent_at.isoformat()
    assert (row["backlog"]["direkam"], row["backlog"]["terkirim"]) == (3, 1)
    assert row["last_seen"] is not None and row["software"] == "rekam-kiosk 0.1.0"
    # the same heartbeat again, to the other replica: a replay
    assert district.b.heartbeat(station.key, body).status_code == 409
    newer = {**body, "sent_at": (sent_at + timedelta(seconds=30)).isoformat()}
    assert district.b.heartbeat(station.key, newer).status_code == 204
    assert district.a.dashboard_row(station.station_id)["sent_at"] == newer["sent_at"]


def test_n_sealed_packets_are_n_verified_packets_in_the_index_and_the_bucket(district, new_station):
    n = 12
    stations = (new_station(), new_station())
    packets = [stations[i % 2].seal(100 + i) for i in range(n)]
    before = set(district.blobs.keys("packets/"))

    def deliver(i: int) -> httpx.Response:
        return send_alternating(district.replicas, packets[i], pieces=3, first=i)

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(deliver, range(n)))
    assert [a.status_code for a in answers] == [200] * n, [a.text for a in answers]

    counts = district.index.verdict_counts()
    for station in stations:
        assert counts[station.station_id] == {ACCEPTED: n // 2, REJECTED: 0}
    added = set(district.blobs.keys("packets/")) - before
    assert added == {packet_key(digest(data)) for data in packets}
    opened = {district.open(data) for data in packets}
    assert opened == {enrollment_of(data) for data in packets} and len(opened) == n
    ours = {station.station_id for station in stations}
    assert [upload for upload in district.index.uploads() if upload.station_id in ours] == []
    for data in packets:
        assert district.blobs.keys(f"uploads/{digest(data)}/") == []


@pytest.mark.parametrize("broken", ["database", "blobs"])
def test_a_replica_that_cannot_reach_the_index_or_the_bucket_says_which(district, s3_env, broken):
    dead = f"127.0.0.1:{free_port()}"
    database = f"postgresql://hub:s3cret@{dead}/rekam" if broken == "database" else None
    blobs = f"s3://rekam-packets?endpoint=http://{dead}" if broken == "blobs" else None
    options = ["--database", database or district.database, "--blobs", blobs or district.bucket]
    done = subprocess.run(
        [sys.executable, "-m", "hub.cli", "serve", "--data-dir", str(district.folders[1]),
         "--port", str(free_port()), *options],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert dead in line
    assert ("cannot connect" if broken == "database" else "unreachable") in line
    assert "s3cret" not in line


def test_a_patch_cut_off_on_one_replica_resumes_on_the_other(district, new_station):
    """The link drops in the middle of a PATCH to A: A keeps what arrived, in the bucket,
    and the station, now routed to B, resumes from there."""
    data = new_station().seal(1)
    half = len(data) // 2
    assert district.a.create(data).status_code == 201
    head = (
        f"PATCH /v1/uploads/{digest(data)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Tus-Resumable: 1.0.0\r\nRekam-Protocol: 1\r\nUpload-Offset: 0\r\n"
        "Content-Type: application/offset+octet-stream\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    port = district.a.client.base_url.port
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        _pinned(district.folders[0]).wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(head + data[:half])
        tls.unwrap()  # a clean close: what the kernel took reaches the hub

    def offset_on_b() -> int:
        return int(district.b.head(data).headers["Upload-Offset"])

    deadline = time.monotonic() + 10
    while offset_on_b() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert offset_on_b() == half
    done = district.b.patch(data, half)
    assert (done.status_code, done.json()["verdict"]) == (200, ACCEPTED), done.text
    assert district.open(data) == enrollment_of(data)


def test_a_replica_killed_mid_upload_loses_nothing_it_answered(district, new_station, tmp_path):
    """A third replica takes half a packet, answers 204, and is killed (SIGKILL): the
    station goes on at another replica from the offset it was given."""
    station = new_station()
    folder = tmp_path / "replica-c"
    shutil.copytree(district.folders[1], folder)  # with the station in stations/
    doomed = ProcessReplica(folder, district.database, district.bucket, tmp_path / "c.log")
    with httpx.Client(
        base_url=doomed.url, verify=_pinned(district.folders[0]), timeout=20
    ) as client:
        try:
            doomed.wait_healthy(client)
            c = Replica("C", client)
            data = station.seal(1)
            half = len(data) // 3
            assert c.create(data).status_code == 201
            taken = c.patch(data, 0, body=data[:half])
            assert (taken.status_code, taken.headers["Upload-Offset"]) == (204, str(half))
        finally:
            doomed.process.kill()
            doomed.process.wait()
    assert district.a.head(data).headers["Upload-Offset"] == str(half)
    done = district.a.patch(data, half)
    assert (done.status_code, done.json()["verdict"]) == (200, ACCEPTED), done.text
    assert district.open(data) == enrollment_of(data)
