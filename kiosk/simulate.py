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
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from kiosk.config import SIMULATION_PATH, load_config
from kiosk.errors import KioskError
from kiosk.flow.machine import EnrollmentFlow, Step
from kiosk.health.station import StationModules
from kiosk.store.sqlite import STORE_NAME, EnrollmentStore


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

    def as_dict(self) -> dict:
        return {
            "completed": self.completed,
            "failed": self.failed,
            "step_median_seconds": {  # in the order the citizen walks through them
                str(step): statistics.median(self.step_seconds[step])
                for step in Step
                if step in self.step_seconds
            },
            "citizen_median_seconds": statistics.median(self.citizen_seconds)
            if self.citizen_seconds
            else None,
            "citizen_max_seconds": max(self.citizen_seconds, default=None),
        }


def enroll_one(flow: EnrollmentFlow, nik: str) -> str:
    """Walk one citizen through every step; return the saved enrollment id."""
    flow.start("id")
    if not flow.submit_nik(nik).ok:
        raise KioskError(f"the simulated NIK {nik} was rejected")
    flow.accept_consent()
    while flow.step is Step.FACE:
        if flow.capture_face().fault:
            raise KioskError("simulated camera failed")
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
        store = EnrollmentStore(Path(data_dir or scratch) / STORE_NAME)
        modules = StationModules.from_config(config, simulate=True)
        modules.open()
        flow = EnrollmentFlow(
            station_id=config.station_id,
            modules=modules,
            sink=store,
            session=config.session,
            clock=time.perf_counter,
        )
        report = SimulationReport(0, 0, {}, [])
        try:
            for _ in range(citizens):
                started = time.perf_counter()
                try:
                    enrollment_id = enroll_one(flow, sample_nik(rng, date.today()))
                except KioskError:
                    report.failed += 1
                    flow.cancel()
                    continue
                report.citizen_seconds.append(time.perf_counter() - started)
                report.completed += 1
                for step, seconds in store.manifest(enrollment_id)["step_seconds"].items():
                    report.step_seconds.setdefault(step, []).append(seconds)
        finally:
            modules.close()
            store.close()
    return report
