"""Every screen fits the official 7-inch 800x480 touchscreen and a 10-inch
1280x800 panel, with touch targets of at least 9 mm."""

from __future__ import annotations

import pytest
from test_enrollment_ui import walk_to_review
from test_monkey import UNDER_AGE_NIK

from kiosk.config import SIMULATION_PATH, load_config
from kiosk.flow.machine import Step
from kiosk.staff import Desk

pytestmark = pytest.mark.ui

MIN_TARGET_MM = 9.0
SIMULATION_PIN_HASH = load_config(SIMULATION_PATH).operators["siti"]
# pixels per millimetre of each panel's active area
PANELS = {
    (800, 480): 800 / 154.08,  # Raspberry Pi Touch Display, 7 inch
    (1280, 800): 1280 / 216.96,  # common 10.1 inch HDMI touch panels
}


def touch_targets(root):
    """Visible, enabled widgets that react to a touch."""
    from kivy.uix.behaviors import ButtonBehavior

    for node in root.walk(restrict=True):
        if isinstance(node, ButtonBehavior) and node.opacity > 0 and not node.disabled:
            yield node


def check_screen(kiosk, size, seen):
    from kivy.core.window import Window

    kiosk.pump(0.05)
    px_per_mm = PANELS[size]
    screen = kiosk.screen
    targets = list(touch_targets(screen))
    assert targets, f"nothing to touch on {screen.name}"
    for widget in targets:
        name = getattr(widget, "text", "") or type(widget).__name__
        width_mm, height_mm = widget.width / px_per_mm, widget.height / px_per_mm
        assert min(width_mm, height_mm) >= MIN_TARGET_MM, (
            f"{screen.name}: {name!r} is {width_mm:.1f} x {height_mm:.1f} mm at {size}"
        )
        x, y = widget.to_window(widget.x, widget.y)
        assert x >= 0 and x + widget.width <= Window.width + 1, f"{name!r} leaves the screen"
        assert y >= 0 and y + widget.height <= Window.height + 1, f"{name!r} leaves the screen"
    seen.add(screen.name)


@pytest.mark.parametrize("size", list(PANELS), ids=lambda s: f"{s[0]}x{s[1]}")
def test_every_screen_fits_and_has_big_touch_targets(kiosk, size):
    from kivy.core.window import Window

    Window.size = size
    kiosk.attach(camera=("dark", "face"), signature=("blank",))
    kiosk.pump(0.2)
    seen: set[str] = set()
    shots = "wide-" if size == (1280, 800) else None
    walk_to_review(kiosk, "id", shots=shots, look=lambda k: check_screen(k, size, seen))
    check_screen(kiosk, size, seen)
    if shots:
        kiosk.screenshot("wide-08-review")
    kiosk.tap(kiosk.widget("save"))
    kiosk.wait_for_step(Step.DONE)
    check_screen(kiosk, size, seen)
    flow = kiosk.attach()
    flow.desk = Desk({"siti": SIMULATION_PIN_HASH, "budi": SIMULATION_PIN_HASH})
    flow.desk.on_duty = "siti"
    flow.start("id")
    flow.submit_nik(UNDER_AGE_NIK)
    kiosk.wait_for_step(Step.OPERATOR)
    check_screen(kiosk, size, seen)
    if shots is None:
        kiosk.screenshot("13-operator")
    assert seen == {str(step) for step in Step}
