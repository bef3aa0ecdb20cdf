"""A stand-in for the part of picamera2's ``Picamera2`` that the kiosk's backend uses.

libcamera cannot run on a PC, so this is the one mock the camera tests accept:
it fakes the transport (picamera2's surface), not the driver. It keeps
picamera2's behaviour where the driver depends on it:

- frames come from a thread at ``fps``; a capture is a job that completes with
  the first frame after it was submitted (``queue=False``), one job per frame;
- ``wait=False`` returns the job, ``wait=<seconds>`` raises TimeoutError after
  that long, ``cancel_all_and_flush()`` fails queued jobs with CancelledError;
- buffers come in picamera2's memory layouts, made from the rig's RGB test image:
  "RGB888" is B, G, R; "XBGR8888" is R, G, B, X; "YUV420" is planar full-range
  Y, U, V with each row padded to a stride of 64;
- ``configure`` refuses what picamera2 refuses (odd sizes, lores larger than
  main, a non-YUV lores on a Pi 4).

A :class:`CameraRig` is "the Pi and its cable": the factory the driver calls
(``picamera2_factory=rig``), the test image, scripted faults and the counts::

    rig = CameraRig(image=red)
    camera = Picamera2Camera(picamera2_factory=rig)
    rig.stall()            # frames stop arriving (a loose cable)
    rig.flushes            # how often the driver flushed picamera2's queue
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any

import cv2
import numpy as np

# What each packed format holds in memory, in picamera2's (DRM) names.
LAYOUTS = {"RGB888": "BGR", "BGR888": "RGB", "XBGR8888": "RGBX", "XRGB8888": "BGRX"}
YUV_STRIDE_ALIGN = 64


def _pattern(width: int = 640, height: int = 480) -> np.ndarray:
    """Four quadrants, RGB: red, green / blue, white."""
    image = np.zeros((height, width, 3), np.uint8)
    h, w = height // 2, width // 2
    image[:h, :w] = (255, 0, 0)
    image[:h, w:] = (0, 255, 0)
    image[h:, :w] = (0, 0, 255)
    image[h:, w:] = (255, 255, 255)
    return image


def encode(rgb: np.ndarray, fmt: str, size: tuple[int, int]) -> np.ndarray:
    """``rgb`` scaled to ``size`` as picamera2's ``make_array`` would return it in ``fmt``."""
    width, height = size
    scaled = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    if fmt in LAYOUTS:
        channels = {"R": scaled[..., 0], "G": scaled[..., 1], "B": scaled[..., 2]}
        alpha = np.full((height, width), 255, np.uint8)
        return np.dstack([channels.get(c, alpha) for c in LAYOUTS[fmt]])
    if fmt == "YUV420":
        stride = -(-width // YUV_STRIDE_ALIGN) * YUV_STRIDE_ALIGN
        ycrcb = cv2.cvtColor(scaled, cv2.COLOR_RGB2YCrCb)  # full range, as sYCC
        y = ycrcb[..., 0]
        half = (width // 2, height // 2)
        v = cv2.resize(ycrcb[..., 1], half, interpolation=cv2.INTER_AREA)
        u = cv2.resize(ycrcb[..., 2], half, interpolation=cv2.INTER_AREA)
        out = np.zeros((height * 3 // 2, stride), np.uint8)
        out[:height, :width] = y
        chroma = out[height:].reshape(-1)
        plane = (height // 2) * (stride // 2)
        u_rows = chroma[:plane].reshape(height // 2, stride // 2)
        v_rows = chroma[plane : 2 * plane].reshape(height // 2, stride // 2)
        u_rows[:, : width // 2] = u
        v_rows[:, : width // 2] = v
        return out
    raise RuntimeError(f"Format {fmt} not supported")


class StandinJob:
    """picamera2's Job: a future the caller waits on, with a timeout."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self._future: concurrent.futures.Future = concurrent.futures.Future()
        self._future.set_running_or_notify_cancel()

    def get_result(self, timeout: float | None = None) -> Any:
        return self._future.result(timeout=timeout)

    def cancel(self) -> None:
        if not self._future.done():
            self._future.set_exception(concurrent.futures.CancelledError())


class CameraRig:
    """The camera world of one test: the factory, the picture, faults and counts."""

    def __init__(
        self,
        image: np.ndarray | None = None,
        *,
        model: str = "imx708",
        camera_id: str = "/base/soc/i2c0mux/i2c@1/imx708@1a",
        fps: float = 60.0,
        platform: str = "vc4",
    ) -> None:
        self.image = _pattern() if image is None else image
        self.model = model
        self.cameras = [{"Model": model, "Location": 2, "Rotation": 180, "Id": camera_id, "Num": 0}]
        self.fps = fps
        self.platform = platform  # "vc4" (Pi 4 and earlier) or "pisp" (Pi 5)
        # scripted faults
        self.init_error: str | None = None  # RuntimeError from Picamera2(...)
        self.start_error: str | None = None  # RuntimeError from start()
        self.stop_hangs = threading.Event()  # stop() blocks until release_stop()
        self._stop_released = threading.Event()
        self._stalled = threading.Event()  # no frames from any instance
        # counts
        self.instances: list[StandinPicamera2] = []
        self.closes = 0
        self.flushes = 0
        self.frames = 0

    # -- the factory (picamera2_factory=rig) -----------------------------------------

    def __call__(self, camera_num: int = 0) -> StandinPicamera2:
        if self.init_error:
            raise RuntimeError("Camera __init__ sequence did not complete.") from RuntimeError(
                self.init_error
            )
        info = self.global_camera_info()[camera_num]  # IndexError, as Picamera2's
        camera = StandinPicamera2(self, info)
        self.instances.append(camera)
        return camera

    def global_camera_info(self) -> list[dict[str, Any]]:
        return [dict(camera) for camera in self.cameras]

    # -- faults ---------------------------------------------------------------------

    def stall(self, *, until_reopen: bool = False) -> None:
        """Frames stop arriving: for good (a cable out), or only on the camera open now
        (a wedged pipeline that a new Picamera2 recovers from)."""
        if until_reopen:
            self.instances[-1].stalled = True
        else:
            self._stalled.set()

    def resume(self) -> None:
        self._stalled.clear()

    def release_stop(self) -> None:
        self._stop_released.set()

    # -- what the tests look at -------------------------------------------------------------

    @property
    def current(self) -> StandinPicamera2:
        return self.instances[-1]

    @property
    def open_cameras(self) -> int:
        return sum(1 for camera in self.instances if not camera.closed)

    def queued(self, stream: str | None = None) -> int:
        """Jobs waiting in picamera2's queues, of one stream ("main", "lores") or all."""
        return sum(
            1
            for camera in self.instances
            for job in list(camera.jobs)
            if stream is None or job.stream == stream
        )


class StandinPicamera2:
    """One Picamera2 object: only what the backend calls."""

    simulated = True  # the backend marks its frames simulated

    def __init__(self, rig: CameraRig, info: dict[str, Any]) -> None:
        self.rig = rig
        self.camera_properties = {"Model": info["Model"], "Location": 2, "Rotation": 180}
        self.config: dict[str, Any] | None = None
        self.jobs: list[StandinJob] = []
        self.lock = threading.Lock()
        self.started = False
        self.closed = False
        self.stalled = False
        self.starts = self.stops = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._cache: dict[tuple[int, str, tuple[int, int]], np.ndarray] = {}

    def global_camera_info(self) -> list[dict[str, Any]]:
        return self.rig.global_camera_info()  # a static method on Picamera2

    # -- configuration ------------------------------------------------------------------

    def create_preview_configuration(
        self,
        main: dict | None = None,
        lores: dict | None = None,
        raw: dict | None = None,
        buffer_count: int = 4,
        display: str | None = "main",
        encode: str | None = "main",
        queue: bool = True,
        **_: Any,
    ) -> dict[str, Any]:
        main_stream = {"format": "XBGR8888", "size": (640, 480)} | dict(main or {})
        lores_stream = None
        if lores is not None:
            lores_stream = {"format": "YUV420", "size": main_stream["size"]} | dict(lores)
        return {
            "use_case": "preview",
            "buffer_count": buffer_count,
            "queue": queue,
            "main": main_stream,
            "lores": lores_stream,
            "display": display,
            "encode": encode,
        }

    def configure(self, config: dict[str, Any]) -> None:
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        for name in ("main", "lores"):
            stream = config.get(name)
            if stream is None:
                continue
            size = stream["size"]
            if type(size) is not tuple or len(size) != 2:
                raise RuntimeError(f"size in {name} stream should be (width, height)")
            if size[0] % 2 or size[1] % 2:
                raise RuntimeError("width and height should be even")
            if stream["format"] not in (*LAYOUTS, "YUV420"):
                raise RuntimeError(f"Bad format {stream['format']} in stream {name}")
        lores = config.get("lores")
        if lores is not None:
            (mw, mh), (lw, lh) = config["main"]["size"], lores["size"]
            if lw > mw or lh > mh:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            if self.rig.platform == "vc4" and lores["format"] != "YUV420":
                raise RuntimeError("lores stream must be YUV")
        self.config = config

    def camera_configuration(self) -> dict[str, Any]:
        return self.config or {}

    # -- running ------------------------------------------------------------------------------

    def start(self) -> None:
        if self.rig.start_error:
            raise RuntimeError(self.rig.start_error)
        if self.config is None:
            raise RuntimeError("Camera has not been configured")
        if self.started:
            return
        self.started = True
        self.starts += 1
        self._stopping.clear()
        self._thread = threading.Thread(target=self._frames, name="standin-picamera2", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self.rig.stop_hangs.is_set():
            self.rig._stop_released.wait(30.0)
        if not self.started:
            return
        self.stops += 1
        self.started = False
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2.0)

    def close(self) -> None:
        if self.closed:
            return
        self.stop()
        self.closed = True
        self.rig.closes += 1

    # -- jobs -------------------------------------------------------------------------------

    def capture_array(self, name: str = "main", wait: Any = None, signal_function: Any = None):
        if self.closed:
            raise RuntimeError("Camera is closed")
        if self.config is None or self.config.get(name) is None:
            raise RuntimeError(f"Stream {name!r} is not defined")
        job = StandinJob(name)
        with self.lock:
            self.jobs.append(job)
        if wait is False:
            return job
        return job.get_result(timeout=None if wait in (None, True) else wait)

    def cancel_all_and_flush(self) -> None:
        self.rig.flushes += 1
        with self.lock:
            jobs, self.jobs = self.jobs, []
        for job in jobs:
            job.cancel()

    def _frames(self) -> None:
        interval = 1.0 / self.rig.fps
        while not self._stopping.wait(interval):
            if self.stalled or self.rig._stalled.is_set():
                continue
            self.rig.frames += 1
            with self.lock:  # one job per frame, as picamera2 hands one request per job
                job = self.jobs.pop(0) if self.jobs else None
            if job is not None and not job._future.done():
                job._future.set_result(self._buffer(job.stream))

    def _buffer(self, name: str) -> np.ndarray:
        assert self.config is not None
        stream = self.config[name]
        key = (id(self.rig.image), stream["format"], tuple(stream["size"]))
        if key not in self._cache:
            self._cache[key] = encode(self.rig.image, stream["format"], stream["size"])
        return self._cache[key].copy()  # make_array copies the buffer out
