"""``kiosk-hub``: make a hub's data folder, register stations, serve, import, look.

    kiosk-hub init DIR [--simulation] [--host NAME ...]
    kiosk-hub register DIR --station ID --key station.pub
    kiosk-hub pair --station ID [--region R] [--hours 24] [--data-dir DIR]
    kiosk-hub serve --data-dir DIR [--host 127.0.0.1] [--port 8443]
                    [--database postgresql://...] [--blobs s3://bucket?endpoint=...]
    kiosk-hub import DIR --data-dir HUBDIR     (every *.rekam under DIR, e.g. a USB stick)
    kiosk-hub dashboard --data-dir DIR [--json]

Every failure the operator can fix is one line on stderr and exit status 2;
``import`` exits 1 when any packet was rejected.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import socket
import ssl
import sys
import urllib.parse
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from hub import layout
from hub.storage import StorageError
from kiosk.errors import KioskError
from kiosk.packet.keys import key_id, load_station_public_key
from kiosk.packet.receipt import make_receipt, receipt_name
from kiosk.store.durable import write_durably

DEFAULT_DATA_DIR = Path("/var/lib/kiosk-hub")
DEFAULT_PORT = 8443


class CommandError(Exception):
    """A failure to report in one line."""


def _open_hub(args: argparse.Namespace):
    from hub.service import Hub

    try:
        return Hub.open(args.data_dir, database=args.database, blobs=args.blobs)
    except FileNotFoundError as exc:
        raise CommandError(str(exc)) from None
    except (KioskError, StorageError) as exc:
        raise CommandError(f"{exc}") from None
    except OSError as exc:
        raise CommandError(f"{args.data_dir}: {exc.strerror or exc}") from None


def _init(args: argparse.Namespace) -> int:
    try:
        layout.init_hub(
            args.dir, simulation=args.simulation, hosts=args.host or layout.DEFAULT_HOSTS
        )
    except (KioskError, ValueError, OSError) as exc:
        raise CommandError(str(exc)) from None
    print(f"hub data folder {args.dir} ready{' (SIMULATION)' if args.simulation else ''}")
    print(f"  copy to each station: {layout.hub_public_key_path(args.dir)} (hub key)")
    print(f"                        {layout.tls_certificate_path(args.dir)} (TLS certificate)")
    return 0


def _register(args: argparse.Namespace) -> int:
    if not args.dir.is_dir():
        raise CommandError(f"{args.dir}: no hub data folder; make one with `kiosk-hub init`")
    try:
        public = load_station_public_key(args.key)
        target = layout.add_station(args.dir, args.station, public)
    except (KioskError, ValueError, OSError) as exc:
        raise CommandError(str(exc)) from None
    print(f"station {args.station} registered (key {key_id(public)}) in {target}")
    print("  a running hub takes it at the station's first request")
    return 0


def _pair(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from hub.pairing import make_code

    if not 0 < args.hours <= 24 * 14:
        raise CommandError("--hours: between 1 and 336 (two weeks)")
    try:
        code, expires = make_code(
            args.data_dir, args.station, region=args.region, valid=timedelta(hours=args.hours)
        )
    except (ValueError, OSError) as exc:
        raise CommandError(str(exc)) from None
    region = f" in region {args.region}" if args.region else ""
    print(f"pairing code for station {args.station}{region}: {code}")
    print(
        f"  valid once, until {expires:%Y-%m-%d %H:%M} UTC; on the station: kiosk provision "
        f"--station-id {args.station} --pairing-code {code} (or the provisioning screen)"
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from hub.app import create_app

    hub = _open_hub(args)
    certificate = layout.tls_certificate_path(args.data_dir)
    tls_key = layout.tls_key_path(args.data_dir)
    try:
        for path in (certificate, tls_key):
            if not path.is_file():
                raise CommandError(f"{path}: missing; run `kiosk-hub init {args.data_dir}`")
        _check_tls(certificate, tls_key, args.data_dir)
        sock = listening_socket(args.host, args.port)
        marker = "SIMULATION " if hub.simulation else ""
        logging.basicConfig(
            level=logging.INFO,
            format=f"%(asctime)s {marker}%(levelname)s %(name)s: %(message)s",
        )
        if args.database and not args.blobs:
            logging.getLogger("hub").warning(
                "a shared --database with this replica's own blobs: an upload begun here "
                "cannot resume on another replica; give every replica the same --blobs"
            )
        if hub.simulation:
            logging.getLogger("hub").warning(
                "SIMULATION hub: simulated stations only, never real citizens' data"
            )
        print(
            f"kiosk-hub: {marker}serving https://{args.host}:{args.port}/ "
            f"(data {args.data_dir}, index {_redacted(args.database) or 'embedded'}, "
            f"blobs {_redacted(args.blobs) or 'embedded'})",
            flush=True,
        )
        config = uvicorn.Config(
            create_app(hub),
            ssl_certfile=str(certificate),
            ssl_keyfile=str(tls_key),
            log_config=None,
            timeout_graceful_shutdown=10,
        )
        try:
            uvicorn.Server(config).run(sockets=[sock])
        except Exception as exc:  # an unreadable certificate surfaces here as ssl.SSLError
            raise CommandError(f"the hub could not start: {exc}") from None
    finally:
        hub.close()
    return 0


def _redacted(url: str | None) -> str | None:
    """``url`` with any password in it replaced by ***, for printing."""
    if not url:
        return url
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    where = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=f"{parts.username}:***@{where}").geturl()


def _check_tls(certificate: Path, key: Path, data_dir: Path) -> None:
    """Load the TLS pair once here, so a damaged one is one clear line, not an SSL trace."""
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certificate, key)
    except (ssl.SSLError, OSError) as exc:
        raise CommandError(
            f"{certificate} and {key} are not a usable certificate and key "
            f"({getattr(exc, 'reason', None) or exc.strerror or exc}); delete both, run "
            f"`kiosk-hub init {data_dir}` and give the new certificate to every station"
        ) from None


def listening_socket(host: str, port: int) -> socket.socket:
    """The hub's listening socket (`serve`'s, and the tests' in-process hubs'), bound
    here so a busy port is one clear line."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it. Without it a TLS answer's body waits for the
        # station's delayed ACK of its headers (Nagle): 40 ms on every request.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CommandError(
                f"port {port} on {host} is in use (is another hub running?); "
                "stop it or choose --port"
            ) from None
        raise CommandError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    return sock


def _import(args: argparse.Namespace) -> int:
    from hub.service import HubError

    if not args.dir.is_dir():
        raise CommandError(f"{args.dir}: not a folder; mount the USB stick and give its folder")
    files = sorted(
        path
        for path in args.dir.rglob("*.rekam")
        if path.is_file() and not any(part.endswith(".partial") for part in path.parts)
    )
    if not files:
        raise CommandError(f"{args.dir}: no *.rekam packet here (kiosk export writes them)")
    hub = _open_hub(args)
    rejected = 0
    held: dict[str, dict[str, str]] = {}  # station -> enrollment -> SHA-256, for receipts
    try:
        for path in files:
            try:
                verdict = hub.submit(path.read_bytes(), source=path.name)
            except (HubError, OSError) as exc:
                rejected += 1
                print(f"{path.name}: refused: {exc}")
                continue
            if verdict.accepted:
                print(f"{path.name}: accepted ({verdict.enrollment_id})")
                held.setdefault(verdict.station_id, {})[verdict.enrollment_id] = verdict.sha256
            else:
                rejected += 1
                print(f"{path.name}: rejected: {verdict.reason} ({verdict.detail})")
    finally:
        hub.close()
    print(f"{len(files) - rejected} of {len(files)} accepted")
    _write_receipts(args.dir, args.data_dir, held)
    return 1 if rejected else 0


def _write_receipts(folder: Path, data_dir: Path, held: dict[str, dict[str, str]]) -> None:
    """A signed receipt per station on the stick: the kiosk's next export marks those
    packets acknowledged (kiosk/packet/receipt.py)."""
    if not held:
        return
    try:
        key = serialization.load_pem_private_key(
            layout.tls_key_path(data_dir).read_bytes(), password=None
        )
        for station_id, packets in sorted(held.items()):
            made_at = datetime.now(UTC)
            path = folder / receipt_name(station_id, made_at)
            write_durably(path, make_receipt(station_id, packets, key, made_at))
            print(f"receipt for {station_id}: {len(packets)} packets, {path}")
    except (OSError, ValueError, TypeError) as exc:
        raise CommandError(
            f"{folder}: the packets are imported, but no receipt was written ({exc}); "
            "the station keeps them until it hears from the hub"
        ) from None


def _dashboard(args: argparse.Namespace) -> int:
    hub = _open_hub(args)
    try:
        data = hub.dashboard()
    finally:
        hub.close()
    if args.json:
        print(json.dumps(data, indent=1, ensure_ascii=False))
        return 0
    if data["simulation"]:
        print("*** SIMULATION: simulated stations only ***")
    totals = data["totals"]
    print(
        f"{totals['stations']} stations ({totals['silent']} silent), "
        f"{totals['accepted']} packets accepted, {totals['rejected']} rejected, "
        f"{totals['uploads_in_progress']} uploads under way"
    )
    for row in data["stations"]:
        backlog = ", ".join(f"{state} {count}" for state, count in row["backlog"].items())
        down = [m for m in row["modules"] if m["status"].lower() not in ("up", "ok", "starting")]
        print(
            f"  {row['station_id']}: last seen {row['last_seen'] or 'never'}"
            f"{' (SILENT)' if row['silent'] else ''}; accepted {row['accepted']}, "
            f"rejected {row['rejected']}; backlog {backlog or '-'}; "
            f"modules {len(row['modules'])}, down {len(down)}; "
            f"last sequence {row['last_sequence']} (re-flashed offline: "
            f"--first-sequence {row['first_sequence_after_reflash']})"
        )
    return 0


def _data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help=f"the hub's data folder (default {DEFAULT_DATA_DIR})",
    )
    parser.add_argument(
        "--database",
        metavar="URL",
        help="postgresql://... for an index shared by several hubs (default: in the folder)",
    )
    parser.add_argument(
        "--blobs",
        metavar="URL",
        help="s3://bucket?endpoint=... for packets in object storage (default: in the folder)",
    )


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="kiosk-hub", description="The Rekam kiosk district hub.")
    commands = top.add_subparsers(dest="command", required=True)

    init = commands.add_parser("init", help="make (or complete) a hub data folder")
    init.add_argument("dir", type=Path)
    init.add_argument("--simulation", action="store_true", help="a hub for simulated stations only")
    init.add_argument(
        "--host",
        action="append",
        help="a name or address stations reach the hub by, for its TLS certificate "
        "(repeatable; default localhost and 127.0.0.1)",
    )
    init.set_defaults(handler=_init)

    register = commands.add_parser("register", help="register a station's public key")
    register.add_argument("dir", type=Path)
    register.add_argument("--station", required=True, help="the station id (station.id)")
    register.add_argument(
        "--key", required=True, type=Path, help="the station's public key (kiosk keys station)"
    )
    register.set_defaults(handler=_register)

    pair = commands.add_parser(
        "pair",
        help="print a one-time pairing code for a station (kiosk provision --pairing-code)",
    )
    pair.add_argument("--station", required=True, help="the station id (station.id)")
    pair.add_argument("--region", help="the station's region; another region is refused")
    pair.add_argument("--hours", type=int, default=24, help="how long it is valid (default 24)")
    pair.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help=f"the hub's data folder (default {DEFAULT_DATA_DIR})",
    )
    pair.set_defaults(handler=_pair)

    serve = commands.add_parser("serve", help="serve stations over HTTPS")
    _data_options(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.set_defaults(handler=_serve)

    imports = commands.add_parser(
        "import", help="take every *.rekam packet under a folder (a USB stick)"
    )
    imports.add_argument("dir", type=Path)
    _data_options(imports)
    imports.set_defaults(handler=_import)

    dashboard = commands.add_parser("dashboard", help="stations, backlog and modules")
    _data_options(dashboard)
    dashboard.add_argument("--json", action="store_true", help="the dashboard's JSON")
    dashboard.set_defaults(handler=_dashboard)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.handler(args)
    except CommandError as exc:
        print(f"kiosk-hub: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
