"""The provisioning screen: first boot on the touchscreen (``kiosk provision --screen``).

The same fields as ``kiosk provision`` (station id, region, hub address, pairing
code, the technician's PIN, the first operator's name and PIN), typed on the
screen's own keyboard; "Pasangkan / Pair" checks them (messages in the App's
language) and runs :func:`kiosk.provision.station.provision` on a thread of its
own, so the screen stays alive while scrypt and the hub work; then a done view.

A :class:`~kiosk.screens.station.StationScreen` that needs no login, and uses nothing
of its App but ``app.t(...)`` and ``app.language``: it runs in a small App of its own
at first boot, and in the kiosk's own window in the tests (``app.open_station``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from kivy.app import App
from kivy.clock import Clock
from kivy.factory import Factory
from kivy.properties import BooleanProperty, DictProperty, ListProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout

from kiosk.provision.station import (
    DEFAULT_DATA_DIR,
    Provisioned,
    ProvisionError,
    Provisioning,
    check,
    provision,
)
from kiosk.screens.station import StationScreen

FIELDS = (
    "station_id",
    "region",
    "hub_url",
    "pairing_code",
    "technician_pin",
    "operator",
    "operator_pin",
)
# the keyboard: each row's keys and their widths (a letter is 1)
KEY_ROWS = (
    [*"1234567890", "-", "back"],
    [*"QWERTYUIOP", "_", "/"],
    [*"ASDFGHJKL", ":", ".", "case"],
    [*"ZXCVBNM", "space", "next"],
)
KEY_WIDTH = {"back": 1.5, "case": 1.5, "space": 2, "next": 3.5}
WORD_KEYS = ("back", "space", "next")  # labelled in words: provision.key.<name>


class TypingKeyboard(BoxLayout):
    """Letters, digits and the characters a station id or an address needs, as
    buttons; a key dispatches ``on_key(key)`` ('back', 'next', or the character)."""

    __events__ = ("on_key",)
    upper = BooleanProperty(True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(orientation="vertical", **kwargs)
        self.keys: dict[str, Any] = {}
        for row in KEY_ROWS:
            line = BoxLayout(spacing=self.spacing)
            for key in row:
                button = Factory.TypingKey(size_hint_x=KEY_WIDTH.get(key, 1))
                button.key = key
                button.bind(on_release=lambda button: self.dispatch("on_key", self._char(button)))
                self.keys[key] = button
                line.add_widget(button)
            self.add_widget(line)
        self.bind(upper=lambda *_args: self._label())
        Clock.schedule_once(lambda _dt: self._follow_language())

    def _follow_language(self) -> None:
        App.get_running_app().bind(language=lambda *_args: self._label())
        self._label()

    def _char(self, button: Any) -> str:
        key = button.key
        if key == "space":
            return " "
        if len(key) == 1 and key.isalpha():
            return key if self.upper else key.lower()
        return key

    def _label(self) -> None:
        for key, button in self.keys.items():
            if key == "case":
                button.text = "abc" if self.upper else "ABC"
            elif len(key) == 1 and key.isalpha():
                button.text = key if self.upper else key.lower()
            elif key in WORD_KEYS:
                app = App.get_running_app()
                button.text = app.t(f"provision.key.{key}", app.language)
            else:
                button.text = key

    def on_key(self, key: str) -> None:
        if key == "case":
            self.upper = not self.upper


class ProvisionScreen(StationScreen):
    """The first-boot form; ``config_path``, ``data_dir``, ``owner``, ``force`` and
    ``modules`` say where and how to provision (the command's options), ``finished``
    is called with the result when the technician presses "start"."""

    screen_name: ClassVar[str] = "provision"
    kv: ClassVar[Path] = Path(__file__).with_name("provision.kv")
    needs_login: ClassVar[bool] = False  # before provisioning there is nobody to log in

    problem = StringProperty("")  # i18n key of the message shown
    problem_values = DictProperty({})
    bad_fields = ListProperty()
    working = BooleanProperty(False)
    done = BooleanProperty(False)
    station = StringProperty("")

    def __init__(
        self,
        *,
        config_path: Path | None = None,
        data_dir: Path = DEFAULT_DATA_DIR,
        owner: str | None = None,
        force: bool = False,
        modules: dict[str, dict[str, Any]] | None = None,
        finished: Callable[[Provisioned | None], None] | None = None,
        **kwargs: Any,
    ) -> None:
        from kiosk.config import DEFAULT_PATH
        from kiosk.screens.base import load_kv

        load_kv(self.kv)
        super().__init__(**kwargs)
        self.config_path = config_path or DEFAULT_PATH
        self.data_dir = data_dir
        self.owner = owner
        self.force = force
        self.modules = modules
        self.finished = finished
        self.result: Provisioned | None = None
        self.active = None  # the field the keyboard types into
        Clock.schedule_once(lambda _dt: self._choose(self.ids.station_id))

    def on_kv_post(self, _base: Any) -> None:
        # ids are weak: whichever view is out of the layout is kept alive here
        self._views = {False: self.ids.form.__self__, True: self.ids.done_view.__self__}
        self.ids.body.remove_widget(self._views[True])  # shown once done
        self.ids.hub_url.text = "https://"  # the start of every hub address

    def on_done(self, _screen: Any, done: bool) -> None:
        self.ids.body.clear_widgets()
        self.ids.body.add_widget(self._views[done])

    # -- the station-screen hooks (kiosk.screens.station) -----------------------------

    def entered(self) -> None:
        self.mark_shown()

    # -- typing -----------------------------------------------------------------------

    def field_focused(self, field: Any, focused: bool) -> None:
        if focused:
            self.active = field

    def _choose(self, field: Any) -> None:
        self.active = field
        field.focus = True

    def press(self, key: str) -> None:
        field = self.active
        if field is None or self.working or self.done:
            return
        if key == "back":
            field.do_backspace()
        elif key == "next":
            current = field.field  # ids are weak proxies: compare names, not objects
            following = FIELDS[(FIELDS.index(current) + 1) % len(FIELDS)]
            self._choose(self.ids[following])
        elif key != "case":
            field.insert_text(key)
        self._clear_problem_of(field)

    def _clear_problem_of(self, field: Any) -> None:
        if field.field in self.bad_fields:
            self.bad_fields = [name for name in self.bad_fields if name != field.field]

    def on_bad_fields(self, _screen: Any, names: list[str]) -> None:
        for name in FIELDS:
            self.ids[name].bad = name in names

    def switch_language(self) -> None:
        self.app.language = "en" if self.app.language == "id" else "id"

    # -- pairing ----------------------------------------------------------------------

    def request(self) -> Provisioning:
        text = {name: self.ids[name].text.strip() for name in FIELDS}
        return Provisioning(
            station_id=text["station_id"],
            region=text["region"],
            hub_url=text["hub_url"],
            technician_pin=text["technician_pin"],
            operator=text["operator"],
            operator_pin=text["operator_pin"],
            pairing_code=text["pairing_code"],
            language=self.app.language,
            config_path=self.config_path,
            data_dir=self.data_dir,
            force=self.force,
            owner=self.owner,
            modules=self.modules,
        )

    def pair(self) -> None:
        if self.working or self.done or not self.settled():
            return
        request = self.request()
        problems = check(request)
        self.bad_fields = [name for name, _ in problems]
        if problems:
            self.problem_values = {}
            self.problem = problems[0][1]
            return
        self.problem = ""
        self.working = True
        threading.Thread(target=self._work, args=(request,), name="provision", daemon=True).start()

    def _work(self, request: Provisioning) -> None:
        try:
            result: Provisioned | ProvisionError = provision(request)
        except ProvisionError as exc:
            result = exc
        except Exception as exc:  # a bug: say so on the screen rather than hang
            result = ProvisionError(f"{type(exc).__name__}: {exc}")
        Clock.schedule_once(lambda _dt: self._finished(result))

    def _finished(self, result: Provisioned | ProvisionError) -> None:
        self.working = False
        if isinstance(result, ProvisionError):
            self.problem_values = dict(result.values)
            self.problem = result.key
            field = result.values.get("field")
            self.bad_fields = (
                [field] if field else (["pairing_code"] if "code" in result.key else [])
            )
            return
        self.result = result
        self.station = result.station_id
        self.done = True
        for name in ("technician_pin", "operator_pin"):
            self.ids[name].text = ""  # no PIN left on a screen
        self.mark_shown()

    def start(self) -> None:
        if self.done and self.settled() and self.finished is not None:
            self.finished(self.result)

    def message(self, problem: str, values: dict, _language: str) -> str:
        """The problem in the App's language (``_language`` makes kv follow it)."""
        if not problem:
            return ""
        values = {key: value for key, value in values.items() if key != "field"}
        return self.t(problem, **values)
