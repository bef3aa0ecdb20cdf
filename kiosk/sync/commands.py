"""The `kiosk sync` command: send the sealed packets waiting on this kiosk to the hub.

    kiosk sync                                  # the station file names data folder and hub
    kiosk sync --config /etc/rekam-kiosk/station.toml --forever   # the sync service
    kiosk sync --data-dir sim --hub https://127.0.0.1:8443         # a simulation

Once: sends what is waiting, oldest first, prints what became of each packet in
the operator's words and exits 0 when everything waiting was delivered and
accepted, 1 when something is left (the hub could not be reached) or was
refused. ``--forever`` runs until SIGTERM or Ctrl-C: retries with backoff, sends
heartbeats, purges acknowledged packets after ``[store] purge_after_days``. A stop
lets the request under way finish (each read or write on the link is bounded by
the client's timeout); an upload cut short by a harder stop resumes at the next
start from where the hub's copy ends, so nothing is lost either way.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk.config import add_config_option, load_config
from kiosk.packet.keys import StationKeyFiles, load_station_key
from kiosk.store.sqlite import INDEX_NAME, OPERATOR_WORDS, EnrollmentStore, PacketState
from kiosk.sync.client import HubClient, SyncError, SyncSetupError
from kiosk.sync.runner import (
    SyncSettings,
    SyncSummary,
    heartbeat_body,
    sync_forever,
    sync_once,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncTarget:
    """Where the packets are and where they go."""

    data_dir: Path
    hub_url: str
    station_id: str | None  # from the station file; else the store's
    purge_after_days: float | None  # None: never purge (a simulation)


def sync_target(args: argparse.Namespace) -> SyncTarget:
    """The data folder and hub from ``--data-dir``/``--hub`` or the station file."""
    if args.data_dir is not None:
        if args.hub is None:
            raise SyncSetupError(
                "sync: --data-dir needs --hub https://HOST:PORT (the hub's address)"
            )
        return SyncTarget(args.data_dir, args.hub, None, None)
    config = load_config(args.config)
    url = args.hub or config.hub_url
    if not url:
        raise SyncSetupError(
            f'{config.path}: no hub address; add [hub] url = "https://HOST:PORT" '
            "(docs/technician.md) or give --hub"
        )
    return SyncTarget(config.data_dir, url, config.station_id, config.purge_after_days)


def open_sync(target: SyncTarget) -> tuple[EnrollmentStore, HubClient]:
    """The store and the client, or a one-line SyncSetupError naming what is missing."""
    if not (target.data_dir / INDEX_NAME).is_file():
        raise SyncSetupError(
            f"{target.data_dir}: no packet store here (no {INDEX_NAME}); is this the "
            "station's data folder?"
        )
    files = StationKeyFiles.in_data_dir(target.data_dir)
    client = HubClient(target.hub_url, files.hub_tls)
    try:
        store = EnrollmentStore(target.data_dir)
    except BaseException:
        client.close()
        raise
    return store, client


def station_key(data_dir: Path) -> Ed25519PrivateKey:
    """The key heartbeats are signed with; a one-line error when it is missing."""
    path = StationKeyFiles.in_data_dir(data_dir).station_key
    if not path.exists():
        raise SyncSetupError(
            f"{path}: no station key; this station is not provisioned yet "
            "(`kiosk keys station` makes it)"
        )
    return load_station_key(path)


def run_sync(args: argparse.Namespace) -> int:
    """`kiosk sync`: once (then one heartbeat) or ``--forever``; 0 when everything waiting
    was delivered, 1 when something is left or was refused (KioskError: cli.main's 2)."""
    target = sync_target(args)
    key = station_key(target.data_dir)
    store, client = open_sync(target)
    try:
        for problem in store.problems:  # found (and quarantined) when the store opened
            print(f"kiosk: warning: {problem}", file=sys.stderr)
        if args.forever:
            return _forever(args, target, store, client, key)
        summary = sync_once(store, client)
        heartbeat_error = None
        if not summary.hub_unreachable:
            heartbeat_error = _one_heartbeat(target, store, client, key)
        backlog = store.backlog()
    finally:
        client.close()
        store.close()
    if args.json:
        report = summary.as_dict()
        report.update(
            hub=str(client.url),
            data_dir=str(target.data_dir),
            delivered_all=summary.delivered_all,
            backlog={str(state): count for state, count in backlog.items()},
            heartbeat_error=heartbeat_error,
        )
        print(json.dumps(report, indent=2))
    else:
        print("\n".join(summary_lines(summary, backlog, str(client.url))))
        if heartbeat_error:
            print(
                f"kiosk: warning: the heartbeat was not taken: {heartbeat_error}", file=sys.stderr
            )
    return 0 if summary.delivered_all else 1


def _one_heartbeat(
    target: SyncTarget, store: EnrollmentStore, client: HubClient, key: Ed25519PrivateKey
) -> str | None:
    """One heartbeat after a run; the error as a line, None when the hub took it."""
    station = target.station_id or store.station_id()
    if not station:
        return None
    try:
        client.heartbeat(heartbeat_body(store, target.data_dir, station), key)
    except SyncError as exc:
        return str(exc)
    return None


def summary_lines(summary: SyncSummary, backlog: dict[PacketState, int], hub: str) -> list[str]:
    """What a run did, in plain words, with the operator's word for each state."""
    lines = []
    for outcome in summary.packets:
        if outcome.state is PacketState.ACKNOWLEDGED:
            lines.append(f"{outcome.enrollment_id}  {outcome.word} (accepted by the hub)")
        else:
            lines.append(f"{outcome.enrollment_id}  {outcome.word} (refused: {outcome.reason})")
    for error in summary.errors:
        lines.append(f"error: {error}")
    if not summary.packets and not summary.errors:
        lines.append(f"nothing waiting for the hub at {hub}")
    else:
        lines.append(
            f"{_count(summary.sent, 'packet')} sent to {hub}: {summary.accepted} diterima, "
            f"{summary.rejected} ditolak; {summary.left} still waiting"
        )
    shown = [
        f"{backlog.get(state, 0)} {OPERATOR_WORDS[state]}"
        for state in (
            PacketState.SEALED,
            PacketState.SENT,
            PacketState.ACKNOWLEDGED,
            PacketState.REJECTED,
            PacketState.QUARANTINED,
        )
    ]
    lines.append("on this kiosk: " + ", ".join(shown))
    return lines


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _forever(
    args: argparse.Namespace,
    target: SyncTarget,
    store: EnrollmentStore,
    client: HubClient,
    key: Ed25519PrivateKey,
) -> int:
    logging.getLogger("kiosk").setLevel(logging.INFO)  # the journal keeps each delivery
    stop = threading.Event()
    settings = SyncSettings(purge_after_days=target.purge_after_days)
    with _stop_on_signals(stop):
        log.info("sync: sending %s's packets to %s until stopped", target.data_dir, client.url)
        totals = sync_forever(
            store,
            client,
            data_dir=target.data_dir,
            station_key=key,
            station_id=target.station_id,
            settings=settings,
            stop=stop,
        )
    line = (
        f"sync stopped: {totals.sent} sent, {totals.accepted} diterima, {totals.rejected} "
        f"ditolak, {totals.purged} purged, {totals.left} still waiting"
    )
    if args.json:
        print(json.dumps({"stopped": True, **vars(totals)}, indent=2))
    else:
        print(line)
    return 0


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM (systemd) and SIGINT (Ctrl-C) set ``stop``: the round ends cleanly."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only; the caller stops us otherwise
        return
    previous = {}

    def handle(signum: int, frame: object) -> None:
        log.info("sync: %s received; stopping", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, handle)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add `sync` to the `kiosk` command's subcommands."""
    sync = commands.add_parser(
        "sync",
        help="send the sealed packets waiting on this kiosk to the district hub",
        description="Sends the waiting packets to the hub, oldest first, and records the "
        "hub's verdict: direkam (sealed here) -> terkirim (sent) -> diterima (accepted) or "
        "ditolak (rejected, with the reason). Exits 0 when everything waiting was "
        "delivered, 1 when something is left or was refused. --forever is the sync "
        "service: it retries with backoff, sends heartbeats and purges old acknowledged "
        "packets, until SIGTERM.",
    )
    source = sync.add_mutually_exclusive_group()
    add_config_option(source, "station file naming the data folder and [hub] url")
    source.add_argument("--data-dir", type=Path, help="the data folder itself (with --hub)")
    sync.add_argument("--hub", help="the hub's address, https://HOST:PORT")
    sync.add_argument("--forever", action="store_true", help="keep syncing until stopped")
    sync.add_argument("--json", action="store_true", help="print one JSON object")
    sync.set_defaults(handler=run_sync)
