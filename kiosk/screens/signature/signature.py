"""Signature drawn with a finger or stylus in the white box; clear and redo."""

from __future__ import annotations

from pathlib import Path

from kivy.graphics import Color, Line
from kivy.properties import StringProperty
from kivy.uix.widget import Widget

from kiosk.flow.machine import Step
from kiosk.screens.base import KioskScreen, in_background, moves_forward, on_this_step

INK_WIDTH = 2.0


class SignatureBox(Widget):
    """Draws what a finger writes and dispatches ``on_stroke(points)`` for each
    finished stroke (x, y in 0..1 of the box, y downwards; t in seconds)."""

    __events__ = ("on_stroke",)

    def on_stroke(self, points: list[tuple[float, float, float]]) -> None:
        pass

    def on_touch_down(self, touch) -> bool:
        if not self.collide_point(*touch.pos):
            return False
        touch.grab(self)
        with self.canvas:
            Color(0.05, 0.05, 0.2, 1)
            touch.ud["line"] = Line(points=list(touch.pos), width=INK_WIDTH)
        touch.ud["stroke"] = [self._point(touch)]
        return True

    def on_touch_move(self, touch) -> bool:
        if touch.grab_current is not self:
            return False
        x = min(max(touch.x, self.x), self.right)
        y = min(max(touch.y, self.y), self.top)
        touch.ud["line"].points += [x, y]
        touch.ud["stroke"].append(self._point(touch))
        return True

    def on_touch_up(self, touch) -> bool:
        if touch.grab_current is not self:
            return False
        touch.ungrab(self)
        self.dispatch("on_stroke", touch.ud["stroke"])
        return True

    def clear(self) -> None:
        self.canvas.clear()

    def _point(self, touch) -> tuple[float, float, float]:
        x = min(max((touch.x - self.x) / max(self.width, 1), 0.0), 1.0)
        y = min(max((self.top - touch.y) / max(self.height, 1), 0.0), 1.0)
        return (x, y, touch.time_update)


class SignatureScreen(KioskScreen):
    step = Step.SIGNATURE
    kv = Path(__file__).with_suffix(".kv")
    problem = StringProperty("")

    def entered(self) -> None:
        self.ids.box.clear()
        self.problem = ""

    def refresh(self) -> None:
        self.problem = self.flow.problem or ""
        if self.problem:  # a rejected signature was wiped in the flow: wipe it here too
            self.ids.box.clear()

    @on_this_step
    def add_stroke(self, stroke: list[tuple[float, float, float]]) -> None:
        self.problem = ""
        self.flow.add_signature_stroke(stroke)

    @on_this_step
    def clear(self) -> None:
        self.ids.box.clear()
        self.flow.clear_signature()

    @moves_forward
    def done(self) -> None:
        # renders and checks the signature: off the UI thread, as captures are
        in_background(self.flow.submit_signature, lambda _quality: None)
