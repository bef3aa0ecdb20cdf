"""Face photo quality: ICAO 9303 / ISO/IEC 19794-5 measures and Dukcapil's rules.

:func:`assess_face` finds the faces in one RGB frame (BlazeFace), the 468
landmarks of the one in front (FaceMesh, :mod:`kiosk.quality.landmarks`), and
measures what ICAO and Dukcapil ask of an e-KTP portrait, each measure named as
OFIQ names it where OFIQ has a name. Every threshold is in :data:`THRESHOLDS`
and in the table in docs/face-quality.md::

    quality = assess_face(frame.image, still_scale=2.5, background="red")
    quality.ok                # every measure passes
    quality.problem           # the first thing the citizen should fix (an i18n key), or None
    quality.measures["HeadPoseYaw"].value

The portrait the kiosk keeps is cut with ISO 19794-5's token geometry (see
:mod:`kiosk.quality.portrait`); the measures that depend on the cut (the eyes'
distance in the portrait, room around the head, the background) use the same
cut, so a frame that passes gives a portrait that passes.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from kiosk.quality.inputs import require_frame
from kiosk.quality.landmarks import (
    FACE_OVAL,
    LEFT_EYE,
    LEFT_EYE_RING,
    MESH_CHIN,
    MESH_FOREHEAD,
    MOUTH,
    RIGHT_EYE,
    RIGHT_EYE_RING,
    FaceLandmarker,
)
from kiosk.quality.measures import Measure
from kiosk.quality.portrait import PORTRAIT_EYE_DISTANCE, PortraitCut, token_cut

# Every measure's pass band (minimum, maximum; None is open), one table for the
# code, the report and docs/face-quality.md. Why each value:
# - Luminance: grey mean inside the face outline, 0..255; outside it skin clips or sinks.
# - Under/OverExposurePrevention (OFIQ): share of face pixels near black (< 25) or white (> 245).
# - InterEyeDistance: pixels between the eye centres in the final portrait that come
#   from real camera pixels (an enlarged face adds none); ICAO and Dukcapil ask 90.
# - CropOfTheFaceImage: share of the token-geometry portrait inside the frame: the
#   whole head with room above it, the face centred (a few % of edge may be filled in).
# - HeadPose (degrees): Dukcapil's +-5 yaw and pitch, +-8 roll.
# - NoGlasses: strongest straight horizontal edge below the eyes, where a frame's
#   lower rim runs, over the face's mean edge: bare skin ~1-1.8, glasses > 2.2.
# - EyesOpen: the less open eye's eyelid gap over its width: ~0.25 open, < 0.12 shut.
# - MouthClosed: inner-lip gap over mouth width: lips together ~0.02, teeth showing ~0.16.
# - Sharpness: variance of the Laplacian of the face scaled to 128 px: below 40 the
#   eye sees blur (a Gaussian of ~1.5 px at that width).
# - BackgroundUniformity: mean gradient (grey levels a pixel, at 1/4 size) of the
#   portrait's background beside and above the head: a plain backdrop ~1, a flag > 10.
# - BackgroundColour (Dukcapil): hue distance (degrees) from red (odd birth years)
#   or blue (even years), 180 for a grey or white one.
THRESHOLDS: dict[str, tuple[float | None, float | None]] = {
    "SingleFacePresent": (1, 1),
    "Luminance": (70.0, 210.0),
    "UnderExposurePrevention": (None, 0.10),
    "OverExposurePrevention": (None, 0.05),
    "InterEyeDistance": (90.0, None),
    "CropOfTheFaceImage": (0.95, None),
    "HeadPoseYaw": (-5.0, 5.0),
    "HeadPosePitch": (-5.0, 5.0),
    "HeadPoseRoll": (-8.0, 8.0),
    "NoGlasses": (None, 2.0),
    "EyesOpen": (0.16, None),
    "MouthClosed": (None, 0.08),
    "Sharpness": (40.0, None),
    "BackgroundUniformity": (None, 4.0),
    "BackgroundColour": (None, 30.0),
}
DARK_PIXEL, BRIGHT_PIXEL = 25, 245
SHARPNESS_FACE_WIDTH = 128
# The mesh's forehead-to-chin line leans back ~10 degrees on a level frontal face
# (measured on both frontal test portraits): subtracted so that 0 means level.
PITCH_OFFSET = -10.0
BACKGROUND_HUES = {"red": 0.0, "blue": 215.0}
# Below this median saturation a background is grey or white, whatever its hue.
MIN_BACKGROUND_SATURATION = 0.35
# Two faces count only if the second is at least this share of the first's width:
# someone close enough to be in the photo, not a poster far behind.
SECOND_FACE_RATIO = 0.4


class FaceProblem(enum.StrEnum):
    """What the citizen should fix; the values are i18n keys, in the order to fix them."""

    NO_FACE = "quality.face.no_face"
    SEVERAL_FACES = "quality.face.several_faces"
    TOO_DARK = "quality.face.too_dark"
    TOO_BRIGHT = "quality.face.too_bright"
    COME_CLOSER = "quality.face.come_closer"
    OFF_CENTRE = "quality.face.off_centre"
    LOOK_STRAIGHT = "quality.face.look_straight"
    HEAD_LEVEL = "quality.face.head_level"
    GLASSES = "quality.face.glasses"
    EYES_OPEN = "quality.face.eyes_open"
    MOUTH = "quality.face.mouth"
    BLURRED = "quality.face.blurred"
    BACKGROUND = "quality.face.background"


# measure name -> the problem its failure means (the dict order is the guidance order)
PROBLEM_OF = {
    "SingleFacePresent": None,  # NO_FACE or SEVERAL_FACES, by count
    "Luminance": None,  # TOO_DARK or TOO_BRIGHT, by side
    "UnderExposurePrevention": FaceProblem.TOO_DARK,
    "OverExposurePrevention": FaceProblem.TOO_BRIGHT,
    "InterEyeDistance": FaceProblem.COME_CLOSER,
    "CropOfTheFaceImage": FaceProblem.OFF_CENTRE,
    "HeadPoseYaw": FaceProblem.LOOK_STRAIGHT,
    "HeadPosePitch": FaceProblem.LOOK_STRAIGHT,
    "HeadPoseRoll": FaceProblem.HEAD_LEVEL,
    "NoGlasses": FaceProblem.GLASSES,
    "EyesOpen": FaceProblem.EYES_OPEN,
    "MouthClosed": FaceProblem.MOUTH,
    "Sharpness": FaceProblem.BLURRED,
    "BackgroundUniformity": FaceProblem.BACKGROUND,
    "BackgroundColour": FaceProblem.BACKGROUND,
}


@dataclass(frozen=True)
class FaceQuality:
    """The verdict on one frame, its measures, and where the face and portrait are."""

    ok: bool
    problem: FaceProblem | None
    measures: dict[str, Measure]
    faces: int
    face_box: tuple[int, int, int, int] | None = None  # x, y, width, height in frame pixels
    # where the portrait is cut from this frame, and the 468 landmarks (frame pixels)
    cut: PortraitCut | None = field(default=None, compare=False)
    landmarks: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def score(self) -> float:
        """Share of the measures that pass, 0..1 (kept in the packet)."""
        if not self.measures:
            return 0.0
        return sum(m.passed for m in self.measures.values()) / len(self.measures)


def _first_problem(measures: dict[str, Measure], faces: int) -> FaceProblem | None:
    for name, problem in PROBLEM_OF.items():
        measure = measures.get(name)
        if measure is None or measure.passed:
            continue
        if name == "SingleFacePresent":
            return FaceProblem.NO_FACE if faces == 0 else FaceProblem.SEVERAL_FACES
        if name == "Luminance":
            low = measure.value is not None and measure.value < (measure.minimum or 0)
            return FaceProblem.TOO_DARK if low else FaceProblem.TOO_BRIGHT
        return problem
    return None


def _head_pose(points: np.ndarray) -> tuple[float, float, float]:
    """Yaw, pitch and roll in degrees from the mesh's own 3-D points: roll and yaw
    from the line between the outer eye corners, pitch from forehead to chin."""
    dx, dy, dz = points[LEFT_EYE["outer"]] - points[RIGHT_EYE["outer"]]
    roll = math.degrees(math.atan2(dy, dx))
    yaw = math.degrees(math.atan2(dz, math.hypot(dx, dy)))
    vx, vy, vz = points[MESH_CHIN] - points[MESH_FOREHEAD]
    pitch = math.degrees(math.atan2(-vz, math.hypot(vx, vy))) - PITCH_OFFSET
    return yaw, pitch, roll


def _ratio(points: np.ndarray, a: int, b: int, c: int, d: int) -> float:
    """Distance a-b over distance c-d, in the image plane."""
    gap = np.linalg.norm(points[a, :2] - points[b, :2])
    return float(gap / max(np.linalg.norm(points[c, :2] - points[d, :2]), 1e-6))


def _eye_opening(points: np.ndarray) -> float:
    """The less open eye's eyelid gap over its width."""
    return min(
        _ratio(points, eye["upper"], eye["lower"], eye["outer"], eye["inner"])
        for eye in (RIGHT_EYE, LEFT_EYE)
    )


def _rim_edges(gray: np.ndarray, points: np.ndarray, eye_distance: float) -> float:
    """How straight and strong the horizontal edges are below the eyes, where a
    glasses frame's lower rim runs, relative to the face's own edges: row means of
    the vertical gradient add up along a rim and cancel out on skin texture."""
    sobel_y = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    x0, y0 = np.floor(points[:, :2].min(0)).astype(int)
    x1, y1 = np.ceil(points[:, :2].max(0)).astype(int)
    height, width = gray.shape
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        return float("nan")  # not all in view: CropOfTheFaceImage says so
    face = float(np.abs(sobel_y[y0:y1, x0:x1]).mean())
    strengths = []
    for eye, ring in ((RIGHT_EYE, RIGHT_EYE_RING), (LEFT_EYE, LEFT_EYE_RING)):
        centre_y = points[list(ring), 1].mean()
        xa, xb = sorted((int(points[eye["outer"], 0]), int(points[eye["inner"], 0])))
        band = sobel_y[int(centre_y + 0.15 * eye_distance) : int(centre_y + 0.5 * eye_distance)]
        rows = band[:, xa:xb].mean(axis=1) if band.size and xb > xa else np.zeros(1)
        strengths.append(float(np.abs(rows).max()))
    return float(np.mean(strengths)) / max(face, 1e-6)


def _face_mask(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(points[list(FACE_OVAL), :2]).astype(np.int32)], 1)
    # without the eyes and mouth: their dark pixels are not underexposure
    for ring in (RIGHT_EYE_RING, LEFT_EYE_RING):
        cv2.fillPoly(mask, [np.round(points[list(ring), :2]).astype(np.int32)], 0)
    return mask.astype(bool)


def _background_region(cut: PortraitCut, points: np.ndarray) -> np.ndarray:
    """The portrait's background: its top and upper corners, less an ellipse around
    the head wide enough for a full head of hair (1.9x the face, centred higher)."""
    width, height = cut.size
    region = np.zeros((height, width), dtype=np.uint8)
    region[: int(0.12 * height), :] = 1
    region[: int(0.45 * height), : int(0.15 * width)] = 1
    region[: int(0.45 * height), int(0.85 * width) :] = 1
    face = cut.to_portrait(points)
    (x0, y0), (x1, y1) = face.min(0), face.max(0)
    half_w, half_h = (x1 - x0) / 2, (y1 - y0) / 2
    centre = (round((x0 + x1) / 2), round((y0 + y1) / 2 - 0.25 * half_h))
    cv2.ellipse(region, centre, (round(1.9 * half_w), round(1.9 * half_h)), 0, 0, 360, 0, -1)
    return region


def _background(
    rgb: np.ndarray, cut: PortraitCut, points: np.ndarray, colour: str | None
) -> tuple[float, float | None]:
    """Mean gradient of the background, and its hue distance to ``colour`` (degrees)."""
    portrait = cut.apply(rgb)
    region = _background_region(cut, points)
    small = cv2.resize(portrait, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    small_region = cv2.resize(region, small.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    small_region = small_region.astype(bool)
    if not small_region.any():
        return float("nan"), None if colour is None else float("nan")
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gradient = np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))
    uniformity = float(gradient[small_region].mean()) / 8  # Sobel's 3x3 gain
    if colour is None:
        return uniformity, None
    hsv = cv2.cvtColor(portrait, cv2.COLOR_RGB2HSV_FULL)[region.astype(bool)].astype(np.float32)
    saturation = float(np.median(hsv[:, 1])) / 255
    if saturation < MIN_BACKGROUND_SATURATION:
        return uniformity, 180.0  # grey or white: no colour at all
    angles = hsv[:, 0] * (2 * math.pi / 256)
    hue = math.degrees(math.atan2(np.sin(angles).mean(), np.cos(angles).mean())) % 360
    distance = abs((hue - BACKGROUND_HUES[colour] + 180) % 360 - 180)
    return uniformity, distance


def background_colour_for(birth_year: int) -> str:
    """Dukcapil's rule: red for citizens born in odd years, blue for even years."""
    return "red" if birth_year % 2 else "blue"


def assess_face(
    image_rgb: np.ndarray,
    *,
    still_scale: float = 1.0,
    background: str | None = None,
) -> FaceQuality:
    """Judge one RGB frame (H x W x 3 uint8, 16 to 8192 px a side) as an e-KTP portrait.

    ``still_scale`` is the still's width over this frame's: the kiosk judges its
    preview frames for a photo taken at a higher resolution, and the eyes' distance
    in the portrait depends on the still. ``background`` ("red", "blue") is the
    colour the portrait's background must have; None skips that measure (the kiosk
    puts the colour in itself, see kiosk.quality.portrait). Measures that need a
    face are None (failing) when no single face was found.
    """
    height, width = require_frame(image_rgb).shape[:2]
    if background is not None and background not in BACKGROUND_HUES:
        raise ValueError(f"background must be one of {', '.join(BACKGROUND_HUES)}")
    if not still_scale > 0:
        raise ValueError(f"still_scale must be positive, got {still_scale!r}")
    marker = FaceLandmarker.shared()
    detections = marker.detect(image_rgb)
    widest = detections[0].width if detections else 0.0
    faces = sum(1 for d in detections if d.width >= SECOND_FACE_RATIO * widest)
    points = marker.mesh(image_rgb, detections[0]) if faces == 1 else None
    names = [name for name in THRESHOLDS if background is not None or name != "BackgroundColour"]
    values: dict[str, float | None] = dict.fromkeys(names)
    values["SingleFacePresent"] = float(faces)
    if points is None:
        measures = {name: Measure(values[name], *THRESHOLDS[name]) for name in names}
        return FaceQuality(False, _first_problem(measures, faces), measures, faces)

    gray = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
    right = points[list(RIGHT_EYE_RING), :2].mean(0)
    left = points[list(LEFT_EYE_RING), :2].mean(0)
    eye_distance = float(np.linalg.norm(left - right))
    cut = token_cut(right, left, (width, height))
    face_pixels = gray[_face_mask(gray.shape, points)]
    if not face_pixels.size:  # a mesh of less than a pixel: nothing to measure
        face_pixels = np.array([np.nan])
    x0, y0 = np.floor(points[:, :2].min(0)).astype(int)
    x1, y1 = np.ceil(points[:, :2].max(0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    face_crop = gray[y0:y1, x0:x1]
    side = SHARPNESS_FACE_WIDTH
    sharpness = (
        float(cv2.Laplacian(cv2.resize(face_crop, (side, side)), cv2.CV_32F).var())
        if face_crop.size
        else 0.0
    )
    yaw, pitch, roll = _head_pose(points)
    uniformity, hue_distance = _background(image_rgb, cut, points, background)
    values |= {
        "Luminance": float(face_pixels.mean()),
        "UnderExposurePrevention": float((face_pixels < DARK_PIXEL).mean()),
        "OverExposurePrevention": float((face_pixels > BRIGHT_PIXEL).mean()),
        "InterEyeDistance": min(eye_distance * still_scale, PORTRAIT_EYE_DISTANCE),
        "CropOfTheFaceImage": cut.inside_share,
        "HeadPoseYaw": yaw,
        "HeadPosePitch": pitch,
        "HeadPoseRoll": roll,
        "NoGlasses": _rim_edges(gray, points, eye_distance),
        "EyesOpen": _eye_opening(points),
        "MouthClosed": _ratio(
            points, MOUTH["upper_inner"], MOUTH["lower_inner"], MOUTH["right"], MOUTH["left"]
        ),
        "Sharpness": sharpness,
        "BackgroundUniformity": uniformity,
        "BackgroundColour": hue_distance,
    }
    measures = {name: Measure(values[name], *THRESHOLDS[name]) for name in names}
    problem = _first_problem(measures, faces)
    box = (int(x0), int(y0), int(x1 - x0), int(y1 - y0))
    return FaceQuality(problem is None, problem, measures, faces, box, cut, points)
