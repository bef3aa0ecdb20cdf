"""The flow with the quality checks: live face guidance, the photo taken by itself,
the portrait and its yes, a finger given twice, the signature fitted to its image."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from support import VALID_NIK

from kiosk.config import SessionConfig
from kiosk.drivers.base import Signal
from kiosk.errors import FlowError
from kiosk.flow.fingers import FINGER_ORDER, Finger, FingerException
from kiosk.flow.machine import REPEATED_FINGER, SIGNATURE_IMAGE_SIZE, OperatorReason, Step
from kiosk.flow.nik import check_nik
from kiosk.operator_pin import hash_pin
from kiosk.quality.face import assess_face, background_colour_for
from kiosk.quality.portrait import BACKGROUND_RGB, PORTRAIT_SIZE
from kiosk.staff import Desk

QUICK = SessionConfig(face_try_s=0.6)  # a try's live guidance, kept short for the tests


def to_face(flow) -> None:
    flow.start("id")
    assert flow.submit_nik(VALID_NIK).ok
    flow.accept_consent()
    assert flow.step is Step.FACE


def test_the_photo_is_taken_once_the_preview_is_good_and_waits_for_the_citizens_yes(make_flow):
    flow = make_flow(session=QUICK)
    to_face(flow)
    result = flow.capture_face()
    assert result.accepted
    assert flow.step is Step.FACE  # not on before the citizen says yes
    pending = flow.face_pending
    assert pending is not None and flow.enrollment.face is None
    assert pending.image.shape == (PORTRAIT_SIZE[1], PORTRAIT_SIZE[0], 3)
    assert result.preview is pending.image
    assert flow.capture_face().stale  # nothing more is taken while the photo is shown
    flow.accept_face()
    assert flow.step is Step.FINGERPRINTS
    assert flow.enrollment.face is pending and flow.face_pending is None


def test_the_portrait_background_is_the_colour_of_the_birth_year(make_flow):
    flow = make_flow(session=QUICK)
    to_face(flow)
    assert flow.capture_face().accepted
    portrait = flow.face_pending.image
    year = check_nik(VALID_NIK).nik.birth_date.year
    colour = background_colour_for(year)
    corner = portrait[:40, :40].reshape(-1, 3).mean(axis=0)
    assert np.allclose(corner, BACKGROUND_RGB[colour], atol=3)
    verdict = flow.face_pending.quality
    assert verdict.ok and verdict.measures["BackgroundColour"].passed
    assert assess_face(portrait, background=colour).ok


def test_retake_drops_the_photo_and_takes_another(make_flow):
    flow = make_flow(session=QUICK)
    to_face(flow)
    assert flow.capture_face().accepted
    first = flow.face_pending
    flow.retake_face()
    assert flow.face_pending is None and flow.tries_left == QUICK.face_tries
    assert flow.capture_face().accepted
    assert flow.face_pending is not first
    with pytest.raises(FlowError):
        flow.cancel() or flow.accept_face()  # the session is gone: nothing to accept


def test_accept_without_a_photo_is_refused(make_flow):
    flow = make_flow(session=QUICK)
    to_face(flow)
    with pytest.raises(FlowError, match="no portrait"):
        flow.accept_face()


def test_a_dark_preview_is_guided_live_then_the_photo_judged_when_the_try_is_over(make_flow):
    flow = make_flow(session=QUICK, camera=("dark", "face"))
    to_face(flow)
    seen: list[tuple[str | None, Signal]] = []
    flow.subscribe(lambda f: seen.append((f.problem, f.modules.indicators.current)))
    result = flow.capture_face()  # the preview stays dark for the whole try
    assert not result.accepted and result.problem == "quality.face.too_dark"
    assert ("quality.face.too_dark", Signal.RETRY) in seen  # said before the photo was taken
    assert flow.capture_face().accepted  # now well lit: the photo comes at once


def test_the_guidance_follows_the_citizen_frame_by_frame(make_flow):
    """The guidance changes while one try runs, as the citizen moves."""
    flow = make_flow(session=SessionConfig(face_try_s=10), camera=("dark", "face"))
    to_face(flow)
    camera = flow.modules.camera
    guidance: list[str | None] = []
    flow.subscribe(lambda f: guidance.append(f.problem))
    result: list = []
    capturing = threading.Thread(target=lambda: result.append(flow.capture_face()))
    capturing.start()
    while "quality.face.too_dark" not in guidance and capturing.is_alive():
        capturing.join(0.02)
    camera._script.entries = ("face",)  # the light comes on in the middle of the try
    capturing.join(5)
    assert not capturing.is_alive()
    assert result[0].accepted  # taken by itself well before the 10 s try was over
    assert guidance[0] == "quality.face.too_dark" and guidance[-1] is None


def test_the_same_finger_given_twice_is_refused_and_the_right_one_taken(make_flow):
    # the citizen gives the right thumb again where the index is asked, then the index
    flow = make_flow(session=QUICK, fingerprint=("good_1", "good_1", "good_2", "good"))
    to_face(flow)
    assert flow.capture_face().accepted
    flow.accept_face()
    assert flow.capture_finger().accepted
    again = flow.capture_finger()
    assert not again.accepted and again.problem == REPEATED_FINGER
    assert flow.current_finger is Finger.RIGHT_INDEX and again.tries_left == 2
    assert flow.modules.indicators.current is Signal.RETRY
    assert flow.capture_finger().accepted
    assert flow.current_finger is Finger.RIGHT_MIDDLE
    record = flow.enrollment.fingers[Finger.RIGHT_INDEX]
    assert record.attempts == 2 and record.template is not None


def test_a_finger_repeated_every_try_goes_to_the_operator_flagged(make_flow):
    flow = make_flow(session=QUICK, fingerprint=("good_1",))
    to_face(flow)
    assert flow.capture_face().accepted
    flow.accept_face()
    assert flow.capture_finger().accepted
    results = [flow.capture_finger() for _ in range(QUICK.finger_tries)]
    assert all(r.problem == REPEATED_FINGER for r in results)
    record = flow.enrollment.fingers[Finger.RIGHT_INDEX]
    assert record.exception is FingerException.UNUSABLE  # the matcher can be wrong: flagged
    assert flow.current_finger is FINGER_ORDER[2]


def test_the_signature_fills_the_standard_image_wherever_it_was_drawn(make_flow):
    flow = make_flow(session=QUICK)
    to_face(flow)
    assert flow.capture_face().accepted
    flow.accept_face()
    while flow.step is Step.FINGERPRINTS:
        assert flow.capture_finger().accepted
    corner = [
        [(0.05 + 0.25 * x, 0.05 + 0.25 * y, 0.01 * i) for i, (x, y) in enumerate(points)]
        for points in (
            [(0, 0.5), (0.2, 1), (0.4, 0), (0.6, 0.9), (0.8, 0.1), (1, 0.6)],
            [(0.1, 0.8), (0.5, 0.6), (0.9, 0.9)],
        )
    ]  # a signature squeezed into the pad's top-left corner
    for stroke in corner:
        flow.add_signature_stroke(stroke)
    quality = flow.submit_signature()
    assert quality is not None and quality.ok, quality
    image = flow.enrollment.signature.image
    assert image.shape == (SIGNATURE_IMAGE_SIZE[1], SIGNATURE_IMAGE_SIZE[0])
    ink = np.argwhere(image < 128)
    (top, left), (bottom, right) = ink.min(axis=0), ink.max(axis=0)
    # fitted and centred: the ink spans most of the height, not a corner
    assert bottom - top > 0.8 * image.shape[0]
    assert abs((left + right) / 2 - image.shape[1] / 2) < 0.05 * image.shape[1]
    # the strokes kept for the packet are the ones drawn, with their times
    assert flow.enrollment.signature.capture.strokes[0][1][2] == pytest.approx(0.01)


def face_that_never_passes(make_flow, pin_hash):
    """A citizen whose photos all fail (dark), at a station with an officer on duty."""
    flow = make_flow(session=SessionConfig(face_try_s=0.3, face_tries=2), camera=("dark",) * 4)
    flow.desk = Desk({"siti": pin_hash})
    flow.desk.on_duty = "siti"
    to_face(flow)
    with pytest.raises(FlowError):  # tries are left: the citizen tries first
        flow.ask_officer_about_face()
    while flow.tries_left:
        assert not flow.capture_face().accepted
    return flow


@pytest.fixture(scope="module")
def pin_hash() -> str:
    return hash_pin("4821")


def test_when_no_photo_passes_the_officer_may_accept_the_last_one(make_flow, pin_hash):
    flow = face_that_never_passes(make_flow, pin_hash)
    held = flow.face_for_officer
    assert held is not None and held.image.shape == (PORTRAIT_SIZE[1], PORTRAIT_SIZE[0], 3)
    assert not held.quality.ok
    flow.ask_officer_about_face()
    assert flow.step is Step.OPERATOR and flow.operator_reason is OperatorReason.FACE_QUALITY
    with pytest.raises(FlowError):
        flow.operator_approve("siti", "4821", "operator.decision.married")  # not a face reason
    assert flow.operator_approve("siti", "4821", "operator.decision.glasses_needed")
    assert flow.step is Step.FINGERPRINTS and flow.current_finger is FINGER_ORDER[0]
    assert flow.enrollment.face is held and flow.face_for_officer is None
    [approval] = flow.enrollment.operator_approvals
    assert (approval.reason, approval.operator) == ("face_quality", "siti")


def test_the_officer_may_send_the_citizen_back_for_more_photos(make_flow, pin_hash):
    flow = face_that_never_passes(make_flow, pin_hash)
    flow.ask_officer_about_face()
    flow.operator_return()
    assert flow.step is Step.FACE and flow.tries_left == 2
    assert flow.enrollment.face is None and flow.face_for_officer is None
