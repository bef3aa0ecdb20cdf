"""Store-and-forward: hand the store's waiting packets to the hub, oldest first.

:func:`sync_once` goes through the waiting packets once; :func:`sync_forever`
is the sync service: it calls ``sync_once`` again and again, waits with a
capped, jittered backoff while the hub cannot be reached, sends a signed
heartbeat every so often and purges packets the hub accepted long enough ago.
It holds nothing that grows with time, so a hub that is down for weeks costs a
few requests an hour and one log line when the fault changes.

A packet moves sealed (*direkam*) -> sent (*terkirim*: every byte at the hub)
-> acknowledged (*diterima*) or rejected (*ditolak*, with the hub's reason).
A rejected or refused packet is final: it stays on the kiosk with its reason
and is never sent again by itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk import __version__
from kiosk.errors import KioskError
from kiosk.health.inventory import INVENTORY_NAME, read_inventory
from kiosk.store.sqlite import OPERATOR_WORDS, PacketState, StoredPacket
from kiosk.sync.backoff import Backoff
from kiosk.sync.client import (
    HubRefused,
    HubUnreachable,
    StationRefused,
    SyncError,
    UploadStopped,
    Verdict,
)

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 30.0  # with nothing failing: how soon a newly sealed packet leaves
HEARTBEAT_INTERVAL_S = 300.0
PURGE_INTERVAL_S = 3600.0
REPEAT_LOG_S = 3600.0  # an unchanged fault is logged again at most this often


class PacketStore(Protocol):
    """The store as sync uses it (kiosk.store.sqlite.EnrollmentStore)."""

    def waiting(self) -> list[StoredPacket]: ...
    def read_sealed(self, enrollment_id: str) -> bytes: ...
    def mark_sent(self, enrollment_id: str) -> None: ...
    def record_verdict(
        self, enrollment_id: str, accepted: bool, reason: str | None = None
    ) -> None: ...
    def backlog(self) -> dict[PacketState, int]: ...
    def today(self, now: datetime | None = None) -> dict: ...
    def station_id(self) -> str | None: ...
    def purge(self, older_than_days: float, now: datetime | None = None) -> int: ...


class Uploader(Protocol):
    """The hub as sync uses it (kiosk.sync.client.HubClient)."""

    def upload(
        self,
        stored: StoredPacket,
        data: bytes,
        *,
        on_sent: Callable[[], None] | None = None,
        stopping: Callable[[], bool] | None = None,
    ) -> Verdict: ...
    def heartbeat(self, body: dict[str, Any], station_key: Ed25519PrivateKey) -> None: ...


@dataclass(frozen=True)
class PacketOutcome:
    """What became of one packet in a run."""

    enrollment_id: str
    state: PacketState
    reason: str | None = None

    @property
    def word(self) -> str:
        return OPERATOR_WORDS[self.state]


@dataclass
class SyncSummary:
    """One pass over the waiting packets."""

    sent: int = 0  # packets whose every byte reached the hub in this run
    accepted: int = 0
    rejected: int = 0  # rejected by the hub's verdict, or refused for good
    left: int = 0  # still waiting (direkam or terkirim) after the run
    errors: list[str] = field(default_factory=list)  # one line each
    packets: list[PacketOutcome] = field(default_factory=list)
    hub_unreachable: bool = False  # the run stopped early: retry later, after a backoff

    @property
    def delivered_all(self) -> bool:
        """Everything that was waiting is at the hub and accepted."""
        return self.left == 0 and self.rejected == 0 and not self.errors

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["packets"] = [
            {**asdict(outcome), "state": str(outcome.state), "word": outcome.word}
            for outcome in self.packets
        ]
        return data


def sync_once(
    store: PacketStore,
    client: Uploader,
    *,
    stop: threading.Event | None = None,
) -> SyncSummary:
    """Send each waiting packet, oldest first, and record what the hub said.

    Stops at the first packet the hub cannot take now (unreachable, 5xx, the
    station refused), so the order is kept; a packet the hub refuses for good is
    marked rejected with the reason and the run goes on. A packet the store finds
    damaged is quarantined by the store and skipped. Never raises for the hub;
    StoreError from the store's index itself propagates.
    """
    summary = SyncSummary()
    stopping = stop.is_set if stop is not None else None
    for stored in store.waiting():
        if stop is not None and stop.is_set():
            break
        try:
            data = store.read_sealed(stored.enrollment_id)
        except KioskError as exc:  # damaged: the store quarantined it; the others go on
            summary.errors.append(f"{stored.enrollment_id}: {exc}")
            continue
        marked = stored.state is PacketState.SENT

        def sent(stored: StoredPacket = stored) -> None:
            nonlocal marked
            if not marked:
                store.mark_sent(stored.enrollment_id)
                marked = True

        try:
            verdict = client.upload(stored, data, on_sent=sent, stopping=stopping)
        except HubRefused as exc:
            store.record_verdict(stored.enrollment_id, False, exc.reason)
            summary.rejected += 1
            summary.packets.append(
                PacketOutcome(stored.enrollment_id, PacketState.REJECTED, exc.reason)
            )
            log.warning("%s: ditolak (refused by the hub: %s)", stored.enrollment_id, exc.reason)
            continue
        except UploadStopped:
            break
        except (HubUnreachable, StationRefused) as exc:
            summary.errors.append(str(exc))
            summary.hub_unreachable = True
            break
        except SyncError as exc:  # this packet cannot be sent as it is; the others can
            summary.errors.append(str(exc))
            continue
        sent()  # a verdict means every byte arrived, even if the callback never ran
        summary.sent += 1
        store.record_verdict(stored.enrollment_id, verdict.accepted, verdict.reason)
        if verdict.accepted:
            summary.accepted += 1
            summary.packets.append(PacketOutcome(stored.enrollment_id, PacketState.ACKNOWLEDGED))
            log.info("%s: diterima (accepted by the hub)", stored.enrollment_id)
        else:
            summary.rejected += 1
            summary.packets.append(
                PacketOutcome(stored.enrollment_id, PacketState.REJECTED, verdict.reason)
            )
            log.warning(
                "%s: ditolak (rejected by the hub: %s)", stored.enrollment_id, verdict.reason
            )
    summary.left = len(store.waiting())
    return summary


# -- heartbeats ----------------------------------------------------------------------


def modules_for_heartbeat(data_dir: Path) -> list[dict[str, Any]]:
    """The installed units in the station's inventory (modules.json), as a heartbeat
    lists them; empty when there is no inventory or it cannot be read."""
    try:
        snapshot = read_inventory(Path(data_dir) / INVENTORY_NAME)
    except (OSError, ValueError) as exc:
        log.warning("%s: the module inventory cannot be read (%s)", data_dir, exc)
        return []
    if snapshot is None:
        return []
    modules = []
    listed = set()
    for unit in snapshot.units:
        if not unit.installed:
            continue
        swapped = any(
            other.kind == unit.kind and other is not unit and not other.installed
            for other in snapshot.units
        )
        kind_status = snapshot.status.get(unit.kind, {}).get("status") if snapshot.running else ""
        modules.append(
            {
                "kind": unit.kind,
                "model": unit.model,
                "serial": unit.serial,
                "firmware": unit.firmware,
                "driver": unit.driver,
                "status": kind_status or unit.status,
                "failures": unit.failures,
                "last_swap": unit.first_seen if swapped else None,
            }
        )
        listed.add(unit.kind)
    for kind, entry in snapshot.status.items():  # a kind with no unit identified (down)
        if kind not in listed and snapshot.running:
            modules.append(
                {
                    "kind": kind,
                    "model": "",
                    "serial": "",
                    "firmware": "",
                    "driver": "",
                    "status": entry.get("status", ""),
                    "failures": 0,
                    "last_swap": None,
                }
            )
    return modules


def heartbeat_body(
    store: PacketStore, data_dir: Path, station_id: str, now: datetime | None = None
) -> dict[str, Any]:
    """The heartbeat (docs/sync-protocol.md): modules, backlog and today's figures."""
    now = now or datetime.now(UTC)
    return {
        "station_id": station_id,
        "sent_at": now.astimezone(UTC).isoformat(timespec="microseconds"),
        "software": f"rekam-kiosk {__version__}",
        "modules": modules_for_heartbeat(data_dir),
        "backlog": {str(state): count for state, count in store.backlog().items()},
        "today": store.today(now),
    }


# -- the service ---------------------------------------------------------------------


@dataclass
class SyncSettings:
    """How the sync service paces itself."""

    poll_interval_s: float = POLL_INTERVAL_S
    heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S
    purge_interval_s: float = PURGE_INTERVAL_S
    purge_after_days: float | None = None  # None: never purge


@dataclass
class SyncTotals:
    """Counts since the service started (never a list: nothing grows)."""

    rounds: int = 0
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    purged: int = 0
    heartbeats: int = 0
    failures: int = 0  # rounds that ended early on the hub, or on a fault
    last_error: str = ""
    left: int = 0


class _FaultLog:
    """Logs a fault when it changes, and an unchanged one at most once an hour; says
    ``recovered`` once when it ends."""

    def __init__(self, clock: Callable[[], float], recovered: str) -> None:
        self._clock = clock
        self._recovered = recovered
        self._last = ""
        self._at = 0.0
        self._repeats = 0

    def fault(self, message: str, exc_info: BaseException | None = None) -> None:
        now = self._clock()
        if message != self._last or now - self._at >= REPEAT_LOG_S:
            again = f" (again, {self._repeats} times since)" if message == self._last else ""
            first = exc_info if message != self._last else None  # a traceback once
            log.warning("sync: %s%s", message, again, exc_info=first)
            self._last, self._at, self._repeats = message, now, 0
        else:
            self._repeats += 1

    def cleared(self) -> None:
        if self._last:
            log.warning("sync: %s", self._recovered)
        self._last, self._repeats = "", 0


def sync_forever(
    store: PacketStore,
    client: Uploader,
    *,
    data_dir: Path,
    station_key: Ed25519PrivateKey | None = None,
    station_id: str | None = None,
    settings: SyncSettings | None = None,
    backoff: Backoff | None = None,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
    wait: Callable[[float], object] | None = None,
    on_round: Callable[[SyncSummary, float], None] | None = None,
) -> SyncTotals:
    """Sync until ``stop`` is set (SIGTERM sets it in `kiosk sync --forever`).

    Each round runs :func:`sync_once`; a round that ended on the hub waits the
    backoff's next delay, any other waits ``poll_interval_s`` (and resets the
    backoff). A heartbeat (when ``station_key`` is given) goes every
    ``heartbeat_interval_s`` (a failed one is tried again in the next round that
    reached the hub) and acknowledged packets are purged every
    ``purge_interval_s``. No fault ends the loop: each is logged and waited out.
    ``on_round(summary, delay)`` is told of each round (tests, progress);
    ``wait(delay)`` waits between rounds (``stop.wait`` unless a test passes its own).
    """
    settings = settings or SyncSettings()
    backoff = backoff or Backoff()
    stop = stop or threading.Event()
    wait = wait or stop.wait
    totals = SyncTotals()
    faults = _FaultLog(clock, "the hub is reachable again")
    heartbeat_faults = _FaultLog(clock, "the hub takes heartbeats again")
    next_heartbeat = clock()
    next_purge = clock()
    while not stop.is_set():
        totals.rounds += 1
        error: BaseException | None = None
        try:
            summary = sync_once(store, client, stop=stop)
        except Exception as exc:  # the store's index, or a bug: never the end of the service
            error = exc
            summary = SyncSummary(
                errors=[f"this round failed: {type(exc).__name__}: {exc}"], hub_unreachable=True
            )
        totals.sent += summary.sent
        totals.accepted += summary.accepted
        totals.rejected += summary.rejected
        totals.left = summary.left
        if summary.hub_unreachable:
            totals.failures += 1
            totals.last_error = summary.errors[-1] if summary.errors else ""
            faults.fault(totals.last_error, exc_info=error)
        else:
            faults.cleared()
            for error in summary.errors:  # damaged packets: the store quarantined each
                log.error("sync: %s", error)
        if stop.is_set():
            break
        now = clock()
        # A heartbeat is due until one is taken, tried only in rounds that reached the hub.
        due = station_key is not None and now >= next_heartbeat and not summary.hub_unreachable
        if due and _send_heartbeat(
            store, client, data_dir, station_key, station_id, heartbeat_faults
        ):
            totals.heartbeats += 1
            next_heartbeat = now + settings.heartbeat_interval_s
        if settings.purge_after_days is not None and now >= next_purge:
            totals.purged += _purge(store, settings.purge_after_days)
            next_purge = now + settings.purge_interval_s
        if summary.hub_unreachable:
            delay = backoff.next_delay()
        else:
            backoff.reset()
            delay = settings.poll_interval_s
        if on_round is not None:
            on_round(summary, delay)
        wait(delay)
    return totals


def _send_heartbeat(
    store: PacketStore,
    client: Uploader,
    data_dir: Path,
    station_key: Ed25519PrivateKey,
    station_id: str | None,
    faults: _FaultLog,
) -> bool:
    try:
        station = station_id or store.station_id()
        if not station:
            return False  # nothing sealed here yet: the hub cannot know whose this is
        client.heartbeat(heartbeat_body(store, data_dir, station), station_key)
    except SyncError as exc:
        faults.fault(f"heartbeat not taken: {exc}")
        return False
    except Exception as exc:
        faults.fault(f"the heartbeat could not be made: {type(exc).__name__}: {exc}", exc)
        return False
    faults.cleared()
    return True


def _purge(store: PacketStore, days: float) -> int:
    try:
        purged = store.purge(days)
    except Exception:
        log.exception("sync: purging acknowledged packets failed")
        return 0
    if purged:
        log.info("sync: purged %d packet(s) the hub accepted over %g days ago", purged, days)
    return purged
