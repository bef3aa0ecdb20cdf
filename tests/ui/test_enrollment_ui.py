"""A citizen walks the whole enrollment by touches in the real Kivy window.

The walk also saves a screenshot of every screen into docs/screenshots/, which
the README shows.
"""

from __future__ import annotations

import pytest
from support import VALID_NIK, stored_packet

from kiosk.flow.fingers import Finger
from kiosk.flow.machine import Step
from kiosk.i18n import Translator

pytestmark = pytest.mark.ui

SIGNATURE_STROKES = [
    [(0.1, 0.4), (0.2, 0.7), (0.3, 0.3), (0.4, 0.65), (0.5, 0.35), (0.6, 0.6)],
    [(0.62, 0.5), (0.75, 0.45), (0.9, 0.55)],
]


def walk_to_review(kiosk, language: str, shots: str | None = None, look=None) -> None:
    """Touch through every step up to the review, checking what each screen says.

    Needs a camera whose first frame is dark (the face screen shows its guidance)
    and a signature pad with nothing scripted (the citizen draws). ``shots``
    prefixes the screenshots' names (None: take none); ``look(kiosk)`` is called
    on every screen.
    """
    t = Translator(language)

    def shot(name: str) -> None:
        if look is not None:
            look(kiosk)
        if shots is not None:
            kiosk.screenshot(f"{shots}{name}")

    assert kiosk.shows(Translator("id")("welcome.title"))
    assert kiosk.shows(Translator("en")("welcome.title"))
    # fakes are never mistaken for real modules: every screen says so
    assert kiosk.shows(Translator("id")("common.simulated"))
    shot("01-welcome")
    kiosk.tap(kiosk.widget("start_id" if language == "id" else "start_en"))
    kiosk.wait_for_step(Step.NIK)

    assert kiosk.shows(t("nik.entry.title"))
    assert kiosk.shows(t("common.simulated"))
    kiosk.type_nik(VALID_NIK[:10])
    kiosk.tap(kiosk.widget("ok"))
    assert kiosk.shows(t("nik.error.too_short", count=10))
    shot("02-nik-error")
    kiosk.type_nik(VALID_NIK[10:])
    assert kiosk.widget("display").text == "3201 0141 0190 0001"
    shot("03-nik")
    kiosk.tap(kiosk.widget("ok"))
    kiosk.wait_for_step(Step.CONSENT)

    assert kiosk.shows(t("consent.title"))
    assert "UU 27/2022" in kiosk.widget("body").text
    shot("04-consent")
    kiosk.tap(kiosk.widget("accept"))
    kiosk.wait_for_step(Step.FACE)

    assert kiosk.shows(t("face.instructions"))
    # the preview is dark until the first photo: the live guidance says so
    kiosk.wait_for(lambda: kiosk.shows(t("quality.face.too_dark")), what="the guidance")
    shot("05-face")
    # then the citizen stands well lit: the photo is taken and shown for a yes
    kiosk.wait_for(lambda: not kiosk.widget("accept_photo").disabled, what="the portrait")
    assert kiosk.shows(t("face.confirm_question"))
    assert kiosk.widget("portrait").texture.size == (480, 640)
    shot("05b-face-confirm")
    kiosk.tap(kiosk.widget("accept_photo"))
    kiosk.wait_for_step(Step.FINGERPRINTS)

    # prints are taken by themselves, one finger after the other
    for number, finger in ((2, Finger.RIGHT_INDEX), (10, Finger.LEFT_LITTLE)):
        kiosk.wait_for(lambda f=finger: kiosk.flow.current_finger is f, what=finger.name)
        kiosk.pump(0.05)
        assert kiosk.shows(t(finger.label_key))
        assert kiosk.shows(t("fingerprints.progress", number=number))
        if finger is Finger.RIGHT_INDEX:
            assert kiosk.widget("preview").texture is not None  # the thumb's print
            shot("06-fingerprints")
    kiosk.tap(kiosk.widget("injured"))  # before its print is taken: the finger is injured
    dialog = kiosk.screen.dialog
    kiosk.wait_for(lambda: dialog.parent is not None, what="the finger question")
    question = t("fingerprints.confirm.injured", finger=t(Finger.LEFT_LITTLE.label_key))
    assert kiosk.shows_in(dialog, question)
    assert dialog.ids.hands.finger == Finger.LEFT_LITTLE  # pictured, not only named
    if shots in ("", "en-"):  # a dialog is read from the window, which stays 800x480 offscreen
        kiosk.screenshot(f"{shots}06-finger-question")
    kiosk.tap(dialog.ids.confirm)
    kiosk.wait_for_step(Step.SIGNATURE)

    assert kiosk.shows(t("signature.instructions"))
    box = kiosk.widget("box")
    kiosk.draw(box, [(0.5, 0.5), (0.52, 0.5)])  # a tiny tick is not a signature
    kiosk.tap(kiosk.widget("done"))
    kiosk.pump(0.1)
    assert kiosk.flow.step is Step.SIGNATURE
    assert kiosk.widget("problem").text in {
        t("quality.signature.too_short"),
        t("quality.signature.too_small"),
    }
    for stroke in SIGNATURE_STROKES:
        kiosk.draw(box, stroke)
    assert kiosk.widget("problem").text == ""  # signing again clears the complaint
    shot("07-signature")
    kiosk.tap(kiosk.widget("done"))
    kiosk.wait_for_step(Step.REVIEW)


@pytest.mark.parametrize("language", ["id", "en"])
def test_a_citizen_enrolls_by_touch(kiosk, language):
    kiosk.attach(camera=("dark", "face"), signature=("blank",))
    t = Translator(language)
    walk_to_review(kiosk, language, shots="" if language == "id" else "en-")

    tiles = kiosk.widget("fingers").children[::-1]
    assert len(tiles) == 10
    assert tiles[-1].status == t("flow.exception.injured")
    assert all(tile.texture is not None for tile in tiles[:-1])
    kiosk.screenshot("08-review" if language == "id" else "en-08-review")
    kiosk.tap(kiosk.widget("save"))
    kiosk.wait_for_step(Step.DONE)

    enrollment_id = kiosk.screen.enrollment_id
    assert enrollment_id == "UI-01-20261128-000001"  # the fixed date, the first of the store
    assert kiosk.widget("enrollment_id").text == enrollment_id
    assert kiosk.widget("qr").texture.size[0] > 100
    assert kiosk.shows(t("done.operator_check", count=1))
    kiosk.screenshot("09-done" if language == "id" else "en-09-done")
    manifest = stored_packet(kiosk.store, enrollment_id).manifest
    assert manifest["language"] == language
    assert manifest["exceptions"] == [{"finger": 10, "reason": "injured"}]
    assert manifest["signature"]["stroke_count"] == len(SIGNATURE_STROKES)

    kiosk.tap(kiosk.widget("finish"))
    kiosk.wait_for_step(Step.WELCOME)


def test_retake_a_finger_from_the_review(kiosk):
    kiosk.attach(camera=("dark", "face"), signature=("blank",))
    walk_to_review(kiosk, "id")
    before = kiosk.flow.enrollment.fingers[Finger.LEFT_THUMB]
    tile = next(t for t in kiosk.widget("fingers").children if t.finger == Finger.LEFT_THUMB)
    kiosk.tap(tile)
    # the reader answers at once, so the retake is over in a moment
    kiosk.wait_for(
        lambda: kiosk.flow.enrollment.fingers[Finger.LEFT_THUMB] is not before, what="retake"
    )
    kiosk.wait_for_step(Step.REVIEW)
    assert kiosk.flow.enrollment.step_seconds["fingerprints"] > 0
    assert kiosk.flow.enrollment.fingers[Finger.LEFT_THUMB].attempts == 1


def test_cancel_asks_first_then_returns_to_welcome(kiosk):
    kiosk.tap(kiosk.widget("start_id"))
    kiosk.wait_for_step(Step.NIK)
    kiosk.type_nik("3201")
    kiosk.tap(kiosk.widget("cancel"))
    dialog = kiosk.app._dialog
    assert dialog is not None and dialog.parent is not None
    kiosk.screenshot("10-cancel")
    kiosk.tap(dialog.ids.keep, settle=0.4)  # the dialog fades out
    assert kiosk.flow.step is Step.NIK
    assert kiosk.widget("display").text.startswith("3201")
    kiosk.tap(kiosk.widget("cancel"), settle=0.3)
    assert kiosk.app._dialog is not dialog
    kiosk.tap(kiosk.app._dialog.ids.confirm)
    kiosk.wait_for_step(Step.WELCOME)
    assert kiosk.flow.enrollment is None


def test_language_switch_retranslates_the_screen(kiosk):
    kiosk.tap(kiosk.widget("start_id"))
    kiosk.wait_for_step(Step.NIK)
    assert kiosk.shows(Translator("id")("nik.entry.title"))
    kiosk.tap(kiosk.widget("language"))
    kiosk.pump(0.1)
    assert kiosk.shows(Translator("en")("nik.entry.title"))
    assert kiosk.flow.language == "en"


def test_camera_fault_shows_help_and_try_again_recovers(kiosk):
    kiosk.attach(camera=("fail", "face"))
    kiosk.tap(kiosk.widget("start_id"))
    kiosk.wait_for_step(Step.NIK)
    kiosk.type_nik(VALID_NIK)
    kiosk.tap(kiosk.widget("ok"))
    kiosk.wait_for_step(Step.CONSENT)
    kiosk.tap(kiosk.widget("accept"))
    kiosk.wait_for_step(Step.FACE)
    kiosk.wait_for(lambda: kiosk.widget("try_again").opacity == 1, what="the try-again button")
    face = kiosk.screen
    # the live picture of this visit only, never an earlier citizen's face
    assert face.ids.preview.texture is None or face.frame_at >= face.shown_at
    assert kiosk.shows(Translator("id")("flow.fault.camera"))
    assert kiosk.shows(Translator("id")("flow.fault.operator_called"))  # the top bar
    # the camera sees the citizen again after its one failed still: the live view shows
    kiosk.wait_for(lambda: face.frames_shown > 0, timeout=3.0, what="the live view")
    kiosk.screenshot("11-camera-fault")
    enrollment = kiosk.flow.enrollment
    kiosk.tap(kiosk.widget("try_again"))
    kiosk.accept_photo()
    kiosk.wait_for_step(Step.FINGERPRINTS)
    assert kiosk.flow.enrollment is enrollment  # nothing was lost


def test_idle_citizen_is_asked_first_then_the_session_ends(kiosk):
    from support import FakeClock

    from kiosk.config import SessionConfig

    clock = FakeClock()
    kiosk.attach(clock=clock, session=SessionConfig(idle_timeout_s=30, idle_warning_s=20))
    kiosk.tap(kiosk.widget("start_en"))
    kiosk.wait_for_step(Step.NIK)
    kiosk.type_nik("32010")
    clock.advance(31)
    kiosk.wait_for(lambda: kiosk.app._still_here is not None, timeout=5, what="still there?")
    dialog = kiosk.app._still_here
    t = Translator("en")
    kiosk.pump(0.1)
    assert kiosk.shows_in(dialog, t("common.still_here.question"))
    assert kiosk.shows_in(dialog, t("common.still_here.countdown", seconds=19))
    kiosk.screenshot("12-still-here")
    kiosk.tap(dialog.ids.still_here)  # "yes, carry on": the session goes on as it was
    kiosk.wait_for(lambda: kiosk.app._still_here is None, timeout=5, what="the dialog to go")
    assert kiosk.flow.step is Step.NIK and kiosk.widget("display").text.startswith("3201 0")

    clock.advance(31)
    kiosk.wait_for(lambda: kiosk.app._still_here is not None, timeout=5, what="still there?")
    clock.advance(20)
    kiosk.wait_for_step(Step.WELCOME, timeout=5)  # the app ticks the flow every second
    assert kiosk.app._still_here is None
    assert kiosk.flow.enrollment is None
    assert kiosk.flow.language == "id"
    assert kiosk.shows(Translator("id")("welcome.notice.timed_out"))


def test_escape_and_window_close_do_not_leave_the_kiosk(kiosk, running_app):
    from kivy.core.window import Window

    kiosk.tap(kiosk.widget("start_id"))
    kiosk.wait_for_step(Step.NIK)
    Window.dispatch("on_keyboard", 27, 0, None, [])  # Escape
    Window.dispatch("on_keyboard", 282, 0, None, [])  # F1: Kivy settings
    assert Window.dispatch("on_request_close") is True
    kiosk.pump(0.2)
    assert running_app.root is not None and kiosk.screen.name == Step.NIK
    assert running_app._app_window is not None
