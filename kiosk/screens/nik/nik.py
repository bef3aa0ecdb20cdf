"""NIK entry on an on-screen numeric keypad."""

from pathlib import Path

from kivy.core.window import Window
from kivy.properties import NumericProperty, StringProperty

from kiosk.flow.machine import Step
from kiosk.screens.base import KioskScreen, on_this_step

NIK_LENGTH = 16


class NikScreen(KioskScreen):
    step = Step.NIK
    kv = Path(__file__).with_suffix(".kv")
    digits = StringProperty("")
    problem = StringProperty("")  # i18n key of the last error, shown in the current language
    problem_count = NumericProperty(0)

    def entered(self) -> None:
        self.digits = ""
        self.problem = ""
        Window.bind(on_textinput=self._typed, on_key_down=self._key_down)

    def on_leave(self, *_args) -> None:
        Window.unbind(on_textinput=self._typed, on_key_down=self._key_down)

    @on_this_step
    def press(self, key: str) -> None:
        """A keypad key: a digit, 'back' or 'ok'."""
        self.problem = ""
        if key == "back":
            self.digits = self.digits[:-1]
        elif key == "ok":
            check = self.flow.submit_nik(self.digits)
            if not check.ok:
                self.problem, self.problem_count = check.errors[0], len(self.digits)
        elif key.isdigit() and len(self.digits) < NIK_LENGTH:
            self.digits += key

    def display(self, digits: str) -> str:
        """The typed digits in groups of four, the rest as place holders."""
        padded = digits + "_" * (NIK_LENGTH - len(digits))
        return " ".join(padded[i : i + 4] for i in range(0, NIK_LENGTH, 4))

    # a laptop's keyboard works too (operators testing a station)
    def _typed(self, _window, text: str) -> None:
        if text.isdigit():
            self.press(text)

    def _key_down(self, _window, key: int, *_args) -> None:
        if key == 8:
            self.press("back")
        elif key == 13:
            self.press("ok")
