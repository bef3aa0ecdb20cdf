"""Waiting for the operator: the enrollment is held (a citizen under the
recording age, too many fingers flagged, no photo passing every check) until an
operator decides: picks their name and the reason, and approves with their PIN;
or sends it back to be corrected. The decision and who took it go into the packet."""

from pathlib import Path

from kivy.properties import BooleanProperty, NumericProperty, StringProperty

from kiosk.flow.machine import DECISIONS, EnrollmentFlow, OperatorReason, Step
from kiosk.screens.base import (
    KioskScreen,
    in_background,
    moves_forward,
    on_this_step,
    texture_from_array,
)
from kiosk.screens.login.login import choose, fill_choices

MAX_PIN_DIGITS = 8


class OperatorScreen(KioskScreen):
    step = Step.OPERATOR
    kv = Path(__file__).with_suffix(".kv")
    reason = StringProperty("")  # i18n key of why the enrollment waits
    reason_count = NumericProperty(0)  # the age limit, or the number of flagged fingers
    name_chosen = StringProperty("")
    decision = StringProperty("")  # the operator.decision.* key picked
    pin = StringProperty("")  # as typed; shown as dots
    problem = StringProperty("")
    locked_s = NumericProperty(0)
    photo_shown = BooleanProperty(False)  # the photo the officer may accept

    def entered(self) -> None:
        self.pin = self.decision = ""
        desk = self.flow.desk
        self.problem = "" if desk is not None and desk.operators else "operator.pin.none"
        names = desk.operators if desk is not None else []
        fill_choices(self.ids.names, [(name, name) for name in names], self.pick_name)
        self.pick_name(desk.on_duty if desk is not None and desk.on_duty else "")
        reason = self.flow.operator_reason
        photo = self.flow.face_for_officer if reason is OperatorReason.FACE_QUALITY else None
        self.photo_shown = photo is not None
        self.ids.photo.texture = texture_from_array(photo.image) if photo is not None else None
        choices = [(key, self.t(key)) for key in DECISIONS.get(reason, ())]
        fill_choices(self.ids.decisions, choices, self.pick_decision)

    def pick_name(self, name: str) -> None:
        self.name_chosen = name
        choose(self.ids.names, name)

    def pick_decision(self, decision: str) -> None:
        self.decision = decision
        choose(self.ids.decisions, decision)

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
        flow, pin, name, decision = self.flow, self.pin, self.name_chosen, self.decision
        self.pin = ""
        if flow.desk is None or not flow.desk.operators:
            return
        if not name or not decision:
            self.problem = "operator.pick" if not name else "operator.pick_decision"
            return
        # Argon2 is slow by design, and an approval may save: off the UI thread
        in_background(
            lambda: flow.operator_approve(name, pin, decision),
            lambda approved: self._refused(flow, approved),
        )

    def _refused(self, flow: EnrollmentFlow, approved: bool | None) -> None:
        if approved is False and flow is self.flow:  # not a flow attached since
            self.locked_s = round(flow.desk.pad.locked_for())
            self.problem = "operator.pin.locked" if self.locked_s else "operator.pin.wrong"

    @moves_forward
    def go_back(self) -> None:
        self.flow.operator_return()
