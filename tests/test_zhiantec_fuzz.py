"""Fuzz the ZhianTec driver from the sensor's side of the wire.

Two sources of broken frames, both on a pseudo-terminal:

- the sensor emulator with random faults on the frames it sends (garbled, truncated,
  oversized, wrong checksum, bad length or identifier, stray bytes, silence, late),
  while the driver opens, captures, identifies and self-tests;
- a responder that answers every command with frames from the emulator's
  ``bad_frames()`` only, while the driver tries to open.

Every call must end in a value or one of our errors (KioskError), never another
exception, and within its deadline + 1 s. ``REKAM_FUZZ_FRAMES`` sets how many broken
frames are sent (300 here; ``benchmarks/zhiantec_fuzz.py`` runs 10,000 and more).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import random
import select
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field

from kiosk.drivers.fingerprint.emulator import (
    BAD_FRAME_KINDS,
    FAULTS,
    SensorEmulator,
    bad_frames,
)
from kiosk.drivers.fingerprint.zhiantec import ZhiantecReader
from kiosk.drivers.fingerprint.zhiantec_protocol import FrameDecoder, Packet, PacketKind
from kiosk.errors import KioskError

FRAMES = int(os.environ.get("REKAM_FUZZ_FRAMES", "300"))
SEED = int(os.environ.get("REKAM_FUZZ_SEED", "20261128"))
# broken frames per frame sent, drawn per call: none (the clean path must work too), a
# fault now and then mid-image, or most answers of a short call
FAULT_RATES = (0.0, 0.005, 0.02, 0.2)
SLACK_S = 1.0  # a call may end this long after its deadline, no later
IDENTIFY_DEADLINE_S = 5.0  # ModuleBase.identify
SELF_TEST_DEADLINE_S = 10.0  # ModuleBase.self_test


def _public_subclasses(cls: type) -> set[str]:
    names = {cls.__name__}
    for sub in cls.__subclasses__():
        names |= _public_subclasses(sub)
    return {name for name in names if not name.startswith("_")}


OUR_ERRORS = _public_subclasses(KioskError)  # a driver's private error must not leak out


@dataclass
class FuzzReport:
    """What a fuzz run saw: outcomes by name, the worst overrun, anything foreign."""

    frames: int = 0  # broken frames sent
    calls: int = 0
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    worst_overrun_s: float = float("-inf")  # duration minus deadline, the largest seen
    worst_call: str = ""
    longest_s: dict[str, float] = field(default_factory=dict)  # the longest call of each kind
    foreign: list[str] = field(default_factory=list)  # not our errors: must stay empty
    hangs: list[str] = field(default_factory=list)  # past deadline + SLACK_S: must stay empty

    def note(self, what: str, outcome: str, seconds: float, deadline_s: float) -> None:
        self.calls += 1
        self.outcomes[f"{what}: {outcome}"] += 1
        self.longest_s[what] = max(seconds, self.longest_s.get(what, 0.0))
        overrun = seconds - deadline_s
        if overrun > self.worst_overrun_s:
            self.worst_overrun_s, self.worst_call = overrun, f"{what} ({outcome})"
        if overrun > SLACK_S:
            self.hangs.append(f"{what} took {seconds:.2f} s, deadline {deadline_s:g} s")


def _call(report: FuzzReport, what: str, deadline_s: float, call: Callable[[], object]) -> None:
    """Run ``call``, note its outcome and time; anything not ours is foreign."""
    started = time.monotonic()
    try:
        value = call()
    except KioskError as exc:
        outcome = type(exc).__name__
        if outcome not in OUR_ERRORS:
            report.foreign.append(f"{what}: a private error leaked: {outcome}: {exc}")
    except Exception as exc:  # what must never come out of the driver
        outcome = f"FOREIGN {type(exc).__name__}"
        report.foreign.append(f"{what}: {type(exc).__name__}: {exc}")
    else:
        outcome = _value_name(value)
        if outcome.startswith("FOREIGN"):
            report.foreign.append(f"{what}: {value}")
    report.note(what, outcome, time.monotonic() - started, deadline_s)


def _value_name(value: object) -> str:
    outcome = getattr(value, "outcome", None)
    if outcome is not None:
        return str(outcome)
    passed = getattr(value, "passed", None)
    if passed is not None:  # a SelfTestResult: its detail starts with the error's name
        if passed:
            return "passed"
        name = str(value.detail).split(":", 1)[0]
        return f"failed {name}" if name in OUR_ERRORS else f"FOREIGN {name}"
    return "ok"


def _job_call(reader: ZhiantecReader, report: FuzzReport) -> None:
    """One capture; the job itself (not only the wait for it) must end by its deadline."""
    started = time.monotonic()
    try:
        job = reader.capture()
    except KioskError as exc:  # closed, say
        report.note("capture", type(exc).__name__, time.monotonic() - started, 1.0)
        return
    done = threading.Event()
    job.add_done_callback(lambda _job: done.set())

    def wait():
        try:
            return job.result()
        finally:
            if not done.wait(job.remaining() + SLACK_S):
                report.hangs.append(f"capture's work still running past {job.deadline_s:g} s")

    _call(report, "capture", job.deadline_s, wait)


def _broken_frames_sent(sensor: SensorEmulator) -> int:
    return sum(count for name, count in sensor.stats.items() if name.startswith("fault_"))


def fuzz_emulator(frames: int, seed: int) -> FuzzReport:
    """The driver's calls against an emulator whose frames break at random."""
    rng = random.Random(seed)
    report = FuzzReport()
    sensor = SensorEmulator(
        auto_fingers=True,
        hold_s=0.0,
        gap_s=0.02,
        lift_after_upload=False,  # the citizen lifts once imaged, as LIFT_FIRST asks
        seed=seed,
        slow_s=0.15,  # later than read_timeout_s: looks like silence, then a stale frame
    )
    sensor.faults = FAULTS + BAD_FRAME_KINDS  # damage_frame knows both lists
    with sensor:
        reader = ZhiantecReader(port=sensor.port, wait_s=0.3, poll_s=0.01, read_timeout_s=0.1)
        try:
            while _broken_frames_sent(sensor) < frames:
                if reader.closed:
                    _call(report, "open", reader.open_s, reader.open)
                    continue
                sensor.fault_rate = rng.choice(FAULT_RATES)
                action = rng.choices(("capture", "identify", "self-test", "close"), (8, 2, 2, 1))
                if action[0] == "capture":
                    _job_call(reader, report)
                elif action[0] == "identify":
                    _call(report, "identify", IDENTIFY_DEADLINE_S, reader.identify)
                elif action[0] == "self-test":
                    _call(report, "self-test", SELF_TEST_DEADLINE_S, reader.self_test)
                else:
                    _call(report, "close", 1.0 + 1.0, reader.close)
        finally:
            reader.close()
        report.frames = _broken_frames_sent(sensor)
    return report


class BadFrameResponder:
    """A pty whose every answer is broken: 0 to 3 frames from ``bad_frames()`` a command."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._frames = bad_frames(random.Random(seed + 1))
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self.sent = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="bad-frame-responder")
        self._thread.start()

    def _serve(self) -> None:
        decoder = FrameDecoder()
        while not self._stopping.is_set():
            readable, _, _ = select.select([self._master], [], [], 0.02)
            if not readable:
                continue
            try:
                data = os.read(self._master, 4096)
            except BlockingIOError:
                continue
            except OSError:
                return
            for item in decoder.feed(data):
                if isinstance(item, Packet) and item.kind == PacketKind.COMMAND:
                    for wire in itertools.islice(self._frames, self._rng.choice((0, 1, 1, 2, 3))):
                        with contextlib.suppress(BlockingIOError):
                            os.write(self._master, wire)
                        self.sent += 1

    def close(self) -> None:
        self._stopping.set()
        self._thread.join()
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def fuzz_handshake(frames: int, seed: int) -> FuzzReport:
    """The driver opening a 'sensor' that only ever sends broken frames."""
    rng = random.Random(seed)
    report = FuzzReport()
    responder = BadFrameResponder(seed)
    try:
        while responder.sent < frames:
            fast = rng.choice((None, 115200))
            reader = ZhiantecReader(port=responder.port, fast_baudrate=fast, read_timeout_s=0.05)
            _call(report, "open", reader.open_s, reader.open)
            reader.close()
        report.frames = responder.sent
    finally:
        responder.close()
    return report


def _assert_clean(report: FuzzReport) -> None:
    summary = dict(report.outcomes)
    assert not report.foreign, (report.foreign[:5], summary)
    assert not report.hangs, (report.hangs[:5], summary)
    assert report.worst_overrun_s <= SLACK_S, (report.worst_call, summary)


def test_random_faults_on_the_wire_give_only_our_errors_in_time():
    report = fuzz_emulator(FRAMES, SEED)
    _assert_clean(report)
    assert report.frames >= FRAMES
    outcomes = {name.split(": ", 1)[1] for name in report.outcomes}
    assert "captured" in outcomes and "DeviceFault" in outcomes  # both paths ran


def test_a_sensor_that_only_sends_broken_frames_never_opens_and_never_hangs():
    report = fuzz_handshake(max(FRAMES // 10, 10), SEED)
    _assert_clean(report)
    assert report.calls and report.outcomes.get("open: ok", 0) <= report.calls // 10
