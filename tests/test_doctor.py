"""`kiosk doctor` and `kiosk selftest`: module status, the inventory, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support import test_sealer

from kiosk.cli import main
from kiosk.config import SIMULATION_PATH, load_config
from kiosk.drivers import registry
from kiosk.drivers.base import ModuleKind
from kiosk.drivers.fingerprint.fake import FakeFingerprintReader
from kiosk.health.doctor import check_module, doctor
from kiosk.health.inventory import ModuleInventory
from kiosk.health.station import StationModules
from kiosk.health.supervisor import ModuleStatus, StationSupervisor
from kiosk.packet.build import Packet
from kiosk.store.sqlite import EnrollmentStore

MODULE_KEYS = {"kind", "driver", "model", "serial", "serial_source", "firmware", "status", "detail"}


def station_file(tmp_path: Path, **tables: str) -> Path:
    """The simulation station with its data in tmp_path; ``tables`` replace a
    ``[modules.<kind>]`` table's body, e.g. fingerprint='driver = "fake"\\nscript = [...]'."""
    text = SIMULATION_PATH.read_text(encoding="utf-8").replace(
        'data_dir = "~/.local/share/rekam-kiosk/simulation"', f'data_dir = "{tmp_path / "data"}"'
    )
    for kind, body in tables.items():
        old = f'[modules.{kind}]\ndriver = "fake"\n'
        assert old in text
        text = text.replace(old, f"[modules.{kind}]\n{body}\n")
    path = tmp_path / "station.toml"
    path.write_text(text, encoding="utf-8")
    return path


UNPLUGGED_READER = 'driver = "fake"\nscript = ["unplugged"]'


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def doctor_json(capsys, path: Path) -> tuple[int, dict]:
    code, out, err = run(capsys, "doctor", "--json", "--config", str(path))
    assert "Traceback" not in err
    return code, json.loads(out)


# -- kiosk doctor, no kiosk running ----------------------------------------------------------


def test_doctor_json_checks_every_module_and_exits_0(tmp_path):
    path = station_file(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "kiosk.cli", "doctor", "--json", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # one JSON object and nothing else
    assert report["ok"] is True and report["source"] == "check"
    assert "no inventory yet" in report["source_detail"]
    assert [module["kind"] for module in report["modules"]] == [str(kind) for kind in ModuleKind]
    for module in report["modules"]:
        assert set(module) >= MODULE_KEYS
        assert module["status"] == "ok" and module["ok"] is True
    fingerprint = report["modules"][1]
    assert (fingerprint["driver"], fingerprint["serial"]) == ("fake", "SIM-FPR-0001")
    assert fingerprint["serial_source"] == "simulated" and fingerprint["firmware"] == "sim-1.0"
    assert report["inventory"] == []
    assert not (tmp_path / "data" / "modules.json").exists()  # doctor only reads
    assert report["packets"] == {} and "no store yet" in report["packets_problem"]


def sealed_copy(n: int) -> Packet:
    """A small packet of the simulation station: the doctor counts, it never opens."""
    enrollment_id = f"SIM-01-20261128-{n:06d}"
    manifest = {"enrollment_id": enrollment_id, "station": {"id": "SIM-01"}, "sequence": n}
    return Packet(enrollment_id, {**manifest, "modules": []}, {"face.jpg": b"x"})


def test_doctor_counts_the_packets_in_each_state_and_points_at_the_quarantine(tmp_path, capsys):
    data = tmp_path / "data"
    store = EnrollmentStore(data, test_sealer("SIM-01"))
    for n, state in enumerate(("acknowledged", "sealed", "sealed"), 1):
        store.save(sealed_copy(n))
        if state == "acknowledged":
            store.record_verdict(f"SIM-01-20261128-{n:06d}", accepted=True)
    store.close()
    (data / "packets" / "SIM-01-20261128-000003.rekam").write_bytes(b"damaged")
    EnrollmentStore(data).close()  # the kiosk's next start sets it aside
    code, report = doctor_json(capsys, station_file(tmp_path))
    assert code == 0
    assert report["packets"]["acknowledged"] == 1 and report["packets"]["sealed"] == 1
    assert report["packets"]["quarantined"] == 1 and report["packets_problem"] == ""
    _, out, _ = run(capsys, "doctor", "--config", str(station_file(tmp_path)))
    assert (
        "packets: 1 direkam (sealed), 0 terkirim (sent), 1 diterima (acknowledged), "
        "0 ditolak (rejected), 1 dikarantina (quarantined)"
    ) in out
    assert f"set aside in {data}/quarantine" in out


def test_doctor_with_an_unplugged_reader_is_not_ok_and_exits_1(tmp_path, capsys):
    code, report = doctor_json(capsys, station_file(tmp_path, fingerprint=UNPLUGGED_READER))
    assert code == 1
    assert report["ok"] is False
    reader = next(module for module in report["modules"] if module["kind"] == "fingerprint")
    assert reader["status"] == "failed" and reader["ok"] is False and reader["required"]
    assert "not answering" in reader["detail"]
    assert reader["serial"] == "SIM-FPR-0001"  # it identified itself before failing its test


def test_doctor_text_names_the_station_the_source_and_the_result(tmp_path, capsys):
    code, out, _ = run(
        capsys, "doctor", "--config", str(station_file(tmp_path, fingerprint=UNPLUGGED_READER))
    )
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("station SIM-01 (")
    assert lines[1] == "modules checked by kiosk doctor now (no inventory yet):"
    assert any(line.split()[:2] == ["fingerprint", "FAILED"] for line in lines)
    assert lines[-1] == "result: NOT OK: fingerprint failed"


def test_an_optional_module_failing_is_a_warning_not_a_failure(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KIOSK_INDICATORS_DRIVER", "blinkenlights")  # not installed
    code, report = doctor_json(capsys, station_file(tmp_path))
    assert code == 0 and report["ok"] is True
    lights = report["modules"][3]
    assert (lights["kind"], lights["ok"], lights["required"]) == ("indicators", False, False)
    assert "blinkenlights" in lights["detail"] and "KIOSK_INDICATORS_DRIVER" in lights["detail"]


def test_doctor_with_a_missing_station_file_is_one_line_and_exit_2(tmp_path, capsys):
    code, out, err = run(capsys, "doctor", "--config", str(tmp_path / "none.toml"))
    assert code == 2 and out == ""
    [line] = err.splitlines()
    assert line.startswith("kiosk: ") and "does not exist" in line


def test_doctor_reports_a_damaged_inventory_and_leaves_it_alone(tmp_path, capsys):
    path = station_file(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "modules.json").write_text("{torn")
    code, report = doctor_json(capsys, path)
    assert code == 0 and report["source"] == "check"
    assert "unreadable" in report["inventory_problem"]
    assert (tmp_path / "data" / "modules.json").read_text() == "{torn"


# -- kiosk doctor, with the kiosk's inventory ------------------------------------------------


@pytest.fixture
def running_kiosk(tmp_path):
    """running_kiosk(config_path) -> the supervisor of a 'kiosk' on that station."""
    made = []

    def start(path: Path) -> StationSupervisor:
        config = load_config(path)
        modules = StationModules.from_config(config)
        supervisor = StationSupervisor(config, modules, poll_s=0.02, backoff=(0.05, 0.2))
        made.append(supervisor)
        supervisor.start()
        deadline = time.monotonic() + 3
        while any(s is ModuleStatus.STARTING for s, _, _ in supervisor.status().values()):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        return supervisor

    yield start
    for supervisor in made:
        supervisor.stop()


def test_doctor_shows_the_running_kiosks_view(tmp_path, capsys, running_kiosk):
    path = station_file(tmp_path)
    running_kiosk(path)
    code, report = doctor_json(capsys, path)
    assert code == 0
    assert report["source"] == "kiosk" and "running kiosk" in report["source_detail"]
    assert [module["status"] for module in report["modules"]] == ["up"] * 4
    assert report["modules"][0]["serial"] == "SIM-CAM-0001"
    assert {unit["serial"] for unit in report["inventory"] if unit["installed"]} == {
        "SIM-CAM-0001",
        "SIM-FPR-0001",
        "SIM-PAD-0001",
        "SIM-IND-0001",
    }


def test_doctor_shows_a_module_the_running_kiosk_has_down(tmp_path, capsys, running_kiosk):
    path = station_file(tmp_path, fingerprint=UNPLUGGED_READER)
    running_kiosk(path)
    code, report = doctor_json(capsys, path)
    assert code == 1 and report["source"] == "kiosk"
    reader = report["modules"][1]
    assert reader["status"] == "down" and "self-test failed" in reader["detail"]


def test_doctor_checks_itself_once_the_kiosk_stopped(tmp_path, capsys, running_kiosk):
    path = station_file(tmp_path)
    running_kiosk(path).stop()
    code, report = doctor_json(capsys, path)
    assert code == 0 and report["source"] == "check"
    assert "the kiosk stopped" in report["source_detail"]
    assert len(report["inventory"]) == 4  # the units the kiosk saw are still listed


def test_doctor_does_not_trust_an_old_inventory(tmp_path):
    config = load_config(station_file(tmp_path))
    inventory = ModuleInventory(config.data_dir / "modules.json", clock=lambda: time.time() - 3600)
    inventory.set_kind_status("fingerprint", "up", "")
    inventory.save()  # "running", but an hour ago: that kiosk died without a word
    report = doctor(config)
    assert report.source == "check"
    assert "last updated 60 min ago" in report.source_detail


# -- checks and kiosk selftest -----------------------------------------------------------------


def test_a_hung_module_is_given_up_on_and_closed():
    class Hung(FakeFingerprintReader):
        def _open(self) -> None:
            time.sleep(0.5)

    made: list[Hung] = []
    begun = time.monotonic()
    check = check_module(ModuleKind.FINGERPRINT, lambda: made.append(Hung()) or made[-1], 0.1)
    assert time.monotonic() - begun < 0.4  # not held up by the open() it gave up on
    assert not check.passed and "no answer within 0.1 s" in check.detail
    deadline = time.monotonic() + 2
    while not (
        made[0].closed
        and not any(t.name == "check-fingerprint-close" for t in threading.enumerate())
    ):
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_selftest_prints_one_pass_line_per_module_and_exits_0(tmp_path, capsys):
    code, out, _ = run(capsys, "selftest", "--config", str(station_file(tmp_path)))
    assert code == 0
    lines = out.splitlines()
    assert [line.split()[:2] for line in lines] == [["PASS", str(kind)] for kind in ModuleKind]
    assert all(" s  " in line for line in lines)  # the duration, then the detail


def test_selftest_with_a_required_module_failing_exits_1(tmp_path, capsys):
    path = station_file(tmp_path, fingerprint=UNPLUGGED_READER)
    code, out, _ = run(capsys, "selftest", "--config", str(path))
    assert code == 1
    [line] = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert line.split()[1] == "fingerprint" and "not answering" in line


def test_selftest_with_only_an_optional_module_failing_warns_and_exits_0(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("KIOSK_INDICATORS_DRIVER", "blinkenlights")
    code, out, err = run(capsys, "selftest", "--config", str(station_file(tmp_path)))
    assert code == 0
    assert out.splitlines()[-1].startswith("WARN  indicators")
    assert "warning: indicators failed" in err


def test_selftest_json_and_a_backend_that_cannot_be_imported(tmp_path, capsys, monkeypatch):
    real = registry.backend_class

    def camera_library_missing(kind, name):
        if kind is ModuleKind.CAMERA:
            raise ModuleNotFoundError("No module named 'picamera2'")
        return real(kind, name)

    monkeypatch.setattr(registry, "backend_class", camera_library_missing)
    code, out, err = run(capsys, "selftest", "--json", "--config", str(station_file(tmp_path)))
    assert code == 1 and "Traceback" not in err
    report = json.loads(out)
    assert report["ok"] is False
    camera = report["modules"][0]
    assert camera["kind"] == "camera" and camera["passed"] is False
    assert "cannot be loaded (No module named 'picamera2')" in camera["detail"]
    assert all(module["passed"] for module in report["modules"][1:])


def test_doctor_does_not_trust_a_fresh_inventory_whose_kiosk_is_gone(tmp_path):
    config = load_config(station_file(tmp_path))
    inventory = ModuleInventory(config.data_dir / "modules.json")
    inventory.set_kind_status("fingerprint", "up", "")
    inventory.save()
    assert doctor(config).source == "kiosk"  # fresh, and written by a live process (this one)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    data = inventory.as_dict()
    data["pid"] = int(dead.stdout)  # a kiosk that died a moment ago, without a word
    (config.data_dir / "modules.json").write_text(json.dumps(data))
    report = doctor(config)
    assert report.source == "check"


def test_doctor_json_gains_the_diagnostics_sections_and_keeps_its_keys(tmp_path, capsys):
    code, report = doctor_json(capsys, station_file(tmp_path))
    assert code == 0
    assert set(report) >= {
        "station_id", "config", "data_dir", "ok", "source", "source_detail", "modules",
        "inventory", "inventory_path", "inventory_updated_at", "inventory_problem", "packets",
        "packets_problem",
    }  # fmt: skip
    # nothing saved yet by the diagnostics screen: the sections are there, empty
    assert report["audit"] == [] and report["audit_total"] == 0
    assert report["touch_test"] is None and report["fingerprint_test"] is None
    assert report["camera_check"] is None and report["diagnostics_problem"] == ""
    assert all(module["last_selftest"]["source"] == "kiosk doctor" for module in report["modules"])
