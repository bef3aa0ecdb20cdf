"""``kiosk provision --screen``: the provisioning screen in a small App of its own, on the
station's display at first boot (systemd/kiosk-firstboot.service), before any station
file exists. It exits 0 once the station is provisioned and the technician pressed
"start"; systemd then starts kiosk.service. Import kiosk.app before this module: it
sets up Kivy's window as the kiosk's own (kiosk/provision/commands.py does).
"""

from __future__ import annotations

import argparse

from kivy.app import App
from kivy.core.window import Window
from kivy.properties import StringProperty
from kivy.uix.screenmanager import NoTransition, ScreenManager

from kiosk.i18n import LANGUAGES, Translator
from kiosk.provision.station import Provisioned
from kiosk.screens.provision.provision import ProvisionScreen


class ProvisionApp(App):
    """Only what the screen asks of its App: ``t()`` and ``language``."""

    language = StringProperty("id")

    def __init__(self, screen_options: dict, **kwargs) -> None:
        super().__init__(**kwargs)
        self.title = "Rekam kiosk: provisioning"
        self.screen_options = screen_options
        self.result: Provisioned | None = None
        self._translators = {language: Translator(language) for language in LANGUAGES}

    def t(self, key: str, language: str | None = None, **values: object) -> str:
        return self._translators[language or self.language](key, **values)

    def load_kv(self, filename: str | None = None) -> bool:
        """Nothing: the screen loads its own rules (Kivy would load provision.kv twice)."""
        return False

    def build(self) -> ScreenManager:
        manager = ScreenManager(transition=NoTransition())
        manager.add_widget(
            ProvisionScreen(name="provision", finished=self._finished, **self.screen_options)
        )
        Window.bind(on_request_close=lambda *_args: True)  # no leaving before provisioning
        return manager

    def _finished(self, result: Provisioned | None) -> None:
        self.result = result
        self.stop()


def run_provision_screen(args: argparse.Namespace) -> int:
    if getattr(args, "fullscreen", False):
        Window.fullscreen = "auto"
        Window.show_cursor = False
    app = ProvisionApp(
        {
            "config_path": args.config,
            "data_dir": args.data_dir,
            "owner": args.owner,
            "force": args.force,
        }
    )
    app.language = args.language
    app.run()
    return 0 if app.result is not None else 1
