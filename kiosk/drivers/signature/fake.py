"""A simulated signature pad: the touchscreen pad plus a scripted signer.

Strokes fed with ``add_stroke`` (by the touchscreen widget, in a UI run) are
returned as they are. When none were fed, the script decides, one entry per
signature started with ``begin()``, the last entry repeating forever:

- ``"drawn"``: a plausible handwritten signature (a looping cursive name, an
  underline flourish and a dot), the same on every run;
- ``"blank"``: nothing was signed: ``Outcome.NO_SIGNATURE``.

::

    with FakeSignaturePad(script=["blank", "drawn"]) as pad:
        pad.begin()
        pad.collect(timeout=1.0).outcome  # NO_SIGNATURE
        pad.begin()
        pad.collect(timeout=1.0).strokes  # three scripted strokes
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import ClassVar

import numpy as np

from kiosk.drivers.base import ModuleInfo, Stroke
from kiosk.drivers.scripted import BehaviourScript, simulated_info
from kiosk.drivers.signature.touch import TouchSignaturePad

PEN_SPEED = 1.2  # pad widths per second: an unhurried hand


def _timed(xs: np.ndarray, ys: np.ndarray, aspect: float, start: float) -> Stroke:
    """Points with times from a steady pen speed, rounded like touch input."""
    steps = np.hypot(np.diff(xs), np.diff(ys) / aspect)
    times = start + np.concatenate([[0.0], np.cumsum(steps)]) / PEN_SPEED
    return tuple(
        (round(float(x), 4), round(float(y), 4), round(float(t), 3))
        for x, y, t in zip(xs, ys, times, strict=True)
    )


@cache
def scripted_signature(aspect: float = 3.0) -> tuple[Stroke, ...]:
    """A deterministic, handwriting-like signature in pad coordinates (y down)."""
    # A looping cursive name: a prolate cycloid (loops where the pen runs back),
    # with a slant and a word-like swell and fade of height.
    phase = np.linspace(0.0, 9.0 * np.pi, 220)
    progress = phase / phase[-1]
    height = 0.20 + 0.10 * np.sin(np.pi * progress) + 0.06 * np.sin(3.0 * phase / 4.5)
    ys = 0.52 - height * np.cos(phase) * 0.9
    xs = 0.10 + 0.60 * progress - 0.035 * np.sin(phase) + 0.05 * (0.52 - ys)
    name = _timed(xs, np.clip(ys, 0.0, 1.0), aspect, start=0.0)
    # An underline flourish, right to left, curving up at its end.
    sweep = np.linspace(0.0, 1.0, 60)
    under_x = 0.78 - 0.70 * sweep
    under_y = 0.80 + 0.05 * np.sin(np.pi * sweep) - 0.12 * sweep**4
    underline = _timed(under_x, under_y, aspect, start=name[-1][2] + 0.35)
    # The dot over an i: a single point.
    dot = ((0.66, 0.24, round(underline[-1][2] + 0.3, 3)),)
    return (name, underline, dot)


class FakeSignaturePad(TouchSignaturePad):
    """Simulated pad: returns fed strokes, or a scripted signature when none were fed.

    Options (from the station config): ``script`` of behaviour names,
    ``serial``, and ``aspect`` of the drawing box.
    """

    BEHAVIOURS: ClassVar[tuple[str, ...]] = ("drawn", "blank")

    def __init__(
        self,
        *,
        script: Sequence[str] = ("drawn",),
        serial: str = "SIM-PAD-0001",
        aspect: float = 3.0,
    ) -> None:
        super().__init__(serial=serial, aspect=aspect)
        self._script = BehaviourScript(script, self.BEHAVIOURS)
        self._behaviour: str | None = None  # taken from the script by begin()

    def info(self) -> ModuleInfo:
        return simulated_info(self.kind, "Rekam SimPad", self._serial)

    def _on_begin(self) -> None:
        self._behaviour, _ = self._script.advance()

    def _strokes_when_none_fed(self) -> tuple[Stroke, ...]:
        if self._behaviour is None:  # collected without begin(): the first signature
            self._behaviour, _ = self._script.advance()
        return scripted_signature(self._aspect) if self._behaviour == "drawn" else ()

    def _self_test(self) -> str:
        strokes = scripted_signature(self._aspect)
        return f"pen input ready, {len(strokes)} scripted strokes (simulated)"
