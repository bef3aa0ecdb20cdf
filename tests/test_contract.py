"""One contract, every backend: the same assertions against each driver of a kind.

"Fake the transport, not the driver": each backend's own code runs unchanged on
what stands in for its hardware, as its own tests build it:

- cameras: FakeCamera; Picamera2Camera on the picamera2 stand-in (a CameraRig as
  ``picamera2_factory``); V4l2Camera on a generated MJPG video (``api="any"``);
- fingerprint readers: FakeFingerprintReader; ZhiantecReader on a SensorEmulator
  over a pty;
- signature pads: FakeSignaturePad, TouchSignaturePad;
- indicators: FakeIndicators; GpioIndicators on gpiozero's MockFactory.

Each backend is a small "bench" object that knows how to build the module, how
to make its source slow (cameras) and how a citizen puts a finger on the glass
or presses the call button. The tests themselves never look at which backend
they run on.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin
from picamera2_standin import CameraRig
from support import wait_for

from kiosk.drivers.base import (
    Camera,
    FingerPhase,
    FingerprintCapture,
    FingerprintReader,
    Frame,
    Health,
    HealthStatus,
    Indicators,
    Module,
    ModuleInfo,
    ModuleKind,
    Outcome,
    SelfTestResult,
    Signal,
    SignatureCapture,
    SignaturePad,
)
from kiosk.drivers.camera.fake import FakeCamera
from kiosk.drivers.camera.picamera2 import Picamera2Camera
from kiosk.drivers.camera.v4l2 import V4l2Camera
from kiosk.drivers.fingerprint.emulator import SensorEmulator
from kiosk.drivers.fingerprint.fake import FakeFingerprintReader
from kiosk.drivers.fingerprint.zhiantec import ZhiantecReader
from kiosk.drivers.indicators.fake import FakeIndicators
from kiosk.drivers.indicators.gpio import GpioIndicators
from kiosk.drivers.signature.fake import FakeSignaturePad
from kiosk.drivers.signature.touch import TouchSignaturePad
from kiosk.drivers.worker import Job
from kiosk.errors import CaptureCancelled, CaptureTimeout, DeviceClosed, DriverError

PROTOCOLS = {
    ModuleKind.CAMERA: Camera,
    ModuleKind.FINGERPRINT: FingerprintReader,
    ModuleKind.SIGNATURE: SignaturePad,
    ModuleKind.INDICATORS: Indicators,
}
STROKE = ((0.1, 0.5, 0.00), (0.4, 0.3, 0.12), (0.8, 0.6, 0.30))
PRINT_SHAPE = (288, 256)  # height x width of an R307-like image
CALL_PIN = "GPIO23"


def timed(call) -> tuple[Any, float]:
    """(value or exception, seconds) of ``call()``."""
    start = time.monotonic()
    try:
        return call(), time.monotonic() - start
    except Exception as exc:
        return exc, time.monotonic() - start


def device_threads(module: Module) -> list[str]:
    """Threads named like the module's own (its worker is "<kind>-<Class>", picamera2's
    release thread "camera-picamera2-N-release"); the emulators are named otherwise."""
    prefix = f"{module.kind}-"
    return [t.name for t in threading.enumerate() if t.is_alive() and t.name.startswith(prefix)]


# -- benches: one per backend --------------------------------------------------------------


class Bench:
    """Builds one backend's module on its stand-in transport; closes all at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.made: list[Module] = []
        self.cleanups: list[Any] = []

    def keep(self, module):
        self.made.append(module)
        return module

    def teardown(self) -> None:
        for module in self.made:
            module.close()
        for cleanup in reversed(self.cleanups):
            cleanup()

    # the kind-specific hooks are below, in the subclasses


# cameras: make() a working camera; make_slow() one whose stills do not come in time


class FakeCameraBench(Bench):
    def make(self):
        return self.keep(FakeCamera())

    def make_slow(self):
        return self.keep(FakeCamera(delay=30.0))  # the option imitating a camera's latency


class Picamera2Bench(Bench):
    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.rig = CameraRig()
        self.cleanups.append(self.rig.resume)
        self.cleanups.append(self.rig.release_stop)

    def make(self):
        return self.keep(Picamera2Camera(picamera2_factory=self.rig))

    def make_slow(self):
        self.rig.stall()  # frames stop arriving: a loose cable
        return self.make()


class V4l2Bench(Bench):
    WIDTH, HEIGHT = 160, 120
    SLOW_GRAB_S = 0.5  # a camera giving a frame every half second (select() waits that long)

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.video = tmp_path / "video0.avi"
        writer = cv2.VideoWriter(
            str(self.video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (self.WIDTH, self.HEIGHT)
        )
        assert writer.isOpened()
        rng = np.random.default_rng(0)
        for _ in range(90):
            writer.write(rng.integers(0, 255, (self.HEIGHT, self.WIDTH, 3), np.uint8))
        writer.release()

    def make(self):
        return self.keep(V4l2Camera(device=str(self.video), api="any", fps=30))

    def make_slow(self):
        # The transport made slow: OpenCV's capture, its grab() blocking as a stalled
        # V4L2 camera's select() does (the driver's own code is untouched).
        real_capture = cv2.VideoCapture
        patch = pytest.MonkeyPatch()
        patch.setattr(
            cv2, "VideoCapture", lambda *args: SlowCapture(real_capture(*args), self.SLOW_GRAB_S)
        )
        self.cleanups.append(patch.undo)
        return self.make()


class SlowCapture:
    """A cv2.VideoCapture whose grab() blocks, as a stalled V4L2 camera's select() does."""

    def __init__(self, capture, grab_s: float) -> None:
        self._capture = capture
        self._grab_s = grab_s

    def grab(self):
        time.sleep(self._grab_s)
        return self._capture.grab()

    def __getattr__(self, name):
        return getattr(self._capture, name)


# readers: make(wait_s) a reader; citizen(reader, present) says whether a finger will come;
# on_phase(reader, record) the callback a capture gets (the citizen acts on the phases)


class FakeReaderBench(Bench):
    def make(self, wait_s: float = 10.0):
        return self.keep(FakeFingerprintReader(wait_s=wait_s))

    def citizen(self, reader, present: bool) -> None:
        # The fake's citizen is its ``delay`` option: seconds before the finger arrives.
        reader._delay = 0.0 if present else 3600.0

    def on_phase(self, reader, record: list):
        return record.append


class ZhiantecBench(Bench):
    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.sensor = SensorEmulator(name="zhiantec-emulator")
        self.sensor.start()
        self.cleanups.append(self.sensor.stop)
        self.present = True

    def make(self, wait_s: float = 10.0):
        return self.keep(ZhiantecReader(port=self.sensor.port, wait_s=wait_s, read_timeout_s=0.3))

    def citizen(self, reader, present: bool) -> None:
        self.present = present

    def on_phase(self, reader, record: list):
        present = self.present

        def phase(phase: FingerPhase) -> None:  # on the reader's thread
            record.append(phase)
            if phase is FingerPhase.WAITING and present:
                self.sensor.place_finger()
            elif phase in (FingerPhase.LIFT, FingerPhase.LIFT_FIRST):
                self.sensor.lift_finger()

        return phase


# pads and indicators


class FakePadBench(Bench):
    def make(self):
        return self.keep(FakeSignaturePad())


class TouchPadBench(Bench):
    def make(self):
        return self.keep(TouchSignaturePad())


class FakeIndicatorsBench(Bench):
    def make(self):
        return self.keep(FakeIndicators())

    def press(self, lights) -> None:
        lights.press_call_button()


class GpioBench(Bench):
    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.factory = MockFactory(pin_class=MockPWMPin)
        self.cpuinfo = tmp_path / "cpuinfo"
        self.cpuinfo.write_text("Hardware\t: BCM2835\nSerial\t\t: 10000000cafe0001\n")
        self.cleanups.append(self.factory.close)

    def make(self):
        return self.keep(
            GpioIndicators(
                pin_factory=self.factory, call_button=CALL_PIN, serial_files=[self.cpuinfo]
            )
        )

    def press(self, lights) -> None:
        pin = self.factory.pin(CALL_PIN)
        pin.drive_low()  # pulled up: pressed is low
        time.sleep(0.06)  # past the bounce time
        pin.drive_high()


BENCHES = {
    ModuleKind.CAMERA: {"fake": FakeCameraBench, "picamera2": Picamera2Bench, "v4l2": V4l2Bench},
    ModuleKind.FINGERPRINT: {"fake": FakeReaderBench, "zhiantec": ZhiantecBench},
    ModuleKind.SIGNATURE: {"fake": FakePadBench, "touch": TouchPadBench},
    ModuleKind.INDICATORS: {"fake": FakeIndicatorsBench, "gpio": GpioBench},
}
ALL = [
    pytest.param((kind, name), id=f"{kind}-{name}")
    for kind, benches in BENCHES.items()
    for name in benches
]


def _bench(request, tmp_path, kind: ModuleKind):
    bench = BENCHES[kind][request.param](tmp_path)
    request.addfinalizer(bench.teardown)
    return bench


@pytest.fixture(params=ALL)
def any_bench(request, tmp_path):
    kind, name = request.param
    bench = BENCHES[kind][name](tmp_path)
    yield bench
    bench.teardown()


@pytest.fixture(params=list(BENCHES[ModuleKind.CAMERA]))
def camera_bench(request, tmp_path):
    return _bench(request, tmp_path, ModuleKind.CAMERA)


@pytest.fixture(params=list(BENCHES[ModuleKind.FINGERPRINT]))
def reader_bench(request, tmp_path):
    return _bench(request, tmp_path, ModuleKind.FINGERPRINT)


@pytest.fixture(params=list(BENCHES[ModuleKind.SIGNATURE]))
def pad_bench(request, tmp_path):
    return _bench(request, tmp_path, ModuleKind.SIGNATURE)


@pytest.fixture(params=list(BENCHES[ModuleKind.INDICATORS]))
def lights_bench(request, tmp_path):
    return _bench(request, tmp_path, ModuleKind.INDICATORS)


def use(module: Module) -> Any:
    """The kind's capture call, carried through (a Job's result waited for)."""
    if isinstance(module, Camera):
        return module.still(deadline_s=2.0).result()
    if isinstance(module, FingerprintReader):
        return module.capture().result()
    if isinstance(module, SignaturePad):
        return module.collect(timeout=0.1)
    assert isinstance(module, Indicators)
    return module.signal(Signal.IDLE)


def exercise(bench, module: Module) -> None:
    """One successful capture call of the module's kind."""
    if isinstance(module, FingerprintReader):
        bench.citizen(module, True)
        capture = module.capture(bench.on_phase(module, [])).result()
        assert capture.outcome is Outcome.CAPTURED
    elif isinstance(module, SignaturePad):
        module.begin()
        module.add_stroke(STROKE)
        assert module.collect(timeout=0.1).outcome is Outcome.CAPTURED
    else:
        use(module)


# -- every kind: lifecycle, identity, health, self-test, stats, threads ---------------------


def test_satisfies_its_protocol(any_bench):
    module = any_bench.make()
    assert isinstance(module, Module)
    assert isinstance(module, PROTOCOLS[module.kind])


def test_lifecycle_open_twice_close_twice_and_context_manager(any_bench):
    module = any_bench.make()
    assert module.closed
    module.open()
    assert not module.closed
    module.open()  # twice is fine
    assert not module.closed
    module.close()
    assert module.closed
    module.close()  # idempotent
    assert module.closed
    with module as entered:  # reopened after a close, and it works
        assert entered is module and not module.closed
        exercise(any_bench, module)
    assert module.closed


def test_use_after_close_raises_device_closed(any_bench):
    module = any_bench.make()
    module.open()
    module.close()
    calls = [lambda: use(module), module.identify]
    if isinstance(module, Camera):
        calls.append(module.start_preview)
    if isinstance(module, SignaturePad):
        calls += [module.begin, lambda: module.add_stroke(STROKE)]
    if isinstance(module, Indicators):
        calls.append(lambda: module.on_call_button(lambda: None))
    for call in calls:
        with pytest.raises(DeviceClosed):
            call()


def test_info_and_identify_name_the_same_unit(any_bench):
    module = any_bench.make()
    with module:
        info = module.info()
        assert isinstance(info, ModuleInfo)
        assert info.kind is module.kind
        assert info.driver and info.model and info.serial
        assert isinstance(info.serial_source, str)
        identified = module.identify()
        assert isinstance(identified, ModuleInfo)
        assert identified.identity == info.identity
        assert module.info().identity == identified.identity


def test_health_ok_when_open_failed_closed_when_closed(any_bench):
    module = any_bench.make()
    before = module.health()
    assert isinstance(before, Health) and before.status is HealthStatus.FAILED
    with module:
        health = module.health()
        assert health.status is HealthStatus.OK, health.detail
    after = module.health()
    assert after.status is HealthStatus.FAILED and after.detail == "closed"


def test_self_test_passes_and_never_raises(any_bench):
    module = any_bench.make()
    with module:
        result = module.self_test()
        assert isinstance(result, SelfTestResult)
        assert result.passed, result.detail
        assert result.duration_s >= 0
    closed = module.self_test()  # never raises: a closed module fails its self-test
    assert isinstance(closed, SelfTestResult) and not closed.passed


def test_stats_count_the_calls(any_bench):
    module = any_bench.make()
    with module:
        assert module.stats.calls == 0
        module.identify()
        module.self_test()
        assert module.stats.calls == 2
        assert module.stats.errors == 0 and module.stats.last_success_at is not None
        if isinstance(module, Camera | FingerprintReader):  # capture jobs are counted too
            exercise(any_bench, module)
            assert module.stats.calls == 3


def test_close_during_a_self_test_ends_it_within_a_second(any_bench):
    module = any_bench.make()
    module.open()
    results: list[SelfTestResult] = []
    tester = threading.Thread(target=lambda: results.append(module.self_test()))
    tester.start()
    time.sleep(0.02)
    closer = threading.Thread(target=module.close)
    start = time.monotonic()
    closer.start()
    tester.join(1.0)
    closer.join(1.0)
    assert not tester.is_alive() and not closer.is_alive()
    assert time.monotonic() - start < 1.0
    assert len(results) == 1 and isinstance(results[0], SelfTestResult)


def test_no_device_thread_remains_after_close(any_bench):
    module = any_bench.make()
    with module:
        module.self_test()  # the worker thread has started
        if isinstance(module, Camera):
            module.start_preview()
            assert wait_for(lambda: module.latest_frame() is not None)
        assert device_threads(module)
    assert wait_for(lambda: not device_threads(module), 1.0), device_threads(module)


# -- cameras ---------------------------------------------------------------------------------


def assert_frame(frame, camera) -> None:
    assert isinstance(frame, Frame)
    image = frame.image
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    assert frame.module == camera.info()


def test_camera_preview_streams_fresh_rgb_frames_and_stops(camera_bench):
    camera = camera_bench.make()
    with camera:
        assert camera.latest_frame() is None
        camera.start_preview()
        assert wait_for(lambda: camera.latest_frame() is not None), "no preview frame in 2 s"
        first = camera.latest_frame()
        assert_frame(first, camera)
        assert first.age() < 1.0
        assert wait_for(lambda: camera.latest_frame().captured_at > first.captured_at)
        assert camera.latest_frame().age() < 1.0
        camera.stop_preview()
        time.sleep(0.15)  # a grab in progress at the stop may still land
        last = camera.latest_frame()
        time.sleep(0.3)
        assert camera.latest_frame() is last or camera.latest_frame() is None


def test_camera_keeps_no_frame_from_before_a_reopen(camera_bench):
    camera = camera_bench.make()
    with camera:
        camera.start_preview()
        assert wait_for(lambda: camera.latest_frame() is not None)
    assert camera.latest_frame() is None
    with camera:
        assert camera.latest_frame() is None
        assert_frame(camera.still(deadline_s=2.0).result(), camera)


def test_camera_still_is_a_frame_of_this_camera(camera_bench):
    camera = camera_bench.make()
    with camera:
        job = camera.still()
        assert isinstance(job, Job)
        assert_frame(job.result(), camera)
        camera.start_preview()
        assert_frame(camera.still(deadline_s=2.0).result(), camera)  # during the preview


def test_camera_still_past_its_deadline_is_a_capture_timeout(camera_bench):
    camera = camera_bench.make_slow()
    with camera:
        error, seconds = timed(lambda: camera.still(deadline_s=0.1).result())
        assert isinstance(error, CaptureTimeout), repr(error)
        assert seconds < 1.0


def assert_close_from_another_thread_ends(module, job: Job) -> None:
    """close() on another thread ends ``job`` within a second (cancelled or a driver
    error, never its own timeout), and leaves no thread of the module behind."""
    start = time.monotonic()
    closer = threading.Thread(target=module.close)
    closer.start()
    error, _ = timed(lambda: job.result(timeout=2.0))
    seconds = time.monotonic() - start
    assert isinstance(error, CaptureCancelled | DriverError), repr(error)
    assert not isinstance(error, CaptureTimeout), repr(error)  # ended by the close
    assert seconds < 1.0
    closer.join(2.0)
    assert module.closed and not closer.is_alive()
    assert wait_for(lambda: not device_threads(module), 1.0), device_threads(module)


def test_camera_close_from_another_thread_ends_a_waiting_still(camera_bench):
    camera = camera_bench.make_slow()
    camera.open()
    job = camera.still(deadline_s=10.0)
    time.sleep(0.1)
    assert_close_from_another_thread_ends(camera, job)


# -- fingerprint readers -----------------------------------------------------------------------


def test_reader_captures_a_finger_in_phases(reader_bench):
    reader = reader_bench.make()
    with reader:
        reader_bench.citizen(reader, True)
        phases: list[FingerPhase] = []
        capture = reader.capture(reader_bench.on_phase(reader, phases)).result()
        assert isinstance(capture, FingerprintCapture)
        assert capture.outcome is Outcome.CAPTURED
        assert capture.image.shape == PRINT_SHAPE and capture.image.dtype == np.uint8
        assert capture.module == reader.info()
        assert phases[-3:] == [FingerPhase.WAITING, FingerPhase.DETECTED, FingerPhase.LIFT]
        assert phases[:-3] in ([], [FingerPhase.LIFT_FIRST])


def test_reader_no_finger_within_wait_s(reader_bench):
    reader = reader_bench.make(wait_s=0.3)
    with reader:
        reader_bench.citizen(reader, False)
        phases: list[FingerPhase] = []
        capture, seconds = timed(
            lambda: reader.capture(reader_bench.on_phase(reader, phases)).result()
        )
        assert isinstance(capture, FingerprintCapture), repr(capture)
        assert capture.outcome is Outcome.NO_FINGER and capture.image is None
        assert phases == [FingerPhase.WAITING]
        assert 0.3 <= seconds < 1.5


def waiting_capture(bench, reader) -> Job:
    """A capture waiting for a finger that does not come."""
    bench.citizen(reader, False)
    waiting = threading.Event()
    record: list[FingerPhase] = []
    on_phase = bench.on_phase(reader, record)

    def phase(p: FingerPhase) -> None:
        on_phase(p)
        if p is FingerPhase.WAITING:
            waiting.set()

    job = reader.capture(phase)
    assert waiting.wait(2.0), "the reader never waited for a finger"
    time.sleep(0.1)
    return job


def test_reader_cancelled_capture_ends_quickly_and_the_next_works(reader_bench):
    reader = reader_bench.make(wait_s=10.0)
    with reader:
        job = waiting_capture(reader_bench, reader)
        job.cancel()
        error, seconds = timed(lambda: job.result(timeout=2.0))
        assert isinstance(error, CaptureCancelled), repr(error)
        assert seconds < 0.5
        reader_bench.citizen(reader, True)
        capture = reader.capture(reader_bench.on_phase(reader, [])).result()
        assert capture.outcome is Outcome.CAPTURED


def test_reader_close_from_another_thread_ends_a_waiting_capture(reader_bench):
    reader = reader_bench.make(wait_s=10.0)
    reader.open()
    assert_close_from_another_thread_ends(reader, waiting_capture(reader_bench, reader))


# -- signature pads ----------------------------------------------------------------------------


def test_pad_collects_the_strokes_drawn(pad_bench):
    pad = pad_bench.make()
    with pad:
        pad.begin()
        pad.add_stroke(STROKE)
        pad.add_stroke(STROKE[:2])
        capture = pad.collect(timeout=1.0)
        assert isinstance(capture, SignatureCapture)
        assert capture.outcome is Outcome.CAPTURED
        assert capture.strokes == (STROKE, STROKE[:2])
        assert capture.module == pad.info()
        pad.begin()  # a new, empty signature
        empty = pad.collect(timeout=1.0)
        assert empty.outcome is Outcome.NO_SIGNATURE and empty.strokes == ()


def test_pad_with_nothing_drawn_is_no_signature(pad_bench):
    pad = pad_bench.make()
    with pad:
        pad.begin()
        assert pad.collect(timeout=0.1).outcome is Outcome.NO_SIGNATURE


# -- indicators -------------------------------------------------------------------------------


def test_indicators_signal_returns_at_once(lights_bench):
    lights = lights_bench.make()
    with lights:
        for signal in [*Signal, *reversed(Signal)]:
            _, seconds = timed(lambda s=signal: lights.signal(s))
            assert seconds < 0.05, f"{signal} took {seconds:.3f} s"


def test_indicators_call_button_runs_the_callback(lights_bench):
    lights = lights_bench.make()
    with lights:
        pressed = threading.Event()
        lights.on_call_button(pressed.set)
        lights_bench.press(lights)
        assert pressed.wait(1.0), "the callback did not run"
