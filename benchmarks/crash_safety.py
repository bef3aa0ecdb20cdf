"""A longer run of tests/test_crash_safety.py: the real flow SIGKILLed at random moments.

A child process enrolls simulated citizens through the real EnrollmentFlow into a
real EnrollmentStore; it is killed every few enrollments (half the kills within
3 ms of a sealed packet reaching the store's disk work, half at a random moment)
and started again, until ENROLLMENTS were receipted. After every kill the store
is opened and checked as the test does (integrity, every receipted packet
verifies with the hub's key, no temp or unnamed file left, orphans quarantined
with a reason, the sequence never back). Prints the figures; an AssertionError
(exit status 1) names what broke.

    python benchmarks/crash_safety.py                      # 1,000 enrollments
    python benchmarks/crash_safety.py --enrollments 5000 --seed 7 --data-dir /mnt/sd/x
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from figures import machine_line
from test_crash_safety import run_crashes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enrollments", type=int, default=1000, help="receipts to reach")
    parser.add_argument("--seed", type=int, help="the kill plan (default: random)")
    parser.add_argument(
        "--data-dir", type=Path, help="a new folder on the disk to test (default: a temp dir)"
    )
    args = parser.parse_args()
    seed = random.randrange(2**32) if args.seed is None else args.seed
    logging.getLogger("kiosk.store").setLevel(logging.CRITICAL)  # each orphan is counted below
    with tempfile.TemporaryDirectory(prefix="rekam-crash-") as scratch:
        data_dir = args.data_dir or Path(scratch) / "data"
        report = run_crashes(data_dir, args.enrollments, seed)
    print(machine_line())
    print(f"seed {report.seed}" + (f", data folder {data_dir}" if args.data_dir else ""))
    print(f"enrollments receipted:           {report.enrollments:>7,}")
    print(f"kills (SIGKILL):                 {report.kills:>7,}")
    print(f"  landed mid-save:               {report.mid_save_kills:>7,}")
    print(f"  left a temp file (removed):    {report.temp_files_seen:>7,}")
    print(f"  left an orphan (quarantined):  {report.orphans_quarantined:>7,}")
    print(f"  committed, not yet receipted:  {report.committed_unreported:>7,}")
    print(f"receipted enrollments lost:      {0:>7,}  (every one verified after every kill)")
    print(
        f"time: {report.seconds:.1f} s, "
        f"{report.seconds / max(report.enrollments, 1) * 1000:.0f} ms per receipted enrollment"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
