"""A simulated camera that serves sample photos by a script of named behaviours.

Behaviours, one per still, the last one repeating forever (the preview shows
what the next still will be):

- ``"face"``: a well framed frontal face (``samples/face.png``), passes the check;
- ``"no_face"``: a scene with nobody in it (``samples/no_face.png``);
- ``"dark"``: the face photo darkened to a grey mean of ~15;
- ``"fail"``: the camera does not answer (:class:`DeviceUnavailable`).

``fail_on_call=N`` makes the Nth still fail whatever the script says, like a
cable pulled mid-session::

    with FakeCamera(script=["dark", "face"], fail_on_call=3) as camera:
        camera.still().result()  # too dark
        camera.still().result()  # a good face
        camera.still().result()  # raises DeviceUnavailable
        camera.still().result()  # a good face again
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np

from kiosk.drivers.base import Frame, ModuleInfo, positive_seconds
from kiosk.drivers.camera.stream import StreamingCamera
from kiosk.drivers.scripted import BehaviourScript, simulated_info
from kiosk.drivers.worker import Job
from kiosk.errors import DeviceUnavailable

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


class FakeCamera(StreamingCamera):
    """Simulated camera: 640 x 480 RGB preview frames chosen by a script, and
    stills of the same scene at ``still_size`` (enlarged: a simulation adds no
    detail, a real camera's still has it).

    Options (all from the station config): ``script`` of behaviour names,
    ``fail_on_call`` (1-based), ``serial``, ``delay`` seconds per still to
    imitate a real camera's latency (a delay beyond the deadline raises
    CaptureTimeout, as a real camera would), ``still_s`` (the default
    deadline) and ``fps`` of the preview stream.
    """

    BEHAVIOURS: ClassVar[tuple[str, ...]] = ("face", "no_face", "dark", "fail")

    def __init__(
        self,
        *,
        script: Sequence[str] = ("face",),
        fail_on_call: int | None = None,
        serial: str = "SIM-CAM-0001",
        delay: float = 0.0,
        still_s: float = 5.0,
        fps: float = 30.0,
        still_size: Sequence[int] = (1280, 960),
    ) -> None:
        super().__init__(still_s=still_s)
        width, height = (int(v) for v in still_size)
        if width * FRAME_SHAPE[0] != height * FRAME_SHAPE[1] or not 640 <= width <= 4096:
            raise ValueError(f"still_size must be 4:3, 640 to 4096 px wide, got {still_size!r}")
        self.still_size = (width, height)
        self.still_scale = width / FRAME_SHAPE[1]
        self._script = BehaviourScript(script, self.BEHAVIOURS, fail_on_call)
        self._serial = serial
        self._delay = float(delay)
        self._frame_interval = 1.0 / positive_seconds("fps", fps)

    def info(self) -> ModuleInfo:
        return simulated_info(self.kind, "Rekam SimCam 640", self._serial)

    def _take_still(self, job: Job[Frame]) -> np.ndarray:
        with self._lock:
            behaviour, forced_failure = self._script.advance()
            call = self._script.calls
        if forced_failure:
            raise DeviceUnavailable(f"camera not answering (simulated failure on call {call})")
        image = self._image_for(behaviour)
        job.sleep(self._delay)  # CaptureTimeout if the delay runs past the deadline
        return cv2.resize(image, self.still_size, interpolation=cv2.INTER_CUBIC)

    def _grab_preview(self) -> np.ndarray | None:
        time.sleep(self._frame_interval)
        with self._lock:
            upcoming = self._script.peek()
        return None if upcoming == "fail" else self._image_for(upcoming)

    def _image_for(self, behaviour: str) -> np.ndarray:
        if behaviour == "fail":
            raise DeviceUnavailable("camera not answering (simulated)")
        if behaviour == "dark":
            return _dark_face()
        return _sample_rgb("face" if behaviour == "face" else "no_face")

    def _self_test(self) -> str:
        # Renders the upcoming behaviour without consuming it, so a supervisor's
        # self-test does not shift the script a test wrote for the citizen's stills.
        with self._lock:
            upcoming = self._script.peek()
        image = self._image_for(upcoming)
        if image.shape != FRAME_SHAPE or image.dtype != np.uint8:
            raise ValueError(f"frame is {image.shape} {image.dtype}, expected {FRAME_SHAPE} uint8")
        return f"frame {image.shape[1]}x{image.shape[0]} RGB ({upcoming}, simulated)"
