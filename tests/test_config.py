"""The station file: what loads, and what a technician reads when it does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk.config import SIMULATION_PATH, SessionConfig, load_config
from kiosk.drivers.base import ModuleKind
from kiosk.errors import ConfigError, KioskError
from kiosk.operator_pin import PinPad, hash_pin

ROOT = Path(__file__).resolve().parent.parent
PIN = "48210937"
PIN_HASH = hash_pin(PIN)

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
idle_warning_s = 15
max_finger_exceptions = 3
min_age_years = 16
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
    assert config.session == SessionConfig(
        idle_timeout_s=90.0,
        finger_tries=4,
        face_tries=2,
        idle_warning_s=15.0,
        max_finger_exceptions=3,
        min_age_years=16,
    )
    assert isinstance(config.session.idle_timeout_s, float)
    assert isinstance(config.session.idle_warning_s, float)
    assert {kind: module.driver for kind, module in config.modules.items()} == {
        ModuleKind.CAMERA: "fake",
        ModuleKind.FINGERPRINT: "fake",
        ModuleKind.SIGNATURE: "touch",
        ModuleKind.INDICATORS: "fake",
    }
    assert config.operators == {}  # no [operators] table: nobody approves
    assert config.technician_pin_hash is None


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
    # the simulator's PINs, as its comment says
    pad = PinPad({**config.operators, "technician": config.technician_pin_hash})
    assert pad.verify("siti", "1234") and pad.verify("budi", "5678")
    assert pad.verify("technician", "9999")
    text = SIMULATION_PATH.read_text(encoding="utf-8")
    assert "siti (PIN 1234) and budi (PIN 5678)" in text and "is 9999" in text


def test_the_documented_example_station_loads():
    config = load_config(ROOT / "docs" / "station.example.toml")
    assert config.station_id == "3201-KCM-CIBINONG-01"
    assert set(config.modules) == set(ModuleKind)
    assert config.session == SessionConfig()
    assert config.operators == {}  # its [operators] table is commented out
    assert config.technician_pin_hash is None


def test_the_recording_age_defaults_to_16():
    # Dukcapil records from 16 so the card can be printed at 17 (UU 24/2013 art. 63)
    assert SessionConfig().min_age_years == 16


def test_the_documented_staff_tables_are_refused_until_real_hashes_are_pasted(tmp_path):
    example = (ROOT / "docs" / "station.example.toml").read_text(encoding="utf-8")
    assert "\n# [operators]\n# siti = " in example
    switched_on = example.replace("\n# [operators]\n# siti = ", "\n[operators]\nsiti = ")
    message = config_error(write(tmp_path, switched_on))
    assert "operators.siti: expected a hash printed by `kiosk hash-pin --operator siti`" in message
    assert "\n# [technician]\n# pin_hash = " in example
    switched_on = example.replace("\n# [technician]\n# pin_hash = ", "\n[technician]\npin_hash = ")
    message = config_error(write(tmp_path, switched_on))
    assert (
        "technician.pin_hash: expected a hash printed by `kiosk hash-pin --technician`" in message
    )


def test_a_home_relative_data_dir_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    text = edited('"/var/lib/rekam-kiosk"', '"~/rekam"')
    assert load_config(write(tmp_path, text)).data_dir == tmp_path / "rekam"


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
        STATION.split("\n\n", 1)[1],
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
    "station id ending in a newline": (  # it would end up inside every enrollment id
        edited('"3201-KCM-CIBINONG-01"', '"3201-KCM-CIBINONG-01\\n"'),
        "station.id",
        "got '3201-KCM-CIBINONG-01\\n'",
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
    "data_dir relative": (  # the store would land in whatever folder the kiosk started in
        edited('"/var/lib/rekam-kiosk"', '"rekam-kiosk/data"'),
        "station.data_dir",
        "an absolute folder path",
    ),
    "data_dir with a NUL byte": (
        edited('"/var/lib/rekam-kiosk"', '"/var/lib/rekam\\u0000kiosk"'),
        "station.data_dir",
        "without NUL",
    ),
    "data_dir home of an unknown user": (
        edited('"/var/lib/rekam-kiosk"', '"~nosuchuser-rekam/data"'),
        "station.data_dir",
        "got '~nosuchuser-rekam/data'",
    ),
    "data_dir home folder with a NUL byte": (
        edited('"/var/lib/rekam-kiosk"', '"~\\u0000/data"'),
        "station.data_dir",
        "without NUL",
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
    "idle timeout beyond a float": (
        edited("idle_timeout_s = 90", "idle_timeout_s = 0x" + "f" * 300),
        "session.idle_timeout_s",
        "between 10 and 3600",
    ),
    "finger tries with thousands of digits": (
        edited("finger_tries = 4", "finger_tries = 0x" + "f" * 4000),
        "session.finger_tries",
        "between 1 and 10; got <a whole number of about 4817 digits>",
    ),
    "idle warning a string": (
        edited("idle_warning_s = 15", 'idle_warning_s = "15"'),
        "session.idle_warning_s",
        "a number of seconds; got '15'",
    ),
    "idle warning too short": (
        edited("idle_warning_s = 15", "idle_warning_s = 4.5"),
        "session.idle_warning_s",
        "between 5 and 120; got 4.5",
    ),
    "idle warning too long": (
        edited("idle_warning_s = 15", "idle_warning_s = 121"),
        "session.idle_warning_s",
        "between 5 and 120",
    ),
    "idle warning as long as the timeout": (
        edited("idle_warning_s = 15", "idle_warning_s = 90"),
        "session.idle_warning_s",
        "less than session.idle_timeout_s (90); got 90.0",
    ),
    "default idle warning longer than a short timeout": (
        edited("idle_timeout_s = 90", "idle_timeout_s = 12").replace("idle_warning_s = 15\n", ""),
        "session.idle_warning_s",
        "less than session.idle_timeout_s (12); got 20.0",
    ),
    "finger exceptions negative": (
        edited("max_finger_exceptions = 3", "max_finger_exceptions = -1"),
        "session.max_finger_exceptions",
        "between 0 and 10; got -1",
    ),
    "finger exceptions a fraction": (
        edited("max_finger_exceptions = 3", "max_finger_exceptions = 1.5"),
        "session.max_finger_exceptions",
        "a whole number; got 1.5",
    ),
    "finger exceptions too many": (
        edited("max_finger_exceptions = 3", "max_finger_exceptions = 11"),
        "session.max_finger_exceptions",
        "between 0 and 10",
    ),
    "minimum age a bool": (
        edited("min_age_years = 16", "min_age_years = false"),
        "session.min_age_years",
        "a whole number; got False",
    ),
    "minimum age too high": (
        edited("min_age_years = 16", "min_age_years = 26"),
        "session.min_age_years",
        "between 0 and 25; got 26",
    ),
    "a long odd value is shortened": (
        edited('language = "en"', 'language = "' + "\\u202e\\u0000" * 5000 + '"'),
        "station.language",
        "one of id, en; got '\\u202e\\x00",
    ),
}


@pytest.mark.parametrize(("text", "key", "expected"), WRONG.values(), ids=WRONG.keys())
def test_a_wrong_value_names_file_key_and_expectation(tmp_path, text, key, expected):
    path = write(tmp_path, text)
    message = config_error(path)
    assert message.startswith(f"{path}: {key}: expected ")
    assert expected in message
    assert len(message.splitlines()) == 1  # one line, for the console and the log
    assert len(message) < 300


def test_config_errors_are_kiosk_errors_and_value_errors(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, edited('language = "en"', 'language = "xx"')))
    assert isinstance(caught.value, KioskError)
    assert isinstance(caught.value, ValueError)


# -- misspelt and unknown keys --------------------------------------------------

UNKNOWN = {
    "misspelt language": (
        edited('language = "en"', 'langauge = "en"'),
        "station.langauge",
        "one of id, region, language, data_dir; got an unknown key (did you mean 'language'?)",
    ),
    "misspelt idle timeout": (
        edited("idle_timeout_s = 90", "idle_timout_s = 90"),
        "session.idle_timout_s",
        "got an unknown key (did you mean 'idle_timeout_s'?)",
    ),
    "unknown kind of module": (
        STATION + '\n[modules.printer]\ndriver = "fake"\n',
        "modules.printer",
        "one of camera, fingerprint, signature, indicators; got an unknown table",
    ),
    "misspelt kind of module": (
        edited("[modules.camera]", "[modules.camra]"),
        "modules.camra",
        "got an unknown table (did you mean 'camera'?)",
    ),
    "unknown top-level table": (
        STATION + '\n[network]\nhub = "https://hub.example"\n',
        "network",
        "one of station, modules, session, operators, technician, hub, store, voice; "
        "got an unknown table",
    ),
    "misspelt station table": (
        STATION.replace("[station]", "[stations]"),
        "stations",
        "got an unknown table (did you mean 'station'?)",
    ),
    "unknown top-level key": (
        "debug = true\n" + STATION,
        "debug",
        "one of station, modules, session, operators, technician, hub, store, voice; "
        "got an unknown key",
    ),
    "misspelt driver key": (
        edited('[modules.indicators]\ndriver = "fake"', '[modules.indicators]\ndrvier = "fake"'),
        "modules.indicators.driver",
        "got nothing (the key is missing; did you mean 'driver' for 'drvier'?)",
    ),
    "odd key name": (
        edited('language = "en"', '"lang\\nuage\\u0000" = "en"'),
        "station.'lang\\nuage\\x00'",
        "got an unknown key (did you mean 'language'?)",
    ),
}


@pytest.mark.parametrize(("text", "key", "expected"), UNKNOWN.values(), ids=UNKNOWN.keys())
def test_an_unknown_key_is_refused_with_a_suggestion(tmp_path, text, key, expected):
    path = write(tmp_path, text)
    message = config_error(path)
    assert message.startswith(f"{path}: {key}: expected ")
    assert message.endswith(expected)
    assert len(message.splitlines()) == 1


def test_no_suggestion_when_nothing_is_close(tmp_path):
    message = config_error(write(tmp_path, edited('language = "en"', 'zzz = "en"')))
    assert message.endswith("got an unknown key")


def test_module_options_are_not_checked_until_the_driver_is_known(tmp_path):
    text = edited('serial = "FPR-0007"', 'serail = "FPR-0007"')  # StationModules checks it
    assert load_config(write(tmp_path, text)).modules[ModuleKind.FINGERPRINT].options == {
        "serail": "FPR-0007"
    }


def test_the_environment_override_is_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv("KIOSK_CAMERA_DRIVER", "picamera2")
    modules = load_config(write(tmp_path, STATION)).modules
    assert modules[ModuleKind.CAMERA].driver_from == "KIOSK_CAMERA_DRIVER"
    assert modules[ModuleKind.FINGERPRINT].driver_from is None


# -- files a parser chokes on -----------------------------------------------------

CHOKING = {
    "arrays nested 5,000 deep": STATION + "deep = " + "[" * 5000 + "]" * 5000 + "\n",
    "inline tables nested 5,000 deep": STATION + "deep = " + "{a = " * 5000 + "1" + "}" * 5000,
    "dotted key 5,000 deep in an option": edited(
        "delay = 0.5", "delay = [{" + "a." * 5000 + "a = 1}]"
    ),
    "dotted table 5,000 deep": STATION + "\n[" + "a." * 5000 + "a]\n",
    "a number with 5,000 digits": edited("finger_tries = 4", "finger_tries = " + "9" * 5000),
}


@pytest.mark.parametrize("text", CHOKING.values(), ids=CHOKING.keys())
def test_what_the_parser_chokes_on_is_a_one_line_config_error(tmp_path, text):
    path = write(tmp_path, text)
    message = config_error(path)
    assert message.startswith(f"{path}: ")
    assert len(message.splitlines()) == 1
    assert len(message) < 300


# -- the operators' and the technician's PINs ----------------------------------------


def with_operator(body: str) -> str:
    return STATION + "\n[operators]\n" + body + "\n"


def with_technician(body: str) -> str:
    return STATION + "\n[technician]\n" + body + "\n"


def test_operators_and_the_technician_load_and_verify(tmp_path):
    text = with_operator(f'siti = "{PIN_HASH}"\nbudi-2 = "{PIN_HASH}"')
    text += f'\n[technician]\npin_hash = "{PIN_HASH}"\n'
    config = load_config(write(tmp_path, text))
    assert config.operators == {"siti": PIN_HASH, "budi-2": PIN_HASH}
    assert config.technician_pin_hash == PIN_HASH
    pad = PinPad(config.operators)
    assert pad.verify("siti", PIN)
    assert not pad.verify("budi-2", "12345678")


def test_a_pasted_hash_with_stray_spaces_loads(tmp_path):
    config = load_config(write(tmp_path, with_operator(f'siti = "  {PIN_HASH}\\n"')))
    assert config.operators == {"siti": PIN_HASH}


def test_no_tables_no_operators_and_no_technician(tmp_path):
    config = load_config(write(tmp_path, with_operator("")))
    assert (config.operators, config.technician_pin_hash) == ({}, None)


def test_the_operators_table_may_come_first(tmp_path):
    text = f'[operators]\nsiti = "{PIN_HASH}"\n\n' + STATION
    assert load_config(write(tmp_path, text)).operators == {"siti": PIN_HASH}


def test_an_older_kiosks_operator_table_says_what_it_became(tmp_path):
    path = write(tmp_path, STATION + f'\n[operator]\npin_hash = "{PIN_HASH}"\n')
    message = config_error(path)
    assert message.startswith(f"{path}: operator: the [operator] table is now [operators]")
    assert "kiosk hash-pin --operator NAME" in message


@pytest.mark.parametrize("name", ["1siti", "siti budi", "@technician", "s" * 33])
def test_an_operator_name_the_kiosk_cannot_show_is_refused(tmp_path, name):
    path = write(tmp_path, with_operator(f'"{name}" = "{PIN_HASH}"'))
    assert "expected an operator's name of letters, digits" in config_error(path)


CLEAR_PIN = {
    "an operator given the pin": (with_operator(f'siti = "{PIN}"'), "operators.siti"),
    "an operator given a number": (with_operator(f"siti = {PIN}"), "operators.siti"),
    "operators given the pin": (f'operators = "{PIN}"\n' + STATION, "operators"),
    "pin instead of pin_hash": (with_technician(f'pin = "{PIN}"'), "technician.pin"),
    "another name for it": (with_technician(f'kode = "{PIN}"'), "technician.kode"),
    "pin_hash given the pin": (with_technician(f'pin_hash = "{PIN}"'), "technician.pin_hash"),
    "pin_hash given the pin with spaces": (
        with_technician(f'pin_hash = " {PIN} "'),
        "technician.pin_hash",
    ),
    "pin_hash given a number": (with_technician(f"pin_hash = {PIN}"), "technician.pin_hash"),
    "technician given the pin": (f'technician = "{PIN}"\n' + STATION, "technician"),
    "pin at the top of the file": (f'pin = "{PIN}"\n' + STATION, "pin"),
    "dotted technician.pin": (f'technician.pin = "{PIN}"\n' + STATION, "technician.pin"),
}


@pytest.mark.parametrize(("text", "key"), CLEAR_PIN.values(), ids=CLEAR_PIN.keys())
def test_a_pin_in_clear_is_refused_and_never_repeated(tmp_path, text, key):
    path = write(tmp_path, text)
    message = config_error(path)
    assert message.startswith(f"{path}: {key}: expected ")
    assert "got a PIN in clear (not shown)" in message
    assert "run `kiosk hash-pin`" in message
    assert PIN not in message  # the message goes to the console and the journal
    assert len(message.splitlines()) == 1
    assert len(message) < 300


def damaged(old: str, new: str) -> str:
    assert old in PIN_HASH
    return PIN_HASH.replace(old, new, 1)


BAD_HASH = {
    "not of the form": ('"$argon2id$x"', "(a damaged PIN hash (malformed))"),
    "an older kiosk's scrypt hash": (
        '"scrypt$16384$8$1$c36DkCu5DyQqQs2bS23F9w==$FenlSdZzcNK+Fg0uGEzDA212XxDurSZ9QjXRXoutGKc="',
        "(an scrypt hash from an older kiosk, not Argon2id)",
    ),
    "another Argon2 type": (f'"{damaged("$argon2id$", "$argon2i$")}"', "(not $argon2id$...)"),
    "damaged parameters": (f'"{damaged("m=19456", "m=lots")}"', "(a damaged PIN hash ("),
    "memory below Argon2's minimum": (
        f'"{damaged("m=19456", "m=1")}"',
        "(a PIN hash with impossible Argon2 parameters, or cut short)",
    ),
    "digest cut short": (f'"{PIN_HASH[:-12]}"', "impossible Argon2 parameters, or cut short"),
    "too slow to check": (
        f'"{damaged("t=2", "t=500")}"',
        "(a PIN hash too costly to check at the kiosk)",
    ),
    "more memory than the kiosk gives": (
        f'"{damaged("m=19456", "m=4194304")}"',
        "(a PIN hash too costly to check at the kiosk)",
    ),
    "memory with thousands of digits": (f'"{damaged("m=19456", "m=" + "9" * 5000)}"', "..."),
    "a password, not shown": ('"hunter2"', "got text that is not one (not shown)"),
    "empty": ('""', "got ''"),
    "a bool": ("true", "got a value that is not text"),
    "a list holding the pin": (f'["{PIN}"]', "got a value that is not text"),
}


@pytest.mark.parametrize(("value", "expected"), BAD_HASH.values(), ids=BAD_HASH.keys())
@pytest.mark.parametrize(
    ("table", "key", "option"),
    [
        (with_technician, "technician.pin_hash", "--technician"),
        (with_operator, "operators.siti", "--operator siti"),
    ],
)
def test_a_malformed_pin_hash_is_one_line_naming_hash_pin(
    tmp_path, value, expected, table, key, option
):
    name = key.rpartition(".")[2]
    path = write(tmp_path, table(f"{name} = {value}"))
    message = config_error(path)
    assert message.startswith(
        f"{path}: {key}: expected a hash printed by `kiosk hash-pin {option}`; got "
    )
    assert expected in message
    assert "hunter2" not in message and PIN not in message
    assert len(message.splitlines()) == 1
    assert len(message) < 400


def test_an_unknown_key_in_the_technician_table_is_refused_with_a_suggestion(tmp_path):
    path = write(tmp_path, with_technician(f'pin_hsah = "{PIN_HASH}"'))
    assert config_error(path) == (
        f"{path}: technician.pin_hsah: expected one of pin_hash; got an unknown key "
        f"(did you mean 'pin_hash'?)"
    )


def test_a_table_inside_the_technician_table_is_refused(tmp_path):
    path = write(tmp_path, with_technician(f'[technician.pin]\nhash = "{PIN_HASH}"'))
    assert config_error(path).startswith(
        f"{path}: technician.pin: expected one of pin_hash; got an unknown table"
    )


def test_technician_not_a_table_is_refused(tmp_path):
    path = write(tmp_path, "technician = true\n" + STATION)
    assert config_error(path) == f"{path}: technician: expected a table [technician]; got True"


def test_the_hub_address_and_the_purge_delay_are_read(tmp_path):
    text = STATION + '\n[hub]\nurl = "https://10.0.0.2:8443/"\n\n[store]\npurge_after_days = 7\n'
    config = load_config(write(tmp_path, text))
    assert config.hub_url == "https://10.0.0.2:8443"
    assert config.purge_after_days == 7
    plain = load_config(write(tmp_path, STATION))
    assert (plain.hub_url, plain.purge_after_days) == (None, 30)


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('[hub]\nurl = "http://10.0.0.2"', "hub.url: expected an https:// address"),
        ('[hub]\nurl = "https://"', "hub.url: expected an https:// address"),
        ("[store]\npurge_after_days = 0", "store.purge_after_days: expected between 1 and 3650"),
        ('[hub]\naddress = "https://x"', "hub.address: expected one of url"),
    ],
)
def test_a_bad_hub_address_or_purge_delay_is_a_clear_error(tmp_path, table, expected):
    path = write(tmp_path, STATION + "\n" + table + "\n")
    assert config_error(path).startswith(f"{path}: {expected}")


# -- [voice] ------------------------------------------------------------------


def test_voice_is_on_at_its_default_rate_unless_the_file_says_otherwise(tmp_path):
    plain = load_config(write(tmp_path, STATION))
    assert (plain.voice.enabled, plain.voice.rate) == (True, 150)
    quiet = load_config(write(tmp_path, STATION + "\n[voice]\nenabled = false\nrate = 120\n"))
    assert (quiet.voice.enabled, quiet.voice.rate) == (False, 120)


def test_the_example_and_simulation_stations_speak():
    for path in (ROOT / "docs" / "station.example.toml", SIMULATION_PATH):
        assert load_config(path).voice.enabled, path


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('[voice]\nenabled = "yes"', "voice.enabled: expected true or false; got 'yes'"),
        ("[voice]\nenabled = 1", "voice.enabled: expected true or false; got 1"),
        ("[voice]\nrate = 79", "voice.rate: expected between 80 and 450; got 79"),
        ("[voice]\nrate = 451", "voice.rate: expected between 80 and 450; got 451"),
        ("[voice]\nrate = 150.5", "voice.rate: expected a whole number; got 150.5"),
        ("[voice]\nrate = true", "voice.rate: expected a whole number; got True"),
        ("[voice]\nenable = false", "voice.enable: expected one of enabled, rate; got an unknown"),
        ("voice = false", "voice: expected a table [voice]; got False"),
    ],
)
def test_a_bad_voice_setting_is_a_clear_error(tmp_path, table, expected):
    text = table + "\n" + STATION if not table.startswith("[") else STATION + "\n" + table + "\n"
    path = write(tmp_path, text)
    assert config_error(path).startswith(f"{path}: {expected}")
