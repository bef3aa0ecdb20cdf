"""The `kiosk keys` and `kiosk packet` commands: make the sealing keys, and look
into a sealed packet without (inspect) or with (verify) the hub's key.

    kiosk keys station /etc/rekam-kiosk/station.key   # also writes station.key.pub
    kiosk keys hub /srv/hub/hub.key                     # also writes hub.key.pub
    kiosk packet inspect FILE
    kiosk packet verify FILE --hub-key hub.key --station 3201-KCM-01=station.key.pub
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kiosk.errors import KioskError
from kiosk.packet.keys import (
    generate_hub_key,
    generate_station_key,
    key_id,
    load_hub_private_key,
    load_station_public_key,
    save_hub_public_key,
    save_station_public_key,
    station_public_bytes,
)
from kiosk.packet.seal import PacketRejected, inspect, open_sealed


def public_path(private: Path) -> Path:
    """Where a private key's public half is written: beside it, ``.pub`` added."""
    return private.with_name(private.name + ".pub")


def make_keys(args: argparse.Namespace) -> int:
    """Make a key pair: the private file (0600, never overwritten) and its ``.pub``."""
    private, public = args.path, public_path(args.path)
    if args.role == "station":
        key = generate_station_key(private)
        public_bytes = station_public_bytes(key)
        save_station_public_key(public, public_bytes)
        use = "register it at the district hub (the station's public key)"
    else:
        hub = generate_hub_key(private)
        public_bytes = hub.public_bytes()
        save_hub_public_key(public, public_bytes)
        use = "install it on every station of the district (the hub's public key)"
    print(f"{args.role} key {key_id(public_bytes)}: private key in {private} (keep it there)")
    print(f"public key in {public}: {use}")
    return 0


def inspect_packet(args: argparse.Namespace) -> int:
    """Print a sealed packet's envelope header: who sealed it, for whom, when."""
    try:
        header = inspect(_read(args.file))
    except PacketRejected as exc:
        print(f"{args.file}: not a readable sealed packet: {exc}")
        return 1
    print(json.dumps(header, indent=2, sort_keys=True))
    return 0


def verify_packet(args: argparse.Namespace) -> int:
    """Open a sealed packet with the hub's key and check every signature and hash;
    prints what it holds (never the NIK or an image), or exactly what is wrong."""
    hub_key = load_hub_private_key(args.hub_key)
    stations = {station: load_station_public_key(path) for station, path in args.station}
    try:
        packet = open_sealed(
            _read(args.file), hub_private_key=hub_key, station_public_keys=stations
        )
    except PacketRejected as exc:
        print(f"{args.file}: REJECTED: {exc}")
        return 1
    manifest = packet.manifest
    fingers = sum(1 for finger in manifest.get("fingers", []) if finger.get("image"))
    print(
        f"{args.file}: OK: enrollment {packet.enrollment_id} from station "
        f"{manifest['station']['id']}, packet schema {manifest['schema']}, "
        f"{len(packet.files)} files ({fingers} fingerprints), signature and hashes verified"
    )
    return 0


def _station_key(text: str) -> tuple[str, Path]:
    station, separator, path = text.partition("=")
    if not separator or not station or not path:
        raise argparse.ArgumentTypeError(f"expected STATION_ID=PUBLIC_KEY_FILE, got {text!r}")
    return station, Path(path)


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise KioskError(f"{path}: cannot be read ({exc.strerror})") from exc


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add `keys` and `packet` to the `kiosk` command's subcommands."""
    keys = commands.add_parser(
        "keys",
        help="make the sealing keys (a station's, or the district hub's)",
        description="Writes a new private key (mode 0600; an existing file is never "
        "overwritten) and its public half beside it, with .pub added.",
    )
    keys.add_argument("role", choices=["station", "hub"], help="whose key")
    keys.add_argument("path", type=Path, help="the private key file to create")
    keys.set_defaults(handler=make_keys)

    packet = commands.add_parser("packet", help="look into a sealed packet")
    actions = packet.add_subparsers(dest="action", required=True)
    look = actions.add_parser("inspect", help="print its envelope (needs no key)")
    look.add_argument("file", type=Path)
    look.set_defaults(handler=inspect_packet)
    check = actions.add_parser(
        "verify", help="open it with the hub's key: signature, hashes and schema"
    )
    check.add_argument("file", type=Path)
    check.add_argument("--hub-key", type=Path, required=True, help="the hub's private key")
    check.add_argument(
        "--station",
        type=_station_key,
        action="append",
        required=True,
        metavar="ID=FILE",
        help="a registered station: its id and public key file (.pub); repeat for several",
    )
    check.set_defaults(handler=verify_packet)
