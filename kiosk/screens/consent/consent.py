"""Consent: what is recorded, why, and who may see it (UU 27/2022)."""

from pathlib import Path

from kiosk.flow.machine import Step
from kiosk.screens.base import KioskScreen


class ConsentScreen(KioskScreen):
    step = Step.CONSENT
    kv = Path(__file__).with_suffix(".kv")

    def entered(self) -> None:
        self.ids.scroll.scroll_y = 1

    def accept(self) -> None:
        self.flow.accept_consent()

    def decline(self) -> None:
        self.flow.cancel()
