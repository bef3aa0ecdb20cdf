"""The enrollment state machine: the whole citizen journey, without a window.

Screens show ``flow.step`` and forward touches to the methods here; the
headless simulator and the tests call the same methods. Capture methods block
on the device (the UI calls them from a worker thread); every other method is
instant. A capture that finishes after the session was cancelled or timed out
is dropped, so a late result can never leak into the next citizen's session.

    flow = EnrollmentFlow(station_id="SIM-01", modules=modules, sink=store)
    flow.start("en")
    flow.submit_nik("3201014101900001")
    flow.accept_consent()
    flow.capture_face()
    ...
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from kiosk.config import SessionConfig
from kiosk.drivers.base import ModuleKind, Outcome, Point, Signal
from kiosk.drivers.station import StationModules
from kiosk.errors import DriverError, FlowError, StoreError
from kiosk.flow.enrollment import (
    CONSENT_NOTICE,
    Consent,
    Enrollment,
    FaceRecord,
    FingerRecord,
    SignatureRecord,
    new_enrollment_id,
)
from kiosk.flow.fingers import FINGER_ORDER, Finger, FingerException
from kiosk.flow.nik import NikCheck, check_nik
from kiosk.i18n import DEFAULT_LANGUAGE, LANGUAGES
from kiosk.packet.build import build_packet
from kiosk.quality.face import assess_face
from kiosk.quality.fingerprint import assess_fingerprint
from kiosk.quality.signature import SignatureQuality, assess_signature, render_signature
from kiosk.store import EnrollmentSink

log = logging.getLogger(__name__)

CAMERA_TIMEOUT_S = 5.0
FINGER_WAIT_S = 10.0  # one wait for a finger; the screen simply asks again
SIGNATURE_TIMEOUT_S = 2.0
RECEIPT_SECONDS = 45.0  # the receipt stays up this long, then the kiosk is ready again
SIGNATURE_IMAGE_SIZE = (900, 300)


class Step(enum.StrEnum):
    WELCOME = "welcome"
    NIK = "nik"
    CONSENT = "consent"
    FACE = "face"
    FINGERPRINTS = "fingerprints"
    SIGNATURE = "signature"
    REVIEW = "review"
    DONE = "done"


class Retake(enum.StrEnum):
    FACE = "face"
    SIGNATURE = "signature"


@dataclass(frozen=True)
class CaptureResult:
    """What one capture try came to, for the screen to show."""

    accepted: bool
    problem: str | None = None  # i18n key telling the citizen what to do
    tries_left: int = 0
    fault: ModuleKind | None = None  # the module failed; the operator is needed
    stale: bool = False  # the session ended while the device was busy; ignore
    preview: np.ndarray | None = None  # the image just taken, for the screen to show


class EnrollmentFlow:
    """One kiosk's enrollment sessions, one citizen at a time."""

    def __init__(
        self,
        *,
        station_id: str,
        modules: StationModules,
        sink: EnrollmentSink,
        session: SessionConfig | None = None,
        language: str = DEFAULT_LANGUAGE,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.station_id = station_id
        self.modules = modules
        self.sink = sink
        self.session = session or SessionConfig()
        self.default_language = language
        self.language = language
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.RLock()
        self._listeners: list[Callable[[EnrollmentFlow], None]] = []
        self.step = Step.WELCOME
        self.enrollment: Enrollment | None = None
        self.current_finger: Finger | None = None
        self.tries_left = 0
        self.problem: str | None = None  # last guidance or error key, for the screen
        self.fault: ModuleKind | None = None
        self.returning_to_review = False
        self.saved_id: str | None = None
        self._entered_at = clock()
        self._last_activity = clock()
        self._signal(Signal.IDLE)

    # -- observing ---------------------------------------------------------

    def subscribe(self, listener: Callable[[EnrollmentFlow], None]) -> None:
        """Call ``listener(flow)`` after every change (from the thread that made it)."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener(self)

    # -- moving between steps -------------------------------------------------

    def _require(self, *steps: Step) -> Enrollment:
        if self.step not in steps:
            allowed = ", ".join(steps)
            raise FlowError(f"not possible at step {self.step}; only at {allowed}")
        if self.enrollment is None and self.step is not Step.WELCOME:
            raise FlowError("no enrollment in progress")
        return self.enrollment  # type: ignore[return-value]

    def _go(self, step: Step) -> None:
        now = self._clock()
        if self.enrollment is not None and self.step is not Step.WELCOME:
            spent = self.enrollment.step_seconds
            spent[self.step] = spent.get(self.step, 0.0) + now - self._entered_at
        self.step = step
        self._entered_at = now
        self.problem = None

    def touch(self) -> None:
        """Note that the person is still there (any touch on the screen)."""
        self._last_activity = self._clock()

    def set_language(self, language: str) -> None:
        if language not in LANGUAGES:
            raise FlowError(f"unknown language {language!r}")
        with self._lock:
            self.language = language
            if self.enrollment is not None:
                self.enrollment.language = language
            self.touch()
        self._changed()

    def start(self, language: str | None = None) -> None:
        """Welcome -> NIK: begin a new enrollment in ``language``."""
        with self._lock:
            self._require(Step.WELCOME)
            self.language = language or self.language
            now = self._wall_clock()
            self.enrollment = Enrollment(
                new_enrollment_id(self.station_id, now), self.station_id, now, self.language
            )
            self.saved_id = None
            self._go(Step.NIK)
            self.touch()
        self._changed()

    def cancel(self) -> None:
        """Drop everything not saved and return to the welcome screen."""
        with self._lock:
            if self.enrollment is not None and self.step is not Step.DONE:
                log.info("enrollment %s cancelled at %s", self.enrollment.enrollment_id, self.step)
            self._reset()
        self._changed()

    def _reset(self) -> None:
        self.enrollment = None
        self.step = Step.WELCOME
        self.current_finger = None
        self.tries_left = 0
        self.problem = None
        self.fault = None
        self.returning_to_review = False
        self.language = self.default_language
        self._entered_at = self._clock()
        self._signal(Signal.IDLE)

    def tick(self) -> bool:
        """Call about once a second: ends an abandoned session. True if it did."""
        with self._lock:
            idle = self._clock() - self._last_activity
            if self.step is Step.WELCOME:
                return False
            limit = RECEIPT_SECONDS if self.step is Step.DONE else self.session.idle_timeout_s
            if idle < limit:
                return False
            if self.step is not Step.DONE:
                log.info("enrollment abandoned at %s after %.0f s idle", self.step, idle)
            self._reset()
        self._changed()
        return True

    def finish(self) -> None:
        """Done -> Welcome, ready for the next citizen."""
        with self._lock:
            self._require(Step.DONE)
            self._reset()
        self._changed()

    # -- NIK and consent ------------------------------------------------------

    def submit_nik(self, text: str) -> NikCheck:
        with self._lock:
            enrollment = self._require(Step.NIK)
            self.touch()
            check = check_nik(text, today=self._wall_clock().date())
            if check.ok:
                enrollment.nik = check.nik
                self._go(Step.CONSENT)
            else:
                self.problem = check.errors[0]
        self._changed()
        return check

    def accept_consent(self) -> None:
        with self._lock:
            enrollment = self._require(Step.CONSENT)
            enrollment.consent = Consent(CONSENT_NOTICE, self.language, self._wall_clock())
            self._go(Step.FACE)
            self.tries_left = self.session.face_tries
            self.touch()
        self._changed()

    # -- face -----------------------------------------------------------------

    def capture_face(self) -> CaptureResult:
        """Take one photo and check it; blocks on the camera."""
        with self._lock:
            session = self._require(Step.FACE)
            self._signal(Signal.WORKING)
        try:
            frame = self.modules.camera.capture(timeout=CAMERA_TIMEOUT_S)
            quality = assess_face(frame.image)
        except DriverError as exc:  # unplugged, timed out, never opened
            return self._device_fault(session, Step.FACE, ModuleKind.CAMERA, exc)
        with self._lock:
            if self.enrollment is not session or self.step is not Step.FACE:
                return CaptureResult(False, stale=True)
            self.fault = None
            attempts = self.session.face_tries - self.tries_left + 1
            if quality.ok:
                session.face = FaceRecord(frame.image, quality, frame.module, attempts)
                self._signal(Signal.SUCCESS)
                self.touch()
                self._after_capture(Step.FINGERPRINTS)
                result = CaptureResult(True, preview=frame.image)
            else:
                # the camera keeps trying on its own; tries only count down to
                # when the screen stops and asks the citizen to press "try again"
                self.tries_left = max(self.tries_left - 1, 0)
                self.problem = quality.problem
                self._signal(Signal.RETRY)
                result = CaptureResult(False, quality.problem, self.tries_left, preview=frame.image)
        self._changed()
        return result

    def retry_face(self) -> None:
        """The citizen pressed 'try again' after the automatic tries ran out."""
        with self._lock:
            self._require(Step.FACE)
            self.tries_left = self.session.face_tries
            self.fault = None
            self.touch()
        self._changed()

    # -- fingerprints ---------------------------------------------------------

    def capture_finger(self) -> CaptureResult:
        """Wait for the current finger and check it; blocks on the reader."""
        with self._lock:
            session = self._require(Step.FINGERPRINTS)
            finger = self.current_finger
            self._signal(Signal.WORKING)
        try:
            capture = self.modules.fingerprint.capture(timeout=FINGER_WAIT_S)
            quality = assess_fingerprint(capture.image) if capture.image is not None else None
        except DriverError as exc:  # unplugged, timed out, never opened
            return self._device_fault(session, Step.FINGERPRINTS, ModuleKind.FINGERPRINT, exc)
        with self._lock:
            if (
                self.enrollment is not session
                or self.step is not Step.FINGERPRINTS
                or self.current_finger is not finger
            ):
                return CaptureResult(False, stale=True)
            self.fault = None
            if capture.outcome is Outcome.NO_FINGER or quality is None:
                # waiting is not a failed try: the citizen may still be reading
                self.problem = "quality.finger.no_finger"
                result = CaptureResult(False, self.problem, self.tries_left)
            elif quality.ok:
                attempts = self.session.finger_tries - self.tries_left + 1
                self._record_finger(FingerRecord(finger, attempts, capture, quality))
                self._signal(Signal.SUCCESS)
                self.touch()
                result = CaptureResult(True, preview=capture.image)
            else:
                self.tries_left -= 1
                self.touch()
                if self.tries_left > 0:
                    self.problem = quality.problem
                    self._signal(Signal.RETRY)
                    result = CaptureResult(
                        False, quality.problem, self.tries_left, preview=capture.image
                    )
                else:
                    # recorded as unusable and flagged; the operator decides later
                    record = FingerRecord(
                        finger,
                        self.session.finger_tries,
                        capture,
                        quality,
                        FingerException.UNUSABLE,
                    )
                    self._record_finger(record)
                    self._signal(Signal.ATTENTION)
                    result = CaptureResult(False, quality.problem, 0, preview=capture.image)
        self._changed()
        return result

    def mark_finger(self, exception: FingerException) -> None:
        """The current finger is missing or injured: record it, flag it, move on."""
        with self._lock:
            self._require(Step.FINGERPRINTS)
            attempts = self.session.finger_tries - self.tries_left
            self._record_finger(FingerRecord(self.current_finger, attempts, exception=exception))
            self._signal(Signal.ATTENTION)
            self.touch()
        self._changed()

    def _record_finger(self, record: FingerRecord) -> None:
        self.enrollment.fingers[record.finger] = record
        missing = [f for f in FINGER_ORDER if f not in self.enrollment.fingers]
        if self.returning_to_review or not missing:
            self._after_capture(Step.SIGNATURE)
        else:
            self.current_finger = missing[0]
            self.tries_left = self.session.finger_tries
            self.problem = None

    # -- signature ------------------------------------------------------------

    def add_signature_stroke(self, stroke: Sequence[Point]) -> None:
        with self._lock:
            self._require(Step.SIGNATURE)
            self.modules.signature.add_stroke(stroke)
            self.problem = None  # the citizen is signing again
            self.touch()

    def clear_signature(self) -> None:
        with self._lock:
            self._require(Step.SIGNATURE)
            self.modules.signature.begin()
            self.problem = None
            self.touch()
        self._changed()

    def submit_signature(self) -> SignatureQuality | None:
        """Check what was signed; a good signature moves on to the review."""
        with self._lock:
            enrollment = self._require(Step.SIGNATURE)
            self.touch()
            try:
                capture = self.modules.signature.collect(timeout=SIGNATURE_TIMEOUT_S)
            except DriverError as exc:  # unplugged, timed out, never opened
                self._device_fault(enrollment, Step.SIGNATURE, ModuleKind.SIGNATURE, exc)
                return None
            quality = assess_signature(capture.strokes, aspect=capture.aspect)
            if quality.ok:
                width, height = SIGNATURE_IMAGE_SIZE
                image = render_signature(capture.strokes, width, height)
                enrollment.signature = SignatureRecord(capture, quality, image)
                self._signal(Signal.SUCCESS)
                self._go(Step.REVIEW)
                self.returning_to_review = False
            else:
                self.problem = quality.problem
                self.modules.signature.begin()
                self._signal(Signal.RETRY)
        self._changed()
        return quality

    # -- review, save, done ---------------------------------------------------

    def retake(self, item: Retake | Finger) -> None:
        """From the review, capture one item again, then come back to the review."""
        with self._lock:
            self._require(Step.REVIEW)
            self.returning_to_review = True
            if isinstance(item, Finger):
                self._go(Step.FINGERPRINTS)
                self.current_finger = item
                self.tries_left = self.session.finger_tries
            elif item is Retake.FACE:
                self._go(Step.FACE)
                self.tries_left = self.session.face_tries
            else:
                self._enter_signature()
            self.touch()
        self._changed()

    def save(self) -> str | None:
        """Review -> Done: hand the enrollment to the store. Returns its id, or
        None if the store refused (the enrollment stays here to try again)."""
        with self._lock:
            enrollment = self._require(Step.REVIEW)
            self.touch()
            if not enrollment.complete:
                raise FlowError("the enrollment is not complete")
            self._go(Step.DONE)  # closes the review's timing before it is written
            packet = build_packet(enrollment, self.modules.infos(), self._wall_clock())
            try:
                self.sink.save(packet)
            except StoreError as exc:
                log.error("enrollment %s not saved: %s", enrollment.enrollment_id, exc)
                self.step = Step.REVIEW
                self.problem = "flow.save.failed"
                self._signal(Signal.ATTENTION)
                result = None
            else:
                self.saved_id = enrollment.enrollment_id
                self._signal(Signal.SUCCESS)
                result = self.saved_id
        self._changed()
        return result

    # -- helpers --------------------------------------------------------------

    def _after_capture(self, next_step: Step) -> None:
        if self.returning_to_review:
            self.returning_to_review = False
            self._go(Step.REVIEW)
        elif next_step is Step.FINGERPRINTS:
            self._go(Step.FINGERPRINTS)
            self.current_finger = FINGER_ORDER[0]
            self.tries_left = self.session.finger_tries
        else:
            self._enter_signature()

    def _enter_signature(self) -> None:
        self._go(Step.SIGNATURE)
        self.modules.signature.begin()

    def _device_fault(
        self, session: Enrollment, step: Step, kind: ModuleKind, exc: Exception
    ) -> CaptureResult:
        log.error("%s module fault: %s", kind, exc)
        with self._lock:
            if self.enrollment is not session or self.step is not step:
                return CaptureResult(False, stale=True)
            self.fault = kind
            self.problem = f"flow.fault.{kind}"
            self._signal(Signal.FAULT)
        self._changed()
        return CaptureResult(False, self.problem, self.tries_left, fault=kind)

    def _signal(self, signal: Signal) -> None:
        try:
            self.modules.indicators.signal(signal)
        except Exception:  # a dead light must never stop an enrollment
            log.exception("indicators failed")
