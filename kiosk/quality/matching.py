"""Is this print a finger already captured in this enrollment? A compact minutiae matcher.

The kiosk captures ten fingers in order; a citizen sometimes gives the same
finger twice. Each new print is compared with those captured before it, on the
device, in a few milliseconds a comparison::

    from kiosk.quality.matching import find_repeat, make_template

    templates = {}  # finger -> PrintTemplate, for this enrollment only
    for finger in FINGER_ORDER:
        image = ...  # 288 x 256 uint8, ridges dark on light, 500 dpi
        new = make_template(image)
        repeated = find_repeat(new, templates)  # None, or the finger it repeats
        if repeated is None:
            templates[finger] = new

How (docs/fingerprint-matching.md has the reasons and the figures):

1. **Template**: the image is normalised, the finger area segmented by local
   contrast, the ridge orientation estimated from gradients, the ridges
   enhanced by a Gabor filter tuned to each pixel's orientation, binarised
   and thinned (Zhang-Suen); minutiae are the skeleton's ridge endings and
   bifurcations (crossing number), minus those near the finger's edge and
   those too close to each other (broken ridges, spurs, bridges). Each
   minutia has a direction away from its ridge's stem, traced on the skeleton.
2. **Comparison**: each minutia is described by its nearest neighbours
   (distance, bearing and direction relative to its own, so invariant to
   placement); the pairs of minutiae whose neighbourhoods agree best propose
   alignments (a rotation within ``MAX_ROTATION`` and a translation); under
   each, minutiae are paired one to one within a distance and an angle, and
   the best alignment's pairs give the score.

Templates live in memory only and are never written to disk: they are
biometric data derived from the prints, and the packet carries the images.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

import cv2
import numpy as np

from kiosk.quality.gabor import ORIENTATION_BINS, RIDGE_PERIOD, gabor_spectra

K = TypeVar("K")

MIN_SIDE = 64  # smaller than this is not a fingerprint image
BLOCK = 16  # side of the blocks the finger area is judged by
# Local standard deviation (grey levels) above which a block is finger, not glass.
FOREGROUND_STD = 12.0
EDGE_MARGIN = 12  # minutiae nearer the finger's edge than this are edge effects
MIN_DISTANCE = 8.0  # two minutiae nearer than this are a broken ridge, spur or bridge
MIN_SEGMENT = 12  # skeleton pieces shorter than this (pixels) are noise
TRACE_STEPS = 10  # skeleton pixels followed to find a minutia's direction
NEIGHBOURS = 6  # per minutia in its local descriptor
# Placement: a citizen turns a finger by tens of degrees at most, never upside down.
MAX_ROTATION = np.deg2rad(45.0)
PAIR_DISTANCE = 10.0  # pixels: aligned minutiae this close may be the same (skin stretches)
PAIR_ANGLE = np.deg2rad(20.0)
ALIGNMENT_CANDIDATES = 12  # best local pairs tried as alignments
PAIR_SUPPORT = 2 / NEIGHBOURS  # share of a pair's neighbours that must pair as well
# Score: minutiae paired under the best alignment whose neighbourhoods pair too,
# weighted by how much of the smaller print they cover. Set on synthetic prints
# (docs/fingerprint-matching.md): 98% of same-finger pairs reach it, 0.004% of others.
SAME_FINGER_THRESHOLD = 8.0


@dataclass(frozen=True, eq=False)
class PrintTemplate:
    """The minutiae of one print, in image pixels; kept in memory, never written to disk.

    ``x``, ``y``: position (pixels, origin top left, y down); ``angle``: direction
    in radians (0..2 pi, away from the ridge's stem); ``kind``: 1 ridge ending,
    3 bifurcation (the crossing number; kept for reference, the comparison ignores
    it because pressure turns one into the other). ``area``: pixels of finger.
    """

    x: np.ndarray
    y: np.ndarray
    angle: np.ndarray
    kind: np.ndarray
    area: int

    def __len__(self) -> int:
        return len(self.x)

    def __repr__(self) -> str:
        return f"PrintTemplate({len(self)} minutiae, {self.area} px of finger)"


def make_template(image_gray: np.ndarray) -> PrintTemplate:
    """The minutiae template of one print: 2-D uint8, ridges dark on light, 500 dpi.

    The sensors give 288 x 256 (rows x columns); other sizes of at least 64 px a
    side work too. An image with no finger in it gives a template with no
    minutiae, which matches nothing. Raises ValueError for anything that is not
    a 2-D uint8 array of that size. Pure computation: call it on any thread.
    """
    image = _checked(image_gray)
    grey = image.astype(np.float32)
    mask = _finger_area(grey)
    if not mask.any():
        return _empty()
    normalised = _normalised(grey, mask)
    orientation = _orientation(normalised)
    ridges = _enhanced(normalised, orientation) > 0
    ridges &= mask
    skeleton = _thinned(ridges)
    skeleton = _without_short_pieces(skeleton)
    inner = cv2.erode(mask.astype(np.uint8), _disc(EDGE_MARGIN)).astype(bool)
    x, y, kind = _minutiae(skeleton, inner)
    angle = np.array(
        [_direction(skeleton, orientation, yy, xx) for xx, yy in zip(x, y, strict=True)],
        np.float64,
    )
    keep = ~np.isnan(angle) & _isolated(x, y)
    return PrintTemplate(
        x=x[keep].astype(np.float64),
        y=y[keep].astype(np.float64),
        angle=angle[keep],
        kind=kind[keep],
        area=int(mask.sum()),
    )


def match_score(a: PrintTemplate, b: PrintTemplate) -> float:
    """How alike two prints are: 0 for nothing in common, higher is more alike.

    The same whichever way round (the smaller print is laid on the larger); at or
    above ``SAME_FINGER_THRESHOLD`` the two are taken for the same finger. About
    3 ms on a PC. Raises ValueError if either is not a :class:`PrintTemplate`.
    """
    for t in (a, b):
        if not isinstance(t, PrintTemplate):
            raise ValueError(f"match_score needs PrintTemplates, got {type(t).__name__}")
    if len(a) < 3 or len(b) < 3:
        return 0.0
    if _order(b) < _order(a):  # the same answer whichever way round
        a, b = b, a
    return _score(_best_alignment(a, b), len(a), len(b))


def _order(t: PrintTemplate) -> tuple[int, int, float, float]:
    return len(t), t.area, float(t.x.sum()), float(t.y.sum())


def _score(alignment: Alignment, na: int, nb: int) -> float:
    # Only pairs whose neighbourhoods agree too count: a chance pairing of two
    # unrelated minutiae rarely has neighbours that also pair.
    paired = sum(support >= PAIR_SUPPORT for support in alignment.support)
    if paired < 3:
        return float(paired)
    # Pairs in proportion to the smaller print: a big print matching a few by
    # chance counts less than a small one matching most of its minutiae.
    coverage = paired / min(na, nb)
    return float(paired * min(1.0, 0.5 + coverage))


def find_repeat(new: PrintTemplate, captured: Mapping[K, PrintTemplate]) -> K | None:
    """The key of the captured print ``new`` repeats (the best scoring at or above
    ``SAME_FINGER_THRESHOLD``), or None if it repeats none of them.

    Raises ValueError if ``new`` or any captured value is not a PrintTemplate.
    """
    if not isinstance(new, PrintTemplate):
        raise ValueError(f"find_repeat needs a PrintTemplate, got {type(new).__name__}")
    best_key: K | None = None
    best = SAME_FINGER_THRESHOLD
    for key, template in captured.items():
        score = match_score(new, template)
        if score >= best:
            best_key, best = key, score
    return best_key


# --- template -----------------------------------------------------------------


def _checked(image: object) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise ValueError(f"a fingerprint image is a numpy array, got {type(image).__name__}")
    if image.ndim != 2:
        raise ValueError(f"a fingerprint image is 2-D greyscale, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"a fingerprint image is uint8, got {image.dtype}")
    if min(image.shape) < MIN_SIDE:
        raise ValueError(f"a fingerprint image is at least {MIN_SIDE} px a side, got {image.shape}")
    return image


def _empty() -> PrintTemplate:
    nothing = np.zeros(0, np.float64)
    return PrintTemplate(nothing, nothing, nothing, np.zeros(0, np.uint8), 0)


def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _finger_area(grey: np.ndarray) -> np.ndarray:
    """True where ridges are: local contrast well above the sensor's noise."""
    smooth = cv2.GaussianBlur(grey, (0, 0), 1.0)
    mean = cv2.boxFilter(smooth, -1, (BLOCK, BLOCK))
    square = cv2.boxFilter(smooth * smooth, -1, (BLOCK, BLOCK))
    std = np.sqrt(np.maximum(square - mean * mean, 0.0))
    mask = (std > FOREGROUND_STD).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, _disc(6))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _disc(8))
    return mask.astype(bool)


def _normalised(grey: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Ridges positive, valleys negative, unit local contrast; 0 off the finger."""
    inverted = 255.0 - grey
    mean = cv2.GaussianBlur(inverted, (0, 0), RIDGE_PERIOD)
    centred = inverted - mean
    std = np.sqrt(cv2.GaussianBlur(centred * centred, (0, 0), RIDGE_PERIOD))
    return np.where(mask, centred / (std + 1.0), 0.0).astype(np.float32)


def _orientation(normalised: np.ndarray) -> np.ndarray:
    """Ridge direction (radians, modulo pi) at every pixel, from smoothed gradients."""
    gx = cv2.Sobel(normalised, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(normalised, cv2.CV_32F, 0, 1, ksize=3)
    gxx = cv2.GaussianBlur(gx * gx - gy * gy, (0, 0), 6.0)
    gxy = cv2.GaussianBlur(2.0 * gx * gy, (0, 0), 6.0)
    # The gradient runs across the ridges; the ridges run at right angles to it.
    return np.mod(0.5 * np.arctan2(gxy, gxx) + np.pi / 2, np.pi)


GABOR_PAD = 16  # reflected margin, wider than the kernel's reach, so the DFT does not wrap


def _enhanced(normalised: np.ndarray, orientation: np.ndarray) -> np.ndarray:
    """Each pixel filtered along its own ridge direction (its two nearest bins mixed).

    One forward DFT and one inverse per bin: a fifth of the time of 16 filter2D.
    """
    p = GABOR_PAD
    padded = cv2.copyMakeBorder(normalised, p, p, p, p, cv2.BORDER_REFLECT_101)
    spectrum = cv2.dft(padded)
    responses = np.stack(
        [
            cv2.dft(
                cv2.mulSpectrums(spectrum, kernel, 0),
                flags=cv2.DFT_INVERSE | cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE,
            )[p:-p, p:-p]
            for kernel in gabor_spectra(padded.shape)
        ]
    )
    position = orientation / np.pi * ORIENTATION_BINS
    lower = np.floor(position).astype(np.intp) % ORIENTATION_BINS
    upper = (lower + 1) % ORIENTATION_BINS
    weight = (position - np.floor(position)).astype(np.float32)
    below = np.take_along_axis(responses, lower[None], axis=0)[0]
    above = np.take_along_axis(responses, upper[None], axis=0)[0]
    return (1.0 - weight) * below + weight * above


def _neighbours(img: np.ndarray) -> list[np.ndarray]:
    """P2..P9 of Zhang-Suen (N, NE, E, SE, S, SW, W, NW) for every pixel of the interior."""
    return [
        img[:-2, 1:-1],
        img[:-2, 2:],
        img[1:-1, 2:],
        img[2:, 2:],
        img[2:, 1:-1],
        img[2:, :-2],
        img[1:-1, :-2],
        img[:-2, :-2],
    ]


def _thinned(binary: np.ndarray) -> np.ndarray:
    """One pixel wide ridges: Zhang and Suen's thinning (1984), vectorised."""
    img = np.pad(binary.astype(np.uint8), 1)
    while True:
        changed = False
        for step in (0, 1):
            p = _neighbours(img)
            p2, _, p4, _, p6, _, p8, _ = p
            count = sum(q.astype(np.int8) for q in p)
            ring = [*p, p2]
            transitions = sum(
                ((ring[i] == 0) & (ring[i + 1] == 1)).astype(np.int8) for i in range(8)
            )
            if step == 0:
                first, second = p2 * p4 * p6, p4 * p6 * p8
            else:
                first, second = p2 * p4 * p8, p2 * p6 * p8
            centre = img[1:-1, 1:-1]
            remove = (
                (centre == 1)
                & (count >= 2)
                & (count <= 6)
                & (transitions == 1)
                & (first == 0)
                & (second == 0)
            )
            if remove.any():
                centre[remove] = 0
                changed = True
        if not changed:
            return img[1:-1, 1:-1].astype(bool)


def _without_short_pieces(skeleton: np.ndarray) -> np.ndarray:
    _, labels, stats, _ = cv2.connectedComponentsWithStats(skeleton.astype(np.uint8), 8)
    keep = stats[:, cv2.CC_STAT_AREA] >= MIN_SEGMENT
    keep[0] = False
    return keep[labels]


def _minutiae(skeleton: np.ndarray, inner: np.ndarray) -> tuple[np.ndarray, ...]:
    """Ridge endings (crossing number 1) and bifurcations (3) inside ``inner``."""
    img = np.pad(skeleton.astype(np.int8), 1)
    ring = _neighbours(img)
    crossing = sum(np.abs(ring[i] - ring[(i + 1) % 8]) for i in range(8)) // 2
    found = skeleton & inner & ((crossing == 1) | (crossing == 3))
    y, x = np.nonzero(found)
    return x, y, crossing[y, x].astype(np.uint8)


_STEPS = [(-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)]


def _trace(skeleton: np.ndarray, y: int, x: int, first: tuple[int, int], seen: set) -> np.ndarray:
    """Where the skeleton leads from (y, x) through ``first`` after TRACE_STEPS pixels."""
    height, width = skeleton.shape
    cy, cx = first
    for _ in range(TRACE_STEPS - 1):
        seen.add((cy, cx))
        ahead = [
            (cy + dy, cx + dx)
            for dy, dx in _STEPS
            if 0 <= cy + dy < height
            and 0 <= cx + dx < width
            and skeleton[cy + dy, cx + dx]
            and (cy + dy, cx + dx) not in seen
        ]
        if len(ahead) != 1:  # the ridge ends or forks again: stop here
            break
        cy, cx = ahead[0]
    return np.array([cx - x, cy - y], np.float64)


def _direction(skeleton: np.ndarray, orientation: np.ndarray, y: int, x: int) -> float:
    """Direction (0..2 pi) away from the minutia's stem: the ridge behind an ending,
    the branch of a bifurcation set apart from the other two; NaN if unclear."""
    height, width = skeleton.shape
    starts = [
        (y + dy, x + dx)
        for dy, dx in _STEPS
        if 0 <= y + dy < height and 0 <= x + dx < width and skeleton[y + dy, x + dx]
    ]
    seen = {(y, x), *starts}
    branches = [_trace(skeleton, y, x, start, seen) for start in starts]
    branches = [b for b in branches if np.hypot(*b) >= 3.0]
    if len(branches) == 1:
        stem = branches[0]
    elif len(branches) == 3:
        angles = [np.arctan2(b[1], b[0]) for b in branches]

        def apart(i: int) -> float:
            return min(
                abs(np.angle(np.exp(1j * (angles[i] - angles[j])))) for j in range(3) if j != i
            )

        stem = branches[max(range(3), key=apart)]
    else:
        return float("nan")
    traced = np.arctan2(-stem[1], -stem[0])
    # The smoothed orientation field is steadier than a few traced pixels: take its
    # direction, turned the way the trace points.
    ridge = orientation[y, x]
    if np.cos(traced - ridge) < 0:
        ridge += np.pi
    return float(np.mod(ridge, 2 * np.pi))


def _isolated(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """False for every minutia with another nearer than MIN_DISTANCE."""
    if len(x) < 2:
        return np.ones(len(x), bool)
    d = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :]).astype(np.float64)
    np.fill_diagonal(d, np.inf)
    return d.min(axis=1) >= MIN_DISTANCE


# --- comparison ---------------------------------------------------------------


def _wrapped(angle: np.ndarray) -> np.ndarray:
    """Angle differences folded into -pi..pi."""
    return np.mod(angle + np.pi, 2 * np.pi) - np.pi


def _descriptors(t: PrintTemplate) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each minutia's nearest neighbours, as three (n, NEIGHBOURS) arrays: distance, and
    the bearing and the direction relative to its own, as unit complex numbers."""
    dx = t.x[None, :] - t.x[:, None]
    dy = t.y[None, :] - t.y[:, None]
    distance = np.hypot(dx, dy)
    np.fill_diagonal(distance, np.inf)
    k = min(NEIGHBOURS, len(t) - 1)
    nearest = np.argsort(distance, axis=1)[:, :k]
    rows = np.arange(len(t))[:, None]
    own = np.exp(-1j * t.angle)[:, None]
    bearing = np.exp(1j * np.arctan2(dy[rows, nearest], dx[rows, nearest])) * own
    turn = np.exp(1j * t.angle[nearest]) * own
    return distance[rows, nearest], bearing.astype(np.complex64), turn.astype(np.complex64)


_ANGLE_COS = np.cos(PAIR_ANGLE)


def _local_similarity(a: PrintTemplate, b: PrintTemplate) -> np.ndarray:
    """(len(a), len(b)): share of neighbours that agree between each pair of minutiae."""
    (da, ba, ta), (db, bb, tb) = _descriptors(a), _descriptors(b)

    def agree(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        # Two angles within PAIR_ANGLE: the real part of one times the other's conjugate.
        return (u[:, None, :, None] * v[None, :, None, :].conj()).real > _ANGLE_COS

    close = np.abs(da[:, None, :, None] - db[None, :, None, :]) < 0.6 * PAIR_DISTANCE
    close &= agree(ba, bb)
    close &= agree(ta, tb)
    # Each of a's neighbours counts once, if any neighbour of b agrees with it.
    return close.any(axis=3).sum(axis=2) / max(1, min(da.shape[1], db.shape[1]))


@dataclass(frozen=True)
class Alignment:
    """How ``a`` lies on ``b``: a point p of a is at R(turn) p + (dx, dy) in b; and how
    many minutiae pair up that way, each with its neighbourhoods' agreement."""

    turn: float
    dx: float
    dy: float
    paired: int
    support: tuple[float, ...] = ()  # each pair's share of agreeing neighbours, 0..1


def _best_alignment(a: PrintTemplate, b: PrintTemplate) -> Alignment:
    """The alignment of ``a`` on ``b`` under which most minutiae pair one to one."""
    similarity = _local_similarity(a, b)
    rotation = _wrapped(b.angle[None, :] - a.angle[:, None])
    similarity = np.where(np.abs(rotation) <= MAX_ROTATION, similarity, -1.0)
    order = np.argsort(similarity, axis=None)[::-1][:ALIGNMENT_CANDIDATES]
    best = Alignment(0.0, 0.0, 0.0, 0)
    for flat in order:
        i, j = np.unravel_index(flat, similarity.shape)
        if similarity[i, j] <= 0:
            break
        turn = float(rotation[i, j])
        c, s = np.cos(turn), np.sin(turn)
        dx = b.x[j] - (c * a.x[i] - s * a.y[i])
        dy = b.y[j] - (s * a.x[i] + c * a.y[i])
        rows, cols = _paired(a, b, turn, dx, dy)
        if len(rows) > best.paired:
            support = tuple(float(v) for v in similarity[rows, cols])
            best = Alignment(turn, float(dx), float(dy), len(rows), support=support)
    return best


def _paired(
    a: PrintTemplate, b: PrintTemplate, turn: float, dx: float, dy: float
) -> tuple[np.ndarray, np.ndarray]:
    """Minutiae paired one to one with a laid on b: pairs that are each other's nearest
    among those within PAIR_DISTANCE and PAIR_ANGLE."""
    c, s = np.cos(turn), np.sin(turn)
    x = c * a.x - s * a.y + dx
    y = s * a.x + c * a.y + dy
    distance = np.hypot(x[:, None] - b.x[None, :], y[:, None] - b.y[None, :])
    agree = np.abs(_wrapped(a.angle[:, None] + turn - b.angle[None, :])) < PAIR_ANGLE
    cost = np.where(agree & (distance < PAIR_DISTANCE), distance, np.inf)
    nearest_b = np.argmin(cost, axis=1)
    nearest_a = np.argmin(cost, axis=0)
    rows = np.arange(len(a))
    mutual = (nearest_a[nearest_b] == rows) & np.isfinite(cost[rows, nearest_b])
    return rows[mutual], nearest_b[mutual]
