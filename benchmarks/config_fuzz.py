"""A longer run of the config fuzz test: COUNT damaged station files, one per seed.

Uses the mutations of tests/test_config_fuzz.py: each seed damages a copy of
docs/station.example.toml, loads it and builds its modules. Every outcome must
be a valid station or a one-line ConfigError / UnknownBackend naming the file;
the first seed that gives anything else is printed with its traceback (rerun
it with ``--start SEED --count 1``) and the exit status is 1.

    python benchmarks/config_fuzz.py 100000
    python benchmarks/config_fuzz.py 5000 --start 400   # past the seeds the tests use
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_config_fuzz import ENVIRONMENT, mutated, outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", type=int, nargs="?", default=10_000, help="seeds to run")
    parser.add_argument("--start", type=int, default=0, help="first seed (default 0)")
    args = parser.parse_args()

    kinds: collections.Counter[str] = collections.Counter()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "station.toml"
        for seed in range(args.start, args.start + args.count):
            data, env = mutated(seed)
            for name in ENVIRONMENT:
                os.environ.pop(name, None)
            os.environ.update(env)
            path.write_bytes(data)
            try:
                result = outcome(path)
            except Exception:  # any other outcome is the finding
                print(f"seed {seed}: not a station nor a one-line error", file=sys.stderr)
                traceback.print_exc()
                return 1
            kinds[result if result == "valid" else re.sub(r"^\S+: ", "", result)[:40]] += 1
    elapsed = time.perf_counter() - started
    print(f"{args.count} damaged files from seed {args.start} in {elapsed:.1f} s")
    print(f"({args.count / elapsed:.0f} per second): every one a station or a one-line error")
    print(f"valid: {kinds['valid']}, errors: {args.count - kinds['valid']}, kinds: {len(kinds)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
