"""Signature checks and rendering, on pen strokes.

A stroke is a sequence of ``(x, y, t)`` points: x and y in 0..1 of the pad
(y down), t in seconds. Lengths are measured in pad widths, so the pad's
aspect ratio (width / height) turns a y step into a width-relative one::

    quality = assess_signature(capture.strokes, aspect=capture.aspect)
    image = render_signature(capture.strokes, 900, 300)  # black ink on white
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from kiosk.quality.inputs import require_aspect, require_size, require_strokes

DEFAULT_ASPECT = 3.0  # pad width / height, as SignatureCapture assumes
# Total ink, in pad widths: a dot or a tick stays well under this, while even a
# short initialled signature runs to about one pad width.
MIN_INK_LENGTH = 0.4
# Bounding box, as a share of the pad: a signature this narrow AND this low is
# a scribble in a corner, too small to compare with the one on file.
MIN_BOX_WIDTH = 0.15
MIN_BOX_HEIGHT = 0.25
StrokeInput = Sequence[Sequence[tuple[float, float, float]]]  # strokes of (x, y, t) points
# Sub-pixel precision for cv2 drawing: coordinates are scaled by 2**shift.
_SHIFT = 4


class SignatureProblem(enum.StrEnum):
    """What is wrong with a signature; the values are i18n keys."""

    EMPTY = "quality.signature.empty"
    TOO_SHORT = "quality.signature.too_short"
    TOO_SMALL = "quality.signature.too_small"


@dataclass(frozen=True)
class SignatureQuality:
    """The verdict on one signature and the measures behind it."""

    ok: bool
    problem: SignatureProblem | None
    ink_length: float  # total stroke length, in pad widths
    stroke_count: int  # strokes holding at least one point
    box_width: float  # bounding box width, share of the pad width
    box_height: float  # bounding box height, share of the pad height


def _as_arrays(strokes: StrokeInput) -> list[np.ndarray]:
    """Each non-empty stroke as an N x 3 float array; ValueError for strokes no pen could draw."""
    return [points for points in require_strokes(strokes) if len(points)]


def assess_signature(strokes: StrokeInput, aspect: float = DEFAULT_ASPECT) -> SignatureQuality:
    """Judge a signature from its strokes; ``aspect`` is the pad's width / height.

    The problem reported is the first of: nothing drawn, too little ink (a dot
    or a tick), a bounding box too small. Empty strokes are ignored. Points off
    the pad or not finite, time running back within a stroke, or an aspect
    outside 0.1..10 are a ValueError: such strokes cannot be judged.
    """
    aspect = require_aspect(aspect)
    arrays = _as_arrays(strokes)
    if not arrays:
        return SignatureQuality(False, SignatureProblem.EMPTY, 0.0, 0, 0.0, 0.0)

    ink_length = 0.0
    for points in arrays:
        steps = np.diff(points[:, :2], axis=0)
        steps[:, 1] /= aspect  # y is in pad heights; count it in pad widths
        ink_length += float(np.hypot(steps[:, 0], steps[:, 1]).sum())
    every_point = np.concatenate(arrays)
    box_width = float(np.ptp(every_point[:, 0]))
    box_height = float(np.ptp(every_point[:, 1]))

    if ink_length < MIN_INK_LENGTH:
        problem: SignatureProblem | None = SignatureProblem.TOO_SHORT
    elif box_width < MIN_BOX_WIDTH and box_height < MIN_BOX_HEIGHT:
        problem = SignatureProblem.TOO_SMALL
    else:
        problem = None
    return SignatureQuality(
        ok=problem is None,
        problem=problem,
        ink_length=round(ink_length, 4),
        stroke_count=len(arrays),
        box_width=round(box_width, 4),
        box_height=round(box_height, 4),
    )


def render_signature(
    strokes: StrokeInput,
    width: int,
    height: int,
    thickness: int = 3,
) -> np.ndarray:
    """Draw the strokes as black anti-aliased ink on white: a ``height x width`` uint8 image.

    Points are mapped from 0..1 of the pad to the image's pixels; a stroke of a
    single point is drawn as a dot. ``thickness`` is OpenCV's: anti-aliasing
    makes the ink look about two pixels wider. Choose ``width / height`` equal to the
    pad's aspect to keep the handwriting undistorted. Strokes that
    :func:`assess_signature` refuses, a size beyond 1..8192 px or a pen wider
    than the image are a ValueError.
    """
    width, height = require_size(width, height)
    try:
        thickness = operator.index(thickness)
    except TypeError:
        raise ValueError(f"thickness must be whole pixels, got {thickness!r}") from None
    if not 1 <= thickness <= min(width, height):
        raise ValueError(f"thickness must be 1 to {min(width, height)} px, got {thickness}")
    arrays = _as_arrays(strokes)
    image = np.full((height, width), 255, dtype=np.uint8)
    scale = np.array([width - 1, height - 1], dtype=np.float64) * (1 << _SHIFT)
    for points in arrays:
        pixels = np.rint(points[:, :2] * scale).astype(np.int32)
        if len(pixels) == 1:
            centre = (int(pixels[0, 0]), int(pixels[0, 1]))
            radius = max(1, thickness) << _SHIFT  # a tap reads as a dot, not a speck
            cv2.circle(image, centre, radius, 0, -1, cv2.LINE_AA, _SHIFT)
        else:
            cv2.polylines(image, [pixels], False, 0, thickness, cv2.LINE_AA, _SHIFT)
    return image
