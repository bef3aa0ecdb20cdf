"""The same finger given twice is caught; different fingers, even of one pattern, are not.

No real prints: each synthetic finger is a ridge pattern grown the SFinGe way on a
canvas larger than the sensor window (so a moved finger brings new ridges into
view), and each impression of it places it differently (shift 10-30 px, turn
5-20 degrees, skin stretched by a few pixels), with its own contact area,
pressure, blur and sensor noise: ``finger_ridges`` and ``impressions`` in
kiosk/drivers/fingerprint/synthetic.py. benchmarks/fingerprint_matching.py
measures the same on more fingers.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from kiosk.drivers.fingerprint.synthetic import (
    GLASS,
    HEIGHT,
    WIDTH,
    finger_ridges,
    finger_spec,
    impressions,
)
from kiosk.quality.matching import (
    SAME_FINGER_THRESHOLD,
    PrintTemplate,
    find_repeat,
    make_template,
    match_score,
)

SAMPLES = Path(__file__).resolve().parent.parent / "kiosk" / "drivers" / "fingerprint" / "samples"
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


@pytest.fixture(scope="module")
def templates() -> list[list[PrintTemplate]]:
    """FINGERS x IMPRESSIONS templates."""
    return [
        [
            make_template(image)
            for image in impressions(finger_ridges(finger_spec("good", s, p)), s, IMPRESSIONS)
        ]
        for p, s in FINGERS
    ]


def test_the_same_finger_placed_differently_scores_above_the_threshold(templates):
    genuine = [
        match_score(row[a], row[b])
        for row in templates
        for a, b in itertools.combinations(range(IMPRESSIONS), 2)
    ]
    caught = sum(score >= SAME_FINGER_THRESHOLD for score in genuine) / len(genuine)
    # Measured: 29 of 30 (97%), the lowest 5.2, the next 9.8; the goal is 90% or better.
    assert caught >= 0.9, sorted(genuine)


def test_different_fingers_even_of_one_pattern_score_below_the_threshold(templates):
    impostor = {
        (i, j, a, b): match_score(templates[i][a], templates[j][b])
        for i, j in itertools.combinations(range(len(FINGERS)), 2)
        for a in range(IMPRESSIONS)
        for b in range(IMPRESSIONS)
    }
    false = {k: s for k, s in impostor.items() if s >= SAME_FINGER_THRESHOLD}
    assert not false, false  # measured: 0 of 405, the highest 2.6
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
