"""The systemd units in systemd/: `systemd-analyze verify` says nothing at all about
them (it only warns, so any output is a failure), and their exposure under
`systemd-analyze security --offline=yes` stays low."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parent.parent / "systemd"
KIOSK_BINARY = "opt/rekam-kiosk/venv/bin/kiosk"
# the exposure each unit must stay below (0 = locked down, 10 = root with everything);
# the touchscreen needs its devices and the GPU, the sync service only the network;
# first boot runs as root (it writes /etc/rekam-kiosk, hands the data folder to kiosk)
MAX_EXPOSURE = {
    "kiosk.service": 3.0,
    "kiosk-sync.service": 3.0,
    "kiosk-firstboot.service": 3.0,
}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A file-system root holding the system's own units, ours and the kiosk command
    (a stub): what verify needs to resolve every dependency and ExecStart."""
    root = tmp_path_factory.mktemp("root")
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    binary = root / KIOSK_BINARY
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    installed = root / "etc/systemd/system"
    installed.mkdir(parents=True)
    for unit in UNITS.glob("*.service"):
        shutil.copy(unit, installed / unit.name)
    return root


def _analyze(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["systemd-analyze", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_every_unit_verifies_without_a_word(root):
    names = sorted(unit.name for unit in UNITS.glob("*.service"))
    assert names == sorted(MAX_EXPOSURE)
    result = _analyze("verify", f"--root={root}", *names)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_verify_would_speak_up_about_a_misspelt_key(root):
    broken = root / "etc/systemd/system/broken.service"
    text = (UNITS / "kiosk-sync.service").read_text().replace("Restart=always", "Restat=always")
    broken.write_text(text)
    try:
        result = _analyze("verify", f"--root={root}", "broken.service")
    finally:
        broken.unlink()
    assert "Restat" in result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(MAX_EXPOSURE))
def test_exposure_stays_low(root, name):
    result = _analyze("security", "--offline=yes", f"--root={root}", name)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert found, result.stdout[-500:] + result.stderr[-500:]
    exposure = float(found.group(1))
    print(f"{name}: exposure {exposure}")  # quoted in the closing note
    assert exposure < MAX_EXPOSURE[name]


def _service(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read(UNITS / name)
    return parser["Service"]


def test_the_kiosk_is_a_watched_appliance_running_unprivileged():
    service = _service("kiosk.service")
    assert service["Type"] == "notify" and service["Restart"] == "always"
    assert int(service["WatchdogSec"]) > 0  # pinged from the UI's loop (kiosk/notify.py)
    assert service["User"] == "kiosk" and "NoNewPrivileges" in service
    assert set(service["SupplementaryGroups"].split()) >= {
        "video",
        "dialout",
        "gpio",
        "render",
        "input",
    }
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == "/var/lib/rekam-kiosk"  # config.toml's data_dir


def test_the_sync_service_runs_the_sync_loop_with_no_device():
    service = _service("kiosk-sync.service")
    assert service["ExecStart"].endswith("kiosk sync --forever")
    assert service["PrivateDevices"] == "yes" and service["User"] == "kiosk"


def test_first_boot_provisions_only_an_unprovisioned_station_before_the_kiosk():
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(UNITS / "kiosk-firstboot.service")
    unit, service = parser["Unit"], parser["Service"]
    assert unit["ConditionPathExists"] == "!/etc/rekam-kiosk/station.toml"
    assert {"kiosk.service", "kiosk-sync.service"} <= set(unit["Before"].split())
    assert service["Type"] == "oneshot"
    assert service["ExecStart"].split()[1:4] == ["provision", "--screen", "--fullscreen"]
    assert "--owner kiosk" in service["ExecStart"]
    # the same display as the kiosk's own window
    kiosk = _service("kiosk.service")
    assert "SDL_VIDEODRIVER=kmsdrm" in service["Environment"]
    assert "SDL_VIDEODRIVER=kmsdrm" in kiosk["Environment"]
    # root, with only the capabilities of owning files, and no way to more
    assert "User" not in service and service["NoNewPrivileges"] == "yes"
    assert set(service["CapabilityBoundingSet"].split()) == {
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FOWNER",
    }
    assert service["ProtectSystem"] == "strict" and service["DevicePolicy"] == "closed"
    # the kiosk it comes before waits for the station file it writes
    assert _unit("kiosk.service")["ConditionPathExists"] == "/etc/rekam-kiosk/station.toml"


def _unit(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(UNITS / name)
    return parser["Unit"]
