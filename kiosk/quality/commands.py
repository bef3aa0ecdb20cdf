"""``kiosk quality face|finger IMAGE [--json]``: judge one image as the kiosk would.

For a technician checking a camera or a reader, and for anyone checking a photo
against the rules: every measure with its value, threshold and pass/fail, then
the verdict. Exit status 0 when it passes, 1 when it fails, 2 when the file is not
an image. ``--nik`` applies Dukcapil's background colour for that birth year.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from kiosk.errors import KioskError
from kiosk.flow.nik import check_nik
from kiosk.quality.face import assess_face, background_colour_for
from kiosk.quality.fingerprint import assess_fingerprint
from kiosk.quality.measures import report_json, report_text


def _read(path: Path, flags: int) -> np.ndarray:
    data = np.fromfile(path, dtype=np.uint8) if path.is_file() else None
    if data is None:
        raise KioskError(f"quality: {path} is not a file")
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None:
        raise KioskError(f"quality: {path} is not an image OpenCV can read (PNG, JPEG, BMP...)")
    return image


def _face(args: argparse.Namespace) -> tuple[dict, dict]:
    colour = None
    if args.nik is not None:
        check = check_nik(args.nik)
        if not check.ok:
            raise KioskError(f"quality: {args.nik!r} is not a valid NIK")
        colour = background_colour_for(check.nik.birth_date.year)
    rgb = cv2.cvtColor(_read(args.image, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    quality = assess_face(rgb, background=colour)
    return quality.measures, {"faces": quality.faces}


def _finger(args: argparse.Namespace) -> tuple[dict, dict]:
    quality = assess_fingerprint(_read(args.image, cv2.IMREAD_GRAYSCALE))
    return quality.measures, {"score": round(float(quality.score), 1)}


def _quality(args: argparse.Namespace) -> int:
    try:
        measures, extra = (_face if args.kind == "face" else _finger)(args)
    except ValueError as exc:  # an image no camera or reader makes (size, shape)
        raise KioskError(f"quality: {args.image}: {exc}") from None
    report = report_json(measures, **extra)
    print(json.dumps(report, indent=2) if args.json else report_text(measures, **extra))
    return 0 if report["verdict"] == "pass" else 1


def add_commands(commands: argparse._SubParsersAction) -> None:
    quality = commands.add_parser(
        "quality",
        help="judge a face photo or a fingerprint image as the kiosk does",
        description=__doc__.splitlines()[0],
    )
    quality.add_argument("kind", choices=["face", "finger"], help="what the image shows")
    quality.add_argument("image", type=Path, help="the image file")
    quality.add_argument("--json", action="store_true", help="print one JSON object")
    quality.add_argument(
        "--nik", help="face only: require the background colour of this citizen's birth year"
    )
    quality.set_defaults(handler=_quality)
