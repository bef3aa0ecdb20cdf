"""No text is cut off or runs out of its box, on any screen, at 800x480 and
1280x800, in both languages, with the longest real values: the longest station
id the config allows, every finger name, every message a screen can show."""

from __future__ import annotations

import pytest
from support import VALID_NIK

from kiosk.config import SessionConfig
from kiosk.drivers.base import FingerPhase
from kiosk.flow.fingers import Finger, FingerException
from kiosk.flow.machine import STEP_MODULE, EnrollmentFlow, Notice, OperatorReason, Step
from kiosk.i18n import LANGUAGES, catalog

pytestmark = pytest.mark.ui

LONGEST_STATION_ID = "3201-KCM-CIBINONG-01-" + "W" * 43  # 64 characters, the most allowed
SIZES = [(800, 480), (1280, 800)]
SLACK_PX = 1.5


def keys(prefix: str) -> list[str]:
    return sorted(key for key in catalog("id") if key.startswith(prefix))


# what each screen's problem label can be asked to show
PROBLEMS = {
    Step.NIK: [*keys("nik.error."), "nik.entry.full"],
    Step.FACE: [*keys("quality.face."), "flow.fault.camera"],
    Step.FINGERPRINTS: [*keys("quality.finger."), "flow.fault.fingerprint"],
    Step.SIGNATURE: [*keys("quality.signature."), "flow.fault.signature"],
    Step.REVIEW: ["flow.save.failed", *keys("flow.missing.")],
    Step.OPERATOR: keys("operator.pin."),
}


def scrolls(widget) -> bool:
    from kivy.uix.scrollview import ScrollView

    while widget is not None and widget.parent is not widget:  # the window is its own parent
        if isinstance(widget, ScrollView):
            return True
        widget = widget.parent
    return False


def overflowing(root, window_size) -> list[str]:
    """Visible labels whose text runs out of their own box, or whose box runs
    out of its parent or off the screen."""
    from kivy.uix.label import Label

    problems = []
    width, height = window_size
    for label in root.walk(restrict=True):
        if not isinstance(label, Label) or not label.text.strip() or label.opacity == 0:
            continue
        label.texture_update()
        text_w, text_h = label.texture_size
        where = f"{label.text[:40]!r}"
        if text_w > label.width + SLACK_PX or text_h > label.height + SLACK_PX:
            problems.append(
                f"{where}: text {text_w}x{text_h} in a {label.width:.0f}x{label.height:.0f} box"
            )
        if scrolls(label):
            continue  # a scrolled text may run past the screen: it scrolls into view
        x, y = label.to_window(label.x, label.y)
        if (
            x < -SLACK_PX
            or y < -SLACK_PX
            or x + label.width > width + SLACK_PX
            or y + label.height > height + SLACK_PX
        ):
            problems.append(f"{where}: box leaves the screen")
        parent = label.parent
        stacked = parent is not None and hasattr(parent, "orientation")  # in a BoxLayout
        if stacked and (label.y < parent.y - SLACK_PX or label.top > parent.top + SLACK_PX):
            problems.append(f"{where}: pushed out of its column")
    return problems


def drive_to(flow: EnrollmentFlow, step: Step) -> None:
    flow.start("id")
    if step is Step.NIK:
        return
    if step is Step.OPERATOR:
        flow.submit_nik("3201011212200001")  # born 12 December 2020: far too young
        return
    flow.submit_nik(VALID_NIK)
    if step is Step.CONSENT:
        return
    flow.accept_consent()
    if step is Step.FACE:
        return
    assert flow.capture_face().accepted
    flow.accept_face()
    if step is Step.FINGERPRINTS:
        return
    for _ in range(10):
        flow.capture_finger()
    if step is Step.SIGNATURE:
        return
    flow.modules.signature.sign()
    flow.submit_signature()
    if step is Step.REVIEW:
        return
    flow.save()


def check(kiosk, size, found, what, root=None) -> None:
    kiosk.pump(0.05)
    for problem in overflowing(root or kiosk.screen, size):
        found.append(f"{size[0]}x{size[1]} {kiosk.app.language} {what}: {problem}")


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_no_text_overflows_on_any_screen(kiosk, size):
    from kivy.core.window import Window

    from kiosk.screens.fingerprints.fingerprints import FingerExceptionDialog

    Window.size = size
    found: list[str] = []
    for step in Step:
        if step is Step.WELCOME:
            continue
        flow = kiosk.attach(
            station_id=LONGEST_STATION_ID,
            camera=("dark",) if step is Step.FACE else ("face",),
            fingerprint=("no_finger",) if step is Step.FINGERPRINTS else ("good",),
            signature=("drawn",),
            session=SessionConfig(min_age_years=17),
        )
        drive_to(flow, step)
        kiosk.wait_for_step(step)
        screen = kiosk.screen
        for language in LANGUAGES:
            flow.set_language(language)
            kiosk.pump(0.1)
            check(kiosk, size, found, step)
            for key in PROBLEMS.get(step, []):
                screen.problem = key
                check(kiosk, size, found, f"{step} showing {key}")
            screen.problem = ""
            kiosk.app.operator_called = True  # the top bar's title gives way to it
            check(kiosk, size, found, f"{step} with the operator called")
            kiosk.app.operator_called = False
            if step in (Step.FACE, Step.FINGERPRINTS):
                screen.problem = f"flow.fault.{STEP_MODULE[step]}"
                screen.needs_help = screen.module_down = True  # "skip for now"
                check(kiosk, size, found, f"{step} with its module down")
                screen.needs_help = screen.module_down = False
                screen.problem = ""
            if step is Step.FINGERPRINTS:
                for phase in FingerPhase:
                    screen.guidance = f"fingerprints.phase.{phase}"
                    check(kiosk, size, found, f"{step} in phase {phase}")
                screen.guidance = "fingerprints.instructions"
                for finger in Finger:
                    screen.finger, screen.number = finger.label_key, int(finger)
                    check(kiosk, size, found, f"{step} asking for {finger.name}")
                    for exception in (FingerException.MISSING, FingerException.INJURED):
                        dialog = FingerExceptionDialog(finger=int(finger), exception=exception)
                        dialog.open()
                        kiosk.pump(0.12)
                        check(kiosk, size, found, f"question {finger.name}", dialog)
                        dialog.dismiss()
                        kiosk.pump(0.12)
            if step is Step.REVIEW:
                for finger in Finger:  # every finger flagged: the longest captions
                    record = flow.enrollment.fingers[finger]
                    flow.enrollment.fingers[finger] = type(record)(
                        finger, 3, exception=FingerException.UNUSABLE
                    )
                screen.refresh()
                check(kiosk, size, found, "review with every finger flagged")
            if step is Step.OPERATOR:
                for reason in OperatorReason:
                    flow.operator_reason = reason
                    screen.refresh()
                    check(kiosk, size, found, f"operator: {reason}")
    # the welcome screen, with each notice about the last session
    flow = kiosk.attach(station_id=LONGEST_STATION_ID)
    for notice in [None, *Notice]:
        flow.notice = notice
        kiosk.screen.refresh()
        check(kiosk, size, found, f"welcome with {notice}")
    # the dialogs
    flow.start("id")
    kiosk.wait_for_step(Step.NIK)
    for language in LANGUAGES:
        flow.set_language(language)
        kiosk.app.confirm_cancel()
        kiosk.pump(0.3)
        check(kiosk, size, found, "cancel dialog", kiosk.app._dialog)
        kiosk.app._dialog.dismiss()
        kiosk.app._ask_still_here(20)
        kiosk.pump(0.3)
        check(kiosk, size, found, "still-here dialog", kiosk.app._still_here)
        kiosk.app._ask_still_here(None)
        kiosk.pump(0.3)
    assert not found, "\n".join(found)


def test_a_long_receipt_number_splits_after_the_station_and_a_short_one_does_not():
    from kiosk.screens.done.done import receipt_lines

    assert receipt_lines("UI-01-20261128-000001") == "UI-01-20261128-000001"
    long_id = "3201-KCM-CIBINONG-01-20261128-000042"
    assert receipt_lines(long_id) == "3201-KCM-CIBINONG-01-\n20261128-000042"
    assert receipt_lines(long_id).replace("\n", "") == long_id
