"""A simulated fingerprint reader serving synthetic prints by a script of named behaviours.

Behaviours, one per capture, the last one repeating forever:

- ``"good"``: a clear print; successive good captures cycle through
  ``samples/good_1.png`` .. ``good_10.png``, ten different fingers;
- ``"good_1"`` .. ``"good_10"``: that one good finger (the same finger again, as
  for a retake);
- ``"poor"``: a partial, smudged, faint print (``samples/poor.png``);
- ``"no_finger"``: nobody touched the glass: ``Outcome.NO_FINGER``, no image;
- ``"unplugged"``: the reader does not answer (:class:`DeviceUnavailable`).

``fail_on_call=N`` makes the Nth capture raise DeviceUnavailable whatever the
script says::

    with FakeFingerprintReader(script=["no_finger", "poor", "good"]) as reader:
        reader.capture().result().outcome  # Outcome.NO_FINGER
        reader.capture().result().image    # the poor print
        reader.capture().result().image    # good_1, then good_2, ... forever

The samples are synthetic (tools/make_fingerprint_samples.py): no real person's
fingerprint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np

from kiosk.drivers.base import (
    FingerPhase,
    FingerprintCapture,
    ModuleBase,
    ModuleInfo,
    ModuleKind,
    Outcome,
    positive_seconds,
)
from kiosk.drivers.fingerprint.synthetic import GOOD_SAMPLE_NAMES
from kiosk.drivers.scripted import BehaviourScript, simulated_info
from kiosk.drivers.worker import Job
from kiosk.errors import DeviceUnavailable

SAMPLES = Path(__file__).parent / "samples"
GOOD_SAMPLES = GOOD_SAMPLE_NAMES  # ten different fingers: a repeat would be refused
IMAGE_SHAPE = (288, 256)  # height x width of an R307/AS608 image
TEMPLATE_SIZE = 512  # bytes, as an R307 character file (two 256-byte buffers)


@cache
def _sample_gray(name: str) -> np.ndarray:
    path = SAMPLES / f"{name}.png"
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise FileNotFoundError(f"sample image {path} is missing or unreadable")
    image.flags.writeable = False  # cached and shared: every capture gets its own copy
    return image


def simulated_template(image: np.ndarray) -> bytes:
    """A stable stand-in for the sensor's template: a digest of the image.

    SIMULATED: a real sensor extracts minutiae; this only has the right size
    and is the same for the same image, which is all the packet needs.
    """
    digest = hashlib.shake_256(b"rekam simulated template\0" + image.tobytes())
    return digest.digest(TEMPLATE_SIZE)


class FakeFingerprintReader(ModuleBase):
    """Simulated R307-like reader: 256 x 288 synthetic prints at 500 dpi, by script.

    Options (all from the station config): ``script`` of behaviour names,
    ``fail_on_call`` (1-based), ``serial``; ``delay`` seconds before the finger
    arrives and ``transfer`` seconds the image takes to come off the sensor, to
    imitate a citizen and a UART; ``wait_s`` (a finger that takes longer is
    NO_FINGER, as on a real reader) and ``transfer_s`` (the transfer's deadline).
    """

    kind: ClassVar[ModuleKind] = ModuleKind.FINGERPRINT
    BEHAVIOURS: ClassVar[tuple[str, ...]] = (
        "good",
        *GOOD_SAMPLES,
        "poor",
        "no_finger",
        "unplugged",
    )

    def __init__(
        self,
        *,
        script: Sequence[str] = ("good",),
        fail_on_call: int | None = None,
        serial: str = "SIM-FPR-0001",
        delay: float = 0.0,
        transfer: float = 0.0,
        wait_s: float = 10.0,
        transfer_s: float = 5.0,
    ) -> None:
        super().__init__()
        self._script = BehaviourScript(script, self.BEHAVIOURS, fail_on_call)
        self._serial = serial
        self._delay = float(delay)
        self._transfer = float(transfer)
        self.wait_s = positive_seconds("wait_s", wait_s)
        self.transfer_s = positive_seconds("transfer_s", transfer_s)
        self._good_served = 0

    def info(self) -> ModuleInfo:
        return simulated_info(self.kind, "Rekam SimFinger R307", self._serial)

    def capture(
        self, on_phase: Callable[[FingerPhase], None] | None = None
    ) -> Job[FingerprintCapture]:
        """One impression for the next behaviour of the script, in phases."""
        phase = on_phase or (lambda _phase: None)
        return self._run(
            "capture", lambda job: self._capture(job, phase), self.wait_s + self.transfer_s
        )

    def _capture(self, job: Job, phase: Callable[[FingerPhase], None]) -> FingerprintCapture:
        with self._lock:
            behaviour, forced_failure = self._script.advance()
            call = self._script.calls
            if forced_failure or behaviour == "unplugged":
                raise DeviceUnavailable(
                    f"fingerprint reader not answering (simulated, call {call})"
                )
            image: np.ndarray | None = None
            if behaviour == "good":
                image = _sample_gray(GOOD_SAMPLES[self._good_served % len(GOOD_SAMPLES)])
                self._good_served += 1
            elif behaviour in ("poor", *GOOD_SAMPLES):
                image = _sample_gray(behaviour)
        phase(FingerPhase.WAITING)
        job.sleep(min(self._delay, self.wait_s))
        if image is None or self._delay > self.wait_s:
            return FingerprintCapture(outcome=Outcome.NO_FINGER, module=self.info())
        phase(FingerPhase.DETECTED)
        phase(FingerPhase.LIFT)
        job.sleep(self._transfer)  # CaptureTimeout if the transfer runs past the deadline
        return FingerprintCapture(
            outcome=Outcome.CAPTURED,
            module=self.info(),
            image=image.copy(),
            template=simulated_template(image),
            dpi=500,
        )

    def _self_test(self) -> str:
        # Like the R307's handshake plus an image read, without consuming the script.
        with self._lock:
            upcoming = self._script.peek()
        if upcoming == "unplugged":
            raise DeviceUnavailable("fingerprint reader not answering (simulated)")
        for name in (*GOOD_SAMPLES, "poor"):
            shape = _sample_gray(name).shape
            if shape != IMAGE_SHAPE:
                raise ValueError(f"sample {name} is {shape}, expected {IMAGE_SHAPE}")
        return f"sensor answered; image {IMAGE_SHAPE[1]}x{IMAGE_SHAPE[0]} (simulated)"
