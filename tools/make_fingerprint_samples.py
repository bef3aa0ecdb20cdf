"""Write the synthetic fingerprint samples the fake reader serves, and optionally the variants.

Writes ``kiosk/drivers/fingerprint/samples/good_1.png`` .. ``good_4.png`` and
``poor.png`` from :data:`kiosk.drivers.fingerprint.synthetic.SAMPLE_SPECS`
(the method is described in that module and in docs/fingerprint-quality.md).
With ``--variants DIR`` it also writes every variant (good, partial, dry, wet,
smudged, rotated, blank) for ``--seeds`` seeds into DIR, to look at.

Run from the repository root; the output is the same on every run::

    python tools/make_fingerprint_samples.py
    python tools/make_fingerprint_samples.py --variants /tmp/prints --seeds 3
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2

from kiosk.drivers.fingerprint.synthetic import SAMPLE_SPECS, Variant, render, synthetic_print

OUT_DIR = Path(__file__).resolve().parent.parent / "kiosk" / "drivers" / "fingerprint" / "samples"


def write(path: Path, image) -> None:
    cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {path} ({path.stat().st_size} bytes)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", type=Path, help="also write every variant into this folder")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per variant (default 1)")
    args = parser.parse_args(argv)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for spec in SAMPLE_SPECS:
        write(OUT_DIR / f"{spec.name}.png", render(spec))
    if args.variants:
        args.variants.mkdir(parents=True, exist_ok=True)
        for seed in range(args.seeds):
            for variant in Variant:
                write(args.variants / f"{variant}_{seed}.png", synthetic_print(variant, seed))


if __name__ == "__main__":
    main()
