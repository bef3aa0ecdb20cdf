"""The `kiosk` command."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
import time
import warnings
from pathlib import Path

from kiosk import __version__
from kiosk.config import (
    DEFAULT_PATH,
    OPERATOR_NAME,
    SIMULATION_PATH,
    StationConfig,
    add_config_option,
    load_config,
)
from kiosk.errors import DriverError, KioskError
from kiosk.health.doctor import check_station, doctor, kiosk_is_running, station_factories
from kiosk.health.inventory import INVENTORY_NAME, read_inventory
from kiosk.health.station import StationModules
from kiosk.operator_pin import hash_pin, valid_pin
from kiosk.packet.commands import add_commands as add_packet_commands
from kiosk.packet.keys import KeyFileError, StationKeyFiles
from kiosk.packet.seal import Sealer
from kiosk.provision.commands import add_commands as add_provision_commands
from kiosk.provision.station import refuse_simulation
from kiosk.quality.commands import add_commands as add_quality_commands
from kiosk.store.export import export_packets
from kiosk.store.preflight import check_data_dir
from kiosk.store.sqlite import EnrollmentStore
from kiosk.sync.commands import add_commands as add_sync_commands


def _run(args: argparse.Namespace) -> int:
    path = SIMULATION_PATH if args.simulate else args.config
    config = load_config(path)
    # a provisioned station runs fakes only when the technician says so
    refuse_simulation(
        config, simulate=args.simulate, allowed=args.allow_simulated, station_file=args.config
    )
    # Constructing (not opening) the modules finds unknown drivers and bad options
    # now, as a one-line error, before Kivy opens a window.
    modules = StationModules.from_config(config, simulate=args.simulate)
    # The same for the data folder (missing, read-only, full) and the store (damaged,
    # from a newer kiosk): found here, not behind the welcome screen.
    check_data_dir(config.data_dir)
    store = EnrollmentStore(config.data_dir, _sealer(config, args.simulate))
    if not args.verbose:
        logging.getLogger("kiosk").setLevel(logging.INFO)  # the journal keeps each save
    try:
        from kiosk.app import run_kiosk  # Kivy is imported only for the window
    except BaseException:
        store.close()
        raise
    return run_kiosk(config, modules, store, fullscreen=args.fullscreen, simulate=args.simulate)


def _sealer(config: StationConfig, simulate: bool) -> Sealer:
    """The station's keys, or a one-line error saying which file is missing and why."""
    if simulate:
        from kiosk.simulate import simulation_sealer

        return simulation_sealer(config.data_dir, config.station_id)
    files = StationKeyFiles.in_data_dir(config.data_dir)
    for path, what in ((files.station_key, "station key"), (files.hub_public, "hub's key")):
        if not path.exists():
            raise KeyFileError(
                f"{path}: no {what}; this station is not provisioned yet (docs/technician.md: "
                "`kiosk keys station` makes the station key, the hub's hub.pub goes beside it)"
            )
    return Sealer.from_key_files(files, config.station_id)


def _export(args: argparse.Namespace) -> int:
    if args.data_dir is not None:
        data_dir, label = args.data_dir, None
    else:
        config = load_config(args.config)
        data_dir, label = config.data_dir, config.station_id
    export = export_packets(data_dir, args.to, label=label, everything=args.all)
    for warning in export.warnings:
        print(f"kiosk: warning: {warning}", file=sys.stderr)
    if export.acknowledged:
        print(f"{export.acknowledged} packets diterima, by the hub's receipt on the stick")
    count = export.exported
    print(f"exported {count} sealed packet{'' if count == 1 else 's'} to {export.folder}")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from kiosk.simulate import simulate

    report = simulate(args.citizens, data_dir=args.data_dir, seed=args.seed)
    summary = report.as_dict()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"completed {report.completed} of {args.citizens} enrollments")
        print("median software time per step:")
        for step, seconds in summary["step_median_seconds"].items():
            print(f"  {step:<13} {seconds * 1000:8.1f} ms")
        if report.citizen_seconds:
            print(f"median per citizen:  {summary['citizen_median_seconds'] * 1000:8.1f} ms")
            print(f"slowest citizen:     {summary['citizen_max_seconds'] * 1000:8.1f} ms")
    return 0 if report.completed == args.citizens else 1


def _station_config(args: argparse.Namespace) -> StationConfig:
    return load_config(SIMULATION_PATH if args.simulate else args.config)


def _doctor(args: argparse.Namespace) -> int:
    report = doctor(_station_config(args), simulate=args.simulate)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print("\n".join(report.lines()))
    return 0 if report.ok else 1


def _selftest(args: argparse.Namespace) -> int:
    config = _station_config(args)
    try:
        running = kiosk_is_running(read_inventory(config.data_dir / INVENTORY_NAME), time.time())
    except (OSError, ValueError):
        running = False
    if running:
        print(
            "kiosk: warning: the kiosk is running on this station; testing the modules it "
            "holds may disturb it (stop it first for a clean test)",
            file=sys.stderr,
        )
    checks = check_station(station_factories(config, args.simulate))
    ok = all(check.passed for check in checks if check.required)
    if args.json:
        modules = []
        for check in checks:
            identity = check.info.as_dict() if check.info else {"kind": str(check.kind)}
            modules.append(
                {
                    **identity,
                    "passed": check.passed,
                    "required": check.required,
                    "duration_s": round(check.duration_s, 3),
                    "detail": check.detail,
                }
            )
        print(json.dumps({"ok": ok, "modules": modules}, indent=2))
        return 0 if ok else 1
    for check in checks:
        verdict = "PASS" if check.passed else "FAIL" if check.required else "WARN"
        info = check.info
        unit = f"{info.driver} {info.model} {info.serial}" if info else "(not identified)"
        print(f"{verdict}  {check.kind:<12} {unit:<40} {check.duration_s:6.2f} s  {check.detail}")
    optional = [check.kind for check in checks if not check.required and not check.passed]
    if optional:
        names = ", ".join(str(kind) for kind in optional)
        print(f"kiosk: warning: {names} failed; the station can enroll without", file=sys.stderr)
    return 0 if ok else 1


def _emulate(args: argparse.Namespace) -> int:
    try:  # written separately; imported only when asked for
        from kiosk.drivers.fingerprint import emulator
    except ImportError as exc:
        raise DriverError(f"emulate {args.device}: the emulator cannot be loaded ({exc})") from None
    code = emulator.main(list(args.args))
    return 0 if code is None else int(code)


class _PinRefused(KioskError):
    """``kiosk hash-pin`` got no PIN, or not a usable one."""


def _read_pin() -> str:
    """The PIN typed twice without echo on a terminal, or the first line of stdin
    (``printf '%s\\n' "$PIN" | kiosk hash-pin`` in a provisioning script)."""
    if sys.stdin is None:  # started with stdin closed
        raise _PinRefused("hash-pin: no PIN: stdin is closed")
    if not sys.stdin.isatty():
        return sys.stdin.readline().strip()
    with warnings.catch_warnings():
        # getpass falls back to echoing the PIN when it cannot turn echo off; refuse instead
        warnings.simplefilter("error", getpass.GetPassWarning)
        try:
            pin = getpass.getpass("PIN (4 to 8 digits): ")
            if not valid_pin(pin):
                return pin  # refused by the caller, without asking twice
            again = getpass.getpass("The same PIN again: ")
        except getpass.GetPassWarning:
            raise _PinRefused(
                "hash-pin: cannot hide the PIN on this terminal; pipe it in instead"
            ) from None
        except EOFError:
            raise _PinRefused("hash-pin: no PIN was typed; nothing was printed") from None
        except KeyboardInterrupt:
            raise _PinRefused("hash-pin: cancelled; nothing was printed") from None
    if again != pin:
        raise _PinRefused("hash-pin: the two PINs differ; nothing was printed")
    return pin


def _hash_pin(args: argparse.Namespace) -> int:
    pin = _read_pin()
    if not valid_pin(pin):  # the message never repeats what was typed
        raise _PinRefused(
            "hash-pin: a PIN is 4 to 8 digits (0-9), nothing else; nothing was printed"
        )
    key, table = (args.operator, "[operators]") if args.operator else ("pin_hash", "[technician]")
    print(f'{key} = "{hash_pin(pin)}"')
    print(
        f"kiosk: paste this line under {table} in the station file "
        f"($KIOSK_CONFIG or {DEFAULT_PATH}), then restart the kiosk",
        file=sys.stderr,
    )
    return 0


def _operator_name(text: str) -> str:
    if not OPERATOR_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            "letters, digits, '_' or '-', starting with a letter (at most 32)"
        )
    return text


def _citizen_count(text: str) -> int:
    count = int(text)
    if count < 1:
        raise argparse.ArgumentTypeError(f"at least 1 citizen, got {count}")
    return count


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="kiosk", description="Rekam kiosk: self-service e-KTP recording station."
    )
    top.add_argument("--version", action="version", version=f"rekam-kiosk {__version__}")
    top.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    commands = top.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="start the kiosk window")
    add_config_option(run)
    run.add_argument(
        "--simulate", action="store_true", help="use simulated modules and the simulation station"
    )
    run.add_argument("--fullscreen", action="store_true", help="fill the screen (the station)")
    run.add_argument(
        "--allow-simulated",
        action="store_true",
        help="let a provisioned station run simulated modules (--simulate, a fake driver)",
    )
    run.set_defaults(handler=_run)

    export = commands.add_parser(
        "export",
        help="copy the sealed packets waiting for the hub to a USB stick (safe while running)",
    )
    export.add_argument(
        "--to", type=Path, required=True, help="an existing folder, e.g. the USB stick's"
    )
    export.add_argument(
        "--all", action="store_true", help="also the packets the hub already acknowledged"
    )
    source = export.add_mutually_exclusive_group()
    add_config_option(source, "station file naming the data folder")
    source.add_argument("--data-dir", type=Path, help="the data folder itself")
    export.set_defaults(handler=_export)

    sim = commands.add_parser("simulate", help="run enrollments headless and time them")
    sim.add_argument(
        "--citizens", type=_citizen_count, default=20, help="how many enrollments (default 20)"
    )
    sim.add_argument("--json", action="store_true", help="print one JSON object")
    sim.add_argument("--data-dir", type=Path, help="keep the store here (default: a temp dir)")
    sim.add_argument("--seed", type=int, default=1, help="seed for the simulated citizens")
    sim.set_defaults(handler=_simulate)

    pin = commands.add_parser(
        "hash-pin",
        help="print the station file line for an operator's or the technician's PIN",
        description="Reads the PIN (4 to 8 digits) twice without echo, or one line from stdin "
        "when it is not a terminal, and prints the line to paste in the station file: "
        'NAME = "$argon2id$..." under [operators] (--operator NAME), or '
        'pin_hash = "$argon2id$..." under [technician] (--technician). '
        "The PIN itself is never printed or stored.",
    )
    whose = pin.add_mutually_exclusive_group(required=True)
    whose.add_argument("--operator", type=_operator_name, metavar="NAME", help="an operator's PIN")
    whose.add_argument("--technician", action="store_true", help="the technician's PIN")
    pin.set_defaults(handler=_hash_pin)

    for name, handler, summary in (
        ("doctor", _doctor, "show each module's status and the station's module inventory"),
        ("selftest", _selftest, "open every module and run its self-test"),
    ):
        command = commands.add_parser(name, help=summary)
        add_config_option(command)
        command.add_argument(
            "--simulate", action="store_true", help="the simulation station and its fakes"
        )
        command.add_argument("--json", action="store_true", help="print one JSON object")
        command.set_defaults(handler=handler)

    emulate = commands.add_parser(
        "emulate",
        help="run a module emulator (for tests and training)",
        description="Runs a module emulator; everything after the module's name is its own "
        "arguments (kiosk emulate fingerprint --help).",
    )
    emulate.add_argument("device", choices=["fingerprint"], help="the module to emulate")
    emulate.add_argument("args", nargs=argparse.REMAINDER, help="the emulator's arguments")
    emulate.set_defaults(handler=_emulate)
    add_packet_commands(commands)
    add_quality_commands(commands)
    add_sync_commands(commands)
    add_provision_commands(commands)
    return top


def configure_logging(verbose: bool) -> None:
    """One handler on the root logger, writing to stderr (the journal under systemd)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        return args.handler(args)
    except KioskError as exc:
        print(f"kiosk: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
