"""Test helpers shared by the flow, store and UI tests."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable, Sequence

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk.drivers.camera.fake import FakeCamera
from kiosk.drivers.fingerprint.fake import FakeFingerprintReader
from kiosk.drivers.indicators.fake import FakeIndicators
from kiosk.drivers.signature.fake import FakeSignaturePad
from kiosk.health.station import StationModules
from kiosk.packet.build import Packet
from kiosk.packet.keys import HubPrivateKey, station_public_bytes
from kiosk.packet.seal import Sealer, inspect, open_sealed

VALID_NIK = "3201014101900001"  # Kab. Bogor, a woman born 1 January 1990

# One hub key and one station key for the whole run: stores seal with them, and
# tests open what a store wrote as the hub would.
TEST_HUB = HubPrivateKey.generate()
TEST_STATION_KEY = Ed25519PrivateKey.generate()


def test_sealer(station_id: str = "TEST-01") -> Sealer:
    return Sealer(station_id, TEST_STATION_KEY, TEST_HUB.public_bytes())


test_sealer.__test__ = False  # a helper, not a test


def stored_packet(store, enrollment_id: str) -> Packet | None:
    """The packet ``store`` keeps under ``enrollment_id``, opened as the hub would;
    None when it keeps none."""
    stored = store.packet(enrollment_id)
    if stored is None:
        return None
    station_keys = {stored.station_id: station_public_bytes(TEST_STATION_KEY)}
    sealed = store.read_sealed(enrollment_id)
    return open_sealed(sealed, hub_private_key=TEST_HUB, station_public_keys=station_keys)


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def fake_modules(
    camera: Sequence[str] = ("face",),
    fingerprint: Sequence[str] = ("good",),
    signature: Sequence[str] = ("drawn",),
    camera_fail_on: int | None = None,
    reader_fail_on: int | None = None,
    reader_delay: float = 0.0,
) -> StationModules:
    modules = StationModules(
        camera=FakeCamera(script=list(camera), fail_on_call=camera_fail_on),
        fingerprint=FakeFingerprintReader(
            script=list(fingerprint), fail_on_call=reader_fail_on, delay=reader_delay
        ),
        signature=FakeSignaturePad(script=list(signature)),
        indicators=FakeIndicators(),
    )
    modules.open()
    return modules


class PacketCatcher:
    """A sink that keeps the packets the flow hands over, in memory."""

    def __init__(self) -> None:
        self.packets: list[Packet] = []

    def save(self, packet: Packet) -> None:
        self.packets.append(packet)

    def has_room(self) -> bool:
        return True

    def last_sequence(self) -> int:
        """The highest sequence among the kept packets, 0 when none (as the store)."""
        return max((packet.manifest.get("sequence", 0) for packet in self.packets), default=0)


def wait_for(condition: Callable[[], object], timeout: float = 2.0) -> bool:
    """Whether ``condition()`` held within ``timeout`` s (polled every 10 ms)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.01)
    return bool(condition())


def wait_until(condition: Callable[[], object], timeout: float = 3.0) -> float:
    """Seconds until ``condition()`` held; fails the test past ``timeout``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"not within {timeout} s")
        time.sleep(0.005)
    return time.monotonic() - start


def enrolled_packet(station_id: str = "TEST-01") -> Packet:
    """One real packet: a whole enrollment of the fake modules through the flow
    (face, ten WSQ prints, signature)."""
    from kiosk.config import SessionConfig
    from kiosk.flow.machine import EnrollmentFlow
    from kiosk.simulate import enroll_one

    modules = fake_modules()
    catcher = PacketCatcher()
    try:
        flow = EnrollmentFlow(
            station_id=station_id,
            modules=modules,
            sink=catcher,
            session=SessionConfig(),
            clock=FakeClock(),
        )
        enroll_one(flow, VALID_NIK)
    finally:
        modules.close()
    (packet,) = catcher.packets
    return packet


def upload_headers(
    data: bytes, station: str | None = None, enrollment: str | None = None
) -> dict[str, str]:
    """The tus creation headers for the sealed packet ``data`` (docs/sync-protocol.md);
    station and enrollment come from its clear header unless given."""
    header = inspect(data) if station is None or enrollment is None else {}
    station = header.get("station_id", station)
    enrollment = header.get("enrollment_id", enrollment)

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    return {
        "Tus-Resumable": "1.0.0",
        "Rekam-Protocol": "1",
        "Upload-Length": str(len(data)),
        "Upload-Metadata": f"station {b64(station)},enrollment {b64(enrollment)},"
        f"sha256 {b64(hashlib.sha256(data).hexdigest())}",
    }
