"""Quality checks on the shipped samples and on degraded copies of them; i18n of the advice."""

from __future__ import annotations

import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from face_variants import read_rgb

from kiosk.quality import (
    FaceProblem,
    FingerprintProblem,
    SignatureProblem,
    assess_face,
)

ROOT = Path(__file__).resolve().parent.parent
CAMERA_SAMPLES = ROOT / "kiosk" / "drivers" / "camera" / "samples"
I18N = ROOT / "kiosk" / "i18n"


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    return read_rgb(CAMERA_SAMPLES / "face.png")


# --- samples ----------------------------------------------------------------------


def test_camera_samples_are_small_640x480_rgb_pngs():
    for name in ("face", "no_face"):
        path = CAMERA_SAMPLES / f"{name}.png"
        assert path.stat().st_size < 400_000
        assert read_rgb(path).shape == (480, 640, 3)
    assert (CAMERA_SAMPLES / "SOURCES.md").read_text().count("licence") >= 1


# --- face -------------------------------------------------------------------------


def test_assess_face_rejects_what_is_not_an_rgb_frame(face):
    with pytest.raises(ValueError, match="HxWx3"):
        assess_face(cv2.cvtColor(face, cv2.COLOR_RGB2GRAY))
    with pytest.raises(ValueError, match="HxWx3"):
        assess_face(face.astype(np.float32))


def test_assess_face_from_several_threads_agrees(face):
    expected = assess_face(face)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(assess_face, [face] * 8))
    assert all(result == expected for result in results)


# --- what the checks cannot judge -------------------------------------------------
# Odd data must stop with a ValueError that says what is wrong: never a cv2.error,
# an AttributeError, a huge allocation or a NaN verdict that reads as "ok".


def _huge(shape: tuple[int, ...]) -> np.ndarray:
    """A read-only array of ``shape`` that costs no memory (every pixel is one pixel)."""
    return np.broadcast_to(np.zeros((1,) * len(shape), np.uint8), shape)


NOT_FRAMES = {
    "none": None,
    "list": [[[0, 0, 0]] * 32] * 32,
    "empty": np.zeros((0, 0, 3), np.uint8),
    "zero_width": np.zeros((480, 0, 3), np.uint8),
    "one_pixel": np.zeros((1, 1, 3), np.uint8),
    "too_low": np.zeros((15, 640, 3), np.uint8),
    "too_narrow": np.zeros((480, 15, 3), np.uint8),
    "gray": np.zeros((480, 640), np.uint8),
    "rgba": np.zeros((480, 640, 4), np.uint8),
    "4d": np.zeros((1, 480, 640, 3), np.uint8),
    "float": np.zeros((480, 640, 3), np.float32),
    "float_nan": np.full((480, 640, 3), np.nan),
    "int16": np.zeros((480, 640, 3), np.int16),
    "bool": np.zeros((480, 640, 3), bool),
    "object": np.zeros((32, 32, 3), object),
    "huge": _huge((100_000, 100_000, 3)),
}


@pytest.mark.parametrize("image", NOT_FRAMES.values(), ids=NOT_FRAMES.keys())
def test_assess_face_refuses_what_is_not_a_usable_frame(image):
    with pytest.raises(ValueError, match="frame"):
        assess_face(image)


def test_assess_face_judges_the_smallest_frame_it_accepts():
    quality = assess_face(np.full((16, 16, 3), 128, np.uint8))
    assert quality.problem is not None and not quality.ok


def test_odd_images_of_every_shape_and_type_give_a_verdict_or_a_value_error():
    """Property: whatever array comes in, the checks end in a verdict or a ValueError."""
    rng = np.random.default_rng(16)
    dtypes = [np.uint8, np.uint8, np.int8, np.uint16, np.float32, np.float64, bool]
    sides = [0, 1, 15, 16, 17, 63, 64, 100]
    for _ in range(120):
        ndim = int(rng.integers(1, 5))
        shape = tuple(int(rng.choice(sides)) for _ in range(ndim))
        if ndim == 3 and rng.random() < 0.6:
            shape = (*shape[:2], 3)
        image = rng.integers(0, 256, shape).astype(rng.choice(dtypes))
        for assess in (assess_face,):
            try:
                quality = assess(image)
            except ValueError:
                continue
            assert isinstance(quality.ok, bool) and 0.0 <= quality.score <= 1.0


# --- advice in both languages -----------------------------------------------------


def _flat_keys(path: Path) -> dict[str, str]:
    flat: dict[str, str] = {}

    def walk(prefix: str, table: dict) -> None:
        for key, value in table.items():
            if isinstance(value, dict):
                walk(f"{prefix}.{key}", value)
            else:
                flat[f"{prefix}.{key}"] = value

    with path.open("rb") as file:
        walk(path.stem, tomllib.load(file))
    return flat


def test_quality_advice_has_the_same_keys_in_both_languages():
    bahasa = _flat_keys(I18N / "id" / "quality.toml")
    english = _flat_keys(I18N / "en" / "quality.toml")
    assert bahasa.keys() == english.keys()
    for key in bahasa:
        assert bahasa[key].strip() and english[key].strip()
        assert bahasa[key] != english[key], f"{key} is not translated"


@pytest.mark.parametrize("language", ["id", "en"])
def test_every_problem_has_advice(language):
    strings = _flat_keys(I18N / language / "quality.toml")
    problems = [*FaceProblem, *FingerprintProblem, *SignatureProblem]
    missing = [problem.value for problem in problems if problem.value not in strings]
    assert not missing
    assert len(strings) == len(problems)  # and no advice for a problem that no longer exists
