"""The station file: what loads, and what a technician reads when it does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk.config import SIMULATION_PATH, SessionConfig, load_config
from kiosk.drivers.base import ModuleKind
from kiosk.errors import ConfigError, KioskError

ROOT = Path(__file__).resolve().parent.parent

STATION = """\
[station]
id = "3201-KCM-CIBINONG-01"
region = "3201"
language = "en"
data_dir = "/var/lib/rekam-kiosk"

[modules.camera]
driver = "fake"
script = ["dark", "face"]
delay = 0.5

[modules.fingerprint]
driver = "fake"
serial = "FPR-0007"

[modules.signature]
driver = "touch"

[modules.indicators]
driver = "fake"

[session]
idle_timeout_s = 90
finger_tries = 4
face_tries = 2
"""


@pytest.fixture(autouse=True)
def no_driver_overrides(monkeypatch):
    """The developer's shell must not change what these tests read."""
    for kind in ModuleKind:
        monkeypatch.delenv(f"KIOSK_{kind.upper()}_DRIVER", raising=False)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "station.toml"
    path.write_text(text, encoding="utf-8")
    return path


def edited(old: str, new: str) -> str:
    assert old in STATION, f"{old!r} is not in the sample station file"
    return STATION.replace(old, new, 1)


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return str(caught.value)


# -- files that load ----------------------------------------------------------


def test_a_full_station_file_loads_every_value(tmp_path):
    config = load_config(write(tmp_path, STATION))
    assert config.station_id == "3201-KCM-CIBINONG-01"
    assert config.region == "3201"
    assert config.language == "en"
    assert config.data_dir == Path("/var/lib/rekam-kiosk")
    assert config.session == SessionConfig(idle_timeout_s=90.0, finger_tries=4, face_tries=2)
    assert isinstance(config.session.idle_timeout_s, float)
    assert {kind: module.driver for kind, module in config.modules.items()} == {
        ModuleKind.CAMERA: "fake",
        ModuleKind.FINGERPRINT: "fake",
        ModuleKind.SIGNATURE: "touch",
        ModuleKind.INDICATORS: "fake",
    }


def test_module_options_other_than_driver_are_passed_through(tmp_path):
    modules = load_config(write(tmp_path, STATION)).modules
    assert modules[ModuleKind.CAMERA].options == {"script": ["dark", "face"], "delay": 0.5}
    assert modules[ModuleKind.FINGERPRINT].options == {"serial": "FPR-0007"}
    assert modules[ModuleKind.SIGNATURE].options == {}


def test_session_and_language_have_defaults(tmp_path):
    text = STATION.split("[session]")[0].replace('language = "en"\n', "")
    config = load_config(write(tmp_path, text))
    assert config.language == "id"
    assert config.session == SessionConfig()


def test_the_simulation_station_loads_with_fakes_everywhere():
    config = load_config(SIMULATION_PATH)
    assert config.station_id == "SIM-01"
    assert {module.driver for module in config.modules.values()} == {"fake"}
    assert set(config.modules) == set(ModuleKind)
    assert "~" not in str(config.data_dir)  # expanded to the user's home


def test_the_documented_example_station_loads():
    config = load_config(ROOT / "docs" / "station.example.toml")
    assert config.station_id == "3201-KCM-CIBINONG-01"
    assert set(config.modules) == set(ModuleKind)
    assert config.session == SessionConfig()


def test_path_may_be_a_string(tmp_path):
    assert load_config(str(write(tmp_path, STATION))).region == "3201"


# -- environment overrides ----------------------------------------------------


def test_driver_from_the_environment_wins_over_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KIOSK_CAMERA_DRIVER", "picamera2")
    modules = load_config(write(tmp_path, STATION)).modules
    assert modules[ModuleKind.CAMERA].driver == "picamera2"
    assert modules[ModuleKind.CAMERA].options == {"script": ["dark", "face"], "delay": 0.5}
    assert modules[ModuleKind.FINGERPRINT].driver == "fake"  # only the camera is overridden


def test_driver_from_the_environment_fills_a_missing_driver(tmp_path, monkeypatch):
    monkeypatch.setenv("KIOSK_SIGNATURE_DRIVER", "fake")
    text = edited('[modules.signature]\ndriver = "touch"\n', "[modules.signature]\n")
    assert load_config(write(tmp_path, text)).modules[ModuleKind.SIGNATURE].driver == "fake"


def test_an_empty_environment_variable_does_not_override(tmp_path, monkeypatch):
    monkeypatch.setenv("KIOSK_SIGNATURE_DRIVER", "")
    assert load_config(write(tmp_path, STATION)).modules[ModuleKind.SIGNATURE].driver == "touch"


# -- files that cannot be read ------------------------------------------------


def test_a_missing_file_says_to_provision_or_simulate(tmp_path):
    path = tmp_path / "nowhere" / "station.toml"
    message = config_error(path)
    assert message.startswith(f"{path}: ")
    assert "does not exist" in message
    assert "provision" in message and "--simulate" in message


def test_a_folder_instead_of_a_file_cannot_be_read(tmp_path):
    message = config_error(tmp_path)
    assert message.startswith(f"{tmp_path}: cannot be read")


def test_malformed_toml_gives_the_line(tmp_path):
    path = write(tmp_path, '[station]\nid = "3201-KCM\nregion = "3201"\n')
    message = config_error(path)
    assert message.startswith(f"{path}: not valid TOML")
    assert "line 2" in message


def test_a_file_that_is_not_text_is_a_config_error(tmp_path):
    path = tmp_path / "station.toml"
    path.write_bytes(b"\xff\xfe[station]\x00\x9c")  # a damaged SD card, say
    message = config_error(path)
    assert message.startswith(f"{path}: not UTF-8 text")


# -- files with wrong values --------------------------------------------------

WRONG = {
    "station table missing": (
        STATION.replace("[station]", "[stations]"),
        "station",
        "a table [station]",
    ),
    "station is not a table": (
        'station = "SIM-01"\n' + STATION.split("\n\n", 1)[1],
        "station",
        "a table [station]; got 'SIM-01'",
    ),
    "station id missing": (
        edited('id = "3201-KCM-CIBINONG-01"\n', ""),
        "station.id",
        "nothing (the key is missing)",
    ),
    "station id a number": (
        edited('id = "3201-KCM-CIBINONG-01"', "id = 3201"),
        "station.id",
        "a station id of letters, digits",
    ),
    "station id with spaces and slashes": (
        edited('"3201-KCM-CIBINONG-01"', '"KCM CIBINONG/01"'),
        "station.id",
        "letters, digits, '.', '_' or '-' (at most 64); got 'KCM CIBINONG/01'",
    ),
    "station id starting with a dash": (
        edited('"3201-KCM-CIBINONG-01"', '"-KCM-01"'),
        "station.id",
        "letters, digits",
    ),
    "station id too long": (
        edited('"3201-KCM-CIBINONG-01"', '"' + "K" * 65 + '"'),
        "station.id",
        "at most 64",
    ),
    "station id empty": (
        edited('"3201-KCM-CIBINONG-01"', '""'),
        "station.id",
        "letters, digits",
    ),
    "region a number": (
        edited('region = "3201"', "region = 3201"),
        "station.region",
        "the region code or name",
    ),
    "region blank": (edited('region = "3201"', 'region = "  "'), "station.region", "non-empty"),
    "unknown language": (
        edited('language = "en"', 'language = "jv"'),
        "station.language",
        "one of id, en; got 'jv'",
    ),
    "data_dir missing": (
        edited('data_dir = "/var/lib/rekam-kiosk"\n', ""),
        "station.data_dir",
        "a folder path",
    ),
    "data_dir empty": (
        edited('data_dir = "/var/lib/rekam-kiosk"', 'data_dir = ""'),
        "station.data_dir",
        "a folder path",
    ),
    "camera driver missing": (
        edited('[modules.camera]\ndriver = "fake"\n', "[modules.camera]\n"),
        "modules.camera.driver",
        "a driver name",
    ),
    "fingerprint driver a number": (
        edited('[modules.fingerprint]\ndriver = "fake"', "[modules.fingerprint]\ndriver = 7"),
        "modules.fingerprint.driver",
        "got 7",
    ),
    "indicators table missing": (
        edited('[modules.indicators]\ndriver = "fake"\n', ""),
        "modules.indicators",
        "a table [modules.indicators]",
    ),
    "session not a table": (
        "session = 3\n" + STATION.split("[session]")[0],
        "session",
        "a table [session]; got 3",
    ),
    "idle timeout a bool": (
        edited("idle_timeout_s = 90", "idle_timeout_s = true"),
        "session.idle_timeout_s",
        "a number of seconds; got True",
    ),
    "idle timeout a string": (
        edited("idle_timeout_s = 90", 'idle_timeout_s = "90"'),
        "session.idle_timeout_s",
        "a number of seconds; got '90'",
    ),
    "idle timeout too short": (
        edited("idle_timeout_s = 90", "idle_timeout_s = 5"),
        "session.idle_timeout_s",
        "between 10 and 3600; got 5.0",
    ),
    "idle timeout too long": (
        edited("idle_timeout_s = 90", "idle_timeout_s = 3600.5"),
        "session.idle_timeout_s",
        "between 10 and 3600",
    ),
    "idle timeout not a number": (
        edited("idle_timeout_s = 90", "idle_timeout_s = nan"),
        "session.idle_timeout_s",
        "between 10 and 3600",
    ),
    "finger tries a bool": (
        edited("finger_tries = 4", "finger_tries = true"),
        "session.finger_tries",
        "a whole number; got True",
    ),
    "finger tries a fraction": (
        edited("finger_tries = 4", "finger_tries = 2.5"),
        "session.finger_tries",
        "a whole number; got 2.5",
    ),
    "finger tries zero": (
        edited("finger_tries = 4", "finger_tries = 0"),
        "session.finger_tries",
        "between 1 and 10; got 0",
    ),
    "face tries too many": (
        edited("face_tries = 2", "face_tries = 11"),
        "session.face_tries",
        "between 1 and 10; got 11",
    ),
}


@pytest.mark.parametrize(("text", "key", "expected"), WRONG.values(), ids=WRONG.keys())
def test_a_wrong_value_names_file_key_and_expectation(tmp_path, text, key, expected):
    path = write(tmp_path, text)
    message = config_error(path)
    assert message.startswith(f"{path}: {key}: expected ")
    assert expected in message
    assert "\n" not in message  # one line, for the console and the log


def test_config_errors_are_kiosk_errors_and_value_errors(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, edited('language = "en"', 'language = "xx"')))
    assert isinstance(caught.value, KioskError)
    assert isinstance(caught.value, ValueError)
