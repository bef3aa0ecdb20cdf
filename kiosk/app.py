"""The Kivy App: composes the screens, the flow and the modules; no logic of its own.

The window cannot be left by a citizen: Escape, the window's close button and
Kivy's settings key (F1) do nothing.
"""

from __future__ import annotations

import logging
import os
import signal

os.environ.setdefault("KIVY_NO_ARGS", "1")  # our CLI owns the command line
# SDL would turn SIGTERM into a window-close request, which the kiosk refuses;
# systemd's stop must still work, so Python handles the signals (run_kiosk).
os.environ.setdefault("SDL_NO_SIGNAL_HANDLERS", "1")
# Kivy's default log mode (KIVY) adds its own console handler to the root logger,
# next to the CLI's, so every line came out twice; it also unmutes the root level
# and turns stderr into log records. PYTHON mode leaves logging to the CLI.
os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")

from kivy.config import Config

Config.set("kivy", "exit_on_escape", "0")
# the official 7-inch touchscreen; KIOSK_WINDOW=1280x800 tries the larger panel
_width, _height = os.environ.get("KIOSK_WINDOW", "800x480").split("x")
Config.set("graphics", "width", _width)
Config.set("graphics", "height", _height)


def configure_input(environ=os.environ) -> None:
    """On the station's own display (SDL on KMS/DRM) the touchscreen is read by mtdev
    alone, as the image's Kivy config says: SDL's mouse events made from the same
    touches would double every tap. Elsewhere (a PC, Xvfb) the mouse is the input."""
    if environ.get("SDL_VIDEODRIVER") == "kmsdrm":
        if Config.has_option("input", "mouse"):
            Config.remove_option("input", "mouse")
    else:
        Config.set("input", "mouse", "mouse,disable_multitouch")  # no red dots on right-click


configure_input()

from kivy.app import App  # noqa: E402
from kivy.clock import Clock  # noqa: E402
from kivy.core.window import Window  # noqa: E402
from kivy.properties import BooleanProperty, ListProperty, ObjectProperty, StringProperty  # noqa: E402
from kivy.uix.screenmanager import NoTransition, ScreenManager  # noqa: E402

from kiosk.config import StationConfig  # noqa: E402
from kiosk.drivers.worker import DeviceWorker  # noqa: E402
from kiosk.figures import FiguresBook  # noqa: E402
from kiosk.flow.machine import STEP_MODULE, EnrollmentFlow, Step  # noqa: E402
from kiosk.flow.supervision import follow_supervision  # noqa: E402
from kiosk.health.station import StationModules  # noqa: E402
from kiosk.health.supervisor import StationSupervisor  # noqa: E402
from kiosk.i18n import LANGUAGES, Translator  # noqa: E402
from kiosk.notify import notify, watchdog_interval  # noqa: E402
from kiosk.screens import SCREENS, STATION_SCREENS, load_screens  # noqa: E402
from kiosk.screens.base import CancelDialog, StillHereDialog  # noqa: E402
from kiosk.screens.station import StationServices  # noqa: E402
from kiosk.staff import Desk  # noqa: E402
from kiosk.store.sqlite import EnrollmentStore  # noqa: E402
from kiosk.voice import SilentSpeaker, Speaker, speaker_from_config  # noqa: E402

log = logging.getLogger(__name__)


class KioskApp(App):
    """The kiosk window. ``attach()`` gives it a flow; tests attach a fresh one each."""

    language = StringProperty("id")
    simulated = ListProperty()  # kinds of module that are fakes: shown on every screen
    operator_called = BooleanProperty(False)  # shown in the top bar while it holds
    flow = ObjectProperty(None, allownone=True)
    station_screen = StringProperty("")  # an operator's or technician's screen, when open

    def __init__(
        self,
        flow: EnrollmentFlow,
        speaker: Speaker | SilentSpeaker | None = None,
        station: StationServices | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.station = station or StationServices()
        self.title = "Rekam kiosk"
        # says the capturing steps' guidance aloud; never blocks the UI
        self.speaker = speaker or SilentSpeaker()
        self._spoken_step: Step | None = None
        self._ready = False  # told systemd the first screen is up
        self._translators = {language: Translator(language) for language in LANGUAGES}
        self._pending = None
        self._dialog = None  # "stop this recording?", when open
        self._still_here = None  # "still there?", when open
        # the one thread that runs the flow's blocking captures (never one per call)
        self.captures = DeviceWorker("ui-captures")
        self.attach(flow)

    def t(self, key: str, language: str | None = None, **values: object) -> str:
        """Translate ``key``; kv passes ``app.language`` so the text follows it."""
        return self._translators[language or self.language](key, **values)

    def attach(self, flow: EnrollmentFlow) -> None:
        """Show ``flow`` from now on (the previous one is forgotten)."""
        for dialog in (self._dialog, self._still_here):
            if dialog is not None:
                dialog.dismiss()  # they asked about the previous flow's session
        self._dialog = self._still_here = None
        self.station_screen = ""  # a fresh flow starts at its own screen
        self.flow = flow
        self.language = flow.language
        self.simulated = [str(kind) for kind in flow.modules.simulated]
        flow.subscribe(self._flow_changed)
        if self.root is not None:
            self._show()

    def build(self) -> ScreenManager:
        load_screens()
        manager = ScreenManager(transition=NoTransition())
        for screen_class in SCREENS.values():
            manager.add_widget(screen_class(name=str(screen_class.step)))
        for name, station_class in STATION_SCREENS.items():
            manager.add_widget(station_class(name=name))
        Window.bind(on_request_close=self._refuse_close, on_keyboard=self._on_keyboard)
        Window.bind(on_touch_down=self._on_any_touch)
        Clock.schedule_interval(self._tick, 1.0)
        Clock.schedule_once(lambda _dt: self._show())
        interval = watchdog_interval()
        if interval is not None:  # pinged from the UI's own loop: a frozen UI is restarted
            Clock.schedule_interval(lambda _dt: notify("WATCHDOG=1"), interval / 3)
        return manager

    def _flow_changed(self, flow: EnrollmentFlow) -> None:
        # called from whichever thread changed the flow; the UI updates on its own
        if flow is self.flow and self._pending is None:
            self._pending = Clock.schedule_once(lambda _dt: self._show())

    def _show(self) -> None:
        self._pending = None
        flow, manager = self.flow, self.root
        if not self._ready:  # the first screen is up: systemd may stop waiting
            self._ready = True
            notify("READY=1")
        if self._dialog is not None and flow.step in (Step.WELCOME, Step.DONE):
            self._dialog.dismiss()  # the session it asked about is over
            self._dialog = None
        self._ask_still_here(flow.still_here_left)
        self.language = flow.language
        self.operator_called = flow.operator_called
        if self.station_screen:  # the operator's screen stays; it shows the call itself
            manager.get_screen(self.station_screen).refresh()
            return
        screen = manager.get_screen(str(flow.step))
        if manager.current != screen.name:
            manager.current = screen.name
            screen.mark_shown()
            screen.entered()
        screen.refresh()
        self._speak(flow)

    def _speak(self, flow: EnrollmentFlow) -> None:
        """Say a capturing step's guidance aloud, as the screen shows it; what was
        being said about the step before stops when the step changes."""
        if flow.step is not self._spoken_step:
            self._spoken_step = flow.step
            self.speaker.silence()
        if flow.problem and flow.step in STEP_MODULE:
            self.speaker.say(self.t(flow.problem), flow.language)

    def _ask_still_here(self, seconds_left: int | None) -> None:
        if seconds_left is None:
            if self._still_here is not None:
                self._still_here.dismiss()
                self._still_here = None
            return
        if self._still_here is None:
            self._still_here = StillHereDialog()
            self._still_here.open()
        self._still_here.seconds_left = seconds_left

    def confirm_cancel(self) -> None:
        """Ask before dropping the enrollment (the top bar's Cancel)."""
        if self._dialog is None or self._dialog.parent is None:
            self._dialog = CancelDialog()
            self._dialog.open()

    def open_station(self, name: str) -> None:
        """Show the operator's or technician's screen ``name`` over the flow's."""
        manager = self.root
        screen = manager.get_screen(name)
        self.station_screen = name
        manager.current = name
        screen.mark_shown()
        screen.entered()
        screen.refresh()

    def close_station(self) -> None:
        """Back to the flow's own screen; whoever was logged in is logged out."""
        if not self.station_screen:
            return
        self.station_screen = ""
        if self.flow.desk is not None:
            self.flow.desk.log_out()
        screen = self.root.get_screen(str(self.flow.step))
        self.root.current = screen.name
        screen.mark_shown()
        screen.entered()  # as after any change of screen: the flow may have moved meanwhile
        screen.refresh()

    def _tick(self, _dt: float) -> None:
        self.flow.tick()
        if self.station_screen:
            screen = self.root.get_screen(self.station_screen)
            desk = self.flow.desk
            if screen.needs_login and (desk is None or desk.login is None):
                self.close_station()  # idle too long: the login has ended
            else:
                screen.refresh()

    def _on_any_touch(self, _window, _touch) -> bool:
        # also answers "still there?": an officer at work keeps a held citizen's session
        self.flow.touch()
        if self.station_screen and self.flow.desk is not None:
            self.flow.desk.active()
        return False

    def _refuse_close(self, *_args) -> bool:
        log.warning("window close refused: the kiosk stays up")
        return True

    def _on_keyboard(self, _window, key: int, *_args) -> bool:
        # 27 Escape, 282 F1 (Kivy settings): swallowed so nobody leaves the kiosk
        return key in (27, 282)

    def open_settings(self, *_args) -> bool:
        return False

    def on_stop(self) -> None:
        notify("STOPPING=1")
        self.captures.close()
        self.speaker.close()


def run_kiosk(
    config: StationConfig,
    modules: StationModules,
    store: EnrollmentStore,
    fullscreen: bool = False,
    simulate: bool = False,
) -> int:
    """Run the window on ``store`` until the process ends, with every module under
    supervision (opened, watched and reopened or swapped on its own thread);
    stops supervision and closes the store at the end."""
    supervision = StationSupervisor(config, modules, simulate=simulate)
    staffed = config.operators or config.technician_pin_hash
    figures = FiguresBook(config.data_dir / "figures")
    flow = EnrollmentFlow(
        station_id=config.station_id,
        modules=modules,
        sink=store,
        session=config.session,
        language=config.language,
        desk=Desk(config.operators, config.technician_pin_hash) if staffed else None,
        on_saved=figures.record,
    )
    follow_supervision(flow, supervision)
    supervision.start()
    if fullscreen:
        Window.fullscreen = "auto"
        Window.show_cursor = False
    station = StationServices(config, modules, supervision, store, figures)
    app = KioskApp(flow, speaker_from_config(config.voice.enabled, config.voice.rate), station)

    def stop(signum: int, _frame) -> None:
        log.warning("signal %d: stopping the kiosk", signum)
        Clock.schedule_once(lambda _dt: app.stop())

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        app.run()
    finally:
        supervision.stop()
        modules.close()
        store.close()
    return 0
