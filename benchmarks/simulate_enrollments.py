"""Software time per citizen and per step, through the real flow on fake modules.

Runs ``kiosk.simulate.simulate(N)`` a few rounds (each with a fresh store) and
prints the medians over every citizen of every round, plus the peak resident
memory of this process. The fake devices answer at once, so what is measured is
the kiosk's own work: quality checks, packet building and saving.

    python benchmarks/simulate_enrollments.py --citizens 50 --rounds 3
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time

from figures import machine_line, p90

from kiosk.simulate import simulate


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--citizens", type=int, default=50, help="per round (default 50)")
    parser.add_argument("--rounds", type=int, default=3, help="how many rounds (default 3)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the first round")
    args = parser.parse_args(argv)

    citizen: list[float] = []
    steps: dict[str, list[float]] = {}
    round_medians: list[float] = []
    failed = 0
    started = time.perf_counter()
    for round_ in range(args.rounds):
        report = simulate(args.citizens, seed=args.seed + round_)
        failed += report.failed
        citizen.extend(report.citizen_seconds)
        round_medians.append(statistics.median(report.citizen_seconds))
        for step in report.as_dict()["step_median_seconds"]:  # in the flow's order
            steps.setdefault(step, []).extend(report.step_seconds[step])
    wall = time.perf_counter() - started

    print(machine_line())
    print(f"{args.rounds} rounds x {args.citizens} citizens, {failed} failed, {wall:.1f} s in all")
    print()
    print(f"{'step':<14} {'median ms':>10} {'p90 ms':>8} {'max ms':>8}")
    for name, values in {**steps, "per citizen": citizen}.items():
        print(
            f"{name:<14} {statistics.median(values) * 1e3:>10.1f} "
            f"{p90(values) * 1e3:>8.1f} {max(values) * 1e3:>8.1f}"
        )
    print()
    print("median per citizen by round (ms):", ", ".join(f"{m * 1e3:.1f}" for m in round_medians))
    print(f"peak RSS: {peak_rss_mib():.0f} MiB")
    print("(step times come from the manifests, rounded to 1 ms; saving is after the last step)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
