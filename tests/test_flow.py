"""The enrollment flow, without a window: every path a citizen can take."""

from __future__ import annotations

import threading
import time

import pytest
from support import VALID_NIK, fake_modules, stored_packet

from kiosk.config import SessionConfig
from kiosk.drivers.base import ModuleKind, Signal
from kiosk.drivers.fingerprint.fake import FakeFingerprintReader
from kiosk.drivers.signature.touch import TouchSignaturePad
from kiosk.errors import FlowError, StoreError
from kiosk.flow.fingers import FINGER_ORDER, Finger, FingerException
from kiosk.flow.machine import EnrollmentFlow, Notice, Retake, Step
from kiosk.flow.nik import NikError
from kiosk.packet.seal import MAGIC

SIGNATURE = [(0.1 + i * 0.02, 0.5 + (i % 5) * 0.05, i * 0.01) for i in range(40)]


def to_face(flow: EnrollmentFlow) -> None:
    flow.start("id")
    assert flow.submit_nik(VALID_NIK).ok
    flow.accept_consent()
    assert flow.step is Step.FACE


def to_fingerprints(flow: EnrollmentFlow) -> None:
    to_face(flow)
    assert flow.capture_face().accepted
    flow.accept_face()
    assert flow.step is Step.FINGERPRINTS


def to_signature(flow: EnrollmentFlow) -> None:
    to_fingerprints(flow)
    while flow.step is Step.FINGERPRINTS:
        assert flow.capture_finger().accepted
    assert flow.step is Step.SIGNATURE


def to_review(flow: EnrollmentFlow) -> None:
    to_signature(flow)
    flow.modules.signature.sign()
    assert flow.submit_signature().ok
    assert flow.step is Step.REVIEW


def test_whole_enrollment_is_saved_with_modules_and_consent(make_flow, store):
    flow = make_flow()
    to_review(flow)
    enrollment_id = flow.save()

    assert flow.step is Step.DONE
    assert enrollment_id and enrollment_id.startswith("TEST-01-")
    manifest = stored_packet(store, enrollment_id).manifest
    assert manifest["nik"] == VALID_NIK
    assert manifest["consent"]["language"] == "id"
    assert [f["position"] for f in manifest["fingers"]] == list(range(1, 11))
    assert all(f["image"] and f["exception"] is None for f in manifest["fingers"])
    units = manifest["modules"]
    assert [unit["kind"] for unit in units] == ["camera", "fingerprint", "signature"]
    assert all(unit["simulated"] is True and unit["serial"] for unit in units)
    assert units[manifest["face"]["module"]]["kind"] == "camera"
    files = stored_packet(store, enrollment_id).files
    assert files["face.jpg"][:2] == b"\xff\xd8"  # a JPEG
    assert {f"finger-{n:02d}.wsq" for n in range(1, 11)} <= files.keys()
    assert files["finger-01.wsq"][:2] == b"\xff\xa0"  # WSQ
    assert files["signature.png"][:4] == b"\x89PNG"
    flow.finish()
    assert flow.step is Step.WELCOME and flow.enrollment is None


def test_every_step_duration_is_recorded(make_flow, clock, store):
    flow = make_flow()
    flow.start("en")
    clock.advance(20)
    flow.submit_nik(VALID_NIK)
    clock.advance(30)
    flow.accept_consent()
    clock.advance(5)
    assert flow.capture_face().accepted
    flow.accept_face()
    for _ in FINGER_ORDER:
        clock.advance(4)
        flow.capture_finger()
    clock.advance(12)
    flow.modules.signature.sign()
    flow.submit_signature()
    clock.advance(9)
    manifest = stored_packet(store, flow.save()).manifest
    assert manifest["step_seconds"] == {
        "nik": 20,
        "consent": 30,
        "face": 5,
        "fingerprints": 40,
        "signature": 12,
        "review": 9,
    }


def test_wrong_nik_stays_on_the_nik_step_with_its_error(make_flow):
    flow = make_flow()
    flow.start("id")
    check = flow.submit_nik("3201010000000000")
    assert not check.ok
    assert flow.step is Step.NIK
    assert flow.problem == check.errors[0]
    assert flow.submit_nik("12345").errors == (NikError.TOO_SHORT,)
    assert flow.submit_nik(VALID_NIK).ok
    assert flow.step is Step.CONSENT


def test_declining_consent_records_nothing(make_flow, store):
    flow = make_flow()
    flow.start("id")
    flow.submit_nik(VALID_NIK)
    flow.cancel()
    assert flow.step is Step.WELCOME and flow.enrollment is None
    assert store.count() == 0


def test_dark_photo_gives_guidance_then_the_next_good_one_is_taken(make_flow):
    flow = make_flow(camera=("dark", "face"))
    to_face(flow)
    first = flow.capture_face()
    assert not first.accepted
    assert first.problem == "quality.face.too_dark"
    assert first.tries_left == 2
    assert first.preview is not None
    assert flow.step is Step.FACE
    assert flow.capture_face().accepted
    flow.accept_face()
    assert flow.enrollment.face.attempts == 2
    assert flow.step is Step.FINGERPRINTS


def test_face_tries_run_out_then_try_again_restarts_them(make_flow):
    flow = make_flow(camera=("no_face", "no_face", "no_face", "face"))
    to_face(flow)
    results = [flow.capture_face() for _ in range(3)]
    assert [r.tries_left for r in results] == [2, 1, 0]
    assert {r.problem for r in results} == {"quality.face.no_face"}
    flow.retry_face()
    assert flow.tries_left == 3
    assert flow.capture_face().accepted
    flow.accept_face()


def test_camera_fault_keeps_the_session_and_recovers(make_flow):
    flow = make_flow(camera_fail_on=1)
    to_face(flow)
    enrollment = flow.enrollment
    result = flow.capture_face()
    assert result.fault is ModuleKind.CAMERA
    assert flow.problem == "flow.fault.camera"
    assert flow.modules.indicators.current is Signal.FAULT
    assert flow.enrollment is enrollment and enrollment.nik is not None
    assert flow.capture_face().accepted
    flow.accept_face()
    assert flow.fault is None


def test_poor_prints_are_retried_then_taken(make_flow):
    flow = make_flow(fingerprint=("poor", "poor", "good"))
    to_fingerprints(flow)
    assert flow.capture_finger().tries_left == 2
    second = flow.capture_finger()
    assert (second.accepted, second.tries_left) == (False, 1)
    assert second.problem is not None and second.problem.startswith("quality.finger.")
    assert flow.capture_finger().accepted
    record = flow.enrollment.fingers[Finger.RIGHT_THUMB]
    assert record.attempts == 3 and not record.flagged
    assert flow.current_finger is Finger.RIGHT_INDEX
    assert flow.tries_left == 3


def test_three_poor_prints_flag_the_finger_for_the_operator(make_flow, store):
    flow = make_flow(fingerprint=("poor", "poor", "poor", "good"))
    to_fingerprints(flow)
    results = [flow.capture_finger() for _ in range(3)]
    assert not any(r.accepted for r in results)
    record = flow.enrollment.fingers[Finger.RIGHT_THUMB]
    assert record.exception is FingerException.UNUSABLE and record.flagged
    assert record.capture is not None  # the best we had is kept for the operator
    assert flow.current_finger is Finger.RIGHT_INDEX
    assert flow.modules.indicators.history[-1] is Signal.ATTENTION
    while flow.step is Step.FINGERPRINTS:
        flow.capture_finger()
    flow.modules.signature.sign()
    flow.submit_signature()
    manifest = stored_packet(store, flow.save()).manifest
    assert manifest["exceptions"] == [{"finger": 1, "reason": "unusable"}]


def test_missing_and_injured_fingers_are_recorded_and_flagged(make_flow, store):
    flow = make_flow()
    to_fingerprints(flow)
    flow.mark_finger(FingerException.MISSING)
    flow.capture_finger()
    flow.mark_finger(FingerException.INJURED)
    assert flow.current_finger is Finger.RIGHT_RING
    while flow.step is Step.FINGERPRINTS:
        flow.capture_finger()
    flow.modules.signature.sign()
    flow.submit_signature()
    manifest = stored_packet(store, flow.save()).manifest
    assert manifest["exceptions"] == [
        {"finger": 1, "reason": "missing"},
        {"finger": 3, "reason": "injured"},
    ]
    thumb = manifest["fingers"][0]
    assert thumb["image"] is None and thumb["exception"] == "missing"
    assert "finger-01.wsq" not in stored_packet(store, manifest["enrollment_id"]).files


def test_waiting_for_a_finger_uses_no_try(make_flow):
    flow = make_flow(fingerprint=("no_finger", "no_finger", "no_finger", "no_finger", "good"))
    to_fingerprints(flow)
    for _ in range(4):
        result = flow.capture_finger()
        assert result.problem == "quality.finger.no_finger"
        assert result.tries_left == 3
    assert flow.capture_finger().accepted


def test_unplugged_reader_is_a_fault_and_the_session_survives(make_flow):
    flow = make_flow(fingerprint=("good", "good", "unplugged", "good"))
    to_fingerprints(flow)
    flow.capture_finger()
    flow.capture_finger()
    result = flow.capture_finger()
    assert result.fault is ModuleKind.FINGERPRINT
    assert flow.problem == "flow.fault.fingerprint"
    assert len(flow.enrollment.fingers) == 2
    assert flow.capture_finger().accepted
    assert flow.current_finger is Finger.RIGHT_RING


def test_blank_signature_is_refused_then_drawn_one_accepted(make_flow):
    flow = make_flow(signature=("blank",))
    to_signature(flow)
    flow.modules.signature.sign()  # a signer who draws nothing
    quality = flow.submit_signature()
    assert not quality.ok and quality.problem == "quality.signature.empty"
    assert flow.step is Step.SIGNATURE
    flow.add_signature_stroke(SIGNATURE)
    flow.clear_signature()
    assert not flow.submit_signature().ok  # cleared: nothing left
    flow.add_signature_stroke(SIGNATURE)
    assert flow.submit_signature().ok
    assert flow.enrollment.signature.quality.stroke_count == 1
    assert flow.step is Step.REVIEW


@pytest.mark.parametrize("script", [("drawn",), ("blank",)])
def test_done_on_an_empty_box_is_refused_whatever_the_signer_would_do(make_flow, script):
    flow = make_flow(signature=script)
    to_signature(flow)
    quality = flow.submit_signature()
    assert quality.problem == "quality.signature.empty"
    assert flow.step is Step.SIGNATURE
    assert flow.enrollment.signature is None


@pytest.mark.parametrize("retake", [Retake.FACE, Finger.LEFT_RING, Retake.SIGNATURE])
def test_retake_from_review_returns_to_review_keeping_the_rest(make_flow, retake):
    flow = make_flow(fingerprint=(*["good"] * 10, "good_9"))  # the ring finger again
    to_review(flow)
    before = flow.enrollment
    face, fingers = before.face, dict(before.fingers)
    flow.retake(retake)
    if retake is Retake.FACE:
        assert flow.step is Step.FACE
        assert flow.capture_face().accepted
        flow.accept_face()
        assert flow.enrollment.face is not face
    elif retake is Retake.SIGNATURE:
        assert flow.step is Step.SIGNATURE
        flow.modules.signature.sign()
        assert flow.submit_signature().ok
    else:
        assert (flow.step, flow.current_finger) == (Step.FINGERPRINTS, Finger.LEFT_RING)
        assert flow.capture_finger().accepted
        assert flow.enrollment.fingers[Finger.LEFT_RING] is not fingers[Finger.LEFT_RING]
    assert flow.step is Step.REVIEW
    assert flow.enrollment is before
    assert flow.enrollment.fingers[Finger.RIGHT_THUMB] is fingers[Finger.RIGHT_THUMB]


def test_retaken_finger_can_be_marked_injured_and_returns_to_review(make_flow):
    flow = make_flow()
    to_review(flow)
    flow.retake(Finger.RIGHT_INDEX)
    flow.mark_finger(FingerException.INJURED)
    assert flow.step is Step.REVIEW
    assert flow.enrollment.fingers[Finger.RIGHT_INDEX].flagged


STEPS_TO = {
    Step.NIK: lambda f: f.start("id"),
    Step.CONSENT: lambda f: (f.start("id"), f.submit_nik(VALID_NIK)),
    Step.FACE: to_face,
    Step.FINGERPRINTS: to_fingerprints,
    Step.SIGNATURE: to_signature,
    Step.REVIEW: to_review,
}


@pytest.mark.parametrize("step", list(STEPS_TO))
def test_cancel_anywhere_discards_everything(make_flow, store, step):
    flow = make_flow()
    STEPS_TO[step](flow)
    assert flow.step is step
    flow.cancel()
    assert flow.step is Step.WELCOME
    assert flow.enrollment is None
    assert store.count() == 0
    assert flow.modules.indicators.current is Signal.IDLE


@pytest.mark.parametrize("step", list(STEPS_TO))
def test_idle_timeout_returns_to_welcome(make_flow, clock, store, step):
    flow = make_flow(session=SessionConfig(idle_timeout_s=60, idle_warning_s=20))
    STEPS_TO[step](flow)
    clock.advance(59)
    assert not flow.tick()
    assert flow.step is step and flow.still_here_left is None
    clock.advance(2)
    assert flow.tick()  # first it asks "still there?", counting down
    assert flow.step is step and flow.still_here_left == 19
    flow.touch()  # a touch answers, and restarts the count
    assert flow.still_here_left is None
    clock.advance(61)
    assert flow.tick() and flow.still_here_left == 19
    clock.advance(18)
    assert flow.tick() and flow.still_here_left == 1
    assert flow.step is step
    clock.advance(1)
    assert flow.tick()
    assert flow.step is Step.WELCOME and flow.enrollment is None
    assert flow.notice is Notice.TIMED_OUT
    assert store.count() == 0


def test_welcome_never_times_out_and_the_receipt_does(make_flow, clock):
    flow = make_flow()
    clock.advance(10_000)
    assert not flow.tick()
    to_review(flow)
    flow.save()
    clock.advance(44)
    assert not flow.tick()
    clock.advance(2)
    assert flow.tick()
    assert flow.step is Step.WELCOME


def test_language_choice_follows_the_enrollment_and_resets_after(make_flow, store):
    flow = make_flow()
    flow.start("en")
    assert flow.language == "en"
    flow.set_language("id")
    flow.submit_nik(VALID_NIK)
    flow.accept_consent()
    assert flow.enrollment.consent.language == "id"
    flow.cancel()
    assert flow.language == "id"
    with pytest.raises(FlowError):
        flow.set_language("fr")


def test_late_capture_after_cancel_never_reaches_the_next_session(make_flow):
    flow = make_flow()
    to_face(flow)

    class CancellingCamera:
        """Stands for a slow camera: the citizen cancels while it is busy."""

        def __init__(self, camera):
            self.camera = camera

        def __getattr__(self, name):
            return getattr(self.camera, name)

        def still(self, deadline_s=None):
            job = self.camera.still(deadline_s)
            job.result()  # the photo is taken...
            flow.cancel()  # ...as the citizen cancels and the next one starts
            flow.start("id")
            return job

    flow.modules.camera = CancellingCamera(flow.modules.camera)
    result = flow.capture_face()
    assert result.stale
    assert flow.step is Step.NIK
    assert flow.enrollment.face is None


@pytest.mark.parametrize("leave", ["cancel", "pause", "mark_finger"])
def test_leaving_a_slow_capture_cancels_the_devices_job_at_once(make_flow, leave):
    """The reader waits 5 s for a finger; leaving the step ends its job within
    moments instead of letting it run on behind a dialog or into the next finger."""
    flow = make_flow()
    to_face(flow)
    assert flow.capture_face().accepted
    flow.accept_face()
    flow.modules.fingerprint = FakeFingerprintReader(delay=5.0)
    flow.modules.fingerprint.open()
    results = []
    worker = threading.Thread(target=lambda: results.append(flow.capture_finger()))
    worker.start()
    time.sleep(0.1)
    started = time.monotonic()
    if leave == "cancel":
        flow.cancel()
    elif leave == "pause":
        flow.pause()
    else:
        flow.mark_finger(FingerException.MISSING)
    worker.join(2.0)
    assert not worker.is_alive() and time.monotonic() - started < 0.5
    assert results[0].stale and results[0].fault is None
    assert flow.modules.fingerprint.health().ok  # a cancel is not the reader's fault
    flow.modules.fingerprint.close()


def test_store_failure_keeps_the_enrollment_to_save_again(make_flow, store):
    class FullDisk:
        def __init__(self):
            self.full = True

        def save(self, packet):
            if self.full:
                raise StoreError("the disk is full")
            store.save(packet)

        def has_room(self):
            return True

        def last_sequence(self):
            return store.last_sequence()

    sink = FullDisk()
    flow = make_flow(sink=sink)
    to_review(flow)
    assert flow.save() is None
    assert flow.step is Step.REVIEW
    assert flow.problem == "flow.save.failed"
    assert flow.enrollment.complete
    sink.full = False
    enrollment_id = flow.save()
    assert flow.step is Step.DONE
    assert stored_packet(store, enrollment_id).manifest["nik"] == VALID_NIK


def test_real_module_data_is_stored_sealed_only(make_flow, store):
    modules = fake_modules()
    modules.signature = TouchSignaturePad()  # the real touchscreen backend
    modules.signature.open()
    flow = make_flow(modules=modules)
    to_signature(flow)
    flow.add_signature_stroke(SIGNATURE)
    flow.submit_signature()
    enrollment_id = flow.save()
    assert enrollment_id is not None
    assert not stored_packet(store, enrollment_id).simulated
    written = [path for path in store.packets_dir.iterdir()]
    assert [path.name for path in written] == [f"{enrollment_id}.rekam"]
    assert written[0].read_bytes().startswith(MAGIC)
    assert VALID_NIK.encode() not in written[0].read_bytes()


@pytest.mark.parametrize(
    "action",
    [
        lambda f: f.submit_nik(VALID_NIK),
        lambda f: f.accept_consent(),
        lambda f: f.capture_face(),
        lambda f: f.capture_finger(),
        lambda f: f.mark_finger(FingerException.MISSING),
        lambda f: f.submit_signature(),
        lambda f: f.retake(Retake.FACE),
        lambda f: f.save(),
        lambda f: f.finish(),
    ],
)
def test_actions_out_of_step_are_refused(make_flow, action):
    flow = make_flow()
    with pytest.raises(FlowError):
        action(flow)
    assert flow.step is Step.WELCOME


def test_start_twice_is_refused(make_flow):
    flow = make_flow()
    flow.start("id")
    with pytest.raises(FlowError):
        flow.start("en")


def test_a_module_that_never_opened_is_a_fault_not_a_crash(make_flow):
    flow = make_flow()
    flow.modules.camera.close()  # as when the camera was dead at start
    to_face(flow)
    result = flow.capture_face()
    assert result.fault is ModuleKind.CAMERA
    assert flow.step is Step.FACE
    flow.modules.camera.open()  # a working camera is plugged in
    assert flow.capture_face().accepted
    flow.accept_face()
