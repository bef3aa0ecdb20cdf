"""Station configuration: one TOML file, validated when the kiosk starts.

A problem names the file, the key and what was expected, so a technician can
fix it with a text editor::

    /etc/rekam-kiosk/station.toml: station.language: expected one of id, en; got "jv"

Example (see docs/station.example.toml)::

    [station]
    id = "3201-KCM-CIBINONG-01"
    region = "3201"
    language = "id"
    data_dir = "/var/lib/rekam-kiosk"

    [modules.camera]
    driver = "picamera2"

Each ``[modules.<kind>]`` table names a driver; its other keys are passed to
that driver's constructor. ``KIOSK_<KIND>_DRIVER`` in the environment overrides
the driver name (as ``GPIOZERO_PIN_FACTORY`` does in gpiozero).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiosk.drivers.base import ModuleKind
from kiosk.errors import ConfigError
from kiosk.i18n import LANGUAGES

DEFAULT_PATH = Path("/etc/rekam-kiosk/station.toml")
SIMULATION_PATH = Path(__file__).with_name("simulation.toml")
_STATION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class ModuleConfig:
    driver: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SessionConfig:
    idle_timeout_s: float = 120.0  # a citizen who walked away; long enough to read the consent
    finger_tries: int = 3
    face_tries: int = 3


@dataclass(frozen=True)
class StationConfig:
    path: Path
    station_id: str
    region: str
    language: str
    data_dir: Path
    modules: dict[ModuleKind, ModuleConfig]
    session: SessionConfig


class _Reader:
    """Reads typed values from the parsed TOML, naming file and key on error."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    def fail(self, key: str, expected: str, got: object = None) -> ConfigError:
        got_text = "nothing (the key is missing)" if got is None else repr(got)
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

    def get(
        self, key: str, kind: type | tuple[type, ...], expected: str, default: Any = None
    ) -> Any:
        table_key, _, name = key.rpartition(".")
        value = self.table(table_key, required=default is None).get(name, default)
        # bool is an int in Python; a number key given true/false is still wrong
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise self.fail(key, expected, value)
        return value


def load_config(path: Path | str) -> StationConfig:
    """Read and validate the station file at ``path``; raise ConfigError if it is unusable."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: the station file does not exist; provision the station "
            f"or start with --simulate"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError as exc:  # tomllib decodes before parsing: a damaged file
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    return _parse(_Reader(path, data))


def _parse(r: _Reader) -> StationConfig:
    station_id = r.get("station.id", str, "a station id of letters, digits, '.', '_' or '-'")
    if not _STATION_ID.match(station_id):
        raise r.fail("station.id", "letters, digits, '.', '_' or '-' (at most 64)", station_id)
    region = r.get("station.region", str, 'the region code or name, e.g. "3201"')
    if not region.strip():
        raise r.fail("station.region", "a non-empty region", region)
    language = r.get("station.language", str, f"one of {', '.join(LANGUAGES)}", "id")
    if language not in LANGUAGES:
        raise r.fail("station.language", f"one of {', '.join(LANGUAGES)}", language)
    data_dir_text = r.get("station.data_dir", str, "a folder path")
    if not data_dir_text.strip():  # Path("") is the current folder: data would land anywhere
        raise r.fail("station.data_dir", "a folder path", data_dir_text)
    data_dir = Path(data_dir_text).expanduser()

    modules = {}
    for kind in ModuleKind:
        key = f"modules.{kind}"
        options = dict(r.table(key))
        driver = os.environ.get(f"KIOSK_{kind.upper()}_DRIVER") or options.pop("driver", None)
        options.pop("driver", None)
        if not isinstance(driver, str) or not driver:
            raise r.fail(f"{key}.driver", 'a driver name, e.g. "fake"', driver)
        modules[kind] = ModuleConfig(driver, options)

    defaults = SessionConfig()
    session = SessionConfig(
        idle_timeout_s=float(
            r.get(
                "session.idle_timeout_s",
                (int, float),
                "a number of seconds",
                defaults.idle_timeout_s,
            )
        ),
        finger_tries=r.get("session.finger_tries", int, "a whole number", defaults.finger_tries),
        face_tries=r.get("session.face_tries", int, "a whole number", defaults.face_tries),
    )
    if not 10 <= session.idle_timeout_s <= 3600:
        raise r.fail("session.idle_timeout_s", "between 10 and 3600", session.idle_timeout_s)
    for key, value in (("finger_tries", session.finger_tries), ("face_tries", session.face_tries)):
        if not 1 <= value <= 10:
            raise r.fail(f"session.{key}", "between 1 and 10", value)
    return StationConfig(r.path, station_id, region, language, data_dir, modules, session)
