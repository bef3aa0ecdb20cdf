"""USB (UVC) webcams through OpenCV's V4L2 capture.

A USB camera is found by its udev name under ``/dev/v4l/by-id``, e.g.
``usb-046d_HD_Pro_Webcam_C920_2B2B0A8F-video-index0``, which carries the
vendor, the product and (on most cameras) the serial. Configure a fragment of
that name, such as ``usb-046d_HD_Pro_Webcam_C920``, and a replacement of the
same model is found again whatever its serial and whichever /dev/videoN it got;
the new serial then tells the supervisor it is another unit. A full by-id path
means "this unit only"; a /dev/videoN path means "whatever is there".

Options (station config, ``[modules.camera]``, ``driver = "v4l2"``):

- ``device`` (""): a by-id name fragment (matched without regard to case), a
  by-id path, or a /dev/videoN path; "" takes the first USB camera in by-id
  order. Several matches: the first in sorted order is used, and logged.
- ``by_id_dir`` ("/dev/v4l/by-id"), ``by_path_dir`` ("/dev/v4l/by-path"):
  where udev puts its links; tests point them at a fake tree of symlinks.
- ``width`` (1280), ``height`` (720), ``fps`` (30): asked of the camera, which
  may pick the nearest mode it has (logged). Stills and preview share the
  stream: a UVC camera streams one size at a time.
- ``fourcc`` ("MJPG"): the stream's format; USB 2.0 cameras reach 720p at
  30 fps only compressed. "" keeps the camera's own choice.
- ``api`` ("v4l2"): OpenCV's V4L2 backend; "any" lets OpenCV choose, which
  also opens a video file (the tests' camera; its frames are marked simulated).
- ``still_s`` (5.0): a still's default deadline, in seconds.

Identity: the by-id name ``usb-<vendor>_<product>[_<serial>]-video-index0``
gives the model and serial (``serial_source`` "v4l-by-id"). udev joins vendor,
product and serial with "_" and writes spaces as "_" too, so the serial is
recognised by its look: the last word, if the name has three or more, of six
or more letters and digits with at least one digit. A camera without one is
known by its USB port from ``/dev/v4l/by-path`` (``serial_source``
"usb-port"), or else by its model name ("model-name"): then a replacement of
the same model looks like the same unit.

Frames come from OpenCV as B, G, R and leave as RGB. A read that fails (cable
pulled, end of a file) gives no frame; frames that stop make the camera FAILED
(see :mod:`kiosk.drivers.camera.stream`) and the supervisor reopens it, which
looks the camera up again. OpenCV waits up to 10 s for a frame from a stalled
camera; this backend sets ``OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT`` to 1 s (unless
already set) before its first read, so close() and stills are not held up.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

from kiosk.drivers.base import Frame, ModuleInfo, to_rgb
from kiosk.drivers.camera.stream import StreamingCamera
from kiosk.drivers.worker import Job
from kiosk.errors import DeviceFault, DeviceUnavailable, KioskError

log = logging.getLogger(__name__)

T = TypeVar("T")

APIS = {"v4l2": cv2.CAP_V4L2, "any": cv2.CAP_ANY}
INDEX0 = "-video-index0"  # the capture node; index1 is the metadata node of newer kernels
SELECT_TIMEOUT_S = 1  # OpenCV's wait for a frame from a stalled camera (default 10)
QUEUED_FRAMES = 4  # OpenCV's V4L2 buffers: frames that may wait, already old, in the queue
WAITED_S = 0.005  # a grab that took this long found the queue empty: its frame is fresh
MIN_SIDE, MAX_SIDE = 16, 8192
SERIAL = re.compile(r"(?=.*\d)[0-9A-Za-z]{6,}")


def parse_by_id_name(name: str) -> tuple[str, str]:
    """The model and serial ("" if none is recognised) in a by-id name such as
    ``usb-046d_HD_Pro_Webcam_C920_2B2B0A8F-video-index0``: ("046d HD Pro Webcam
    C920", "2B2B0A8F"). See the module's docstring for how the serial is told."""
    core = re.sub(r"-video-index\d+$", "", name).removeprefix("usb-")
    words = [word for word in core.split("_") if word]
    serial = ""
    if len(words) >= 3 and SERIAL.fullmatch(words[-1]):
        serial = words.pop()
    return " ".join(words) or core, serial


def model_fragment(name: str) -> str:
    """The part of a by-id name that every unit of the model shares: the name
    without its serial and node suffix (``usb-046d_HD_Pro_Webcam_C920``)."""
    core = re.sub(r"-video-index\d+$", "", name)
    _model, serial = parse_by_id_name(name)
    return core.removesuffix(f"_{serial}") if serial else core


def _positive_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
    return value


class V4l2Camera(StreamingCamera):
    """A USB webcam through OpenCV; see the module's docstring.

    Every OpenCV call is made on the camera's thread; :meth:`close` may come
    from any thread: a read in progress then releases the capture itself when it
    returns (at most SELECT_TIMEOUT_S later), since OpenCV must not release a
    capture another thread is reading::

        with V4l2Camera(device="usb-046d_HD_Pro_Webcam_C920") as camera:
            camera.start_preview()
            frame = camera.still().result()  # RGB
    """

    def __init__(
        self,
        *,
        device: str = "",
        by_id_dir: str | os.PathLike[str] = "/dev/v4l/by-id",
        by_path_dir: str | os.PathLike[str] = "/dev/v4l/by-path",
        width: int = 1280,
        height: int = 720,
        fps: float = 30.0,
        fourcc: str = "MJPG",
        api: str = "v4l2",
        still_s: float = 5.0,
    ) -> None:
        super().__init__(still_s=still_s)
        if not isinstance(device, str):
            raise ValueError(
                f"device must be a by-id name fragment or a device path, got {device!r}"
            )
        self.device = device
        for name, value in (("by_id_dir", by_id_dir), ("by_path_dir", by_path_dir)):
            if not isinstance(value, str | os.PathLike) or not os.fspath(value):
                raise ValueError(f"{name} must be a directory path, got {value!r}")
        self.by_id_dir = Path(by_id_dir)
        self.by_path_dir = Path(by_path_dir)
        self.width = _positive_int("width", width, MIN_SIDE, MAX_SIDE)
        self.height = _positive_int("height", height, MIN_SIDE, MAX_SIDE)
        if isinstance(fps, bool) or not isinstance(fps, int | float):
            raise ValueError(f"fps must be a number of frames per second, got {fps!r}")
        if not (math.isfinite(fps) and 0 < fps <= 240):
            raise ValueError(f"fps must be more than 0 and at most 240, got {fps!r}")
        self.fps = float(fps)
        if not isinstance(fourcc, str) or len(fourcc) not in (0, 4) or not fourcc.isascii():
            raise ValueError(f"fourcc must be four letters such as 'MJPG', or '', got {fourcc!r}")
        self.fourcc = fourcc
        if api not in APIS:
            raise ValueError(f"api must be one of {', '.join(APIS)}, got {api!r}")
        self.api = api
        self._cap: Any = None  # the cv2.VideoCapture while open
        self._state = threading.Lock()  # guards _cap and _reading against close()
        self._reading = False
        self._path: Path | None = None
        self._by_id_name: str | None = None
        self._last_read = 0.0
        self._failing_since: float | None = None
        self.read_failures = 0  # reads that gave no frame, since construction
        self._info = ModuleInfo(kind=self.kind, driver="v4l2", model="USB camera", serial="")

    def info(self) -> ModuleInfo:
        """The unit as found at the last open (placeholder before): no I/O."""
        return self._info

    # -- finding the camera ------------------------------------------------------------

    def _by_id_entries(self) -> list[str]:
        try:
            names = os.listdir(self.by_id_dir)
        except FileNotFoundError:
            return []
        # a link whose target is gone is a camera being unplugged
        return sorted(
            name
            for name in names
            if name.endswith(INDEX0) and os.path.exists(self.by_id_dir / name)
        )

    def _present(self) -> str:
        names = self._by_id_entries()
        if names:
            return ", ".join(names)
        if not self.by_id_dir.is_dir():
            return f"none ({self.by_id_dir} does not exist: no USB camera is plugged in)"
        return "none"

    def _find(self) -> tuple[Path, str | None]:
        """The device node to open and its by-id name (None if it has none).
        Raises DeviceUnavailable naming the cameras present."""
        device = self.device
        if os.sep in device:
            path = Path(device)
            in_by_id = path.parent == self.by_id_dir
            if not path.exists():
                hint = ""
                if in_by_id:
                    hint = (
                        "; to accept a replacement of the same model, set device = "
                        f"{model_fragment(path.name)!r}"
                    )
                raise DeviceUnavailable(
                    f"camera {device} is not there; USB cameras present: {self._present()}{hint}"
                )
            resolved = path.resolve()
            return resolved, path.name if in_by_id else self._name_in(self.by_id_dir, resolved)
        matches = [name for name in self._by_id_entries() if device.casefold() in name.casefold()]
        if not matches:
            wanted = f"matching {device!r}" if device else "at all"
            raise DeviceUnavailable(
                f"no USB camera {wanted} in {self.by_id_dir}; present: {self._present()}"
            )
        if len(matches) > 1:
            log.info("cameras matching %r: %s; using the first", device, ", ".join(matches))
        return (self.by_id_dir / matches[0]).resolve(), matches[0]

    @staticmethod
    def _name_in(directory: Path, target: Path) -> str | None:
        """The first link (sorted) in ``directory`` ending in INDEX0 that points at ``target``."""
        try:
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            return None
        for name in names:
            if name.endswith(INDEX0) and (directory / name).resolve() == target:
                return name
        return None

    def _identity(self, path: Path, by_id_name: str | None) -> ModuleInfo:
        simulated = path.is_file()  # a video file standing in for a camera (tests)
        port = self._name_in(self.by_path_dir, path)
        port = port.removesuffix(INDEX0) if port else None
        if by_id_name:
            model, serial = parse_by_id_name(by_id_name)
            source = "v4l-by-id"
            if not serial:
                serial, source = (port, "usb-port") if port else (model, "model-name")
        elif simulated:
            model, serial, source = "video file", path.name, "file"
        else:
            model = "V4L2 camera"
            serial, source = (port, "usb-port") if port else (str(path), "device-path")
        return ModuleInfo(
            kind=self.kind,
            driver="v4l2",
            model=model,
            serial=serial,
            firmware="",
            simulated=simulated,
            serial_source=source,
        )

    # -- lifecycle ------------------------------------------------------------------------

    def _open(self) -> None:
        """Find the camera (again: it may be a replacement), open it and ask for the
        size, rate and format. Raises DeviceUnavailable if it is absent or busy."""
        path, by_id_name = self._find()
        if self.api == "v4l2":
            os.environ.setdefault("OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT", str(SELECT_TIMEOUT_S))
        cap = cv2.VideoCapture(str(path), APIS[self.api])
        if not cap.isOpened():
            cap.release()
            named = f" ({by_id_name})" if by_id_name else ""
            raise DeviceUnavailable(
                f"OpenCV could not open {path}{named}: unplugged, busy in another program, "
                "or not a camera"
            )
        if self.api == "v4l2":
            if self.fourcc:
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc))
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            cap.set(cv2.CAP_PROP_FPS, self.fps)
            got = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
            if got != (self.width, self.height):
                log.info("%s gives %dx%d (asked %dx%d)", path, *got, self.width, self.height)
        self._path, self._by_id_name = path, by_id_name
        self._info = self._identity(path, by_id_name)
        self._last_read = 0.0
        self._failing_since = None
        with self._state:
            self._cap = cap
        log.info(
            "camera %s (%s %s) open at %s",
            self._info.model,
            self._info.serial_source,
            self._info.serial,
            path,
        )

    def _close(self) -> None:
        """Release the capture; any thread. A read in progress releases it instead."""
        super()._close()
        with self._state:
            cap, self._cap = self._cap, None
            reading = self._reading
        if cap is not None and not reading:
            cap.release()

    def _use(self, action: Callable[[Any], T]) -> T | None:
        """``action(capture)`` on the camera's thread; None if the camera is closed,
        before or during the action (a frame read then is dropped: it may show the
        previous citizen). If close() came during the action, the capture is released
        here, after it."""
        with self._state:
            cap = self._cap
            if cap is None:
                return None
            self._reading = True
        try:
            result = action(cap)
        finally:
            with self._state:
                self._reading = False
                orphaned = self._cap is not cap
            if orphaned:
                cap.release()
        return None if orphaned else result

    # -- frames -----------------------------------------------------------------------------

    def _grab_preview(self) -> np.ndarray | None:
        """The next frame as RGB; None if the read failed (counted) or the camera closed.
        Reads are spaced to the asked ``fps``, so a video file plays in real time."""
        interval = 1.0 / self.fps
        wait = self._last_read + 0.8 * interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last_read = time.monotonic()
        result = self._use(lambda cap: cap.read())
        if result is None:
            return None
        ok, image = result
        if not ok or image is None:
            self.read_failures += 1
            if self._failing_since is None:
                self._failing_since = time.monotonic()
                log.warning("no frame from %s (unplugged or stalled?)", self._path)
            time.sleep(interval)  # a pulled camera fails at once: do not spin
            return None
        if self._failing_since is not None:
            log.info("frames from %s again", self._path)
            self._failing_since = None
        return to_rgb(image, "BGR")

    def _take_still(self, job: Job[Frame]) -> np.ndarray:
        """The first frame captured after the still was asked for, as RGB.

        Frames already waiting in OpenCV's queue are dropped: a grab that returns
        at once found one; a grab that waited got a fresh frame.
        """
        for _ in range(QUEUED_FRAMES + 1):
            job.check()
            start = time.monotonic()
            grabbed = self._use(lambda cap: cap.grab())
            if grabbed is None:
                job.check()  # closed under us: cancelled
                raise DeviceUnavailable(f"camera {self._path} is closed")
            if not grabbed:
                raise DeviceUnavailable(f"no frame from {self._path} (unplugged or stalled?)")
            if time.monotonic() - start >= WAITED_S:
                break
        job.check()
        result = self._use(lambda cap: cap.retrieve())
        if result is None or not result[0] or result[1] is None:
            job.check()
            raise DeviceUnavailable(f"frame from {self._path} could not be decoded")
        return to_rgb(result[1], "BGR")

    # -- identity, self-test, errors -----------------------------------------------------------

    def _identify(self) -> ModuleInfo:
        path = self._path
        if path is None or self.closed:
            raise DeviceUnavailable("the camera is not open")
        name = self._by_id_name
        if name is None or (self.by_id_dir / name).resolve() != path:
            name = self._name_in(self.by_id_dir, path)
        self._info = self._identity(path, name)
        return self._info

    def _self_test(self) -> str:
        result = self._use(lambda cap: cap.read())
        if result is None:
            raise DeviceUnavailable("the camera is not open")
        ok, image = result
        if not ok or image is None:
            raise DeviceUnavailable(f"no frame from {self._path}")
        frame = Frame(to_rgb(image, "BGR"), self._info)  # the contract's checks
        height, width = frame.image.shape[:2]
        info = self._info
        return f"{info.model} ({info.serial}): frame {width}x{height} RGB from {self._path}"

    def _translate(self, exc: Exception) -> KioskError:
        """OpenCV's errors (cv2.error) as DeviceFault, OSError as DeviceUnavailable."""
        text = f"camera {self._path or self.device} (v4l2): {type(exc).__name__}: {exc}"
        if isinstance(exc, cv2.error):
            return DeviceFault(text)
        return super()._translate(exc)
