"""Signature checks, normalisation and rendering, on pen strokes.

A stroke is a sequence of ``(x, y, t)`` points: x and y in 0..1 of the pad
(y down), t in seconds. Lengths are measured in pad widths, so the pad's
aspect ratio (width / height) turns a y step into a width-relative one::

    quality = assess_signature(capture.strokes, aspect=capture.aspect)
    quality.measures["DirectionChanges"].passed  # True for a real signature
    fitted = normalise_signature(capture.strokes, capture.aspect, target_aspect=900 / 300)
    image = render_signature(fitted, 900, 300)  # black ink on white, filling the image

The checks, in the order a problem is reported (each a :class:`Measure`):

============  ================  ===========  ================================================
problem       measure           band         why
============  ================  ===========  ================================================
empty         (no points)                    nothing drawn
dot           Extent            >= 0.015     a tap, or a finger that landed and wobbled
too_short     InkLength         >= 0.4       a tick; even short initials run to a pad width
too_small     BoxSize           >= 1         a scribble in a corner, too small to compare
straight_line AxisRatio         >= 0.06      every point close to one line (one or more strokes)
too_simple    DirectionChanges  >= 3         a tick, a V, an X, an L: too little movement
============  ================  ===========  ================================================

Many people sign in one unbroken stroke, so the stroke count alone says
nothing about a signature and is not judged. What a mark lacks is movement:
``DirectionChanges`` counts each time the pen turns back along x or along y
(by at least :data:`REVERSAL_MIN` pad widths, so a finger's tremble on a line
is not a turn), plus one for each lift of the pen to start another stroke. A
one-letter "O" scores 3 and passes; a cursive name scores dozens; a straight
line, a tick or a V (0 to 1) and an X or a printed L (1 to 2) are turned back
with "write your full signature, as you always do". A large zigzag passes: it
cannot be told from a scrawled signature by its shape, and the officer sees
every signature at the review.
"""

from __future__ import annotations

import enum
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from kiosk.quality.inputs import require_aspect, require_size, require_strokes
from kiosk.quality.measures import Measure

DEFAULT_ASPECT = 3.0  # pad width / height, as SignatureCapture assumes
# Bounding-box diagonal, in pad widths: a tap or a landed finger's wobble stays
# under this (~2 mm on a 7" screen's box); a tick already goes beyond it.
MIN_EXTENT = 0.015
# Total ink, in pad widths: a dot or a tick stays well under this, while even a
# short initialled signature runs to about one pad width.
MIN_INK_LENGTH = 0.4
# Bounding box, as a share of the pad: a signature this narrow AND this low is
# a scribble in a corner, too small to compare with the one on file.
MIN_BOX_WIDTH = 0.15
MIN_BOX_HEIGHT = 0.25
# Minor / major axis (standard deviations) of the points' spread: a line drawn
# by hand, bowed or trembling, stays under 0.04; a flat cursive name one
# twelfth as high as wide is still about 0.09.
MIN_AXIS_RATIO = 0.06
# Turns back (along x or y) plus pen lifts: see the module docstring.
MIN_DIRECTION_CHANGES = 3
# A turn back counts once the pen has gone back this far (pad widths, ~1 cm on a
# 7" screen's box, about a small letter's height): a finger's tremble never does.
REVERSAL_MIN = 0.015
# Blank border normalise_signature leaves around the ink, a share of each side.
DEFAULT_MARGIN = 0.05
StrokeInput = Sequence[Sequence[tuple[float, float, float]]]  # strokes of (x, y, t) points
Stroke = tuple[tuple[float, float, float], ...]
# Sub-pixel precision for cv2 drawing: coordinates are scaled by 2**shift.
_SHIFT = 4


class SignatureProblem(enum.StrEnum):
    """What is wrong with a signature; the values are i18n keys."""

    EMPTY = "quality.signature.empty"
    DOT = "quality.signature.dot"
    TOO_SHORT = "quality.signature.too_short"
    TOO_SMALL = "quality.signature.too_small"
    STRAIGHT_LINE = "quality.signature.straight_line"
    TOO_SIMPLE = "quality.signature.too_simple"


@dataclass(frozen=True)
class SignatureQuality:
    """The verdict on one signature and the measures behind it.

    ``measures`` maps the names in the module docstring's table to their
    :class:`Measure`; ``problem`` is the first failing one's, in that order.
    """

    ok: bool
    problem: SignatureProblem | None
    ink_length: float  # total stroke length, in pad widths
    stroke_count: int  # strokes holding at least one point
    box_width: float  # bounding box width, share of the pad width
    box_height: float  # bounding box height, share of the pad height
    measures: dict[str, Measure] = field(default_factory=dict)


def _as_arrays(strokes: StrokeInput) -> list[np.ndarray]:
    """Each non-empty stroke as an N x 3 float array; ValueError for strokes no pen could draw."""
    return [points for points in require_strokes(strokes) if len(points)]


def _reversals(values: np.ndarray, minimum: float) -> int:
    """How often ``values`` turn back by at least ``minimum`` (hysteresis, so tremble is not)."""
    count = 0
    direction = 0  # unknown until the values have moved ``minimum`` one way
    low = high = extreme = float(values[0])
    for value in values[1:].tolist():
        if direction == 0:
            low, high = min(low, value), max(high, value)
            if high - low >= minimum:
                direction, extreme = (1 if value == high else -1), value
        elif direction * (value - extreme) > 0:
            extreme = value
        elif abs(value - extreme) >= minimum:
            count += 1
            direction, extreme = -direction, value
    return count


def _axis_ratio(points: np.ndarray) -> float:
    """Minor / major standard deviation of the points: 0 on a line, 1 for a round blob."""
    if len(points) < 2:
        return 0.0
    low, high = np.linalg.eigvalsh(np.cov(points, rowvar=False))
    if not high > 0:
        return 0.0
    return math.sqrt(max(float(low), 0.0) / float(high))


# The checks in the order their problems are reported, with their lower bounds.
_BANDS = {
    "Extent": MIN_EXTENT,
    "InkLength": MIN_INK_LENGTH,
    "BoxSize": 1.0,
    "AxisRatio": MIN_AXIS_RATIO,
    "DirectionChanges": float(MIN_DIRECTION_CHANGES),
}
_PROBLEMS = {
    "Extent": SignatureProblem.DOT,
    "InkLength": SignatureProblem.TOO_SHORT,
    "BoxSize": SignatureProblem.TOO_SMALL,
    "AxisRatio": SignatureProblem.STRAIGHT_LINE,
    "DirectionChanges": SignatureProblem.TOO_SIMPLE,
}


def assess_signature(strokes: StrokeInput, aspect: float = DEFAULT_ASPECT) -> SignatureQuality:
    """Judge a signature from its strokes; ``aspect`` is the pad's width / height.

    The problem reported is the first failing check of the module docstring's
    table: nothing drawn, a dot, too little ink (a tick), a bounding box too
    small, a straight line, too little movement. Empty strokes are ignored.
    Points off the pad or not finite, time running back within a stroke, or an
    aspect outside 0.1..10 are a ValueError: such strokes cannot be judged.
    """
    aspect = require_aspect(aspect)
    arrays = _as_arrays(strokes)
    if not arrays:
        nothing = {name: Measure(None, minimum=low) for name, low in _BANDS.items()}
        return SignatureQuality(False, SignatureProblem.EMPTY, 0.0, 0, 0.0, 0.0, nothing)

    # every point in pad widths: y is in pad heights
    scaled = [points[:, :2] / (1.0, aspect) for points in arrays]
    ink_length = sum(float(np.hypot(*np.diff(xy, axis=0).T).sum()) for xy in scaled)
    every_point = np.concatenate(scaled)
    box_width = float(np.ptp(every_point[:, 0]))
    box_height = float(np.ptp(every_point[:, 1])) * aspect  # share of the pad height
    turns = sum(_reversals(xy[:, axis], REVERSAL_MIN) for xy in scaled for axis in (0, 1))
    lifts = len(scaled) - 1
    values = {
        "Extent": math.hypot(box_width, box_height / aspect),
        "InkLength": ink_length,
        "BoxSize": max(box_width / MIN_BOX_WIDTH, box_height / MIN_BOX_HEIGHT),
        "AxisRatio": _axis_ratio(every_point),
        "DirectionChanges": float(turns + lifts),
    }
    measures = {name: Measure(round(values[name], 4), minimum=_BANDS[name]) for name in _BANDS}
    problem = next((_PROBLEMS[name] for name, m in measures.items() if not m.passed), None)
    return SignatureQuality(
        ok=problem is None,
        problem=problem,
        ink_length=round(ink_length, 4),
        stroke_count=len(arrays),
        box_width=round(box_width, 4),
        box_height=round(box_height, 4),
        measures=measures,
    )


def normalise_signature(
    strokes: StrokeInput,
    aspect: float = DEFAULT_ASPECT,
    target_aspect: float = DEFAULT_ASPECT,
    margin: float = DEFAULT_MARGIN,
) -> tuple[Stroke, ...]:
    """The strokes cropped to their ink and scaled to fill a ``target_aspect`` image.

    ``aspect`` is the pad's width / height, ``target_aspect`` the image's (the
    flow's 900 x 300 is 3.0). The ink's bounding box, with ``margin`` (a share
    of the image's width and of its height, 0 to 0.45) left blank on every
    side, is scaled up or down to fit, the handwriting's own proportions kept,
    and centred; coordinates come back in 0..1 of the image, ready for
    :func:`render_signature`. Times are kept as they are, empty strokes
    dropped. A single point (a tap) is centred unscaled. Strokes that
    :func:`assess_signature` refuses, a bad aspect or margin are a ValueError.
    """
    aspect = require_aspect(aspect)
    target_aspect = require_aspect(target_aspect)
    if not isinstance(margin, int | float) or not 0.0 <= margin <= 0.45:
        raise ValueError(f"margin must be a share of the image, 0 to 0.45, got {margin!r}")
    arrays = _as_arrays(strokes)
    if not arrays:
        return ()
    every_point = np.concatenate(arrays)[:, :2] / (1.0, aspect)  # pad widths
    low, high = every_point.min(axis=0), every_point.max(axis=0)
    span = high - low
    room = (1.0 - 2.0 * margin) * np.array([1.0, 1.0 / target_aspect])  # image widths
    with np.errstate(divide="ignore"):
        fits = np.where(span > 1e-9, room / np.maximum(span, 1e-300), np.inf)
    scale = float(fits.min()) if np.isfinite(fits).any() else 1.0
    image_centre = np.array([0.5, 0.5 / target_aspect])
    normalised = []
    for points in arrays:
        xy = (points[:, :2] / (1.0, aspect) - (low + high) / 2.0) * scale + image_centre
        xy = np.clip(xy * (1.0, target_aspect), 0.0, 1.0)  # back to shares; clip rounding only
        normalised.append(
            tuple(zip(xy[:, 0].tolist(), xy[:, 1].tolist(), points[:, 2].tolist(), strict=True))
        )
    return tuple(normalised)


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
