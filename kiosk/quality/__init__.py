"""On-device quality checks for face, fingerprint and signature: pure functions on arrays.

Each ``assess_*`` returns a frozen result whose ``problem`` (None when ``ok``)
is an i18n key telling the citizen what to do, e.g. "quality.face.too_dark".
Nothing here imports Kivy or touches a device.
"""

from kiosk.quality.face import FaceProblem, FaceQuality, assess_face
from kiosk.quality.fingerprint import (
    FingerprintProblem,
    FingerprintQuality,
    SensorSignals,
    assess_fingerprint,
)
from kiosk.quality.signature import (
    SignatureProblem,
    SignatureQuality,
    assess_signature,
    render_signature,
)

__all__ = [
    "FaceProblem",
    "FaceQuality",
    "FingerprintProblem",
    "FingerprintQuality",
    "SensorSignals",
    "SignatureProblem",
    "SignatureQuality",
    "assess_face",
    "assess_fingerprint",
    "assess_signature",
    "render_signature",
]
