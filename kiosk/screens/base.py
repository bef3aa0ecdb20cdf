"""What every screen shares: access to the flow, translation, images, and
running device calls off the UI thread.

A screen shows ``app.flow`` and forwards touches to it; it never decides where
the enrollment goes next. ``refresh()`` is called on the UI thread after every
change of the flow while the screen is shown.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from kivy.app import App
from kivy.clock import Clock
from kivy.graphics.texture import Texture
from kivy.lang import Builder
from kivy.properties import BooleanProperty, StringProperty
from kivy.uix.modalview import ModalView
from kivy.uix.screenmanager import Screen

from kiosk.errors import FlowError
from kiosk.flow.machine import CaptureResult, EnrollmentFlow, Step

_loaded: set[Path] = set()


def load_kv(path: Path) -> None:
    """Load a .kv file once (a second load would duplicate its rules)."""
    if path not in _loaded:
        Builder.load_file(str(path))
        _loaded.add(path)


def texture_from_array(image: np.ndarray) -> Texture:
    """A GPU texture of an RGB (HxWx3) or grayscale (HxW) uint8 image."""
    height, width = image.shape[:2]
    colorfmt = "rgb" if image.ndim == 3 else "luminance"
    texture = Texture.create(size=(width, height), colorfmt=colorfmt)
    # rows are stored top-down in numpy, bottom-up in OpenGL
    texture.blit_buffer(
        np.ascontiguousarray(image[::-1]).tobytes(), colorfmt=colorfmt, bufferfmt="ubyte"
    )
    return texture


def in_background(work: Callable[[], Any], then: Callable[[Any], None]) -> None:
    """Run ``work()`` on a worker thread, then ``then(result)`` on the UI thread.

    If the flow moved on meanwhile (FlowError), ``then(None)``; any other error
    is raised again on the UI thread, where Kivy reports it.
    """

    def run() -> None:
        try:
            result = work()
        except FlowError:
            result = None
        except Exception as exc:
            error = exc

            def fail(_dt: float) -> None:
                raise error

            Clock.schedule_once(fail)
            return
        Clock.schedule_once(lambda _dt: then(result))

    threading.Thread(target=run, name="device-call", daemon=True).start()


def on_this_step(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Make a touch handler do nothing once the flow has left the screen's step:
    a second quick tap can arrive before the screen has changed."""

    @functools.wraps(handler)
    def guarded(self: KioskScreen, *args: Any) -> Any:
        if self.flow.step is self.step:
            return handler(self, *args)
        return None

    return guarded


class KioskScreen(Screen):
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


class CancelDialog(ModalView):
    """Asks before dropping an enrollment: one stray touch must not lose it."""

    def confirm(self) -> None:
        self.dismiss()
        App.get_running_app().flow.cancel()


class CapturingScreen(KioskScreen):
    """A screen that captures by itself, again and again, until the flow moves
    on or the citizen needs help (then a 'try again' button restarts it)."""

    problem = StringProperty("")  # i18n key of the latest guidance
    needs_help = BooleanProperty(False)
    pause_after_success_s = 0.8  # let the citizen see it worked (and lift the finger)
    pause_after_problem_s = 0.6  # time to read the guidance and adjust

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._visit = 0  # a callback from an earlier visit is ignored

    def capture(self) -> CaptureResult:
        """One blocking capture through the flow (runs on a worker thread)."""
        raise NotImplementedError

    def gives_up(self, result: CaptureResult) -> bool:
        """Stop capturing by itself after this result?"""
        return result.fault is not None

    def show_preview(self, image: np.ndarray) -> None:
        self.ids.preview.texture = texture_from_array(image)

    def entered(self) -> None:
        self._visit += 1
        self.ids.preview.texture = None  # never show the previous citizen's picture
        self.problem = ""
        self.needs_help = False
        self._schedule(0)

    def on_leave(self, *_args: Any) -> None:
        self._visit += 1

    @on_this_step
    def try_again(self) -> None:
        self.needs_help = False
        self.problem = ""
        self._schedule(0)

    def _schedule(self, delay: float) -> None:
        visit = self._visit
        Clock.schedule_once(lambda _dt: self._start(visit), delay)

    def _start(self, visit: int) -> None:
        if visit == self._visit and not self.needs_help and self.manager.current == self.name:
            in_background(self.capture, lambda result: self._captured(visit, result))

    def _captured(self, visit: int, result: CaptureResult | None) -> None:
        if visit != self._visit or result is None or result.stale:
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
        else:
            self._schedule(self.pause_after_problem_s)
