"""Make the fake camera's ``face.png``: a citizen as the kiosk's camera sees one.

From the astronaut photograph in scikit-image's sample data (public domain,
NASA; pass its path, e.g. ``.../site-packages/skimage/data/astronaut.png``):

1. framed as before: x 55..395, y 0..255 (4:3), enlarged to 640 x 480 (bicubic);
2. her smile closed: the rows from the upper lip down to the chin are pulled up
   over the gap between the lips, fading out towards the chin and the mouth's
   sides, so the lips meet (ICAO wants the mouth closed);
3. the mottled studio backdrop replaced by the kiosk's plain light grey one, the
   person found with :func:`kiosk.quality.portrait.person_alpha`.

The result passes every face measure at the fake camera's still size. Run once
from the repository root (needs scikit-image's data file only, not the package)::

    python tools/make_camera_samples.py /path/to/skimage/data/astronaut.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from kiosk.quality.face import assess_face
from kiosk.quality.landmarks import MESH_CHIN, MOUTH, FaceLandmarker
from kiosk.quality.portrait import person_alpha

OUT = Path(__file__).resolve().parent.parent / "kiosk" / "drivers" / "camera" / "samples"
BACKDROP_RGB = (205, 205, 210)  # a plain light grey wall


def _landmarks(rgb: np.ndarray) -> np.ndarray:
    marker = FaceLandmarker.shared()
    points = marker.mesh(rgb, marker.detect(rgb)[0])
    if points is None:
        raise SystemExit("no face found in the source photograph")
    return points


def close_mouth(rgb: np.ndarray) -> np.ndarray:
    points = _landmarks(rgb)
    top = points[MOUTH["upper_inner"], 1]
    gap = points[MOUTH["lower_inner"], 1] - top
    chin = points[MESH_CHIN, 1]
    left, right = sorted((points[MOUTH["right"], 0], points[MOUTH["left"], 0]))
    half = (right - left) / 2 * 1.4
    middle = (left + right) / 2
    height, width = rgb.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    down = np.clip((chin - ys) / max(chin - top, 1), 0, 1)  # 1 at the lip, 0 at the chin
    across = np.clip(1 - np.abs(xs - middle) / half, 0, 1) ** 0.5
    shift = (gap * np.where(ys >= top, down, 0) * across).astype(np.float32)
    return cv2.remap(rgb, xs, ys + shift, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("astronaut", type=Path, help="scikit-image's data/astronaut.png")
    args = parser.parse_args()
    source = cv2.cvtColor(cv2.imread(str(args.astronaut)), cv2.COLOR_BGR2RGB)
    frame = cv2.resize(source[0:255, 55:395], (640, 480), interpolation=cv2.INTER_CUBIC)
    frame = close_mouth(frame)
    alpha = person_alpha(frame, _landmarks(frame))[..., None]
    backdrop = np.array(BACKDROP_RGB, dtype=np.float32)
    frame = np.clip(frame * alpha + backdrop * (1 - alpha) + 0.5, 0, 255).astype(np.uint8)
    still = cv2.resize(frame, (1280, 960), interpolation=cv2.INTER_CUBIC)
    verdict = assess_face(still)
    print(f"face.png: {verdict.problem or 'passes'}")
    cv2.imwrite(str(OUT / "face.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))


if __name__ == "__main__":
    main()
