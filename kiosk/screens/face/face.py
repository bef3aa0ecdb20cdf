"""Face photo: taken automatically once the quality check passes."""

from pathlib import Path

from kiosk.flow.machine import CaptureResult, Step
from kiosk.screens.base import CapturingScreen, on_this_step


class FaceScreen(CapturingScreen):
    step = Step.FACE
    kv = Path(__file__).with_suffix(".kv")

    def capture(self) -> CaptureResult:
        return self.flow.capture_face()

    def gives_up(self, result: CaptureResult) -> bool:
        return result.fault is not None or result.tries_left == 0

    @on_this_step
    def try_again(self) -> None:
        self.flow.retry_face()
        super().try_again()
