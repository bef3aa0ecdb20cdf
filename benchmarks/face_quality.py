"""Face analysis per frame at 640 x 480, and the verdicts on the test photographs.

Prints the median and 90th percentile over ``--runs`` calls (after warm-up) of
the detector alone, detector + mesh, and the whole check with every measure
(``assess_face``), on the simulated citizen's preview frame; the background
replacement of one portrait; then a table: each real photograph and variant, the
verdict expected, the measures that failed, and whether the guidance was right.
Goal: guidance at 15 frames a second on a Pi 4, so 10 ms or less a frame here.

    python benchmarks/face_quality.py --runs 200
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from figures import machine_line, p90

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the variants
from face_variants import PHOTOS, SAMPLE, STILL_SCALE, VARIANTS, read_rgb

from kiosk.quality.face import FaceProblem, assess_face
from kiosk.quality.landmarks import FaceLandmarker
from kiosk.quality.portrait import replace_background


def _times(call: Callable[[], object], runs: int) -> list[float]:
    for _ in range(3):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return times


def _row(name: str, times: list[float]) -> str:
    return f"{name:<34} median {statistics.median(times):7.2f} ms   p90 {p90(times):7.2f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    print(machine_line())
    frame = read_rgb(SAMPLE)
    marker = FaceLandmarker.shared()
    face = marker.detect(frame)[0]
    good = assess_face(frame, still_scale=STILL_SCALE)
    print(f"frame {frame.shape[1]}x{frame.shape[0]}, {args.runs} runs each")
    print(_row("detect (BlazeFace)", _times(lambda: marker.detect(frame), args.runs)))
    print(_row("mesh (FaceMesh, 468 points)", _times(lambda: marker.mesh(frame, face), args.runs)))
    whole = _times(lambda: assess_face(frame, still_scale=STILL_SCALE), args.runs)
    print(_row("assess_face, every measure", whole))
    print(f"  = {1000 / statistics.median(whole):.0f} frames a second on one core's worth")
    cut = good.cut.apply(frame)
    points = good.cut.to_portrait(good.landmarks)
    runs = max(3, args.runs // 20)
    print(
        _row(
            "replace_background (once)",
            _times(lambda: replace_background(cut, points, "red"), runs),
        )
    )

    cases = [("simulated citizen (good)", frame, STILL_SCALE, None)]
    cases += [(f"variant: {name}", make(frame, good), STILL_SCALE, problem)
              for name, (make, _, problem) in VARIANTS.items()]  # fmt: skip
    for name, file, scale, expected in (
        ("astronaut (smiling)", "astronaut.png", STILL_SCALE, FaceProblem.MOUTH),
        ("Grace Hopper (glasses)", "grace_hopper.jpg", STILL_SCALE, FaceProblem.GLASSES),
        ("cameraman (head turned)", "cameraman.png", 1.0, "fail"),
    ):
        cases.append((f"photo: {name}", read_rgb(PHOTOS / file), scale, expected))
    print()
    print(f"| {'image':<34} | expected | verdict | guidance right | failing measures |")
    print(f"|{'-' * 36}|----------|---------|----------------|------------------|")
    right = 0
    for name, image, scale, expected in cases:
        quality = assess_face(image, still_scale=scale)
        failing = sorted(n for n, m in quality.measures.items() if not m.passed)
        want = "pass" if expected is None else "fail"
        verdict = "pass" if quality.ok else "fail"
        guided = expected in (None, "fail") or quality.problem is expected
        right += verdict == want and guided
        shown = ", ".join(failing[:4]) + (" ..." if len(failing) > 4 else "")
        print(
            f"| {name:<34} | {want:<8} | {verdict:<7} | {'yes' if guided else 'NO':<14} | {shown} |"
        )
    print(f"\n{right} of {len(cases)} verdicts and guidance right")
    return 0


if __name__ == "__main__":
    sys.exit(main())
