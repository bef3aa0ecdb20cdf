"""Sync without a network: the backoff's arithmetic, and the runner over the real
store with a scripted hub (what it sends, in which order, what it records)."""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk.drivers.base import ModuleInfo, ModuleKind
from kiosk.health.inventory import INVENTORY_NAME, ModuleInventory
from kiosk.packet.build import Packet
from kiosk.packet.keys import HubPrivateKey
from kiosk.packet.seal import Sealer
from kiosk.store.sqlite import EnrollmentStore, PacketState
from kiosk.sync.backoff import Backoff
from kiosk.sync.client import (
    HEARTBEAT_LABEL,
    HubRefused,
    HubUnreachable,
    StationRefused,
    SyncSetupError,
    Verdict,
    heartbeat_signature,
    hub_url,
    pinned_tls_context,
    tus_metadata,
)
from kiosk.sync.runner import (
    SyncSettings,
    heartbeat_body,
    modules_for_heartbeat,
    sync_forever,
    sync_once,
)

STATION = "TEST-01"

# -- backoff ---------------------------------------------------------------------------


def test_backoff_ceiling_doubles_up_to_the_cap_and_each_delay_is_within_it():
    draws = []

    def uniform(low, high):
        draws.append((low, high))
        return high  # the longest the jitter allows

    backoff = Backoff(base=1.0, cap=20.0, uniform=uniform)
    delays = [backoff.next_delay() for _ in range(7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0]
    assert all(low == 0.0 for low, _ in draws)  # full jitter: from zero
    assert backoff.failures == 7


def test_backoff_jitter_is_drawn_between_zero_and_the_ceiling():
    backoff = Backoff(base=2.0, cap=60.0, uniform=lambda low, high: (low + high) / 2)
    assert [backoff.next_delay() for _ in range(3)] == [1.0, 2.0, 4.0]
    real = Backoff(base=2.0, cap=60.0)
    for _ in range(200):
        ceiling = real.ceiling()
        assert 0.0 <= real.next_delay() <= ceiling


def test_backoff_reset_after_a_success_starts_again_from_base():
    backoff = Backoff(base=1.0, cap=100.0, uniform=lambda low, high: high)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.failures == 0
    assert backoff.next_delay() == 1.0


def test_backoff_survives_weeks_of_failures_without_overflow():
    backoff = Backoff(base=2.0, cap=300.0, uniform=lambda low, high: high)
    for _ in range(50_000):  # far beyond 2**1024
        delay = backoff.next_delay()
    assert delay == 300.0
    assert backoff.ceiling() == 300.0


def test_backoff_refuses_a_cap_below_its_base():
    with pytest.raises(ValueError, match="base"):
        Backoff(base=10.0, cap=5.0)


# -- client pieces that need no hub -----------------------------------------------------


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://127.0.0.1:8443", "https:// only"),
        ("127.0.0.1:8443", "https:// only"),
        ("https://", "no host"),
        ("https://hub.example/?x=1", r"no \? or #"),
    ],
)
def test_a_bad_hub_address_is_one_line(url, words):
    with pytest.raises(SyncSetupError, match=words) as caught:
        hub_url(url)
    assert "\n" not in str(caught.value)


def test_a_missing_or_bad_certificate_is_one_line(tmp_path):
    with pytest.raises(SyncSetupError, match="certificate is missing"):
        pinned_tls_context(tmp_path / "hub-tls.pem")
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(SyncSetupError, match=r"not a PEM certificate|holds no certificate"):
        pinned_tls_context(bad)


def test_tus_metadata_is_key_space_base64():
    text = tus_metadata(station="TEST-01", enrollment="E-1")
    pairs = dict(pair.split(" ") for pair in text.split(","))
    assert base64.b64decode(pairs["station"]) == b"TEST-01"
    assert base64.b64decode(pairs["enrollment"]) == b"E-1"


def test_heartbeat_signature_verifies_with_the_station_public_key():
    key = Ed25519PrivateKey.generate()
    body = b'{"station_id":"TEST-01"}'
    signature = base64.b64decode(heartbeat_signature(body, key))
    key.public_key().verify(signature, HEARTBEAT_LABEL + body)  # raises if wrong


def test_a_verdict_for_another_packet_is_not_taken():
    body = {"enrollment_id": "E", "sha256": "a" * 64, "verdict": "accepted", "reason": None}
    assert Verdict.from_body(body, "a" * 64).accepted
    with pytest.raises(HubUnreachable, match="another packet"):
        Verdict.from_body(body, "b" * 64)
    with pytest.raises(HubUnreachable, match="not one this kiosk reads"):
        Verdict.from_body({**body, "verdict": "maybe"}, "a" * 64)


# -- the runner over the real store, with a scripted hub ---------------------------------


def small_packet(sequence: int) -> Packet:
    """A packet small enough to seal by the hundred (no pictures: the hub is scripted)."""
    return Packet(
        enrollment_id=f"{STATION}-20261128-{sequence:06d}",
        manifest={
            "station": {"id": STATION},
            "sequence": sequence,
            "nik": f"320101410190{sequence:04d}",
            "started_at": f"2026-11-28T09:{sequence % 60:02d}:00+00:00",
            "step_seconds": {"nik": 10.0, "face": 20.0},
            "modules": [],
        },
        files={"note.txt": f"packet {sequence}".encode()},
    )


@pytest.fixture(scope="module")
def sealer() -> Sealer:
    return Sealer(STATION, Ed25519PrivateKey.generate(), HubPrivateKey.generate().public_bytes())


@pytest.fixture
def filled(tmp_path, sealer):
    """filled(n) -> a store in tmp_path holding n sealed packets, oldest first."""
    stores = []

    def fill(count: int) -> EnrollmentStore:
        store = EnrollmentStore(tmp_path / "data", sealer)
        for sequence in range(1, count + 1):
            store.save(small_packet(sequence))
        stores.append(store)
        return store

    yield fill
    for store in stores:
        store.close()


class ScriptedHub:
    """An uploader whose answer per packet is scripted: "accept", "reject",
    "refuse", "down" (unreachable before any byte), "drop-after-body" (every byte
    sent, then the link dropped), "station" (station refused)."""

    def __init__(self, script: dict[str, str] | None = None, default: str = "accept") -> None:
        self.script = dict(script or {})
        self.default = default
        self.calls: list[str] = []
        self.heartbeats: list[dict] = []
        self.down = False

    def upload(self, stored, data, *, on_sent=None, stopping=None) -> Verdict:
        self.calls.append(stored.enrollment_id)
        what = "down" if self.down else self.script.get(stored.enrollment_id, self.default)
        if what == "down":
            raise HubUnreachable("the hub at https://hub refused the connection")
        if what == "station":
            raise StationRefused("the hub refuses this station")
        if what == "refuse":
            raise HubRefused("refused (409)", reason="replay of an accepted enrollment", status=409)
        if on_sent is not None:
            on_sent()
        if what == "drop-after-body":
            self.script[stored.enrollment_id] = "accept"  # the next try gets the verdict
            raise HubUnreachable("the connection to the hub broke during PATCH")
        return Verdict(
            stored.enrollment_id,
            stored.sha256,
            accepted=what == "accept",
            reason=None if what == "accept" else "signature",
            received_at="2026-11-28T10:00:00+00:00",
        )

    def heartbeat(self, body, station_key) -> None:
        if self.down:
            raise HubUnreachable("the hub at https://hub refused the connection")
        self.heartbeats.append(body)


def states(store: EnrollmentStore) -> dict[str, tuple[PacketState, str | None]]:
    return {
        packet.enrollment_id: (packet.state, packet.reason)
        for packet in store._select("1 = 1", ())  # every packet, whatever its state
    }


def ids(count: int) -> list[str]:
    return [small_packet(n).enrollment_id for n in range(1, count + 1)]


def test_sync_once_sends_oldest_first_and_records_each_acceptance(filled):
    store = filled(4)
    hub = ScriptedHub()
    summary = sync_once(store, hub)
    assert hub.calls == ids(4)
    assert (summary.sent, summary.accepted, summary.rejected, summary.left) == (4, 4, 0, 0)
    assert summary.delivered_all
    assert {state for state, _ in states(store).values()} == {PacketState.ACKNOWLEDGED}
    assert [outcome.word for outcome in summary.packets] == ["diterima"] * 4


def test_an_unreachable_hub_stops_the_run_and_keeps_the_order(filled):
    first, second, third = ids(3)
    store = filled(3)
    hub = ScriptedHub({second: "down"})
    summary = sync_once(store, hub)
    assert hub.calls == [first, second]  # the third is not tried past the failure
    assert summary.hub_unreachable and summary.left == 2 and not summary.delivered_all
    assert "refused the connection" in summary.errors[0]
    assert [packet.enrollment_id for packet in store.waiting()] == [second, third]
    hub.script.clear()
    again = sync_once(store, hub)
    assert hub.calls[2:] == [second, third]
    assert again.delivered_all


def test_a_refused_packet_is_rejected_with_its_reason_and_never_sent_again(filled):
    first, second, third = ids(3)
    store = filled(3)
    hub = ScriptedHub({second: "refuse", third: "reject"})
    summary = sync_once(store, hub)
    assert (summary.accepted, summary.rejected, summary.left) == (1, 2, 0)
    assert not summary.delivered_all
    recorded = states(store)
    assert recorded[second] == (PacketState.REJECTED, "replay of an accepted enrollment")
    assert recorded[third] == (PacketState.REJECTED, "signature")
    assert [outcome.word for outcome in summary.packets] == ["diterima", "ditolak", "ditolak"]
    sync_once(store, hub)
    assert hub.calls == [first, second, third]  # nothing tried again


def test_a_packet_whose_bytes_all_arrived_is_terkirim_until_the_verdict(filled):
    (only,) = ids(1)
    store = filled(1)
    hub = ScriptedHub({only: "drop-after-body"})
    summary = sync_once(store, hub)
    assert summary.hub_unreachable and summary.sent == 0
    assert states(store)[only] == (PacketState.SENT, None)
    assert summary.left == 1  # terkirim still waits for its verdict
    assert sync_once(store, hub).accepted == 1
    assert states(store)[only] == (PacketState.ACKNOWLEDGED, None)


def test_a_refused_station_marks_nothing(filled):
    store = filled(2)
    hub = ScriptedHub(default="station")
    summary = sync_once(store, hub)
    assert summary.hub_unreachable and summary.left == 2
    assert {state for state, _ in states(store).values()} == {PacketState.SEALED}


def test_a_damaged_packet_is_quarantined_and_the_others_still_go(filled):
    first, second, third = ids(3)
    store = filled(3)
    path = store.packet(second).path
    path.write_bytes(path.read_bytes()[:-10])  # the SD card lost its tail
    hub = ScriptedHub()
    summary = sync_once(store, hub)
    assert hub.calls == [first, third]
    assert states(store)[second][0] is PacketState.QUARANTINED
    assert summary.accepted == 2 and summary.errors and not summary.delivered_all


class FakeTime:
    """The service's clock and wait: each wait moves the clock, nothing sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def run_forever(store, hub, tmp_path, rounds, *, key=None, settings=None, on_round=None):
    """sync_forever for ``rounds`` rounds on a fake clock; (totals, time, backoff)."""
    import threading

    stop = threading.Event()
    time_ = FakeTime()
    backoff = Backoff(base=1.0, cap=300.0, uniform=lambda low, high: high)
    seen = []

    def each(summary, delay):
        seen.append((summary, delay))
        if on_round is not None:
            on_round(len(seen), summary)
        if len(seen) >= rounds:
            stop.set()

    totals = sync_forever(
        store,
        hub,
        data_dir=tmp_path / "data",
        station_key=key,
        settings=settings or SyncSettings(poll_interval_s=30.0, heartbeat_interval_s=600.0),
        backoff=backoff,
        stop=stop,
        clock=time_.clock,
        wait=time_.wait,
        on_round=each,
    )
    return totals, time_, seen


def test_days_without_a_hub_back_off_to_the_cap_then_drain_when_it_returns(
    filled, tmp_path, caplog
):
    store = filled(3)
    hub = ScriptedHub()
    hub.down = True
    rounds = 1500  # at the cap of 300 s: more than four days

    def hub_returns(number, summary):
        if number == rounds - 2:
            hub.down = False

    with caplog.at_level(logging.WARNING, logger="kiosk.sync"):
        totals, time_, _ = run_forever(store, hub, tmp_path, rounds, on_round=hub_returns)
    assert time_.now > 4 * 24 * 3600
    assert max(time_.waits) == 300.0
    assert time_.waits[:5] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert time_.waits[-1] == 30.0  # back to polling once the hub took everything
    assert totals.accepted == 3 and totals.left == 0 and store.waiting() == []
    assert totals.failures == rounds - 2
    # one line when the fault began, one an hour at most after that, one when it ended
    assert len(caplog.records) <= time_.now / 3600 + 3
    assert "reachable again" in caplog.records[-1].getMessage()


def test_the_service_survives_a_store_that_fails_and_retries_after_a_backoff(
    filled, tmp_path, monkeypatch, caplog
):
    store = filled(1)
    hub = ScriptedHub()
    calls = []
    real_waiting = store.waiting

    def flaky_waiting():
        calls.append(1)
        if len(calls) <= 5:
            raise RuntimeError("database is locked")
        return real_waiting()

    monkeypatch.setattr(store, "waiting", flaky_waiting)
    with caplog.at_level(logging.WARNING, logger="kiosk.sync"):
        totals, time_, _ = run_forever(store, hub, tmp_path, 6)
    assert totals.failures == 5 and "database is locked" in totals.last_error
    assert time_.waits[:5] == [1.0, 2.0, 4.0, 8.0, 16.0]  # backoffs, not a crash
    assert totals.accepted == 1
    tracebacks = [record for record in caplog.records if record.exc_info]
    assert len(tracebacks) == 1  # the first failure's, not one a round


def test_heartbeats_go_on_their_interval_with_modules_backlog_and_today(filled, tmp_path):
    store = filled(2)
    inventory = ModuleInventory(tmp_path / "data" / INVENTORY_NAME, station_id=STATION)
    old = ModuleInfo(ModuleKind.FINGERPRINT, "zhiantec", "R307", "OLD-1", "fw1")
    new = ModuleInfo(ModuleKind.FINGERPRINT, "zhiantec", "R503", "NEW-2", "fw2")
    camera = ModuleInfo(ModuleKind.CAMERA, "fake", "FakeCam", "CAM-9", "")
    inventory.seen(old, status="up", installed=True)
    inventory.seen(new, status="up", installed=True)  # swapped: OLD-1 removed
    inventory.seen(camera, status="up", installed=True)
    inventory.count(new.identity, failures=2)
    inventory.save()
    hub = ScriptedHub()
    key = Ed25519PrivateKey.generate()
    settings = SyncSettings(poll_interval_s=30.0, heartbeat_interval_s=100.0)
    totals, _, _ = run_forever(store, hub, tmp_path, 10, key=key, settings=settings)
    # rounds at 0, 30, ..., 270 s: heartbeats at 0, 120 and 240 s
    assert totals.heartbeats == 3 == len(hub.heartbeats)
    body = hub.heartbeats[0]
    assert body["station_id"] == STATION
    datetime.fromisoformat(body["sent_at"])  # ISO 8601
    assert body["today"]["enrolled"] == 2
    assert body["backlog"]["acknowledged"] == 2 and body["backlog"]["sealed"] == 0
    modules = {module["kind"]: module for module in body["modules"]}
    assert set(modules) == {"fingerprint", "camera"}
    assert modules["fingerprint"]["serial"] == "NEW-2"
    assert modules["fingerprint"]["failures"] == 2
    assert modules["fingerprint"]["last_swap"] is not None
    assert modules["camera"]["last_swap"] is None
    json.dumps(body)  # what the client signs and sends


def test_no_inventory_means_no_modules_and_a_damaged_one_is_not_fatal(tmp_path):
    assert modules_for_heartbeat(tmp_path) == []
    (tmp_path / INVENTORY_NAME).write_text("{not json")
    assert modules_for_heartbeat(tmp_path) == []


def test_acknowledged_packets_are_purged_by_the_service_and_waiting_ones_never(filled, tmp_path):
    first, second = ids(2)
    store = filled(2)
    hub = ScriptedHub({second: "down"})
    settings = SyncSettings(poll_interval_s=30.0, purge_after_days=0)
    totals, _, _ = run_forever(store, hub, tmp_path, 1, settings=settings)
    assert totals.purged == 1
    recorded = states(store)
    assert recorded[first][0] is PacketState.PURGED
    assert not store.packet(first).path.exists()
    assert recorded[second][0] is PacketState.SEALED and store.packet(second).path.exists()


def test_heartbeat_body_sent_at_is_utc(filled, tmp_path):
    store = filled(1)
    now = datetime(2026, 11, 28, 17, 0, tzinfo=UTC)
    body = heartbeat_body(store, tmp_path, STATION, now=now)
    assert body["sent_at"].startswith("2026-11-28T17:00:00")
    assert body["sent_at"].endswith("+00:00")
