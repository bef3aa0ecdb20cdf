"""A longer run of the ZhianTec driver fuzz test: COUNT broken frames from the sensor's side.

Uses tests/test_zhiantec_fuzz.py: the emulator's random faults while the driver opens,
captures, identifies, self-tests and closes, then a responder that sends only broken
frames while the driver opens (a tenth of COUNT). Prints the calls by outcome and the
worst overrun of a deadline; the exit status is 1 if any call ended in an error not
ours or ran past its deadline + 1 s (both listed).

    python benchmarks/zhiantec_fuzz.py               # 10,000 frames
    python benchmarks/zhiantec_fuzz.py 50000 --seed 7
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from figures import machine_line
from test_zhiantec_fuzz import SEED, SLACK_S, FuzzReport, fuzz_emulator, fuzz_handshake


def show(title: str, report: FuzzReport, seconds: float) -> bool:
    print(f"{title}: {report.frames:,} broken frames, {report.calls:,} calls, {seconds:.0f} s")
    for name, count in sorted(report.outcomes.items()):
        print(f"  {name:<40} {count:>7,}")
    longest = ", ".join(f"{what} {seconds:.2f} s" for what, seconds in report.longest_s.items())
    print(f"  longest call: {longest}")
    print(f"  worst overrun of a deadline: {report.worst_overrun_s:+.3f} s ({report.worst_call})")
    for problem in report.foreign + report.hangs:
        print(f"  PROBLEM: {problem}")
    print()
    return not report.foreign and not report.hangs and report.worst_overrun_s <= SLACK_S


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", type=int, nargs="?", default=10_000, help="broken frames")
    parser.add_argument("--seed", type=int, default=SEED, help=f"default {SEED}")
    args = parser.parse_args()

    print(machine_line())
    started = time.monotonic()
    report = fuzz_emulator(args.count, args.seed)
    clean = show("emulator faults", report, time.monotonic() - started)
    started = time.monotonic()
    report = fuzz_handshake(max(args.count // 10, 10), args.seed)
    clean &= show("broken frames only", report, time.monotonic() - started)
    print("clean: only our errors, every call in time" if clean else "NOT CLEAN: see above")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
