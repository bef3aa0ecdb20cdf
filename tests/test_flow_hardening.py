"""The citizen's path, hardened (issue 5): dialogs pause the capture, flagged
fingers and young citizens go to the operator, a declined consent says so,
the NIK can be corrected from the review, and saves are logged without the NIK."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from support import VALID_NIK, PacketCatcher, stored_packet
from test_flow import to_fingerprints, to_review

from kiosk.config import SessionConfig
from kiosk.drivers.base import Signal
from kiosk.errors import FlowError
from kiosk.flow.fingers import Finger, FingerException
from kiosk.flow.machine import EnrollmentFlow, Notice, OperatorReason, Retake, Step, age_on
from kiosk.operator_pin import (
    LOCK_SECONDS,
    MAX_LOCK_SECONDS,
    WRONG_TRIES_BEFORE_LOCK,
    PinPad,
    hash_pin,
    parse_pin_hash,
)
from kiosk.staff import Desk

PIN = "4821"
INJURED = "operator.decision.injured"
TODAY = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def pin_hash() -> str:
    return hash_pin(PIN)


@pytest.fixture
def operator_flow(make_flow, clock, pin_hash):
    """make_flow with an operator, siti, on duty and a fixed date (28 November 2026)."""

    def make(**options) -> EnrollmentFlow:
        flow = make_flow(**options)
        flow.desk = Desk({"siti": pin_hash, "budi": pin_hash}, clock=clock)
        flow.desk.on_duty = "siti"
        flow._wall_clock = lambda: TODAY
        return flow

    return make


# -- item 3: a dialog pauses the capture -----------------------------------------


def test_a_capture_that_ends_while_a_dialog_is_open_is_dropped(make_flow):
    flow = make_flow()
    to_fingerprints(flow)
    flow.capture_finger()
    flow.capture_finger()
    assert flow.current_finger is Finger.RIGHT_MIDDLE
    flow.pause()  # "Stop this recording?" opens on finger 3
    for _ in range(10):
        assert flow.capture_finger().stale
    assert flow.step is Step.FINGERPRINTS and flow.current_finger is Finger.RIGHT_MIDDLE
    flow.resume()  # "No, continue"
    assert flow.capture_finger().accepted
    assert flow.current_finger is Finger.RIGHT_RING


def test_a_capture_begun_before_the_dialog_opened_is_dropped_after_it_closes(make_flow):
    flow = make_flow()
    to_fingerprints(flow)
    reader = flow.modules.fingerprint
    real_capture = reader.capture

    def capture_while_a_dialog_opens_and_closes(timeout):
        result = real_capture(timeout)
        flow.pause()
        flow.resume()
        return result

    reader.capture = capture_while_a_dialog_opens_and_closes
    assert flow.capture_finger().stale
    assert Finger.RIGHT_THUMB not in flow.enrollment.fingers
    reader.capture = real_capture
    assert flow.capture_finger().accepted


def test_nested_dialogs_resume_only_when_the_last_closes(make_flow):
    flow = make_flow()
    to_fingerprints(flow)
    flow.pause()
    flow.pause()
    flow.resume()
    assert flow.paused and flow.capture_finger().stale
    flow.resume()
    assert not flow.paused and flow.capture_finger().accepted
    flow.resume()  # one too many does no harm
    assert not flow.paused


def test_face_capture_pauses_too(make_flow):
    flow = make_flow()
    flow.start("id")
    flow.submit_nik(VALID_NIK)
    flow.accept_consent()
    flow.pause()
    assert flow.capture_face().stale and flow.step is Step.FACE
    flow.resume()
    assert flow.capture_face().accepted
    flow.accept_face()


# -- item 2: a marked finger names the finger; too many go to the operator ------


def test_marking_a_finger_names_the_finger_it_means(make_flow):
    flow = make_flow()
    to_fingerprints(flow)
    flow.capture_finger()  # the thumb is taken while the citizen reads the question
    with pytest.raises(FlowError):
        flow.mark_finger(FingerException.MISSING, Finger.RIGHT_THUMB)
    assert not flow.enrollment.flagged_fingers
    flow.mark_finger(FingerException.MISSING, Finger.RIGHT_INDEX)
    assert flow.enrollment.fingers[Finger.RIGHT_INDEX].exception is FingerException.MISSING


def mark_all_remaining(flow: EnrollmentFlow, exception=FingerException.MISSING) -> None:
    while flow.step is Step.FINGERPRINTS:
        flow.mark_finger(exception, flow.current_finger)


def test_ten_skipped_fingers_wait_for_the_operator_instead_of_saving(operator_flow, store):
    flow = operator_flow()
    to_fingerprints(flow)
    mark_all_remaining(flow)
    flow.modules.signature.sign()
    flow.submit_signature()
    assert flow.save() is None
    assert flow.step is Step.OPERATOR
    assert flow.operator_reason is OperatorReason.FINGER_EXCEPTIONS
    assert flow.modules.indicators.current is Signal.ATTENTION
    assert store.count() == 0

    assert not flow.operator_approve("budi", "0000", INJURED)
    assert flow.step is Step.OPERATOR and flow.problem == "operator.pin.wrong"
    with pytest.raises(FlowError):  # a reason for another hold
        flow.operator_approve("budi", PIN, "operator.decision.married")
    assert flow.operator_approve("budi", PIN, INJURED)
    assert flow.step is Step.DONE
    manifest = stored_packet(store, flow.saved_id).manifest
    assert len(manifest["exceptions"]) == 10
    assert manifest["operator"] == "siti"  # on duty when the citizen began
    assert manifest["operator_approvals"] == [
        {
            "reason": "finger_exceptions",
            "approved_at": TODAY.isoformat(),
            "operator": "budi",
            "decision": "injured",
        }
    ]
    assert flow.desk.login is None  # the next decision needs a PIN again


@pytest.mark.parametrize(("limit", "flagged", "held"), [(2, 2, False), (2, 3, True), (0, 1, True)])
def test_the_exception_limit_is_the_stations(operator_flow, limit, flagged, held):
    flow = operator_flow(session=SessionConfig(max_finger_exceptions=limit))
    to_fingerprints(flow)
    for _ in range(flagged):
        flow.mark_finger(FingerException.INJURED)
    while flow.step is Step.FINGERPRINTS:
        flow.capture_finger()
    flow.modules.signature.sign()
    flow.submit_signature()
    flow.save()
    assert (flow.step is Step.OPERATOR) is held


def test_the_operator_can_send_the_citizen_back_to_retake(operator_flow, store):
    flow = operator_flow()
    to_fingerprints(flow)
    mark_all_remaining(flow, FingerException.INJURED)
    flow.modules.signature.sign()
    flow.submit_signature()
    flow.save()
    flow.operator_return()
    assert flow.step is Step.REVIEW
    for finger in (Finger.RIGHT_THUMB, Finger.RIGHT_INDEX, Finger.RIGHT_MIDDLE):
        flow.retake(finger)
        assert flow.capture_finger().accepted
    assert flow.step is Step.REVIEW
    assert len(flow.enrollment.flagged_fingers) == 7
    flow.save()
    assert flow.step is Step.OPERATOR  # still seven: still the operator's call


def test_without_operators_nobody_can_approve(make_flow):
    flow = make_flow()
    to_fingerprints(flow)
    mark_all_remaining(flow)
    flow.modules.signature.sign()
    flow.submit_signature()
    flow.save()
    assert not flow.operator_approve("siti", "", INJURED)
    assert not flow.operator_approve("siti", "1234", INJURED)
    assert flow.step is Step.OPERATOR


def test_with_operators_set_up_nobody_starts_until_one_is_on_duty(operator_flow):
    flow = operator_flow()
    flow.desk.on_duty = None
    flow.start("id")
    assert flow.step is Step.WELCOME and flow.notice is Notice.NO_OPERATOR
    assert flow.desk.log_in("budi", PIN) is not None
    flow.start("id")
    assert flow.step is Step.NIK and flow.enrollment.supervisor == "budi"


def test_wrong_pins_under_every_name_count_together(clock, pin_hash):
    pad = PinPad({"siti": pin_hash, "budi": pin_hash}, clock=clock)
    for name in ("siti", "budi", "nobody", "siti", "budi"):
        assert not pad.verify(name, "9999")
    assert pad.locked_for() == LOCK_SECONDS  # trying each name in turn gained nothing
    assert not pad.verify("nobody", PIN)


def test_wrong_pins_lock_the_pad_longer_each_time_until_the_right_one(clock, pin_hash):
    pin = PinPad({"siti": pin_hash}, clock=clock)
    for lockout in range(3):
        for _ in range(WRONG_TRIES_BEFORE_LOCK):
            assert not pin.verify("siti", "9999")
        assert not pin.verify("siti", PIN)  # locked: even the right one is refused
        assert pin.locked_for() == LOCK_SECONDS * 2**lockout  # 60 s, 120 s, 240 s
        clock.advance(pin.locked_for())
    assert pin.verify("siti", PIN)
    for _ in range(WRONG_TRIES_BEFORE_LOCK):  # the right PIN starts the count afresh
        assert not pin.verify("siti", "9999")
    assert pin.locked_for() == LOCK_SECONDS


def test_the_lockout_stops_growing_at_half_an_hour(clock, pin_hash):
    pin = PinPad({"siti": pin_hash}, clock=clock)
    for _ in range(8):
        for _ in range(WRONG_TRIES_BEFORE_LOCK):
            pin.verify("siti", "9999")
        assert pin.locked_for() <= MAX_LOCK_SECONDS
        clock.advance(pin.locked_for())
    for _ in range(WRONG_TRIES_BEFORE_LOCK):
        pin.verify("siti", "9999")
    assert pin.locked_for() == MAX_LOCK_SECONDS


@pytest.mark.parametrize("bad", ["", "123", "123456789", "12a4", "١٢٣٤"])
def test_pins_are_four_to_eight_ascii_digits(bad):
    with pytest.raises(ValueError):
        hash_pin(bad)


@pytest.mark.parametrize(
    "damaged",
    [
        "",
        "1234",
        "scrypt$16384$8$1$AA==$AA==",  # an older kiosk's
        "$argon2i$v=19$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAA",
        "$argon2id$v=19$m=lots,t=2,p=1$AA$AA",
        "$argon2id$v=19$m=19456,t=2,p=1$AAAA$AAAA",  # cut short
    ],
)
def test_a_damaged_pin_hash_is_a_clear_error(damaged):
    with pytest.raises(ValueError):
        parse_pin_hash(damaged)


def test_the_hash_is_salted_and_never_holds_the_pin(pin_hash):
    assert PIN not in pin_hash
    assert hash_pin(PIN) != pin_hash


# -- item 10: younger than the recording age ---------------------------------------


def nik_born(day: int, month: int, year: int, female: bool = False) -> str:
    return f"320101{day + (40 if female else 0):02d}{month:02d}{year % 100:02d}0001"


def test_a_citizen_under_the_recording_age_waits_for_the_operator(operator_flow):
    flow = operator_flow(session=SessionConfig(min_age_years=17))
    flow.start("id")
    assert flow.submit_nik(nik_born(29, 11, 2009, female=True)).ok  # 17 tomorrow
    assert flow.step is Step.OPERATOR
    assert flow.operator_reason is OperatorReason.UNDER_AGE
    # married: the operator checked the papers
    assert flow.operator_approve("siti", PIN, "operator.decision.married")
    assert flow.step is Step.CONSENT
    assert [a.reason for a in flow.enrollment.operator_approvals] == ["under_age"]


def test_a_citizen_of_the_recording_age_goes_straight_on(operator_flow):
    flow = operator_flow(session=SessionConfig(min_age_years=17))
    flow.start("id")
    assert flow.submit_nik(nik_born(28, 11, 2009)).ok  # 17 today
    assert flow.step is Step.CONSENT


def test_the_operator_can_send_a_mistyped_nik_back(operator_flow):
    flow = operator_flow(session=SessionConfig(min_age_years=16))
    flow.start("id")
    flow.submit_nik(nik_born(1, 1, 2015))
    flow.operator_return()
    assert flow.step is Step.NIK
    flow.submit_nik(VALID_NIK)
    assert flow.step is Step.CONSENT


@pytest.mark.parametrize(
    ("born", "today", "age"),
    [
        ((2000, 2, 29), (2017, 2, 28), 16),
        ((2000, 2, 29), (2017, 3, 1), 17),
        ((2009, 11, 28), (2026, 11, 28), 17),
        ((2009, 11, 29), (2026, 11, 28), 16),
    ],
)
def test_age_counts_whole_years(born, today, age):
    from datetime import date

    assert age_on(date(*born), date(*today)) == age


# -- items 8 and 9: correcting the NIK, declining consent --------------------------


def test_the_nik_can_be_corrected_from_the_review(make_flow, store):
    flow = make_flow()
    to_review(flow)
    flow.retake(Retake.NIK)
    assert flow.step is Step.NIK
    assert not flow.submit_nik("3201").ok
    other = "3201010101900002"
    assert flow.submit_nik(other).ok
    assert flow.step is Step.REVIEW  # straight back: consent and captures are kept
    assert stored_packet(store, flow.save()).manifest["nik"] == other


def test_declining_consent_says_so_on_welcome_for_a_while(make_flow, clock, store):
    flow = make_flow()
    flow.start("id")
    flow.submit_nik(VALID_NIK)
    flow.decline_consent()
    assert flow.step is Step.WELCOME and flow.enrollment is None
    assert flow.notice is Notice.DECLINED
    assert store.count() == 0
    clock.advance(10)
    assert not flow.tick() and flow.notice is Notice.DECLINED
    clock.advance(25)
    assert flow.tick() and flow.notice is None


def test_the_next_citizen_never_sees_the_last_ones_notice(make_flow):
    flow = make_flow()
    flow.start("id")
    flow.submit_nik(VALID_NIK)
    flow.decline_consent()
    flow.start("id")
    assert flow.notice is None


# -- item 18: saves are logged, never with the NIK -------------------------------


def test_a_save_is_logged_with_id_duration_and_steps_but_no_nik(make_flow, caplog):
    flow = make_flow(sink=PacketCatcher())
    to_review(flow)
    with caplog.at_level(logging.INFO, logger="kiosk.flow.machine"):
        enrollment_id = flow.save()
    saved = [r.getMessage() for r in caplog.records if "saved" in r.getMessage()]
    assert len(saved) == 1
    assert enrollment_id in saved[0] and "fingerprints=" in saved[0] and " s;" in saved[0]
    assert all(VALID_NIK not in record.getMessage() for record in caplog.records)


def test_a_full_disk_is_met_at_the_welcome_screen_not_at_the_review(make_flow, store):
    """Nobody starts when one more enrollment would not fit: the welcome screen says
    so and the operator is called; once there is room, the next citizen starts."""

    class FillingDisk:
        room = False

        def has_room(self):
            return self.room

        def save(self, packet):
            store.save(packet)

        def last_sequence(self):
            return store.last_sequence()

    disk = FillingDisk()
    flow = make_flow(sink=disk)
    flow.start("id")
    assert flow.step is Step.WELCOME and flow.enrollment is None
    assert flow.notice is Notice.NO_ROOM and flow.operator_called
    assert flow.modules.indicators.current is Signal.ATTENTION
    disk.room = True  # the technician carried the enrollments off
    flow.start("id")
    assert flow.step is Step.NIK


def test_the_store_has_room_while_the_disk_has_a_packet_and_margin(tmp_path, monkeypatch):
    import shutil

    from kiosk.store import sqlite

    kept = sqlite.EnrollmentStore(tmp_path / "data")
    try:
        usage = shutil.disk_usage(tmp_path)
        monkeypatch.setattr(
            sqlite.shutil, "disk_usage", lambda _p: usage._replace(free=sqlite.ROOM_FOR_ONE_BYTES)
        )
        assert kept.has_room()
        monkeypatch.setattr(
            sqlite.shutil,
            "disk_usage",
            lambda _p: usage._replace(free=sqlite.ROOM_FOR_ONE_BYTES - 1),
        )
        assert not kept.has_room()
    finally:
        kept.close()
