"""Provisioning a station: its keys, the hub's key and certificate, the station file.

:func:`provision` does the whole of it, for ``kiosk provision`` and the first-boot
screen alike, in an order that leaves nothing half done by a refusal:

1. every field is checked (:func:`check`: problems as i18n keys, for the screen's
   two languages and the command's English line);
2. a station file or station key already there is kept unless ``force``;
3. the station key is made in memory and the station paired with the hub by the
   one-time code (kiosk/provision/client.py), or the hub's key and certificate are
   read from the files given (an office without a link; the station is then
   registered at the hub by hand, ``kiosk-hub register``);
4. only then are the keys written (``<data_dir>/keys/``: ``station.key`` 0600,
   ``station.pub``, ``hub.pub``, ``hub-tls.pem``), the station file written
   atomically (0640), and the marker ``<data_dir>/provisioned.json`` last.

The marker also carries the enrollment counter's floor (``sequence_floor``), which
the store takes when it opens (kiosk/store/sqlite.py): paired, the hub's highest
sequence for this station id plus ``protocol.SEQUENCE_MARGIN``, so a re-flashed
station never makes an id the hub accepted from its old card; offline, one less
than ``--first-sequence`` if the technician gives it.

A *provisioned* station is one whose data folder holds that marker. It refuses
simulated modules (``kiosk run --simulate``, a ``fake`` driver) unless the
technician says so (``kiosk run --allow-simulated``): :func:`refuse_simulation`.

Example::

    result = provision(Provisioning(station_id="3201-KCM-CIBINONG-01", region="3201",
                                    hub_url="https://10.0.0.2:8443", pairing_code="K7QMX-4RTPA",
                                    technician_pin="804211", operator="siti",
                                    operator_pin="4821"))
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import secrets
import shutil
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk import __version__
from kiosk.config import DEFAULT_PATH, OPERATOR_NAME, STATION_ID, StationConfig, load_config
from kiosk.errors import ConfigError, KioskError
from kiosk.i18n import Translator
from kiosk.operator_pin import hash_pin, valid_pin
from kiosk.packet.keys import (
    PRIVATE_FILE_MODE,
    KeyFileError,
    StationKeyFiles,
    _pkcs8,
    _write_new,
    key_id,
    load_hub_public_key,
    save_hub_public_key,
    save_station_public_key,
    station_public_bytes,
)
from kiosk.provision import protocol
from kiosk.provision.client import HubTrust, PairingFailed, pair
from kiosk.store.durable import fsync_dir
from kiosk.store.sqlite import PROVISIONED_MARKER, SEQUENCE_FLOOR

DEFAULT_DATA_DIR = Path("/var/lib/rekam-kiosk")
MARKER = PROVISIONED_MARKER
STATION_FILE_MODE = 0o640
REGION = re.compile(r"[0-9A-Za-z][0-9A-Za-z ._-]{0,63}")
MAX_FIRST = protocol.MAX_SEQUENCE  # --first-sequence's largest


class ProvisionError(KioskError):
    """Provisioning stopped; nothing was changed unless the message says otherwise.
    ``key`` is the i18n key the screen shows, ``values`` its placeholders."""

    def __init__(self, message: str, key: str = "provision.error.failed", **values: Any) -> None:
        super().__init__(message)
        self.key = key
        self.values = values or {"detail": message}


@dataclass
class Provisioning:
    """What the technician gives: the command's options, the screen's fields."""

    station_id: str
    region: str
    hub_url: str
    technician_pin: str
    operator: str
    operator_pin: str
    pairing_code: str | None = None
    hub_key_file: Path | None = None  # offline: the hub's hub.pub (from a USB stick)
    hub_cert_file: Path | None = None  # offline: the hub's tls.pem
    language: str = "id"
    config_path: Path = DEFAULT_PATH
    data_dir: Path = DEFAULT_DATA_DIR
    force: bool = False
    owner: str | None = None  # the kiosk's user: gets the data folder, and reads the file
    modules: dict[str, dict[str, Any]] | None = None  # None: found on this machine
    dev: Path = Path("/dev")
    # the first enrollment's sequence at least (offline: the number `kiosk-hub dashboard`
    # shows for a re-flashed station); None: as the hub's answer says, else from 1
    first_sequence: int | None = None


@dataclass(frozen=True)
class Provisioned:
    station_id: str
    config_path: Path  # as written: the resolved path, through /etc/rekam-kiosk's symlink
    keys: StationKeyFiles
    station_key_id: str
    hub_key_id: str
    registered: bool  # paired with the hub; False: register it by hand (offline)
    exported_public: Path | None = None  # offline: station.pub copied beside the hub's files
    notes: list[str] = field(default_factory=list)
    sequence_floor: int | None = None  # the first enrollment is numbered one above it


def check(request: Provisioning) -> list[tuple[str, str]]:
    """Every problem with the fields, as (field, i18n key); empty when all is well."""
    problems = []
    if not STATION_ID.fullmatch(request.station_id):
        problems.append(("station_id", "provision.error.station_id"))
    if not REGION.fullmatch(request.region) or request.region != request.region.strip():
        problems.append(("region", "provision.error.region"))
    if not _https_url(request.hub_url.strip()):
        problems.append(("hub_url", "provision.error.hub_url"))
    offline = request.hub_key_file is not None or request.hub_cert_file is not None
    if offline:
        if request.hub_key_file is None or request.hub_cert_file is None:
            problems.append(("pairing_code", "provision.error.hub_files"))
    else:
        try:
            protocol.normalise_code(request.pairing_code or "")
        except ValueError:
            problems.append(("pairing_code", "provision.error.pairing_code"))
    if not valid_pin(request.technician_pin):
        problems.append(("technician_pin", "provision.error.technician_pin"))
    if not OPERATOR_NAME.fullmatch(request.operator):
        problems.append(("operator", "provision.error.operator"))
    if not valid_pin(request.operator_pin):
        problems.append(("operator_pin", "provision.error.operator_pin"))
    elif request.operator_pin == request.technician_pin:
        problems.append(("operator_pin", "provision.error.same_pins"))
    return problems


def _https_url(text: str) -> bool:
    """An https:// address with a host and no ? or # (what kiosk/config.py and sync take)."""
    try:
        parts = urllib.parse.urlsplit(text)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and bool(parts.hostname)
        and not parts.query
        and not parts.fragment
        and not any(char.isspace() for char in text)
    )


def provision(request: Provisioning, progress: Callable[[str], None] | None = None) -> Provisioned:
    """Provision the station (module docstring). Raises ProvisionError in one line."""
    say = progress or (lambda _text: None)
    problems = check(request)
    if problems:
        english = Translator("en")
        raise ProvisionError(
            " ".join(english(key) for _, key in problems), problems[0][1], field=problems[0][0]
        )
    first = request.first_sequence
    if first is not None and (
        not isinstance(first, int) or isinstance(first, bool) or not 1 <= first <= MAX_FIRST
    ):
        raise ProvisionError(f"--first-sequence: a whole number from 1 to {MAX_FIRST}")
    config_path = Path(os.path.realpath(request.config_path))  # /etc/rekam-kiosk -> data part.
    data_dir = Path(os.path.abspath(Path(request.data_dir).expanduser()))
    files = StationKeyFiles.in_data_dir(data_dir)
    if not request.force:
        for path, what in ((config_path, "station file"), (files.station_key, "station key")):
            if path.exists():
                raise ProvisionError(
                    f"{path}: this station has a {what} already; it is provisioned (or was "
                    "begun): give --force to provision it again (a new key, registered anew)"
                )
    modules = request.modules if request.modules is not None else detect_modules(request.dev)
    key = Ed25519PrivateKey.generate()
    public = station_public_bytes(key)
    if request.pairing_code:
        say("pairing")
        try:
            trust = pair(
                request.hub_url.strip(),
                request.station_id,
                request.region,
                request.pairing_code,
                public,
            )
        except PairingFailed as exc:
            if exc.reason in _REFUSALS:
                raise ProvisionError(str(exc), f"provision.error.{exc.reason}") from None
            raise ProvisionError(str(exc)) from None
        registered = True
    else:
        trust = _hub_files(request.hub_key_file, request.hub_cert_file)
        registered = False
    say("writing")
    _make_folders(data_dir, files)
    if request.force:
        _move_old_keys(files)
    _write_new(files.station_key, _pkcs8(key), PRIVATE_FILE_MODE, "private key")
    save_station_public_key(files.station_public, public)
    save_hub_public_key(files.hub_public, trust.hub_key)
    _write_new(files.hub_tls, trust.tls_certificate, 0o644, "certificate")
    text = station_file(request, data_dir, modules)
    write_station_file(config_path, text, _group_of(request.owner))
    exported = None
    notes = []
    if not registered:
        exported = _export_public(request, files)
        notes.append(
            f"register the station at the hub: kiosk-hub register /var/lib/kiosk-hub "
            f"--station {request.station_id} --key {exported or files.station_public}"
        )
    floor = sequence_floor(trust, request.first_sequence)
    _write_marker(data_dir, request, public, trust, registered, floor)
    if request.owner:
        _give_to(data_dir, request.owner, keep=config_path.parent)
    return Provisioned(
        request.station_id,
        config_path,
        files,
        key_id(public),
        key_id(trust.hub_key),
        registered,
        exported,
        notes,
        floor,
    )


def sequence_floor(trust: HubTrust, first_sequence: int | None) -> int | None:
    """The counter's floor for the marker: the hub's last sequence plus the margin
    (paired), or one below ``first_sequence`` (the technician's), whichever is higher;
    None when neither is known (offline without --first-sequence)."""
    floors = []
    if trust.last_sequence is not None:
        floors.append(trust.last_sequence + protocol.SEQUENCE_MARGIN)
    if first_sequence is not None:
        floors.append(first_sequence - 1)
    return max(floors) if floors else None


_REFUSALS = (
    protocol.WRONG_CODE,
    protocol.EXPIRED,
    protocol.USED,
    protocol.NO_CODE,
    protocol.OTHER_REGION,
)


def _hub_files(key_file: Path | None, cert_file: Path | None) -> HubTrust:
    assert key_file is not None and cert_file is not None  # check() saw to it
    try:
        hub_key = load_hub_public_key(key_file)
    except KeyFileError as exc:
        raise ProvisionError(f"--hub-key: {exc}") from None
    try:
        certificate = Path(cert_file).read_bytes()
        x509.load_pem_x509_certificate(certificate)
    except OSError as exc:
        raise ProvisionError(f"--hub-cert: {cert_file}: cannot be read ({exc.strerror})") from None
    except ValueError:
        raise ProvisionError(
            f"--hub-cert: {cert_file}: not a PEM certificate (the hub's tls.pem)"
        ) from None
    return HubTrust(hub_key, certificate)


def _make_folders(data_dir: Path, files: StationKeyFiles) -> None:
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        files.folder.mkdir(mode=0o700, exist_ok=True)
        os.chmod(files.folder, 0o700)
    except OSError as exc:
        raise ProvisionError(f"{data_dir}: cannot be used ({exc.strerror})") from None


def _move_old_keys(files: StationKeyFiles) -> None:
    """--force: the previous keys go to ``keys/replaced-<time>/``, never deleted."""
    old = [
        path
        for path in (files.station_key, files.station_public, files.hub_public, files.hub_tls)
        if path.exists()
    ]
    if not old:
        return
    aside = files.folder / f"replaced-{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(2)}"
    aside.mkdir(mode=0o700)
    for path in old:
        os.rename(path, aside / path.name)
    fsync_dir(files.folder)


def detect_modules(dev: Path = Path("/dev")) -> dict[str, dict[str, Any]]:
    """The real drivers for this machine's modules (docs/station.example.toml): a USB
    camera by its /dev/v4l/by-id name, else the Pi's camera module; the fingerprint
    sensor's serial port by its stable name, else the Pi's UART or the first USB one."""
    by_id = sorted((dev / "v4l" / "by-id").glob("usb-*-video-index0"))
    if by_id:
        name = by_id[0].name.removesuffix("-video-index0")
        camera: dict[str, Any] = {"driver": "v4l2", "device": name}
    elif (dev / "video0").exists() and not _raspberry_pi():
        camera = {"driver": "v4l2", "device": str(dev / "video0")}
    else:
        camera = {"driver": "picamera2"}
    serial = sorted((dev / "serial" / "by-id").glob("*"))
    if serial:
        port = str(serial[0])
    elif (dev / "ttyUSB0").exists() or not (dev / "serial0").exists():
        port = str(dev / "ttyUSB0") if (dev / "ttyUSB0").exists() else str(dev / "serial0")
    else:
        port = str(dev / "serial0")
    return {
        "camera": camera,
        "fingerprint": {"driver": "zhiantec", "port": port, "baudrate": 57600},
        "signature": {"driver": "touch"},
        "indicators": {"driver": "gpio"},
    }


def _raspberry_pi() -> bool:
    with contextlib.suppress(OSError):
        return "Raspberry Pi" in Path("/proc/device-tree/model").read_text(errors="replace")
    return False


def _toml(value: Any) -> str:
    """A TOML value: JSON's strings, numbers and booleans are TOML's too."""
    return json.dumps(value, ensure_ascii=False)


def station_file(request: Provisioning, data_dir: Path, modules: dict[str, dict]) -> str:
    """The station file's text (load_config reads it back)."""
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# Written by `kiosk provision` (rekam-kiosk {__version__}) on {made}.",
        "# docs/station.example.toml explains every key; docs/technician.md the rest.",
        "",
        "[station]",
        f"id = {_toml(request.station_id)}",
        f"region = {_toml(request.region)}",
        f"language = {_toml(request.language)}",
        f"data_dir = {_toml(str(data_dir))}",
    ]
    for kind, table in modules.items():
        lines += ["", f"[modules.{kind}]"]
        lines += [f"{name} = {_toml(value)}" for name, value in table.items()]
    lines += [
        "",
        "[hub]",
        f"url = {_toml(request.hub_url.strip().rstrip('/'))}",
        "",
        "# one line per operator: name = the Argon2id hash `kiosk hash-pin` prints",
        "[operators]",
        f"{request.operator} = {_toml(hash_pin(request.operator_pin))}",
        "",
        "[technician]",
        f"pin_hash = {_toml(hash_pin(request.technician_pin))}",
        "",
    ]
    return "\n".join(lines)


def write_station_file(path: Path, text: str, group: int | None = None) -> None:
    """Write ``path`` atomically: a temporary file in its folder, flushed, renamed,
    the folder flushed; mode 0640 (group ``group`` when given and allowed)."""
    try:
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True)
            os.chmod(path.parent, 0o755)  # the kiosk's user reads the file (by its group)
        temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, STATION_FILE_MODE)
            if group is not None:
                with contextlib.suppress(PermissionError):
                    os.fchown(fd, -1, group)
            data = text.encode("utf-8")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError, UnboundLocalError):
            temp.unlink()
        raise ProvisionError(
            f"{path}: the station file cannot be written ({exc.strerror})"
        ) from None


def _export_public(request: Provisioning, files: StationKeyFiles) -> Path | None:
    """Offline: station.pub copied beside the hub's files (the USB stick) as
    ``<station id>.pub``, to carry back to the hub; None if that folder is read-only."""
    assert request.hub_key_file is not None
    target = Path(request.hub_key_file).parent / f"{request.station_id}.pub"
    try:
        shutil.copyfile(files.station_public, target)
    except OSError:
        return None
    return target


def _write_marker(
    data_dir: Path,
    request: Provisioning,
    public: bytes,
    trust: HubTrust,
    registered: bool,
    floor: int | None,
) -> None:
    marker = {
        "station_id": request.station_id,
        "region": request.region,
        "hub_url": request.hub_url.strip().rstrip("/"),
        "provisioned_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "station_key_id": key_id(public),
        "hub_key_id": key_id(trust.hub_key),
        "registered_by": "pairing" if registered else "hand",
        "software": __version__,
    }
    if trust.last_sequence is not None:
        marker["hub_last_sequence"] = trust.last_sequence
    if floor is not None:
        marker[SEQUENCE_FLOOR] = floor  # kiosk/store/sqlite.py raises its counter to it
    from kiosk.store.durable import write_durably

    write_durably(data_dir / MARKER, (json.dumps(marker, indent=1) + "\n").encode())


def _group_of(owner: str | None) -> int | None:
    if not owner:
        return None
    try:
        return pwd.getpwnam(owner).pw_gid
    except KeyError:
        raise ProvisionError(f"--owner {owner}: no such user on this machine") from None


def _give_to(data_dir: Path, owner: str, keep: Path) -> None:
    """The data folder and everything in it to the kiosk's user (run as root), but for
    the folder ``keep`` (the station file's, on the image inside the data folder):
    the station file stays root's, the kiosk's user reads it by its group."""
    entry = pwd.getpwnam(owner)
    if os.geteuid() != 0:
        if entry.pw_uid == os.geteuid():
            return
        raise ProvisionError(f"--owner {owner}: only root can give the data folder to {owner}")
    for root, folders, names in os.walk(data_dir):
        folders[:] = [name for name in folders if Path(root) / name != keep]
        for name in [*folders, *names]:
            os.chown(Path(root) / name, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
    os.chown(data_dir, entry.pw_uid, entry.pw_gid)


# -- provisioned stations and simulated modules --------------------------------------


def marker_path(data_dir: Path) -> Path:
    return Path(data_dir) / MARKER


def provisioned(data_dir: Path) -> bool:
    """Whether ``kiosk provision`` provisioned the station of this data folder."""
    return marker_path(data_dir).is_file()


def provisioned_station(config_path: Path) -> StationConfig | None:
    """The station file at ``config_path`` if it is a provisioned station's, else None
    (no file, a file that does not load, or a data folder without the marker)."""
    try:
        config = load_config(config_path)
    except ConfigError:
        return None
    return config if provisioned(config.data_dir) else None


def refuse_simulation(
    config: StationConfig, *, simulate: bool, allowed: bool, station_file: Path
) -> None:
    """Raise ProvisionError when simulated modules would run on a provisioned station
    and the technician did not say so (``--allow-simulated``).

    ``config`` is the station about to run (the simulation station with
    ``simulate``); ``station_file`` is the machine's own station file, whose data
    folder says whether this machine is provisioned.
    """
    if allowed:
        return
    if simulate:
        fakes = "every module (--simulate)"
        station = provisioned_station(station_file)
    else:
        kinds = [str(kind) for kind, module in config.modules.items() if module.driver == "fake"]
        fakes = f'simulated {", ".join(kinds)} (driver "fake")'
        station = config if kinds and provisioned(config.data_dir) else None
    if station is None:
        return
    raise ProvisionError(
        f"{station.path}: station {station.station_id} is provisioned "
        f"({marker_path(station.data_dir)}); it runs {fakes} only when the technician "
        "says so: add --allow-simulated"
    )
