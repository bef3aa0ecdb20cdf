"""Welcome: the citizen picks a language, which starts the enrollment."""

from pathlib import Path

from kivy.properties import StringProperty

from kiosk.flow.machine import Step
from kiosk.screens.base import KioskScreen, moves_forward


class WelcomeScreen(KioskScreen):
    step = Step.WELCOME
    kv = Path(__file__).with_suffix(".kv")
    notice = StringProperty("")  # i18n key: what became of the last session

    def refresh(self) -> None:
        self.notice = str(self.flow.notice or "")

    @moves_forward
    def start(self, language: str) -> None:
        self.flow.start(language)
