"""What the quality checks can judge: shared checks on images, strokes and sizes.

Used by the ``assess_*`` functions here and by the result types of
:mod:`kiosk.drivers.base`, so a driver's odd data stops at the contract with
a ValueError that says what is wrong, instead of surfacing later as a
``cv2.error``, an AttributeError or a NaN verdict that reads as "ok"::

    image = require_frame(frame_from_a_driver)  # ValueError: ... got (0, 0, 3) uint8
    strokes = require_strokes(strokes)  # N x 3 float arrays, finite, on the pad

Plain numpy only (no cv2): the driver contracts import this module.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Iterable

import numpy as np

# A frame narrower or lower than this holds no face to judge: a camera giving
# one is broken or misconfigured (real modes start at 320 x 240).
MIN_FRAME_SIDE = 16
# 64 px is ~3 mm at 500 dpi, a few ridges: the smallest fingerprint sensors give
# 160 px or more a side, the R307 256 x 288.
MIN_PRINT_SIDE = 64
# Larger than any mode the kiosk uses (the Camera Module 3's full 4608 x 2592, a
# 1000 dpi slap scanner's ~3200 px): a bigger array is a driver bug or corrupt
# data, and would take seconds and hundreds of MB to judge.
MAX_IMAGE_SIDE = 8192
# Drawing box width / height: a box ten times wider than tall (or the other way
# round) is no signature box; an aspect beyond these is a bug.
MIN_ASPECT = 0.1
MAX_ASPECT = 10.0


def require_image(image: object, *, what: str, shape: str, channels: int | None, min_side: int):
    """``image`` as a uint8 array of ``shape`` (2-D, or H x W x ``channels``) and a sane size."""
    if not isinstance(image, np.ndarray):
        raise ValueError(
            f"a {what} must be a numpy {shape} uint8 array, got {type(image).__name__}"
        )
    ndim = 2 if channels is None else 3
    if image.ndim != ndim or image.dtype != np.uint8 or (channels and image.shape[2] != channels):
        raise ValueError(f"a {what} must be {shape} uint8, got {image.shape} {image.dtype}")
    height, width = image.shape[:2]
    if min(height, width) < min_side or max(height, width) > MAX_IMAGE_SIDE:
        raise ValueError(
            f"a {what} must be {min_side} to {MAX_IMAGE_SIDE} px a side, got {width} x {height}"
        )
    return image


def require_frame(image: object) -> np.ndarray:
    """A camera frame: RGB, H x W x 3 uint8, each side MIN_FRAME_SIDE..MAX_IMAGE_SIDE px."""
    return require_image(
        image, what="camera frame", shape="HxWx3 RGB", channels=3, min_side=MIN_FRAME_SIDE
    )


def require_print(image: object) -> np.ndarray:
    """A fingerprint image: 2-D uint8 grayscale, each side MIN_PRINT_SIDE..MAX_IMAGE_SIDE px."""
    return require_image(
        image,
        what="fingerprint image",
        shape="2-D grayscale",
        channels=None,
        min_side=MIN_PRINT_SIDE,
    )


def _stroke_points(stroke: object, number: int) -> np.ndarray:
    if stroke is None or isinstance(stroke, str | bytes):
        raise ValueError(f"stroke {number} must be a sequence of (x, y, t) points, got {stroke!r}")
    try:
        points = np.asarray(stroke, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"stroke {number} is not a sequence of (x, y, t) numbers: {exc}") from None
    if points.size == 0:
        return points.reshape(0, 3)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(
            f"stroke {number}: every point must be (x, y, t), got shape {points.shape}"
        )
    finite = np.isfinite(points).all(axis=1)
    on_pad = ((points[:, :2] >= 0.0) & (points[:, :2] <= 1.0)).all(axis=1)
    for good, rule in ((finite, "is not finite"), (on_pad, "is off the pad (x, y within 0..1)")):
        if not good.all():
            index = int(np.flatnonzero(~good)[0])
            point = tuple(points[index].tolist())
            raise ValueError(f"stroke {number}, point {index + 1} {rule}: {point}")
    backwards = np.flatnonzero(np.diff(points[:, 2]) < 0)
    if backwards.size:
        index = int(backwards[0]) + 1
        raise ValueError(f"stroke {number}: time runs backwards at point {index + 1}")
    return points


def require_strokes(strokes: object) -> list[np.ndarray]:
    """Each stroke as an N x 3 float array (N may be 0): every x, y within 0..1 of
    the pad, every value finite, and t never decreasing within a stroke."""
    if strokes is None or isinstance(strokes, str | bytes) or not isinstance(strokes, Iterable):
        raise ValueError(
            f"strokes must be a sequence of strokes of (x, y, t) points, got {strokes!r:.40}"
        )
    return [_stroke_points(stroke, number) for number, stroke in enumerate(strokes, 1)]


def require_aspect(aspect: object) -> float:
    """A drawing box's width / height, as a float within MIN_ASPECT..MAX_ASPECT."""
    if not isinstance(aspect, numbers.Real) or isinstance(aspect, bool):
        raise ValueError(f"aspect must be a number, got {aspect!r}")
    value = float(aspect)
    if not (math.isfinite(value) and MIN_ASPECT <= value <= MAX_ASPECT):
        raise ValueError(
            f"aspect (width / height) must be positive, {MIN_ASPECT} to {MAX_ASPECT}, got {aspect}"
        )
    return value


def require_size(width: object, height: object) -> tuple[int, int]:
    """An image size to draw: whole pixels, 1..MAX_IMAGE_SIDE a side."""
    try:
        size = operator.index(width), operator.index(height)
    except TypeError:
        raise ValueError(f"image size must be whole pixels, got {width!r} x {height!r}") from None
    if not all(1 <= side <= MAX_IMAGE_SIDE for side in size):
        raise ValueError(
            f"image size must be positive, at most {MAX_IMAGE_SIDE} px, got {width} x {height}"
        )
    return size
