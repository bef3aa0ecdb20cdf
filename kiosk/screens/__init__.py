"""The screens, one folder each (<name>/<name>.py + <name>.kv), and their registries.

``SCREENS`` maps each flow step to its screen class; ``STATION_SCREENS`` names the
operator's and technician's screens, off the citizen's path (kiosk/screens/station.py).
The App builds its ScreenManager from both. Nothing outside this package and
app.py imports Kivy.
"""

from __future__ import annotations

from pathlib import Path

from kiosk.flow.machine import Step
from kiosk.screens.base import KioskScreen, load_kv
from kiosk.screens.consent.consent import ConsentScreen
from kiosk.screens.console.console import ConsoleScreen
from kiosk.screens.diagnostics.diagnostics import DiagnosticsScreen
from kiosk.screens.done.done import DoneScreen
from kiosk.screens.face.face import FaceScreen
from kiosk.screens.fingerprints.fingerprints import FingerprintsScreen
from kiosk.screens.login.login import LoginScreen
from kiosk.screens.nik.nik import NikScreen
from kiosk.screens.operator.operator import OperatorScreen
from kiosk.screens.review.review import ReviewScreen
from kiosk.screens.signature.signature import SignatureScreen
from kiosk.screens.station import StationScreen
from kiosk.screens.welcome.welcome import WelcomeScreen

SCREENS: dict[Step, type[KioskScreen]] = {
    screen.step: screen
    for screen in (
        WelcomeScreen,
        NikScreen,
        ConsentScreen,
        FaceScreen,
        FingerprintsScreen,
        SignatureScreen,
        ReviewScreen,
        DoneScreen,
        OperatorScreen,
    )
}

STATION_SCREENS: dict[str, type[StationScreen]] = {
    screen.screen_name: screen for screen in (LoginScreen, ConsoleScreen, DiagnosticsScreen)
}


def load_screens() -> None:
    """Load the shared kv rules, then each screen's own."""
    load_kv(Path(__file__).with_name("common.kv"))
    for screen in (*SCREENS.values(), *STATION_SCREENS.values()):
        load_kv(screen.kv)
