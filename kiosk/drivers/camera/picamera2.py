"""Raspberry Pi camera modules (CSI: Camera Module 2 and 3, HQ) through picamera2.

picamera2 is imported when the camera is opened, never when the kiosk is
imported: on a PC without it, ``open()`` raises DeviceUnavailable saying how to
install it. It needs picamera2 0.3.20 or newer (July 2024: a ``wait=`` that
times out, ``cancel_all_and_flush``), which Raspberry Pi OS Bookworm ships as
``python3-picamera2``; a virtualenv sees it only if made with
``--system-site-packages``.

One configuration, built once at open, never switched::

    main  = still_size   RGB888  (B, G, R in memory)   the photo
    lores = preview_size YUV420  (full-range, I420)    the screen's preview

Both streams come from every frame the ISP makes, so the still is simply the
next frame's ``main``: no mode switch (which takes several frames, restarts
exposure and white balance, and can leave the camera half switched if it times
out), no second allocation of buffers (picamera2's close/reopen and CMA memory
troubles: picamera2#887, #958), the same framing on the screen as in the photo
(``lores`` is scaled from the same picture; both sizes must have the same
shape), and the exposure the preview settled on. The cost is an ISP writing
``main`` every frame: at the default 1640 x 1232 that is 6 MB per buffer, about
26 MB of CMA for picamera2's four preview buffers. ``lores`` must be YUV on a
Pi 4 and earlier; a Pi 5 also takes ``XBGR8888`` and the other RGB formats.
``queue=False`` makes every capture wait for a frame that completes after it
was asked for, so a still is never an older frame.

Options (station config, ``[modules.camera]``, ``driver = "picamera2"``):

- ``camera_num`` (0): libcamera's camera number, as ``Picamera2(camera_num)``.
- ``preview_size`` ([640, 480]): the preview stream, width and height.
- ``still_size`` ([1640, 1232]): the photo; 1640 x 1232 is the 2x2-binned full
  field of the Camera Module 2 (imx219) and a 4:3 crop of the Module 3's
  (imx708) binned 2304 x 1296 mode: plenty for an ID photo, fast, and small.
- ``preview_format`` ("YUV420"): of the preview stream; see above.
- ``still_s`` (5.0): a still's default deadline, in seconds.
- ``picamera2_factory`` (None): for Python callers only (tests): a callable
  taking ``camera_num`` and returning a Picamera2-like object; None imports
  ``picamera2.Picamera2``.

Identity: the model is the sensor's name (``camera_properties["Model"]``, e.g.
"imx219", "imx708_wide"). CSI modules carry no serial that libcamera reads, so
the serial is the camera's libcamera id, the port it is plugged into (e.g.
"/base/soc/i2c0mux/i2c@1/imx708@1a"), with ``serial_source`` "csi-port": a
replacement of the same model on the same port looks like the same unit, which
is a known limit of this backend.

Frames that stop arriving (a loose ribbon cable) make the camera FAILED (see
:mod:`kiosk.drivers.camera.stream`); the supervisor then closes it and opens
it again, which makes a new Picamera2 object. ``close()`` is bounded even when
picamera2's ``stop()`` hangs on a camera that is gone (picamera2#1065).
"""

from __future__ import annotations

import concurrent.futures
import errno
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np

from kiosk.drivers.base import Frame, ModuleInfo, to_rgb
from kiosk.drivers.camera.stream import StreamingCamera
from kiosk.drivers.worker import Job
from kiosk.errors import CaptureCancelled, CaptureTimeout, DeviceUnavailable, KioskError

log = logging.getLogger(__name__)

STILL_FORMAT = "RGB888"  # picamera2's name: B, G, R in memory, as OpenCV's
PREVIEW_FORMATS = ("YUV420", "XBGR8888", "XRGB8888", "RGB888", "BGR888")  # packed: to_rgb
PREVIEW_WAIT_S = 0.25  # > 3 frames at the preview's slowest 12 fps; then a preview grab gives up
WAIT_SLICE_S = 0.05  # how often a waiting capture looks at its job's cancel and deadline
RELEASE_TIMEOUT_S = 3.0  # how long close() waits for picamera2's stop() and close()
MIN_SIDE, MAX_SIDE = 64, 8192
SAME_SHAPE = 0.02  # preview and still aspect ratios may differ by this fraction
INSTALL_HINT = (
    "picamera2 is not installed: on a Raspberry Pi install python3-picamera2 "
    "and create the venv with --system-site-packages"
)


def _size(name: str, value: object) -> tuple[int, int]:
    """A ``[width, height]`` option as two even ints, or a ValueError naming the option."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"{name} must be [width, height], got {value!r}")
    width, height = value
    for side in (width, height):
        if isinstance(side, bool) or not isinstance(side, int):
            raise ValueError(f"{name} must be two whole numbers of pixels, got {value!r}")
        if not MIN_SIDE <= side <= MAX_SIDE or side % 2:
            raise ValueError(
                f"{name} sides must be even numbers from {MIN_SIDE} to {MAX_SIDE}, got {value!r}"
            )
    return width, height


def yuv420_to_rgb(buffer: np.ndarray, width: int, height: int) -> np.ndarray:
    """A picamera2 YUV420 buffer (``height * 3 / 2`` rows of ``stride`` bytes, planar
    Y, U, V with full-range BT.601 values, the preview's "sYCC") as RGB H x W x 3.

    The U and V planes are half the width and height, their rows ``stride / 2``
    bytes. OpenCV's own I420 conversion assumes video range (Y from 16), which
    would stretch the contrast, so the chroma is upsampled and converted with
    OpenCV's full-range YCrCb.
    """
    rows, stride = buffer.shape
    if buffer.dtype != np.uint8 or rows != height * 3 // 2 or stride < width:
        raise ValueError(
            f"a {width} x {height} YUV420 buffer is {height * 3 // 2} rows of at least "
            f"{width} bytes, got {buffer.shape} {buffer.dtype}"
        )
    luma = buffer[:height, :width]
    chroma = buffer[height:].reshape(-1)
    plane = (height // 2) * (stride // 2)
    u = chroma[:plane].reshape(height // 2, stride // 2)[:, : width // 2]
    v = chroma[plane : 2 * plane].reshape(height // 2, stride // 2)[:, : width // 2]
    full = (width, height)
    ycrcb = cv2.merge(
        [
            np.ascontiguousarray(luma),
            cv2.resize(v, full, interpolation=cv2.INTER_LINEAR),
            cv2.resize(u, full, interpolation=cv2.INTER_LINEAR),
        ]
    )
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)


def _import_picamera2() -> Callable[..., Any]:
    try:
        from picamera2 import Picamera2
    except ImportError as exc:
        raise DeviceUnavailable(f"{INSTALL_HINT} ({exc})") from exc
    return Picamera2


class Picamera2Camera(StreamingCamera):
    """A Raspberry Pi camera module through picamera2; see the module's docstring.

    Every picamera2 call is made on the camera's thread, except the flush and
    release in :meth:`close`, which may come from any thread::

        with Picamera2Camera(still_size=[1640, 1232]) as camera:
            camera.start_preview()
            frame = camera.still().result()  # RGB, 1232 x 1640 x 3
    """

    def __init__(
        self,
        *,
        camera_num: int = 0,
        preview_size: Sequence[int] = (640, 480),
        still_size: Sequence[int] = (1640, 1232),
        preview_format: str = "YUV420",
        still_s: float = 5.0,
        picamera2_factory: Callable[[int], Any] | None = None,
    ) -> None:
        super().__init__(still_s=still_s)
        if isinstance(camera_num, bool) or not isinstance(camera_num, int) or camera_num < 0:
            raise ValueError(f"camera_num must be a whole number from 0, got {camera_num!r}")
        self.camera_num = camera_num
        self.preview_size = _size("preview_size", preview_size)
        self.still_size = _size("still_size", still_size)
        self.still_scale = self.still_size[0] / self.preview_size[0]
        (pw, ph), (sw, sh) = self.preview_size, self.still_size
        if pw > sw or ph > sh:
            raise ValueError(
                f"preview_size {pw}x{ph} must not be larger than still_size {sw}x{sh} "
                "(picamera2's preview stream may not exceed the main one)"
            )
        if abs((pw / ph) / (sw / sh) - 1) > SAME_SHAPE:
            raise ValueError(
                f"preview_size {pw}x{ph} and still_size {sw}x{sh} must have the same shape: "
                "the preview is scaled from the still's picture, another shape stretches it"
            )
        if preview_format not in PREVIEW_FORMATS:
            raise ValueError(
                f"preview_format must be one of {', '.join(PREVIEW_FORMATS)}, "
                f"got {preview_format!r}"
            )
        self.preview_format = preview_format
        if picamera2_factory is not None and not callable(picamera2_factory):
            raise ValueError(
                "picamera2_factory must be a callable returning a Picamera2 (Python callers "
                f"only), got {picamera2_factory!r}"
            )
        self._factory = picamera2_factory
        self._camera: Any = None  # the Picamera2 object while open
        self._camera_lock = threading.Lock()  # guards _camera against close() from any thread
        self._main_size = self.still_size  # as picamera2 configured them
        self._lores_size = self.preview_size
        self._info = ModuleInfo(
            kind=self.kind, driver="picamera2", model="Raspberry Pi camera", serial=""
        )

    def info(self) -> ModuleInfo:
        """The module as read at the last open (placeholder before): no I/O."""
        return self._info

    # -- lifecycle -----------------------------------------------------------------

    def _open(self) -> None:
        """Make a Picamera2, configure it (see the module) and start it streaming.

        Raises DeviceUnavailable: picamera2 missing or too old, no camera at
        ``camera_num``, the camera busy or refusing the configuration.
        """
        factory = self._factory or _import_picamera2()
        try:
            camera = factory(self.camera_num)
        except IndexError as exc:  # Picamera2 indexes global_camera_info() by camera_num
            raise DeviceUnavailable(
                f"no Raspberry Pi camera number {self.camera_num}: {self._cameras_found(factory)}"
            ) from exc
        try:
            if not hasattr(camera, "cancel_all_and_flush"):
                raise DeviceUnavailable(
                    "picamera2 is too old: 0.3.20 or newer is needed for captures with a "
                    "deadline (sudo apt install --only-upgrade python3-picamera2)"
                )
            self._configure(camera)
            camera.start()
            info = self._read_identity(camera)
        except BaseException:
            self._release(camera)
            raise
        with self._camera_lock:
            self._camera = camera
        self._info = info
        log.info(
            "camera %s (%s) open: still %dx%d %s, preview %dx%d %s",
            info.model,
            info.serial,
            *self._main_size,
            STILL_FORMAT,
            *self._lores_size,
            self.preview_format,
        )

    def _configure(self, camera: Any) -> None:
        config = camera.create_preview_configuration(
            main={"size": self.still_size, "format": STILL_FORMAT},
            lores={"size": self.preview_size, "format": self.preview_format},
            display=None,  # no preview window: the kiosk's screen draws the frames
            queue=False,  # every capture waits for a frame completed after it was asked
        )
        try:
            camera.configure(config)
        except RuntimeError as exc:
            hint = ""
            if self.preview_format != "YUV420":
                hint = "; a Pi 4 and earlier take only preview_format = 'YUV420'"
            raise DeviceUnavailable(
                f"picamera2 refused still {self.still_size[0]}x{self.still_size[1]} "
                f"{STILL_FORMAT} with preview {self.preview_size[0]}x{self.preview_size[1]} "
                f"{self.preview_format}: {exc}{hint}"
            ) from exc
        configured = camera.camera_configuration()
        self._main_size = tuple(configured["main"]["size"])
        self._lores_size = tuple(configured["lores"]["size"])
        if self._main_size != self.still_size or self._lores_size != self.preview_size:
            log.info(
                "picamera2 adjusted the sizes: still %s, preview %s",
                self._main_size,
                self._lores_size,
            )

    def _close(self) -> None:
        """Flush picamera2's queue (which frees a capture waiting on the camera's
        thread), then stop and close it, bounded by RELEASE_TIMEOUT_S. Any thread."""
        super()._close()
        with self._camera_lock:
            camera, self._camera = self._camera, None
        if camera is not None:
            self._flush(camera)
            self._release(camera)

    def _release(self, camera: Any) -> None:
        """stop() then close(), each guarded, on a named thread joined for at most
        RELEASE_TIMEOUT_S: stop() never returns on some cameras that are gone."""

        def release() -> None:
            for step in ("stop", "close"):
                try:
                    getattr(camera, step)()
                except Exception as exc:
                    log.warning("picamera2 %s() failed: %s: %s", step, type(exc).__name__, exc)

        name = f"camera-picamera2-{self.camera_num}-release"
        thread = threading.Thread(target=release, name=name, daemon=True)
        thread.start()
        thread.join(RELEASE_TIMEOUT_S)
        if thread.is_alive():
            log.error(
                "picamera2 did not stop within %s s (camera cable out?); left behind, the "
                "camera may stay busy until the kiosk restarts",
                RELEASE_TIMEOUT_S,
            )

    @staticmethod
    def _flush(camera: Any) -> None:
        """Cancel and drop picamera2's queued jobs, so none is left behind a timeout."""
        try:
            camera.cancel_all_and_flush()
        except Exception as exc:
            log.warning("picamera2 cancel_all_and_flush() failed: %s: %s", type(exc).__name__, exc)

    # -- frames --------------------------------------------------------------------

    def _capture(
        self, camera: Any, stream: str, timeout_s: float, job: Job[Any] | None = None
    ) -> np.ndarray:
        """One frame of ``stream`` (picamera2 copies it out and releases the request
        at once), waiting at most ``timeout_s`` and, with a job, no longer than it
        allows. Raises CaptureTimeout or CaptureCancelled; a wait that ends without a
        frame is flushed from picamera2's queue."""
        pending = camera.capture_array(stream, wait=False)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                left = deadline - time.monotonic()
                try:
                    return pending.get_result(timeout=max(0.0, min(WAIT_SLICE_S, left)))
                except TimeoutError:
                    pass
                if job is not None:
                    job.check()
                if time.monotonic() >= deadline:
                    raise CaptureTimeout(
                        f"camera {self.camera_num}: no {stream} frame within {timeout_s:g} s"
                    )
        except BaseException:
            self._flush(camera)
            raise

    def _grab_preview(self) -> np.ndarray | None:
        """The next preview frame as RGB, or None if none came within PREVIEW_WAIT_S
        (StreamingCamera's health then sees the frames stop) or the camera closed."""
        camera = self._camera
        if camera is None:
            return None
        try:
            buffer = self._capture(camera, "lores", PREVIEW_WAIT_S)
        except (CaptureTimeout, concurrent.futures.CancelledError):
            return None  # flushed; a close() flushes too
        except Exception:
            if self._camera is not camera:
                return None  # closed under the wait: not a fault of the camera
            raise
        if self._camera is not camera:
            return None  # closed meanwhile: never show this frame after a reopen
        return self._preview_rgb(buffer)

    def _preview_rgb(self, buffer: np.ndarray) -> np.ndarray:
        width, height = self._lores_size
        if self.preview_format == "YUV420":
            return yuv420_to_rgb(buffer, width, height)
        return to_rgb(buffer, self.preview_format)

    def _take_still(self, job: Job[Frame]) -> np.ndarray:
        """The next frame's main stream as RGB, by the job's deadline."""
        camera = self._camera
        if camera is None:
            job.check()  # closed: cancelled
            raise DeviceUnavailable(f"camera {self.camera_num} is not open")
        buffer = self._capture(camera, "main", job.remaining(), job)
        return to_rgb(buffer, STILL_FORMAT)

    # -- identity, self-test, errors ---------------------------------------------------

    def _read_identity(self, camera: Any) -> ModuleInfo:
        model = str(camera.camera_properties.get("Model") or "unknown sensor")
        cameras = camera.global_camera_info()
        port = str(cameras[self.camera_num].get("Id", "")) if self.camera_num < len(cameras) else ""
        return ModuleInfo(
            kind=self.kind,
            driver="picamera2",
            model=model,
            serial=port,
            firmware="",
            simulated=getattr(camera, "simulated", False) is True,  # a test's stand-in says so
            serial_source="usb-port" if "/usb" in port else "csi-port",
        )

    def _identify(self) -> ModuleInfo:
        camera = self._camera
        if camera is None:
            raise DeviceUnavailable(f"camera {self.camera_num} is not open")
        self._info = self._read_identity(camera)
        return self._info

    def _self_test(self) -> str:
        camera = self._camera
        if camera is None:
            raise DeviceUnavailable(f"camera {self.camera_num} is not open")
        image = to_rgb(self._capture(camera, "main", self.still_s), STILL_FORMAT)
        preview = self._preview_rgb(self._capture(camera, "lores", self.still_s))
        Frame(image, self._info)  # the contract's checks: ValueError if broken
        Frame(preview, self._info)
        return (
            f"{self._info.model} at {self._info.serial}: still {image.shape[1]}x{image.shape[0]}"
            f" RGB, preview {preview.shape[1]}x{preview.shape[0]} from {self.preview_format}"
        )

    def _translate(self, exc: Exception) -> KioskError:
        """picamera2's errors as ours: a timed-out wait is CaptureTimeout, a flushed one
        CaptureCancelled, RuntimeError (its word for most faults) DeviceUnavailable."""
        text = f"camera {self.camera_num} (picamera2): {type(exc).__name__}: {exc}"
        if exc.__cause__ is not None:  # "Camera __init__ sequence did not complete" says little
            text += f" ({type(exc.__cause__).__name__}: {exc.__cause__})"
        if isinstance(exc, TimeoutError):
            return CaptureTimeout(text)
        if isinstance(exc, concurrent.futures.CancelledError):
            return CaptureCancelled(text)
        if isinstance(exc, OSError) and exc.errno == errno.ENOMEM:
            return DeviceUnavailable(
                f"{text}; out of camera (CMA) memory: use a smaller still_size, or give the "
                "kernel more CMA (dtoverlay=vc4-kms-v3d,cma-512 in config.txt)"
            )
        if isinstance(exc, RuntimeError | OSError):
            return DeviceUnavailable(text)
        return super()._translate(exc)

    @staticmethod
    def _cameras_found(factory: Any) -> str:
        listing = getattr(factory, "global_camera_info", None)
        try:
            cameras = listing() if callable(listing) else None
        except Exception as exc:
            return f"listing cameras failed ({type(exc).__name__}: {exc})"
        if cameras is None:
            return "cameras unknown"
        if not cameras:
            return "no camera found (is the ribbon cable seated, the right way round?)"
        found = (f"{n}: {c.get('Model', '?')} at {c.get('Id', '?')}" for n, c in enumerate(cameras))
        return f"found {', '.join(found)}"
