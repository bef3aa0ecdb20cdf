"""Ten fingerprints in a fixed order; a finger that is missing or injured is
recorded as such and flagged for the operator."""

from pathlib import Path

from kivy.properties import NumericProperty, StringProperty

from kiosk.flow.fingers import FINGER_ORDER, FingerException
from kiosk.flow.machine import CaptureResult, Step
from kiosk.screens.base import CapturingScreen, on_this_step


class FingerprintsScreen(CapturingScreen):
    step = Step.FINGERPRINTS
    kv = Path(__file__).with_suffix(".kv")
    finger = StringProperty("")  # i18n key of the finger asked for
    number = NumericProperty(1)  # its place in the order, 1..10
    tries_left = NumericProperty(0)

    def refresh(self) -> None:
        finger = self.flow.current_finger
        if finger is not None:
            if self.finger and self.finger != finger.label_key:
                self.problem = ""
            self.finger = finger.label_key
            self.number = FINGER_ORDER.index(finger) + 1
        self.tries_left = self.flow.tries_left

    def capture(self) -> CaptureResult:
        return self.flow.capture_finger()

    @on_this_step
    def mark(self, exception: str) -> None:
        self.flow.mark_finger(FingerException(exception))
        self.problem = ""
        self.ids.preview.texture = None
