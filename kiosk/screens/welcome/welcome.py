"""Welcome: the citizen picks a language, which starts the enrollment; a small
button in the corner lets the officer or technician log in."""

from pathlib import Path

from kivy.properties import BooleanProperty, StringProperty

from kiosk.flow.machine import Notice, Step
from kiosk.screens.base import KioskScreen, moves_forward


class WelcomeScreen(KioskScreen):
    step = Step.WELCOME
    kv = Path(__file__).with_suffix(".kv")
    notice = StringProperty("")  # i18n key: what became of the last session
    staffed = BooleanProperty(False)  # operators or a technician can log in here

    def refresh(self) -> None:
        desk = self.flow.desk
        self.staffed = desk is not None
        waiting = desk is not None and desk.waiting_for_duty
        notice = self.flow.notice
        if notice is Notice.NO_OPERATOR or notice is None:  # said while nobody is on duty
            notice = Notice.NO_OPERATOR if waiting else None
        self.notice = str(notice or "")

    @moves_forward
    def staff_login(self) -> None:
        """The small officer button: the PIN pad, then the officer's or technician's screen."""
        self.app.open_station("login")

    @moves_forward
    def start(self, language: str) -> None:
        self.flow.start(language)
