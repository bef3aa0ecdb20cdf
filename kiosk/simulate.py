"""Headless enrollments through the real flow and the fake modules.

`kiosk simulate --citizens N` uses this to measure the kiosk's own software time
per citizen (quality checks, packet building, saving), with devices that answer
at once.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from kiosk.config import SIMULATION_PATH, load_config
from kiosk.errors import KioskError
from kiosk.flow.machine import EnrollmentFlow, Step
from kiosk.health.inventory import INVENTORY_NAME, ModuleInventory
from kiosk.health.station import StationModules
from kiosk.packet.build import Packet
from kiosk.packet.keys import (
    StationKeyFiles,
    generate_station_key,
    save_station_public_key,
    station_public_bytes,
)
from kiosk.packet.seal import Sealer
from kiosk.store.sqlite import EnrollmentStore, make_private_dir

SIMULATION_HUB_DIR = "hub"  # inside a simulation's data folder: `kiosk-hub serve --data-dir`


def simulation_sealer(data_dir: Path, station_id: str) -> Sealer:
    """The simulation's keys in ``data_dir``, made on first use: a station key in
    ``keys/`` and a simulation hub in ``hub/`` (marked SIMULATION there) that knows
    this station, so `kiosk-hub serve --data-dir DATA/hub` accepts its packets."""
    from hub.layout import add_station, hub_public_key_path, init_hub, tls_certificate_path

    files = StationKeyFiles.in_data_dir(data_dir)
    hub_dir = data_dir / SIMULATION_HUB_DIR
    make_private_dir(data_dir)  # before the hub's folder makes it with the umask's mode
    init_hub(hub_dir, simulation=True)
    files.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not files.station_key.exists():
        key = generate_station_key(files.station_key)
        save_station_public_key(files.station_public, station_public_bytes(key))
        add_station(hub_dir, station_id, station_public_bytes(key))
    for source, copy in (
        (hub_public_key_path(hub_dir), files.hub_public),
        (tls_certificate_path(hub_dir), files.hub_tls),
    ):
        if not copy.exists():
            copy.write_bytes(source.read_bytes())
    return Sealer.from_key_files(files, station_id)


def sample_nik(rng: random.Random, today: date) -> str:
    """A plausible NIK from Kabupaten Bogor (3201) for a citizen aged 17 to 80."""
    year = today.year - rng.randint(18, 80)  # born 18 years back may be 17 yet, never 16
    month, day = rng.randint(1, 12), rng.randint(1, 28)
    day += 40 * rng.randint(0, 1)  # women's birth day carries +40
    district, serial = rng.randint(1, 40), rng.randint(1, 9999)
    return f"3201{district:02d}{day:02d}{month:02d}{year % 100:02d}{serial:04d}"


@dataclass
class SimulationReport:
    completed: int
    failed: int
    step_seconds: dict[str, list[float]]
    citizen_seconds: list[float]
    packet_bytes: list[int] = field(default_factory=list)
    seal_seconds: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "packet_bytes_median": _median(self.packet_bytes),
            "seal_median_seconds": _median(self.seal_seconds),
            "completed": self.completed,
            "failed": self.failed,
            "step_median_seconds": {  # in the order the citizen walks through them
                str(step): statistics.median(self.step_seconds[step])
                for step in Step
                if step in self.step_seconds
            },
            "citizen_median_seconds": _median(self.citizen_seconds),
            "citizen_max_seconds": max(self.citizen_seconds, default=None),
        }


def _median(values: list) -> float | None:
    return statistics.median(values) if values else None


@dataclass(frozen=True)
class _MeasuredSealer:
    """The simulation's sealer, noting for the report each packet's step times, its
    sealed size and how long sealing took (the store seals inside save())."""

    sealer: Sealer
    report: SimulationReport

    @property
    def station_id(self) -> str:
        return self.sealer.station_id

    def seal(self, packet: Packet) -> bytes:
        started = time.perf_counter()
        sealed = self.sealer.seal(packet)
        self.report.seal_seconds.append(time.perf_counter() - started)
        self.report.packet_bytes.append(len(sealed))
        for step, seconds in packet.manifest["step_seconds"].items():
            self.report.step_seconds.setdefault(step, []).append(seconds)
        return sealed

    def identity(self, packet: Packet) -> str:
        return self.sealer.identity(packet)


def enroll_one(flow: EnrollmentFlow, nik: str) -> str:
    """Walk one citizen through every step; return the saved enrollment id."""
    flow.start("id")
    if not flow.submit_nik(nik).ok:
        raise KioskError(f"the simulated NIK {nik} was rejected")
    flow.accept_consent()
    while flow.step is Step.FACE:
        if flow.capture_face().fault:
            raise KioskError("simulated camera failed")
        if flow.face_pending is not None:
            flow.accept_face()  # the citizen says yes to the photo
    while flow.step is Step.FINGERPRINTS:
        if flow.capture_finger().fault:
            raise KioskError("simulated fingerprint reader failed")
    flow.modules.signature.sign()  # the fake pad's signer draws, as a finger would
    quality = flow.submit_signature()
    if flow.step is not Step.REVIEW:
        raise KioskError(f"simulated signature rejected: {quality and quality.problem}")
    enrollment_id = flow.save()
    if enrollment_id is None:
        raise KioskError("the store refused the enrollment")
    flow.finish()
    return enrollment_id


def simulate(citizens: int, data_dir: Path | None = None, seed: int = 1) -> SimulationReport:
    config = load_config(SIMULATION_PATH)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="rekam-sim-") as scratch:
        folder = Path(data_dir or scratch)
        report = SimulationReport(0, 0, {}, [])
        sealer = simulation_sealer(folder, config.station_id)
        store = EnrollmentStore(folder, _MeasuredSealer(sealer, report))
        modules = StationModules.from_config(config, simulate=True)
        modules.open()
        flow = EnrollmentFlow(
            station_id=config.station_id,
            modules=modules,
            sink=store,
            session=config.session,
            clock=time.perf_counter,
        )
        try:
            for _ in range(citizens):
                started = time.perf_counter()
                try:
                    enroll_one(flow, sample_nik(rng, date.today()))
                except KioskError:
                    report.failed += 1
                    flow.cancel()
                    continue
                report.citizen_seconds.append(time.perf_counter() - started)
                report.completed += 1
            _record_inventory(folder, config.station_id, modules, report.completed)
        finally:
            modules.close()
            store.close()
    return report


def _record_inventory(
    data_dir: Path, station_id: str, modules: StationModules, enrollments: int
) -> None:
    """Write modules.json as a kiosk would, so `kiosk sync`'s heartbeats carry the
    simulated units to the hub's dashboard."""
    inventory = ModuleInventory(data_dir / INVENTORY_NAME, station_id=station_id)
    for kind, info in modules.infos().items():
        inventory.seen(info, status="up", installed=True)
        inventory.count(info.identity, captures=enrollments)
        inventory.set_kind_status(kind, "up", "simulated")
    inventory.save(running=False)
