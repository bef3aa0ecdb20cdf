"""The same finger given twice is caught; different fingers, even of one pattern, are not.

No real prints: each synthetic finger is a ridge pattern grown the SFinGe way on a
canvas larger than the sensor window (so a moved finger brings new ridges into
view), and each impression of it places it differently (shift 10-30 px, turn
5-20 degrees, skin stretched by a few pixels), with its own contact area,
pressure, blur and sensor noise. benchmarks/fingerprint_matching.py measures
the same on more fingers.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from kiosk.quality.matching import (
    SAME_FINGER_THRESHOLD,
    PrintTemplate,
    find_repeat,
    make_template,
    match_score,
)

SAMPLES = Path(__file__).resolve().parent.parent / "kiosk" / "drivers" / "fingerprint" / "samples"
HEIGHT, WIDTH = 288, 256  # the sensor window
MARGIN = 48  # finger beyond the window on each side
CANVAS = (HEIGHT + 2 * MARGIN, WIDTH + 2 * MARGIN)
RIDGE_PERIOD = 9.0
BINS = 16
PAD = 16  # reflected margin so the DFT does not wrap ridges round
GLASS = 235.0

# Singular points (window pixels) of each pattern class: cores, then deltas.
PATTERNS = {
    "right_loop": ([(135, 120)], [(70, 215)]),
    "left_loop": ([(115, 115)], [(190, 210)]),
    "whorl": ([(115, 135), (145, 150)], [(45, 225), (215, 230)]),
    "tented_arch": ([(128, 135)], [(128, 190)]),
}
# Ten fingers, loops above all (as in people): four right loops, three left loops.
FINGERS = [
    ("right_loop", 1),
    ("right_loop", 2),
    ("right_loop", 3),
    ("left_loop", 4),
    ("left_loop", 5),
    ("left_loop", 6),
    ("whorl", 7),
    ("whorl", 8),
    ("tented_arch", 9),
    ("right_loop", 10),
]
IMPRESSIONS = 3

_SPECTRA: list[np.ndarray] = []


def _gabor_spectra() -> list[np.ndarray]:
    if not _SPECTRA:
        sigma = 0.45 * RIDGE_PERIOD
        size = int(4 * sigma) | 1
        shape = (CANVAS[0] + 2 * PAD, CANVAS[1] + 2 * PAD)
        for k in range(BINS):
            kernel = cv2.getGaborKernel(
                (size, size), sigma, k * np.pi / BINS + np.pi / 2, RIDGE_PERIOD, 0.6, 0.0
            )
            placed = np.zeros(shape, np.float32)
            placed[:size, :size] = kernel - kernel.mean()
            placed = np.roll(placed, (-(size // 2), -(size // 2)), axis=(0, 1))
            _SPECTRA.append(cv2.dft(placed))
    return _SPECTRA


def synthetic_finger(pattern: str, seed: int) -> np.ndarray:
    """A finger's ridges (CANVAS, -1..1, 1 = ridge): the zero-pole orientation field
    of ``pattern`` (singular points moved a little by ``seed``), ridges grown from
    noise by orientation-tuned Gabor filtering."""
    rng = np.random.default_rng(seed)
    cores, deltas = PATTERNS[pattern]
    sx, sy = rng.uniform(-12, 12, 2)
    yy, xx = np.mgrid[0 : CANVAS[0], 0 : CANVAS[1]].astype(np.float64)
    z = (xx - MARGIN) + 1j * (yy - MARGIN)
    theta = np.full(CANVAS, np.deg2rad(rng.uniform(-10, 10)))
    for cx, cy in cores:
        theta += 0.5 * np.angle(z - (cx + sx + 1j * (cy + sy)))
    for dx, dy in deltas:
        theta -= 0.5 * np.angle(z - (dx + sx + 1j * (dy + sy)))
    position = np.mod(theta, np.pi) / np.pi * BINS
    lower = np.floor(position).astype(np.intp) % BINS
    upper = (lower + 1) % BINS
    weight = (position - np.floor(position)).astype(np.float32)
    ridges = rng.standard_normal(CANVAS).astype(np.float32)
    for _ in range(8):
        padded = cv2.copyMakeBorder(ridges, PAD, PAD, PAD, PAD, cv2.BORDER_REFLECT_101)
        spectrum = cv2.dft(padded)
        responses = np.stack(
            [
                cv2.dft(
                    cv2.mulSpectrums(spectrum, kernel, 0),
                    flags=cv2.DFT_INVERSE | cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE,
                )[PAD:-PAD, PAD:-PAD]
                for kernel in _gabor_spectra()
            ]
        )
        mixed = (1 - weight) * np.take_along_axis(responses, lower[None], 0)[0]
        mixed += weight * np.take_along_axis(responses, upper[None], 0)[0]
        ridges = np.tanh(3.0 * mixed / (mixed.std() + 1e-6))
    return ridges


def impression(
    ridges: np.ndarray,
    seed: int,
    *,
    shift: tuple[float, float] = (0.0, 0.0),
    angle: float = 0.0,
    pressure: float = 0.0,
    stretch: float = 0.0,
    smudge: float = 0.0,
    noise: float = 6.0,
) -> np.ndarray:
    """One sensor image (HEIGHT x WIDTH uint8) of a finger placed ``shift`` px off
    centre and turned ``angle`` degrees; ``pressure`` -1..1 thins or widens ridges,
    ``stretch`` is the skin's elastic displacement (px), ``smudge`` a blur sigma."""
    rng = np.random.default_rng(seed)
    m = cv2.getRotationMatrix2D((CANVAS[1] / 2, CANVAS[0] / 2), angle, 1.0)
    m[:, 2] += (shift[0] - MARGIN, shift[1] - MARGIN)
    placed = cv2.warpAffine(
        ridges, m, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )
    if stretch:
        yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
        field = []
        for _ in range(2):
            f = cv2.GaussianBlur(
                rng.standard_normal((HEIGHT, WIDTH)).astype(np.float32), (0, 0), 40
            )
            field.append(f / (np.abs(f).max() + 1e-6) * stretch)
        placed = cv2.remap(
            placed, xx + field[0], yy + field[1], cv2.INTER_LINEAR, cv2.BORDER_REFLECT_101
        )
    ink = np.clip((placed + 1) / 2 + 0.5 * pressure, 0, 1)
    contact = np.zeros((HEIGHT, WIDTH), np.float32)
    centre = (
        round(128 + shift[0] / 2 + rng.uniform(-8, 8)),
        round(150 + shift[1] / 2 + rng.uniform(-8, 8)),
    )
    axes = (round(rng.uniform(100, 115)), round(rng.uniform(122, 140)))
    cv2.ellipse(contact, centre, axes, angle + rng.uniform(-6, 6), 0, 360, 1.0, thickness=-1)
    contact = cv2.GaussianBlur(contact, (0, 0), 6.0)
    uneven = cv2.GaussianBlur(rng.standard_normal((HEIGHT, WIDTH)).astype(np.float32), (0, 0), 30)
    uneven = (uneven - uneven.min()) / (uneven.max() - uneven.min() + 1e-6)
    ink = ink * (0.7 + 0.3 * uneven) * contact
    ridge_level, valley_level = rng.uniform(40, 70), rng.uniform(200, 220)
    image = GLASS + (valley_level - GLASS) * contact - (valley_level - ridge_level) * ink
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 0.7 + smudge)
    image = image + rng.normal(0, noise, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def impressions_of(ridges: np.ndarray, seed: int, count: int) -> list[np.ndarray]:
    """``count`` impressions: the first centred and clean, the others moved, turned,
    stretched, pressed harder or lighter, blurred and noisier, each its own way."""
    rng = np.random.default_rng([seed, 99])
    out = [impression(ridges, seed * 10)]
    for k in range(1, count):
        distance, bearing = rng.uniform(10, 30), rng.uniform(0, 2 * np.pi)
        out.append(
            impression(
                ridges,
                seed * 10 + k,
                shift=(distance * np.cos(bearing), distance * np.sin(bearing)),
                angle=float(rng.choice([-1, 1]) * rng.uniform(5, 20)),
                pressure=rng.uniform(-0.25, 0.3),
                stretch=rng.uniform(2, 5),
                smudge=rng.uniform(0, 0.8),
                noise=rng.uniform(5, 10),
            )
        )
    return out


@pytest.fixture(scope="module")
def templates() -> list[list[PrintTemplate]]:
    """FINGERS x IMPRESSIONS templates."""
    return [
        [make_template(image) for image in impressions_of(synthetic_finger(p, s), s, IMPRESSIONS)]
        for p, s in FINGERS
    ]


def test_the_same_finger_placed_differently_scores_above_the_threshold(templates):
    genuine = [
        match_score(row[a], row[b])
        for row in templates
        for a, b in itertools.combinations(range(IMPRESSIONS), 2)
    ]
    caught = sum(score >= SAME_FINGER_THRESHOLD for score in genuine) / len(genuine)
    # Measured: 30 of 30 (100%), the lowest 9.3; the goal is 90% or better.
    assert caught >= 0.9, sorted(genuine)


def test_different_fingers_even_of_one_pattern_score_below_the_threshold(templates):
    impostor = {
        (i, j, a, b): match_score(templates[i][a], templates[j][b])
        for i, j in itertools.combinations(range(len(FINGERS)), 2)
        for a in range(IMPRESSIONS)
        for b in range(IMPRESSIONS)
    }
    false = {k: s for k, s in impostor.items() if s >= SAME_FINGER_THRESHOLD}
    assert not false, false  # measured: 0 of 405, the highest 3.4
    # The hard case is really tested: loops against loops of the same hand.
    same_class = [s for (i, j, _, _), s in impostor.items() if FINGERS[i][0] == FINGERS[j][0]]
    assert len(same_class) >= 9 * 9


def test_the_score_is_the_same_either_way_round(templates):
    a, b, c = templates[0][0], templates[0][1], templates[3][2]
    assert match_score(a, b) == match_score(b, a)
    assert match_score(a, c) == match_score(c, a)


def test_find_repeat_names_the_finger_given_again(templates):
    captured = {f"finger_{k}": templates[k][0] for k in range(9)}
    assert find_repeat(templates[4][1], captured) == "finger_4"
    assert find_repeat(templates[7][2], captured) == "finger_7"


def test_find_repeat_is_none_for_a_new_finger_or_a_first_one(templates):
    captured = {k: templates[k][0] for k in range(9)}
    assert find_repeat(templates[9][1], captured) is None
    assert find_repeat(templates[9][1], {}) is None


def test_find_repeat_prefers_the_best_match(templates):
    # Two captured prints above the threshold (the same finger twice): the closer wins.
    captured = {"first": templates[5][0], "again": templates[5][1], "other": templates[2][0]}
    scores = {key: match_score(templates[5][2], t) for key, t in captured.items()}
    assert sorted(scores.values())[1] >= SAME_FINGER_THRESHOLD, scores
    assert find_repeat(templates[5][2], captured) == max(scores, key=scores.get)
    assert find_repeat(templates[5][2], {"other": templates[2][0]}) is None


def test_the_shipped_samples_are_four_fingers_each_like_itself_moved():
    images = [
        cv2.imread(str(SAMPLES / f"good_{k}.png"), cv2.IMREAD_GRAYSCALE) for k in (1, 2, 3, 4)
    ]
    sample = [make_template(image) for image in images]
    for a, b in itertools.combinations(sample, 2):
        assert match_score(a, b) < SAME_FINGER_THRESHOLD
    moved = cv2.getRotationMatrix2D((128, 144), 12, 1.0)
    moved[:, 2] += (14, -18)
    for image, template in zip(images, sample, strict=True):
        again = cv2.warpAffine(image, moved, (WIDTH, HEIGHT), borderValue=int(GLASS))
        assert match_score(template, make_template(again)) >= SAME_FINGER_THRESHOLD


def test_empty_glass_gives_no_minutiae_and_matches_nothing(templates):
    rng = np.random.default_rng(3)
    glass = np.clip(rng.normal(GLASS, 6, (HEIGHT, WIDTH)), 0, 255).astype(np.uint8)
    empty = make_template(glass)
    assert len(empty) == 0
    assert match_score(empty, templates[0][0]) == 0.0
    assert find_repeat(empty, {0: templates[0][0], 1: empty}) is None


@pytest.mark.parametrize(
    ("image", "says"),
    [
        ([[0] * 256] * 288, "numpy array"),
        (np.zeros((288, 256, 3), np.uint8), "2-D"),
        (np.zeros((288, 256), np.float32), "uint8"),
        (np.zeros((40, 256), np.uint8), "at least 64"),
    ],
)
def test_what_is_not_a_fingerprint_image_is_a_value_error(image, says):
    with pytest.raises(ValueError, match=says):
        make_template(image)


def test_what_is_not_a_template_is_a_value_error(templates):
    with pytest.raises(ValueError, match="PrintTemplate"):
        match_score(templates[0][0], np.zeros((288, 256), np.uint8))
    with pytest.raises(ValueError, match="PrintTemplate"):
        find_repeat(templates[0][0], {"right_thumb": "not a template"})
    with pytest.raises(ValueError, match="PrintTemplate"):
        find_repeat(np.zeros((288, 256), np.uint8), {})
