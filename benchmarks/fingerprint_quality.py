"""Time of the fingerprint quality check and of the synthetic print generator, per variant.

For each variant of :mod:`kiosk.drivers.fingerprint.synthetic` (good, partial,
dry, wet, smudged, rotated, blank) and ``--seeds`` seeds, makes the 256 x 288
print (timed once per seed) and judges it with ``assess_fingerprint`` (timed
``--runs`` times after one warm-up call), then prints per variant the median
generator time, the median and 90th percentile quality time, the mean
NFIQ2Like score and how many prints passed, with the problems reported.

    python benchmarks/fingerprint_quality.py --seeds 8 --runs 50
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter

from figures import machine_line, p90

from kiosk.drivers.fingerprint.synthetic import Variant, synthetic_print
from kiosk.quality.fingerprint import assess_fingerprint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=8, help="prints per variant (default 8)")
    parser.add_argument("--runs", type=int, default=50, help="timed checks per print (default 50)")
    args = parser.parse_args(argv)

    synthetic_print(Variant.GOOD, 0)  # the Gabor spectra are made on first use
    rows = []
    all_checks: list[float] = []
    for variant in Variant:
        made, checked, scores, passed, problems = [], [], [], 0, Counter()
        for seed in range(args.seeds):
            started = time.perf_counter()
            image = synthetic_print(variant, seed)
            made.append(time.perf_counter() - started)
            quality = assess_fingerprint(image)  # warm-up, and the verdict
            for _ in range(args.runs):
                started = time.perf_counter()
                assess_fingerprint(image)
                checked.append(time.perf_counter() - started)
            scores.append(quality.score)
            passed += quality.ok
            problems[quality.problem.name.lower() if quality.problem else "-"] += 1
        all_checks += checked
        rows.append((variant, made, checked, scores, passed, problems))

    print(machine_line())
    print(f"{args.seeds} prints per variant, {args.runs} timed checks each after one warm-up")
    print()
    header = f"{'variant':<9} {'make ms':>8} {'check ms':>9} {'p90 ms':>7} {'NFIQ2Like':>10}"
    print(f"{header} {'passed':>7}  problems")
    for variant, made, checked, scores, passed, problems in rows:
        told = ", ".join(f"{name} {count}" for name, count in problems.most_common())
        print(
            f"{variant:<9} {statistics.median(made) * 1e3:>8.0f}"
            f" {statistics.median(checked) * 1e3:>9.2f} {p90(checked) * 1e3:>7.2f}"
            f" {statistics.mean(scores):>10.1f} {passed:>4}/{len(scores):<2}  {told}"
        )
    print()
    print(f"median per-image quality check: {statistics.median(all_checks) * 1e3:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
