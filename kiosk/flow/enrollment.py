"""What one citizen's enrollment holds while it is being recorded.

These records live only in memory until the enrollment is saved; cancelling or
an idle timeout drops them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from kiosk.drivers.base import FingerprintCapture, ModuleInfo, SignatureCapture
from kiosk.flow.fingers import Finger, FingerException
from kiosk.flow.nik import Nik
from kiosk.i18n import catalog
from kiosk.quality.face import FaceQuality
from kiosk.quality.fingerprint import FingerprintQuality
from kiosk.quality.matching import PrintTemplate
from kiosk.quality.signature import SignatureQuality

CONSENT_NOTICE = "consent-notice-2026-11-v2"  # bump when the consent text changes


def new_enrollment_id(station_id: str, when: datetime, sequence: int) -> str:
    """Station, date and the station's enrollment counter: readable aloud, and unique
    by construction, since the counter (kept with the store) never goes back, even
    when the clock does (a Pi without a real-time clock boots in the past)."""
    return f"{station_id}-{when:%Y%m%d}-{sequence:06d}"


def notice_sha256(language: str) -> str:
    """The SHA-256 of the consent notice exactly as shown in ``language`` (its
    title, body and both answers): proof of which words the citizen agreed to."""
    strings = catalog(language)
    shown = "\n".join(strings[f"consent.{key}"] for key in ("title", "body", "accept", "decline"))
    return hashlib.sha256(shown.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Consent:
    notice: str
    language: str
    given_at: datetime
    notice_sha256: str = ""  # see notice_sha256()


@dataclass(frozen=True)
class FaceRecord:
    image: np.ndarray  # RGB
    quality: FaceQuality
    module: ModuleInfo
    attempts: int


@dataclass(frozen=True)
class FingerRecord:
    finger: Finger
    attempts: int
    capture: FingerprintCapture | None = None
    quality: FingerprintQuality | None = None
    exception: FingerException | None = None
    # minutiae, to catch the same finger given again later; in memory only
    template: PrintTemplate | None = field(default=None, repr=False, compare=False)

    @property
    def flagged(self) -> bool:
        """The operator must look at this finger before approving."""
        return self.exception is not None


@dataclass(frozen=True)
class SignatureRecord:
    capture: SignatureCapture
    quality: SignatureQuality
    image: np.ndarray  # grayscale, ink black on white


@dataclass(frozen=True)
class OperatorApproval:
    """An operator let the enrollment go on past something the kiosk stops at."""

    reason: str  # an OperatorReason value, e.g. "under_age"
    approved_at: datetime
    operator: str  # who approved, by their name in the station file
    decision: str  # why, as the operator picked it: an "operator.decision.*" i18n key


@dataclass
class Enrollment:
    enrollment_id: str
    station_id: str
    started_at: datetime
    language: str
    nik: Nik | None = None
    consent: Consent | None = None
    face: FaceRecord | None = None
    fingers: dict[Finger, FingerRecord] = field(default_factory=dict)
    signature: SignatureRecord | None = None
    step_seconds: dict[str, float] = field(default_factory=dict)
    sequence: int = 0  # the station's enrollment counter, see new_enrollment_id
    operator_approvals: list[OperatorApproval] = field(default_factory=list)
    supervisor: str | None = None  # the operator on duty when the citizen began
    # what could not be captured because its module was down: kind -> reason;
    # the enrollment is saved marked incomplete and the citizen returns for it
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def flagged_fingers(self) -> list[FingerRecord]:
        return [record for record in self.fingers.values() if record.flagged]

    @property
    def complete(self) -> bool:
        """Ready to save: everything captured, or recorded as missing."""
        return bool(
            self.nik
            and self.consent
            and (self.face or "camera" in self.missing)
            and (self.signature or "signature" in self.missing)
            and (len(self.fingers) == 10 or "fingerprint" in self.missing)
        )
