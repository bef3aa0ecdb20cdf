"""What testing the foundation as a new user found (issue 5), each tried again
in the real window: quick taps, skipped fingers, capture behind a dialog, the
NIK on the review, a declined consent, the operator's hold, the badge."""

from __future__ import annotations

import time

import pytest
from support import VALID_NIK
from test_monkey import UNDER_AGE_NIK

from kiosk.drivers.base import FingerPhase, ModuleKind
from kiosk.flow.fingers import Finger, FingerException
from kiosk.flow.machine import Step
from kiosk.i18n import Translator
from kiosk.operator_pin import hash_pin
from kiosk.staff import Desk

pytestmark = pytest.mark.ui
ID = Translator("id")


def to_consent(kiosk) -> None:
    kiosk.tap(kiosk.widget("start_id"))
    kiosk.wait_for_step(Step.NIK)
    kiosk.type_nik(VALID_NIK)
    kiosk.tap(kiosk.widget("ok"))


def test_a_quick_second_tap_does_not_act_on_the_next_screen(kiosk):
    kiosk.attach(camera=("dark",))  # the face screen stays up once reached
    to_consent(kiosk)
    kiosk.wait_for(lambda: kiosk.screen.name == Step.CONSENT, what="consent")
    kiosk.tap(kiosk.widget("accept"), patient=False)  # 0.1 s after the screen appeared
    kiosk.pump(0.1)
    assert kiosk.flow.step is Step.CONSENT  # the citizen still reads the consent
    kiosk.tap(kiosk.widget("accept"))  # a tap after the guard time is meant
    kiosk.wait_for_step(Step.FACE)


def test_a_touch_that_began_on_the_screen_before_is_ignored(kiosk):
    from kivy.tests.common import UnitTestTouch

    to_consent(kiosk)
    kiosk.wait_for_step(Step.CONSENT)
    accept = kiosk.widget("accept")
    touch = UnitTestTouch(*accept.to_window(*accept.center))
    touch.time_start -= 5  # the finger came down before this screen was shown
    touch.touch_down()
    kiosk.pump(0.5)
    touch.touch_up()
    kiosk.pump(0.1)
    assert kiosk.flow.step is Step.CONSENT


def test_marking_a_finger_asks_first_and_no_keeps_it(kiosk):
    kiosk.attach(fingerprint=("no_finger",))
    to_consent(kiosk)
    kiosk.wait_for_step(Step.CONSENT)
    kiosk.tap(kiosk.widget("accept"))
    kiosk.accept_photo()
    kiosk.wait_for_step(Step.FINGERPRINTS)
    kiosk.tap(kiosk.widget("missing"))
    dialog = kiosk.screen.dialog
    assert kiosk.shows_in(dialog, "Ibu jari kanan tidak ada?")
    assert dialog.ids.hands.finger == Finger.RIGHT_THUMB
    kiosk.tap(dialog.ids.keep)
    kiosk.pump(0.3)
    assert dialog.parent is None and not kiosk.flow.enrollment.fingers
    kiosk.tap(kiosk.widget("missing"))
    kiosk.tap(kiosk.screen.dialog.ids.confirm)
    kiosk.pump(0.2)
    record = kiosk.flow.enrollment.fingers[Finger.RIGHT_THUMB]
    assert record.exception is FingerException.MISSING
    assert kiosk.flow.current_finger is Finger.RIGHT_INDEX


def test_capture_pauses_behind_the_cancel_dialog_and_resumes_where_it_was(kiosk):
    kiosk.attach(fingerprint=("good", "good", *["no_finger"] * 6, "good"))  # time to ask
    to_consent(kiosk)
    kiosk.wait_for_step(Step.CONSENT)
    kiosk.tap(kiosk.widget("accept"))
    kiosk.accept_photo()
    kiosk.wait_for(lambda: kiosk.flow.current_finger is Finger.RIGHT_MIDDLE, what="finger 3")
    kiosk.tap(kiosk.widget("cancel"))
    assert kiosk.flow.paused
    kiosk.pump(2.5)  # long enough for every remaining finger, were capture going on
    assert kiosk.flow.step is Step.FINGERPRINTS
    assert kiosk.flow.current_finger is Finger.RIGHT_MIDDLE
    kiosk.tap(kiosk.app._dialog.ids.keep)  # "no, continue"
    kiosk.wait_for(lambda: not kiosk.flow.paused, what="the dialog to close")
    assert kiosk.flow.current_finger is Finger.RIGHT_MIDDLE  # where it was
    kiosk.wait_for_step(Step.SIGNATURE)  # and capture goes on from there


def test_a_slow_reader_never_stalls_and_never_runs_on_behind_a_dialog(kiosk):
    """Each finger takes the reader 1.5 s: marking a finger missing, or the cancel
    dialog, in the middle of one ends that capture at once; the next one starts
    within a second, and nothing is captured while a dialog is open."""
    flow = kiosk.attach(reader_delay=1.5)
    reader = flow.modules.fingerprint
    to_consent(kiosk)
    kiosk.wait_for_step(Step.CONSENT)
    kiosk.tap(kiosk.widget("accept"))
    kiosk.accept_photo()
    kiosk.wait_for(lambda: flow.finger_phase is FingerPhase.WAITING, what="the thumb's capture")
    assert kiosk.widget("instructions").text == ID("fingerprints.phase.waiting")

    kiosk.tap(kiosk.widget("missing"), patient=True)  # mid-capture
    dialog = kiosk.screen.dialog
    kiosk.wait_for(lambda: dialog.parent is not None, what="the finger question")
    kiosk.pump(2.0)  # longer than a capture: none may finish behind the question
    assert Finger.RIGHT_THUMB not in flow.enrollment.fingers
    kiosk.tap(dialog.ids.confirm, patient=True)
    assert flow.enrollment.fingers[Finger.RIGHT_THUMB].exception is FingerException.MISSING
    asked = time.monotonic()
    kiosk.wait_for(
        lambda: flow.current_finger is Finger.RIGHT_INDEX and flow.finger_phase is not None,
        timeout=1.0,
        what="the index finger's capture to begin",
    )
    assert time.monotonic() - asked < 1.0

    kiosk.tap(kiosk.widget("cancel"), patient=True)  # mid-capture again
    kiosk.pump(2.0)
    assert flow.current_finger is Finger.RIGHT_INDEX and flow.finger_phase is None
    assert Finger.RIGHT_INDEX not in flow.enrollment.fingers
    kiosk.tap(kiosk.app._dialog.ids.keep, patient=True)
    kiosk.wait_for(lambda: flow.current_finger is Finger.RIGHT_MIDDLE, timeout=3.0, what="finger 3")
    assert flow.enrollment.fingers[Finger.RIGHT_INDEX].capture is not None
    assert reader.health().ok and reader.stats.errors == 0  # cancels are not faults


def test_a_module_down_waits_says_so_and_resumes_by_itself_when_back(kiosk):
    flow = kiosk.attach(reader_delay=0.5)
    to_consent(kiosk)
    kiosk.wait_for_step(Step.CONSENT)
    kiosk.tap(kiosk.widget("accept"))
    kiosk.accept_photo()
    kiosk.wait_for(lambda: flow.finger_phase is FingerPhase.WAITING, what="the thumb's capture")
    flow.module_down(ModuleKind.FINGERPRINT)  # as supervision reports a pulled cable
    button = kiosk.widget("try_again")
    kiosk.wait_for(lambda: button.opacity == 1, timeout=2.0, what="the step to pause")
    assert button.text == ID("flow.fault.skip")
    assert kiosk.shows(ID("flow.fault.fingerprint"))
    assert kiosk.shows(ID("flow.fault.operator_called"))  # in the top bar
    kiosk.screenshot("15-module-down")
    kiosk.pump(1.0)
    assert Finger.RIGHT_THUMB not in flow.enrollment.fingers  # nothing runs meanwhile
    flow.module_up(ModuleKind.FINGERPRINT)  # the spare is in and tested
    kiosk.wait_for(lambda: button.opacity == 0, timeout=2.0, what="the step to resume")
    kiosk.wait_for(lambda: flow.current_finger is Finger.RIGHT_INDEX, timeout=3.0, what="finger 2")


def test_declining_consent_says_nothing_was_recorded(kiosk):
    to_consent(kiosk)
    kiosk.wait_for_step(Step.CONSENT)
    kiosk.tap(kiosk.widget("decline"))
    kiosk.wait_for_step(Step.WELCOME)
    assert kiosk.shows(ID("welcome.notice.declined"))
    assert kiosk.shows(Translator("en")("welcome.notice.declined"))
    assert kiosk.store.count() == 0
    kiosk.screenshot("14-declined")


def test_nik_keypad_says_what_it_ignores_and_how_many_problems_remain(kiosk):
    kiosk.tap(kiosk.widget("start_id"))
    kiosk.wait_for_step(Step.NIK)
    kiosk.type_nik("0" * 16)
    kiosk.tap(kiosk.widget("ok"))
    shown = kiosk.widget("problem").text
    assert ID("nik.error.province") in shown
    assert ID("nik.error.more", count=5) in shown  # regency, district, day, month, serial
    kiosk.type_nik("1")  # a 17th digit
    assert kiosk.widget("problem").text == ID("nik.entry.full")
    assert kiosk.widget("display").text == "0000 0000 0000 0000"


def test_the_review_shows_the_nik_and_it_can_be_corrected(kiosk):
    flow = kiosk.attach()
    flow.start("id")
    flow.submit_nik(VALID_NIK)
    flow.accept_consent()
    assert flow.capture_face().accepted
    flow.accept_face()
    for _ in range(10):
        flow.capture_finger()
    flow.modules.signature.sign()
    flow.submit_signature()
    kiosk.wait_for_step(Step.REVIEW)
    assert kiosk.shows("3201 0141 0190 0001")
    kiosk.tap(kiosk.widget("nik"))
    kiosk.wait_for_step(Step.NIK)
    assert kiosk.widget("display").text == "3201 0141 0190 0001"  # to correct, not retype
    kiosk.tap(kiosk.widget("back"))
    kiosk.type_nik("2")
    kiosk.tap(kiosk.widget("ok"))
    kiosk.wait_for_step(Step.REVIEW)
    assert kiosk.shows("3201 0141 0190 0002")


def test_a_young_citizen_waits_for_the_operator_who_approves_with_the_pin(kiosk):
    flow = kiosk.attach()
    flow.desk = Desk({"siti": hash_pin("2468"), "budi": hash_pin("1357")})
    flow.desk.on_duty = "siti"
    kiosk.tap(kiosk.widget("start_id"))
    kiosk.wait_for_step(Step.NIK)
    kiosk.type_nik(UNDER_AGE_NIK)
    kiosk.tap(kiosk.widget("ok"))
    kiosk.wait_for_step(Step.OPERATOR)
    assert kiosk.shows(ID("operator.reason.under_age", age=16))
    names = kiosk.widget("names").children
    assert [b.text for b in names if b.chosen] == ["siti"]  # on duty: chosen already
    kiosk.tap(next(b for b in names if b.text == "budi"))
    kiosk.tap(kiosk.widget("decisions").children[-1])  # the first: married
    keypad = kiosk.widget("keypad")
    for digit in "1111":
        kiosk.tap(kiosk._key(digit), settle=0)
    assert kiosk.widget("pin").text == "••••"  # never the digits
    kiosk.tap(keypad.ids.ok)
    kiosk.wait_for(
        lambda: kiosk.widget("problem").text == ID("operator.pin.wrong"), what="the PIN refused"
    )
    assert kiosk.flow.step is Step.OPERATOR
    for digit in "2468":  # siti's PIN under budi's name
        kiosk.tap(kiosk._key(digit), settle=0)
    kiosk.tap(keypad.ids.ok)
    kiosk.wait_for(lambda: kiosk.flow.desk.pad._wrong == 2, what="the second refusal")
    assert kiosk.flow.step is Step.OPERATOR
    for digit in "1357":
        kiosk.tap(kiosk._key(digit), settle=0)
    kiosk.tap(keypad.ids.ok)
    kiosk.wait_for_step(Step.CONSENT)
    [approval] = kiosk.flow.enrollment.operator_approvals
    assert (approval.reason, approval.operator) == ("under_age", "budi")
    assert approval.decision == "operator.decision.married"


def test_the_simulation_badge_reads_as_a_label_not_a_button(kiosk):
    from kivy.graphics import Rectangle
    from kivy.uix.behaviors import ButtonBehavior

    badge = kiosk.widget("simulated")
    assert badge.opacity == 1 and badge.text == ID("common.simulated")
    assert not isinstance(badge, ButtonBehavior)
    filled = [i for i in badge.canvas.before.children if isinstance(i, Rectangle)]
    assert filled == []  # no filled box like the buttons beside it
    buttons = [kiosk.widget("language"), kiosk.widget("cancel")]
    assert all(tuple(badge.color) != tuple(b.background_color) for b in buttons)
