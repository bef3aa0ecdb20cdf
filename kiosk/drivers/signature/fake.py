"""A simulated signature pad: the touchscreen pad plus a scripted signer.

From the citizen's side it is the touchscreen pad: strokes fed with
``add_stroke`` (by the drawing box, in a UI run) are returned as they are, and
``collect()`` with nothing drawn is ``Outcome.NO_SIGNATURE``, always. It never
invents a signature: people trained on the simulator learn that pressing
"Selesai" on an empty box is refused, as it is on a real kiosk.

The scripted signer is a test hook, in the manner of gpiozero's
``MockPin.drive_low()``: :meth:`FakeSignaturePad.sign` acts as a citizen who
draws in the box, feeding strokes through ``add_stroke`` like the touchscreen.
What it draws is scripted, one entry per signature started with ``begin()``,
the last entry repeating forever:

- ``"drawn"``: a plausible handwritten signature (a looping cursive name, an
  underline flourish and a dot), the same on every run;
- ``"blank"``: the citizen draws nothing.

::

    with FakeSignaturePad(script=["blank", "drawn"]) as pad:
        pad.begin()
        pad.collect(timeout=1.0).outcome  # NO_SIGNATURE: nothing was drawn
        pad.sign()  # "blank": the citizen still draws nothing
        pad.collect(timeout=1.0).outcome  # NO_SIGNATURE
        pad.begin()
        pad.sign()  # "drawn"
        pad.collect(timeout=1.0).strokes  # three scripted strokes

In a flow, the signer signs before the citizen presses "Selesai"::

    flow.modules.signature.sign()
    flow.submit_signature()
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
    """Simulated pad: the touchscreen pad, plus :meth:`sign` for a scripted signer.

    Options (from the station config): ``script`` of behaviour names, what
    :meth:`sign` draws for each signature; ``serial``; and ``aspect`` of the
    drawing box.
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

    def sign(self) -> None:
        """Test hook: the scripted citizen signs in the box, as a finger would.

        Feeds this signature's scripted strokes through :meth:`add_stroke`, one
        by one, when its behaviour is "drawn"; draws nothing when it is "blank".
        Signing before any ``begin()`` uses the script's first entry.
        """
        with self._lock:
            self._check_open()
            if self._behaviour is None:
                self._behaviour, _ = self._script.advance()
            if self._behaviour == "drawn":
                for stroke in scripted_signature(self._aspect):
                    self.add_stroke(stroke)

    def _on_begin(self) -> None:
        self._behaviour, _ = self._script.advance()

    def _self_test(self) -> str:
        strokes = scripted_signature(self._aspect)
        return f"pen input ready, {len(strokes)} scripted strokes (simulated)"
