"""Consent: what is recorded, why, and who may see it (UU 27/2022)."""

from pathlib import Path

from kiosk.flow.machine import Step
from kiosk.screens.base import KioskScreen, moves_forward


class ConsentScreen(KioskScreen):
    step = Step.CONSENT
    kv = Path(__file__).with_suffix(".kv")

    def entered(self) -> None:
        self.ids.scroll.scroll_y = 1

    @moves_forward
    def accept(self) -> None:
        self.flow.accept_consent()

    @moves_forward
    def decline(self) -> None:
        self.flow.decline_consent()
