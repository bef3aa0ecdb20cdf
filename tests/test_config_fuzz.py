"""Config fuzz: seeded mutations of the example station file never crash the kiosk.

Each seed makes one damaged copy of docs/station.example.toml (deleted and
misspelt keys, wrong types, huge and odd strings, NUL bytes, invalid TOML,
truncation, deep nesting, duplicate tables, the commented [operators] and [technician] tables
switched on with a hash, a damaged hash or a PIN in clear) and loads it. Every
outcome must be a usable station, with modules that can be built, or one line
naming the file, which never repeats a PIN or password: never a traceback. A
failing seed reproduces with ``mutated(seed)``; a longer run is
``python benchmarks/config_fuzz.py 100000``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from kiosk.config import StationConfig, load_config
from kiosk.drivers.base import ModuleKind
from kiosk.errors import ConfigError, UnknownBackend
from kiosk.health.station import StationModules

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "station.example.toml"
# hash_pin("1234"), fixed so that every seed always makes the same file
PIN_HASH = (
    '"$argon2id$v=19$m=19456,t=2,p=1$J375OLCbL//0yeE085msVA$CGhFy/'
    'cSPscdwEtYz+eLbKd/KhSasN/jKlTx0Tz8CJI"'
)
PIN_HASH_VALUES = [
    PIN_HASH,
    PIN_HASH.replace("m=19456", "m=4194304"),  # more memory than the kiosk gives Argon2
    PIN_HASH.replace("t=2", "t=500"),  # too slow to check at the kiosk
    PIN_HASH.replace("m=19456", "m=1"),  # below Argon2's minimum
    PIN_HASH.replace("$argon2id$", "$argon2i$"),
    PIN_HASH[:40] + '"',
    '"$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>"',
    '"scrypt$16384$8$1$c36DkCu5DyQqQs2bS23F9w==$FenlSdZzcNK+Fg0uGEzDA212XxDurSZ9QjXRXoutGKc="',
    '"1234"',
    "1234",
    '" 48210937 "',
    '"hunter2"',
]
SEEDS = range(400)
ENVIRONMENT = [f"KIOSK_{kind.upper()}_DRIVER" for kind in ModuleKind]

ODD_VALUES = [
    '""',
    '" "',
    '"x"',
    "0",
    "-1",
    "1",
    "7",
    "2.5",
    "-0.0",
    "1e999",
    "nan",
    "-inf",
    "true",
    "false",
    "[]",
    '["face", "dark"]',
    '["wet"]',
    "[[[]]]",
    "{}",
    '{ driver = "fake" }',
    "1979-05-27T07:32:00Z",
    "07:32:00",
    "0x" + "f" * 300,  # beyond a float
    "0x" + "f" * 5000,  # beyond Python's limit for printing an int
    "9" * 5000,  # beyond tomllib's limit for reading one
    '"' + "x" * 100_000 + '"',
    '"' + "\U0001f642" * 5000 + '"',
    '"\\u0000"',
    '"/var/lib/rekam\\u0000kiosk"',
    '"~\\u0000"',
    '"~nosuchuser-rekam/data"',
    '"relative/folder"',
    '"/tmp/rekam-fuzz"',
    '"SIM-01\\n"',
    '"a\\r\\nb"',
    '"\\u202e\\u2028\\u0085"',
    '"fake"',
    '"touch"',
    '"Fake"',
    '"picamera2"',
    '"id"',
    '"en"',
    "'''multi\nline'''",
    *PIN_HASH_VALUES,
]
ODD_KEYS = [
    "langauge",
    "idle_timout_s",
    "serail",
    "scirpt",
    "drvier",
    "delay",
    "script",
    "fail_on_call",
    "aspect",
    "serial",
    "driver",
    '"lang\\nuage"',
    '"\\u0000"',
    '""',
    '"' + "k" * 5000 + '"',
    "a.b.c",
    "pin_hash",
    "pin",
    "pin_hsah",
]
ODD_TABLES = [
    "[modules.printer]",
    "[stations]",
    "[network]",
    "[session.extra]",
    "[modules.camera.script]",
    "[[modules.camera]]",
    "[station]",
    "[modules.camera]",
    "[session]",
    "[modules]",
    "[operator]",
    "[operators]",
    "[technician]",
    "[technician.pin]",
]
ODD_BYTES = [b"\x00", b"\xff", b"\xc3", b"\r", b"\n", b'"', b"[", b"]", b"=", b"\\", b"\t", b"#"]
KEY_LINE = re.compile(r"^([A-Za-z_]+) = ")


def _key_lines(lines: list[str]) -> list[int]:
    return [i for i, line in enumerate(lines) if KEY_LINE.match(line)] or [0]


def _delete_key(rng: random.Random, lines: list[str]) -> None:
    del lines[rng.choice(_key_lines(lines))]


def _delete_table(rng: random.Random, lines: list[str]) -> None:
    headers = [i for i, line in enumerate(lines) if line.startswith("[")] or [0]
    del lines[rng.choice(headers)]


def _replace_value(rng: random.Random, lines: list[str]) -> None:
    i = rng.choice(_key_lines(lines))
    key = KEY_LINE.match(lines[i])
    lines[i] = f"{key.group(1) if key else 'x'} = {rng.choice(ODD_VALUES)}"


def _misspell_key(rng: random.Random, lines: list[str]) -> None:
    i = rng.choice(_key_lines(lines))
    key, _, value = lines[i].partition(" = ")
    if len(key) > 2:
        j = rng.randrange(len(key) - 1)
        key = rng.choice([key[:j] + key[j + 1] + key[j] + key[j + 2 :], key[:j] + key[j + 1 :]])
    lines[i] = f"{key} = {value}"


def _insert_key(rng: random.Random, lines: list[str]) -> None:
    line = f"{rng.choice(ODD_KEYS)} = {rng.choice(ODD_VALUES)}"
    lines.insert(rng.randrange(len(lines) + 1), line)


def _insert_table(rng: random.Random, lines: list[str]) -> None:
    block = [rng.choice(ODD_TABLES), f"{rng.choice(ODD_KEYS)} = {rng.choice(ODD_VALUES)}"]
    at = rng.randrange(len(lines) + 1)
    lines[at:at] = block


def _duplicate_line(rng: random.Random, lines: list[str]) -> None:
    i = rng.randrange(len(lines))
    lines.insert(rng.randrange(len(lines) + 1), lines[i])


def _nest_deep(rng: random.Random, lines: list[str]) -> None:
    depth = rng.choice([3, 20, 100, 300, 5000])
    key = rng.choice(["script", "delay", "serial", "deep", "driver", "id"])
    value = rng.choice(
        [
            "[" * depth + "]" * depth,
            "{ a = " * depth + "1" + " }" * depth,
            "[{ " + "a." * depth + "a = 1 }]",
        ]
    )
    lines.insert(rng.randrange(len(lines) + 1), f"{key} = {value}")


def _switch_operator_on(rng: random.Random, lines: list[str]) -> None:
    """Uncomment the example's [operators] and [technician] tables, with hashes or
    something else."""
    for i, line in enumerate(lines):
        if line in ("# [operators]", "# [technician]"):
            lines[i] = line.removeprefix("# ")
        elif line.startswith(("# siti = ", "# budi = ")):
            key = rng.choice([line[2:6], line[2:6], "1siti"])
            lines[i] = f"{key} = {rng.choice(PIN_HASH_VALUES)}"
        elif line.startswith("# pin_hash = "):
            key = rng.choice(["pin_hash", "pin_hash", "pin"])
            lines[i] = f"{key} = {rng.choice(PIN_HASH_VALUES)}"


def _env_override(rng: random.Random, lines: list[str]) -> None:
    pass  # chosen in mutated(): the environment, not the text


MUTATIONS: list[Callable[[random.Random, list[str]], None]] = [
    _delete_key,
    _delete_table,
    _replace_value,
    _replace_value,
    _replace_value,
    _misspell_key,
    _insert_key,
    _insert_table,
    _duplicate_line,
    _nest_deep,
    _switch_operator_on,
]


def mutated(seed: int) -> tuple[bytes, dict[str, str]]:
    """The damaged file for ``seed``, and the driver overrides set in the environment."""
    rng = random.Random(seed)
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        rng.choice(MUTATIONS)(rng, lines)
    data = ("\n".join(lines) + "\n").encode("utf-8")
    if rng.random() < 0.1:
        data = data[: rng.randrange(len(data) + 1)]
    if rng.random() < 0.1:
        at = rng.randrange(len(data) + 1)
        data = data[:at] + rng.choice(ODD_BYTES) + data[at:]
    env = {}
    if rng.random() < 0.1:
        env[rng.choice(ENVIRONMENT)] = rng.choice(["fake", "touch", "picamera2", "Fake", "\n"])
    return data, env


def outcome(path: Path) -> str:
    """Load the station at ``path`` and build its modules: "valid", or the error's one line."""
    try:
        config = load_config(path)
        assert isinstance(config, StationConfig)
        StationModules.from_config(config)
    except (ConfigError, UnknownBackend) as exc:
        message = str(exc)
        assert message.startswith(f"{path}: "), message
        assert len(message.splitlines()) == 1, message
        assert len(message) < 500, message
        key = message.removeprefix(f"{path}: ").split(":")[0]
        if "operator" in key or "pin" in key:  # what may be a PIN is never repeated
            assert "48210937" not in message and "hunter2" not in message, message
        return message
    return "valid"


@pytest.fixture
def environment(monkeypatch):
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("seed", SEEDS)
def test_a_damaged_station_file_loads_or_gives_one_line(tmp_path, environment, seed):
    data, env = mutated(seed)
    for name, value in env.items():
        environment.setenv(name, value)
    path = tmp_path / "station.toml"
    path.write_bytes(data)
    outcome(path)  # any other exception fails the test


def test_the_mutations_reach_valid_files_and_many_different_errors(tmp_path, environment):
    results = []
    for seed in SEEDS[:200]:
        data, env = mutated(seed)
        if env:
            continue
        path = tmp_path / "station.toml"
        path.write_bytes(data)
        results.append(outcome(path))
    assert results.count("valid") >= 10
    kinds = {re.sub(r"^\S+: ", "", message).split(":")[0] for message in results}
    assert len(kinds) >= 15, kinds
