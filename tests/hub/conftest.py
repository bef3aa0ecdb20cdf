"""The hub's fixtures: a hub data folder, stations with keys, real packets, a hub served
over real HTTPS on loopback (uvicorn in a thread) and a client trusting only its
certificate. (PostgreSQL and S3 live in scale_fixtures.py.)"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support import enrolled_packet, upload_headers

from hub import layout
from hub.app import create_app
from hub.cli import listening_socket
from hub.service import HEARTBEAT_LABEL, Hub
from kiosk.packet.build import Packet
from kiosk.packet.keys import load_hub_public_key, station_public_bytes
from kiosk.packet.seal import seal

STATIONS = ("JB-BOGOR-01", "JB-BOGOR-02")


@pytest.fixture(scope="session")
def base_packet() -> Packet:
    """One real packet of the fake modules (face, ten WSQ prints, signature)."""
    return enrolled_packet("TEMPLATE")


@pytest.fixture(scope="session")
def make_packet(base_packet) -> Callable[[str, int], Packet]:
    """make_packet(station_id, sequence): the real packet, renamed for that station."""

    def make(station_id: str, sequence: int) -> Packet:
        enrollment_id = f"{station_id}-20261128-{sequence:06d}"
        manifest = {
            **base_packet.manifest,
            "enrollment_id": enrollment_id,
            "sequence": sequence,
            "station": {"id": station_id},
        }
        return Packet(enrollment_id=enrollment_id, manifest=manifest, files=base_packet.files)

    return make


@pytest.fixture(scope="session")
def stations() -> tuple[str, ...]:
    return STATIONS


@pytest.fixture(scope="session")
def pinned() -> Callable[[Path], ssl.SSLContext]:
    """pinned(hub_dir): a TLS context trusting that hub's certificate only."""
    return pinned_context


@pytest.fixture(scope="session")
def station_keys() -> dict[str, Ed25519PrivateKey]:
    return {station: Ed25519PrivateKey.generate() for station in STATIONS}


@pytest.fixture
def hub_dir(tmp_path, station_keys) -> Path:
    """A simulation hub's data folder with STATIONS registered."""
    path = tmp_path / "hub"
    layout.init_hub(path, simulation=True)
    for station, key in station_keys.items():
        layout.add_station(path, station, station_public_bytes(key))
    return path


@pytest.fixture
def sealed(hub_dir, station_keys, make_packet) -> Callable[..., bytes]:
    """sealed(station_id, sequence, key=None, hub_public=None): a packet sealed as a
    station does, for this hub unless ``hub_public`` says otherwise."""
    hub_public = load_hub_public_key(layout.hub_public_key_path(hub_dir))

    def make(station_id=STATIONS[0], sequence=1, key=None, hub_public_key=None, created_at=None):
        return seal(
            make_packet(station_id, sequence),
            station_key=key or station_keys[station_id],
            station_id=station_id,
            hub_public_key=hub_public_key or hub_public,
            created_at=created_at or datetime(2026, 11, 28, 9, 30, tzinfo=UTC),
        )

    return make


def pinned_context(hub_dir: Path) -> ssl.SSLContext:
    """Trusts the hub's certificate and nothing else, as a station does."""
    # with a cafile, create_default_context loads no system certificate
    return ssl.create_default_context(cafile=str(layout.tls_certificate_path(hub_dir)))


@dataclass
class Served:
    hub: Hub
    url: str
    port: int
    client: httpx.Client

    def upload_headers(self, data: bytes, station: str, enrollment: str) -> dict[str, str]:
        return upload_headers(data, station, enrollment)

    def create(self, data: bytes, station: str = STATIONS[0], enrollment: str | None = None):
        enrollment = enrollment or json.loads(_header(data))["enrollment_id"]
        return self.client.post(
            "/v1/uploads", headers=self.upload_headers(data, station, enrollment)
        )

    def patch(self, data: bytes, offset: int, body: bytes | None = None) -> httpx.Response:
        return self.client.patch(
            f"/v1/uploads/{hashlib.sha256(data).hexdigest()}",
            headers={
                "Tus-Resumable": "1.0.0",
                "Rekam-Protocol": "1",
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
            },
            content=data[offset:] if body is None else body,
        )

    def send(self, data: bytes, station: str = STATIONS[0]) -> httpx.Response:
        """Create then PATCH everything: the completing response."""
        created = self.create(data, station)
        if created.status_code != 201:
            return created
        return self.patch(data, int(created.headers["Upload-Offset"]))

    def heartbeat(self, key: Ed25519PrivateKey, body: dict, station: str | None = None):
        payload = json.dumps(body).encode()
        signature = base64.b64encode(key.sign(HEARTBEAT_LABEL + payload)).decode()
        return self.client.post(
            f"/v1/stations/{station or body['station_id']}/heartbeat",
            content=payload,
            headers={"Rekam-Signature": signature, "Content-Type": "application/json"},
        )


def _header(data: bytes) -> bytes:
    length = int.from_bytes(data[9:13], "big")
    return data[13 : 13 + length]


@pytest.fixture
def serve(hub_dir) -> Iterator[Callable[..., Served]]:
    """serve(hub=None, idle_timeout=5): the hub of ``hub_dir`` over HTTPS on a free
    loopback port; a PATCH body silent for ``idle_timeout`` seconds counts as dropped."""
    servers: list[tuple[uvicorn.Server, threading.Thread, Served]] = []

    def start(hub: Hub | None = None, idle_timeout: float = 5) -> Served:
        hub = hub or Hub.open(hub_dir)
        sock = listening_socket("127.0.0.1", 0)
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(hub, body_idle_timeout=idle_timeout),
            ssl_certfile=str(layout.tls_certificate_path(hub_dir)),
            ssl_keyfile=str(layout.tls_key_path(hub_dir)),
            log_level="warning",
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"hub-{port}", daemon=True
        )
        thread.start()
        url = f"https://127.0.0.1:{port}"
        client = httpx.Client(base_url=url, verify=pinned_context(hub_dir), timeout=10)
        served = Served(hub, url, port, client)
        servers.append((server, thread, served))
        for _ in range(200):
            if server.started:
                break
            threading.Event().wait(0.02)
        assert server.started, "the hub did not start"
        return served

    yield start
    for server, thread, served in servers:
        served.client.close()
        server.should_exit = True
        thread.join(10)
        served.hub.close()
