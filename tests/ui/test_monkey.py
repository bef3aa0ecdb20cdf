"""A monkey: thousands of random touches, drags and key presses, on every
screen, never crash the kiosk and never get out of it (no Escape, no window
close, no settings, no stop), nor into the operator's or technician's screens:
the officer button leads only to the PIN pad."""

from __future__ import annotations

import random
import threading
import time

import pytest
from support import VALID_NIK

from kiosk.flow.machine import EnrollmentFlow, Step
from kiosk.operator_pin import hash_pin
from kiosk.screens.base import TOUCH_GUARD_S
from kiosk.staff import Desk

pytestmark = pytest.mark.ui

EVENTS_PER_SCREEN = 500
UNDER_AGE_NIK = "3201011212200001"  # born 12 December 2020
# Escape, F1 (Kivy settings), F4, Tab, Enter, Backspace, the Windows key, Ctrl, Alt, digits, letters
KEYS = [27, 282, 285, 9, 13, 8, 311, 305, 308, *range(48, 58), *range(97, 123)]
# Scripts that keep each capture screen up while the monkey plays on it
HOLD = {
    Step.FACE: {"camera": ("dark",)},
    Step.FINGERPRINTS: {"fingerprint": ("no_finger",)},
}


def drive_to(flow: EnrollmentFlow, step: Step) -> None:
    """Move ``flow`` to ``step`` directly, before the window runs again."""
    if step is Step.OPERATOR:  # held for the operator: a citizen aged six
        flow.start("id")
        flow.submit_nik(UNDER_AGE_NIK)
        assert flow.step is step
        return
    order = list(Step)
    actions = [
        lambda: flow.start("id"),
        lambda: flow.submit_nik(VALID_NIK),
        flow.accept_consent,
        lambda: (flow.capture_face(), flow.accept_face()),
        lambda: [flow.capture_finger() for _ in range(10)],
        lambda: (flow.modules.signature.sign(), flow.submit_signature()),
        flow.save,
    ]
    for action in actions[: order.index(step)]:
        action()
    assert flow.step is step


def random_event(kiosk, rng: random.Random) -> None:
    from kivy.core.window import Window
    from kivy.tests.common import UnitTestTouch

    def anywhere():
        return rng.uniform(0, Window.width - 1), rng.uniform(0, Window.height - 1)

    roll = rng.random()
    if roll < 0.7:
        touch = UnitTestTouch(*anywhere())
        touch.touch_down()
        touch.touch_up()
    elif roll < 0.8:
        touch = UnitTestTouch(*anywhere())
        touch.touch_down()
        for _ in range(rng.randint(1, 6)):
            touch.touch_move(*anywhere())
        touch.touch_up()
    elif roll < 0.98:
        key = rng.choice(KEYS)
        modifiers = rng.choice([[], ["ctrl"], ["alt"], ["shift"]])
        text = chr(key) if 48 <= key < 123 else None
        Window.dispatch("on_key_down", key, 0, text, modifiers)
        if text:
            Window.dispatch("on_textinput", text)
        Window.dispatch("on_key_up", key, 0)
    else:
        assert Window.dispatch("on_request_close") is True  # Alt+F4, the close button


@pytest.fixture(scope="module")
def staff_hashes() -> tuple[str, str]:
    """Eight-digit PINs: 500 random events cannot type one, and the pad locks anyway."""
    return hash_pin("73914628"), hash_pin("46281739")


@pytest.mark.parametrize("step", list(Step))
def test_monkey_on_every_screen_never_crashes_or_leaves(
    kiosk, running_app, monkeypatch, step, staff_hashes
):
    stops = []
    monkeypatch.setattr(running_app, "stop", lambda *a: stops.append(a))
    flow = kiosk.attach(**HOLD.get(step, {}))
    operator, technician = staff_hashes
    flow.desk = Desk({"siti": operator}, technician)
    flow.desk.on_duty = "siti"
    drive_to(flow, step)
    kiosk.wait_for_step(step)
    rng = random.Random(f"monkey-{step}")
    visited = set()
    left_too_soon = []  # steps left by a touch or key within the guard time of the screen
    handling_input = threading.Event()  # set while the monkey's event is being dispatched

    def watch(changed: EnrollmentFlow) -> None:
        shown = running_app.root.current_screen
        by_input = handling_input.is_set() and threading.current_thread() is threading.main_thread()
        on_the_flow = shown.name in set(Step)  # not the PIN pad, which shows no step
        moved = on_the_flow and changed.step != shown.name
        if by_input and moved and time.time() - shown.shown_at < TOUCH_GUARD_S:
            left_too_soon.append(f"{shown.name} -> {changed.step}")

    flow.subscribe(watch)

    opened = set()  # the operator's and technician's screens shown
    for event in range(EVENTS_PER_SCREEN):
        handling_input.set()
        random_event(kiosk, rng)
        kiosk.loop.dispatch_input()
        handling_input.clear()
        visited.add(kiosk.flow.step)
        opened.add(running_app.station_screen)
        assert flow.desk.login is None, "the monkey logged in"
        if event % 8 == 0:
            kiosk.loop.idle()  # draw, run the clock: captures and screen changes go on
        if event % 100 == 99:
            kiosk.pump(0.3)

    kiosk.pump(0.5)
    assert stops == [], "something asked the app to stop"
    assert opened <= {"", "login"}, f"a citizen reached {opened - {'', 'login'}}"
    running_app.close_station()  # the PIN pad, if the monkey opened it
    assert running_app.root.current == kiosk.flow.step  # the screen still follows the flow
    assert step in visited
    assert left_too_soon == [], "a tap meant for one screen acted on the next"


def test_monkey_on_the_officer_pin_pad_never_gets_past_it(kiosk, running_app, staff_hashes):
    operator, technician = staff_hashes
    desk = Desk({"siti": operator, "budi": operator}, technician)
    desk.on_duty = "siti"
    flow = kiosk.attach(desk=desk)
    kiosk.tap(kiosk.widget("staff_login"))
    assert running_app.station_screen == "login"
    rng = random.Random("monkey-pin-pad")
    opened = set()
    for event in range(EVENTS_PER_SCREEN):
        random_event(kiosk, rng)
        kiosk.loop.dispatch_input()
        opened.add(running_app.station_screen)
        assert flow.desk.login is None, "the monkey logged in"
        if event % 8 == 0:
            kiosk.loop.idle()
        if running_app.station_screen == "" and flow.step is Step.WELCOME:
            kiosk.tap(kiosk.widget("staff_login"))  # closed it: open it again
    kiosk.pump(0.5)
    assert opened <= {"", "login"}, f"the monkey reached {opened - {'', 'login'}}"
    assert flow.desk.pad.locked_for() > 0 or flow.desk.pad._wrong > 0  # it did try PINs
    running_app.close_station()
