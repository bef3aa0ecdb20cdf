"""image-build/: the pi-gen stage run by image-build/test-harness.sh on a Debian bookworm
arm64 root (debootstrap, minbase) under qemu-user emulation, then the root checked: the
kiosk runs, its units are enabled and verify, the kiosk user and groups, SSH masked, the
read-only root and the data partition, the watchdog, the journal, one touch provider.

The Raspberry Pi archive is out of reach here: what only a real pi-gen build checks is
listed in docs/image-build.md. Needs root (CI runs as root), debootstrap,
qemu-user-static and an aarch64 cross-compiler (bootstrap.sh installs them),
deb.debian.org and PyPI."""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HARNESS = REPO / "image-build" / "test-harness.sh"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
VENV = "/opt/rekam-kiosk/venv"
KIOSK_GROUPS = {"video", "dialout", "gpio", "render", "input", "audio"}
KERNEL_MOUNTS = (("proc", "proc", "proc"), ("bind", "/dev", "dev"), ("bind", "/sys", "sys"))

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="debootstrap, chroot and binfmt_misc need root (CI runs as root)"
)


@pytest.fixture(scope="module")
def aarch64_emulation():
    """qemu-aarch64 registered in binfmt_misc (with the F flag, so it works in a chroot);
    what the fixture mounted or registered is undone afterwards."""
    for tool in ("debootstrap", "qemu-aarch64-static", "update-binfmts", "aarch64-linux-gnu-gcc"):
        assert shutil.which(tool), f"{tool} is missing: ./bootstrap.sh test installs it"
    mounted = registered = False
    if not (BINFMT / "status").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], check=True)
        mounted = True
    try:
        if not (BINFMT / "qemu-aarch64").exists():
            subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], check=True)
            registered = True
        flags = (BINFMT / "qemu-aarch64").read_text()
        assert "enabled" in flags and "F" in flags.split("flags:")[1].split()[0], flags
        yield
    finally:
        if registered:
            subprocess.run(["update-binfmts", "--disable", "qemu-aarch64"], check=False)
        if mounted:
            subprocess.run(["umount", str(BINFMT)], check=False)


def _mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mounts") as mounts:
        return [line.split()[1] for line in mounts if line.split()[1].startswith(f"{path}/")]


@pytest.fixture(scope="module")
def root(tmp_path_factory, aarch64_emulation):
    """The image's root after our stage ran on it; deleted afterwards (about 1 GB)."""
    work = tmp_path_factory.mktemp("image-build")
    started = time.monotonic()
    try:
        result = subprocess.run(
            [str(HARNESS), str(work), sys.executable],
            capture_output=True,
            text=True,
            timeout=1800,  # 8-12 minutes on 2 busy cores
            check=False,
        )
        print(f"test-harness.sh: {time.monotonic() - started:.0f} s")
        print(result.stderr[-3000:])
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
        assert _mounts_under(work) == []  # the harness unmounted everything it mounted
        yield work / "rootfs"
    finally:
        for target in sorted(_mounts_under(work), reverse=True):
            subprocess.run(["umount", "--lazy", target], check=False)
        shutil.rmtree(work, ignore_errors=True)


def _in_root(root: Path, *command: str, env: dict[str, str] | None = None):
    """``command`` inside the root, under emulation."""
    return subprocess.run(
        ["chroot", str(root), *command],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", **(env or {})},
    )


def _units() -> list[str]:
    """Every unit the image installs: all of systemd/, and the data partition's."""
    ours = sorted(unit.name for unit in (REPO / "systemd").glob("*.service"))
    return [*ours, "rekam-data-partition.service"]


def _ini(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd's keys are case-sensitive
    parser.read(path)
    return parser


def test_the_kiosk_runs_under_emulation(root):
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    result = _in_root(root, f"{VENV}/bin/kiosk", "--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"rekam-kiosk {version}"), result
    result = _in_root(root, f"{VENV}/bin/python", "-c", "import kiosk.cli, kiosk.packet, kivy")
    assert result.returncode == 0, result.stderr


def test_the_guides_are_on_the_station_in_both_languages_with_their_pictures(root):
    docs = root / "opt/rekam-kiosk/docs"
    for guide in ("technician.md", "operator.md", "id/panduan-teknisi.md", "id/panduan-petugas.md"):
        assert (docs / guide).is_file(), guide
    assert (docs / "screenshots/tech-02-diagnostics-modules.png").is_file()
    assert (docs / "station.example.toml").is_file()  # the recovery section points at it


def test_the_environment_sees_the_systems_packages_and_lacks_nothing(root):
    assert "include-system-site-packages = true" in (root / VENV[1:] / "pyvenv.cfg").read_text()
    result = _in_root(root, f"{VENV}/bin/pip", "check", "--disable-pip-version-check")
    assert result.returncode == 0, result.stdout


def test_wsq_built_from_the_images_source_encodes_under_emulation(root):
    """wsq has no aarch64 wheel: the image compiles it from files/wsq-source, the harness
    cross-compiles the same source; either way the codec must work on aarch64."""
    script = (
        "import json, numpy as np; from kiosk.packet.wsq import encode_wsq, decode_wsq;"
        "ridges = (np.indices((128, 128)).sum(0) % 8 * 32).astype(np.uint8);"
        "data = encode_wsq(ridges); back = decode_wsq(data);"
        "error = float(np.abs(back.astype(int) - ridges).mean());"
        "print(json.dumps([data[:2].hex(), list(back.shape), error]))"
    )
    result = _in_root(root, f"{VENV}/bin/python", "-c", script)
    assert result.returncode == 0, result.stderr
    start, shape, error = json.loads(result.stdout.splitlines()[-1])
    assert (start, shape) == ("ffa0", [128, 128]) and error < 40, result.stdout


def test_every_unit_is_installed_and_enabled(root):
    for name in _units():
        unit = root / "etc/systemd/system" / name
        assert unit.is_file(), name
        for target in _ini(unit)["Install"]["WantedBy"].split():
            link = root / "etc/systemd/system" / f"{target}.wants" / name
            assert link.is_symlink(), link


def test_the_units_verify_without_a_word(root):
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", *_units()],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_kiosk_user_has_its_groups(root):
    users = {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").open()}
    assert users["kiosk"][5:] == ["/var/lib/rekam-kiosk", "/usr/sbin/nologin\n"]
    assert int(users["kiosk"][2]) < 1000  # a system user
    members = {}
    for line in (root / "etc/group").read_text().splitlines():
        name, _, _, users_of_group = line.split(":")
        members[name] = set(users_of_group.split(","))
    assert {group for group in KIOSK_GROUPS if "kiosk" in members.get(group, ())} == KIOSK_GROUPS


def test_ssh_is_masked(root):
    for name in ("ssh.service", "ssh.socket", "sshswitch.service"):
        assert os.readlink(root / "etc/systemd/system" / name) == "/dev/null", name


def test_the_root_is_read_only_and_the_data_partition_persists(root):
    overlay = (root / "etc/overlayroot.local.conf").read_text()
    assert 'overlayroot="tmpfs:recurse=0"' in overlay.splitlines()  # recurse=0: not the data
    assert (root / "usr/share/initramfs-tools/scripts/init-bottom/overlayroot").is_file()
    fstab = [line.split() for line in (root / "etc/fstab").open() if not line.startswith("#")]
    data = [fields for fields in fstab if "LABEL=rekam-data" in fields]
    assert len(data) == 1
    source, mount_point, kind, options = data[0][:4]
    assert (source, mount_point, kind) == ("LABEL=rekam-data", "/var/lib/rekam-kiosk", "ext4")
    assert "nofail" not in options  # never the kiosk writing to RAM instead
    assert os.readlink(root / "etc/rekam-kiosk") == "/var/lib/rekam-kiosk/config"
    # the root must not grow into the space the data partition takes at first boot
    assert "firstboot" not in (root / "boot/firmware/cmdline.txt").read_text()
    assert os.access(root / "usr/local/lib/rekam-kiosk/make-data-partition", os.X_OK)


def test_the_folders_on_the_data_partition_are_the_kiosks(root):
    result = subprocess.run(
        ["systemd-tmpfiles", f"--root={root}", "--create", "rekam-kiosk.conf"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    kiosk = next(line for line in (root / "etc/passwd").open() if line.startswith("kiosk:"))
    uid, gid = (int(number) for number in kiosk.split(":")[2:4])
    # the station file's folder stays root's (provisioning keeps it so); kiosk reads it
    expected = {"": ((uid, gid), 0o700), "config": ((0, gid), 0o750), "kivy": ((uid, gid), 0o700)}
    for folder, (owner, mode) in expected.items():
        status = (root / "var/lib/rekam-kiosk" / folder).stat()
        assert ((status.st_uid, status.st_gid), status.st_mode & 0o777) == (owner, mode), folder
    link = root / "var/lib/rekam-kiosk/kivy/config.ini"
    assert os.readlink(link) == "/usr/local/share/rekam-kiosk/kivy-config.ini"


def test_kivy_reads_exactly_one_touch_provider(root):
    installed = root / "usr/local/share/rekam-kiosk/kivy-config.ini"
    home = root / "tmp/kivy-home"
    home.mkdir()
    shutil.copy(installed, home / "config.ini")
    script = (
        "import json; from kivy.config import Config, KIVY_CONFIG_VERSION;"
        "inputs = {key: Config.get('input', key) for key in Config.options('input')};"
        "print(json.dumps([inputs, Config.getint('kivy', 'config_version'), KIVY_CONFIG_VERSION]))"
    )
    result = _in_root(
        root,
        f"{VENV}/bin/python",
        "-c",
        script,
        env={"KIVY_HOME": "/tmp/kivy-home", "KIVY_NO_ARGS": "1", "KIVY_NO_CONSOLELOG": "1"},
    )
    assert result.returncode == 0, result.stderr
    inputs, version, kivys_version = json.loads(result.stdout.splitlines()[-1])
    # Kivy's own version: else it would "upgrade" the file and add mouse and probesysfs
    assert inputs == {"mtdev_%(name)s": "probesysfs,provider=mtdev"}
    assert version == kivys_version
    assert (home / "config.ini").read_text() == installed.read_text()  # nothing to upgrade


def test_the_hardware_watchdog_is_on_and_fed(root):
    config_txt = (root / "boot/firmware/config.txt").read_text().splitlines()
    at = config_txt.index("dtparam=watchdog=on")
    sections = [line for line in config_txt[:at] if line.startswith("[")]
    assert sections[-1] == "[all]"  # for every model
    manager = _ini(root / "etc/systemd/system.conf.d/rekam-watchdog.conf")["Manager"]
    assert manager["RuntimeWatchdogSec"] == "15" and manager["RebootWatchdogSec"]


def test_the_journal_stays_in_ram(root):
    journal = _ini(root / "etc/systemd/journald.conf.d/rekam-kiosk.conf")["Journal"]
    assert journal["Storage"] == "volatile" and journal["RuntimeMaxUse"]


def test_the_install_leftovers_are_gone(root):
    assert not (root / "var/cache/rekam-kiosk-install").exists()


@pytest.fixture
def loop_disk(tmp_path, root):
    """A 600 MiB disk on a loop device laid out as the flashed image: boot, root, free rest;
    and the image's root with /proc, /dev and /sys mounted, to run the image's tools."""
    image = tmp_path / "card.img"
    with image.open("wb") as card:
        card.truncate(600 * 2**20)
    found = subprocess.run(
        ["losetup", "--find", "--show", str(image)], capture_output=True, text=True, check=False
    )
    if found.returncode != 0:
        pytest.skip(f"no loop device here: {found.stderr.strip()}")
    disk = found.stdout.strip()
    mounted = []
    try:
        for kind, source, target in KERNEL_MOUNTS:
            options = ["--bind", source] if kind == "bind" else ["-t", kind, source]
            subprocess.run(["mount", *options, str(root / target)], check=True)
            mounted.append(root / target)
        # boot at 8 MiB (64 MiB), root after it (200 MiB), as pi-gen aligns them
        layout = "label: dos\n16384,131072,c\n147456,409600,L\n"
        subprocess.run(["chroot", str(root), "sfdisk", "--quiet", disk], input=layout, text=True)
        subprocess.run(["partx", "--add", disk], check=False)
        yield disk
    finally:
        subprocess.run(["partx", "--delete", disk], check=False)
        subprocess.run(["losetup", "--detach", disk], check=False)
        for target in reversed(mounted):
            subprocess.run(["umount", str(target)], check=False)
        image.unlink()


def test_the_first_boot_makes_the_data_partition_in_the_rest_of_the_card(root, loop_disk):
    make = [
        "env",
        f"REKAM_ROOT_PARTITION={loop_disk}p2",
        "/usr/local/lib/rekam-kiosk/make-data-partition",
    ]
    first = _in_root(root, *make)
    assert first.returncode == 0, first.stderr
    partitions = _partitions(root, loop_disk)
    assert len(partitions) == 3
    start, size = partitions[2]["start"], partitions[2]["size"]
    assert (start, size) == (147456 + 409600, 600 * 2048 - 147456 - 409600)  # all the rest
    label = _in_root(root, "blkid", "--match-tag", "LABEL", "--output", "value", f"{loop_disk}p3")
    assert label.stdout.strip() == "rekam-data"
    again = _in_root(root, *make)  # every later boot: nothing to do
    assert (again.returncode, again.stderr) == (0, "")
    assert _partitions(root, loop_disk) == partitions


def _partitions(root: Path, disk: str) -> list[dict]:
    table = _in_root(root, "sfdisk", "--json", disk)
    return json.loads(table.stdout)["partitiontable"]["partitions"]


@pytest.mark.parametrize("arguments", [["--release", "sid"], ["--release"], ["--arch", "armhf"]])
def test_build_sh_refuses_what_it_cannot_build_before_doing_anything(arguments):
    """Raspberry Pi OS 64-bit, bookworm or trixie; anything else is refused at once."""
    result = subprocess.run(
        [str(REPO / "image-build" / "build.sh"), *arguments],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2 and "usage:" in result.stderr
    assert not (REPO / "image-build" / "work").exists()
