"""Face photo quality, in the spirit of ICAO 9303 / ISO 19794-5.

:func:`assess_face` measures one RGB camera frame and names the first problem a
citizen can fix (light, position, distance, keeping still), or none::

    quality = assess_face(frame.image)
    if not quality.ok:
        show(i18n(quality.problem))  # e.g. "quality.face.too_small"

Exposure comes from the grey-level mean and standard deviation, sharpness from
the variance of the Laplacian over the face, and the face itself from the
OpenCV Haar cascade shipped in the cv2 wheel, run on a downscaled grey image so
one call stays well under 50 ms on a PC.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass

import cv2
import numpy as np

from kiosk.quality.inputs import require_frame

# Exposure, on the 0..255 grey mean: outside this band skin tones clip or sink
# into noise, which ISO 19794-5 forbids (no over- or under-exposed faces).
MIN_BRIGHTNESS = 60.0
MAX_BRIGHTNESS = 200.0
# A frame this flat (grey standard deviation) has no usable detail whatever its mean.
MIN_CONTRAST = 20.0
# Detection runs at this width: Haar is ~4x faster than at 640 px and a face
# large enough to pass MIN_FACE_WIDTH is still ~60 px wide here.
DETECT_WIDTH = 320
# Detections narrower than this fraction of the frame are ignored: too far to
# matter, and most are false positives in background texture.
MIN_DETECT_WIDTH = 0.08
# Haar's neighbour vote: 5 keeps false positives rare without losing real faces.
DETECT_NEIGHBOURS = 5
# A second face counts only if at least this fraction of the largest one's width:
# a person close enough to be photographed too, not a poster far behind.
SECOND_FACE_RATIO = 0.4
# Face width (Haar box) as a fraction of frame width: at 640 px, 0.2 is ~128 px,
# ~60 px between the eyes, ISO 19794-5's floor for a token face image.
MIN_FACE_WIDTH = 0.2
# The face centre may stray this far (fraction of the width) from the middle;
# beyond it the portrait crop would cut into the head or shoulders.
MAX_OFF_CENTRE_X = 0.15
# The face centre must sit in this band of the height (fraction from the top),
# leaving room for the crown above and the shoulders below, as ICAO asks.
FACE_CENTRE_Y_BAND = (0.25, 0.65)
# Sharpness is measured on the face scaled to this width, so the threshold does
# not depend on the camera's resolution or the citizen's distance.
SHARPNESS_FACE_WIDTH = 128
# Variance of the Laplacian below this looks soft to the eye (a Gaussian blur of
# ~1.5 px at that width), too soft for face matching.
MIN_SHARPNESS = 40.0
GOOD_SHARPNESS = 120.0


class FaceProblem(enum.StrEnum):
    """What is wrong with a face photo; the values are i18n keys."""

    TOO_DARK = "quality.face.too_dark"
    TOO_BRIGHT = "quality.face.too_bright"
    NO_FACE = "quality.face.no_face"
    SEVERAL_FACES = "quality.face.several_faces"
    TOO_SMALL = "quality.face.too_small"
    OFF_CENTRE = "quality.face.off_centre"
    BLURRED = "quality.face.blurred"


FaceBox = tuple[int, int, int, int]  # x, y, width, height in frame pixels


@dataclass(frozen=True)
class FaceQuality:
    """The verdict on one frame and the measures behind it."""

    ok: bool
    score: float  # 0..1; 0.5 is the pass mark of the weakest measure
    problem: FaceProblem | None
    brightness: float  # grey mean, 0..255
    contrast: float  # grey standard deviation
    sharpness: float  # variance of the Laplacian (over the face if one was found)
    face_box: FaceBox | None  # the largest face found, in frame pixels


_cascade: cv2.CascadeClassifier | None = None
# One lock for loading and detecting: detectMultiScale on a shared classifier is
# not documented as thread-safe, and the kiosk only ever runs one check at a time.
_cascade_lock = threading.Lock()


def _detect_faces(gray_small: np.ndarray) -> list[FaceBox]:
    global _cascade
    min_side = max(1, round(gray_small.shape[1] * MIN_DETECT_WIDTH))
    with _cascade_lock:
        if _cascade is None:
            path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
            cascade = cv2.CascadeClassifier(path)
            if cascade.empty():
                raise FileNotFoundError(f"cannot load the face detector from {path}")
            _cascade = cascade
        found = _cascade.detectMultiScale(
            gray_small,
            scaleFactor=1.1,
            minNeighbors=DETECT_NEIGHBOURS,
            minSize=(min_side, min_side),
        )
    return [tuple(int(v) for v in box) for box in found]


def _ramp(value: float, fail_at: float, good_at: float) -> float:
    """0.5 at the fail threshold, 1.0 at the good value, linear and clipped to 0..1."""
    return float(np.clip(0.5 + 0.5 * (value - fail_at) / (good_at - fail_at), 0.0, 1.0))


def _laplacian_variance(gray: np.ndarray) -> float:
    return float(cv2.Laplacian(gray, cv2.CV_32F).var())


def assess_face(image_rgb: np.ndarray) -> FaceQuality:
    """Judge one RGB frame (H x W x 3, uint8) for a passport-style photo.

    Checks run in the order a citizen should fix them: light first, then one
    face in view, then distance, position and finally keeping still. ``ok`` is
    True only when no problem was found; ``score`` is the weakest measure on a
    0..1 scale where 0.5 is its pass mark (0 when no single face was found).
    Anything but such a frame, 16 to 8192 px a side, is a ValueError.
    """
    height, width = require_frame(image_rgb).shape[:2]
    gray = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
    brightness = float(gray.mean())
    contrast = float(gray.std())

    scale = min(1.0, DETECT_WIDTH / width)
    small_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    gray_small = cv2.resize(gray, small_size, interpolation=cv2.INTER_AREA)
    # Equalised so a face is still found, and its box reported, in poor light.
    faces = _detect_faces(cv2.equalizeHist(gray_small))
    faces.sort(key=lambda box: box[2], reverse=True)
    face_box: FaceBox | None = None
    if faces:
        x, y, w, h = (round(v / scale) for v in faces[0])
        face_box = (x, y, w, h)
        crop = gray[y : y + h, x : x + w]
        side = SHARPNESS_FACE_WIDTH
        face = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
        sharpness = _laplacian_variance(face)
    else:
        sharpness = _laplacian_variance(gray_small)

    exposure_score = min(
        _ramp(brightness, MIN_BRIGHTNESS, MIN_BRIGHTNESS + 40),
        _ramp(-brightness, -MAX_BRIGHTNESS, -MAX_BRIGHTNESS + 40),
        _ramp(contrast, MIN_CONTRAST, MIN_CONTRAST + 20),
    )
    scores = [exposure_score]
    problem: FaceProblem | None = None
    if brightness < MIN_BRIGHTNESS or (contrast < MIN_CONTRAST and brightness < 128):
        # A flat dark frame and a flat bright one need the same advice as their side.
        problem = FaceProblem.TOO_DARK
    elif brightness > MAX_BRIGHTNESS or contrast < MIN_CONTRAST:
        problem = FaceProblem.TOO_BRIGHT

    second_faces = [box for box in faces[1:] if box[2] >= SECOND_FACE_RATIO * faces[0][2]]
    if face_box is None or second_faces:
        scores.append(0.0)
        if problem is None:
            problem = FaceProblem.NO_FACE if face_box is None else FaceProblem.SEVERAL_FACES
    else:
        x, y, w, h = face_box
        width_fraction = w / width
        off_x = abs((x + w / 2) / width - 0.5)
        centre_y = (y + h / 2) / height
        low, high = FACE_CENTRE_Y_BAND
        scores += [
            _ramp(width_fraction, MIN_FACE_WIDTH, MIN_FACE_WIDTH + 0.08),
            _ramp(-off_x, -MAX_OFF_CENTRE_X, 0.0),
            _ramp(min(centre_y - low, high - centre_y), 0.0, (high - low) / 2),
            _ramp(sharpness, MIN_SHARPNESS, GOOD_SHARPNESS),
        ]
        position_checks = (
            (width_fraction < MIN_FACE_WIDTH, FaceProblem.TOO_SMALL),
            (off_x > MAX_OFF_CENTRE_X or not low <= centre_y <= high, FaceProblem.OFF_CENTRE),
            (sharpness < MIN_SHARPNESS, FaceProblem.BLURRED),
        )
        problem = problem or next((found for failed, found in position_checks if failed), None)

    return FaceQuality(
        ok=problem is None,
        score=round(min(scores), 3),
        problem=problem,
        brightness=round(brightness, 2),
        contrast=round(contrast, 2),
        sharpness=round(sharpness, 2),
        face_box=face_box,
    )
