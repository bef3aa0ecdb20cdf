"""Review: every capture on one screen; any one can be taken again; then save."""

from __future__ import annotations

from pathlib import Path

from kivy.properties import NumericProperty, ObjectProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout

from kiosk.flow.fingers import FINGER_ORDER, Finger
from kiosk.flow.machine import Retake, Step
from kiosk.screens.base import KioskScreen, in_background, moves_forward, texture_from_array


class ReviewTile(ButtonBehavior, BoxLayout):
    """One capture on the review: its picture, a caption, and a red status when flagged."""

    texture = ObjectProperty(None, allownone=True)
    caption = StringProperty("")
    status = StringProperty("")


class FingerTile(ReviewTile):
    finger = NumericProperty(0)


class ReviewScreen(KioskScreen):
    step = Step.REVIEW
    kv = Path(__file__).with_suffix(".kv")
    problem = StringProperty("")
    nik = StringProperty("")  # in groups of four, for the citizen to check

    def refresh(self) -> None:
        enrollment = self.flow.enrollment
        if enrollment is None or not enrollment.complete:
            return
        # what a broken module kept from being captured, unless the flow has more to say
        missing = [f"flow.missing.{kind}" for kind in enrollment.missing]
        self.problem = self.flow.problem or (missing[0] if missing else "")
        self.nik = enrollment.nik.grouped()
        face, signature = enrollment.face, enrollment.signature
        self.ids.face.texture = face and texture_from_array(face.image)
        self.ids.signature.texture = signature and texture_from_array(signature.image)
        grid = self.ids.fingers
        grid.clear_widgets()
        for finger in FINGER_ORDER:
            record = enrollment.fingers.get(finger)  # none: the reader went down first
            status = record and record.exception and self.t(record.exception.label_key)
            tile = FingerTile(
                finger=int(finger),
                caption=self.t(finger.label_key),
                status=status or ("" if record else "-"),
            )
            if record and record.capture is not None and record.capture.image is not None:
                tile.texture = texture_from_array(record.capture.image)
            grid.add_widget(tile)

    @moves_forward
    def retake(self, item: str | int) -> None:
        self.flow.retake(Finger(item) if isinstance(item, int) else Retake(item))

    @moves_forward
    def save(self) -> None:
        # the store writes and syncs to disk: off the UI thread, as captures are
        in_background(self.flow.save, lambda _saved_id: None)
