"""Waiting for the operator: the enrollment is held (a citizen under the
recording age, too many fingers flagged) until an operator approves it with
the PIN, or sends it back to be corrected."""

from pathlib import Path

from kivy.properties import NumericProperty, StringProperty

from kiosk.flow.machine import EnrollmentFlow, OperatorReason, Step
from kiosk.screens.base import KioskScreen, in_background, moves_forward, on_this_step

MAX_PIN_DIGITS = 8


class OperatorScreen(KioskScreen):
    step = Step.OPERATOR
    kv = Path(__file__).with_suffix(".kv")
    reason = StringProperty("")  # i18n key of why the enrollment waits
    reason_count = NumericProperty(0)  # the age limit, or the number of flagged fingers
    pin = StringProperty("")  # as typed; shown as dots
    problem = StringProperty("")
    locked_s = NumericProperty(0)

    def entered(self) -> None:
        self.pin = ""
        self.problem = "" if self.flow.operator_pin else "operator.pin.none"

    def refresh(self) -> None:
        flow = self.flow
        if flow.operator_reason is None:
            return
        self.reason = f"operator.reason.{flow.operator_reason}"
        if flow.operator_reason is OperatorReason.UNDER_AGE:
            self.reason_count = flow.session.min_age_years
        elif flow.enrollment is not None:
            self.reason_count = len(flow.enrollment.flagged_fingers)

    @on_this_step
    def press(self, key: str) -> None:
        if key == "back":
            self.pin = self.pin[:-1]
        elif key == "ok":
            self.approve()
        elif len(self.pin) < MAX_PIN_DIGITS:
            self.pin += key

    @moves_forward
    def approve(self) -> None:
        flow, pin = self.flow, self.pin
        self.pin = ""
        if flow.operator_pin is None:
            return
        # Argon2 is slow by design, and an approval may save: off the UI thread
        in_background(
            lambda: flow.operator_approve(pin), lambda approved: self._refused(flow, approved)
        )

    def _refused(self, flow: EnrollmentFlow, approved: bool | None) -> None:
        if approved is False and flow is self.flow:  # not a flow attached since
            self.locked_s = round(flow.operator_pin.locked_for())
            self.problem = "operator.pin.locked" if self.locked_s else "operator.pin.wrong"

    @moves_forward
    def go_back(self) -> None:
        self.flow.operator_return()
