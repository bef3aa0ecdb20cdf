"""Seconds per finger through the real ZhianTec driver, against the UART's transfer floor.

The sensor emulator paces its bytes at the line's baud rate (10 bits a byte), so an
image takes as long as on the wire. A citizen puts each finger on the glass as soon
as the reader waits for one and lifts it at LIFT; each capture is timed from the
``capture()`` call to its result. The floor is the image's bytes on the wire: 36,864
bytes of pixels in 128-byte data packets with their framing, plus UpImage's answer.
Also printed: the time from WAITING to LIFT (the finger placed at once), and the CPU
time of the whole process per finger (driver and emulator together).

    python benchmarks/fingerprint_step.py              # 10 fingers at each speed
    python benchmarks/fingerprint_step.py --fingers 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from figures import machine_line, p90

from kiosk.drivers.base import FingerPhase, Outcome
from kiosk.drivers.fingerprint.emulator import SensorEmulator
from kiosk.drivers.fingerprint.zhiantec import ZhiantecReader, uart_seconds
from kiosk.drivers.fingerprint.zhiantec_protocol import (
    DEFAULT_PACKET_SIZE_CODE,
    FRAME_OVERHEAD,
    IMAGE_BYTES,
    packet_size,
)

GOAL = 1.2  # the step may take at most this many times the floor
GOOD_FINGERS = ("good_1", "good_2", "good_3", "good_4")  # each with a template


def floor_bytes(packet_bytes: int = packet_size(DEFAULT_PACKET_SIZE_CODE)) -> int:
    """The image on the wire: pixels, each data packet's framing, UpImage's answer."""
    packets = -(-IMAGE_BYTES // packet_bytes)
    return IMAGE_BYTES + packets * FRAME_OVERHEAD + (FRAME_OVERHEAD + 1)


class Citizen:
    """Puts a finger on the glass when the reader waits, lifts it at LIFT; notes when."""

    def __init__(self, sensor: SensorEmulator) -> None:
        self.sensor = sensor
        self.at: dict[FingerPhase, float] = {}

    def __call__(self, phase: FingerPhase) -> None:
        self.at[phase] = time.perf_counter()
        if phase is FingerPhase.WAITING:
            self.sensor.place_finger()
        elif phase in (FingerPhase.LIFT, FingerPhase.LIFT_FIRST):
            self.sensor.lift_finger()


def run(label: str, fingers: int, sensor_baud: int, **options) -> dict[str, object]:
    sensor = SensorEmulator(baudrate=sensor_baud, pace=True, fingers=GOOD_FINGERS)
    with sensor, ZhiantecReader(port=sensor.port or "", **options) as reader:
        baud = int(reader.health().detail.split()[1])
        steps, to_lift, cpu = [], [], []
        for _ in range(fingers):
            citizen = Citizen(sensor)
            cpu_before = time.process_time()
            started = time.perf_counter()
            capture = reader.capture(citizen).result()
            steps.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_before)
            if capture.outcome is not Outcome.CAPTURED or len(capture.template) != 512:
                raise SystemExit(f"{label}: no image and template: {capture.outcome}")
            to_lift.append(citizen.at[FingerPhase.LIFT] - citizen.at[FingerPhase.WAITING])
    floor = uart_seconds(floor_bytes(), baud)
    median = statistics.median(steps)
    return {
        "label": label,
        "baud": baud,
        "median": median,
        "p90": p90(steps),
        "floor": floor,
        "ratio": median / floor,
        "to_lift": statistics.median(to_lift),
        "cpu": statistics.median(cpu),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fingers", type=int, default=10, help="fingers at each speed")
    args = parser.parse_args(argv)
    if args.fingers < 1:
        parser.error("--fingers must be at least 1")

    results = [
        run("57600", args.fingers, 57600, baudrate=57600),
        run("115200 (fast_baudrate)", args.fingers, 57600, baudrate=57600, fast_baudrate=115200),
    ]

    print(machine_line())
    print(
        f"{args.fingers} fingers at each speed; floor = {floor_bytes():,} bytes x 10 bits "
        f"(image, framing, answer); goal: median within {GOAL}x the floor"
    )
    print()
    header = (
        f"{'speed':<24} {'median s':>9} {'p90 s':>7} {'floor s':>8} {'x floor':>8} "
        f"{'to LIFT ms':>11} {'CPU s':>6}"
    )
    print(header)
    for row in results:
        print(
            f"{row['label']:<24} {row['median']:>9.3f} {row['p90']:>7.3f} {row['floor']:>8.3f} "
            f"{row['ratio']:>8.3f} {row['to_lift'] * 1e3:>11.1f} {row['cpu']:>6.2f}"
        )
    worst = max(row["ratio"] for row in results)
    print()
    print(f"worst: {worst:.3f}x the floor ({'within' if worst <= GOAL else 'OVER'} {GOAL}x)")
    return 0 if worst <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
