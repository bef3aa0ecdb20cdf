"""``kiosk provision``: first boot of a station, from the command line or its screen.

    kiosk provision --station-id ID --region R --hub URL --pairing-code CODE --operator NAME
    kiosk provision ... --hub-key /media/usb/hub.pub --hub-cert /media/usb/tls.pem \
        [--first-sequence N]      (a re-flashed station: the number kiosk-hub dashboard shows)
    kiosk provision --screen          (the touchscreen form; kiosk-firstboot.service)

The technician's PIN and the first operator's are asked on the terminal, each
twice and without echo; in a script they come on stdin, one a line (technician
first), with ``--pins-stdin`` or whenever stdin is not a terminal.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import warnings
from pathlib import Path

from kiosk.config import DEFAULT_PATH
from kiosk.i18n import LANGUAGES
from kiosk.provision.station import (
    DEFAULT_DATA_DIR,
    MAX_FIRST,
    ProvisionError,
    Provisioning,
    provision,
)

REQUIRED = ("station_id", "region", "hub")


def _read_pins(from_stdin: bool) -> tuple[str, str]:
    """The technician's PIN and the operator's: two lines of stdin, or asked twice each."""
    if sys.stdin is None:
        raise ProvisionError("provision: no PINs: stdin is closed")
    if from_stdin or not sys.stdin.isatty():
        technician = sys.stdin.readline().strip()
        operator = sys.stdin.readline().strip()
        return technician, operator
    return _ask("Technician PIN (4 to 8 digits): "), _ask("First operator's PIN (4 to 8 digits): ")


def _ask(prompt: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("error", getpass.GetPassWarning)
        try:
            pin = getpass.getpass(prompt)
            again = getpass.getpass("The same PIN again: ")
        except getpass.GetPassWarning:
            raise ProvisionError(
                "provision: cannot hide the PIN on this terminal; pipe the PINs in instead"
            ) from None
        except (EOFError, KeyboardInterrupt):
            raise ProvisionError("provision: cancelled; nothing was changed") from None
    if again != pin:
        raise ProvisionError("provision: the two PINs differ; nothing was changed")
    return pin


def _provision(args: argparse.Namespace) -> int:
    if args.screen:
        # the kiosk's own window settings (display size, Escape ignored, Python logging,
        # no SDL signal handlers) before Kivy starts; SDL's clipboard, no xclip on a station
        os.environ.setdefault("KIVY_CLIPBOARD", "sdl2")
        import kiosk.app  # noqa: F401
        from kiosk.screens.provision.app import run_provision_screen

        return run_provision_screen(args)
    missing = [f"--{name.replace('_', '-')}" for name in REQUIRED if not getattr(args, name)]
    if not args.operator:
        missing.append("--operator")
    if not (args.pairing_code or args.hub_key or args.hub_cert):
        missing.append("--pairing-code (or --hub-key and --hub-cert)")
    if missing:
        raise ProvisionError(f"provision: missing {', '.join(missing)}")
    if args.pairing_code and (args.hub_key or args.hub_cert):
        raise ProvisionError(
            "provision: give either --pairing-code or --hub-key and --hub-cert, not both"
        )
    technician, operator = _read_pins(args.pins_stdin)
    request = Provisioning(
        station_id=args.station_id,
        region=args.region,
        hub_url=args.hub,
        technician_pin=technician,
        operator=args.operator,
        operator_pin=operator,
        pairing_code=args.pairing_code,
        hub_key_file=args.hub_key,
        hub_cert_file=args.hub_cert,
        language=args.language,
        config_path=args.config,
        data_dir=args.data_dir,
        force=args.force,
        owner=args.owner,
        first_sequence=args.first_sequence,
    )
    done = provision(request, lambda step: print(f"kiosk: {step}...", file=sys.stderr))
    print(f"station {done.station_id} provisioned: {done.config_path}")
    print(f"  station key {done.station_key_id} in {done.keys.station_key}")
    print(f"  hub key {done.hub_key_id} and its TLS certificate in {done.keys.folder}")
    if done.sequence_floor is not None:
        print(
            f"  enrollments numbered from {done.sequence_floor + 1} on "
            "(none the hub already holds for this station)"
        )
    if done.registered:
        print("  registered at the hub by the pairing code")
    else:
        if done.exported_public:
            print(f"  station.pub copied to {done.exported_public}")
        for note in done.notes:
            print(f"  {note}")
    return 0


def _first_sequence(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_FIRST:
        raise argparse.ArgumentTypeError(f"a whole number from 1 to {MAX_FIRST}, not {text!r}")
    return value


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``provision`` to the ``kiosk`` command's subcommands."""
    command = commands.add_parser(
        "provision",
        help="provision this station: keys, station file, pairing with the hub",
        description="Makes the station's keys, pairs the station with its district hub by "
        "the one-time code `kiosk-hub pair` printed (or takes the hub's hub.pub and tls.pem "
        "from files), and writes the station file with this machine's modules and the "
        "technician's and first operator's PIN hashes. Nothing is written when the hub "
        "refuses the code.",
    )
    command.add_argument("--station-id", help="the station id, e.g. 3201-KCM-CIBINONG-01")
    command.add_argument("--region", help="the region code, e.g. 3201")
    command.add_argument("--hub", metavar="URL", help="the hub, e.g. https://10.0.0.2:8443")
    command.add_argument("--pairing-code", metavar="CODE", help="printed by `kiosk-hub pair`")
    command.add_argument("--hub-key", type=Path, help="offline: the hub's hub.pub")
    command.add_argument("--hub-cert", type=Path, help="offline: the hub's tls.pem")
    command.add_argument(
        "--first-sequence",
        type=_first_sequence,
        metavar="N",
        help="a re-flashed station provisioned offline: number its enrollments from N on "
        "(the number `kiosk-hub dashboard` shows for it); paired, the hub's answer does this",
    )
    command.add_argument("--operator", metavar="NAME", help="the first operator's name")
    command.add_argument(
        "--pins-stdin",
        "--technician-pin-stdin",
        action="store_true",
        help="read the technician's PIN then the operator's from stdin, one a line",
    )
    command.add_argument(
        "--language", choices=LANGUAGES, default="id", help="the welcome screen's language"
    )
    command.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_PATH,
        help=f"the station file to write (default {DEFAULT_PATH})",
    )
    command.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help=f"the station's data folder (default {DEFAULT_DATA_DIR})",
    )
    command.add_argument(
        "--owner", metavar="USER", help="give the data folder to this user (the kiosk's)"
    )
    command.add_argument(
        "--force", action="store_true", help="provision again: a new station key (old kept)"
    )
    command.add_argument(
        "--screen", action="store_true", help="the touchscreen form instead (first boot)"
    )
    command.add_argument(
        "--fullscreen", action="store_true", help="with --screen: fill the display"
    )
    command.set_defaults(handler=_provision)
