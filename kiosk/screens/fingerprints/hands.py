"""A picture of both hands, backs up as they rest on the scanner, with one
finger marked: the citizen sees which finger is meant, whatever they read."""

from __future__ import annotations

from kivy.graphics import Color, Ellipse, RoundedRectangle
from kivy.properties import NumericProperty
from kivy.uix.widget import Widget

from kiosk.flow.fingers import Finger

SKIN = (0.87, 0.74, 0.62, 1)
MARKED = (0.0, 0.38, 0.66, 1)
# Each finger of a left hand seen from above, thumb last: (x of its centre and
# its length, in palm widths; the thumb also sits lower, beside the palm).
_SHAPE = {
    "little": (0.12, 0.55, 0.0),
    "ring": (0.37, 0.72, 0.0),
    "middle": (0.62, 0.80, 0.0),
    "index": (0.87, 0.70, 0.0),
    "thumb": (1.18, 0.50, -0.45),
}


class HandDiagram(Widget):
    """Both hands; ``finger`` (a Finger number, 0 for none) is drawn in colour."""

    finger = NumericProperty(0)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.bind(pos=self._draw, size=self._draw, finger=self._draw)

    def _draw(self, *_args) -> None:
        self.canvas.clear()
        # two hands side by side, each a palm three-fifths as wide as its half
        palm = min(self.width / 2 * 0.55, self.height / 1.9)
        gap = palm * 0.25
        finger_width = palm * 0.2
        base_y = self.y + (self.height - palm * 1.9) / 2
        for side in ("left", "right"):
            # room beside each palm for its thumb, which sits towards the middle
            left_x = (
                self.center_x - gap - palm * 1.3
                if side == "left"
                else self.center_x + gap + palm * 0.3
            )
            with self.canvas:
                Color(*SKIN)
                RoundedRectangle(pos=(left_x, base_y), size=(palm, palm), radius=[palm * 0.2] * 4)
            for name, (x, length, drop) in _SHAPE.items():
                if side == "right":  # the mirror image: the thumb is on the left
                    x = 1.0 - x
                marked = self.finger == Finger[f"{side.upper()}_{name.upper()}"]
                with self.canvas:
                    Color(*(MARKED if marked else SKIN))
                    RoundedRectangle(
                        pos=(left_x + x * palm - finger_width / 2, base_y + palm * (0.8 + drop)),
                        size=(finger_width, length * palm),
                        radius=[finger_width / 2] * 4,
                    )
                    if marked:  # the print's place, at the finger tip
                        Color(1, 1, 1, 0.85)
                        tip = finger_width * 0.6
                        Ellipse(
                            pos=(
                                left_x + x * palm - tip / 2,
                                base_y + palm * (0.8 + drop + length) - tip * 1.3,
                            ),
                            size=(tip, tip),
                        )


# i18n key of each finger's name by its number, for kv (0: none)
FINGER_LABELS = {0: ""} | {int(finger): finger.label_key for finger in Finger}
