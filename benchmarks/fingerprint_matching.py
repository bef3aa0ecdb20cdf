"""Catching a finger given twice: time per print and per comparison, and how well it tells.

Synthetic fingers (``finger_ridges`` and ``impressions`` in
kiosk/drivers/fingerprint/synthetic.py: SFinGe-style ridges on a canvas larger
than the window, four pattern classes, loops the most common), several
impressions of each (moved 10-30 px, turned 5-20 degrees, skin stretched 2-5 px,
pressed harder or lighter, blurred, noisier). Prints:

- the median and 90th percentile time of ``make_template`` and ``match_score``,
  and of what the flow does after the tenth finger's capture: one template and
  ``find_repeat`` against the nine fingers already captured;
- genuine scores (every pair of impressions of one finger) and impostor scores
  (every pair of impressions of two different fingers, and separately of two
  fingers of the same pattern class), min / median / max;
- the false non-match and false match rates at ``SAME_FINGER_THRESHOLD`` and at
  thresholds 5 to 10, with the share of enrollments (45 comparisons of different
  fingers each) that would see at least one false alarm.

    python benchmarks/fingerprint_matching.py                  # 30 fingers x 4
    python benchmarks/fingerprint_matching.py --fingers 10 --impressions 3
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

from figures import machine_line, p90

from kiosk.drivers.fingerprint.synthetic import (
    PATTERNS,
    finger_ridges,
    finger_spec,
    impressions,
)
from kiosk.quality.matching import (
    SAME_FINGER_THRESHOLD,
    find_repeat,
    make_template,
    match_score,
)


def pattern_of(finger: int) -> str:
    """Two right loops in five fingers, then a left loop, a whorl, a tented arch."""
    classes = list(PATTERNS)
    return "right_loop" if finger % 5 == 0 else classes[finger % 5 - 1]


def spread(name: str, values: list[float]) -> None:
    print(
        f"{name:34s} n={len(values):6d}  min {min(values):6.2f}  "
        f"median {statistics.median(values):6.2f}  max {max(values):6.2f}"
    )


def ms(name: str, seconds: list[float]) -> None:
    print(
        f"{name:34s} median {statistics.median(seconds) * 1e3:7.2f} ms"
        f"   p90 {p90(seconds) * 1e3:7.2f} ms   ({len(seconds)} calls)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fingers", type=int, default=30)
    parser.add_argument("--impressions", type=int, default=4)
    parser.add_argument("--runs", type=int, default=50, help="timed enrollments of 9 + 1")
    args = parser.parse_args()
    if args.fingers < 10 or args.impressions < 2:
        parser.error("at least 10 fingers (an enrollment) and 2 impressions of each")

    print(machine_line())
    started = time.perf_counter()
    patterns = [pattern_of(k) for k in range(args.fingers)]
    images = [
        impressions(
            finger_ridges(finger_spec("good", 1000 + k, pattern)), 1000 + k, args.impressions
        )
        for k, pattern in enumerate(patterns)
    ]
    print(
        f"{args.fingers} synthetic fingers x {args.impressions} impressions made in "
        f"{time.perf_counter() - started:.1f} s"
    )

    template_s = []
    templates = []
    for row in images:
        templates.append([])
        for image in row:
            t = time.perf_counter()
            templates[-1].append(make_template(image))
            template_s.append(time.perf_counter() - t)
    minutiae = [len(t) for row in templates for t in row]

    match_s: list[float] = []

    def timed_score(a, b) -> float:
        t = time.perf_counter()
        score = match_score(a, b)
        match_s.append(time.perf_counter() - t)
        return score

    genuine = [
        timed_score(row[a], row[b])
        for row in templates
        for a, b in itertools.combinations(range(args.impressions), 2)
    ]
    impostor, same_class = [], []
    for i, j in itertools.combinations(range(args.fingers), 2):
        for a, b in itertools.product(range(args.impressions), repeat=2):
            score = timed_score(templates[i][a], templates[j][b])
            impostor.append(score)
            if patterns[i] == patterns[j]:
                same_class.append(score)

    # What the flow does after the tenth finger: its template, then 9 comparisons.
    enrollment_s, nine_s = [], []
    for run in range(args.runs):
        first = run % (args.fingers - 9)
        captured = {k: templates[first + k][0] for k in range(9)}
        image = images[first + 9][1]
        t = time.perf_counter()
        new = make_template(image)
        t_new = time.perf_counter()
        find_repeat(new, captured)
        done = time.perf_counter()
        enrollment_s.append(done - t)
        nine_s.append(done - t_new)

    print()
    ms("make_template (256 x 288)", template_s)
    ms("match_score", match_s)
    ms("find_repeat against 9 captured", nine_s)
    ms("tenth finger: template + 9 compared", enrollment_s)
    print(
        f"{'minutiae per print':34s} min {min(minutiae)}  "
        f"median {statistics.median(minutiae):.0f}  max {max(minutiae)}"
    )
    print()
    spread("genuine (same finger)", genuine)
    spread("impostor (different fingers)", impostor)
    spread("impostor, same pattern class", same_class)
    missed = sum(s < SAME_FINGER_THRESHOLD for s in genuine)
    false = sum(s >= SAME_FINGER_THRESHOLD for s in impostor)
    print(
        f"at SAME_FINGER_THRESHOLD = {SAME_FINGER_THRESHOLD:g}: "
        f"false non-match {missed}/{len(genuine)} ({missed / len(genuine):.2%}), "
        f"false match {false}/{len(impostor)} ({false / len(impostor):.3%})"
    )
    print(f"margin: lowest genuine {min(genuine):.2f}, highest impostor {max(impostor):.2f}")
    print("\nthreshold   false non-match   false match   enrollments with a false alarm")
    for threshold in range(5, 11):
        fnmr = sum(s < threshold for s in genuine) / len(genuine)
        fmr = sum(s >= threshold for s in impostor) / len(impostor)
        # Ten fingers: 45 comparisons of different fingers in one enrollment.
        print(f"{threshold:9d}   {fnmr:15.2%}   {fmr:11.3%}   {1 - (1 - fmr) ** 45:30.2%}")


if __name__ == "__main__":
    main()
