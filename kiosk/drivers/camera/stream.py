"""What every camera backend shares: a preview stream and stills on the camera's thread.

Like picamera2's two streams: a small preview ("lores") streamed while the
screen shows it, and a full-resolution still ("main") taken as a job between
preview frames. A backend fills in four hooks::

    class MyCamera(StreamingCamera):
        def _open(self): ...                      # acquire the device
        def _close(self): ...                     # release it (any thread)
        def _grab_preview(self) -> np.ndarray | None: ...  # next RGB frame, blocking
                                                  # at most about one frame interval
        def _take_still(self, job) -> np.ndarray: ...      # one RGB photo by job's deadline

Health is judged from the preview's frame age: frames that stop arriving make
the camera FAILED, which is the supervisor's cue to close and reopen it.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np

from kiosk.drivers.base import (
    Frame,
    Health,
    HealthStatus,
    ModuleBase,
    ModuleKind,
    positive_seconds,
)
from kiosk.drivers.worker import Job

STALE_AFTER_S = 2.0  # a preview frame older than this: the camera has stopped


class StreamingCamera(ModuleBase):
    """A camera with a preview stream (latest frame and its age) and stills with a deadline.

    Option ``still_s``: the default deadline of a still, in seconds.
    """

    kind: ClassVar[ModuleKind] = ModuleKind.CAMERA
    idle_work: ClassVar[bool] = True  # the camera's thread streams preview frames when idle
    still_scale: float = 1.0  # a still's width over a preview frame's (backends set it)

    def __init__(self, *, still_s: float = 5.0) -> None:
        super().__init__()
        self.still_s = positive_seconds("still_s", still_s)
        self._latest: Frame | None = None
        self._streaming_since: float | None = None

    def start_preview(self) -> None:
        """Stream preview frames on the camera's thread; returns at once."""
        with self._lock:
            self._check_open()
            if self._streaming_since is None:
                self._streaming_since = time.time()
        self._set_idling(True)

    def stop_preview(self) -> None:
        with self._lock:
            self._streaming_since = None
        self._set_idling(False)

    @property
    def previewing(self) -> bool:
        return self._streaming_since is not None

    def latest_frame(self) -> Frame | None:
        return self._latest

    def still(self, deadline_s: float | None = None) -> Job[Frame]:
        deadline = self.still_s if deadline_s is None else deadline_s
        return self._run("still", lambda job: Frame(self._take_still(job), self.info()), deadline)

    def _idle(self) -> Any:
        try:
            image = self._grab_preview()
        except Exception as exc:
            self._count(self._translate(exc))
            raise  # the worker logs it and backs off a second
        if image is not None and not self.closed:  # never a frame from before a reopen
            self._latest = Frame(image, self.info())

    def _health(self) -> Health:
        since = self._streaming_since
        if since is None:
            return Health(HealthStatus.OK, "preview stopped")
        latest = self._latest
        age = time.time() - max(since, latest.captured_at if latest else since)
        if age > STALE_AFTER_S:
            return Health(HealthStatus.FAILED, f"no preview frame for {age:.1f} s")
        return Health(HealthStatus.OK, f"preview frame {age * 1000:.0f} ms old")

    def _close(self) -> None:
        self._streaming_since = None
        self._latest = None  # never show the previous citizen's face after a reopen

    def _grab_preview(self) -> np.ndarray | None:
        raise NotImplementedError

    def _take_still(self, job: Job[Frame]) -> np.ndarray:
        raise NotImplementedError
