"""Welcome: the citizen picks a language, which starts the enrollment."""

from pathlib import Path

from kiosk.flow.machine import Step
from kiosk.screens.base import KioskScreen, on_this_step


class WelcomeScreen(KioskScreen):
    step = Step.WELCOME
    kv = Path(__file__).with_suffix(".kv")

    @on_this_step
    def start(self, language: str) -> None:
        self.flow.start(language)
