"""The face check on real photographs and on variants made from them: each bad
variant fails for the right measure, the good portrait passes; the portrait cut,
the background colour and the models it loads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from face_variants import (
    PHOTOS,
    SAMPLE,
    SIDE_EFFECTS,
    STILL_SCALE,
    VARIANTS,
    eye_points,
    read_rgb,
    rotated,
    two_people,
)

from kiosk.cli import main as kiosk_main
from kiosk.quality import landmarks
from kiosk.quality.face import (
    THRESHOLDS,
    FaceProblem,
    assess_face,
    background_colour_for,
)
from kiosk.quality.landmarks import FaceLandmarker, ModelError
from kiosk.quality.portrait import (
    PORTRAIT_EYE_DISTANCE,
    PORTRAIT_EYE_Y,
    PORTRAIT_SIZE,
    replace_background,
)

ROOT = Path(__file__).resolve().parent.parent


def _failing(quality) -> set[str]:
    return {name for name, measure in quality.measures.items() if not measure.passed}


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    """The simulated citizen as the kiosk's preview sees her: a good frame."""
    return read_rgb(SAMPLE)


@pytest.fixture(scope="module")
def good(portrait):
    return assess_face(portrait, still_scale=STILL_SCALE)


# --- the good portrait --------------------------------------------------------------


def test_the_simulated_portrait_passes_every_measure(good):
    assert good.ok, _failing(good)
    assert good.problem is None
    assert good.faces == 1
    assert set(good.measures) == set(THRESHOLDS) - {"BackgroundColour"}
    assert good.score == 1.0


def test_measures_carry_their_documented_thresholds(good):
    doc = (ROOT / "docs" / "face-quality.md").read_text()
    for name, measure in good.measures.items():
        assert (measure.minimum, measure.maximum) == THRESHOLDS[name]
        assert f"`{name}`" in doc, f"{name} is not in the documented table"


# --- variants: each fails for the right measure ----------------------------------------


@pytest.mark.parametrize("name", VARIANTS)
def test_each_variant_fails_for_the_right_measure(name, portrait, good):
    make, expected, problem = VARIANTS[name]
    quality = assess_face(make(portrait, good), still_scale=STILL_SCALE)
    failing = _failing(quality)
    assert not quality.ok
    if name == "nobody" or name == "two people":
        assert failing == set(THRESHOLDS) - {"BackgroundColour"}  # nothing else is measurable
    else:
        assert expected <= failing <= expected | SIDE_EFFECTS.get(name, set()), name
    assert quality.problem is problem


def test_two_people_are_counted(portrait, good):
    assert assess_face(two_people(portrait)).faces == 2


# --- real photographs, unretouched ------------------------------------------------------


def test_real_photo_smiling_with_teeth_fails_for_the_mouth_only():
    """The astronaut's official portrait: a good photo but for her open smile."""
    quality = assess_face(read_rgb(PHOTOS / "astronaut.png"), still_scale=STILL_SCALE)
    assert _failing(quality) == {"MouthClosed"}
    assert quality.problem is FaceProblem.MOUTH


def test_real_photo_with_glasses_and_a_flag_behind_fails_for_both():
    quality = assess_face(read_rgb(PHOTOS / "grace_hopper.jpg"), still_scale=STILL_SCALE)
    failing = _failing(quality)
    assert {"NoGlasses", "BackgroundUniformity"} <= failing
    assert not failing & {"SingleFacePresent", "MouthClosed", "EyesOpen", "Sharpness"}
    assert quality.problem is FaceProblem.GLASSES


def test_real_photo_of_a_head_turned_aside_fails_head_pose():
    gray = cv2.imread(str(PHOTOS / "cameraman.png"), cv2.IMREAD_GRAYSCALE)
    quality = assess_face(cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB))
    if quality.faces == 1:
        assert not quality.measures["HeadPoseYaw"].passed
    else:  # the detector may not see so turned a face at all: no photo either way
        assert quality.problem is FaceProblem.NO_FACE
    assert not quality.ok


def test_the_mirror_image_passes_like_the_portrait(portrait):
    quality = assess_face(np.ascontiguousarray(portrait[:, ::-1]), still_scale=STILL_SCALE)
    assert quality.ok, _failing(quality)


@pytest.mark.parametrize("degrees", [-10, -6, 6, 10])
def test_head_roll_follows_the_head_within_two_degrees(portrait, good, degrees):
    level = good.measures["HeadPoseRoll"].value
    tilted = assess_face(rotated(portrait, degrees), still_scale=STILL_SCALE)
    # the image turns anticlockwise for positive degrees: the head rolls the other way
    assert abs(tilted.measures["HeadPoseRoll"].value - level + degrees) < 2


# --- the portrait and its background ---------------------------------------------------


def test_the_portrait_cut_puts_the_eyes_where_token_geometry_wants_them(portrait, good):
    right, left, _ = eye_points(good)
    cut = good.cut
    ends = cut.to_portrait(np.array([right, left]))
    assert np.allclose(ends[:, 1], PORTRAIT_EYE_Y, atol=0.5)
    assert np.isclose(np.linalg.norm(ends[1] - ends[0]), PORTRAIT_EYE_DISTANCE, atol=0.5)
    assert np.isclose(ends.mean(0)[0], PORTRAIT_SIZE[0] / 2, atol=0.5)
    assert cut.apply(portrait).shape == (PORTRAIT_SIZE[1], PORTRAIT_SIZE[0], 3)
    still = cv2.resize(portrait, None, fx=STILL_SCALE, fy=STILL_SCALE)
    from_still = cut.for_frame(still.shape[1], still.shape[0]).apply(still)
    assert np.abs(from_still.astype(int) - cut.apply(portrait)).mean() < 6
    with pytest.raises(ValueError, match="for_frame"):
        cut.apply(still)


@pytest.mark.parametrize("birth_year", [1987, 1990])
def test_the_background_gets_the_colour_of_the_birth_year(portrait, good, birth_year):
    colour = background_colour_for(birth_year)
    assert colour == ("red" if birth_year % 2 else "blue")
    cut_face = good.cut.apply(portrait)
    points = good.cut.to_portrait(good.landmarks)
    final = replace_background(cut_face, points, colour)
    right = assess_face(final, background=colour)
    assert right.ok, _failing(right)
    wrong = assess_face(final, background="blue" if colour == "red" else "red")
    assert _failing(wrong) == {"BackgroundColour"}
    assert wrong.problem is FaceProblem.BACKGROUND
    # the person is kept: the face is the same pixels as before
    x, y, w, h = right.face_box
    centre = (slice(y + h // 3, y + 2 * h // 3), slice(x + w // 3, x + 2 * w // 3))
    assert np.array_equal(final[centre], cut_face[centre])


def test_the_plain_wall_fails_the_colour_rule(good, portrait):
    quality = assess_face(portrait, still_scale=STILL_SCALE, background="red")
    assert _failing(quality) == {"BackgroundColour"}
    assert quality.measures["BackgroundColour"].value == 180.0  # grey: no colour at all


def test_unknown_background_colours_and_scales_are_refused(portrait):
    with pytest.raises(ValueError, match="red, blue"):
        assess_face(portrait, background="green")
    with pytest.raises(ValueError, match="still_scale"):
        assess_face(portrait, still_scale=0)


# --- the models ---------------------------------------------------------------------------


def test_the_shipped_models_are_the_published_ones_and_a_damaged_one_is_refused(
    tmp_path, monkeypatch
):
    for name in landmarks.MODEL_SHA256:
        shutil.copy(landmarks.MODELS / name, tmp_path / name)
    assert (landmarks.MODELS / "NOTICE.md").read_text().count("Apache") >= 1
    monkeypatch.setattr(landmarks, "MODELS", tmp_path)
    FaceLandmarker()  # the copies load
    damaged = tmp_path / "face_landmark.tflite"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="damaged"):
        FaceLandmarker()
    damaged.unlink()
    with pytest.raises(ModelError, match="cannot be read"):
        FaceLandmarker()


# --- kiosk quality face -------------------------------------------------------------------


def test_kiosk_quality_face_json_reports_every_measure(capsys):
    code = kiosk_main(["quality", "face", str(PHOTOS / "grace_hopper.jpg"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1  # a failing photo
    assert report["verdict"] == "fail"
    assert report["faces"] == 1
    assert report["measures"]["NoGlasses"]["pass"] is False
    assert set(report["measures"]["HeadPoseYaw"]) == {"value", "threshold", "pass"}
    assert report["measures"]["HeadPoseYaw"]["threshold"] == "-5..5"


def test_kiosk_quality_face_text_and_background_from_the_nik(tmp_path, capsys, portrait):
    path = tmp_path / "still.png"
    still = cv2.resize(portrait, None, fx=STILL_SCALE, fy=STILL_SCALE)
    cv2.imwrite(str(path), cv2.cvtColor(still, cv2.COLOR_RGB2BGR))
    assert kiosk_main(["quality", "face", str(path)]) == 0
    out = capsys.readouterr().out
    assert "verdict: pass" in out and "HeadPoseRoll" in out
    # born 1990 (even): blue wanted, the wall is grey
    assert kiosk_main(["quality", "face", str(path), "--nik", "3201011505900001"]) == 1
    assert "BackgroundColour" in capsys.readouterr().out


def test_kiosk_quality_face_refuses_what_is_not_an_image(tmp_path, capsys):
    path = tmp_path / "notes.png"
    path.write_text("not a picture")
    assert kiosk_main(["quality", "face", str(path)]) == 2
    assert "not an image" in capsys.readouterr().err
