"""Drive the real Kivy window in-process: offscreen SDL (Mesa llvmpipe) when
there is no X display, a real window when there is one.

One window serves the whole session (Kivy has one window per process); each
test attaches a fresh flow on fresh fake modules.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("KIVY_NO_ARGS", "1")
os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
os.environ.setdefault("KIVY_NO_FILELOG", "1")
os.environ["KIVY_HOME"] = tempfile.mkdtemp(prefix="kivy-home-")  # no user config leaks in
if not os.environ.get("DISPLAY"):
    os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")

import pytest
from support import FakeClock, fake_modules, test_sealer

from kiosk.config import SessionConfig
from kiosk.flow.machine import EnrollmentFlow, Step
from kiosk.store.sqlite import EnrollmentStore

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
FIXED_DATE = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)


def looks_the_same(new: Path, old: Path) -> bool:
    """Two screenshots a person could not tell apart: rendering noise (a pixel
    or two of antialiasing) does not rewrite a committed picture."""
    import cv2
    import numpy as np

    if not old.exists():
        return False
    a, b = cv2.imread(str(new)), cv2.imread(str(old))
    if a is None or b is None or a.shape != b.shape:
        return False
    # each pixel is compared with its old place and the 8 around it: a line of text
    # laid out one pixel over (Kivy rounds a centred line by the run's layout history)
    # is the same picture; a changed word or colour is not
    padded = cv2.copyMakeBorder(b, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
    height, width = a.shape[:2]
    nearest = None
    for dy in range(3):
        for dx in range(3):
            shifted = padded[dy : dy + height, dx : dx + width]
            distance = cv2.absdiff(a, shifted).max(axis=2)
            nearest = distance if nearest is None else np.minimum(nearest, distance)
    return (nearest > 24).mean() < 0.001


class Kiosk:
    """The running app, with hands (tap, draw, type) and eyes (texts, screenshot)."""

    def __init__(self, app) -> None:
        from kivy.base import EventLoop

        self.app = app
        self.loop = EventLoop

    # -- time ---------------------------------------------------------------

    def pump(self, seconds: float = 0.05) -> None:
        """Let the UI run for ``seconds`` of real time (at least one frame)."""
        end = time.monotonic() + seconds
        self.loop.idle()
        while time.monotonic() < end:
            self.loop.idle()

    def wait_for(
        self, condition: Callable[[], bool], timeout: float = 15.0, what: str = ""
    ) -> None:
        end = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > end:
                raise AssertionError(
                    f"timed out waiting for {what or condition}; on screen "
                    f"{self.screen.name!r}: {self.texts()}"
                )
            self.loop.idle()

    def accept_photo(self) -> None:
        """Wait for the portrait the face screen shows for a yes, and say yes."""
        self.wait_for_step(Step.FACE)
        self.wait_for(lambda: not self.widget("accept_photo").disabled, what="the portrait")
        self.tap(self.widget("accept_photo"))

    def wait_for_step(self, step: Step, timeout: float = 15.0) -> None:
        self.wait_for(
            lambda: self.screen.name == step and self.flow.step is step, timeout, f"step {step}"
        )
        self.pump(0.1)

    # -- eyes ---------------------------------------------------------------

    @property
    def flow(self) -> EnrollmentFlow:
        return self.app.flow

    @property
    def screen(self):
        return self.app.root.current_screen

    def widget(self, widget_id: str):
        """A widget of the current screen (or its top bar) by its kv id."""
        for node in self.screen.walk(restrict=True):
            if widget_id in getattr(node, "ids", {}):
                return node.ids[widget_id]
        raise AssertionError(f"no widget {widget_id!r} on screen {self.screen.name!r}")

    def texts(self, root=None) -> list[str]:
        """Every non-empty, visible label text on the current screen or ``root``."""
        from kivy.uix.label import Label

        found = []
        for node in (root or self.screen).walk(restrict=True):
            if isinstance(node, Label) and node.text.strip() and node.opacity > 0:
                found.append(node.text)
        return found

    def shows(self, text: str) -> bool:
        return any(text in shown for shown in self.texts())

    def shows_in(self, root, text: str) -> bool:
        """``text`` is on ``root`` (a dialog, which lives outside the screen)."""
        return any(text in shown for shown in self.texts(root))

    def screenshot(self, name: str) -> Path:
        from kivy.core.window import Window

        self.pump(0.15)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        target = SCREENSHOTS / f"{name}.png"
        fresh = SCREENSHOTS / f".{name}.new.png"
        if len(Window.children) > 1:  # a dialog is open: only the window holds it
            Path(Window.screenshot(name=str(fresh))).replace(fresh)
        else:
            # renders the screens into their own framebuffer: right at any window
            # size, where the offscreen window keeps its first size
            self.app.root.export_to_png(str(fresh))
        if looks_the_same(fresh, target):
            fresh.unlink()  # a run that changed nothing leaves git clean
        else:
            fresh.replace(target)
        return target

    # -- hands --------------------------------------------------------------

    def tap(self, widget, settle: float = 0.05, patient: bool = True) -> None:
        """Tap ``widget``; ``patient`` waits out the guard time of the screen or
        dialog it is on first, as a person who reads before touching would."""
        if patient:
            self.wait_guard(widget)
            # a touch is stamped with its frame's start (Kivy's Clock): a touch made in
            # the frame that showed the screen would count as begun before it
            self.loop.idle()
        self.tap_at(*widget.to_window(*widget.center), settle=settle)

    def wait_guard(self, widget) -> None:
        from kiosk.screens.base import TOUCH_GUARD_S, TouchGuard

        node = widget
        while node is not None and node.parent is not node and not isinstance(node, TouchGuard):
            node = node.parent
        if isinstance(node, TouchGuard):
            remaining = node.shown_at + TOUCH_GUARD_S - time.time()
            if remaining > 0:
                self.pump(remaining + 0.02)

    def tap_at(self, x: float, y: float, settle: float = 0.05) -> None:
        from kivy.tests.common import UnitTestTouch

        touch = UnitTestTouch(x, y)
        touch.touch_down()
        self.loop.idle()
        touch.touch_up()
        self.pump(settle)

    def draw(self, widget, points: list[tuple[float, float]]) -> None:
        """Draw one stroke through ``points`` (0..1 of the widget, y up)."""
        from kivy.tests.common import UnitTestTouch

        def at(p):
            return widget.to_window(widget.x + p[0] * widget.width, widget.y + p[1] * widget.height)

        touch = UnitTestTouch(*at(points[0]))
        touch.touch_down()
        self.loop.idle()
        for point in points[1:]:
            touch.touch_move(*at(point))
            self.loop.idle()
        touch.touch_up()
        self.pump(0.05)

    def type_nik(self, digits: str) -> None:
        for digit in digits:
            self.tap(self._key(digit), settle=0)

    def _key(self, label: str):
        from kivy.uix.button import Button

        for node in self.widget("keypad").children:
            if isinstance(node, Button) and node.text == label:
                return node
        raise AssertionError(f"no key {label!r}")


@pytest.fixture(scope="session")
def running_app(tmp_path_factory) -> Iterator:
    from kiosk.app import KioskApp

    store = EnrollmentStore(tmp_path_factory.mktemp("ui"), test_sealer("UI-01"))
    flow = EnrollmentFlow(station_id="UI-01", modules=fake_modules(), sink=store)
    app = KioskApp(flow)
    app._run_prepare()  # builds the root and opens the window without blocking
    yield app
    app.stop()
    store.close()


@pytest.fixture
def kiosk(running_app, tmp_path) -> Iterator[Kiosk]:
    """The kiosk at its welcome screen with a new flow; kiosk.attach(**options)
    swaps in other fake behaviours."""
    from kivy.core.window import Window

    harness = Kiosk(running_app)
    stores = []

    def attach(
        clock=None, session=None, station_id="UI-01", desk=None, **options
    ) -> EnrollmentFlow:
        store = EnrollmentStore(tmp_path / f"store-{len(stores)}", test_sealer(station_id))
        stores.append(store)
        flow = EnrollmentFlow(
            station_id=station_id,
            modules=fake_modules(**options),
            sink=store,
            session=session or SessionConfig(),
            clock=clock or time.monotonic,
            wall_clock=lambda: FIXED_DATE,  # the same receipt in every screenshot
            desk=desk,
        )
        running_app.attach(flow)
        harness.store = store
        harness.wait_for_step(Step.WELCOME)
        return flow

    harness.attach = attach
    Window.size = (800, 480)
    attach()
    yield harness
    running_app.flow.modules.close()
    for store in stores:
        store.close()


__all__ = ["FakeClock", "Kiosk"]
