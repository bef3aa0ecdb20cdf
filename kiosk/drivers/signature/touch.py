"""Signatures drawn with a finger on the kiosk's own touchscreen.

There is no separate device: the signature screen's drawing widget feeds each
finished stroke to :meth:`TouchSignaturePad.add_stroke`, and the flow collects
them. Points are ``(x, y, t)``: x and y in 0..1 of the drawing box (y down),
t in seconds::

    with TouchSignaturePad(aspect=3.0) as pad:
        pad.begin()
        pad.add_stroke([(0.1, 0.5, 0.00), (0.4, 0.3, 0.12), (0.8, 0.6, 0.30)])
        capture = pad.collect(timeout=1.0)  # Outcome.CAPTURED, one stroke
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

from kiosk.drivers.base import (
    ModuleBase,
    ModuleInfo,
    ModuleKind,
    Outcome,
    Point,
    SignatureCapture,
    Stroke,
)
from kiosk.quality.inputs import require_aspect


def _clean_point(point: Sequence[float], earliest: float) -> Point:
    if len(point) != 3:
        raise ValueError(f"a stroke point is (x, y, t), got {point!r}")
    x, y, t = (float(value) for value in point)
    if not all(math.isfinite(value) for value in (x, y, t)):
        raise ValueError(f"a stroke point must be finite, got {point!r}")
    # A finger sliding off the box's edge still belongs to the signature, and a
    # wall clock stepped back mid-stroke does not make the pen go back in time.
    return (min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0), max(t, earliest))


def _clean_stroke(stroke: Sequence[Point]) -> Stroke:
    points: list[Point] = []
    for point in stroke:
        points.append(_clean_point(point, points[-1][2] if points else -math.inf))
    return tuple(points)


class TouchSignaturePad(ModuleBase):
    """The touchscreen as a signature pad: keeps the strokes fed to it.

    Options (from the station config): ``serial``, an id for the screen in
    the fleet inventory, and ``aspect``, the drawing box's width / height
    (0.1 to 10; anything else is a ValueError here, not a bad capture later).
    ``collect`` returns at once with what has been drawn: NO_SIGNATURE when
    nothing was.
    """

    kind: ClassVar[ModuleKind] = ModuleKind.SIGNATURE

    def __init__(self, *, serial: str = "builtin-touchscreen", aspect: float = 3.0) -> None:
        super().__init__()
        self._serial = serial
        self._aspect = require_aspect(aspect)
        self._strokes: list[Stroke] = []

    def info(self) -> ModuleInfo:
        return ModuleInfo(kind=self.kind, driver="touch", model="touchscreen", serial=self._serial)

    def begin(self) -> None:
        """Start a new, empty signature."""
        with self._lock:
            self._check_open()
            self._strokes.clear()
            self._on_begin()

    def add_stroke(self, stroke: Sequence[Point]) -> None:
        """Keep one finished stroke; an empty one is ignored, a malformed one is a ValueError."""
        points = _clean_stroke(stroke)
        with self._lock:
            self._check_open()
            if points:
                self._strokes.append(points)

    def collect(self, timeout: float) -> SignatureCapture:
        """The strokes so far (CAPTURED), or NO_SIGNATURE; never waits."""
        with self._lock:
            self._check_open()
            strokes = tuple(self._strokes)
            info = self.info()
        outcome = Outcome.CAPTURED if strokes else Outcome.NO_SIGNATURE
        return SignatureCapture(outcome=outcome, module=info, strokes=strokes, aspect=self._aspect)

    def _open(self) -> None:
        self._strokes.clear()

    def _self_test(self) -> str:
        # Nothing to probe from here: the screen proves itself when the citizen touches it.
        return f"touch input ready, drawing box aspect {self._aspect:g}"

    def _on_begin(self) -> None:
        """Hook for subclasses, run under the lock when a new signature starts."""
