"""Sync throughput on loopback: how fast a kiosk's backlog drains to the hub.

Fills a store with N sealed packets (copies of one simulated enrollment under
new ids, each sealed on its own), starts `kiosk-hub serve` over HTTPS in its own
process, and times `sync_once` (the code behind `kiosk sync`) until every packet
is acknowledged: on the embedded hub (SQLite and files) and on the scale path
(PostgreSQL 15 from Debian's packages and SeaweedFS's S3, as the tests start
them). Loopback has no latency, so these are the hub's and the client's own
costs; a real link adds its round trips to each packet's two requests.

    .venv/bin/python benchmarks/sync_throughput.py --packets 1000 [--hub embedded|scale|both]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from figures import machine_line

from kiosk.config import SIMULATION_PATH, load_config
from kiosk.flow.machine import EnrollmentFlow
from kiosk.health.station import StationModules
from kiosk.packet.build import Packet
from kiosk.packet.keys import load_hub_public_key, station_public_bytes
from kiosk.packet.seal import Sealer
from kiosk.simulate import enroll_one
from kiosk.store.sqlite import EnrollmentStore, PacketState
from kiosk.sync.client import HubClient
from kiosk.sync.runner import sync_once

sys.path.insert(0, str(Path(__file__).parent.parent / "tests" / "hub"))
from scale_servers import PostgresServer, SeaweedServer  # the tests' own servers

from hub.layout import add_station, hub_public_key_path, init_hub, tls_certificate_path

STATION = "BENCH-01"


class _Catcher:
    def save(self, packet: Packet) -> None:
        self.packet = packet

    def has_room(self) -> bool:
        return True

    def last_sequence(self) -> int:
        return 0


def one_packet() -> Packet:
    modules = StationModules.from_config(load_config(SIMULATION_PATH), simulate=True)
    modules.open()
    catcher = _Catcher()
    try:
        enroll_one(
            EnrollmentFlow(station_id=STATION, modules=modules, sink=catcher), "3201014101900001"
        )
    finally:
        modules.close()
    return catcher.packet


def fill_store(folder: Path, sealer: Sealer, packet: Packet, count: int) -> EnrollmentStore:
    store = EnrollmentStore(folder, sealer)
    for n in range(1, count + 1):
        enrollment_id = f"{STATION}-20261128-{n:06d}"
        manifest = {**copy.deepcopy(packet.manifest), "enrollment_id": enrollment_id}
        manifest["sequence"] = n
        store.save(dataclasses.replace(packet, enrollment_id=enrollment_id, manifest=manifest))
    return store


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(hub_dir: Path, port: int, extra: list[str], env: dict[str, str]) -> subprocess.Popen:
    log = hub_dir / "serve.log"  # a file: a pipe nobody reads would fill and stall the hub
    hub = subprocess.Popen(
        [
            *(str(Path(sys.executable).parent / "kiosk-hub"), "serve", "--data-dir", str(hub_dir)),
            *("--port", str(port), *extra),
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        env={**os.environ, **env},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if hub.poll() is not None:
            raise SystemExit(f"kiosk-hub serve exited: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return hub
        except OSError:
            time.sleep(0.1)
    raise SystemExit("kiosk-hub serve did not listen within 30 s")


def drain(
    folder: Path, packet: Packet, count: int, extra: list[str], env: dict[str, str]
) -> tuple[float, int, int]:
    """Seconds to send ``count`` packets, and how many the hub accepted and their bytes."""
    hub_dir = folder / "hub"
    init_hub(hub_dir)
    station_key = Ed25519PrivateKey.generate()
    add_station(hub_dir, STATION, station_public_bytes(station_key))
    sealer = Sealer(STATION, station_key, load_hub_public_key(hub_public_key_path(hub_dir)))
    store = fill_store(folder / "kiosk", sealer, packet, count)
    port = free_port()
    hub = serve(hub_dir, port, extra, env)
    try:
        client = HubClient(f"https://127.0.0.1:{port}", tls_certificate_path(hub_dir))
        size = sum(stored.size for stored in store.waiting())
        started = time.perf_counter()
        summary = sync_once(store, client)
        seconds = time.perf_counter() - started
        accepted = store.backlog()[PacketState.ACKNOWLEDGED]
        if summary.errors or accepted != count:
            raise SystemExit(f"sync did not drain: {accepted} of {count}; {summary.errors[:3]}")
        return seconds, accepted, size
    finally:
        hub.terminate()
        hub.wait(timeout=20)
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=1000, help="backlog size (default 1000)")
    parser.add_argument("--hub", choices=("embedded", "scale", "both"), default="both")
    args = parser.parse_args(argv)
    packet = one_packet()
    rows = []
    with tempfile.TemporaryDirectory(prefix="rekam-sync-bench-") as scratch:
        if args.hub in ("embedded", "both"):
            rows.append(
                (
                    "embedded (SQLite + files)",
                    drain(Path(scratch) / "e", packet, args.packets, [], {}),
                )
            )
        if args.hub in ("scale", "both"):
            postgres, seaweed = PostgresServer.start(), SeaweedServer.start()
            try:
                extra = ["--database", postgres.create_database()]
                extra += ["--blobs", seaweed.url(seaweed.create_bucket())]
                rows.append(
                    (
                        "PostgreSQL + S3 (SeaweedFS)",
                        drain(
                            Path(scratch) / "s", packet, args.packets, extra, seaweed.credentials
                        ),
                    )
                )
            finally:
                seaweed.stop()
                postgres.stop()
    print(machine_line())
    print(
        f"a backlog of {args.packets} sealed packets, drained by one `kiosk sync` (HTTPS, loopback)"
    )
    print()
    print(f"{'hub':<30} {'packets/s':>10} {'MB/s':>7} {'drain s':>8} {'per packet ms':>14}")
    for name, (seconds, accepted, size) in rows:
        print(
            f"{name:<30} {accepted / seconds:>10.1f} {size / seconds / 1e6:>7.2f} "
            f"{seconds:>8.1f} {seconds / accepted * 1e3:>14.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
