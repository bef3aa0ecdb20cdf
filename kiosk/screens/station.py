"""Screens off the citizen's path: the operator's and the technician's.

A station screen is opened over the flow with ``app.open_station(name)`` (only
after a PIN: see kiosk/screens/login) and closed with ``app.close_station()``,
which shows the flow's own screen again. While one is open, the flow's changes
do not switch screens; ``refresh()`` runs every second so the figures stay live,
and a screen untouched for the desk's idle time closes itself (the login ends).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from kivy.app import App
from kivy.uix.screenmanager import Screen

from kiosk.config import StationConfig
from kiosk.screens.base import TouchGuard


@dataclass
class StationServices:
    """What the operator and technician screens read and act on; the parts a test
    leaves out are None."""

    config: StationConfig | None = None
    modules: Any = None  # StationModules
    supervision: Any = None  # StationSupervisor
    store: Any = None  # EnrollmentStore
    figures: Any = None  # FiguresBook


class StationScreen(TouchGuard, Screen):
    """Base of the screens off the citizen's path; subclasses set ``screen_name`` and ``kv``."""

    screen_name: ClassVar[str]
    kv: ClassVar[Path]
    needs_login: ClassVar[bool] = True  # closes when nobody is logged in (idle logout)

    @property
    def app(self) -> Any:
        return App.get_running_app()

    def t(self, key: str, **values: object) -> str:
        return self.app.t(key, self.app.language, **values)

    def entered(self) -> None:
        """The screen has just been opened."""

    def refresh(self) -> None:
        """Show the station's current state (every second while shown)."""

    def leave(self) -> None:
        """Back to the citizen's screens; the login ends."""
        self.app.close_station()
