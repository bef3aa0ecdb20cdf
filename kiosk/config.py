"""Station configuration: one TOML file, validated when the kiosk starts.

A problem names the file, the key and what was expected, so a technician can
fix it with a text editor::

    /etc/rekam-kiosk/station.toml: station.language: expected one of id, en; got 'jv'

Nothing is ignored: an unknown key or table (``langauge``, ``[modules.printer]``)
is an error suggesting the closest known name, so a misspelling never leaves the
station on a default nobody chose.

Example (see docs/station.example.toml)::

    [station]
    id = "3201-KCM-CIBINONG-01"
    region = "3201"
    language = "id"
    data_dir = "/var/lib/rekam-kiosk"

    [modules.camera]
    driver = "picamera2"

    [operators]  # one line per operator: name = what `kiosk hash-pin --operator NAME` prints
    siti = "$argon2id$v=19$m=19456,t=2,p=1$..."

    [technician]  # the diagnostics screen's PIN: `kiosk hash-pin --technician`
    pin_hash = "$argon2id$v=19$m=19456,t=2,p=1$..."

Each ``[modules.<kind>]`` table names a driver; its other keys are passed to
that driver's constructor, and are checked against it when the modules are
built (``StationModules.from_config``). ``KIOSK_<KIND>_DRIVER`` in the environment overrides
the driver name (as ``GPIOZERO_PIN_FACTORY`` does in gpiozero).

The optional ``[operators]`` and ``[technician]`` tables hold only hashes of PINs,
never a PIN: a PIN written in clear is refused, and never repeated in the message.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import tomllib
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiosk.drivers.base import ModuleKind
from kiosk.errors import ConfigError, did_you_mean, shown
from kiosk.i18n import LANGUAGES
from kiosk.operator_pin import parse_pin_hash
from kiosk.voice import DEFAULT_RATE, MAX_RATE, MIN_RATE

DEFAULT_PATH = Path("/etc/rekam-kiosk/station.toml")
SIMULATION_PATH = Path(__file__).with_name("simulation.toml")
STATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAX_DEPTH = 16  # the deepest a real station file goes is an option's list: 4 levels
# Top-level key names a PIN may be written under by mistake (sandi: password, kode: code)
_PIN_WORDS = ("pin", "pass", "sandi", "kode", "code")

# The keys each table may hold; [modules.<kind>] tables are checked against their driver.
_KEYS = {
    "": ("station", "modules", "session", "operators", "technician", "hub", "store", "voice"),
    "hub": ("url",),
    "store": ("purge_after_days",),
    "voice": ("enabled", "rate"),
    "station": ("id", "region", "language", "data_dir"),
    "modules": tuple(str(kind) for kind in ModuleKind),
    "session": (
        "idle_timeout_s",
        "idle_warning_s",
        "finger_tries",
        "face_tries",
        "face_try_s",
        "max_finger_exceptions",
        "min_age_years",
    ),
    "technician": ("pin_hash",),
}
OPERATOR_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")


@dataclass(frozen=True)
class ModuleConfig:
    driver: str
    options: dict[str, Any] = field(default_factory=dict)
    driver_from: str | None = None  # the environment variable that chose the driver, if one did


@dataclass(frozen=True)
class SessionConfig:
    idle_timeout_s: float = 120.0  # a citizen who walked away; long enough to read the consent
    finger_tries: int = 3
    face_tries: int = 3
    # seconds of live guidance per try before the photo is taken and judged anyway
    face_try_s: float = 4.0
    idle_warning_s: float = 20.0  # "Masih di sana?" counts down this long before the drop
    max_finger_exceptions: int = 2  # more missing/injured/unusable fingers: the operator decides
    # Younger NIKs go to the operator (who may let a married minor enroll). Dukcapil
    # records from 16, so the card can be printed at 17, when UU 24/2013 art. 63
    # makes the KTP-el mandatory (or earlier, when married).
    min_age_years: int = 16


@dataclass(frozen=True)
class VoiceConfig:
    """``[voice]``: the guidance prompts spoken aloud (kiosk.voice, with espeak-ng)."""

    enabled: bool = True
    rate: int = DEFAULT_RATE  # words a minute, MIN_RATE to MAX_RATE (espeak-ng's -s)


@dataclass(frozen=True)
class StationConfig:
    path: Path
    station_id: str
    region: str
    language: str
    data_dir: Path
    modules: dict[ModuleKind, ModuleConfig]
    session: SessionConfig
    # operator name -> the Argon2id hash of their PIN (`kiosk hash-pin --operator NAME`)
    operators: dict[str, str] = field(default_factory=dict)
    technician_pin_hash: str | None = None  # the diagnostics screen's PIN; None: no technician
    hub_url: str | None = None  # where `kiosk sync` sends packets; None: not provisioned yet
    # acknowledged packets stay this long on the kiosk (a second copy while the hub settles)
    purge_after_days: int = 30
    voice: VoiceConfig = VoiceConfig()


def _looks_like_a_pin(value: object) -> bool:
    """Digits, as text or as a number: a PIN written in clear, not a hash of one."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit())


def _plain_pin_error(path: Path, key: str, expected: str) -> ConfigError:
    """The error for a PIN written in clear; it never repeats the PIN (the message
    goes to the console and the journal)."""
    return ConfigError(
        f"{path}: {key}: expected {expected}; got a PIN in clear (not shown); never write "
        f"the PIN here: run `kiosk hash-pin` and paste the line it prints"
    )


def _key_name(name: str) -> str:
    """One key of a dotted path as a message shows it: bare if it can be, else quoted."""
    return name if _BARE_KEY.fullmatch(name) else shown(name)


class _Reader:
    """Reads typed values from the parsed TOML, naming file and key on error."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    def fail(self, key: str, expected: str, got: object = None) -> ConfigError:
        got_text = "nothing (the key is missing)" if got is None else shown(got)
        return ConfigError(f"{self.path}: {key}: expected {expected}; got {got_text}")

    def table(self, key: str, required: bool = True) -> dict[str, Any]:
        node: Any = self.data
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None and not required:
            return {}
        if not isinstance(node, dict):
            raise self.fail(key, f"a table [{key}]", node)
        return node

    def only_known_keys(self, key: str) -> None:
        """Refuse keys of table ``key`` this file format does not know: a misspelt key
        would otherwise leave the station on a default the technician did not choose."""
        known = _KEYS[key]
        table = self.data if not key else self.table(key, required=False)
        for name, value in table.items():
            if name not in known:
                full = f"{key}.{_key_name(name)}" if key else _key_name(name)
                pin_words = any(word in name.lower() for word in _PIN_WORDS)
                if _looks_like_a_pin(value) and (key == "technician" or (not key and pin_words)):
                    raise _plain_pin_error(self.path, full, "pin_hash, a hash of the PIN")
                what = "table" if isinstance(value, dict) else "key"
                raise ConfigError(
                    f"{self.path}: {full}: expected one of {', '.join(known)}; "
                    f"got an unknown {what}{did_you_mean(name, known)}"
                )

    def get(
        self, key: str, kind: type | tuple[type, ...], expected: str, default: Any = None
    ) -> Any:
        table_key, _, name = key.rpartition(".")
        value = self.table(table_key, required=default is None).get(name, default)
        # bool is an int in Python; a number key given true/false is still wrong
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise self.fail(key, expected, value)
        return value

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = self.get(key, (int, float), "a number of seconds", default)
        with contextlib.suppress(OverflowError):  # too long for a float: out of range anyway
            value = float(value)
        if not low <= value <= high:  # also refuses nan
            raise self.fail(key, f"between {low:g} and {high:g}", value)
        return value

    def whole(self, key: str, default: int, low: int, high: int) -> int:
        value = self.get(key, int, "a whole number", default)
        if not low <= value <= high:
            raise self.fail(key, f"between {low} and {high}", value)
        return value


def load_config(path: Path | str) -> StationConfig:
    """Read and validate the station file at ``path``; raise ConfigError if it is unusable."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: the station file does not exist; provision the station "
            f"or start with --simulate"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:  # a damaged file
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except ValueError as exc:  # TOMLDecodeError, or a number too long to convert
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise ConfigError(
            f"{path}: not a station file: arrays or tables nested hundreds deep"
        ) from None
    _refuse_deep_nesting(path, data)
    return _parse(_Reader(path, data))


def _refuse_deep_nesting(path: Path, data: dict[str, Any]) -> None:
    """Refuse values nested deeper than any station needs: a 5,000-deep dotted key
    parses, but would break ``repr`` and every recursive reader after it."""
    pending: list[tuple[list[str], Any]] = [([], data)]
    while pending:  # a loop, not recursion: the point is not to recurse
        keys, node = pending.pop()
        if len(keys) > _MAX_DEPTH:
            key = "".join(part if part[0] == "[" else f".{part}" for part in keys[:3])[1:]
            raise ConfigError(
                f"{path}: {key}...: expected at most {_MAX_DEPTH} levels of tables and arrays; "
                f"got deeper"
            )
        if isinstance(node, dict):
            pending.extend(([*keys, _key_name(name)], value) for name, value in node.items())
        elif isinstance(node, list):
            pending.extend(([*keys, f"[{i}]"], value) for i, value in enumerate(node))


def _parse(r: _Reader) -> StationConfig:
    if "operator" in r.data:  # the single PIN of older kiosks
        raise ConfigError(
            f"{r.path}: operator: the [operator] table is now [operators], one line per "
            'operator: name = "<hash>" (run `kiosk hash-pin --operator NAME`)'
        )
    r.only_known_keys("")
    r.only_known_keys("station")
    station_id = r.get("station.id", str, "a station id of letters, digits, '.', '_' or '-'")
    if not STATION_ID.fullmatch(station_id):  # fullmatch: "$" would let a final newline by
        raise r.fail("station.id", "letters, digits, '.', '_' or '-' (at most 64)", station_id)
    region = r.get("station.region", str, 'the region code or name, e.g. "3201"')
    if not region.strip():
        raise r.fail("station.region", "a non-empty region", region)
    language = r.get("station.language", str, f"one of {', '.join(LANGUAGES)}", "id")
    if language not in LANGUAGES:
        raise r.fail("station.language", f"one of {', '.join(LANGUAGES)}", language)
    data_dir = _data_dir(r)

    r.only_known_keys("modules")
    modules = {}
    for kind in ModuleKind:
        key = f"modules.{kind}"
        options = dict(r.table(key))
        variable = f"KIOSK_{kind.upper()}_DRIVER"
        driver_from = variable if os.environ.get(variable) else None
        driver = os.environ[variable] if driver_from else options.get("driver")
        options.pop("driver", None)
        if not isinstance(driver, str) or not driver:
            misspelt = [name for name in options if did_you_mean(name, ["driver"])]
            if driver is None and misspelt:
                raise ConfigError(
                    f'{r.path}: {key}.driver: expected a driver name, e.g. "fake"; got nothing '
                    f"(the key is missing; did you mean 'driver' for {shown(misspelt[0])}?)"
                )
            raise r.fail(f"{key}.driver", 'a driver name, e.g. "fake"', driver)
        modules[kind] = ModuleConfig(driver, options, driver_from)

    r.only_known_keys("session")
    default = SessionConfig()
    idle_timeout_s = r.number("session.idle_timeout_s", default.idle_timeout_s, 10, 3600)
    idle_warning_s = r.number("session.idle_warning_s", default.idle_warning_s, 5, 120)
    if not idle_warning_s < idle_timeout_s:  # a countdown longer than the wait: keys swapped?
        raise r.fail(
            "session.idle_warning_s",
            f"less than session.idle_timeout_s ({idle_timeout_s:g})",
            idle_warning_s,
        )
    session = SessionConfig(
        idle_timeout_s=idle_timeout_s,
        finger_tries=r.whole("session.finger_tries", default.finger_tries, 1, 10),
        face_tries=r.whole("session.face_tries", default.face_tries, 1, 10),
        face_try_s=r.number("session.face_try_s", default.face_try_s, 0.5, 60),
        idle_warning_s=idle_warning_s,
        max_finger_exceptions=r.whole(
            "session.max_finger_exceptions", default.max_finger_exceptions, 0, 10
        ),
        min_age_years=r.whole("session.min_age_years", default.min_age_years, 0, 25),
    )
    operators = _operators(r)
    technician = _technician_pin_hash(r)
    r.only_known_keys("hub")
    hub_url = _hub_url(r)
    r.only_known_keys("store")
    purge_days = r.whole("store.purge_after_days", StationConfig.purge_after_days, 1, 3650)
    r.only_known_keys("voice")
    voice = VoiceConfig(
        enabled=r.get("voice.enabled", bool, "true or false", VoiceConfig.enabled),
        rate=r.whole("voice.rate", VoiceConfig.rate, MIN_RATE, MAX_RATE),
    )
    return StationConfig(
        r.path,
        station_id,
        region,
        language,
        data_dir,
        modules,
        session,
        operators=operators,
        technician_pin_hash=technician,
        hub_url=hub_url,
        purge_after_days=purge_days,
        voice=voice,
    )


def _hub_url(r: _Reader) -> str | None:
    """``hub.url``: an https:// address (the station pins the hub's certificate)."""
    if "url" not in r.table("hub", required=False):
        return None
    url = r.get("hub.url", str, 'the hub\'s address, e.g. "https://hub.example.go.id:8443"')
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "https" or not parsed.hostname:
        raise r.fail("hub.url", 'an https:// address, e.g. "https://10.0.0.2:8443"', url)
    return url.rstrip("/")


def _operators(r: _Reader) -> dict[str, str]:
    """``[operators]``: each operator's name and the hash of their PIN."""
    if _looks_like_a_pin(r.data.get("operators")):  # operators = "1234"
        raise _plain_pin_error(r.path, "operators", "a table [operators] of name = hash")
    operators = {}
    for name in r.table("operators", required=False):
        if not OPERATOR_NAME.fullmatch(name):
            raise ConfigError(
                f"{r.path}: operators.{_key_name(name)}: expected an operator's name of "
                "letters, digits, '_' or '-', starting with a letter (at most 32)"
            )
        operators[name] = _pin_hash(r, f"operators.{name}", f"--operator {name}")
    return operators


def _technician_pin_hash(r: _Reader) -> str | None:
    """``technician.pin_hash``; None if not set."""
    if _looks_like_a_pin(r.data.get("technician")):  # technician = "1234"
        raise _plain_pin_error(r.path, "technician", "a table [technician] with pin_hash")
    r.only_known_keys("technician")
    if "pin_hash" not in r.table("technician", required=False):
        return None
    return _pin_hash(r, "technician.pin_hash", "--technician")


def _pin_hash(r: _Reader, key: str, option: str) -> str:
    """The PIN hash at ``key``, checked as ``OperatorPin`` will read it."""
    expected = f"a hash printed by `kiosk hash-pin {option}`"
    table_key, _, name = key.rpartition(".")
    value = r.table(table_key).get(name)
    if _looks_like_a_pin(value):
        raise _plain_pin_error(r.path, key, expected)
    # Nothing but a hash is repeated in a message: the value may be a PIN or password.
    if not isinstance(value, str):
        raise ConfigError(f"{r.path}: {key}: expected {expected}; got a value that is not text")
    value = value.strip()  # a pasted line's stray space or newline
    if not value.startswith(("$argon2", "scrypt$")):  # parse_pin_hash explains the others
        got = shown(value) if not value else "text that is not one (not shown)"
        raise ConfigError(f"{r.path}: {key}: expected {expected}; got {got}")
    try:  # also refuses a hash too costly to check at the kiosk
        parse_pin_hash(value)
    except ValueError as exc:
        reason = str(exc)
        if reason.startswith("expected "):  # parse_pin_hash's own words for the wrong shape
            reason = "not $argon2id$..."
        elif len(reason) > 80:  # int()'s message repeats up to 200 characters of the text
            reason = f"{reason[:77]}..."
        raise ConfigError(
            f"{r.path}: {key}: expected {expected}; got {shown(value)} ({reason}); "
            f"run `kiosk hash-pin {option}` again"
        ) from None
    return value


def _data_dir(r: _Reader) -> Path:
    """``station.data_dir`` as an absolute path, ``~`` expanded."""
    key = "station.data_dir"
    text = r.get(key, str, "a folder path")
    if not text.strip():  # Path("") is the current folder: data would land anywhere
        raise r.fail(key, "a folder path", text)
    if "\0" in text:
        raise r.fail(key, "a folder path without NUL characters", text)
    try:
        path = Path(text).expanduser()
    except RuntimeError:  # "~someone" who has no account here, or no home at all
        raise r.fail(key, "a folder path whose '~' names a user of this machine", text) from None
    if not path.is_absolute():  # relative to whatever folder the kiosk was started in
        raise r.fail(key, 'an absolute folder path (starting with "/" or "~")', text)
    return path


def add_config_option(group: argparse._ActionsContainer, what: str = "station file") -> None:
    """``--config FILE``, by default $KIOSK_CONFIG or the provisioned station file."""
    group.add_argument(
        "--config",
        type=Path,
        default=Path(os.environ.get("KIOSK_CONFIG", DEFAULT_PATH)),
        help=f"{what} (default: $KIOSK_CONFIG or {DEFAULT_PATH})",
    )
