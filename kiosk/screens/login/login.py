"""The operator's and technician's way in: pick your name, type your PIN.

Reached from the welcome screen's small "Petugas" button; a citizen who presses
it meets a PIN pad that locks after 5 wrong PINs (kiosk.operator_pin). A right
operator PIN opens the operator's console (and puts them on duty); the
technician's opens the diagnostics. Left untouched for a minute, it closes.
"""

from __future__ import annotations

import time
from pathlib import Path

from kivy.factory import Factory
from kivy.properties import NumericProperty, StringProperty

from kiosk.screens.base import in_background
from kiosk.screens.station import StationScreen
from kiosk.staff import TECHNICIAN, Login, Role

MAX_PIN_DIGITS = 8
IDLE_CLOSE_S = 60.0


def choose(grid, value: str) -> None:
    """Mark the ChoiceButton of ``value`` in ``grid`` as the chosen one."""
    for button in grid.children:
        button.chosen = button.value == value


def fill_choices(grid, choices: list[tuple[str, str]], on_choose) -> None:
    """Fill ``grid`` with one ChoiceButton per (value, text)."""
    grid.clear_widgets()
    for value, text in choices:
        button = Factory.ChoiceButton(text=text, value=value)
        button.bind(on_release=lambda b: on_choose(b.value))
        grid.add_widget(button)


class LoginScreen(StationScreen):
    screen_name = "login"
    kv = Path(__file__).with_suffix(".kv")
    needs_login = False  # it is the login
    name_chosen = StringProperty("")
    pin = StringProperty("")  # as typed; shown as dots
    problem = StringProperty("")
    locked_s = NumericProperty(0)

    @property
    def desk(self):
        return self.app.flow.desk

    def entered(self) -> None:
        self.pin = self.problem = ""
        desk = self.desk
        names = [(name, name) for name in desk.operators]
        if desk.has_technician:
            names.append((TECHNICIAN, self.t("login.technician")))
        fill_choices(self.ids.names, names, self.pick)
        self.pick(desk.on_duty or (names[0][0] if len(names) == 1 else ""))

    def pick(self, name: str) -> None:
        self.name_chosen = name
        choose(self.ids.names, name)

    def refresh(self) -> None:
        if time.time() - max(self.shown_at, self.input_began) > IDLE_CLOSE_S:
            self.leave()  # someone opened it and walked away

    def press(self, key: str) -> None:
        if key == "back":
            self.pin = self.pin[:-1]
        elif key == "ok":
            self.log_in()
        elif len(self.pin) < MAX_PIN_DIGITS:
            self.pin += key

    def log_in(self) -> None:
        name, pin, desk = self.name_chosen, self.pin, self.desk
        self.pin = ""
        if not name:
            self.problem = "login.pick_name"
            return
        # Argon2 is slow by design: off the UI thread
        in_background(lambda: desk.log_in(name, pin), self._logged_in)

    def _logged_in(self, login: Login | None) -> None:
        if self.app.station_screen != self.screen_name:
            return  # closed meanwhile
        if login is None:
            self.locked_s = round(self.desk.pad.locked_for())
            self.problem = "operator.pin.locked" if self.locked_s else "operator.pin.wrong"
            return
        self.app.open_station("console" if login.role is Role.OPERATOR else "diagnostics")
