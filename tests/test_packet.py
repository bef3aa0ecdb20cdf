"""The packet of a finished enrollment: manifest fields and files, as docs/packet-format.md says."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest
from support import VALID_NIK, PacketCatcher

from kiosk import __version__
from kiosk.drivers.base import ModuleKind
from kiosk.drivers.fingerprint.fake import TEMPLATE_SIZE
from kiosk.flow.enrollment import CONSENT_NOTICE, new_enrollment_id, notice_sha256
from kiosk.flow.fingers import FINGER_ORDER, Finger, FingerException
from kiosk.flow.machine import SIGNATURE_IMAGE_SIZE, EnrollmentFlow, Step
from kiosk.i18n import catalog
from kiosk.packet.build import FACE_MAX_SIDE, SCHEMA_VERSION, Packet, build_packet
from kiosk.packet.wsq import decode_wsq
from kiosk.simulate import enroll_one

FINISHED_AT = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
# The goal for one packet (issue 7): what a poor 2G link sends in about a minute.
PACKET_GOAL_BYTES = 150 * 1024
# Mean absolute error of a WSQ round trip, in grey levels (5.8 to 6.5 measured on the
# sample prints, see tests/test_wsq.py).
WSQ_MAX_MEAN_ERROR = 8.0


@pytest.fixture
def finished(make_flow, clock) -> EnrollmentFlow:
    """A flow at DONE whose enrollment has timed steps and two flagged fingers:
    right index missing, right middle unusable after three poor prints."""
    flow = make_flow(sink=PacketCatcher(), fingerprint=("good", "poor", "poor", "poor", "good"))
    flow.start("en")
    clock.advance(21)
    assert flow.submit_nik(VALID_NIK).ok
    clock.advance(34)
    flow.accept_consent()
    clock.advance(6)
    assert flow.capture_face().accepted
    flow.accept_face()
    assert flow.capture_finger().accepted  # right thumb
    flow.mark_finger(FingerException.MISSING)  # right index
    for _ in range(3):
        assert not flow.capture_finger().accepted  # right middle: poor, poor, poor
    while flow.step is Step.FINGERPRINTS:
        clock.advance(5)
        assert flow.capture_finger().accepted
    clock.advance(11)
    flow.modules.signature.sign()
    assert flow.submit_signature().ok
    clock.advance(8)
    assert flow.save() is not None
    return flow


@pytest.fixture
def packet(finished) -> Packet:
    return build_packet(finished.enrollment, FINISHED_AT)


def decode(data: bytes, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    assert image is not None, "not a decodable image"
    return image


def test_the_flow_hands_the_store_this_packet(finished, packet):
    handed = finished.sink.packets
    assert len(handed) == 1
    assert handed[0].enrollment_id == packet.enrollment_id
    assert handed[0].files == packet.files
    assert handed[0].manifest["fingers"] == packet.manifest["fingers"]


def test_manifest_identifies_enrollment_station_and_software(packet):
    manifest = packet.manifest
    assert manifest["schema"] == SCHEMA_VERSION == 3
    assert manifest["enrollment_id"] == packet.enrollment_id
    assert packet.enrollment_id.startswith("TEST-01-")
    assert manifest["station"] == {"id": "TEST-01"}
    assert manifest["software"] == f"rekam-kiosk {__version__}"
    assert manifest["operator"] is None
    assert manifest["nik"] == VALID_NIK
    assert manifest["language"] == "en"
    assert manifest["finished_at"] == "2026-11-28T09:30:00+00:00"
    assert datetime.fromisoformat(manifest["started_at"]).tzinfo is not None


def test_an_enrollment_id_is_station_date_and_sequence():
    when = datetime(2026, 11, 28, 23, 59, tzinfo=UTC)
    assert new_enrollment_id("TEST-01", when, 42) == "TEST-01-20261128-000042"
    assert new_enrollment_id("TEST-01", when, 1_234_567) == "TEST-01-20261128-1234567"


def test_ids_from_the_counter_never_collide_even_when_the_clock_jumps_back():
    # A Pi without a real-time clock boots in the past, then NTP puts it right.
    days = [28, 28, 1, 1, 28, 29, 1, 28]
    ids = [
        new_enrollment_id("TEST-01", datetime(2026, 11, day, tzinfo=UTC), sequence)
        for sequence, day in enumerate(days, 1)
    ]
    assert len(set(ids)) == len(ids)


def test_manifest_carries_the_sequence(finished):
    numbered = dataclasses.replace(finished.enrollment, sequence=41)
    packet = build_packet(numbered, FINISHED_AT)
    assert packet.manifest["sequence"] == 41


def test_the_flow_numbers_enrollments_on_from_the_sinks_last_sequence(make_flow):
    catcher = PacketCatcher()
    catcher.packets.append(
        Packet("TEST-01-20261127-000006", {"sequence": 6, "modules": []}, {})
    )  # saved before the kiosk restarted
    assert catcher.last_sequence() == 6
    flow = make_flow(sink=catcher)
    for expected in (7, 8):
        enroll_one(flow, VALID_NIK)
        packet = catcher.packets[-1]
        assert packet.manifest["sequence"] == expected
        assert packet.enrollment_id.endswith(f"-{expected:06d}")
    assert catcher.last_sequence() == 8
    assert PacketCatcher().last_sequence() == 0


def test_manifest_records_the_consent(finished, packet):
    consent = packet.manifest["consent"]
    assert consent["notice"] == CONSENT_NOTICE
    assert consent["language"] == "en"
    given_at = datetime.fromisoformat(consent["given_at"])
    started_at = datetime.fromisoformat(packet.manifest["started_at"])
    assert started_at <= given_at <= started_at + timedelta(minutes=1)
    assert given_at == finished.enrollment.consent.given_at
    shown = "\n".join(catalog("en")[f"consent.{key}"] for key in NOTICE_PARTS)
    assert consent["notice_sha256"] == hashlib.sha256(shown.encode()).hexdigest()
    assert consent["notice_sha256"] != notice_sha256("id")  # the words in the language shown


# The words of each consent notice ever shown, by language. Changing the text
# changes its hash: then bump CONSENT_NOTICE (kiosk/flow/enrollment.py) and add
# the new notice's hashes here, so that every packet names words that existed.
NOTICE_HASHES = {
    "consent-notice-2026-11-v1": {
        "id": "62ce19a38923852e9a3fe0e8132dadd57252939d43d39eb2b8b7831c0e705ae9",
        "en": "4f83df30820ad16c389935a258bb628c1c94bf8db80a9112d5081014188673e8",
    },
    # v2: the data is locked (encrypted) on the kiosk, and how long it stays there
    "consent-notice-2026-11-v2": {
        "id": "d0284f3f5dc2a463f4927c9cb3294709f44052c0cb560cefcf50d7f9a86a74a6",
        "en": "8ba9b4b712caed330ce63e583381ac262d20771c7d824c89115cce2ed3ab1d47",
    },
}
NOTICE_PARTS = ("title", "body", "accept", "decline")


def test_the_consent_text_changes_only_with_a_new_notice_version():
    assert CONSENT_NOTICE in NOTICE_HASHES, "a new notice: record its hashes here"
    for language, expected in NOTICE_HASHES[CONSENT_NOTICE].items():
        assert notice_sha256(language) == expected, (
            f"the {language} consent text changed: bump CONSENT_NOTICE and record the new hashes"
        )


def test_manifest_times_every_step(packet):
    assert packet.manifest["step_seconds"] == {
        "nik": 21,
        "consent": 34,
        "face": 6,
        "fingerprints": 35,  # seven good fingers, five seconds each
        "signature": 11,
        "review": 8,
    }


def test_manifest_names_each_unit_that_captured(finished, packet):
    modules = packet.manifest["modules"]
    # the units that captured, each once: no entry for the lights, which capture nothing
    assert [entry["kind"] for entry in modules] == ["camera", "fingerprint", "signature"]
    infos = finished.modules.infos()
    for entry in modules:
        info = infos[ModuleKind(entry["kind"])]
        assert entry["driver"] == "fake"
        assert entry["model"] == info.model and entry["model"]
        assert entry["serial"] == info.serial and entry["serial"]
        assert entry["serial_source"] == "simulated"
        assert entry["simulated"] is True
    assert modules[packet.manifest["face"]["module"]]["kind"] == "camera"
    assert modules[packet.manifest["signature"]["module"]]["kind"] == "signature"
    captured = [f for f in packet.manifest["fingers"] if f["image"]]
    assert {modules[f["module"]]["kind"] for f in captured} == {"fingerprint"}
    assert packet.simulated


def test_each_finger_names_the_reader_that_took_it(finished):
    """Fingers taken before a reader was swapped name the first reader, later ones
    the second, and one real unit among them makes the whole packet real."""
    enrollment = finished.enrollment
    thumb = enrollment.fingers[Finger.RIGHT_THUMB]
    swapped = dataclasses.replace(thumb.capture.module, serial="REAL-0002", simulated=False)
    little = enrollment.fingers[Finger.LEFT_LITTLE]
    enrollment.fingers[Finger.LEFT_LITTLE] = dataclasses.replace(
        little, capture=dataclasses.replace(little.capture, module=swapped)
    )
    packet = build_packet(enrollment, FINISHED_AT)
    modules, fingers = packet.manifest["modules"], packet.manifest["fingers"]
    assert modules[fingers[0]["module"]]["serial"] == thumb.capture.module.serial
    assert modules[fingers[9]["module"]]["serial"] == "REAL-0002"
    assert not packet.simulated


def test_fingers_come_in_iso_order_with_their_exceptions(packet):
    fingers = packet.manifest["fingers"]
    assert [f["position"] for f in fingers] == list(range(1, 11))
    assert [f["name"] for f in fingers] == [finger.name.lower() for finger in FINGER_ORDER]
    assert fingers[0]["name"] == "right_thumb" and fingers[9]["name"] == "left_little"

    thumb, index, middle = fingers[0], fingers[1], fingers[2]
    assert thumb == {
        "position": 1,
        "name": "right_thumb",
        "attempts": 1,
        "exception": None,
        "quality": thumb["quality"],
        "image": "finger-01.wsq",
        "format": "wsq",
        "dpi": 500,
        "module": 1,
    }
    assert 0 < thumb["quality"] <= 100
    assert index["exception"] == "missing"
    assert index["image"] is None and index["quality"] is None
    assert "dpi" not in index and "format" not in index
    assert middle["exception"] == "unusable" and middle["attempts"] == 3
    assert middle["image"] == "finger-03.wsq"  # the best try is kept for the operator
    assert all(f["exception"] is None for f in fingers[3:])
    assert packet.manifest["exceptions"] == [
        {"finger": 2, "reason": "missing"},
        {"finger": 3, "reason": "unusable"},
    ]


def test_face_and_signature_entries_point_at_their_files(packet):
    face, signature = packet.manifest["face"], packet.manifest["signature"]
    assert face["image"] == "face.jpg" and face["module"] == 0
    assert face["attempts"] == 1 and 0 < face["quality"] <= 1
    assert signature == {
        "image": "signature.png",
        "strokes": "signature-strokes.json",
        "stroke_count": 3,
        "module": 2,
    }


def test_files_are_exactly_those_the_manifest_names(packet):
    prints = [n for n in range(1, 11) if n != 2]
    assert set(packet.files) == {
        "face.jpg",
        "signature.png",
        "signature-strokes.json",
        *(f"finger-{n:02d}.wsq" for n in prints),
        *(f"finger-{n:02d}.template" for n in prints),
    }


def test_face_is_a_jpeg_of_the_captured_colours(finished, packet):
    data = packet.files["face.jpg"]
    assert data[:2] == b"\xff\xd8"
    decoded = cv2.cvtColor(decode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    captured = finished.enrollment.face.image
    assert decoded.shape == captured.shape == (640, 480, 3)  # the 3:4 portrait
    # quality 90 keeps it close; swapped red and blue channels would not be
    difference = np.abs(decoded.astype(int) - captured.astype(int)).mean()
    assert difference < 3
    swapped = np.abs(decoded[..., ::-1].astype(int) - captured.astype(int)).mean()
    assert swapped > difference


def test_fingerprints_are_wsq_close_to_the_capture_with_their_templates(finished, packet):
    for finger in (Finger.RIGHT_THUMB, Finger.RIGHT_MIDDLE, Finger.LEFT_LITTLE):
        name = f"finger-{int(finger):02d}"
        data = packet.files[f"{name}.wsq"]
        assert data[:2] == b"\xff\xa0"  # WSQ start of image
        image = decode_wsq(data)
        capture = finished.enrollment.fingers[finger].capture
        assert image.shape == capture.image.shape == (288, 256) and image.dtype == np.uint8
        error = np.abs(image.astype(int) - capture.image.astype(int)).mean()
        assert error < WSQ_MAX_MEAN_ERROR
        assert len(data) < capture.image.size / 8  # 0.75 bpp, not a lossless copy
        assert packet.files[f"{name}.template"] == capture.template
        assert len(capture.template) == TEMPLATE_SIZE


def test_every_print_in_the_manifest_is_a_500_ppi_wsq_file(packet):
    for finger in packet.manifest["fingers"]:
        if finger["image"] is None:
            continue
        assert finger["image"] == f"finger-{finger['position']:02d}.wsq"
        assert finger["format"] == "wsq" and finger["dpi"] == 500
        assert b"\nPPI 500\n" in packet.files[finger["image"]]


def test_the_whole_packet_is_within_150_kb(make_flow):
    catcher = PacketCatcher()
    enroll_one(make_flow(sink=catcher), VALID_NIK)  # all ten fingers, face and signature
    packet = catcher.packets[-1]
    assert sum(1 for name in packet.files if name.endswith(".wsq")) == 10
    files = sum(len(content) for content in packet.files.values())
    total = files + len(packet.manifest_json())
    sizes = {name: len(content) for name, content in sorted(packet.files.items())}
    print(f"packet: files {files} bytes, with the manifest {total} bytes; {sizes}")
    assert total <= PACKET_GOAL_BYTES


def test_a_large_face_frame_is_capped_for_the_portrait_never_enlarged(finished):
    enrollment = finished.enrollment
    small = enrollment.face.image
    assert max(small.shape[:2]) <= FACE_MAX_SIDE  # the fake camera's 640 x 480: kept as is
    large = cv2.resize(small, (1640, 1232), interpolation=cv2.INTER_LINEAR)  # picamera2 still
    enrollment.face = dataclasses.replace(enrollment.face, image=large)
    decoded = decode(build_packet(enrollment, FINISHED_AT).files["face.jpg"], cv2.IMREAD_COLOR)
    assert decoded.shape == (481, 640, 3)


def test_signature_image_has_the_rendered_size(packet):
    width, height = SIGNATURE_IMAGE_SIZE
    image = decode(packet.files["signature.png"])
    assert image.shape == (height, width)
    assert image.min() < 128 < image.max()  # ink on paper, not a blank sheet


def test_signature_strokes_round_trip_through_json(finished, packet):
    data = json.loads(packet.files["signature-strokes.json"])
    capture = finished.enrollment.signature.capture
    assert data["aspect"] == capture.aspect == 3.0
    strokes = tuple(tuple(tuple(point) for point in stroke) for stroke in data["strokes"])
    assert strokes == capture.strokes
    assert len(strokes) == packet.manifest["signature"]["stroke_count"]


def test_manifest_json_is_sorted_utf8_that_reads_back(packet):
    text = packet.manifest_json()
    assert json.loads(text.decode("utf-8")) == packet.manifest
    assert list(json.loads(text)) == sorted(packet.manifest)


def test_one_real_module_makes_the_packet_real(packet):
    manifest = json.loads(packet.manifest_json())
    manifest["modules"][2]["simulated"] = False  # the signature pad
    assert not dataclasses.replace(packet, manifest=manifest).simulated


def test_a_packet_naming_no_modules_is_not_simulated(packet):
    assert not dataclasses.replace(packet, manifest={**packet.manifest, "modules": []}).simulated
