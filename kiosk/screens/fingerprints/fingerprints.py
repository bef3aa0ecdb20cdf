"""Ten fingerprints in a fixed order; a finger that is missing or injured is
recorded as such, after the citizen confirms it, and flagged for the operator."""

import contextlib
from pathlib import Path

from kivy.app import App
from kivy.properties import NumericProperty, StringProperty

from kiosk.errors import FlowError
from kiosk.flow.fingers import FINGER_ORDER, Finger, FingerException
from kiosk.flow.machine import CaptureResult, Step
from kiosk.screens.base import CapturingScreen, KioskDialog, moves_forward, settled_only
from kiosk.screens.fingerprints import hands  # noqa: F401  (registers HandDiagram for kv)


class FingerExceptionDialog(KioskDialog):
    """ "Is your right index finger missing?" with the finger pictured; only a
    yes records it, and only for that finger."""

    finger = NumericProperty(0)  # the Finger asked about
    exception = StringProperty("")  # a FingerException value
    question = StringProperty("")  # its i18n key

    def on_exception(self, _dialog, exception: str) -> None:
        self.question = f"fingerprints.confirm.{exception}"

    @settled_only
    def confirm(self) -> None:
        self.dismiss()
        # the flow may have moved on meanwhile (a cancel, a timeout): nothing to mark
        with contextlib.suppress(FlowError):
            App.get_running_app().flow.mark_finger(
                FingerException(self.exception), Finger(self.finger)
            )

    @settled_only
    def keep(self) -> None:
        self.dismiss()


class FingerprintsScreen(CapturingScreen):
    step = Step.FINGERPRINTS
    kv = Path(__file__).with_suffix(".kv")
    finger = StringProperty("")  # i18n key of the finger asked for
    number = NumericProperty(1)  # its place in the order, 1..10
    tries_left = NumericProperty(0)
    guidance = StringProperty("fingerprints.instructions")  # i18n key: the reader's phase
    # a moment to see it worked as the hand moves on; the reader itself waits for the lift
    pause_after_success_s = 0.5

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.dialog: FingerExceptionDialog | None = None

    def refresh(self) -> None:
        finger = self.flow.current_finger
        if finger is not None:
            if self.finger and self.finger != finger.label_key:
                self.problem = ""
            self.finger = finger.label_key
            self.number = FINGER_ORDER.index(finger) + 1
        self.tries_left = self.flow.tries_left
        phase = self.flow.finger_phase
        self.guidance = f"fingerprints.phase.{phase}" if phase else "fingerprints.instructions"
        super().refresh()

    def capture(self) -> CaptureResult:
        return self.flow.capture_finger()

    @moves_forward
    def mark(self, exception: str) -> None:
        """Ask the citizen to confirm that the current finger is missing or injured."""
        self.dialog = FingerExceptionDialog(
            finger=int(self.flow.current_finger), exception=exception
        )
        self.dialog.open()

    def on_leave(self, *args) -> None:
        if self.dialog is not None:
            self.dialog.dismiss()  # the question was about a finger no longer asked for
            self.dialog = None
        super().on_leave(*args)
