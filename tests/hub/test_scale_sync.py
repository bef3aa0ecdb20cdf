"""The kiosk's own sync client against the scale hub: two replicas on one PostgreSQL
index and one S3 bucket (SeaweedFS), reached through a proxy that drops, throttles
and moves (tests/faultproxy.py), as a station behind a district's load balancer.

Replica A is the hub app under uvicorn in a thread of this process, wrapped to
answer 500 on request (test_sync.FailingApp); replica B is ``kiosk-hub serve
--database ... --blobs ...`` in a process of its own; a test that kills a replica
starts a third one (C) for that. The proxy is the station's one address: routing
it to another replica is a load balancer moving the station.

Each test is one new station (a kiosk: its data folder, its key registered at every
replica, its store sealing for the hub) and ends the same way: the N packets sealed
on the kiosk are all *diterima* there, and are exactly N accepted verdicts in the
shared index and N packets in the bucket, each read back from S3 and opened and
verified with the hub's key and the station's (open_sealed), no enrollment twice,
no upload left over.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from faultproxy import FaultProxy
from scale_servers import PostgresServer, SeaweedServer, free_port, shared_storage
from support import wait_until
from test_sync import FailingApp, Kiosk, numbered, serve_through_faults

from hub import layout
from hub.app import create_app
from hub.cli import listening_socket
from hub.postgres import PostgresIndex
from hub.s3 import S3Blobs
from hub.service import Hub
from hub.storage import ACCEPTED, REJECTED, packet_key
from kiosk.packet.keys import (
    StationKeyFiles,
    generate_station_key,
    load_hub_private_key,
    station_public_bytes,
)
from kiosk.packet.seal import Sealer, inspect, open_sealed
from kiosk.store.sqlite import EnrollmentStore, PacketState
from kiosk.sync.client import HubClient
from kiosk.sync.runner import sync_once

pytest_plugins = ["scale_fixtures"]

START_TIMEOUT = 30.0
_station_numbers = itertools.count(1)


# -- the district ---------------------------------------------------------------------------


def _pinned(hub_dir: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(layout.tls_certificate_path(hub_dir)))


class ProcessReplica:
    """``kiosk-hub serve --database ... --blobs ...`` in a process of its own (the S3
    credentials come in the environment); SIGKILL it with ``kill()``."""

    def __init__(self, folder: Path, database: str, blobs: str, log: Path) -> None:
        self.port = free_port()
        self.log = log
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hub.cli", "serve", "--data-dir", str(folder),
                 "--database", database, "--blobs", blobs, "--port", str(self.port)],
                stdout=output,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        with httpx.Client(verify=_pinned(folder), timeout=2) as probe:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                if self.process.poll() is not None:
                    pytest.fail(f"kiosk-hub serve exited:\n{log.read_text(errors='replace')}")
                with contextlib.suppress(httpx.TransportError):
                    if probe.get(f"https://127.0.0.1:{self.port}/v1/health").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    self.kill()
                    pytest.fail(f"kiosk-hub serve did not answer within {START_TIMEOUT} s")
                time.sleep(0.05)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


class ThreadReplica:
    """The hub app under uvicorn in a thread of this process, behind a FailingApp."""

    def __init__(self, folder: Path, database: str, blobs: str) -> None:
        self.hub = Hub.open(folder, database=database, blobs=blobs)
        self.app = FailingApp(create_app(self.hub, body_idle_timeout=5))
        sock = listening_socket("127.0.0.1", 0)
        self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                ssl_certfile=str(layout.tls_certificate_path(folder)),
                ssl_keyfile=str(layout.tls_key_path(folder)),
                log_level="warning",
                timeout_graceful_shutdown=1,
            )
        )
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, name="replica-a", daemon=True
        )
        self.thread.start()
        wait_until(lambda: self.server.started, timeout=START_TIMEOUT)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.hub.close()


@dataclass
class District:
    a: ThreadReplica
    b: ProcessReplica
    index: PostgresIndex  # the auditor's own view of the shared index and bucket
    blobs: S3Blobs
    folders: tuple[Path, Path]  # replica A's data folder, replica B's
    database: str
    bucket: str


@pytest.fixture(scope="module")
def district(
    postgres: PostgresServer, seaweed: SeaweedServer, tmp_path_factory
) -> Iterator[District]:
    root = tmp_path_factory.mktemp("sync-district")
    with shared_storage(postgres, seaweed, root) as shared, contextlib.ExitStack() as stack:
        folders, database, bucket = shared.folders, shared.database, shared.bucket
        b = ProcessReplica(folders[1], database, bucket, root / "replica-b.log")
        stack.callback(b.stop)
        a = ThreadReplica(folders[0], database, bucket)
        stack.callback(a.stop)
        yield District(a, b, shared.index, shared.blobs, folders, database, bucket)


# -- the station ----------------------------------------------------------------------------


@pytest.fixture
def kiosk(district, base_packet, tmp_path) -> Iterator[Kiosk]:
    """A new station provisioned for the district: its key in every replica's stations/,
    the hub's key and TLS certificate in its keys/ folder."""
    station = f"JB-SYNC-{next(_station_numbers):02d}"
    data_dir = tmp_path / "kiosk"
    keys = StationKeyFiles.in_data_dir(data_dir)
    keys.folder.mkdir(parents=True, mode=0o700)
    key = generate_station_key(keys.station_key)
    for folder in district.folders:
        layout.add_station(folder, station, station_public_bytes(key))
    shutil.copy(layout.hub_public_key_path(district.folders[0]), keys.hub_public)
    shutil.copy(layout.tls_certificate_path(district.folders[0]), keys.hub_tls)
    store = EnrollmentStore(data_dir, Sealer.from_key_files(keys, station))
    yield Kiosk(data_dir, keys, key, store, base_packet, station=station)
    store.close()


@pytest.fixture
def proxy(district) -> Iterator[FaultProxy]:
    """The station's one address, routed to replica A to begin with."""
    district.a.app.failures = {}
    with FaultProxy(district.a.port) as link:
        yield link
    district.a.app.failures = {}


@pytest.fixture
def client(kiosk, proxy) -> Iterator[HubClient]:
    with HubClient(f"https://127.0.0.1:{proxy.port}", kiosk.keys.hub_tls, timeout=5) as made:
        yield made


def route(proxy: FaultProxy, port: int) -> None:
    """The load balancer sends the station to another replica: new connections go to
    ``port``, and the open ones (kept alive to the old replica) are cut."""
    proxy.target = ("127.0.0.1", port)
    proxy.cut_all()


def assert_delivered(district: District, kiosk: Kiosk, ids: list[str]) -> None:
    """The kiosk's packets ``ids`` are diterima there, and exactly they are accepted at the
    hub: one verdict each in the index, one packet each in the bucket, read back from S3
    and verified with the hub's key and this station's; nothing left under way."""
    store = kiosk.store
    assert {store.packet(i).state for i in ids} == {PacketState.ACKNOWLEDGED}
    assert store.waiting() == []
    assert district.index.verdict_counts()[kiosk.station] == {ACCEPTED: len(ids), REJECTED: 0}
    shas = {i: store.packet(i).sha256 for i in ids}
    for enrollment_id, sha256 in shas.items():
        verdict = district.index.verdict_for_enrollment(enrollment_id)
        assert (verdict.verdict, verdict.sha256) == (ACCEPTED, sha256)
    private = load_hub_private_key(layout.hub_key_path(district.folders[0]))
    ours = {kiosk.station: station_public_bytes(kiosk.station_key)}
    opened: Counter[str] = Counter()
    for key in district.blobs.keys("packets/"):
        data = district.blobs.get(key)
        if inspect(data)["station_id"] != kiosk.station:
            continue  # another test's station
        assert key == packet_key(hashlib.sha256(data).hexdigest())
        packet = open_sealed(data, hub_private_key=private, station_public_keys=ours)
        opened[packet.enrollment_id] += 1
        assert data == store.read_sealed(packet.enrollment_id)  # the kiosk's very bytes
        original = numbered(kiosk.base, packet.manifest["sequence"], kiosk.station)
        assert packet.manifest["nik"] == original.manifest["nik"]
        assert packet.files == original.files
    assert opened == Counter(ids), "N sealed on the kiosk, N verified at the hub, once each"
    assert [u for u in district.index.uploads() if u.station_id == kiosk.station] == []
    for sha256 in shas.values():
        assert district.blobs.keys(f"uploads/{sha256}/") == []


# -- the tests ------------------------------------------------------------------------------


def test_packets_reach_the_scale_hub_verified_oldest_first(district, kiosk, client):
    ids = kiosk.enroll(3)
    summary = sync_once(kiosk.store, client)
    assert (summary.sent, summary.accepted, summary.left) == (3, 3, 0)
    assert [outcome.enrollment_id for outcome in summary.packets] == ids
    assert_delivered(district, kiosk, ids)


def test_a_body_dropped_on_one_replica_is_finished_on_the_other(district, kiosk, proxy, client):
    (only,) = kiosk.enroll(1)
    stored = kiosk.store.packet(only)
    proxy.drop_after(stored.size // 2)  # TLS and headers included: well inside the body
    first = sync_once(kiosk.store, client)
    assert first.hub_unreachable and proxy.drops == 1
    assert "broke" in first.errors[0]
    assert kiosk.store.packet(only).state is PacketState.SEALED

    def kept() -> int:
        upload = district.index.get_upload(stored.sha256)
        return 0 if upload is None else upload.offset

    # replica A sees the drop and keeps what arrived: in the bucket, named in the index
    wait_until(lambda: kept() > 0, timeout=10)
    assert kept() < stored.size
    route(proxy, district.b.port)
    before = proxy.bytes_up
    second = sync_once(kiosk.store, client)
    assert (second.accepted, second.left) == (1, 0)
    assert proxy.bytes_up - before < stored.size * 0.75  # the rest, not the whole again
    assert_delivered(district, kiosk, [only])


def test_a_slow_link_to_the_process_replica_delivers_everything(district, kiosk, proxy, client):
    ids = kiosk.enroll(2)
    route(proxy, district.b.port)
    proxy.throttle(500_000)  # bytes a second: a poor link, at test speed
    summary = sync_once(kiosk.store, client)
    assert (summary.accepted, summary.left) == (2, 0) and summary.errors == []
    assert_delivered(district, kiosk, ids)


def test_500_answers_are_retried_and_never_mark_a_packet(district, kiosk, client):
    ids = kiosk.enroll(2)
    app = district.a.app
    app.answered_500 = 0
    for failing in ("POST", "PATCH", "HEAD"):  # creation, the body, asking the offset
        app.failures = {failing: 1}
        summary = sync_once(kiosk.store, client)
        assert summary.hub_unreachable and summary.accepted == 0, failing
        assert "failed (500: " in summary.errors[0], failing  # a HEAD answer has no body
        assert set(kiosk.states().values()) == {PacketState.SEALED}, failing
    assert app.answered_500 == 3
    last = sync_once(kiosk.store, client)
    assert (last.accepted, last.left) == (2, 0)
    assert_delivered(district, kiosk, ids)


def test_a_replica_killed_mid_upload_and_the_upload_finished_on_the_other(
    district, kiosk, proxy, client, tmp_path
):
    """Replica C is SIGKILLed while a body streams in over a slow link; the load
    balancer sends the station to replica A, which finishes the upload."""
    folder = tmp_path / "replica-c"
    shutil.copytree(district.folders[1], folder)  # with this station in stations/
    doomed = ProcessReplica(folder, district.database, district.bucket, tmp_path / "c.log")
    try:
        ids = kiosk.enroll(3)
        size = kiosk.store.packet(ids[1]).size
        route(proxy, doomed.port)
        proxy.throttle(300_000)
        results = []
        sender = threading.Thread(
            target=lambda: results.append(sync_once(kiosk.store, client)), name="sync"
        )
        sender.start()
        wait_until(lambda: kiosk.store.packet(ids[0]).state is PacketState.ACKNOWLEDGED, timeout=10)
        mark = proxy.bytes_up
        wait_until(lambda: proxy.bytes_up - mark > size // 3, timeout=10)
        doomed.kill()
        sender.join(15)
        assert not sender.is_alive()
    finally:
        doomed.kill()  # nothing if it is dead already
    (killed,) = results
    assert killed.hub_unreachable and killed.accepted == 1
    assert [kiosk.store.packet(i).state for i in ids[1:]] == [PacketState.SEALED] * 2
    assert district.index.verdict_for_enrollment(ids[1]) is None  # C judged nothing more
    # C answered the creation (201) before it died: the upload is in the shared index
    assert district.index.get_upload(kiosk.store.packet(ids[1]).sha256) is not None
    route(proxy, district.a.port)
    proxy.throttle(None)
    again = sync_once(kiosk.store, client)
    assert (again.accepted, again.left) == (2, 0)
    # the packet C accepted before it died is at the hub: answered, so kept
    assert_delivered(district, kiosk, ids)


def test_two_syncs_at_once_on_both_replicas_deliver_each_packet_once(
    district, kiosk, proxy, client
):
    """The sync service (through the proxy, to A) and a technician's `kiosk sync` (to B)
    on one data folder at the same time; then a packet re-sent by a restored store."""
    ids = kiosk.enroll(4)
    summaries = []

    def technician() -> None:
        store = EnrollmentStore(kiosk.data_dir)
        try:
            with HubClient(
                f"https://127.0.0.1:{district.b.port}", kiosk.keys.hub_tls, timeout=5
            ) as direct:
                summaries.append(sync_once(store, direct))
        finally:
            store.close()

    syncs = [
        threading.Thread(target=lambda: summaries.append(sync_once(kiosk.store, client))),
        threading.Thread(target=technician),
    ]
    for sync in syncs:
        sync.start()
    for sync in syncs:
        sync.join(20)
    assert len(summaries) == 2
    assert all(s.errors == [] and s.rejected == 0 and s.left == 0 for s in summaries)
    assert sum(s.accepted for s in summaries) >= 4  # some twice: the same verdict
    stored = kiosk.store.packet(ids[0])
    before = proxy.bytes_up
    again = client.upload(stored, kiosk.store.read_sealed(ids[0]))  # e.g. a restored backup
    assert again.accepted and again.sha256 == stored.sha256
    assert proxy.bytes_up - before < stored.size / 10  # asked, not sent again
    assert_delivered(district, kiosk, ids)


def test_packets_sealed_while_the_service_runs_all_arrive_through_every_fault(
    district, kiosk, proxy, client
):
    """sync_forever while the kiosk goes on enrolling, a fault after each round: N
    packets made on the kiosk are exactly N verified packets at the scale hub."""
    ids = kiosk.enroll(2)
    faults = [
        lambda: proxy.drop_after(30_000),
        lambda: district.a.app.failures.update(PATCH=1),
        lambda: route(proxy, district.b.port),
        lambda: proxy.drop_after(100_000),
        lambda: proxy.throttle(1_000_000),
        lambda: (proxy.throttle(None), route(proxy, district.a.port)),
        lambda: district.a.app.failures.update(POST=1),
    ]
    rounds = serve_through_faults(kiosk, client, faults, ids)
    assert len(ids) == 9
    assert any(summary.hub_unreachable for summary in rounds)
    assert proxy.drops == 2
    assert_delivered(district, kiosk, ids)
