"""The driver contracts: one Protocol per kind of module, plus result and health types.

Every backend (fake, emulator or real) satisfies one of these Protocols. Results
are frozen dataclasses holding plain numpy arrays and bytes, never vendor
objects. Expected outcomes are :class:`Outcome` values; faults are exceptions
from :mod:`kiosk.errors`.

Device calls run on the device's own thread (:mod:`kiosk.drivers.worker`):
capture calls return a :class:`~kiosk.drivers.worker.Job` at once, which the
caller waits on (``job.result()``, bounded by the job's deadline) or cancels.
Deadlines come from the driver's options (the station config), so the flow
holds no timing constants of its own.

A backend subclasses :class:`ModuleBase`, which owns the lifecycle (open,
idempotent close from any thread, context manager, closed-guard), the device's
thread, the one boundary where vendor errors become ours, and the facts health
is judged from::

    with FakeCamera(script=["dark", "face"]) as camera:
        frame = camera.still().result()
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import numpy as np

from kiosk.drivers.worker import DeviceWorker, Job
from kiosk.errors import (
    CaptureCancelled,
    CaptureTimeout,
    DeviceClosed,
    DeviceFault,
    DeviceUnavailable,
    KioskError,
)
from kiosk.quality.inputs import require_aspect, require_frame, require_print, require_strokes


class ModuleKind(enum.StrEnum):
    CAMERA = "camera"
    FINGERPRINT = "fingerprint"
    SIGNATURE = "signature"
    INDICATORS = "indicators"


class Outcome(enum.StrEnum):
    """Expected results of a capture call; faults are exceptions instead."""

    CAPTURED = "captured"
    NO_FINGER = "no_finger"
    NO_SIGNATURE = "no_signature"
    CANCELLED = "cancelled"


class FingerPhase(enum.StrEnum):
    """Where a fingerprint capture is, for the screen to guide the citizen."""

    LIFT_FIRST = "lift_first"  # a finger is still on the glass from before: lift it
    WAITING = "waiting"  # the glass is clear: place the finger
    DETECTED = "detected"  # a finger is on the glass: hold still while it is read
    LIFT = "lift"  # the image is read: lift the finger while it is transferred


class HealthStatus(enum.StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    FAILED = "failed"


class Signal(enum.StrEnum):
    """What the lights and buzzer tell the citizen and the operator."""

    IDLE = "idle"  # waiting for the next citizen
    WORKING = "working"  # a capture is in progress
    SUCCESS = "success"  # a capture was accepted
    RETRY = "retry"  # try again (poor sample)
    ATTENTION = "attention"  # the operator is needed
    FAULT = "fault"  # a module has failed


@dataclass(frozen=True)
class ModuleInfo:
    """Which module this is: enough to find it in the fleet inventory."""

    kind: ModuleKind
    driver: str  # backend name in the registry, e.g. "fake", "zhiantec"
    model: str
    serial: str
    firmware: str = ""
    simulated: bool = False  # True for fakes and emulators: never a real citizen's data
    # where the serial was read: "usb" (the adapter's), "notepad" (written into the
    # sensor by the kiosk), "v4l-by-id", "board" (the Pi's own), "simulated", ...
    serial_source: str = ""

    def as_dict(self) -> dict[str, str | bool]:
        return {
            "kind": str(self.kind),
            "driver": self.driver,
            "model": self.model,
            "serial": self.serial,
            "serial_source": self.serial_source,
            "firmware": self.firmware,
            "simulated": self.simulated,
        }

    @property
    def identity(self) -> tuple[str, str, str, str]:
        """What tells one unit from another: a different identity is a swap."""
        return (str(self.kind), self.driver, self.model, self.serial)


@dataclass(frozen=True)
class Health:
    status: HealthStatus
    detail: str = ""
    checked_at: float = field(default_factory=time.time)

    @property
    def ok(self) -> bool:
        return self.status is HealthStatus.OK


@dataclass(frozen=True)
class CallStats:
    """The facts a module's health is judged from, counted at the error boundary."""

    calls: int = 0
    errors: int = 0
    consecutive_errors: int = 0
    last_success_at: float | None = None  # wall clock (time.time())
    last_error: str = ""
    last_error_at: float | None = None


@dataclass(frozen=True)
class SelfTestResult:
    passed: bool
    detail: str
    duration_s: float


def positive_seconds(name: str, value: float) -> float:
    """A driver's time option as a float, or a ValueError naming the option."""
    seconds = float(value)
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return seconds


def _frozen_array(array: np.ndarray | None) -> np.ndarray | None:
    if array is not None:
        array.flags.writeable = False
    return array


# The result types check their data on construction (ValueError, saying what is
# wrong), with the same rules as the quality checks (kiosk.quality.inputs): a
# driver's broken output stops here, at the device, never deeper in the flow.


# What the bytes of a camera buffer hold, in memory order, for the names the
# camera libraries use. picamera2 (libcamera/DRM names) counts from the high
# bit: its "RGB888" is B, G, R in memory, like OpenCV's; "XBGR8888" is R, G, B, X.
PIXEL_ORDERS = {
    "RGB": "RGB",  # ours: what Frame holds
    "BGR": "BGR",  # OpenCV
    "RGB888": "BGR",
    "BGR888": "RGB",
    "XBGR8888": "RGBX",
    "XRGB8888": "BGRX",
}


def to_rgb(buffer: np.ndarray, pixel_format: str) -> np.ndarray:
    """A camera buffer (H x W x 3 or 4, uint8) as the RGB H x W x 3 a Frame holds.

    ``pixel_format`` is a key of PIXEL_ORDERS (picamera2's or OpenCV's name);
    anything else is a ValueError naming the formats known.
    """
    order = PIXEL_ORDERS.get(pixel_format)
    if order is None:
        raise ValueError(f"unknown pixel format {pixel_format!r}; known: {', '.join(PIXEL_ORDERS)}")
    if buffer.ndim != 3 or buffer.shape[2] != len(order):
        raise ValueError(
            f"a {pixel_format} buffer is H x W x {len(order)}, got shape {buffer.shape}"
        )
    channels = [order.index(colour) for colour in "RGB"]
    return np.ascontiguousarray(buffer[:, :, channels])


@dataclass(frozen=True)
class Frame:
    """One camera frame: RGB (R, G, B in memory), height x width x 3, uint8, 16 to
    8192 px a side. A backend converts its buffers with :func:`to_rgb`."""

    image: np.ndarray
    module: ModuleInfo
    captured_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        _frozen_array(require_frame(self.image))

    def age(self, now: float | None = None) -> float:
        """Seconds since the frame was taken."""
        return (time.time() if now is None else now) - self.captured_at


@dataclass(frozen=True)
class FingerprintCapture:
    """One fingerprint impression: grayscale uint8, ridges dark on light, 64 to
    8192 px a side. A CAPTURED one has an image; others may have one."""

    outcome: Outcome
    module: ModuleInfo
    image: np.ndarray | None = None
    template: bytes = b""  # the sensor's own template, where it makes one
    dpi: int = 500
    captured_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.outcome is Outcome.CAPTURED or self.image is not None:
            _frozen_array(require_print(self.image))


Point = tuple[float, float, float]  # x, y in 0..1 of the pad (y down), t in seconds
Stroke = tuple[Point, ...]


@dataclass(frozen=True)
class SignatureCapture:
    """A signature as pen strokes; images are rendered from the strokes.

    Points must be finite, x and y within 0..1, t never decreasing within a
    stroke; ``aspect`` within 0.1..10. The strokes are kept as tuples of float
    ``(x, y, t)`` tuples, whatever sequences came in. A CAPTURED signature has
    at least one point; any other outcome has none.
    """

    outcome: Outcome
    module: ModuleInfo
    strokes: tuple[Stroke, ...] = ()
    aspect: float = 3.0  # pad width / height, to render without distortion
    captured_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        arrays = require_strokes(self.strokes)
        strokes = tuple(tuple(map(tuple, points.tolist())) for points in arrays)
        object.__setattr__(self, "strokes", strokes)
        object.__setattr__(self, "aspect", require_aspect(self.aspect))
        points = sum(len(stroke) for stroke in strokes)
        if self.outcome is Outcome.CAPTURED and not points:
            raise ValueError("a signature with outcome 'captured' needs at least one point")
        if self.outcome is not Outcome.CAPTURED and points:
            raise ValueError(
                f"a signature with outcome '{self.outcome}' has no strokes, got {points} points"
            )


T = TypeVar("T")
log = logging.getLogger(__name__)

FAILED_AFTER_ERRORS = 3  # consecutive failed calls before a module counts as FAILED


@runtime_checkable
class Module(Protocol):
    """What every module driver offers, whatever its kind."""

    kind: ClassVar[ModuleKind]

    def open(self) -> None: ...
    def close(self) -> None:
        """Idempotent; from any thread: a pending call ends with CaptureCancelled."""
        ...

    @property
    def closed(self) -> bool: ...
    def info(self) -> ModuleInfo:
        """The unit's identity as last read; no I/O."""
        ...

    def identify(self) -> ModuleInfo:
        """Read the identity from the unit itself (I/O, bounded by a deadline), so a
        supervisor can tell a replacement from a reconnect."""
        ...

    def health(self) -> Health:
        """Judged from facts (last success, errors, frame age); no I/O, never raises."""
        ...

    @property
    def stats(self) -> CallStats: ...
    def self_test(self) -> SelfTestResult:
        """Really exercises the device; may take a few seconds; never raises."""
        ...


@runtime_checkable
class Camera(Module, Protocol):
    """A camera: a preview stream for the screen, and full-resolution stills.

    Frames hold RGB (see :class:`Frame`). The preview stream runs on the
    camera's own thread while started; stills are jobs queued between frames.
    ``still_scale`` is a still's width over a preview frame's: the face check
    judges preview frames for the photo the still will make.
    """

    still_scale: float

    def start_preview(self) -> None:
        """Start streaming preview frames (returns at once)."""
        ...

    def stop_preview(self) -> None: ...
    def latest_frame(self) -> Frame | None:
        """The newest preview frame (its ``age()`` says how fresh), None before the
        first. Never blocks; callable from any thread."""
        ...

    def still(self, deadline_s: float | None = None) -> Job[Frame]:
        """Take one full-resolution photo. The job raises CaptureTimeout past the
        deadline (the driver's ``still_s`` option when None), DeviceUnavailable,
        DeviceFault or CaptureCancelled."""
        ...


@runtime_checkable
class FingerprintReader(Module, Protocol):
    def capture(
        self, on_phase: Callable[[FingerPhase], None] | None = None
    ) -> Job[FingerprintCapture]:
        """Capture one finger in phases, each reported to ``on_phase`` (on the
        reader's thread): LIFT_FIRST (only if a finger is still on the glass),
        WAITING, DETECTED, LIFT. The job's value is NO_FINGER if no finger came
        within the driver's ``wait_s``; CaptureTimeout if the image transfer
        took longer than its ``transfer_s``."""
        ...


@runtime_checkable
class SignaturePad(Module, Protocol):
    def begin(self) -> None:
        """Start a new, empty signature."""
        ...

    def add_stroke(self, stroke: Sequence[Point]) -> None:
        """Feed one stroke drawn on the kiosk's touchscreen (pads with a pen of
        their own ignore this and report their own strokes)."""
        ...

    def collect(self, timeout: float) -> SignatureCapture:
        """The signature so far; NO_SIGNATURE if nothing was drawn."""
        ...


@runtime_checkable
class Indicators(Module, Protocol):
    def signal(self, signal: Signal) -> None:
        """Show a state on the lights and buzzer; never blocks."""
        ...

    def on_call_button(self, callback: Callable[[], None] | None) -> None:
        """Run ``callback`` when the citizen presses the call-operator button."""
        ...


class ModuleBase:
    """Lifecycle, thread and error boundary shared by backends.

    Open and close run under a lock; close is idempotent and may come from any
    thread: it cancels the device's jobs, calls ``_close`` (which should free a
    blocked read, e.g. by closing the port) and joins the device's thread.
    Use after close raises DeviceClosed.

    Subclasses set ``kind``, implement ``info`` and ``_self_test`` and, as
    needed, ``_open``, ``_close``, ``_identify``, ``_health`` and
    ``_translate``. Device calls go through :meth:`_run`, the one boundary where
    anything a vendor library raises becomes our error and is counted.
    """

    kind: ClassVar[ModuleKind]
    idle_work: ClassVar[bool] = False  # True: the thread calls _idle() while no job waits

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._opened = False
        self._worker: DeviceWorker | None = None
        self._stats_lock = threading.Lock()
        self._stats = CallStats()

    # -- lifecycle -----------------------------------------------------------

    def open(self) -> None:
        with self._lock:
            if self._opened:
                return
            try:
                self._open()
            except KioskError:
                raise
            except Exception as exc:
                raise self._translate(exc) from exc
            self._opened = True
            name = f"{self.kind}-{type(self).__name__}"
            self._worker = DeviceWorker(name, self._idle if self.idle_work else None)

    def close(self) -> None:
        with self._lock:
            if not self._opened:
                return
            self._opened = False
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel_all()
        try:
            self._close()
        finally:
            if worker is not None:
                worker.close()

    @property
    def closed(self) -> bool:
        return not self._opened

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- identity, health, self-test -----------------------------------------

    def identify(self) -> ModuleInfo:
        return self._run("identify", lambda _job: self._identify(), deadline_s=5.0).result()

    @property
    def stats(self) -> CallStats:
        return self._stats

    def health(self) -> Health:
        if self.closed:
            return Health(HealthStatus.FAILED, "closed")
        stats = self._stats
        if stats.consecutive_errors >= FAILED_AFTER_ERRORS:
            return Health(
                HealthStatus.FAILED, f"{stats.consecutive_errors} calls failed: {stats.last_error}"
            )
        if stats.consecutive_errors:
            return Health(HealthStatus.DEGRADED, f"last call failed: {stats.last_error}")
        try:
            return self._health()
        except Exception as exc:  # health() must never raise
            return Health(HealthStatus.FAILED, f"{type(exc).__name__}: {exc}")

    def self_test(self) -> SelfTestResult:
        start = time.monotonic()
        try:
            detail = self._run("self-test", lambda _job: self._self_test(), 10.0).result()
        except Exception as exc:
            return SelfTestResult(False, f"{type(exc).__name__}: {exc}", time.monotonic() - start)
        return SelfTestResult(True, detail, time.monotonic() - start)

    # -- the device's thread and the error boundary ----------------------------

    def _run(self, name: str, work: Callable[[Job[T]], T], deadline_s: float) -> Job[T]:
        """Queue ``work(job)`` on the device's thread, behind the error boundary."""
        with self._lock:
            self._check_open()
            worker = self._worker
        assert worker is not None  # set whenever open

        def guarded(job: Job[T]) -> T:
            try:
                result = work(job)
            except CaptureCancelled:
                raise  # the caller moved on: not the device's fault
            except Exception as exc:
                if job.cancelled:  # closed under a blocked read: that is how it ends
                    raise CaptureCancelled(f"{job.name}: cancelled") from exc
                error = exc if isinstance(exc, KioskError) else self._translate(exc)
                self._count(error)
                if error is exc:
                    raise
                raise error from exc
            self._count(None)
            return result

        return worker.submit(guarded, deadline_s=deadline_s, name=f"{worker.name}: {name}")

    def _set_idling(self, idling: bool) -> None:
        with self._lock:
            if self._worker is not None:
                self._worker.set_idling(idling)
                if idling:
                    self._worker.start()

    def _translate(self, exc: Exception) -> KioskError:
        """A vendor's exception as ours; backends refine this for their library."""
        text = f"{self.kind} {type(self).__name__}: {type(exc).__name__}: {exc}"
        if isinstance(exc, TimeoutError):
            return CaptureTimeout(text)
        if isinstance(exc, OSError):
            return DeviceUnavailable(text)
        return DeviceFault(text)

    def _count(self, error: Exception | None) -> None:
        with self._stats_lock:
            stats = self._stats
            if error is None:
                self._stats = dataclasses.replace(
                    stats, calls=stats.calls + 1, consecutive_errors=0, last_success_at=time.time()
                )
            else:
                self._stats = dataclasses.replace(
                    stats,
                    calls=stats.calls + 1,
                    errors=stats.errors + 1,
                    consecutive_errors=stats.consecutive_errors + 1,
                    last_error=str(error),
                    last_error_at=time.time(),
                )

    def _check_open(self) -> None:
        if not self._opened:
            raise DeviceClosed(f"{type(self).__name__} is closed; call open() first")

    # -- for subclasses --------------------------------------------------------

    def _open(self) -> None:
        pass

    def _close(self) -> None:
        pass

    def _identify(self) -> ModuleInfo:
        return self.info()

    def _idle(self) -> Any:
        pass

    def _health(self) -> Health:
        return Health(HealthStatus.OK)

    def _self_test(self) -> str:
        raise NotImplementedError
