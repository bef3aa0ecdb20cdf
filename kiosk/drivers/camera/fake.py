"""A simulated camera that serves sample photos by a script of named behaviours.

Behaviours, one per capture call, the last one repeating forever:

- ``"face"``: a well framed frontal face (``samples/face.png``), passes the check;
- ``"no_face"``: a scene with nobody in it (``samples/no_face.png``);
- ``"dark"``: the face photo darkened to a grey mean of ~15;
- ``"fail"``: the camera does not answer (:class:`DeviceUnavailable`).

``fail_on_call=N`` makes the Nth capture call fail whatever the script says,
like a cable pulled mid-session::

    with FakeCamera(script=["dark", "face"], fail_on_call=3) as camera:
        camera.capture(timeout=2.0)  # too dark
        camera.capture(timeout=2.0)  # a good face
        camera.capture(timeout=2.0)  # raises DeviceUnavailable
        camera.capture(timeout=2.0)  # a good face again
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np

from kiosk.drivers.base import Frame, Health, HealthStatus, ModuleBase, ModuleInfo, ModuleKind
from kiosk.drivers.scripted import BehaviourScript, simulate_latency, simulated_info
from kiosk.errors import CaptureTimeout, DeviceUnavailable

SAMPLES = Path(__file__).parent / "samples"
FRAME_SHAPE = (480, 640, 3)
DARK_MEAN = 15.0  # grey mean of the "dark" frame: a room with the light off


@cache
def _sample_rgb(name: str) -> np.ndarray:
    path = SAMPLES / f"{name}.png"
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"sample image {path} is missing or unreadable")
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    rgb.flags.writeable = False  # cached and shared: every frame gets its own copy
    return rgb


@cache
def _dark_face() -> np.ndarray:
    face = _sample_rgb("face")
    mean = float(cv2.cvtColor(face, cv2.COLOR_RGB2GRAY).mean())
    dark = cv2.convertScaleAbs(face, alpha=DARK_MEAN / mean)
    dark.flags.writeable = False
    return dark


class FakeCamera(ModuleBase):
    """Simulated camera: 640 x 480 RGB sample frames chosen by a script.

    Options (all from the station config): ``script`` of behaviour names,
    ``fail_on_call`` (1-based), ``serial``, and ``delay`` seconds per capture
    to imitate a real camera's latency (a delay beyond the timeout raises
    CaptureTimeout, as a real camera would).
    """

    kind: ClassVar[ModuleKind] = ModuleKind.CAMERA
    BEHAVIOURS: ClassVar[tuple[str, ...]] = ("face", "no_face", "dark", "fail")

    def __init__(
        self,
        *,
        script: Sequence[str] = ("face",),
        fail_on_call: int | None = None,
        serial: str = "SIM-CAM-0001",
        delay: float = 0.0,
    ) -> None:
        super().__init__()
        self._script = BehaviourScript(script, self.BEHAVIOURS, fail_on_call)
        self._serial = serial
        self._delay = float(delay)

    def info(self) -> ModuleInfo:
        return simulated_info(self.kind, "Rekam SimCam 640", self._serial)

    def capture(self, timeout: float) -> Frame:
        """One frame for the next behaviour of the script."""
        with self._lock:
            self._check_open()
            behaviour, forced_failure = self._script.advance()
            call = self._script.calls
        if forced_failure:
            raise DeviceUnavailable(f"camera not answering (simulated failure on call {call})")
        image = self._image_for(behaviour)
        # Sleeps outside the lock, so close() from another thread is never held up.
        if not simulate_latency(self._delay, timeout):
            raise CaptureTimeout(f"camera gave no frame within {timeout} s (simulated)")
        self._check_open()  # closed while the frame was on its way
        return Frame(image=image.copy(), module=self.info())

    def _image_for(self, behaviour: str) -> np.ndarray:
        if behaviour == "fail":
            raise DeviceUnavailable("camera not answering (simulated)")
        if behaviour == "dark":
            return _dark_face()
        return _sample_rgb("face" if behaviour == "face" else "no_face")

    def _health(self) -> Health:
        with self._lock:
            upcoming = self._script.peek()
        if upcoming == "fail":
            return Health(HealthStatus.FAILED, "camera not answering (simulated)")
        return Health(HealthStatus.OK)

    def _self_test(self) -> str:
        # Renders the upcoming behaviour without consuming it, so a supervisor's
        # self-test does not shift the script a test wrote for the citizen's captures.
        with self._lock:
            upcoming = self._script.peek()
        image = self._image_for(upcoming)
        if image.shape != FRAME_SHAPE or image.dtype != np.uint8:
            raise ValueError(f"frame is {image.shape} {image.dtype}, expected {FRAME_SHAPE} uint8")
        return f"frame {image.shape[1]}x{image.shape[0]} RGB ({upcoming}, simulated)"
