"""Signature checks on realistic strokes, normalisation to the standard image, and rendering."""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pytest

from kiosk.drivers.signature.fake import scripted_signature
from kiosk.quality.measures import report_json
from kiosk.quality.signature import (
    MIN_DIRECTION_CHANGES,
    SignatureProblem,
    assess_signature,
    normalise_signature,
    render_signature,
)

ASPECT = 3.0  # the kiosk's drawing box
BOX_PX = 900  # the drawing box's width on screen, in px: touch points land on whole pixels


def _pen(xs, ys, start: float = 0.0, *, seed: int = 0, tremble: float = 0.0015) -> list[tuple]:
    """Points as a finger gives them: a little tremble, whole pixels, times from a steady hand."""
    rng = np.random.default_rng(seed)
    xs = np.asarray(xs, float) + rng.normal(0.0, tremble, len(xs))
    ys = np.asarray(ys, float) + rng.normal(0.0, tremble * ASPECT, len(ys))
    xs = np.clip(np.rint(xs * BOX_PX) / BOX_PX, 0.0, 1.0)
    ys = np.clip(np.rint(ys * BOX_PX / ASPECT) / (BOX_PX / ASPECT), 0.0, 1.0)
    steps = np.hypot(np.diff(xs), np.diff(ys) / ASPECT)
    times = start + np.concatenate([[0.0], np.cumsum(steps)]) / 1.2
    return [(float(x), float(y), round(float(t), 3)) for x, y, t in zip(xs, ys, times, strict=True)]


def _line(x0: float, y0: float, x1: float, y1: float, n: int = 20) -> list[tuple]:
    return [(x0 + (x1 - x0) * i / n, y0 + (y1 - y0) * i / n, i * 0.01) for i in range(n + 1)]


def _polyline(corners: list[tuple[float, float]], n: int = 30, **pen) -> list[tuple]:
    xs, ys = [], []
    for (x0, y0), (x1, y1) in pairwise(corners):
        share = np.linspace(0.0, 1.0, n, endpoint=False)
        xs.extend(x0 + (x1 - x0) * share)
        ys.extend(y0 + (y1 - y0) * share)
    xs.append(corners[-1][0])
    ys.append(corners[-1][1])
    return _pen(xs, ys, **pen)


def _multi_stroke_signature() -> list[list[tuple]]:
    """A "Budi" in five strokes: a B's stem and bowls, "udi" joined up, the i's dot
    and an underline flourish."""
    stem = _pen(np.full(40, 0.12), np.linspace(0.22, 0.78, 40), 0.0, seed=1)
    half = np.linspace(-np.pi / 2, np.pi / 2, 40)
    bowls_x = np.concatenate([0.12 + 0.07 * np.cos(half), 0.12 + 0.09 * np.cos(half)])
    bowls_y = np.concatenate([0.36 + 0.14 * np.sin(half), 0.64 + 0.14 * np.sin(half)])
    bowls = _pen(bowls_x, bowls_y, stem[-1][2] + 0.3, seed=2)
    phase = np.linspace(0.0, 6.0 * np.pi, 160)  # u, d, i: three loops joined up
    udi_x = 0.26 + 0.40 * phase / phase[-1] - 0.03 * np.sin(phase)
    udi_y = 0.58 - 0.16 * np.cos(phase) * (1.0 + 0.8 * (np.abs(phase - 3.5 * np.pi) < 1.0))
    udi = _pen(udi_x, np.clip(udi_y, 0.0, 1.0), bowls[-1][2] + 0.25, seed=3)
    dot = [(0.64, 0.22, round(udi[-1][2] + 0.3, 3))]
    sweep = np.linspace(0.0, 1.0, 60)
    flourish = _pen(0.08 + 0.75 * sweep, 0.86 - 0.1 * sweep**3, dot[0][2] + 0.3, seed=4)
    return [stem, bowls, udi, dot, flourish]


def _one_stroke_cursive() -> list[list[tuple]]:
    """A looping cursive name in one unbroken stroke, as many people sign."""
    (name, *_) = scripted_signature(ASPECT)
    return [list(name)]


def _circle(cx: float, cy: float, r: float, turns: float = 1.0, n: int = 90) -> list[tuple]:
    angle = np.linspace(0.0, 2.0 * np.pi * turns, n)
    return _pen(cx + r * np.sin(angle), cy - r * ASPECT * np.cos(angle), seed=7)


# --- what passes --------------------------------------------------------------------


GOOD = {
    "multi_stroke": _multi_stroke_signature(),
    "one_stroke_cursive": _one_stroke_cursive(),
    "simulated_pad": [list(s) for s in scripted_signature(ASPECT)],
    "a_letter_O": [_circle(0.5, 0.5, 0.12)],
    # 12 times wider than high: flat, but no line
    "flat_cursive": [
        _pen(
            np.linspace(0.15, 0.85, 200) - 0.01 * np.sin(np.linspace(0, 24 * np.pi, 200)),
            0.5 - 0.08 * np.cos(np.linspace(0, 24 * np.pi, 200)),
            seed=8,
        )
    ],
    # Decided: a big zigzag passes. Its shape cannot be told from a scrawled
    # signature, and the officer sees every signature at the review.
    "big_zigzag": [_polyline([(0.1 + 0.1 * i, 0.25 + 0.5 * (i % 2)) for i in range(9)])],
}


@pytest.mark.parametrize("strokes", GOOD.values(), ids=GOOD.keys())
def test_real_looking_signatures_pass(strokes):
    quality = assess_signature(strokes, aspect=ASPECT)
    assert quality.ok, quality
    assert quality.problem is None
    assert all(measure.passed for measure in quality.measures.values())
    assert report_json(quality.measures)["verdict"] == "pass"


def test_one_stroke_is_not_too_few_strokes():
    quality = assess_signature(_one_stroke_cursive())
    assert quality.stroke_count == 1
    assert quality.measures["DirectionChanges"].value > 3 * MIN_DIRECTION_CHANGES


def test_multi_stroke_signature_keeps_its_counts():
    quality = assess_signature(_multi_stroke_signature())
    assert quality.stroke_count == 5
    assert quality.ink_length > 1.0
    assert set(quality.measures) == {
        "Extent",
        "InkLength",
        "BoxSize",
        "AxisRatio",
        "DirectionChanges",
    }


# --- what fails, and why ------------------------------------------------------------


BAD = {
    "tap": ([[(0.5, 0.5, 0.0)]], SignatureProblem.DOT),
    "landed_finger": (
        [[(0.50, 0.50, 0.0), (0.503, 0.51, 0.02), (0.505, 0.50, 0.04), (0.502, 0.49, 0.05)]],
        SignatureProblem.DOT,
    ),
    "a_few_taps": (
        [[(0.400, 0.50, 0.0)], [(0.405, 0.51, 0.4)], [(0.408, 0.49, 0.8)]],
        SignatureProblem.DOT,
    ),
    "tick": ([_line(0.5, 0.5, 0.55, 0.45)], SignatureProblem.TOO_SHORT),
    "short_dash": ([_polyline([(0.45, 0.5), (0.65, 0.5)])], SignatureProblem.TOO_SHORT),
    "scribble_in_a_corner": (
        [[(0.05 + 0.1 * (i % 2), 0.05 + 0.002 * i, i * 0.01) for i in range(60)]],
        SignatureProblem.TOO_SMALL,
    ),
    # Decided: a tiny signature with under MIN_INK_LENGTH of ink is told to sign
    # in full (too_short) rather than bigger; one with more ink, bigger.
    "tiny_cursive": (
        [[(0.45 + 0.1 * x, 0.45 + 0.1 * y, t) for x, y, t in _one_stroke_cursive()[0]]],
        SignatureProblem.TOO_SHORT,
    ),
    "tiny_scrawl": (
        [_polyline([(0.42 + 0.012 * i, 0.45 + 0.1 * (i % 2)) for i in range(12)], n=8)],
        SignatureProblem.TOO_SMALL,
    ),
    "straight_line": ([_polyline([(0.1, 0.55), (0.9, 0.5)])], SignatureProblem.STRAIGHT_LINE),
    "bowed_diagonal": (
        [
            _pen(
                np.linspace(0.1, 0.9, 80),
                np.linspace(0.8, 0.2, 80) + 0.05 * np.sin(np.linspace(0, np.pi, 80)),
                seed=5,
            )
        ],
        SignatureProblem.STRAIGHT_LINE,
    ),
    "dashed_line": (
        [
            _polyline([(0.1, 0.5), (0.3, 0.5)], seed=1),
            _polyline([(0.38, 0.5), (0.6, 0.51)], seed=2),
            _polyline([(0.68, 0.51), (0.9, 0.51)], seed=3),
        ],
        SignatureProblem.STRAIGHT_LINE,
    ),
    "check_mark": ([_polyline([(0.3, 0.5), (0.4, 0.8), (0.7, 0.15)])], SignatureProblem.TOO_SIMPLE),
    "a_V": ([_polyline([(0.3, 0.2), (0.45, 0.8), (0.6, 0.2)])], SignatureProblem.TOO_SIMPLE),
    "an_X": (
        [_polyline([(0.3, 0.2), (0.6, 0.8)], seed=1), _polyline([(0.3, 0.8), (0.6, 0.2)], seed=2)],
        SignatureProblem.TOO_SIMPLE,
    ),
    "an_L": ([_polyline([(0.3, 0.15), (0.3, 0.85), (0.7, 0.85)])], SignatureProblem.TOO_SIMPLE),
    "line_and_a_dot": (
        [_polyline([(0.1, 0.6), (0.8, 0.6)]), [(0.85, 0.3, 2.0)]],
        SignatureProblem.TOO_SIMPLE,
    ),
}


@pytest.mark.parametrize(("strokes", "problem"), BAD.values(), ids=BAD.keys())
def test_marks_that_are_no_signature_fail_for_the_right_reason(strokes, problem):
    quality = assess_signature(strokes, aspect=ASPECT)
    assert quality.problem is problem, quality
    assert not quality.ok
    assert report_json(quality.measures)["verdict"] == "fail"
    failing = [name for name, measure in quality.measures.items() if not measure.passed]
    assert failing  # the problem is the first failing measure's
    names = {
        "Extent": SignatureProblem.DOT,
        "InkLength": SignatureProblem.TOO_SHORT,
        "BoxSize": SignatureProblem.TOO_SMALL,
        "AxisRatio": SignatureProblem.STRAIGHT_LINE,
        "DirectionChanges": SignatureProblem.TOO_SIMPLE,
    }
    assert names[failing[0]] is problem


def test_tremble_along_a_line_is_not_a_direction_change():
    # about 2 px of jitter on every point of a 900 px wide box, 300 points
    shaky = _pen(np.linspace(0.1, 0.9, 300), np.full(300, 0.5), tremble=0.0022, seed=9)
    quality = assess_signature([shaky])
    assert quality.measures["DirectionChanges"].value == 0
    assert quality.problem is SignatureProblem.STRAIGHT_LINE


def test_nothing_drawn_is_empty():
    assert assess_signature([]).problem is SignatureProblem.EMPTY
    quality = assess_signature([[], []])
    assert quality.problem is SignatureProblem.EMPTY
    assert quality.stroke_count == 0
    assert quality.measures and not any(m.passed for m in quality.measures.values())


def test_ink_length_is_counted_in_pad_widths():
    across = assess_signature([_line(0.0, 0.5, 1.0, 0.5)], aspect=3.0)
    down = assess_signature([_line(0.5, 0.0, 0.5, 1.0)], aspect=3.0)
    assert across.ink_length == pytest.approx(1.0, abs=1e-3)
    assert down.ink_length == pytest.approx(1 / 3, abs=1e-3)
    assert across.problem is SignatureProblem.STRAIGHT_LINE
    assert down.problem is SignatureProblem.TOO_SHORT
    assert (across.box_width, down.box_height) == (pytest.approx(1.0), pytest.approx(1.0))


# --- normalisation to the standard image --------------------------------------------


def _ink_box(strokes, aspect: float) -> tuple[float, float, float, float]:
    """x0, y0, x1, y1 of the points, in widths of the drawing (y scaled by 1 / aspect)."""
    points = np.array([p for s in strokes for p in s])
    xs, ys = points[:, 0], points[:, 1] / aspect
    return xs.min(), ys.min(), xs.max(), ys.max()


@pytest.mark.parametrize("name", ["multi_stroke", "one_stroke_cursive", "a_letter_O"])
@pytest.mark.parametrize("target", [3.0, 2.0, 1.0])
def test_normalise_fills_the_image_within_its_margin_keeping_proportions(name, target):
    strokes = GOOD[name]
    fitted = normalise_signature(strokes, ASPECT, target_aspect=target, margin=0.05)
    x0, y0, x1, y1 = _ink_box(fitted, target)
    # centred, and touching the margin on the side that limits the scale
    assert (x0 + x1) / 2 == pytest.approx(0.5)
    assert (y0 + y1) / 2 == pytest.approx(0.5 / target)
    assert x1 - x0 == pytest.approx(0.9) or (y1 - y0) * target == pytest.approx(0.9)
    assert x1 - x0 <= 0.9 + 1e-9 and (y1 - y0) * target <= 0.9 + 1e-9
    # the handwriting's own width / height is kept
    ox0, oy0, ox1, oy1 = _ink_box(strokes, ASPECT)
    assert (x1 - x0) / (y1 - y0) == pytest.approx((ox1 - ox0) / (oy1 - oy0), rel=1e-6)


def test_normalise_keeps_every_point_and_its_time():
    strokes = _multi_stroke_signature()
    fitted = normalise_signature(strokes, ASPECT, target_aspect=900 / 300)
    assert [len(s) for s in fitted] == [len(s) for s in strokes]
    assert [[p[2] for p in s] for s in fitted] == [[p[2] for p in s] for s in strokes]
    assert all(0.0 <= v <= 1.0 for s in fitted for p in s for v in p[:2])
    # the normalised strokes are still a signature, judged on their own image's aspect
    assert assess_signature(fitted, aspect=3.0).ok


def test_normalise_drops_empty_strokes_and_centres_a_tap():
    assert normalise_signature([]) == ()
    assert normalise_signature([[], [(0.1, 0.2, 0.5)], []]) == (((0.5, 0.5, 0.5),),)


def test_normalise_scales_a_straight_line_to_the_width():
    (line,) = normalise_signature([_line(0.4, 0.5, 0.6, 0.5)], ASPECT, 3.0, margin=0.1)
    assert line[0][:2] == pytest.approx((0.1, 0.5))
    assert line[-1][:2] == pytest.approx((0.9, 0.5))


def test_rendered_normalised_signature_fills_the_standard_image():
    small = [[(0.3 + 0.3 * x, 0.3 + 0.3 * y, t) for x, y, t in s] for s in GOOD["simulated_pad"]]
    raw = render_signature(small, 900, 300)
    fitted = render_signature(normalise_signature(small, ASPECT, 3.0), 900, 300)
    ink_cols = np.nonzero(fitted < 128)[1]
    assert ink_cols.min() < 900 * 0.08 and ink_cols.max() > 900 * 0.92
    assert (raw < 128).sum() < (fitted < 128).sum()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"aspect": 0.0},
        {"aspect": float("nan")},
        {"target_aspect": 100.0},
        {"margin": -0.1},
        {"margin": 0.5},
        {"margin": float("nan")},
        {"margin": "0.1"},
    ],
)
def test_normalise_refuses_a_bad_aspect_or_margin(kwargs):
    with pytest.raises(ValueError, match=r"aspect|margin"):
        normalise_signature(GOOD["multi_stroke"], **kwargs)


# --- rendering ----------------------------------------------------------------------


def test_render_draws_black_ink_on_white_where_the_strokes_are():
    image = render_signature([_line(0.1, 0.5, 0.9, 0.5)], 300, 100)
    assert image.shape == (100, 300)
    assert image.dtype == np.uint8
    assert image[5, 5] == 255
    assert image[50, 150] < 50  # on the line
    assert image[20, 150] == 255  # well above it
    ink_rows = np.where((image < 128).any(axis=1))[0]
    assert 3 <= len(ink_rows) <= 7  # cv2 thickness 3; anti-aliasing adds a pixel each side
    thin = render_signature([_line(0.1, 0.5, 0.9, 0.5)], 300, 100, thickness=1)
    assert (thin < 128).sum() < (image < 128).sum() / 2


def test_render_of_nothing_is_blank_and_a_tap_is_a_dot():
    assert (render_signature([], 90, 30) == 255).all()
    dot = render_signature([[(0.5, 0.5, 0.0)]], 90, 30)
    assert dot[15, 45] < 50
    assert (dot < 128).sum() < 60


def test_render_rejects_an_empty_image_size():
    with pytest.raises(ValueError, match="positive"):
        render_signature([], 0, 100)


# --- what the checks cannot judge ---------------------------------------------------
# Odd data must stop with a ValueError that says what is wrong: never a cv2.error,
# an AttributeError, a huge allocation or a NaN verdict that reads as "ok".

# A good stroke, then the same stroke with one value spoiled.
GOOD_STROKE = [(0.1, 0.5, 0.0), (0.5, 0.2, 0.2), (0.9, 0.6, 0.4)]
BAD_VALUES = [float("nan"), float("inf"), -float("inf"), 1e300, -1e300, -0.01, 1.01]


def _spoiled(point: int, axis: int, value) -> list[list[tuple]]:
    stroke = [list(p) for p in GOOD_STROKE]
    stroke[point][axis] = value
    return [GOOD_STROKE, [tuple(p) for p in stroke]]


NOT_STROKES = {
    **{f"x={v}": _spoiled(1, 0, v) for v in BAD_VALUES},
    **{f"y={v}": _spoiled(2, 1, v) for v in BAD_VALUES},
    **{f"t={v}": _spoiled(1, 2, v) for v in BAD_VALUES[:3]},
    "t_runs_back": [[(0.1, 0.5, 0.3), (0.9, 0.5, 0.2)]],
    "none": None,
    "a_number": 3.0,
    "none_stroke": [None],
    "none_point": [[None, (0.5, 0.5, 0.1)]],
    "x_y_only": [[(0.1, 0.5), (0.9, 0.5)]],
    "four_values": [[(0.1, 0.5, 0.0, 1.0), (0.9, 0.5, 0.1, 1.0)]],
    "ragged": [[(0.1, 0.5, 0.0), (0.9, 0.5)]],
    "text": [[("a", "b", "c")]],
    "a_string": "0.1,0.5,0.0",
    "complex": [[(0.1j, 0.5, 0.0)]],
}


@pytest.mark.parametrize("strokes", NOT_STROKES.values(), ids=NOT_STROKES.keys())
def test_signature_checks_refuse_strokes_they_cannot_judge(strokes):
    with pytest.raises(ValueError, match="stroke"):
        assess_signature(strokes)
    with pytest.raises(ValueError, match="stroke"):
        render_signature(strokes, 90, 30)
    with pytest.raises(ValueError, match="stroke"):
        normalise_signature(strokes)


@pytest.mark.parametrize(
    "aspect", [float("nan"), float("inf"), 0.0, -3.0, 1e-300, 1e300, None, "3"]
)
def test_assess_signature_refuses_an_aspect_it_cannot_use(aspect):
    with pytest.raises(ValueError, match="aspect"):
        assess_signature([GOOD_STROKE], aspect=aspect)


@pytest.mark.parametrize(
    ("width", "height", "thickness"),
    [
        (0, 30, 3),
        (90, -1, 3),
        (90.5, 30, 3),
        (None, 30, 3),
        (100_000, 30, 3),
        (90, 30, 0),
        (90, 30, -1),
        (90, 30, 31),
        (90, 30, 2.5),
    ],
)
def test_render_refuses_an_image_size_or_pen_it_cannot_draw(width, height, thickness):
    with pytest.raises(ValueError):
        render_signature([GOOD_STROKE], width, height, thickness)


def test_random_strokes_give_a_finite_verdict_or_a_value_error():
    """Property: a signature is judged with finite measures, or refused; never NaN."""
    rng = np.random.default_rng(20)
    odd = [float("nan"), float("inf"), -float("inf"), 1e300, -1e-300, -0.5, 1.5, 0.0, 1.0]
    for _ in range(300):
        strokes = []
        for _ in range(int(rng.integers(0, 4))):
            n = int(rng.integers(0, 6))
            points = np.column_stack([rng.random(n), rng.random(n), np.sort(rng.random(n))])
            if n and rng.random() < 0.5:
                points[rng.integers(n), rng.integers(3)] = rng.choice(odd)
            if n > 1 and rng.random() < 0.2:
                points[:, 2] = points[::-1, 2]  # time runs back
            strokes.append([tuple(p) for p in points])
        xy = [p[:2] for s in strokes for p in s]
        times_ok = all(
            all(np.isfinite(p[2]) for p in s) and all(a[2] <= b[2] for a, b in pairwise(s))
            for s in strokes
        )
        valid = times_ok and all(np.isfinite(v) and 0.0 <= v <= 1.0 for p in xy for v in p)
        if not valid:
            with pytest.raises(ValueError):
                assess_signature(strokes)
            with pytest.raises(ValueError):
                render_signature(strokes, 90, 30)
            continue
        quality = assess_signature(strokes)
        measures = [quality.ink_length, quality.box_width, quality.box_height]
        values = [m.value for m in quality.measures.values() if m.value is not None]
        assert all(math.isfinite(v) for v in [*measures, *values]), quality
        assert quality.ok == all(m.passed for m in quality.measures.values())
        assert render_signature(strokes, 90, 30).shape == (30, 90)
        fitted = normalise_signature(strokes)
        assert all(0.0 <= v <= 1.0 for s in fitted for p in s for v in p[:2])
