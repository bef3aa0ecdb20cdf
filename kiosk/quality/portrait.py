"""Cutting the e-KTP portrait out of a camera still: ISO/IEC 19794-5 token geometry.

The e-KTP photo is 3:4 (3 x 4 cm). ISO 19794-5's token frontal image fixes where
the eyes go in such an image, so every portrait is framed the same way whatever
the camera: the eyes level, their midpoint centred, 0.6 of the width from the
top, a quarter of the width apart. At 480 x 640 that is 120 px between the eyes,
above Dukcapil's 90::

    cut = token_cut(right_eye, left_eye, (frame_width, frame_height))
    cut.inside_share          # 1.0 when the whole portrait lies inside the frame
    portrait = cut.apply(still_rgb)   # 640 x 480 x 3
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

PORTRAIT_SIZE = (480, 640)  # width, height: 3:4
PORTRAIT_EYE_DISTANCE = 0.25 * PORTRAIT_SIZE[0]  # token geometry: a quarter of the width
PORTRAIT_EYE_Y = 0.6 * PORTRAIT_SIZE[0]  # eyes' midpoint, from the top
# Grid used to measure how much of the portrait the frame covers (cells a side).
_COVER_GRID = (24, 32)


@dataclass(frozen=True)
class PortraitCut:
    """A similarity transform from frame pixels to portrait pixels."""

    matrix: np.ndarray  # 2 x 3, frame -> portrait
    frame_size: tuple[int, int]  # width, height of the frame it was measured on
    size: tuple[int, int] = PORTRAIT_SIZE

    @property
    def inside_share(self) -> float:
        """Share of the portrait that comes from inside the frame (1.0: nothing made up)."""
        cols, rows = _COVER_GRID
        xs = (np.arange(cols) + 0.5) * self.size[0] / cols
        ys = (np.arange(rows) + 0.5) * self.size[1] / rows
        grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
        back = cv2.invertAffineTransform(self.matrix)
        source = grid @ back[:, :2].T + back[:, 2]
        width, height = self.frame_size
        inside = (
            (source[:, 0] >= 0)
            & (source[:, 0] < width)
            & (source[:, 1] >= 0)
            & (source[:, 1] < height)
        )
        return float(inside.mean())

    def to_portrait(self, points: np.ndarray) -> np.ndarray:
        """Frame points (N x 2, or more columns: only x and y are used) in portrait pixels."""
        return np.asarray(points)[:, :2] @ self.matrix[:, :2].T + self.matrix[:, 2]

    def for_frame(self, width: int, height: int) -> PortraitCut:
        """The same cut on a frame of another resolution (the still, from the preview)."""
        sx, sy = self.frame_size[0] / width, self.frame_size[1] / height
        matrix = self.matrix @ np.array([[sx, 0, 0], [0, sy, 0], [0, 0, 1]])
        return PortraitCut(matrix, (width, height), self.size)

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """Cut the portrait out of ``rgb``, which must be the frame it was measured on."""
        if (rgb.shape[1], rgb.shape[0]) != self.frame_size:
            raise ValueError(
                f"this cut is for a {self.frame_size[0]}x{self.frame_size[1]} frame, "
                f"not {rgb.shape[1]}x{rgb.shape[0]}; use for_frame()"
            )
        return cv2.warpAffine(
            rgb, self.matrix, self.size, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE
        )


def token_cut(
    right_eye: np.ndarray, left_eye: np.ndarray, frame_size: tuple[int, int]
) -> PortraitCut:
    """The portrait cut putting the eye centres (frame pixels; "right" is the
    subject's right, on the image's left) where token geometry wants them."""
    (rx, ry), (lx, ly) = right_eye, left_eye
    distance = math.hypot(lx - rx, ly - ry)
    if distance < 1:
        raise ValueError("the eyes are less than a pixel apart")
    scale = PORTRAIT_EYE_DISTANCE / distance
    angle = math.atan2(ly - ry, lx - rx)
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    mx, my = (rx + lx) / 2, (ry + ly) / 2
    # rotate by -angle and scale about the eyes' midpoint, then move it into place
    matrix = np.array(
        [
            [cos, sin, PORTRAIT_SIZE[0] / 2 - (cos * mx + sin * my)],
            [-sin, cos, PORTRAIT_EYE_Y - (-sin * mx + cos * my)],
        ]
    )
    return PortraitCut(matrix, (int(frame_size[0]), int(frame_size[1])))


# Dukcapil's backgrounds, as sRGB: red for an odd birth year, blue for an even one.
BACKGROUND_RGB = {"red": (220, 0, 0), "blue": (0, 90, 200)}
# grabCut rounds: 3 settle the colour models on a plain backdrop; more change little.
_GRABCUT_ROUNDS = 3
_GRABCUT_WIDTH = 240  # segmentation runs at half the portrait's width (0.1-0.5 s here)


def replace_background(portrait_rgb: np.ndarray, face: np.ndarray, colour: str) -> np.ndarray:
    """The portrait with everything but the person painted ``colour`` ("red", "blue").

    ``face`` is the face's landmarks in portrait pixels (N x 2 or more columns).
    It needs the plain backdrop BackgroundUniformity checks (see :func:`person_alpha`).
    """
    if colour not in BACKGROUND_RGB:
        raise ValueError(f"colour must be one of {', '.join(BACKGROUND_RGB)}, got {colour!r}")
    alpha = person_alpha(portrait_rgb, face)[..., None]
    fill = np.array(BACKGROUND_RGB[colour], dtype=np.float32)
    out = portrait_rgb.astype(np.float32) * alpha + fill * (1 - alpha)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def person_alpha(image_rgb: np.ndarray, face: np.ndarray) -> np.ndarray:
    """How much each pixel is the person (0..1, float32), from OpenCV's grabCut seeded
    by the face: its outline and the chest below it are certainly the person, the
    top corners certainly background, head, hair and shoulders probably the person.
    The edge is feathered by about a pixel."""
    height, width = image_rgb.shape[:2]
    scale = _GRABCUT_WIDTH / width
    small = cv2.resize(image_rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    points = np.asarray(face)[:, :2] * scale
    (x0, y0), (x1, y1) = points.min(0), points.max(0)
    half_w, half_h = (x1 - x0) / 2, (y1 - y0) / 2
    centre_x, centre_y = (x0 + x1) / 2, (y0 + y1) / 2
    mask = np.full(small.shape[:2], cv2.GC_BGD, dtype=np.uint8)
    # below the chin: the neck and chest certainly the person, the shoulders
    # probably, the sides undecided; around the face, head and hair probably
    chin = round(y1 + 0.3 * half_h)
    mask[chin:, :] = cv2.GC_PR_BGD
    shoulders = slice(max(0, round(centre_x - 2.4 * half_w)), round(centre_x + 2.4 * half_w))
    mask[chin + round(0.3 * half_h) :, shoulders] = cv2.GC_PR_FGD
    head = (round(centre_x), round(centre_y - 0.25 * half_h))
    axes = (round(1.9 * half_w), round(1.9 * half_h))
    cv2.ellipse(mask, head, axes, 0, 0, 360, int(cv2.GC_PR_FGD), -1)
    chest = slice(max(0, round(centre_x - 0.9 * half_w)), round(centre_x + 0.9 * half_w))
    mask[chin:, chest] = cv2.GC_FGD
    hull = cv2.convexHull(np.round(points).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, cv2.GC_FGD)
    background_model = np.zeros((1, 65), np.float64)
    foreground_model = np.zeros((1, 65), np.float64)
    cv2.grabCut(
        small,
        mask,
        None,
        background_model,
        foreground_model,
        _GRABCUT_ROUNDS,
        cv2.GC_INIT_WITH_MASK,
    )
    person = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.float32)
    alpha = cv2.resize(person, (width, height), interpolation=cv2.INTER_LINEAR)
    return cv2.GaussianBlur(alpha, (0, 0), 1.0)
