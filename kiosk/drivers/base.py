"""The driver contracts: one Protocol per kind of module, plus result and health types.

Every backend (fake, emulator or real) satisfies one of these Protocols. Results
are frozen dataclasses holding plain numpy arrays and bytes, never vendor
objects. Expected outcomes are :class:`Outcome` values; faults are exceptions
from :mod:`kiosk.errors`. Every blocking call takes a deadline in seconds.

A backend usually subclasses :class:`ModuleBase`, which owns the lifecycle
(open, idempotent close, context manager, closed-guard) and leaves ``_open``,
``_close`` and the capture calls to the backend::

    with FakeCamera(script=["dark", "face"]) as camera:
        frame = camera.capture(timeout=2.0)
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from kiosk.errors import DeviceClosed
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

    def as_dict(self) -> dict[str, str | bool]:
        return {
            "kind": str(self.kind),
            "driver": self.driver,
            "model": self.model,
            "serial": self.serial,
            "firmware": self.firmware,
            "simulated": self.simulated,
        }


@dataclass(frozen=True)
class Health:
    status: HealthStatus
    detail: str = ""
    checked_at: float = field(default_factory=time.time)

    @property
    def ok(self) -> bool:
        return self.status is HealthStatus.OK


@dataclass(frozen=True)
class SelfTestResult:
    passed: bool
    detail: str
    duration_s: float


def _frozen_array(array: np.ndarray | None) -> np.ndarray | None:
    if array is not None:
        array.flags.writeable = False
    return array


# The result types check their data on construction (ValueError, saying what is
# wrong), with the same rules as the quality checks (kiosk.quality.inputs): a
# driver's broken output stops here, at the device, never deeper in the flow.


@dataclass(frozen=True)
class Frame:
    """One camera frame: RGB, height x width x 3, uint8, 16 to 8192 px a side."""

    image: np.ndarray
    module: ModuleInfo
    captured_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        _frozen_array(require_frame(self.image))


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


@runtime_checkable
class Module(Protocol):
    """What every module driver offers, whatever its kind."""

    kind: ClassVar[ModuleKind]

    def open(self) -> None: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    def info(self) -> ModuleInfo: ...
    def health(self) -> Health:
        """Cheap and never raises: safe to poll from a supervisor."""
        ...

    def self_test(self) -> SelfTestResult:
        """Really exercises the device; may take a few seconds."""
        ...


@runtime_checkable
class Camera(Module, Protocol):
    def capture(self, timeout: float) -> Frame:
        """Return one frame, or raise CaptureTimeout / DeviceUnavailable."""
        ...


@runtime_checkable
class FingerprintReader(Module, Protocol):
    def capture(self, timeout: float) -> FingerprintCapture:
        """Wait up to ``timeout`` s for a finger; NO_FINGER if none came."""
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
    """Lifecycle shared by backends: open/close under a lock, idempotent close,
    context manager, and a guard that turns use-after-close into DeviceClosed.

    Subclasses set ``kind``, implement ``_open``, ``_close``, ``info``,
    ``_health`` and ``_self_test``, and call ``self._check_open()`` first in
    their capture calls.
    """

    kind: ClassVar[ModuleKind]

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._opened = False

    def open(self) -> None:
        with self._lock:
            if not self._opened:
                self._open()
                self._opened = True

    def close(self) -> None:
        with self._lock:
            if self._opened:
                self._opened = False
                self._close()

    @property
    def closed(self) -> bool:
        return not self._opened

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def health(self) -> Health:
        if self.closed:
            return Health(HealthStatus.FAILED, "closed")
        try:
            return self._health()
        except Exception as exc:  # health() must never raise
            return Health(HealthStatus.FAILED, f"{type(exc).__name__}: {exc}")

    def self_test(self) -> SelfTestResult:
        start = time.monotonic()
        try:
            self._check_open()
            detail = self._self_test()
        except Exception as exc:
            return SelfTestResult(False, f"{type(exc).__name__}: {exc}", time.monotonic() - start)
        return SelfTestResult(True, detail, time.monotonic() - start)

    def _check_open(self) -> None:
        if not self._opened:
            raise DeviceClosed(f"{type(self).__name__} is closed; call open() first")

    def _open(self) -> None:
        pass

    def _close(self) -> None:
        pass

    def _health(self) -> Health:
        return Health(HealthStatus.OK)

    def _self_test(self) -> str:
        raise NotImplementedError
