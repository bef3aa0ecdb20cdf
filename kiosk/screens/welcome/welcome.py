"""Welcome: the citizen picks a language, which starts the enrollment."""

from pathlib import Path

from kiosk.flow.machine import Step
from kiosk.screens.base import KioskScreen


class WelcomeScreen(KioskScreen):
    step = Step.WELCOME
    kv = Path(__file__).with_suffix(".kv")

    def start(self, language: str) -> None:
        self.flow.start(language)
