"""What every screen shares: access to the flow, translation, images, and
running device calls off the UI thread.

A screen shows ``app.flow`` and forwards touches to it; it never decides where
the enrollment goes next. ``refresh()`` is called on the UI thread after every
change of the flow while the screen is shown.

Quick taps must not carry over from one screen to the next: a screen ignores a
touch that began before it was shown, and a button that moves the enrollment
on (``@moves_forward``) ignores input that began within ``TOUCH_GUARD_S`` of
the screen (or dialog) appearing.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from kivy.app import App
from kivy.clock import Clock
from kivy.graphics.texture import Texture
from kivy.lang import Builder
from kivy.properties import BooleanProperty, NumericProperty, StringProperty
from kivy.uix.gridlayout import GridLayout
from kivy.uix.modalview import ModalView
from kivy.uix.screenmanager import Screen

from kiosk.drivers.worker import Job
from kiosk.errors import FlowError
from kiosk.flow.machine import STEP_MODULE, CaptureResult, EnrollmentFlow, Step

log = logging.getLogger(__name__)
_loaded: set[Path] = set()
# how long one flow capture may block the capture thread: longer than any device's
# own deadline (a finger's wait plus its transfer), so the device's answer wins
CAPTURE_LIMIT_S = 120.0
TOUCH_GUARD_S = 0.4  # longer than a double tap, shorter than reading a button's label


def load_kv(path: Path) -> None:
    """Load a .kv file once (a second load would duplicate its rules)."""
    if path not in _loaded:
        Builder.load_file(str(path))
        _loaded.add(path)


def texture_from_array(image: np.ndarray, texture: Texture | None = None) -> Texture:
    """A GPU texture of an RGB (HxWx3) or grayscale (HxW) uint8 image: ``texture``
    itself when its size and format fit (a live preview makes no texture per frame)."""
    height, width = image.shape[:2]
    colorfmt = "rgb" if image.ndim == 3 else "luminance"
    if texture is None or texture.size != (width, height) or texture.colorfmt != colorfmt:
        texture = Texture.create(size=(width, height), colorfmt=colorfmt)
        texture.flip_vertical()  # numpy rows run top-down, OpenGL's bottom-up
    texture.blit_buffer(np.ascontiguousarray(image).tobytes(), colorfmt=colorfmt, bufferfmt="ubyte")
    return texture


def in_background(work: Callable[[], Any], then: Callable[[Any], None]) -> None:
    """Run ``work()`` on the app's one capture thread, then ``then(result)`` on the
    UI thread. If the flow moved on meanwhile (FlowError), or ``work`` failed in a
    way the flow did not turn into a result (a bug: logged), ``then(None)``."""

    def run(_job: Job) -> Any:
        try:
            return work()
        except FlowError:
            return None
        except Exception:
            log.exception("a capture failed outside the flow's own handling")
            return None

    def finished(done: Job) -> None:  # on the capture thread
        result = None if done.exception() is not None else done.result()
        Clock.schedule_once(lambda _dt: then(result))

    job = App.get_running_app().captures.submit(run, deadline_s=CAPTURE_LIMIT_S, name="capture")
    job.add_done_callback(finished)


def on_this_step(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Make a touch handler do nothing once the flow has left the screen's step:
    a second quick tap can arrive before the screen has changed."""

    @functools.wraps(handler)
    def guarded(self: KioskScreen, *args: Any) -> Any:
        if self.flow.step is self.step:
            return handler(self, *args)
        return None

    return guarded


def moves_forward(handler: Callable[..., Any]) -> Callable[..., Any]:
    """``on_this_step``, and ignore input that began too soon after the screen
    appeared: it was meant for the screen before."""

    @functools.wraps(handler)
    def guarded(self: KioskScreen, *args: Any) -> Any:
        if self.flow.step is self.step and self.input_began - self.shown_at >= TOUCH_GUARD_S:
            return handler(self, *args)
        return None

    return guarded


class TouchGuard:
    """Mixin for a widget that appears over others (a screen, a dialog): it
    swallows touches that began before it appeared, and remembers when the
    latest input began (``input_began``, on the touch clock, ``time.time()``)."""

    shown_at = 0.0
    input_began = 0.0

    def mark_shown(self) -> None:
        self.shown_at = time.time()

    def note_key(self) -> None:
        """A key was pressed: it counts as input beginning now."""
        self.input_began = time.time()

    def on_touch_down(self, touch: Any) -> bool:
        if touch.time_start < self.shown_at:
            return True
        self.input_began = touch.time_start
        return super().on_touch_down(touch)

    def on_touch_move(self, touch: Any) -> bool:
        if touch.time_start < self.shown_at:
            return True
        return super().on_touch_move(touch)

    def on_touch_up(self, touch: Any) -> bool:
        if touch.time_start < self.shown_at:
            return True
        return super().on_touch_up(touch)

    def settled(self) -> bool:
        """The latest input began long enough after this appeared to be meant for it."""
        return self.input_began - self.shown_at >= TOUCH_GUARD_S


class DigitKeypad(GridLayout):
    """Digits 0-9, 'back' and 'ok' in a 3x4 grid (rule in common.kv); a key
    dispatches ``on_key(key)``."""

    __events__ = ("on_key",)
    ok_text = StringProperty("OK")

    def press(self, key: str) -> None:
        self.dispatch("on_key", key)

    def on_key(self, key: str) -> None:
        pass


class KioskScreen(TouchGuard, Screen):
    """Base of every enrollment screen; subclasses set ``step`` and ``kv``."""

    step: ClassVar[Step]
    kv: ClassVar[Path]

    @property
    def app(self) -> Any:
        return App.get_running_app()

    @property
    def flow(self) -> EnrollmentFlow:
        return self.app.flow

    def t(self, key: str, **values: object) -> str:
        return self.app.t(key, self.app.language, **values)

    def entered(self) -> None:
        """The flow has just moved to this screen's step."""

    def refresh(self) -> None:
        """Show the flow's current state."""


class KioskDialog(TouchGuard, ModalView):
    """A question over the screen. While it is open the flow is paused (no
    capture moves the enrollment on behind it); its buttons ignore touches that
    began before it appeared or within the guard time (``@settled_only``)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("auto_dismiss", False)
        super().__init__(**kwargs)
        self._flow: EnrollmentFlow | None = None

    def on_pre_open(self) -> None:
        self.mark_shown()
        self._flow = App.get_running_app().flow
        self._flow.pause()

    def on_dismiss(self) -> None:
        flow, self._flow = self._flow, None
        if flow is not None:
            flow.resume()


def settled_only(handler: Callable[..., Any]) -> Callable[..., Any]:
    """A dialog button's handler that ignores input meant for what was there before."""

    @functools.wraps(handler)
    def guarded(self: KioskDialog, *args: Any) -> Any:
        return handler(self, *args) if self.settled() else None

    return guarded


class CancelDialog(KioskDialog):
    """Asks before dropping an enrollment: one stray touch must not lose it."""

    @settled_only
    def keep(self) -> None:
        self.dismiss()

    @settled_only
    def confirm(self) -> None:
        self.dismiss()
        App.get_running_app().flow.cancel()


class StillHereDialog(KioskDialog):
    """ "Still there?" with the seconds left before the session is dropped; any
    touch answers it (the app tells the flow), the big button is for clarity."""

    seconds_left = NumericProperty(0)

    def answer(self) -> None:
        App.get_running_app().flow.touch()


class CapturingScreen(KioskScreen):
    """A screen that captures by itself, again and again, until the flow moves
    on or the citizen needs help (then a 'try again' button restarts it).

    When its module fails the screen waits, saying so; when supervision brings
    the module back (the flow's fault clears) it goes on by itself, and while
    the module stays down the button offers to go on without it.
    """

    problem = StringProperty("")  # i18n key of the latest guidance
    needs_help = BooleanProperty(False)
    module_down = BooleanProperty(False)  # supervision has this step's module down
    pause_after_success_s = 0.8  # let the citizen see it worked
    pause_after_problem_s = 0.6  # time to read the guidance and adjust
    pause_after_error_s = 1.0  # a capture failed outside the flow: never spin on it

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._visit = 0  # a callback from an earlier visit is ignored
        self._looping = False  # a capture is scheduled or running
        self._waiting_for_module = False  # stopped on a module fault

    def capture(self) -> CaptureResult:
        """One blocking capture through the flow (runs on a worker thread)."""
        raise NotImplementedError

    def gives_up(self, result: CaptureResult) -> bool:
        """Stop capturing by itself after this result?"""
        return result.fault is not None

    def holds(self) -> bool:
        """Wait for the citizen (e.g. to say yes to a photo) instead of capturing?"""
        return False

    def show_preview(self, image: np.ndarray) -> None:
        self.ids.preview.texture = texture_from_array(image)

    def entered(self) -> None:
        self._visit += 1
        self._looping = False
        self.ids.preview.texture = None  # never show the previous citizen's picture
        self.problem = ""
        self.needs_help = False
        self._waiting_for_module = False
        self._schedule(0)

    def refresh(self) -> None:
        flow = self.flow
        kind = STEP_MODULE[self.step]
        self.module_down = flow.fault is kind and kind in flow.down
        if flow.fault is kind and not self.needs_help:  # went down while capturing
            self.problem = flow.problem or ""
            self.needs_help = self._waiting_for_module = True
        elif self._waiting_for_module and flow.fault is None:  # back: go on by itself
            self.needs_help = self._waiting_for_module = False
            self.problem = ""
        # a dialog that paused the captures has closed: go on where we were
        if not self._looping and not self.needs_help and not flow.paused and not self.holds():
            self._schedule(0)

    def help_button(self) -> None:
        """The button under the guidance: go on without a module that stays down,
        else try again."""
        if self.module_down:
            self.skip_missing()
        else:
            self.try_again()

    @moves_forward
    def skip_missing(self) -> None:
        with contextlib.suppress(FlowError):  # the module came back meanwhile
            self.flow.skip_missing()

    def on_leave(self, *_args: Any) -> None:
        self._visit += 1
        self._looping = False

    @on_this_step
    def try_again(self) -> None:
        self.needs_help = False
        self.problem = ""
        if not self._looping:
            self._schedule(0)

    def _schedule(self, delay: float) -> None:
        visit = self._visit
        self._looping = True
        Clock.schedule_once(lambda _dt: self._start(visit), delay)

    def _start(self, visit: int) -> None:
        if visit != self._visit:
            return  # an earlier visit's loop: this visit runs its own
        flow = self.flow
        if (
            self.needs_help
            or self.holds()
            or flow.paused
            or flow.step is not self.step
            or self.manager.current != self.name
        ):
            self._looping = False  # refresh() starts it again when it may go on
            return
        in_background(self.capture, lambda result: self._captured(visit, result))

    def _captured(self, visit: int, result: CaptureResult | None) -> None:
        if visit != self._visit:
            return
        if result is None:
            self._schedule(self.pause_after_error_s)
            return
        if result.stale:
            self._looping = False
            self.refresh()  # goes on unless a dialog is still open
            return
        if result.preview is not None:
            self.show_preview(result.preview)
        if result.accepted:
            self.problem = ""
            self._schedule(self.pause_after_success_s)
            return
        self.problem = result.problem or ""
        if self.gives_up(result):
            self.needs_help = True
            self._waiting_for_module = result.fault is not None
            self._looping = False
        else:
            self._schedule(self.pause_after_problem_s)
