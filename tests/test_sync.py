"""Sync end to end: the kiosk's store, HubClient and runner against the real hub
(hub.app over hub.service, served by uvicorn over real HTTPS on loopback), through
a proxy that drops, throttles and refuses (tests/faultproxy.py). Each test ends by
opening, at the hub's side, every packet the hub kept (kiosk.packet.seal.open_sealed):
N packets made on the kiosk are exactly N verified packets at the hub."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from faultproxy import FaultProxy
from support import enrolled_packet, wait_until

from hub import layout
from hub.app import create_app
from hub.cli import listening_socket
from hub.service import Hub
from kiosk.config import SIMULATION_PATH
from kiosk.packet.build import Packet
from kiosk.packet.keys import (
    StationKeyFiles,
    generate_station_key,
    load_hub_private_key,
    station_public_bytes,
)
from kiosk.packet.seal import Sealer, open_sealed, seal
from kiosk.store.sqlite import EnrollmentStore, PacketState
from kiosk.sync.backoff import Backoff
from kiosk.sync.client import (
    HubClient,
    HubNotTrusted,
    HubRefused,
    HubUnreachable,
    StationRefused,
)
from kiosk.sync.runner import SyncSettings, SyncSummary, heartbeat_body, sync_forever, sync_once

STATION = "TEST-01"

# -- the kiosk ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_packet() -> Packet:
    """One real enrollment of the fake modules (face, ten WSQ prints, signature)."""
    return enrolled_packet(STATION)


def numbered(base: Packet, sequence: int, station: str = STATION) -> Packet:
    """The real packet as the ``sequence``-th enrollment of ``station``."""
    enrollment_id = f"{station}-20261128-{sequence:06d}"
    manifest = {
        **base.manifest,
        "enrollment_id": enrollment_id,
        "sequence": sequence,
        "station": {**base.manifest["station"], "id": station},
        "nik": f"3201014101{sequence:06d}",
    }
    return Packet(enrollment_id=enrollment_id, manifest=manifest, files=base.files)


@dataclass
class Kiosk:
    """A provisioned station's data folder and its store."""

    data_dir: Path
    keys: StationKeyFiles
    station_key: Ed25519PrivateKey
    store: EnrollmentStore
    base: Packet
    made: int = 0
    station: str = STATION  # the station id its packets are sealed and numbered under

    def enroll(self, count: int) -> list[str]:
        """Seal and keep ``count`` more enrollments; their ids, oldest first."""
        ids = []
        for _ in range(count):
            self.made += 1
            packet = numbered(self.base, self.made, self.station)
            self.store.save(packet)
            ids.append(packet.enrollment_id)
        return ids

    def states(self) -> dict[str, PacketState]:
        return {
            enrollment_id: self.store.packet(enrollment_id).state
            for enrollment_id in (
                numbered(self.base, n, self.station).enrollment_id for n in range(1, 1 + self.made)
            )
        }


@pytest.fixture
def hub_dir(tmp_path) -> Path:
    path = tmp_path / "hub"
    layout.init_hub(path, simulation=True)
    return path


@pytest.fixture
def kiosk(tmp_path, hub_dir, base_packet) -> Iterator[Kiosk]:
    """A station provisioned for ``hub_dir``: its key registered there, the hub's key and
    TLS certificate in its keys/ folder (as `kiosk simulate` does)."""
    data_dir = tmp_path / "kiosk"
    keys = StationKeyFiles.in_data_dir(data_dir)
    keys.folder.mkdir(parents=True, mode=0o700)
    key = generate_station_key(keys.station_key)
    layout.add_station(hub_dir, STATION, station_public_bytes(key))
    shutil.copy(layout.hub_public_key_path(hub_dir), keys.hub_public)
    shutil.copy(layout.tls_certificate_path(hub_dir), keys.hub_tls)
    store = EnrollmentStore(data_dir, Sealer.from_key_files(keys, STATION))
    yield Kiosk(data_dir, keys, key, store, base_packet)
    store.close()


# -- the hub ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class FailingApp:
    """ASGI wrapper: answers 500 to the next ``failures[method]`` requests of a method."""

    def __init__(self, app) -> None:
        self.app = app
        self.failures: dict[str, int] = {}
        self.answered_500 = 0

    async def __call__(self, scope, receive, send) -> None:
        method = scope.get("method", "")
        if scope["type"] == "http" and self.failures.get(method, 0) > 0:
            self.failures[method] -= 1
            self.answered_500 += 1
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": b'{"error": "injected fault"}'})
            return
        await self.app(scope, receive, send)


class HubServer:
    """The real hub over HTTPS on a fixed loopback port, in this process: stop() and
    start() again on the same port as a restarted hub would be."""

    def __init__(self, hub_dir: Path) -> None:
        self.hub_dir = hub_dir
        self.port = free_port()
        self.hub: Hub | None = None
        self.app: FailingApp | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.hub = Hub.open(self.hub_dir)
        self.app = FailingApp(create_app(self.hub, body_idle_timeout=5))
        sock = listening_socket("127.0.0.1", self.port)
        config = uvicorn.Config(
            self.app,
            ssl_certfile=str(layout.tls_certificate_path(self.hub_dir)),
            ssl_keyfile=str(layout.tls_key_path(self.hub_dir)),
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"hub-{self.port}"
        )
        self._thread.start()
        wait_until(lambda: self._server.started, timeout=10)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(10)
            self._server = None
        if self.hub is not None:
            self.hub.close()
            self.hub = None


@pytest.fixture
def hub(hub_dir) -> Iterator[HubServer]:
    server = HubServer(hub_dir)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def proxy(hub) -> Iterator[FaultProxy]:
    with FaultProxy(hub.port) as link:
        yield link


@pytest.fixture
def client(kiosk, proxy) -> Iterator[HubClient]:
    """The kiosk's client, reaching the hub through the proxy."""
    with HubClient(f"https://127.0.0.1:{proxy.port}", kiosk.keys.hub_tls, timeout=5) as made:
        yield made


def verified_at_hub(hub_dir: Path, kiosk: Kiosk) -> dict[str, Packet]:
    """Every packet the hub keeps as accepted, opened and verified with the hub's key."""
    hub = Hub.open(hub_dir)
    try:
        private = load_hub_private_key(layout.hub_key_path(hub_dir))
        stations = {STATION: station_public_bytes(kiosk.station_key)}
        opened = {}
        for key in hub.blobs.keys("packets/"):
            packet = open_sealed(
                hub.blobs.get(key), hub_private_key=private, station_public_keys=stations
            )
            assert packet.enrollment_id not in opened, "one enrollment kept twice"
            opened[packet.enrollment_id] = packet
        return opened
    finally:
        hub.close()


def assert_delivered(hub_dir: Path, kiosk: Kiosk, ids: list[str]) -> None:
    """The kiosk's packets ``ids`` are diterima, and exactly they are verified at the hub."""
    assert {kiosk.store.packet(i).state for i in ids} == {PacketState.ACKNOWLEDGED}
    opened = verified_at_hub(hub_dir, kiosk)
    assert sorted(opened) == sorted(ids)
    for enrollment_id in ids:
        original = numbered(kiosk.base, int(enrollment_id.rsplit("-", 1)[1]))
        assert opened[enrollment_id].manifest["nik"] == original.manifest["nik"]
        assert opened[enrollment_id].files == original.files


def serve_through_faults(kiosk, client, faults: list, ids: list[str]) -> list[SyncSummary]:
    """Run sync_forever while the kiosk goes on enrolling: after each round the next
    of ``faults`` is injected and one more packet sealed (its id added to ``ids``);
    once the faults are spent and nothing waits, the service is stopped. Returns
    each round's summary."""
    pending = iter(faults)
    stop = threading.Event()
    rounds = []

    def each(summary, delay):
        rounds.append(summary)
        fault = next(pending, None)
        if fault is not None:
            fault()
            ids.extend(kiosk.enroll(1))
        elif not kiosk.store.waiting():
            stop.set()

    service = threading.Thread(
        target=sync_forever,
        args=(kiosk.store, client),
        kwargs=dict(
            data_dir=kiosk.data_dir,
            settings=SyncSettings(poll_interval_s=0.01),
            backoff=Backoff(base=0.01, cap=0.05),
            stop=stop,
            on_round=each,
        ),
        name="sync-service",
    )
    service.start()
    service.join(30)
    stop.set()
    service.join(10)
    assert not service.is_alive()
    return rounds


# -- the tests ----------------------------------------------------------------------


def test_packets_reach_the_hub_verified_oldest_first(kiosk, hub, client, hub_dir):
    ids = kiosk.enroll(4)
    summary = sync_once(kiosk.store, client)
    assert (summary.sent, summary.accepted, summary.left) == (4, 4, 0)
    assert summary.delivered_all
    assert [outcome.enrollment_id for outcome in summary.packets] == ids
    assert_delivered(hub_dir, kiosk, ids)


def test_a_connection_dropped_mid_body_resumes_where_the_hubs_copy_ends(
    kiosk, hub, proxy, client, hub_dir
):
    (only,) = kiosk.enroll(1)
    size = kiosk.store.packet(only).size
    proxy.drop_after(size // 2)  # TLS records and headers included: cut well inside the body
    first = sync_once(kiosk.store, client)
    assert first.hub_unreachable and proxy.drops == 1
    assert "broke" in first.errors[0] and "\n" not in first.errors[0]
    assert kiosk.store.packet(only).state is PacketState.SEALED
    sha256 = kiosk.store.packet(only).sha256
    # the backoff's wait: the hub sees the drop and keeps what arrived
    wait_until(lambda: hub.hub.upload_state(sha256).offset > 0, timeout=10)
    before = proxy.bytes_up
    second = sync_once(kiosk.store, client)
    assert second.accepted == 1
    assert proxy.bytes_up - before < size * 0.75  # the rest, not the whole packet again
    assert_delivered(hub_dir, kiosk, [only])


def test_a_slow_link_delivers_everything(kiosk, hub, proxy, client, hub_dir):
    ids = kiosk.enroll(2)
    proxy.throttle(200_000)  # bytes a second; a 2G link at test speed
    summary = sync_once(kiosk.store, client)
    assert summary.accepted == 2 and summary.left == 0
    assert_delivered(hub_dir, kiosk, ids)


def test_500_answers_are_retried_later_and_never_mark_a_packet(kiosk, hub, client, hub_dir):
    ids = kiosk.enroll(2)
    hub.app.failures = {"POST": 1}
    first = sync_once(kiosk.store, client)
    assert first.hub_unreachable and first.sent == 0
    assert "failed (500: injected fault)" in first.errors[0]
    assert set(kiosk.states().values()) == {PacketState.SEALED}
    hub.app.failures = {"PATCH": 1}
    second = sync_once(kiosk.store, client)
    assert second.hub_unreachable and second.accepted == 0
    assert hub.app.answered_500 == 2
    third = sync_once(kiosk.store, client)
    assert third.accepted == 2
    assert_delivered(hub_dir, kiosk, ids)


def test_a_duplicate_upload_gets_the_first_verdict_and_no_second_copy(
    kiosk, hub, proxy, client, hub_dir
):
    (only,) = kiosk.enroll(1)
    stored = kiosk.store.packet(only)
    data = kiosk.store.read_sealed(only)
    assert client.upload(stored, data).accepted
    before = proxy.bytes_up
    again = client.upload(stored, data)  # e.g. a store restored from a backup
    assert again.accepted and again.sha256 == stored.sha256
    assert proxy.bytes_up - before < stored.size / 10  # asked, not sent again
    sync_once(kiosk.store, client)
    assert_delivered(hub_dir, kiosk, [only])


def test_a_rejected_packet_stays_ditolak_with_its_reason_and_is_not_resent(
    kiosk, hub, proxy, client, hub_dir, tmp_path
):
    good, bad, replayed = kiosk.enroll(3)
    # the second was sealed for another hub (a station provisioned with the wrong hub.pub)
    other_hub = tmp_path / "other-hub"
    layout.init_hub(other_hub)
    foreign = seal(
        numbered(kiosk.base, 2),
        station_key=kiosk.station_key,
        station_id=STATION,
        hub_public_key=_hub_public(other_hub),
    )
    _replace_sealed(kiosk, bad, foreign)
    # the third's enrollment reaches the hub first with other content: a replay
    hub_copy = seal(
        numbered(kiosk.base, 3),
        station_key=kiosk.station_key,
        station_id=STATION,
        hub_public_key=_hub_public(hub_dir),
    )
    assert hub.hub.submit(hub_copy).accepted
    summary = sync_once(kiosk.store, client)
    assert (summary.accepted, summary.rejected, summary.left) == (1, 2, 0)
    assert not summary.delivered_all
    assert kiosk.store.packet(bad).state is PacketState.REJECTED
    assert kiosk.store.packet(bad).reason  # the hub's reason, kept on the kiosk
    assert kiosk.store.packet(replayed).state is PacketState.REJECTED
    assert "accepted already with other content" in kiosk.store.packet(replayed).reason
    words = {outcome.enrollment_id: outcome.word for outcome in summary.packets}
    assert words == {good: "diterima", bad: "ditolak", replayed: "ditolak"}
    connections = proxy.connections
    assert sync_once(kiosk.store, client).packets == []  # nothing sent again
    assert proxy.connections == connections
    opened = verified_at_hub(hub_dir, kiosk)
    assert sorted(opened) == [good, replayed]
    assert opened[replayed].manifest["nik"] == numbered(kiosk.base, 3).manifest["nik"]


def _hub_public(hub_dir: Path) -> bytes:
    from kiosk.packet.keys import load_hub_public_key

    return load_hub_public_key(layout.hub_public_key_path(hub_dir))


def _replace_sealed(kiosk: Kiosk, enrollment_id: str, data: bytes) -> None:
    """Put ``data`` in the store as the sealed packet of ``enrollment_id`` (index too)."""
    import hashlib

    path = kiosk.store.packet(enrollment_id).path
    path.write_bytes(data)
    with kiosk.store._lock:
        kiosk.store._db.execute(
            "UPDATE packets SET sha256 = ?, size = ? WHERE enrollment_id = ?",
            (hashlib.sha256(data).hexdigest(), len(data), enrollment_id),
        )


def test_a_hub_down_then_up_is_waited_out_with_backoff_then_drained(
    kiosk, hub, proxy, client, hub_dir
):
    ids = kiosk.enroll(3)
    proxy.refuse()
    rounds: list[tuple[bool, float]] = []
    stop = threading.Event()

    def each(summary, delay):
        rounds.append((summary.hub_unreachable, delay))
        if len(rounds) == 4:
            proxy.accept()  # the link is back
        if kiosk.store.waiting() == [] and not summary.hub_unreachable:
            stop.set()

    backoff = Backoff(base=0.02, cap=0.1)
    totals = sync_forever(
        kiosk.store,
        client,
        data_dir=kiosk.data_dir,
        station_key=kiosk.station_key,
        settings=SyncSettings(poll_interval_s=0.01, heartbeat_interval_s=3600.0),
        backoff=backoff,
        stop=stop,
        on_round=each,
    )
    assert [failed for failed, _ in rounds[:4]] == [True] * 4
    assert all(delay <= 0.1 for _, delay in rounds[:4])
    assert totals.accepted == 3 and totals.left == 0
    assert totals.failures >= 4 and "refused the connection" in totals.last_error
    assert totals.heartbeats >= 1  # once the hub was back
    assert_delivered(hub_dir, kiosk, ids)


def test_packets_sealed_while_the_service_runs_all_arrive_through_every_fault(
    kiosk, hub, proxy, client, hub_dir
):
    """N packets made on the kiosk, a link that drops, a hub that answers 500 and
    then vanishes, packets added meanwhile: exactly N verified packets at the hub."""
    ids = kiosk.enroll(2)
    faults = [
        lambda: proxy.drop_after(30_000),
        lambda: hub.app.failures.update(PATCH=1),
        proxy.refuse,
        proxy.accept,
        lambda: proxy.drop_after(100_000),
    ]
    rounds = serve_through_faults(kiosk, client, faults, ids)
    assert len(ids) == 7
    assert any(summary.hub_unreachable for summary in rounds)
    assert_delivered(hub_dir, kiosk, ids)


def test_a_server_without_the_pinned_certificate_is_not_trusted(kiosk, hub, tmp_path):
    impostor = tmp_path / "impostor"
    layout.init_hub(impostor)  # a hub made elsewhere: same names, another key
    kiosk.enroll(1)
    with HubClient(
        f"https://127.0.0.1:{hub.port}", layout.tls_certificate_path(impostor), timeout=5
    ) as stranger:
        with pytest.raises(HubNotTrusted, match="did not show the pinned certificate"):
            stranger.health()
        summary = sync_once(kiosk.store, stranger)
    assert summary.hub_unreachable and "pinned certificate" in summary.errors[0]
    assert set(kiosk.states().values()) == {PacketState.SEALED}


def test_a_certificate_for_another_name_is_not_trusted(kiosk, tmp_path):
    named = tmp_path / "named-hub"
    layout.init_hub(named, hosts=["hub.example"])  # not valid for 127.0.0.1
    server = HubServer(named)
    server.start()
    try:
        with (
            HubClient(
                f"https://127.0.0.1:{server.port}", layout.tls_certificate_path(named), timeout=5
            ) as client,
            pytest.raises(HubNotTrusted, match="mismatch") as caught,
        ):
            client.health()
    finally:
        server.stop()
    assert "\n" not in str(caught.value)


def test_a_station_the_hub_does_not_know_marks_nothing(kiosk, tmp_path):
    stranger = tmp_path / "stranger-hub"
    layout.init_hub(stranger, simulation=True)  # this station is not registered there
    server = HubServer(stranger)
    server.start()
    try:
        kiosk.enroll(1)
        with HubClient(
            f"https://127.0.0.1:{server.port}", layout.tls_certificate_path(stranger), timeout=5
        ) as client:
            summary = sync_once(kiosk.store, client)
            with pytest.raises(StationRefused, match="refuses this station"):
                client.heartbeat(
                    heartbeat_body(kiosk.store, kiosk.data_dir, STATION), kiosk.station_key
                )
    finally:
        server.stop()
    assert summary.hub_unreachable and "refuses this station" in summary.errors[0]
    assert set(kiosk.states().values()) == {PacketState.SEALED}


def test_the_heartbeat_is_signed_and_shows_on_the_hubs_dashboard(kiosk, hub, client):
    kiosk.enroll(2)
    sync_once(kiosk.store, client)
    body = heartbeat_body(kiosk.store, kiosk.data_dir, STATION)
    client.heartbeat(body, kiosk.station_key)
    (station,) = [s for s in hub.hub.dashboard()["stations"] if s["station_id"] == STATION]
    assert station["backlog"]["acknowledged"] == 2
    assert station["today"]["enrolled"] == 2
    assert station["software"].startswith("rekam-kiosk")
    with pytest.raises(HubRefused, match="replay") as caught:  # the same sent_at again
        client.heartbeat(body, kiosk.station_key)
    assert caught.value.status == 409
    with pytest.raises(StationRefused):  # signed by another key
        client.heartbeat(
            heartbeat_body(kiosk.store, kiosk.data_dir, STATION), Ed25519PrivateKey.generate()
        )


def test_a_hub_killed_mid_upload_and_restarted_gets_the_packet_once(kiosk, hub_dir, tmp_path):
    """The hub process is SIGKILLed while a body streams in over a slow link."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "hub.cli",
        "serve",
        "--data-dir",
        str(hub_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    log = (tmp_path / "hub.log").open("w")

    def start() -> subprocess.Popen:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        with HubClient(f"https://127.0.0.1:{port}", kiosk.keys.hub_tls, timeout=2) as probe:

            def alive() -> bool:
                try:
                    return probe.health()
                except HubUnreachable:
                    return False

            wait_until(alive, timeout=20)
        return process

    process = start()
    try:
        first, second = kiosk.enroll(2)
        size = kiosk.store.packet(second).size
        with (
            FaultProxy(port) as link,
            HubClient(f"https://127.0.0.1:{link.port}", kiosk.keys.hub_tls, timeout=5) as client,
        ):
            assert client.upload(kiosk.store.packet(first), kiosk.store.read_sealed(first)).accepted
            kiosk.store.mark_sent(first)
            kiosk.store.record_verdict(first, True)
            link.throttle(100_000)
            results = []
            sender = threading.Thread(
                target=lambda: results.append(sync_once(kiosk.store, client)), name="sync"
            )
            start_bytes = link.bytes_up
            sender.start()
            wait_until(lambda: link.bytes_up - start_bytes > size // 3, timeout=10)
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            sender.join(15)
            (killed,) = results
            assert killed.hub_unreachable and killed.accepted == 0
            assert kiosk.store.packet(second).state is PacketState.SEALED
            link.throttle(None)
            process = start()
            again = sync_once(kiosk.store, client)
            assert again.accepted == 1 and again.left == 0
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)
        log.close()
    assert_delivered(hub_dir, kiosk, [first, second])


# -- kiosk sync ---------------------------------------------------------------------


def kiosk_sync(capsys, *options: str) -> tuple[int, str, str]:
    """`kiosk sync OPTIONS` in this process: exit status, stdout, stderr."""
    from kiosk.cli import main

    status = main(["sync", *options])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_kiosk_sync_delivers_and_says_so_in_the_operators_words(kiosk, hub, hub_dir, capsys):
    ids = kiosk.enroll(2)
    url = f"https://127.0.0.1:{hub.port}"
    status, out, _ = kiosk_sync(capsys, "--data-dir", str(kiosk.data_dir), "--hub", url)
    assert status == 0
    assert f"{ids[0]}  diterima (accepted by the hub)" in out
    assert "2 packets sent" in out and "0 still waiting" in out
    assert "on this kiosk: 0 direkam, 0 terkirim, 2 diterima, 0 ditolak" in out
    assert_delivered(hub_dir, kiosk, ids)
    status, out, _ = kiosk_sync(capsys, "--data-dir", str(kiosk.data_dir), "--hub", url, "--json")
    report = json.loads(out)
    assert status == 0 and report["delivered_all"] and report["packets"] == []
    assert report["backlog"]["acknowledged"] == 2 and report["heartbeat_error"] is None


def test_kiosk_sync_reads_the_station_file(kiosk, hub, hub_dir, tmp_path, capsys):
    ids = kiosk.enroll(1)
    station = tmp_path / "station.toml"
    text = SIMULATION_PATH.read_text().replace('id = "SIM-01"', f'id = "{STATION}"')
    text = re.sub(r"data_dir = .*", f'data_dir = "{kiosk.data_dir}"', text)
    station.write_text(text + f'\n[hub]\nurl = "https://127.0.0.1:{hub.port}"\n')
    status, out, _ = kiosk_sync(capsys, "--config", str(station), "--json")
    report = json.loads(out)
    assert status == 0
    assert [packet["word"] for packet in report["packets"]] == ["diterima"]
    assert_delivered(hub_dir, kiosk, ids)


def test_kiosk_sync_exits_1_while_packets_wait_for_a_hub_that_is_down(kiosk, capsys):
    kiosk.enroll(2)
    url = f"https://127.0.0.1:{free_port()}"  # nothing listens there
    status, out, err = kiosk_sync(capsys, "--data-dir", str(kiosk.data_dir), "--hub", url)
    assert status == 1
    assert "error: the hub at" in out and "refused the connection" in out
    assert "2 still waiting" in out and "2 direkam" in out
    assert "Traceback" not in out + err


def test_kiosk_sync_exits_1_when_the_hub_refused_a_packet(kiosk, hub, capsys):
    (only,) = kiosk.enroll(1)
    other_hub = kiosk.data_dir.parent / "other-hub"
    layout.init_hub(other_hub)
    foreign = seal(
        numbered(kiosk.base, 1),
        station_key=kiosk.station_key,
        station_id=STATION,
        hub_public_key=_hub_public(other_hub),
    )
    _replace_sealed(kiosk, only, foreign)
    url = f"https://127.0.0.1:{hub.port}"
    status, out, _ = kiosk_sync(capsys, "--data-dir", str(kiosk.data_dir), "--hub", url)
    assert status == 1
    assert f"{only}  ditolak (refused: " in out


@pytest.mark.parametrize(
    ("setup", "options", "words"),
    [
        ("no-cert", ["--hub", "https://127.0.0.1:9"], "hub-tls.pem: the hub's TLS certificate"),
        ("no-key", ["--hub", "https://127.0.0.1:9"], "station.key: no station key"),
        ("", ["--hub", "http://127.0.0.1:9"], "https:// only"),
        ("", ["--hub", "https://"], "names no host"),
        ("", [], "--data-dir needs --hub"),
        ("no-store", ["--hub", "https://127.0.0.1:9"], "no packet store here"),
    ],
)
def test_kiosk_sync_setup_errors_are_one_line(kiosk, capsys, setup, options, words):
    kiosk.enroll(1)
    if setup == "no-cert":
        kiosk.keys.hub_tls.unlink()
    elif setup == "no-key":
        kiosk.keys.station_key.unlink()
    elif setup == "no-store":
        (kiosk.data_dir / "index.sqlite3").rename(kiosk.data_dir / "moved.sqlite3")
    status, _, err = kiosk_sync(capsys, "--data-dir", str(kiosk.data_dir), *options)
    assert status == 2
    assert words in err
    assert err.count("\n") == 1 and "Traceback" not in err
    if setup != "no-store":
        assert kiosk.store.packet(numbered(kiosk.base, 1).enrollment_id).state is PacketState.SEALED


def test_a_station_file_without_a_hub_address_is_one_line(kiosk, tmp_path, capsys):
    station = tmp_path / "station.toml"
    text = re.sub(r"data_dir = .*", f'data_dir = "{kiosk.data_dir}"', SIMULATION_PATH.read_text())
    station.write_text(text)
    status, _, err = kiosk_sync(capsys, "--config", str(station))
    assert status == 2 and "no hub address" in err and "[hub] url" in err


def test_kiosk_sync_forever_delivers_then_stops_cleanly_on_sigterm(kiosk, hub, hub_dir):
    ids = kiosk.enroll(2)
    service = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kiosk.cli",
            "sync",
            "--data-dir",
            str(kiosk.data_dir),
            "--hub",
            f"https://127.0.0.1:{hub.port}",
            "--forever",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: kiosk.store.waiting() == [], timeout=20)
        wait_until(lambda: _heartbeats(hub) == 1, timeout=10)
        service.send_signal(signal.SIGTERM)
        out, err = service.communicate(timeout=10)
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
    assert service.returncode == 0, err
    assert "sync stopped: 2 sent, 2 diterima, 0 ditolak" in out
    assert "SIGTERM received; stopping" in err
    assert "Traceback" not in err
    assert_delivered(hub_dir, kiosk, ids)


def _heartbeats(hub: HubServer) -> int:
    return len(hub.hub.index.heartbeats())


def test_a_stop_ends_the_run_after_the_request_under_way_and_nothing_is_lost(
    kiosk, hub, proxy, client, hub_dir
):
    ids = kiosk.enroll(3)
    first = kiosk.store.packet(ids[0])
    proxy.throttle(150_000)  # about a second a packet
    stop = threading.Event()
    results = []
    sender = threading.Thread(
        target=lambda: results.append(sync_once(kiosk.store, client, stop=stop)), name="sync"
    )
    sender.start()
    wait_until(lambda: proxy.bytes_up > first.size // 4, timeout=10)
    stop.set()  # SIGTERM, while the first packet is on its way
    sender.join(10)
    (summary,) = results
    assert summary.sent <= 1 and summary.errors == [] and summary.left >= 2
    assert [kiosk.store.packet(i).state for i in ids[1:]] == [PacketState.SEALED] * 2
    proxy.throttle(None)
    assert sync_once(kiosk.store, client).left == 0  # the next start sends the rest
    assert_delivered(hub_dir, kiosk, ids)


def test_an_address_that_is_not_the_hubs_api_is_said_so_and_marks_nothing(kiosk, hub):
    kiosk.enroll(1)
    with HubClient(f"https://127.0.0.1:{hub.port}/wrong", kiosk.keys.hub_tls, timeout=5) as lost:
        summary = sync_once(kiosk.store, lost)
    assert summary.hub_unreachable
    assert "answered 404" in summary.errors[0] and "district hub's address" in summary.errors[0]
    assert set(kiosk.states().values()) == {PacketState.SEALED}


def test_an_upload_begun_by_another_process_goes_on_from_the_hubs_offset(
    kiosk, hub, proxy, client, hub_dir
):
    """A kiosk restarted mid-upload: its new client re-creates the upload (idempotent)
    and the hub answers with the offset it holds; only the rest is sent."""
    (only,) = kiosk.enroll(1)
    stored = kiosk.store.packet(only)
    data = kiosk.store.read_sealed(only)
    half = stored.size // 2
    path = f"/v1/uploads/{stored.sha256}"
    with HubClient(f"https://127.0.0.1:{hub.port}", kiosk.keys.hub_tls, timeout=5) as before:
        assert before._create(stored, stored.sha256, stored.size) == 0
        assert before._patch(path, data[:half], 0, stored.sha256, None) == half  # then died
    sent_before = proxy.bytes_up
    assert client.upload(stored, data).accepted
    assert proxy.bytes_up - sent_before < stored.size * 0.6
    sync_once(kiosk.store, client)
    assert_delivered(hub_dir, kiosk, [only])


def test_two_syncs_at_once_deliver_each_packet_once(kiosk, hub, hub_dir):
    """The service and a technician's `kiosk sync` on one data folder at the same time."""
    ids = kiosk.enroll(4)
    url = f"https://127.0.0.1:{hub.port}"
    summaries = []

    def one_sync() -> None:
        store = EnrollmentStore(kiosk.data_dir)
        try:
            with HubClient(url, kiosk.keys.hub_tls, timeout=5) as client:
                summaries.append(sync_once(store, client))
        finally:
            store.close()

    syncs = [threading.Thread(target=one_sync, name=f"sync-{n}") for n in range(2)]
    for sync in syncs:
        sync.start()
    for sync in syncs:
        sync.join(30)
    assert len(summaries) == 2
    assert all(summary.errors == [] and summary.rejected == 0 for summary in summaries)
    assert sum(summary.accepted for summary in summaries) >= 4  # some twice: same verdict
    assert_delivered(hub_dir, kiosk, ids)
