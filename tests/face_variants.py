"""Variants of a good face frame, each spoiling one thing a measure judges, and the
real test photographs; used by tests/test_face_quality.py and benchmarks/face_quality.py."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from kiosk.quality.face import FaceProblem
from kiosk.quality.landmarks import LEFT_EYE_RING, RIGHT_EYE_RING

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT / "tests" / "data" / "faces"
SAMPLE = ROOT / "kiosk" / "drivers" / "camera" / "samples" / "face.png"
STILL_SCALE = 2.0  # the fake camera's still is twice its preview's width


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(path)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def eye_points(quality) -> tuple[np.ndarray, np.ndarray, float]:
    right = quality.landmarks[list(RIGHT_EYE_RING), :2].mean(0)
    left = quality.landmarks[list(LEFT_EYE_RING), :2].mean(0)
    return right, left, float(np.linalg.norm(left - right))


def shrunk(image: np.ndarray, factor: float) -> np.ndarray:
    """The whole scene smaller, on the same light wall: the citizen stepped back."""
    height, width = image.shape[:2]
    out = np.full_like(image, image[5, 5])
    small = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    y0, x0 = (height - small.shape[0]) // 2, (width - small.shape[1]) // 2
    out[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    return out


def rotated(image: np.ndarray, degrees: float) -> np.ndarray:
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)


def shifted(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    height, width = image.shape[:2]
    return cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)


def two_people(image: np.ndarray) -> np.ndarray:
    """Two citizens side by side, each the face's central strip."""
    width = image.shape[1]
    strip = image[:, width // 4 : width // 4 + width // 2]
    return np.ascontiguousarray(np.hstack([strip, strip[:, ::-1]]))


def with_glasses(image: np.ndarray, quality) -> np.ndarray:
    """Dark frames drawn around both eyes and across the nose."""
    right, left, distance = eye_points(quality)
    out = image.copy()
    thick = max(2, round(0.07 * distance))
    for centre in (right, left):
        axes = (round(0.42 * distance), round(0.3 * distance))
        cv2.ellipse(out, tuple(int(v) for v in centre), axes, 0, 0, 360, (30, 30, 30), thick)
    y = int((right[1] + left[1]) / 2 - 0.08 * distance)
    bridge = (int(right[0] + 0.42 * distance), y), (int(left[0] - 0.42 * distance), y)
    cv2.line(out, *bridge, (30, 30, 30), thick, cv2.LINE_AA)
    return out


def busy_background(image: np.ndarray, quality) -> np.ndarray:
    """The citizen in front of a cluttered room (the coffee scene) instead of the wall."""
    scene = read_rgb(SAMPLE.with_name("no_face.png"))
    wall = np.all(np.abs(image.astype(int) - image[5, 5]) < 6, axis=2)
    out = image.copy()
    out[wall] = scene[wall]
    return out


# Light changes more than exposure: a dark face loses contrast and so measured
# sharpness, a washed-out one its lips' edges. Those may fail too, never anything else.
SIDE_EFFECTS = {"dark": {"Sharpness"}, "overexposed": {"MouthClosed"}}
VARIANTS = {
    # name: (make, the measures that must fail, the guidance)
    "blurred": (
        lambda img, q: cv2.GaussianBlur(img, (0, 0), 3.5),
        {"Sharpness"},
        FaceProblem.BLURRED,
    ),
    "dark": (
        lambda img, q: cv2.convertScaleAbs(img, alpha=0.15),
        {"Luminance", "UnderExposurePrevention"},
        FaceProblem.TOO_DARK,
    ),
    "overexposed": (
        lambda img, q: cv2.convertScaleAbs(img, alpha=1.4, beta=50),
        {"Luminance", "OverExposurePrevention"},
        FaceProblem.TOO_BRIGHT,
    ),
    "far away": (lambda img, q: shrunk(img, 0.5), {"InterEyeDistance"}, FaceProblem.COME_CLOSER),
    "off centre": (
        lambda img, q: shifted(img, 220, 0),
        {"CropOfTheFaceImage"},
        FaceProblem.OFF_CENTRE,
    ),
    "head tilted": (lambda img, q: rotated(img, 15), {"HeadPoseRoll"}, FaceProblem.HEAD_LEVEL),
    "two people": (
        lambda img, q: two_people(img),
        {"SingleFacePresent"},
        FaceProblem.SEVERAL_FACES,
    ),
    "nobody": (
        lambda img, q: read_rgb(SAMPLE.with_name("no_face.png")),
        {"SingleFacePresent"},
        FaceProblem.NO_FACE,
    ),
    "glasses": (with_glasses, {"NoGlasses"}, FaceProblem.GLASSES),
    "busy background": (busy_background, {"BackgroundUniformity"}, FaceProblem.BACKGROUND),
}
