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
    more_problems = NumericProperty(0)  # errors found besides the one shown

    def entered(self) -> None:
        enrollment = self.flow.enrollment
        correcting = self.flow.returning_to_review and enrollment and enrollment.nik
        self.digits = enrollment.nik.digits if correcting else ""
        self.problem = ""
        self.more_problems = 0
        Window.bind(on_textinput=self._typed, on_key_down=self._key_down)

    def on_leave(self, *_args) -> None:
        Window.unbind(on_textinput=self._typed, on_key_down=self._key_down)

    @on_this_step
    def press(self, key: str) -> None:
        """A keypad key: a digit, 'back' or 'ok'."""
        self.problem, self.more_problems = "", 0
        if key == "back":
            self.digits = self.digits[:-1]
        elif key == "ok":
            if not self.settled():
                return  # a tap meant for the screen before
            check = self.flow.submit_nik(self.digits)
            if not check.ok:
                self.problem, self.problem_count = check.errors[0], len(self.digits)
                self.more_problems = len(check.errors) - 1
        elif key.isdigit() and len(self.digits) >= NIK_LENGTH:
            self.problem = "nik.entry.full"  # a 17th digit is not silently dropped
        elif key.isdigit():
            self.digits += key

    def display(self, digits: str) -> str:
        """The typed digits in groups of four, the rest as place holders."""
        padded = digits + "_" * (NIK_LENGTH - len(digits))
        return " ".join(padded[i : i + 4] for i in range(0, NIK_LENGTH, 4))

    # a laptop's keyboard works too (operators testing a station)
    def _typed(self, _window, text: str) -> None:
        if text.isascii() and text.isdigit():
            self.note_key()
            self.press(text)

    def _key_down(self, _window, key: int, *_args) -> None:
        if key in (8, 13):
            self.note_key()
            self.press("back" if key == 8 else "ok")
