"""The enrollment state machine: the whole citizen journey, without a window.

Screens show ``flow.step`` and forward touches to the methods here; the
headless simulator and the tests call the same methods. Capture methods block
until the device's job is done (the UI calls them from its capture thread);
every other method is instant. Leaving the step, a dialog opening or the
session ending cancels the device's job; a result that arrives anyway is
dropped, so a late result can never leak into the next step or the next
citizen's session. While a dialog is open the screen pauses the flow: captures
stop, and the citizen resumes where they were when it closes.

Module supervision tells the flow when a module goes down or comes back
(:meth:`module_down`, :meth:`module_up`): the step that needs it waits,
everything captured so far is kept, and if the module stays down the citizen
can go on without it (:meth:`skip_missing`); the enrollment is then saved
marked incomplete, naming what is missing.

    flow = EnrollmentFlow(station_id="SIM-01", modules=modules, sink=store)
    flow.start("en")
    flow.submit_nik("3201014101900001")
    flow.accept_consent()
    flow.capture_face()
    flow.accept_face()
    ...
"""

from __future__ import annotations

import enum
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np

from kiosk.config import SessionConfig
from kiosk.drivers.base import FingerPhase, ModuleKind, Outcome, Point, Signal
from kiosk.drivers.worker import Job
from kiosk.errors import CaptureCancelled, FlowError, KioskError, StoreError
from kiosk.flow.enrollment import (
    CONSENT_NOTICE,
    Consent,
    Enrollment,
    FaceRecord,
    FingerRecord,
    OperatorApproval,
    SignatureRecord,
    new_enrollment_id,
    notice_sha256,
)
from kiosk.flow.fingers import FINGER_ORDER, Finger, FingerException
from kiosk.flow.nik import NikCheck, check_nik
from kiosk.health.station import StationModules
from kiosk.i18n import DEFAULT_LANGUAGE, LANGUAGES
from kiosk.packet.build import build_packet
from kiosk.quality.face import FaceQuality, assess_face, background_colour_for
from kiosk.quality.fingerprint import SensorSignals, assess_fingerprint
from kiosk.quality.matching import find_repeat, make_template
from kiosk.quality.portrait import replace_background
from kiosk.quality.signature import (
    SignatureQuality,
    assess_signature,
    normalise_signature,
    render_signature,
)
from kiosk.staff import Desk, Role
from kiosk.store import EnrollmentSink

log = logging.getLogger(__name__)

SIGNATURE_TIMEOUT_S = 2.0
RECEIPT_SECONDS = 45.0  # the receipt stays up this long, then the kiosk is ready again
NOTICE_SECONDS = 30.0  # a word on the welcome screen about the last session, then it goes
SIGNATURE_IMAGE_SIZE = (900, 300)
# Every face measure passing this many preview frames in a row: the citizen is
# holding still in a good pose (about a fifth of a second at 25-30 frames a second).
FACE_STEADY_FRAMES = 5
FACE_POLL_S = 0.005  # how often to look for the next preview frame
REPEATED_FINGER = "flow.repeated_finger"  # guidance: this print matches an earlier finger


class Step(enum.StrEnum):
    WELCOME = "welcome"
    NIK = "nik"
    CONSENT = "consent"
    FACE = "face"
    FINGERPRINTS = "fingerprints"
    SIGNATURE = "signature"
    REVIEW = "review"
    DONE = "done"
    OPERATOR = "operator"  # held until an operator decides; not on the citizen's own path


class Retake(enum.StrEnum):
    NIK = "nik"
    FACE = "face"
    SIGNATURE = "signature"


class OperatorReason(enum.StrEnum):
    """Why an enrollment waits for an operator; the value ends its i18n keys."""

    UNDER_AGE = "under_age"  # younger than the recording age: married minors may still enroll
    FINGER_EXCEPTIONS = "finger_exceptions"  # more fingers flagged than the station allows
    FACE_QUALITY = "face_quality"  # no photo passed every check: the officer may accept one


# What an operator may give as the reason for letting each hold go on (i18n keys,
# recorded in the packet): the hub can tell a married minor from a mistake.
DECISIONS: dict[OperatorReason, tuple[str, ...]] = {
    OperatorReason.UNDER_AGE: ("operator.decision.married", "operator.decision.age_document"),
    OperatorReason.FINGER_EXCEPTIONS: (
        "operator.decision.amputated",
        "operator.decision.injured",
        "operator.decision.worn",
    ),
    OperatorReason.FACE_QUALITY: (
        "operator.decision.face_condition",
        "operator.decision.glasses_needed",
        "operator.decision.best_possible",
    ),
}


class Notice(enum.StrEnum):
    """What the welcome screen says about the session that just ended (i18n keys)."""

    DECLINED = "welcome.notice.declined"
    TIMED_OUT = "welcome.notice.timed_out"
    NO_ROOM = "welcome.notice.no_room"  # the disk is full: nobody may start
    NO_OPERATOR = "welcome.notice.no_operator"  # nobody on duty: nobody may start


# the module each capturing step needs
STEP_MODULE = {
    Step.FACE: ModuleKind.CAMERA,
    Step.FINGERPRINTS: ModuleKind.FINGERPRINT,
    Step.SIGNATURE: ModuleKind.SIGNATURE,
}


@dataclass(frozen=True)
class CaptureResult:
    """What one capture try came to, for the screen to show."""

    accepted: bool
    problem: str | None = None  # i18n key telling the citizen what to do
    tries_left: int = 0
    fault: ModuleKind | None = None  # the module failed; the operator is needed
    stale: bool = False  # the session, step or a dialog changed while the device was busy
    preview: np.ndarray | None = None  # the image just taken, for the screen to show


def age_on(birth_date: date, today: date) -> int:
    """Whole years of age on ``today`` (a 29 February birthday counts from 1 March)."""
    had_birthday = (today.month, today.day) >= (birth_date.month, birth_date.day)
    return today.year - birth_date.year - (0 if had_birthday else 1)


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
        desk: Desk | None = None,
        on_saved: Callable[[Enrollment], None] | None = None,
        report_fault: Callable[[ModuleKind, Exception], None] | None = None,
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
        self.face_pending: FaceRecord | None = None  # a portrait waiting for the citizen's yes
        self.face_for_officer: FaceRecord | None = None  # the last photo that failed, to accept
        self.tries_left = 0
        self.problem: str | None = None  # last guidance or error key, for the screen
        self.fault: ModuleKind | None = None
        self.returning_to_review = False
        self.saved_id: str | None = None
        self.desk = desk  # the operators' PINs and who is on duty; None: no operators
        self.on_saved = on_saved  # counts the day's figures
        self.operator_reason: OperatorReason | None = None
        self._after_operator: Step | None = None  # where an approval continues
        self.notice: Notice | None = None
        self.still_here_left: int | None = None  # seconds of "still there?" left, when asked
        self.finger_phase: FingerPhase | None = None  # where the reader is, for the screen
        self.down: set[ModuleKind] = set()  # modules supervision reports down
        self.operator_called = False  # the call button was pressed, or a module failed
        self._shown_signal = Signal.IDLE  # what the lights should show
        self.report_fault = report_fault  # tells supervision at once, not at its next poll
        self._job: Job | None = None  # the device call in flight, cancelled when it goes stale
        self._paused = 0  # open dialogs: captures wait while any is open
        self._capture_epoch = 0  # bumped by pause(): a capture begun before is stale
        # ids come from a counter kept with the store: unique by construction; a
        # session that is never saved leaves no gap worth keeping
        self._sequence = sink.last_sequence()
        self._entered_at = clock()
        self._last_activity = clock()
        self._notice_at = clock()
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
        self.face_pending = None  # a portrait is only ever accepted where it was shown
        if step not in (Step.FACE, Step.OPERATOR):
            self.face_for_officer = None
        self._cancel_job()
        needed = STEP_MODULE.get(step)
        self.fault = needed if needed in self.down else None  # it is already known down
        if self.fault is not None:
            self.problem = f"flow.fault.{self.fault}"

    def touch(self) -> None:
        """Note that the person is still there (any touch on the screen); this
        also answers "still there?"."""
        with self._lock:
            self._last_activity = self._clock()
            asked, self.still_here_left = self.still_here_left, None
        if asked is not None:
            self._changed()

    # -- dialogs pause the capture --------------------------------------------

    @property
    def paused(self) -> bool:
        return self._paused > 0

    def pause(self) -> None:
        """A dialog opened over the screen: no capture may move the enrollment on."""
        with self._lock:
            self._paused += 1
            self._capture_epoch += 1
            self._cancel_job()

    def resume(self) -> None:
        """A dialog closed: captures may go on from where they were."""
        with self._lock:
            self._paused = max(self._paused - 1, 0)
        self._changed()

    def set_language(self, language: str) -> None:
        if language not in LANGUAGES:
            raise FlowError(f"unknown language {language!r}")
        with self._lock:
            self.language = language
            if self.enrollment is not None:
                self.enrollment.language = language
            self._last_activity = self._clock()
        self._changed()

    def start(self, language: str | None = None) -> None:
        """Welcome -> NIK: begin a new enrollment in ``language``; or, when the disk
        has no room for one more, stay at the welcome screen, say so and call the
        operator, before the citizen gives ten fingers for nothing."""
        with self._lock:
            self._require(Step.WELCOME)
            if self.desk is not None and self.desk.waiting_for_duty:
                self.notice = Notice.NO_OPERATOR
                self._notice_at = self._clock()
                self._changed()
                return
            if not self.sink.has_room():
                log.error("no room on disk for another enrollment: not starting")
                self.notice = Notice.NO_ROOM
                self._notice_at = self._clock()
                self.operator_called = True
                self._signal(Signal.ATTENTION)
                self._changed()
                return
            self.language = language or self.language
            now = self._wall_clock()
            self._sequence += 1
            self.enrollment = Enrollment(
                new_enrollment_id(self.station_id, now, self._sequence),
                self.station_id,
                now,
                self.language,
                sequence=self._sequence,
                supervisor=self.desk.on_duty if self.desk is not None else None,
            )
            self.saved_id = None
            self.notice = None
            self._go(Step.NIK)
            self._last_activity = self._clock()
        self._changed()

    def cancel(self, notice: Notice | None = None) -> None:
        """Drop everything not saved and return to the welcome screen."""
        with self._lock:
            if self.enrollment is not None and self.step is not Step.DONE:
                log.info("enrollment %s cancelled at %s", self.enrollment.enrollment_id, self.step)
            self._reset(notice)
        self._changed()

    def _reset(self, notice: Notice | None = None) -> None:
        self.enrollment = None
        self.step = Step.WELCOME
        self.current_finger = None
        self.tries_left = 0
        self.problem = None
        self.fault = None
        self.returning_to_review = False
        self.operator_reason = None
        self._after_operator = None
        self.still_here_left = None
        self.operator_called = False
        self.notice = notice
        self._notice_at = self._clock()
        self._capture_epoch += 1
        self._cancel_job()
        self.language = self.default_language
        self._entered_at = self._clock()
        self._signal(Signal.IDLE)

    def tick(self) -> bool:
        """Call about once a second: asks "still there?" of an idle citizen, then
        ends the abandoned session. True if the flow changed."""
        with self._lock:
            now = self._clock()
            idle = now - self._last_activity
            if self.step is Step.WELCOME:
                if self.notice is None or now - self._notice_at < NOTICE_SECONDS:
                    return False
                self.notice = None
            elif self.step is Step.DONE:
                if idle < RECEIPT_SECONDS:
                    return False
                self._reset()
            else:
                ask_at = self.session.idle_timeout_s
                drop_at = ask_at + self.session.idle_warning_s
                if idle < ask_at:
                    return False
                if idle < drop_at:
                    left = math.ceil(drop_at - idle)
                    if left == self.still_here_left:
                        return False
                    self.still_here_left = left
                else:
                    log.info("enrollment abandoned at %s after %.0f s idle", self.step, idle)
                    self._reset(Notice.TIMED_OUT)
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
        """Check the typed NIK; a good one moves on (to the operator if the
        citizen is younger than the recording age)."""
        with self._lock:
            enrollment = self._require(Step.NIK)
            self._last_activity = self._clock()
            today = self._wall_clock().date()
            check = check_nik(text, today=today)
            if check.ok:
                enrollment.nik = check.nik
                if self.returning_to_review:
                    self.returning_to_review = False
                    self._go(Step.REVIEW)
                elif age_on(check.nik.birth_date, today) < self.session.min_age_years:
                    self._hold_for_operator(OperatorReason.UNDER_AGE, then=Step.CONSENT)
                else:
                    self._go(Step.CONSENT)
            else:
                self.problem = check.errors[0]
        self._changed()
        return check

    def accept_consent(self) -> None:
        with self._lock:
            enrollment = self._require(Step.CONSENT)
            enrollment.consent = Consent(
                CONSENT_NOTICE, self.language, self._wall_clock(), notice_sha256(self.language)
            )
            self._go(Step.FACE)
            self.tries_left = self.session.face_tries
            self._last_activity = self._clock()
        self._changed()

    def decline_consent(self) -> None:
        """The citizen does not agree: nothing is kept, and welcome says so."""
        with self._lock:
            self._require(Step.CONSENT)
        self.cancel(Notice.DECLINED)

    # -- the operator ---------------------------------------------------------

    def _hold_for_operator(self, reason: OperatorReason, then: Step) -> None:
        log.warning(
            "enrollment %s waits for an operator: %s", self.enrollment.enrollment_id, reason
        )
        self._go(Step.OPERATOR)
        self.operator_reason = reason
        self._after_operator = then
        self._signal(Signal.ATTENTION)

    def call_operator(self) -> None:
        """The citizen pressed the call button: the light and the screen say so."""
        with self._lock:
            self.operator_called = True
            self._last_activity = self._clock()
            self._signal(Signal.ATTENTION)
        self._changed()

    def operator_approve(self, name: str, pin: str, decision: str) -> bool:
        """Operator ``name`` lets the enrollment go on past ``operator_reason``, for
        ``decision`` (an ``operator.decision.*`` key they picked). False (and nothing
        changes) for a wrong PIN, or no operators set up."""
        with self._lock:
            self._require(Step.OPERATOR)
            if decision not in DECISIONS[self.operator_reason]:
                raise FlowError(f"{decision!r} is not a decision for {self.operator_reason}")
            self._last_activity = self._clock()
        # Argon2 takes a moment: the flow is not held meanwhile
        login = self.desk.log_in(name, pin) if self.desk is not None else None
        with self._lock:
            enrollment = self._require(Step.OPERATOR)
            if login is None or login.role is not Role.OPERATOR:
                self.problem = "operator.pin.wrong"
                result = False
            else:
                approval = OperatorApproval(
                    str(self.operator_reason), self._wall_clock(), name, decision
                )
                enrollment.operator_approvals.append(approval)
                log.info(
                    "operator %s approved %s: %s (%s)",
                    name,
                    enrollment.enrollment_id,
                    approval.reason,
                    decision,
                )
                self.desk.log_out()  # the decision is made; the next one needs the PIN again
                self.operator_called = False
                reason, then = self.operator_reason, self._after_operator
                self.operator_reason = self._after_operator = None
                if then is Step.DONE:
                    self._go(Step.REVIEW)
                    self._save(enrollment)
                elif reason is OperatorReason.FACE_QUALITY:
                    enrollment.face, self.face_for_officer = self.face_for_officer, None
                    self._after_capture(then)
                else:
                    self._go(then)
                result = True
        self._changed()
        return result

    def operator_return(self) -> None:
        """Back to where the enrollment came from, to correct it (a mistyped
        NIK, a finger that can be taken after all)."""
        with self._lock:
            self._require(Step.OPERATOR)
            back = {
                OperatorReason.UNDER_AGE: Step.NIK,
                OperatorReason.FACE_QUALITY: Step.FACE,
            }.get(self.operator_reason, Step.REVIEW)
            self.operator_reason = self._after_operator = None
            self._go(back)
            if back is Step.FACE:  # another round of tries
                self.tries_left = self.session.face_tries
                self.face_for_officer = None
            self._last_activity = self._clock()
        self._changed()

    # -- face -----------------------------------------------------------------

    def capture_face(self) -> CaptureResult:
        """Guide the citizen from the live preview until every measure passes for
        FACE_STEADY_FRAMES frames in a row (or ``face_try_s`` runs out), then take the
        still, judge it again at full size, cut the e-KTP portrait and paint the
        background of the citizen's birth year. A good portrait waits for the
        citizen's yes (:meth:`accept_face`). Blocks until done (the capture thread)."""
        with self._lock:
            enrollment = self._require(Step.FACE)
            if self.face_pending is not None:  # the citizen has a photo to answer for
                return CaptureResult(False, stale=True)
            watching = self._capture_epoch
        self._watch_face(enrollment, watching)
        taken = self._device_call(Step.FACE, lambda: self.modules.camera.still())
        if isinstance(taken, CaptureResult):
            return taken
        frame, session, epoch = taken
        quality = assess_face(frame.image)
        if quality.ok:  # painted outside the lock: grabCut takes a few hundred ms
            portrait, quality = self._portrait(frame.image, quality, session)
        with self._lock:
            if self._stale(session, Step.FACE, epoch):
                return CaptureResult(False, stale=True)
            self.fault = None
            attempts = self.session.face_tries - self.tries_left + 1
            if quality.ok:
                self.face_pending = FaceRecord(portrait, quality, frame.module, attempts)
                self.problem = None
                self._signal(Signal.SUCCESS)
                self._last_activity = self._clock()
                result = CaptureResult(True, preview=portrait)
            else:
                # tries only count down to when the screen stops and asks the
                # citizen to press "try again"; the guidance never stops meanwhile
                self.tries_left = max(self.tries_left - 1, 0)
                self.problem = quality.problem
                if quality.cut is not None:  # a face, cut as the portrait, for the officer
                    cut = quality.cut.apply(frame.image)
                    self.face_for_officer = FaceRecord(cut, quality, frame.module, attempts)
                self._signal(Signal.RETRY)
                result = CaptureResult(False, quality.problem, self.tries_left, preview=frame.image)
        self._changed()
        return result

    def _watch_face(self, session: Enrollment, epoch: int) -> None:
        """Judge preview frames, saying what to fix, until enough pass in a row or the
        try's time is up. Returns at once if the camera is down or not streaming."""
        camera = self.modules.camera
        if ModuleKind.CAMERA in self.down:
            return
        try:
            camera.start_preview()
        except Exception as exc:  # closed, being reopened: the still says what happened
            log.info("no preview to guide from: %s", exc)
            return
        deadline = time.monotonic() + self.session.face_try_s
        steady, seen = 0, None
        while steady < FACE_STEADY_FRAMES and time.monotonic() < deadline:
            with self._lock:
                if self._stale(session, Step.FACE, epoch):
                    return
            frame = camera.latest_frame()
            if frame is None or frame.captured_at == seen:
                time.sleep(FACE_POLL_S)
                continue
            seen = frame.captured_at
            quality = assess_face(frame.image, still_scale=camera.still_scale)
            steady = steady + 1 if quality.ok else 0
            with self._lock:
                if self._stale(session, Step.FACE, epoch) or quality.problem == self.problem:
                    continue
                self.problem = quality.problem
                self._signal(Signal.WORKING if quality.ok else Signal.RETRY)
            self._changed()

    def _portrait(
        self, still: np.ndarray, quality: FaceQuality, session: Enrollment
    ) -> tuple[np.ndarray, FaceQuality]:
        """The e-KTP portrait cut from a good still, its background painted red or
        blue by the birth year in the NIK, and the portrait's own verdict."""
        colour = background_colour_for(session.nik.birth_date.year)
        face = quality.cut.to_portrait(quality.landmarks)
        portrait = replace_background(quality.cut.apply(still), face, colour)
        return portrait, assess_face(portrait, background=colour)

    def accept_face(self) -> None:
        """The citizen says yes to the portrait shown: on to the fingerprints."""
        with self._lock:
            enrollment = self._require(Step.FACE)
            if self.face_pending is None:
                raise FlowError("no portrait is waiting for the citizen's yes")
            enrollment.face, self.face_pending = self.face_pending, None
            self._last_activity = self._clock()
            self._after_capture(Step.FINGERPRINTS)
        self._changed()

    def retake_face(self) -> None:
        """The citizen wants another photo: back to the live preview, tries afresh."""
        with self._lock:
            self._require(Step.FACE)
            self.face_pending = None
            self.tries_left = self.session.face_tries
            self.problem = None
            self._last_activity = self._clock()
        self._changed()

    def ask_officer_about_face(self) -> None:
        """No photo passed after every try (a condition of the face, glasses that
        must stay on...): the last one waits for the officer to accept or not."""
        with self._lock:
            self._require(Step.FACE)
            if self.tries_left > 0 or self.face_for_officer is None:
                raise FlowError("the tries have not run out on a photo with a face")
            self._last_activity = self._clock()
            self._hold_for_operator(OperatorReason.FACE_QUALITY, then=Step.FINGERPRINTS)
        self._changed()

    def retry_face(self) -> None:
        """The citizen pressed 'try again' after the automatic tries ran out."""
        with self._lock:
            self._require(Step.FACE)
            self.tries_left = self.session.face_tries
            self.fault = None
            self._last_activity = self._clock()
        self._changed()

    # -- fingerprints ---------------------------------------------------------

    def capture_finger(self) -> CaptureResult:
        """Capture the current finger and check it; blocks until the reader's job is
        done. The reader's phases (finger detected, lift) show in ``finger_phase``."""
        finger = self.current_finger
        taken = self._device_call(
            Step.FINGERPRINTS, lambda: self.modules.fingerprint.capture(self._on_phase)
        )
        if isinstance(taken, CaptureResult):
            return taken
        capture, session, epoch = taken
        try:
            quality = template = repeated = None
            if capture.image is not None:
                quality = assess_fingerprint(capture.image, SensorSignals.from_capture(capture))
            if quality is not None and quality.ok:
                # the same finger given twice (or the fingers mixed up): compared with
                # this citizen's earlier prints while they move to the next finger
                template = make_template(capture.image)
                with self._lock:
                    earlier = {
                        f: r.template
                        for f, r in session.fingers.items()
                        if r.template is not None and f is not finger
                    }
                repeated = find_repeat(template, earlier)
        except ValueError as exc:  # data no real print can be
            return self._device_fault(session, Step.FINGERPRINTS, ModuleKind.FINGERPRINT, exc)
        with self._lock:
            if self._stale(session, Step.FINGERPRINTS, epoch) or self.current_finger is not finger:
                return CaptureResult(False, stale=True)
            self.fault = None
            if repeated is not None:
                log.info("%s looks like the %s given before", finger.name, repeated.name)
                problem = REPEATED_FINGER
            else:
                problem = quality and quality.problem
            if capture.outcome is Outcome.NO_FINGER or quality is None:
                # waiting is not a failed try: the citizen may still be reading
                self.problem = "quality.finger.no_finger"
                result = CaptureResult(False, self.problem, self.tries_left)
            elif problem is None:
                attempts = self.session.finger_tries - self.tries_left + 1
                record = FingerRecord(finger, attempts, capture, quality, template=template)
                self._record_finger(record)
                self._signal(Signal.SUCCESS)
                self._last_activity = self._clock()
                result = CaptureResult(True, preview=capture.image)
            else:
                self.tries_left -= 1
                self._last_activity = self._clock()
                if self.tries_left > 0:
                    self.problem = problem
                    self._signal(Signal.RETRY)
                    result = CaptureResult(False, problem, self.tries_left, preview=capture.image)
                else:
                    # recorded as unusable and flagged, a repeat too (the matcher can be
                    # wrong): the operator decides later
                    record = FingerRecord(
                        finger,
                        self.session.finger_tries,
                        capture,
                        quality,
                        FingerException.UNUSABLE,
                    )
                    self._record_finger(record)
                    self._signal(Signal.ATTENTION)
                    result = CaptureResult(False, problem, 0, preview=capture.image)
        self._changed()
        return result

    def mark_finger(self, exception: FingerException, finger: Finger | None = None) -> None:
        """The current finger is missing or injured: record it, flag it, move on.

        ``finger`` is the one the citizen confirmed; if the flow has moved to
        another finger meanwhile, nothing is marked (FlowError).
        """
        with self._lock:
            self._require(Step.FINGERPRINTS)
            if finger is not None and finger is not self.current_finger:
                raise FlowError(f"{finger.name} is no longer the finger asked for")
            attempts = self.session.finger_tries - self.tries_left
            self._cancel_job()  # the reader was waiting for the finger that is not there
            self._record_finger(FingerRecord(self.current_finger, attempts, exception=exception))
            self._signal(Signal.ATTENTION)
            self._last_activity = self._clock()
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
            self._last_activity = self._clock()

    def clear_signature(self) -> None:
        with self._lock:
            self._require(Step.SIGNATURE)
            self.modules.signature.begin()
            self.problem = None
            self._last_activity = self._clock()
        self._changed()

    def submit_signature(self) -> SignatureQuality | None:
        """Check what was signed; a good signature moves on to the review. None if
        the pad failed or the session moved on meanwhile."""
        with self._lock:
            enrollment = self._require(Step.SIGNATURE)
            self._last_activity = self._clock()
            epoch = self._capture_epoch
        try:
            capture = self.modules.signature.collect(timeout=SIGNATURE_TIMEOUT_S)
        except Exception as exc:  # unplugged, timed out, never opened, or a bug in it
            self._device_fault(enrollment, Step.SIGNATURE, ModuleKind.SIGNATURE, exc)
            return None
        # checked and drawn outside the lock: nothing else waits on it
        quality = assess_signature(capture.strokes, aspect=capture.aspect)
        image = None
        if quality.ok:  # the ink fills the standard image, whatever part of the pad held it
            width, height = SIGNATURE_IMAGE_SIZE
            fitted = normalise_signature(capture.strokes, capture.aspect, width / height)
            image = render_signature(fitted, width, height)
        with self._lock:
            if self._stale(enrollment, Step.SIGNATURE, epoch):
                return None
            if image is not None:
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
            elif item is Retake.NIK:
                self._go(Step.NIK)
            elif item is Retake.FACE:
                self._go(Step.FACE)
                self.tries_left = self.session.face_tries
            else:
                self._enter_signature()
            self._last_activity = self._clock()
        self._changed()

    @property
    def needs_operator_to_save(self) -> bool:
        """More fingers flagged than the station allows, and no operator has approved."""
        enrollment = self.enrollment
        if enrollment is None:
            return False
        approved = {approval.reason for approval in enrollment.operator_approvals}
        too_many = len(enrollment.flagged_fingers) > self.session.max_finger_exceptions
        return too_many and OperatorReason.FINGER_EXCEPTIONS not in approved

    def save(self) -> str | None:
        """Review -> Done: hand the enrollment to the store. Returns its id, or
        None if it was not saved: the store refused (the enrollment stays here
        to try again) or it must wait for an operator first (step OPERATOR)."""
        with self._lock:
            enrollment = self._require(Step.REVIEW)
            self._last_activity = self._clock()
            if not enrollment.complete:
                raise FlowError("the enrollment is not complete")
            if self.needs_operator_to_save:
                self._hold_for_operator(OperatorReason.FINGER_EXCEPTIONS, then=Step.DONE)
                result = None
            else:
                result = self._save(enrollment)
        self._changed()
        return result

    def _save(self, enrollment: Enrollment) -> str | None:
        started = time.perf_counter()
        self._go(Step.DONE)  # closes the review's timing before it is written
        packet = build_packet(enrollment, self._wall_clock())
        try:
            self.sink.save(packet)
        except StoreError as exc:
            log.error("enrollment %s not saved: %s", enrollment.enrollment_id, exc)
            self.step = Step.REVIEW
            self.problem = "flow.save.failed"
            self._signal(Signal.ATTENTION)
            return None
        # never the NIK: logs leave the kiosk in clear
        log.info(
            "enrollment %s saved in %.3f s; steps %s",
            enrollment.enrollment_id,
            time.perf_counter() - started,
            " ".join(f"{step}={sec:.1f}s" for step, sec in enrollment.step_seconds.items()),
        )
        self.saved_id = enrollment.enrollment_id
        if self.on_saved is not None:
            self.on_saved(enrollment)
        self._signal(Signal.SUCCESS)
        return self.saved_id

    # -- helpers --------------------------------------------------------------

    def _after_capture(self, next_step: Step) -> None:
        if self.returning_to_review or next_step is Step.REVIEW:
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

    def _stale(self, session: Enrollment, step: Step, epoch: int) -> bool:
        """A capture result that no longer belongs: another session or step, or
        a dialog opened (or is open) since the capture began."""
        return (
            self.enrollment is not session
            or self.step is not step
            or self.paused
            or epoch != self._capture_epoch
        )

    def _device_call(
        self, step: Step, start: Callable[[], Job]
    ) -> tuple[Any, Enrollment, int] | CaptureResult:
        """Start the step's device job and wait for it: (value, session, epoch), or
        the CaptureResult to return when it came to nothing (stale, or a fault)."""
        kind = STEP_MODULE[step]
        with self._lock:
            session = self._require(step)
            if self.paused:
                return CaptureResult(False, stale=True)
            if kind in self.down:  # supervision is bringing it back; wait, don't poke it
                return CaptureResult(False, f"flow.fault.{kind}", self.tries_left, fault=kind)
            epoch = self._capture_epoch
            self.finger_phase = None
            self._signal(Signal.WORKING)
        try:
            job = start()
        except Exception as exc:  # closed by supervision, never opened
            return self._device_fault(session, step, kind, exc)
        with self._lock:
            if self._stale(session, step, epoch):
                job.cancel()
                return CaptureResult(False, stale=True)
            self._job = job
        try:
            value = job.result()
        except CaptureCancelled:
            return CaptureResult(False, stale=True)
        except Exception as exc:  # our DriverError; anything else a backend let through
            return self._device_fault(session, step, kind, exc)
        finally:
            with self._lock:
                if self._job is job:
                    self._job = None
                self.finger_phase = None
        return value, session, epoch

    def _on_phase(self, phase: FingerPhase) -> None:
        """The reader's progress (on its thread): shown, never decided on. Takes no
        lock, so a reader calling back while holding its own can never deadlock."""
        if self._job is not None:
            self.finger_phase = phase
            self._changed()

    def _cancel_job(self) -> None:
        job, self._job = self._job, None
        if job is not None:
            job.cancel()

    def _device_fault(
        self, session: Enrollment, step: Step, kind: ModuleKind, exc: Exception
    ) -> CaptureResult:
        if isinstance(exc, KioskError):
            log.error("%s module fault: %s", kind, exc)
        else:  # a backend let a vendor error through its boundary: a bug to fix there
            log.error("%s module fault (untranslated)", kind, exc_info=exc)
        if self.report_fault is not None:
            try:
                self.report_fault(kind, exc)
            except Exception:
                log.exception("reporting the %s fault failed", kind)
        with self._lock:
            if self.enrollment is not session or self.step is not step:
                return CaptureResult(False, stale=True)
            self.fault = kind
            self.problem = f"flow.fault.{kind}"
            self.operator_called = True
            self._signal(Signal.FAULT)
        self._changed()
        return CaptureResult(False, self.problem, self.tries_left, fault=kind)

    # -- module supervision ---------------------------------------------------

    def module_down(self, kind: ModuleKind) -> None:
        """Supervision found ``kind`` down: the step that needs it waits (its
        device call is cancelled), and the citizen is told and the operator called."""
        with self._lock:
            self.down.add(kind)
            if self.enrollment is None or STEP_MODULE.get(self.step) is not kind:
                return
            self._cancel_job()
            self.fault = kind
            self.problem = f"flow.fault.{kind}"
            self.operator_called = True
            self._signal(Signal.FAULT)
        self._changed()

    def module_up(self, kind: ModuleKind) -> None:
        """``kind`` works again (reconnected or replaced): its step goes on where it was."""
        with self._lock:
            self.down.discard(kind)
            if kind is ModuleKind.INDICATORS:
                self._signal(self._shown_signal)  # a new light shows where the kiosk is
            if self.fault is not kind:
                return
            self.fault = None
            self.problem = None
            self._signal(Signal.WORKING)
        self._changed()

    def skip_missing(self) -> None:
        """The module of this step stays down: go on without it. What it would have
        captured is recorded as missing, so the citizen returns only for that;
        everything captured already is kept."""
        with self._lock:
            self._require(*STEP_MODULE)
            kind = STEP_MODULE[self.step]
            if self.fault is not kind:
                raise FlowError(f"the {kind} works: nothing to skip")
            enrollment = self.enrollment
            enrollment.missing[str(kind)] = "module_down"
            log.warning("enrollment %s goes on without the %s", enrollment.enrollment_id, kind)
            self._last_activity = self._clock()
            next_step = {Step.FACE: Step.FINGERPRINTS, Step.FINGERPRINTS: Step.SIGNATURE}
            self._after_capture(next_step.get(self.step, Step.REVIEW))
        self._changed()

    def _signal(self, signal: Signal) -> None:
        self._shown_signal = signal
        indicators = self.modules.indicators
        if indicators.closed:
            return  # not up yet, or down: module_up shows it
        try:
            indicators.signal(signal)
        except Exception:  # a dead light must never stop an enrollment
            log.exception("indicators failed")
