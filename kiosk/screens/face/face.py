"""Face photo: a live mirror of the camera with the guidance of every frame, the
photo taken by itself once the citizen holds a good pose, then the e-KTP portrait
shown for the citizen's yes (Dukcapil asks the citizen to accept the photo)."""

import logging
from pathlib import Path
from typing import Any

import numpy as np
from kivy.clock import Clock
from kivy.properties import BooleanProperty

from kiosk.flow.machine import CaptureResult, Step
from kiosk.screens.base import CapturingScreen, moves_forward, on_this_step, texture_from_array

log = logging.getLogger(__name__)

PREVIEW_FPS = 25  # polls the camera's latest frame; shows each new one once


class FaceScreen(CapturingScreen):
    step = Step.FACE
    kv = Path(__file__).with_suffix(".kv")
    confirming = BooleanProperty(False)  # the portrait is shown, waiting for yes or retake
    officer_can_decide = BooleanProperty(False)  # tries ran out on a photo with a face

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._live = None  # the preview's clock event while the screen shows
        self._camera = None  # the unit streaming to us (supervision may swap it)
        self._texture = None  # one texture, refilled with every new frame
        self.frame_at = 0.0  # when the frame on screen was taken (time.time())
        self.frames_shown = 0

    def capture(self) -> CaptureResult:
        return self.flow.capture_face()

    def gives_up(self, result: CaptureResult) -> bool:
        return result.fault is not None or result.tries_left == 0

    def holds(self) -> bool:
        return self.flow.face_pending is not None

    def show_preview(self, image: np.ndarray) -> None:
        pass  # the live preview shows the citizen; the portrait shows once accepted

    def refresh(self) -> None:
        flow = self.flow
        pending = flow.face_pending
        if pending is not None and not self.confirming:
            self.ids.portrait.texture = texture_from_array(pending.image)
        self.confirming = pending is not None
        desk = flow.desk
        self.officer_can_decide = bool(
            flow.tries_left == 0
            and flow.face_for_officer is not None
            and flow.fault is None
            and desk is not None
            and desk.operators
        )
        super().refresh()
        if not self.needs_help and not self.confirming:
            self.problem = flow.problem or ""  # the live guidance, frame by frame

    @moves_forward
    def accept_photo(self) -> None:
        self.flow.accept_face()

    @on_this_step
    def retake_photo(self) -> None:
        self.flow.retake_face()
        super().try_again()

    @on_this_step
    def try_again(self) -> None:
        self.flow.retry_face()
        super().try_again()

    @moves_forward
    def ask_officer(self) -> None:
        """No photo passes (a condition of the face, glasses that stay on): the
        officer looks at the last one and may accept it."""
        self.flow.ask_officer_about_face()

    def entered(self) -> None:
        super().entered()
        self.confirming = False
        self.ids.portrait.texture = None
        self._camera = None
        self.frame_at = 0.0
        if self._live is None:
            self._live = Clock.schedule_interval(self._show_live, 1 / PREVIEW_FPS)

    def on_leave(self, *args: Any) -> None:
        if self._live is not None:
            self._live.cancel()
            self._live = None
        self._stop_stream()
        super().on_leave(*args)

    def _show_live(self, _dt: float) -> None:
        camera = self.flow.modules.camera
        if camera is not self._camera:  # first frame, or a swapped camera
            self._stop_stream()
            try:
                camera.start_preview()
            except Exception as exc:  # down: supervision handles it, the still says so
                log.warning("no live preview: %s", exc)
                return
            self._camera = camera
        frame = camera.latest_frame()
        if frame is None or frame.captured_at == self.frame_at:
            return
        self.frame_at = frame.captured_at
        # a mirror: people move the way they expect to see themselves move
        self._texture = texture_from_array(frame.image[:, ::-1], self._texture)
        preview = self.ids.preview
        if preview.texture is self._texture:
            preview.canvas.ask_update()
        else:
            preview.texture = self._texture
        self.frames_shown += 1

    def _stop_stream(self) -> None:
        camera, self._camera = self._camera, None
        if camera is not None:
            try:
                camera.stop_preview()
            except Exception as exc:
                log.warning("stopping the preview: %s", exc)
