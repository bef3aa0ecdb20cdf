"""Build the packet of a finished enrollment: a JSON manifest plus its files.

The format is documented in docs/packet-format.md. Sealing (encryption to the
hub, signature by the station) wraps this packet in a later version; until
then only packets from simulated modules may be stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import cv2
import numpy as np

from kiosk import __version__
from kiosk.drivers.base import ModuleInfo
from kiosk.flow.enrollment import Enrollment
from kiosk.packet.wsq import encode_wsq

# 3: fingerprints in WSQ (finger-NN.wsq, "format": "wsq"), the face capped at FACE_MAX_SIDE
#    and JPEG quality FACE_JPEG_QUALITY; 2: each capture names its unit; modules is a
#    list; incomplete, missing
SCHEMA_VERSION = 3
# The face is the e-KTP portrait the quality step cut (kiosk/quality/portrait.py: 480 x
# 640, ISO 19794-5 token geometry, 120 px between the eyes, background painted); the cap
# only guards against a larger portrait ever being handed in. Never enlarged.
FACE_MAX_SIDE = 640
# JPEG quality 90: no blocking or ringing visible on skin or around the eyes (ICAO asks
# for compression that leaves no visible artefacts), at about 70 % of quality 95's size
# (54 KB instead of 78 KB for the 640 x 480 sample): what keeps a packet under 150 KB.
FACE_JPEG_QUALITY = 90


@dataclass(frozen=True)
class Packet:
    enrollment_id: str
    manifest: dict
    files: dict[str, bytes]  # name -> content, e.g. "face.jpg", "finger-01.wsq"

    @property
    def simulated(self) -> bool:
        """True when every capture was made by a fake or an emulator: judged per
        capture, so a real unit swapped for a fake before saving still counts."""
        modules = self.manifest["modules"]
        # no module identity at all is not proof of a simulation: treat it as real
        return bool(modules) and all(module["simulated"] for module in modules)

    def manifest_json(self) -> bytes:
        return json.dumps(self.manifest, ensure_ascii=False, sort_keys=True, indent=1).encode()


def _encode(extension: str, image: np.ndarray, *params: int) -> bytes:
    ok, data = cv2.imencode(extension, image, list(params))
    if not ok:
        raise ValueError(f"could not encode {extension}")
    return data.tobytes()


def _face_for_portrait(image: np.ndarray) -> np.ndarray:
    """``image`` (RGB) with its long side capped at FACE_MAX_SIDE; never enlarged."""
    height, width = image.shape[:2]
    scale = FACE_MAX_SIDE / max(height, width)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)  # INTER_AREA: no aliasing


class _Units:
    """The units that made the captures, each listed once; captures refer to them by index."""

    def __init__(self) -> None:
        self.listed: list[dict] = []

    def index(self, module: ModuleInfo) -> int:
        entry = module.as_dict()
        if entry not in self.listed:
            self.listed.append(entry)
        return self.listed.index(entry)


def build_packet(enrollment: Enrollment, finished_at: datetime) -> Packet:
    """The packet for a complete enrollment (see Enrollment.complete).

    Each capture names the unit that made it (an index into ``modules``), so
    fingers taken before and after a reader was swapped name their own reader.
    """
    face, signature, nik, consent = (
        enrollment.face,
        enrollment.signature,
        enrollment.nik,
        enrollment.consent,
    )
    units = _Units()
    files: dict[str, bytes] = {}
    face_entry = None
    if face is not None:
        files["face.jpg"] = _encode(
            ".jpg",
            cv2.cvtColor(_face_for_portrait(face.image), cv2.COLOR_RGB2BGR),
            cv2.IMWRITE_JPEG_QUALITY,
            FACE_JPEG_QUALITY,
        )
        face_entry = {
            "image": "face.jpg",
            "attempts": face.attempts,
            "quality": round(face.quality.score, 3),
            "module": units.index(face.module),
        }
    fingers = []
    for finger, record in sorted(enrollment.fingers.items()):
        entry = {
            "position": int(finger),
            "name": finger.name.lower(),
            "attempts": record.attempts,
            "exception": record.exception and str(record.exception),
            "quality": record.quality and round(record.quality.score, 3),
            "image": None,
        }
        if record.capture is not None and record.capture.image is not None:
            name = f"finger-{int(finger):02d}.wsq"
            files[name] = encode_wsq(record.capture.image, ppi=record.capture.dpi)
            entry["image"] = name
            entry["format"] = "wsq"
            entry["dpi"] = record.capture.dpi
            entry["module"] = units.index(record.capture.module)
            if record.capture.template:
                files[f"finger-{int(finger):02d}.template"] = record.capture.template
        fingers.append(entry)

    signature_entry = None
    if signature is not None:
        files["signature.png"] = _encode(".png", signature.image)
        files["signature-strokes.json"] = json.dumps(
            {"aspect": signature.capture.aspect, "strokes": signature.capture.strokes}
        ).encode()
        signature_entry = {
            "image": "signature.png",
            "strokes": "signature-strokes.json",
            "stroke_count": signature.quality.stroke_count,
            "module": units.index(signature.capture.module),
        }

    manifest = {
        "schema": SCHEMA_VERSION,
        "enrollment_id": enrollment.enrollment_id,
        "sequence": enrollment.sequence,
        "software": f"rekam-kiosk {__version__}",
        "station": {"id": enrollment.station_id},
        "operator": enrollment.supervisor,
        "nik": nik.digits,
        "language": enrollment.language,
        "consent": {
            "notice": consent.notice,
            "language": consent.language,
            "given_at": consent.given_at.isoformat(),
            "notice_sha256": consent.notice_sha256,
        },
        "started_at": enrollment.started_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        "step_seconds": {step: round(s, 3) for step, s in enrollment.step_seconds.items()},
        "face": face_entry,
        "fingers": fingers,
        "signature": signature_entry,
        "incomplete": bool(enrollment.missing),
        "missing": dict(sorted(enrollment.missing.items())),
        "exceptions": [
            {"finger": int(r.finger), "reason": str(r.exception)}
            for r in enrollment.flagged_fingers
        ],
        "operator_approvals": [
            {
                "reason": a.reason,
                "approved_at": a.approved_at.isoformat(),
                "operator": a.operator,
                "decision": a.decision.removeprefix("operator.decision."),
            }
            for a in enrollment.operator_approvals
        ],
        "modules": units.listed,
    }
    return Packet(enrollment.enrollment_id, manifest, files)
