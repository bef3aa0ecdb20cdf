"""The `kiosk` command, run as a separate process the way a technician runs it."""

from __future__ import annotations

import fcntl
import getpass
import io
import json
import os
import select
import stat
import subprocess
import sys
import termios
import time
import tomllib
import warnings
from pathlib import Path

import pytest

from kiosk import __version__
from kiosk.cli import main
from kiosk.config import load_config
from kiosk.drivers import registry
from kiosk.drivers.base import ModuleKind
from kiosk.operator_pin import PinPad
from kiosk.packet.keys import (
    HubPrivateKey,
    StationKeyFiles,
    generate_station_key,
    save_hub_public_key,
)
from kiosk.store.sqlite import INDEX_NAME, EnrollmentStore

STEPS = ["nik", "consent", "face", "fingerprints", "signature", "review"]

# Runs `kiosk` in-process in a fresh interpreter, then says whether Kivy was imported.
RUN_AND_REPORT_KIVY = """
import sys
from kiosk.cli import main
code = main(sys.argv[1:])
print("kivy imported" if "kivy" in sys.modules else "kivy not imported")
sys.exit(code)
"""


# What `kiosk run` does before the window, then one log line of the kiosk's own.
LOG_AFTER_THE_WINDOW_IS_IMPORTED = """
import logging
import sys
from kiosk.cli import configure_logging
configure_logging(verbose=False)
import kiosk.app
assert "kivy" in sys.modules
logging.getLogger("kiosk.flow.machine").warning("marker: enrollment saved")
"""


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIOSK_")}
    return {**env, **extra}


def kiosk(
    *args: str, cwd: Path, stdin_text: str | None = None, **env: str
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kiosk.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean_env(**env),
        timeout=120,
        input=stdin_text,
    )


def kiosk_reporting_kivy(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", RUN_AND_REPORT_KIVY, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean_env(**env),
        timeout=120,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kiosk: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert result.stdout.strip() == "kivy not imported"  # failed before any window
    return lines[0]


def test_version(tmp_path):
    result = kiosk("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"rekam-kiosk {__version__}"


def test_help_lists_the_commands(tmp_path):
    result = kiosk("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: kiosk")
    assert "run" in result.stdout and "simulate" in result.stdout
    assert "hash-pin" in result.stdout
    run_help = kiosk("run", "--help", cwd=tmp_path)
    assert "--config" in run_help.stdout and "--simulate" in run_help.stdout


def test_a_command_is_required(tmp_path):
    result = kiosk(cwd=tmp_path)
    assert result.returncode == 2
    assert "required" in result.stderr


def test_simulate_json_reports_every_step(tmp_path):
    result = kiosk(
        "simulate", "--citizens", "3", "--json", "--data-dir", str(tmp_path), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # one JSON object and nothing else
    assert report["completed"] == 3
    assert report["failed"] == 0
    assert list(report["step_median_seconds"]) == STEPS
    assert all(seconds >= 0 for seconds in report["step_median_seconds"].values())
    assert report["citizen_median_seconds"] > 0
    assert report["citizen_max_seconds"] >= report["citizen_median_seconds"]
    assert 50_000 < report["packet_bytes_median"] <= 150 * 1024  # the goal
    assert 0 < report["seal_median_seconds"] < report["citizen_median_seconds"]
    store = EnrollmentStore(tmp_path)
    try:
        assert store.count() == 3
        assert all(packet.size < 150 * 1024 for packet in store.waiting())
    finally:
        store.close()
    # a simulation hub that knows this station, for `kiosk-hub serve --data-dir`
    assert (tmp_path / "hub" / "SIMULATION").exists()
    assert (tmp_path / "hub" / "stations" / "SIM-01.pub").exists()


def test_simulate_plain_text_lists_the_steps(tmp_path):
    result = kiosk("simulate", "--citizens", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "completed 2 of 2 enrollments"
    assert lines[1] == "median software time per step:"
    assert [line.split()[0] for line in lines[2:8]] == STEPS
    assert all(line.endswith(" ms") for line in lines[2:8])
    assert lines[8].startswith("median per citizen:")
    assert lines[9].startswith("slowest citizen:")


def test_simulate_refuses_no_citizens(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["simulate", "--citizens", "0"])
    assert caught.value.code == 2
    assert "at least 1 citizen" in capsys.readouterr().err


def test_run_with_a_missing_station_file_fails_before_the_window(tmp_path):
    result = kiosk_reporting_kivy("run", "--config", "/nonexistent.toml", cwd=tmp_path)
    assert_one_line_error(result, "/nonexistent.toml", "does not exist", "--simulate")


def test_run_takes_the_station_file_from_kiosk_config(tmp_path):
    path = tmp_path / "elsewhere.toml"
    result = kiosk_reporting_kivy("run", cwd=tmp_path, KIOSK_CONFIG=str(path))
    assert_one_line_error(result, str(path), "does not exist")


def test_run_with_a_malformed_station_file_fails_before_the_window(tmp_path):
    path = tmp_path / "station.toml"
    path.write_text('[station]\nid = "SIM-01\n')
    result = kiosk_reporting_kivy("run", "--config", str(path), cwd=tmp_path)
    assert_one_line_error(result, str(path), "not valid TOML", "line 2")


def test_run_with_an_invalid_value_names_the_key(tmp_path):
    text = Path(__file__).parent.parent.joinpath("kiosk", "simulation.toml").read_text()
    path = tmp_path / "station.toml"
    path.write_text(text.replace('language = "id"', 'language = "jv"'))
    result = kiosk_reporting_kivy("run", "--config", str(path), cwd=tmp_path)
    assert_one_line_error(result, str(path), "station.language", "'jv'")


def test_run_with_an_unknown_driver_fails_before_the_window(tmp_path):
    text = Path(__file__).parent.parent.joinpath("kiosk", "simulation.toml").read_text()
    path = tmp_path / "station.toml"
    path.write_text(text)
    result = kiosk_reporting_kivy(
        "run", "--config", str(path), cwd=tmp_path, KIOSK_CAMERA_DRIVER="polaroid"
    )
    installed = ", ".join(registry.available(ModuleKind.CAMERA))
    assert_one_line_error(
        result,
        f"{path}: modules.camera.driver: expected an installed camera driver ({installed}); "
        "got 'polaroid' from KIOSK_CAMERA_DRIVER in the environment",
    )


def station_file(tmp_path: Path, data_dir: str) -> Path:
    text = Path(__file__).parent.parent.joinpath("kiosk", "simulation.toml").read_text()
    path = tmp_path / "station.toml"
    path.write_text(
        text.replace(
            'data_dir = "~/.local/share/rekam-kiosk/simulation"', f'data_dir = "{data_dir}"'
        )
    )
    assert f'data_dir = "{data_dir}"' in path.read_text()
    return path


def test_run_with_a_data_dir_under_proc_fails_before_the_window(tmp_path):
    path = station_file(tmp_path, "/proc/x")
    result = kiosk_reporting_kivy("run", "--config", str(path), cwd=tmp_path)
    assert_one_line_error(result, "kiosk: /proc/x: ", "station.data_dir")


def test_run_with_a_data_dir_that_is_a_file_fails_before_the_window(tmp_path):
    (tmp_path / "data").write_text("not a folder")
    path = station_file(tmp_path, str(tmp_path / "data"))
    result = kiosk_reporting_kivy("run", "--config", str(path), cwd=tmp_path)
    assert_one_line_error(result, f"{tmp_path / 'data'}: not a folder")


def provision_keys(data: Path) -> None:
    """A station's keys, as provisioning leaves them in its data folder."""
    files = StationKeyFiles.in_data_dir(data)
    files.folder.mkdir(parents=True)
    generate_station_key(files.station_key)
    save_hub_public_key(files.hub_public, HubPrivateKey.generate().public_bytes())


def test_run_with_a_damaged_store_fails_before_the_window(tmp_path):
    data = tmp_path / "data"
    provision_keys(data)
    (data / INDEX_NAME).write_bytes(b"not a database at all" * 400)
    path = station_file(tmp_path, str(data))
    result = kiosk_reporting_kivy("run", "--config", str(path), cwd=tmp_path)
    assert_one_line_error(result, "the index is damaged", "do not delete it")


def test_run_on_a_station_without_keys_fails_before_the_window(tmp_path):
    path = station_file(tmp_path, str(tmp_path / "data"))
    result = kiosk_reporting_kivy("run", "--config", str(path), cwd=tmp_path)
    key = tmp_path / "data" / "keys" / "station.key"
    assert_one_line_error(result, f"kiosk: {key}: no station key", "not provisioned")


def test_each_log_line_appears_once_after_the_window_is_imported(tmp_path):
    env = {"KIVY_HOME": str(tmp_path / "kivy"), "KIVY_NO_ARGS": "1"}
    if not os.environ.get("DISPLAY"):
        env["SDL_VIDEODRIVER"] = "offscreen"
    result = subprocess.run(
        [sys.executable, "-c", LOG_AFTER_THE_WINDOW_IS_IMPORTED],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_env(**env),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("marker: enrollment saved") == 1, result.stderr
    [line] = [line for line in result.stderr.splitlines() if "marker" in line]
    assert line.endswith("WARNING kiosk.flow.machine: marker: enrollment saved")


# -- kiosk export ---------------------------------------------------------------------


def simulated_store(tmp_path: Path, citizens: int = 2) -> Path:
    data = tmp_path / "data"
    result = kiosk("simulate", "--citizens", str(citizens), "--data-dir", str(data), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return data


def stored_ids(data: Path) -> list[str]:
    store = EnrollmentStore(data)
    try:
        return sorted(packet.enrollment_id for packet in store.on_disk())
    finally:
        store.close()


def exported_ids(folder: Path) -> list[str]:
    return sorted(path.name.removesuffix(".rekam") for path in folder.iterdir())


def test_export_copies_every_waiting_packet_into_a_new_folder(tmp_path):
    data = simulated_store(tmp_path, citizens=3)
    stick = tmp_path / "usb"
    stick.mkdir()
    result = kiosk("export", "--to", str(stick), "--data-dir", str(data), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [exported] = list(stick.iterdir())
    assert result.stdout.strip() == f"exported 3 sealed packets to {exported}"
    assert exported.name.startswith("packets-") and exported.is_dir()
    assert exported_ids(exported) == stored_ids(data)
    assert len(exported_ids(exported)) == 3
    for path in exported.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_bytes() == (data / "packets" / path.name).read_bytes()
    again = kiosk("export", "--to", str(stick), "--data-dir", str(data), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert len(list(stick.iterdir())) == 2  # a second export never overwrites the first


def test_export_skips_acknowledged_packets_unless_asked_for_all(tmp_path):
    data = simulated_store(tmp_path, citizens=2)
    store = EnrollmentStore(data)
    first = store.waiting()[0].enrollment_id
    store.record_verdict(first, accepted=True)
    store.close()
    stick = tmp_path / "usb"
    stick.mkdir()
    assert (
        kiosk("export", "--to", str(stick), "--data-dir", str(data), cwd=tmp_path).returncode == 0
    )
    [waiting] = list(stick.iterdir())
    assert first not in exported_ids(waiting) and len(exported_ids(waiting)) == 1
    result = kiosk("export", "--all", "--to", str(stick), "--data-dir", str(data), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [everything] = [folder for folder in stick.iterdir() if folder != waiting]
    assert exported_ids(everything) == stored_ids(data)


def test_export_reads_the_data_dir_from_the_station_file(tmp_path):
    data = simulated_store(tmp_path, citizens=1)
    config = station_file(tmp_path, str(data))
    stick = tmp_path / "usb"
    stick.mkdir()
    result = kiosk("export", "--to", str(stick), "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [exported] = list(stick.iterdir())
    assert "SIM-01" in exported.name
    assert len(exported_ids(exported)) == 1


def test_export_without_a_store_says_so_and_creates_nothing(tmp_path):
    stick = tmp_path / "usb"
    stick.mkdir()
    empty = tmp_path / "empty"
    result = kiosk("export", "--to", str(stick), "--data-dir", str(empty), cwd=tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"kiosk: {empty}: no store here; ")
    assert not empty.exists()
    assert list(stick.iterdir()) == []


def test_export_to_a_missing_folder_refuses_rather_than_filling_the_sd_card(tmp_path):
    data = simulated_store(tmp_path, citizens=1)
    unmounted = tmp_path / "media" / "usb"
    result = kiosk("export", "--to", str(unmounted), "--data-dir", str(data), cwd=tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"kiosk: {unmounted}: does not exist; ")
    assert not unmounted.exists()


def test_simulate_numbers_enrollments_on_across_runs(tmp_path):
    data = simulated_store(tmp_path, citizens=2)
    simulated_store(tmp_path, citizens=3)
    ids = stored_ids(data)
    assert [enrollment_id.rsplit("-", 1)[1] for enrollment_id in ids] == [
        f"{n:06d}" for n in range(1, 6)
    ]
    assert all(enrollment_id.startswith("SIM-01-") for enrollment_id in ids)


# -- kiosk hash-pin -------------------------------------------------------------------

PIN = "48210937"  # eight digits: as good as impossible to find by chance in a hash


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def typed(monkeypatch, *answers: str | type[BaseException]) -> list[str]:
    """Stdin is a terminal, and getpass returns ``answers`` in turn; returns the prompts."""
    prompts: list[str] = []
    pending = list(answers)

    def fake_getpass(prompt: str = "Password: ", stream=None) -> str:
        prompts.append(prompt)
        answer = pending.pop(0)
        if isinstance(answer, type):
            raise answer()
        return answer

    monkeypatch.setattr(sys, "stdin", FakeTerminal())
    monkeypatch.setattr(getpass, "getpass", fake_getpass)
    return prompts


def piped(monkeypatch, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))


def printed_hash(stdout: str, key: str = "pin_hash") -> str:
    """The hash in ``kiosk hash-pin``'s one line of TOML."""
    assert stdout.count("\n") == 1 and stdout.startswith(f'{key} = "$argon2id$'), stdout
    return tomllib.loads(stdout)[key]


def verifies(encoded: str, pin: str) -> bool:
    return PinPad({"someone": encoded}).verify("someone", pin)


def test_hash_pin_from_a_pipe_prints_one_toml_line_that_verifies(monkeypatch, capsys):
    piped(monkeypatch, f"{PIN}\n")
    assert main(["hash-pin", "--technician"]) == 0
    out, err = capsys.readouterr()
    pad = PinPad({"technician": printed_hash(out)})
    assert pad.verify("technician", PIN)
    assert not pad.verify("technician", "48210938")
    assert PIN not in out and PIN not in err
    assert "[technician]" in err and "station file" in err  # the hint goes to stderr only


def test_hash_pin_reads_only_the_first_line_and_trims_it(monkeypatch, capsys):
    piped(monkeypatch, f"  {PIN}\r\n99999999\n")
    assert main(["hash-pin", "--technician"]) == 0
    assert verifies(printed_hash(capsys.readouterr().out), PIN)


def test_hash_pin_makes_a_new_salt_each_time(monkeypatch, capsys):
    hashes = []
    for _ in range(2):
        piped(monkeypatch, "1234\n")
        assert main(["hash-pin", "--technician"]) == 0
        hashes.append(printed_hash(capsys.readouterr().out))
    assert hashes[0] != hashes[1]
    assert all(verifies(encoded, "1234") for encoded in hashes)


@pytest.mark.parametrize(
    "text",
    ["", "\n", "123\n", "123456789\n", "12a4\n", "12 34\n", "-1234\n", "١٢٣٤\n", "hunter2\n"],
    ids=[
        "nothing",
        "empty line",
        "3 digits",
        "9 digits",
        "a letter",
        "a space",
        "a sign",
        "arabic-indic digits",
        "a password",
    ],
)
def test_hash_pin_refuses_anything_but_4_to_8_digits(monkeypatch, capsys, text):
    piped(monkeypatch, text)
    assert main(["hash-pin", "--technician"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "kiosk: hash-pin: a PIN is 4 to 8 digits (0-9), nothing else; nothing was printed"
    ]
    assert not text.strip() or text.strip() not in err


def test_hash_pin_with_stdin_closed_says_so(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", None)
    assert main(["hash-pin", "--technician"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == "kiosk: hash-pin: no PIN: stdin is closed\n"


def test_hash_pin_on_a_terminal_asks_twice_without_echo(monkeypatch, capsys):
    prompts = typed(monkeypatch, PIN, PIN)
    assert main(["hash-pin", "--technician"]) == 0
    assert prompts == ["PIN (4 to 8 digits): ", "The same PIN again: "]
    out, err = capsys.readouterr()
    assert verifies(printed_hash(out), PIN)
    assert PIN not in out and PIN not in err


def test_hash_pin_on_a_terminal_refuses_two_different_pins(monkeypatch, capsys):
    typed(monkeypatch, PIN, "48210938")
    assert main(["hash-pin", "--technician"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "kiosk: hash-pin: the two PINs differ; nothing was printed\n"


def test_hash_pin_on_a_terminal_refuses_a_bad_pin_before_asking_again(monkeypatch, capsys):
    prompts = typed(monkeypatch, "12")
    assert main(["hash-pin", "--technician"]) == 2
    assert len(prompts) == 1
    out, err = capsys.readouterr()
    assert out == "" and "4 to 8 digits" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("raised", "said"), [(EOFError, "no PIN was typed"), (KeyboardInterrupt, "cancelled")]
)
def test_hash_pin_on_a_terminal_stopped_prints_nothing(monkeypatch, capsys, raised, said):
    typed(monkeypatch, PIN, raised)
    assert main(["hash-pin", "--technician"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"kiosk: hash-pin: {said}; nothing was printed\n"


def test_hash_pin_refuses_a_terminal_where_the_pin_would_show(monkeypatch, capsys):
    def echoing_getpass(prompt: str = "Password: ", stream=None) -> str:
        warnings.warn("Can not control echo on the terminal.", getpass.GetPassWarning, 2)
        return PIN  # what getpass's fallback would do: read it with echo

    monkeypatch.setattr(sys, "stdin", FakeTerminal())
    monkeypatch.setattr(getpass, "getpass", echoing_getpass)
    assert main(["hash-pin", "--technician"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ("kiosk: hash-pin: cannot hide the PIN on this terminal; pipe it in instead\n")


def test_hash_pin_line_pasted_under_operators_loads_and_verifies(tmp_path):
    result = kiosk("hash-pin", "--operator", "siti", cwd=tmp_path, stdin_text="4321\n")
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    [hint] = result.stderr.splitlines()
    assert hint.startswith("kiosk: paste this line under [operators] in the station file")
    assert "4321" not in result.stderr
    path = station_file(tmp_path, str(tmp_path / "data"))
    text = path.read_text()
    [simulator_line] = [old for old in text.splitlines() if old.startswith("siti = ")]
    path.write_text(text.replace(simulator_line, line))
    config = load_config(path)
    assert config.operators["siti"] == printed_hash(line + "\n", "siti")
    assert PinPad(config.operators).verify("siti", "4321")


def test_hash_pin_asks_whose_pin_and_refuses_a_name_the_kiosk_cannot_show(tmp_path):
    for args in ((), ("--operator", "siti budi")):
        result = kiosk("hash-pin", *args, cwd=tmp_path, stdin_text="4321\n")
        assert result.returncode == 2 and result.stdout == ""
        assert "--operator" in result.stderr


def test_hash_pin_with_no_input_refuses_in_one_line(tmp_path):
    result = kiosk("hash-pin", "--technician", cwd=tmp_path, stdin_text="")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "kiosk: hash-pin: a PIN is 4 to 8 digits (0-9), nothing else; nothing was printed"
    ]


@pytest.mark.skipif(not hasattr(os, "openpty") or sys.platform == "win32", reason="needs a pty")
def test_hash_pin_on_a_real_terminal_does_not_echo_the_pin(tmp_path):
    import pty

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "kiosk.cli", "hash-pin", "--technician"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        cwd=tmp_path,
        env=clean_env(),
        start_new_session=True,  # the pty becomes its controlling terminal: /dev/tty
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
    )
    os.close(follower)
    seen = b""

    def read_until(marker: bytes) -> None:
        nonlocal seen
        deadline = time.monotonic() + 60
        while marker not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(leader, 4096)
                except OSError:  # the process ended and closed the terminal
                    return

    try:
        read_until(b"PIN (4 to 8 digits): ")
        os.write(leader, f"{PIN}\n".encode())
        read_until(b"The same PIN again: ")
        os.write(leader, f"{PIN}\n".encode())
        read_until(b"then restart the kiosk")
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(leader)
    text = seen.decode()
    assert PIN not in text  # never echoed as typed, never printed
    [line] = [line for line in text.splitlines() if line.startswith("pin_hash = ")]
    assert verifies(printed_hash(line + "\n"), PIN)


# -- kiosk doctor, selftest, emulate; backends that cannot be imported ----------------


def test_help_lists_the_module_commands(tmp_path):
    result = kiosk("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("doctor", "selftest", "emulate"):
        assert command in result.stdout
    for command in ("doctor", "selftest"):
        usage = kiosk(command, "--help", cwd=tmp_path).stdout
        assert "--config" in usage and "--json" in usage and "--simulate" in usage


def test_emulate_passes_the_rest_of_the_command_line_to_the_emulator(monkeypatch):
    import types

    import kiosk.drivers.fingerprint as package

    seen: list[list[str]] = []
    emulator = types.ModuleType("kiosk.drivers.fingerprint.emulator")
    emulator.main = lambda argv: seen.append(argv) or 3
    monkeypatch.setitem(sys.modules, "kiosk.drivers.fingerprint.emulator", emulator)
    monkeypatch.setattr(package, "emulator", emulator, raising=False)
    assert main(["emulate", "fingerprint", "--model", "R503", "--fault", "garble"]) == 3
    assert main(["emulate", "fingerprint", "--help"]) == 3  # its help, not ours
    assert seen == [["--model", "R503", "--fault", "garble"], ["--help"]]


def test_emulate_without_the_emulator_is_one_line(monkeypatch, capsys):
    import kiosk.drivers.fingerprint as package

    monkeypatch.setitem(sys.modules, "kiosk.drivers.fingerprint.emulator", None)
    monkeypatch.delattr(package, "emulator", raising=False)
    assert main(["emulate", "fingerprint"]) == 2
    out, err = capsys.readouterr()
    [line] = err.splitlines()
    assert line.startswith("kiosk: emulate fingerprint: the emulator cannot be loaded")
    assert out == ""


def library_missing(monkeypatch, kind: str, library: str) -> None:
    """The ``kind`` backend's module raises ImportError when loaded, as without its library."""
    from kiosk.drivers import registry

    real = registry.backend_class

    def backend_class(for_kind, name):
        if str(for_kind) == kind:
            raise ModuleNotFoundError(f"No module named {library!r}", name=library)
        return real(for_kind, name)

    monkeypatch.setattr(registry, "backend_class", backend_class)


def test_create_turns_a_backends_import_error_into_one_clear_line(monkeypatch):
    from kiosk.drivers import registry
    from kiosk.drivers.base import ModuleKind
    from kiosk.errors import DriverError

    library_missing(monkeypatch, "camera", "picamera2")
    with pytest.raises(DriverError) as caught:
        registry.create(ModuleKind.CAMERA, "picamera2", where="/etc/station.toml: modules.camera")
    assert str(caught.value) == (
        "/etc/station.toml: modules.camera.driver: the camera driver 'picamera2' cannot be "
        "loaded (No module named 'picamera2'); install the library it needs, or choose another "
        "driver"
    )
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_run_with_a_backend_that_cannot_be_imported_is_one_line(tmp_path, monkeypatch, capsys):
    library_missing(monkeypatch, "camera", "picamera2")
    path = station_file(tmp_path, str(tmp_path / "data"))
    assert main(["run", "--config", str(path)]) == 2
    out, err = capsys.readouterr()
    [line] = err.splitlines()
    assert line.startswith(f"kiosk: {path}: modules.camera.driver: the camera driver 'fake' ")
    assert "No module named 'picamera2'" in line and "Traceback" not in err
    assert out == ""
