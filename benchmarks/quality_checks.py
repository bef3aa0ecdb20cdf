"""Time of each costly call of an enrollment, on the bundled samples.

Prints the median and 90th percentile over ``--runs`` calls (after a few
warm-up calls) of the quality checks, the signature rendering, WSQ encoding of
one print, packet building, sealing and opening a packet (HPKE ML-KEM-768 +
X25519, Ed25519), and saving a packet to a fresh store (SQLite WAL,
synchronous=FULL, on the file system of ``--data-dir``, by default a temporary
folder); and the packet's size, clear and sealed (the goal is 150 KB).

    python benchmarks/quality_checks.py --runs 200
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import cv2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from figures import machine_line, p90

from kiosk.config import SIMULATION_PATH, load_config
from kiosk.drivers.camera.fake import SAMPLES as CAMERA_SAMPLES
from kiosk.drivers.fingerprint.fake import SAMPLES as FINGERPRINT_SAMPLES
from kiosk.drivers.signature.fake import scripted_signature
from kiosk.flow.enrollment import Enrollment
from kiosk.flow.machine import SIGNATURE_IMAGE_SIZE, EnrollmentFlow, Step
from kiosk.health.station import StationModules
from kiosk.packet.build import Packet, build_packet
from kiosk.packet.keys import HubPrivateKey, station_public_bytes
from kiosk.packet.seal import Sealer, open_sealed, seal
from kiosk.packet.wsq import encode_wsq
from kiosk.quality import assess_face, assess_fingerprint, assess_signature, render_signature
from kiosk.store.sqlite import EnrollmentStore

WARM_UP = 5
NIK = "3201014101900001"


class _NoSink:
    """The flow's sink: the benchmark stops at the review and saves by itself."""

    def save(self, packet: Packet) -> None:
        raise AssertionError("the benchmark saves by itself")

    def has_room(self) -> bool:
        return True

    def last_sequence(self) -> int:
        return 0


def reviewed_enrollment(modules: StationModules) -> Enrollment:
    """One complete enrollment, walked through the real flow up to the review."""
    flow = EnrollmentFlow(station_id="BENCH-01", modules=modules, sink=_NoSink())
    flow.start("id")
    flow.submit_nik(NIK)
    flow.accept_consent()
    while flow.step is Step.FACE:
        if flow.capture_face().accepted:
            flow.accept_face()
    while flow.step is Step.FINGERPRINTS:
        flow.capture_finger()
    flow.modules.signature.sign()  # the scripted citizen draws
    flow.submit_signature()
    if flow.step is not Step.REVIEW:
        raise SystemExit("the simulated enrollment did not reach the review")
    return flow.enrollment


def timed(call: Callable[[int], object], runs: int) -> list[float]:
    for n in range(WARM_UP):
        call(-1 - n)
    seconds = []
    for n in range(runs):
        started = time.perf_counter()
        call(n)
        seconds.append(time.perf_counter() - started)
    return seconds


def renamed(packet: Packet, n: int) -> Packet:
    enrollment_id = f"{packet.enrollment_id}-{n + WARM_UP:06d}"
    manifest = copy.deepcopy(packet.manifest)
    manifest["enrollment_id"] = enrollment_id
    return dataclasses.replace(packet, enrollment_id=enrollment_id, manifest=manifest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="timed calls each (default 200)")
    parser.add_argument("--data-dir", type=Path, help="where the store is written (default: tmp)")
    args = parser.parse_args(argv)

    face = cv2.cvtColor(cv2.imread(str(CAMERA_SAMPLES / "face.png")), cv2.COLOR_BGR2RGB)
    print_ = cv2.imread(str(FINGERPRINT_SAMPLES / "good_1.png"), cv2.IMREAD_GRAYSCALE)
    strokes = scripted_signature(3.0)
    width, height = SIGNATURE_IMAGE_SIZE
    modules = StationModules.from_config(load_config(SIMULATION_PATH), simulate=True)
    modules.open()
    try:
        enrollment = reviewed_enrollment(modules)
    finally:
        modules.close()
    finished_at = datetime.now(UTC)
    packet = build_packet(enrollment, finished_at)
    size_kib = (len(packet.manifest_json()) + sum(map(len, packet.files.values()))) / 1024
    station_key = Ed25519PrivateKey.generate()
    hub = HubPrivateKey.generate()
    registered = {"BENCH-01": station_public_bytes(station_key)}

    def sealed(_n: int) -> bytes:
        return seal(
            packet,
            station_key=station_key,
            station_id="BENCH-01",
            hub_public_key=hub.public_bytes(),
        )

    one_sealed = sealed(0)

    with tempfile.TemporaryDirectory(prefix="rekam-bench-", dir=args.data_dir) as folder:
        store = EnrollmentStore(Path(folder), Sealer("BENCH-01", station_key, hub.public_bytes()))
        # copies made beforehand, so only the save is timed
        copies = {n: renamed(packet, n) for n in range(-WARM_UP, args.runs)}
        try:
            results = {
                "assess_face (640x480)": timed(lambda _: assess_face(face), args.runs),
                "assess_fingerprint (256x288)": timed(
                    lambda _: assess_fingerprint(print_), args.runs
                ),
                "assess_signature": timed(lambda _: assess_signature(strokes, 3.0), args.runs),
                f"render_signature ({width}x{height})": timed(
                    lambda _: render_signature(strokes, width, height), args.runs
                ),
                "encode_wsq (256x288)": timed(lambda _: encode_wsq(print_), args.runs),
                "build_packet": timed(lambda _: build_packet(enrollment, finished_at), args.runs),
                "seal": timed(sealed, args.runs),
                "open_sealed (at the hub)": timed(
                    lambda _: open_sealed(
                        one_sealed, hub_private_key=hub, station_public_keys=registered
                    ),
                    args.runs,
                ),
                "EnrollmentStore.save (seal + fsync)": timed(
                    lambda n: store.save(copies[n]), args.runs
                ),
            }
        finally:
            store.close()

    print(machine_line())
    print(
        f"{args.runs} timed calls each after {WARM_UP} warm-up calls; packet {size_kib:.0f} KiB"
        f" clear, {len(one_sealed) / 1024:.0f} KiB sealed (goal: 150 KB)"
    )
    print()
    print(f"{'call':<36} {'median ms':>10} {'p90 ms':>8}")
    for name, seconds in results.items():
        print(f"{name:<36} {statistics.median(seconds) * 1e3:>10.2f} {p90(seconds) * 1e3:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
