"""The officer's side of the real window: opening the station for the day, the
PIN pad, the console's four tabs with live figures, a citizen's call turning the
console red, logging out by hand and by idling, and ending duty."""

from __future__ import annotations

import pytest
from support import VALID_NIK, stored_packet
from test_monkey import drive_to

from kiosk.config import SIMULATION_PATH, load_config
from kiosk.figures import FiguresBook
from kiosk.flow.machine import Notice, Step
from kiosk.i18n import Translator
from kiosk.screens.station import StationServices
from kiosk.staff import Desk

pytestmark = pytest.mark.ui

ID, EN = Translator("id"), Translator("en")
SIMULATION = load_config(SIMULATION_PATH)  # siti 1234, budi 5678, technician 9999


@pytest.fixture
def staffed(kiosk, running_app, tmp_path):
    """The kiosk with the simulator's staff, nobody on duty yet, and the station's
    figures and store behind the console."""
    desk = Desk(SIMULATION.operators, SIMULATION.technician_pin_hash)
    flow = kiosk.attach(desk=desk)
    figures = FiguresBook(tmp_path / "figures")
    flow.on_saved = figures.record
    before = running_app.station
    running_app.station = StationServices(store=kiosk.store, figures=figures)
    yield kiosk
    running_app.close_station()
    running_app.station = before


def type_pin(kiosk, pin: str) -> None:
    for digit in pin:
        kiosk.tap(kiosk._key(digit), settle=0)
    kiosk.tap(kiosk.widget("keypad").ids.ok)


def log_in(kiosk, name: str, pin: str) -> None:
    kiosk.tap(kiosk.widget("staff_login"))
    kiosk.wait_for(lambda: kiosk.screen.name == "login", what="the PIN pad")
    [button] = [b for b in kiosk.widget("names").children if b.text == name]
    kiosk.tap(button)
    type_pin(kiosk, pin)


def test_citizens_wait_until_an_officer_opens_the_station(staffed, running_app):
    kiosk = staffed
    assert kiosk.shows(ID("welcome.notice.no_operator"))
    kiosk.tap(kiosk.widget("start_id"))
    assert kiosk.flow.step is Step.WELCOME and kiosk.flow.notice is Notice.NO_OPERATOR
    kiosk.screenshot("16-no-operator")

    log_in(kiosk, "siti", "5678")  # budi's PIN under siti's name
    kiosk.wait_for(lambda: kiosk.widget("problem").text == ID("operator.pin.wrong"), what="no")
    assert running_app.station_screen == "login" and kiosk.flow.desk.on_duty is None
    kiosk.screenshot("17-operator-login")
    type_pin(kiosk, "1234")
    kiosk.wait_for(lambda: kiosk.screen.name == "console", what="the console")
    assert kiosk.flow.desk.on_duty == "siti"
    assert kiosk.shows(ID("console.operator", name="siti"))
    assert kiosk.shows(ID("console.queue.nothing"))
    kiosk.screenshot("18-operator-console")

    kiosk.tap(kiosk.widget("log_out"))
    kiosk.wait_for_step(Step.WELCOME)
    assert running_app.station_screen == "" and kiosk.flow.desk.login is None
    assert not kiosk.shows(ID("welcome.notice.no_operator"))  # siti is still on duty
    kiosk.tap(kiosk.widget("start_id"))
    kiosk.wait_for_step(Step.NIK)
    assert kiosk.flow.enrollment.supervisor == "siti"


def test_the_console_counts_the_day_and_shows_the_backlog_and_modules(staffed):
    kiosk = staffed
    kiosk.flow.desk.on_duty = "siti"
    drive_to(kiosk.flow, Step.DONE)
    saved = kiosk.flow.saved_id
    assert stored_packet(kiosk.store, saved).manifest["operator"] == "siti"
    kiosk.wait_for_step(Step.DONE)
    kiosk.flow.finish()
    kiosk.wait_for_step(Step.WELCOME)

    log_in(kiosk, "budi", "5678")
    kiosk.wait_for(lambda: kiosk.screen.name == "console", what="the console")
    assert kiosk.flow.desk.on_duty == "budi"  # the latest to log in is on duty
    kiosk.tap(kiosk.widget("tab_today"))
    assert ID("console.today.enrolled", count=1) in kiosk.widget("body").text
    assert kiosk.shows(ID("console.steps.fingerprints"))  # a median per step
    kiosk.screenshot("19-operator-today")
    kiosk.tap(kiosk.widget("tab_sync"))
    assert "direkam: 1" in kiosk.widget("body").text
    kiosk.tap(kiosk.widget("tab_modules"))
    body = kiosk.widget("body").text
    assert body.count(ID("console.modules.up")) == 4 and ID("common.simulated") in body


def test_a_citizen_calling_turns_the_console_red_and_leads_back_to_them(staffed, running_app):
    kiosk = staffed
    flow = kiosk.flow
    flow.desk.on_duty = "siti"
    flow.start("id")
    flow.submit_nik("3201011212200001")  # a child: held for the officer
    kiosk.wait_for_step(Step.OPERATOR)
    flow.call_operator()
    running_app.open_station("login")  # the officer arrives and logs in at this kiosk
    [button] = [b for b in kiosk.widget("names").children if b.text == "siti"]
    kiosk.tap(button)
    type_pin(kiosk, "1234")
    kiosk.wait_for(lambda: kiosk.screen.name == "console", what="the console")
    assert kiosk.widget("attention").opacity == 1
    assert kiosk.shows(ID("console.attention"))
    reason = ID("operator.reason.under_age", age=16)
    assert kiosk.shows(ID("console.queue.held", reason=reason))
    kiosk.screenshot("20-operator-attention")
    running_app.language = "en"
    kiosk.pump(0.1)
    assert kiosk.shows(EN("console.attention"))
    kiosk.screenshot("en-20-operator-attention")
    running_app.language = "id"
    kiosk.tap(kiosk.widget("to_citizen"))
    kiosk.wait_for_step(Step.OPERATOR)  # where the decision is taken, with a PIN again
    assert flow.desk.login is None


def test_an_idle_login_ends_by_itself_and_ending_duty_closes_the_station(staffed, running_app):
    kiosk = staffed
    kiosk.flow.desk.idle_logout_s = 1.0
    log_in(kiosk, "siti", "1234")
    kiosk.wait_for(lambda: kiosk.screen.name == "console", what="the console")
    kiosk.wait_for(lambda: running_app.station_screen == "", timeout=5, what="the idle logout")
    assert kiosk.screen.name == "welcome" and kiosk.flow.desk.login is None
    assert kiosk.flow.desk.on_duty == "siti"  # logged out, still on duty

    kiosk.flow.desk.idle_logout_s = 90.0
    log_in(kiosk, "siti", "1234")
    kiosk.wait_for(lambda: kiosk.screen.name == "console", what="the console")
    kiosk.tap(kiosk.widget("end_duty"))
    kiosk.wait_for_step(Step.WELCOME)
    assert kiosk.flow.desk.on_duty is None
    assert kiosk.shows(ID("welcome.notice.no_operator"))


def test_when_no_photo_passes_the_officer_sees_the_last_one_and_accepts_it(kiosk):
    from kiosk.config import SessionConfig

    desk = Desk(SIMULATION.operators)
    desk.on_duty = "siti"
    quick = SessionConfig(face_try_s=0.3, face_tries=2)
    flow = kiosk.attach(desk=desk, session=quick, camera=("dark",) * 6)
    flow.start("id")
    flow.submit_nik(VALID_NIK)
    flow.accept_consent()
    kiosk.wait_for_step(Step.FACE)
    kiosk.wait_for(lambda: kiosk.widget("ask_officer").opacity == 1, what="the officer button")
    kiosk.tap(kiosk.widget("ask_officer"))
    kiosk.wait_for_step(Step.OPERATOR)
    assert kiosk.widget("photo").texture is not None  # the photo in question
    assert kiosk.shows(ID("operator.reason.face_quality"))
    kiosk.tap(kiosk.widget("decisions").children[-1])  # the first: a condition of the face
    kiosk.screenshot("21-operator-face")
    type_pin(kiosk, "1234")
    kiosk.wait_for_step(Step.FINGERPRINTS)
    [approval] = flow.enrollment.operator_approvals
    assert approval.decision == "operator.decision.face_condition"
