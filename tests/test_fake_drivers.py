"""Contract and behaviour tests for the fake backends (and the touchscreen pad)."""

from __future__ import annotations

import importlib
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from kiosk.drivers.base import (
    Camera,
    FingerPhase,
    FingerprintCapture,
    FingerprintReader,
    Frame,
    HealthStatus,
    Indicators,
    ModuleBase,
    ModuleKind,
    Outcome,
    Signal,
    SignatureCapture,
    SignaturePad,
)
from kiosk.drivers.camera.fake import BehaviourScript, FakeCamera
from kiosk.drivers.fingerprint.fake import FakeFingerprintReader, simulated_template
from kiosk.drivers.indicators.fake import FakeIndicators
from kiosk.drivers.signature.fake import FakeSignaturePad, scripted_signature
from kiosk.drivers.signature.touch import TouchSignaturePad
from kiosk.errors import CaptureCancelled, CaptureTimeout, DeviceClosed, DeviceUnavailable
from kiosk.quality import assess_signature
from kiosk.quality.matching import SAME_FINGER_THRESHOLD, make_template, match_score

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Backend:
    make: Callable[[], ModuleBase]
    protocol: type
    kind: ModuleKind
    driver: str
    simulated: bool
    use: Callable[[ModuleBase], object]  # a call that needs the device open


def _sign(pad) -> object:
    pad.begin()
    pad.add_stroke([(0.1, 0.5, 0.0), (0.9, 0.5, 0.5)])
    return pad.collect(timeout=1.0)


BACKENDS = {
    "camera": Backend(
        FakeCamera, Camera, ModuleKind.CAMERA, "fake", True, lambda d: d.still(1.0).result()
    ),
    "fingerprint": Backend(
        FakeFingerprintReader,
        FingerprintReader,
        ModuleKind.FINGERPRINT,
        "fake",
        True,
        lambda d: d.capture().result(),
    ),
    "signature": Backend(FakeSignaturePad, SignaturePad, ModuleKind.SIGNATURE, "fake", True, _sign),
    "touch": Backend(TouchSignaturePad, SignaturePad, ModuleKind.SIGNATURE, "touch", False, _sign),
    "indicators": Backend(
        FakeIndicators,
        Indicators,
        ModuleKind.INDICATORS,
        "fake",
        True,
        lambda d: d.signal(Signal.IDLE),
    ),
}


@pytest.fixture(params=list(BACKENDS), ids=list(BACKENDS))
def backend(request) -> Backend:
    return BACKENDS[request.param]


# --- the contract every backend keeps ---------------------------------------------


def test_satisfies_its_protocol(backend):
    device = backend.make()
    assert isinstance(device, backend.protocol)
    assert device.kind is backend.kind


def test_open_and_close_are_idempotent(backend):
    device = backend.make()
    assert device.closed
    device.open()
    device.open()
    assert not device.closed
    backend.use(device)
    device.close()
    device.close()
    assert device.closed


def test_context_manager_opens_and_closes(backend):
    device = backend.make()
    with device as entered:
        assert entered is device
        assert not device.closed
        backend.use(device)
    assert device.closed


def test_use_before_open_or_after_close_raises_device_closed(backend):
    device = backend.make()
    with pytest.raises(DeviceClosed):
        backend.use(device)
    device.open()
    device.close()
    with pytest.raises(DeviceClosed):
        backend.use(device)


def test_info_describes_the_module(backend):
    info = backend.make().info()
    assert info.kind is backend.kind
    assert info.driver == backend.driver
    assert info.simulated is backend.simulated
    assert info.model and info.serial
    assert info.as_dict()["simulated"] is backend.simulated


def test_serial_comes_from_the_config():
    for make in (FakeCamera, FakeFingerprintReader, FakeSignaturePad, FakeIndicators):
        assert make(serial="BOX-7").info().serial == "BOX-7"
    assert TouchSignaturePad(serial="DSI-7in-0042").info().serial == "DSI-7in-0042"


def test_health_is_ok_when_open_and_failed_not_raised_when_closed(backend):
    device = backend.make()
    assert device.health().status is HealthStatus.FAILED
    with device:
        assert device.health().ok
    closed = device.health()
    assert closed.status is HealthStatus.FAILED
    assert "closed" in closed.detail


def test_self_test_passes_when_open_and_fails_when_closed(backend):
    device = backend.make()
    assert not device.self_test().passed
    with device:
        result = device.self_test()
        assert result.passed, result.detail
        assert result.detail
        assert result.duration_s >= 0


def test_entry_points_name_these_classes():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    groups = config["project"]["entry-points"]
    expected = {
        ("camera", "fake"): FakeCamera,
        ("fingerprint", "fake"): FakeFingerprintReader,
        ("signature", "fake"): FakeSignaturePad,
        ("signature", "touch"): TouchSignaturePad,
        ("indicators", "fake"): FakeIndicators,
    }
    for (kind, name), cls in expected.items():
        module_name, class_name = groups[f"rekam_kiosk.{kind}"][name].split(":")
        assert getattr(importlib.import_module(module_name), class_name) is cls


# --- scripts ----------------------------------------------------------------------


def test_behaviour_script_repeats_its_last_entry():
    script = BehaviourScript(["a", "b"], valid=("a", "b"))
    assert [script.advance()[0] for _ in range(5)] == ["a", "b", "b", "b", "b"]
    assert script.calls == 5


def test_behaviour_script_peek_does_not_consume():
    script = BehaviourScript(["a", "b"], valid=("a", "b"))
    assert script.peek() == "a"
    assert script.peek() == "a"
    assert script.advance() == ("a", False)
    assert script.peek() == "b"


def test_behaviour_script_accepts_a_single_name():
    assert BehaviourScript("b", valid=("a", "b")).advance() == ("b", False)


@pytest.mark.parametrize(
    ("make", "valid"),
    [
        (FakeCamera, "face, no_face, dark, fail"),
        (FakeFingerprintReader, "good, good_1, good_2, good_3, good_4, good_5, good_6, good_7"),
        (FakeSignaturePad, "drawn, blank"),
    ],
)
def test_unknown_behaviour_is_a_clear_error(make, valid):
    with pytest.raises(ValueError, match="smile") as raised:
        make(script=["smile"])
    assert valid in str(raised.value)
    with pytest.raises(ValueError, match="empty script"):
        make(script=[])


@pytest.mark.parametrize("make", [FakeCamera, FakeFingerprintReader])
def test_fail_on_call_counts_from_one(make):
    with pytest.raises(ValueError, match="from 1"):
        make(fail_on_call=0)


# --- camera -----------------------------------------------------------------------


def _grey_mean(image: np.ndarray) -> float:
    return float(image.mean())


def test_camera_follows_its_script_and_repeats_the_last_entry():
    with FakeCamera(script=["dark", "no_face", "face"]) as camera:
        frames = [camera.still(1.0).result().image for _ in range(5)]
    assert _grey_mean(frames[0]) < 25  # dark
    assert not np.array_equal(frames[1], frames[2])  # no_face, then face
    assert all(np.array_equal(frames[2], later) for later in frames[3:])


def test_camera_stills_are_still_size_rgb_read_only_copies_of_the_preview_scene():
    with FakeCamera() as camera:
        first, second = camera.still(1.0).result(), camera.still(1.0).result()
        camera.start_preview()
        deadline = time.monotonic() + 2
        while camera.latest_frame() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        preview = camera.latest_frame()
    assert first.image.shape == (960, 1280, 3)
    assert camera.still_scale == 2.0
    assert preview is not None and preview.image.shape == (480, 640, 3)
    shrunk = cv2.resize(first.image, (640, 480), interpolation=cv2.INTER_AREA)
    assert np.abs(shrunk.astype(int) - preview.image).mean() < 3  # the same scene
    assert first.image.dtype == np.uint8
    assert not first.image.flags.writeable
    assert first.image is not second.image
    assert first.module.simulated


def test_camera_still_size_must_keep_the_preview_shape():
    with pytest.raises(ValueError, match="4:3"):
        FakeCamera(still_size=(1280, 720))
    assert FakeCamera(still_size=(640, 480)).still_scale == 1.0


def test_camera_dark_frame_has_grey_mean_near_15():
    with FakeCamera(script=["dark"]) as camera:
        frame = camera.still(1.0).result()
    grey = frame.image @ np.array([0.299, 0.587, 0.114])
    assert 12 <= grey.mean() <= 18


def test_camera_fail_behaviour_raises_device_unavailable_and_health_follows_the_facts():
    with FakeCamera(script=["face", "fail", "face"]) as camera:
        camera.still(1.0).result()
        assert camera.health().ok  # judged from what happened, not what the script holds
        assert not camera.self_test().passed  # the self-test looks at the device itself
        with pytest.raises(DeviceUnavailable, match="simulated"):
            camera.still(1.0).result()
        assert camera.health().status is HealthStatus.DEGRADED
        assert "simulated" in camera.health().detail
        assert camera.still(1.0).result().image.shape == (960, 1280, 3)
        assert camera.health().ok
        assert camera.stats.errors == 2 and camera.stats.consecutive_errors == 0


def test_three_failed_calls_in_a_row_make_a_module_failed():
    with FakeCamera(script=["fail"]) as camera:
        for _ in range(3):
            with pytest.raises(DeviceUnavailable):
                camera.still(1.0).result()
        assert camera.health().status is HealthStatus.FAILED
        assert camera.stats.consecutive_errors == 3 and camera.stats.last_success_at is None


def test_camera_preview_streams_the_scene_on_its_own_thread():
    with FakeCamera(script=["dark", "face"], fps=50) as camera:
        assert camera.latest_frame() is None
        camera.start_preview()
        deadline = time.monotonic() + 2.0
        while camera.latest_frame() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        first = camera.latest_frame()
        assert first is not None and _grey_mean(first.image) < 25  # what the next still sees
        assert first.age() < 1.0
        time.sleep(0.1)
        assert camera.latest_frame().captured_at > first.captured_at  # it keeps streaming
        assert camera.still(1.0).result() is not None  # stills run between frames
        assert [t.name for t in threading.enumerate()].count("camera-FakeCamera") == 1
        camera.stop_preview()
    assert "camera-FakeCamera" not in [t.name for t in threading.enumerate()]


def test_a_preview_that_stops_makes_the_camera_failed():
    with FakeCamera(script=["fail"], fps=50) as camera:
        camera.start_preview()
        assert camera.health().ok
        time.sleep(2.2)  # no frame comes: the supervisor's cue to reopen it
        health = camera.health()
        assert health.status is HealthStatus.FAILED and "no preview frame" in health.detail


def test_camera_fail_on_call_fails_only_that_call_and_consumes_its_entry():
    with FakeCamera(script=["dark", "no_face", "face"], fail_on_call=2) as camera:
        assert _grey_mean(camera.still(1.0).result().image) < 25
        with pytest.raises(OSError, match="call 2"):  # DeviceUnavailable is an OSError
            camera.still(1.0).result()
        third = camera.still(1.0).result().image
        fourth = camera.still(1.0).result().image
    assert np.array_equal(third, fourth)  # "face", the repeating last entry


def test_camera_self_test_does_not_consume_the_script():
    with FakeCamera(script=["dark", "face"]) as camera:
        assert camera.self_test().passed
        assert _grey_mean(camera.still(1.0).result().image) < 25


def test_camera_delay_imitates_latency_and_times_out():
    with FakeCamera(delay=0.05) as camera:
        start = time.monotonic()
        camera.still(1.0).result()
        assert time.monotonic() - start >= 0.05
        start = time.monotonic()
        with pytest.raises(CaptureTimeout):
            camera.still(0.01).result()
        assert time.monotonic() - start < 0.05


def test_fakes_do_not_sleep_by_default():
    start = time.monotonic()
    with FakeCamera() as camera, FakeFingerprintReader() as reader:
        for _ in range(20):
            camera.still(5.0).result()
            reader.capture().result()
    assert time.monotonic() - start < 2.0


# --- fingerprint reader -----------------------------------------------------------


def test_reader_good_cycles_through_ten_different_fingers():
    with FakeFingerprintReader() as reader:
        captures = [reader.capture().result() for _ in range(11)]
    images = [capture.image for capture in captures]
    templates = [make_template(image) for image in images[:10]]
    for i in range(10):
        for j in range(i + 1, 10):
            assert match_score(templates[i], templates[j]) < SAME_FINGER_THRESHOLD
    assert np.array_equal(images[10], images[0])
    assert all(capture.outcome is Outcome.CAPTURED for capture in captures)


def test_reader_images_are_r307_sized_grayscale_at_500_dpi():
    with FakeFingerprintReader(script=["good", "poor"]) as reader:
        for _ in range(2):
            capture = reader.capture().result()
            assert capture.image.shape == (288, 256)
            assert capture.image.dtype == np.uint8
            assert not capture.image.flags.writeable
            assert capture.dpi == 500


def test_reader_template_is_a_stable_512_byte_digest():
    with FakeFingerprintReader() as reader:
        first = [reader.capture().result() for _ in range(10)]
        again = reader.capture().result()
    assert len(first[0].template) == 512
    assert again.template == first[0].template
    assert len({capture.template for capture in first}) == 10
    assert simulated_template(first[1].image) == first[1].template


def test_reader_no_finger_is_an_outcome_not_an_error():
    with FakeFingerprintReader(script=["no_finger", "good"]) as reader:
        capture = reader.capture().result()
        assert capture.outcome is Outcome.NO_FINGER
        assert capture.image is None
        assert capture.template == b""
        assert reader.capture().result().outcome is Outcome.CAPTURED


def test_reader_unplugged_raises_and_shows_in_health():
    with FakeFingerprintReader(script=["good", "unplugged"]) as reader:
        reader.capture().result()
        assert reader.health().ok
        assert not reader.self_test().passed
        for _ in range(3):  # the last entry repeats: it stays unplugged
            with pytest.raises(DeviceUnavailable):
                reader.capture().result()
        assert reader.health().status is HealthStatus.FAILED


def test_reader_fail_on_call():
    with FakeFingerprintReader(fail_on_call=3) as reader:
        reader.capture().result()
        reader.capture().result()
        with pytest.raises(DeviceUnavailable, match="call 3"):
            reader.capture().result()
        assert reader.capture().result().outcome is Outcome.CAPTURED


def test_reader_finger_later_than_the_wait_is_no_finger():
    with FakeFingerprintReader(delay=0.5, wait_s=0.05) as reader:
        start = time.monotonic()
        capture = reader.capture().result()
        assert capture.outcome is Outcome.NO_FINGER
        assert time.monotonic() - start < 0.3


def test_reader_reports_its_phases_in_order():
    phases = []
    with FakeFingerprintReader(script=["no_finger", "good"]) as reader:
        reader.capture(phases.append).result()
        assert phases == [FingerPhase.WAITING]
        phases.clear()
        reader.capture(phases.append).result()
    assert phases == [FingerPhase.WAITING, FingerPhase.DETECTED, FingerPhase.LIFT]


def test_a_cancelled_capture_ends_at_once_and_the_reader_goes_on():
    with FakeFingerprintReader(delay=5.0) as reader:
        job = reader.capture()
        time.sleep(0.05)
        start = time.monotonic()
        job.cancel()
        with pytest.raises(CaptureCancelled):
            job.result()
        assert time.monotonic() - start < 0.5
        assert reader.health().ok  # a cancel is not the device's fault


def test_close_from_another_thread_ends_a_waiting_capture():
    reader = FakeFingerprintReader(delay=5.0)
    reader.open()
    job = reader.capture()
    time.sleep(0.05)
    start = time.monotonic()
    threading.Thread(target=reader.close).start()
    with pytest.raises(CaptureCancelled):
        job.result()
    assert time.monotonic() - start < 0.5
    with pytest.raises(DeviceClosed):
        reader.capture()


# --- signature pads ---------------------------------------------------------------


STROKE = [(0.1, 0.5, 0.0), (0.5, 0.2, 0.2), (0.9, 0.6, 0.4)]


@pytest.mark.parametrize("make", [TouchSignaturePad, FakeSignaturePad])
def test_pad_returns_the_fed_strokes(make):
    with make(aspect=2.5) as pad:
        pad.begin()
        pad.add_stroke(STROKE)
        pad.add_stroke([])  # a touch that drew nothing
        capture = pad.collect(timeout=1.0)
    assert capture.outcome is Outcome.CAPTURED
    assert capture.strokes == (tuple(STROKE),)
    assert capture.aspect == 2.5


@pytest.mark.parametrize("make", [TouchSignaturePad, FakeSignaturePad])
def test_pad_begin_clears_the_strokes(make):
    with make() as pad:
        pad.begin()
        pad.add_stroke(STROKE)
        pad.begin()
        assert pad.collect(timeout=1.0).outcome is Outcome.NO_SIGNATURE


def test_touch_pad_clamps_points_to_the_box_and_rejects_malformed_ones():
    with TouchSignaturePad() as pad:
        pad.add_stroke([(-0.2, 1.3, 0.0), (0.5, 0.5, 0.1)])
        assert pad.collect(timeout=1.0).strokes[0][0] == (0.0, 1.0, 0.0)
        with pytest.raises(ValueError, match=r"\(x, y, t\)"):
            pad.add_stroke([(0.5, 0.5)])
        with pytest.raises(ValueError, match="finite"):
            pad.add_stroke([(float("nan"), 0.5, 0.0)])
        assert len(pad.collect(timeout=1.0).strokes) == 1


def test_touch_pad_with_nothing_drawn_has_no_signature():
    with TouchSignaturePad() as pad:
        pad.begin()
        capture = pad.collect(timeout=1.0)
    assert capture.outcome is Outcome.NO_SIGNATURE
    assert capture.strokes == ()


@pytest.mark.parametrize("script", [["drawn"], ["blank"], ["drawn", "blank"]])
def test_fake_pad_with_nothing_drawn_has_no_signature_whatever_its_script(script):
    """Like the real screen: "Selesai" on an empty box is no signature, never an invented one."""
    with FakeSignaturePad(script=script) as pad:
        assert pad.collect(timeout=1.0).outcome is Outcome.NO_SIGNATURE  # before any begin()
        for _ in range(3):
            pad.begin()
            capture = pad.collect(timeout=1.0)
            assert capture.outcome is Outcome.NO_SIGNATURE
            assert capture.strokes == ()


def test_fake_pad_sign_draws_by_script_one_entry_per_signature():
    with FakeSignaturePad(script=["blank", "drawn"]) as pad:
        pad.begin()
        pad.sign()  # the citizen leaves the box empty
        assert pad.collect(timeout=1.0).outcome is Outcome.NO_SIGNATURE
        pad.begin()
        pad.sign()
        drawn = pad.collect(timeout=1.0)
        pad.begin()
        pad.sign()
        again = pad.collect(timeout=1.0)
    assert drawn.outcome is Outcome.CAPTURED
    assert drawn.strokes == scripted_signature(3.0)
    assert again.strokes == drawn.strokes


def test_fake_pad_sign_feeds_the_strokes_as_touches_do():
    fed: list[tuple] = []
    with FakeSignaturePad(aspect=2.0) as pad:
        touch = pad.add_stroke
        pad.add_stroke = lambda stroke: (fed.append(tuple(stroke)), touch(stroke))
        pad.begin()
        pad.add_stroke(STROKE)  # the citizen may draw, then the signer signs too
        pad.sign()
        capture = pad.collect(timeout=1.0)
    assert fed == [tuple(STROKE), *scripted_signature(2.0)]
    assert capture.strokes == (tuple(STROKE), *scripted_signature(2.0))


def test_fake_pad_sign_without_begin_uses_the_first_entry():
    with FakeSignaturePad(script=["drawn", "blank"]) as pad:
        pad.sign()
        assert pad.collect(timeout=1.0).outcome is Outcome.CAPTURED
        pad.begin()
        pad.sign()
        assert pad.collect(timeout=1.0).outcome is Outcome.NO_SIGNATURE


def test_fake_pad_sign_on_a_closed_pad_raises_device_closed():
    pad = FakeSignaturePad()
    with pytest.raises(DeviceClosed):
        pad.sign()


def test_scripted_signature_is_plausible_and_passes_the_check():
    strokes = scripted_signature(3.0)
    assert len(strokes) >= 2
    quality = assess_signature(strokes, aspect=3.0)
    assert quality.ok, quality
    assert quality.ink_length > 1.0
    times = [point[2] for stroke in strokes for point in stroke]
    assert times == sorted(times)
    coords = np.array([point[:2] for stroke in strokes for point in stroke])
    assert coords.min() >= 0.0 and coords.max() <= 1.0


def test_fake_pad_is_not_a_copy_of_the_touch_pad():
    assert issubclass(FakeSignaturePad, TouchSignaturePad)
    assert "add_stroke" not in vars(FakeSignaturePad)
    assert "collect" not in vars(FakeSignaturePad)


def test_touch_pad_keeps_time_running_forward_within_a_stroke():
    """A wall clock stepped back mid-stroke must not make a stroke the contract refuses."""
    with TouchSignaturePad() as pad:
        pad.add_stroke([(0.1, 0.5, 10.0), (0.5, 0.5, 10.2), (0.9, 0.5, 9.9)])
        assert [p[2] for p in pad.collect(timeout=1.0).strokes[0]] == [10.0, 10.2, 10.2]


@pytest.mark.parametrize("aspect", [0.0, -1.0, float("nan"), float("inf"), 1e-9, 1e9])
def test_touch_pad_refuses_an_aspect_it_could_never_report(aspect):
    with pytest.raises(ValueError, match="aspect"):
        TouchSignaturePad(aspect=aspect)


# --- the result types refuse data no module should give ----------------------------


INFO = FakeCamera().info()


def _huge(shape: tuple[int, ...]) -> np.ndarray:
    return np.broadcast_to(np.zeros((1,) * len(shape), np.uint8), shape)


BAD_FRAMES = {
    "none": None,
    "list": [[[0, 0, 0]] * 32] * 32,
    "empty": np.zeros((0, 0, 3), np.uint8),
    "one_row": np.zeros((1, 640, 3), np.uint8),
    "too_narrow": np.zeros((480, 15, 3), np.uint8),
    "gray": np.zeros((480, 640), np.uint8),
    "bgra": np.zeros((480, 640, 4), np.uint8),
    "float": np.zeros((480, 640, 3), np.float32),
    "int64": np.zeros((480, 640, 3), np.int64),
    "huge": _huge((50_000, 50_000, 3)),
}


@pytest.mark.parametrize("image", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
def test_frame_refuses_what_is_not_a_usable_camera_image(image):
    with pytest.raises(ValueError, match="frame"):
        Frame(image=image, module=INFO)


def test_frame_takes_the_smallest_usable_image_and_freezes_it():
    image = np.zeros((16, 16, 3), np.uint8)
    assert Frame(image=image, module=INFO).image.shape == (16, 16, 3)
    assert not image.flags.writeable


BAD_PRINTS = {
    "none": None,
    "empty": np.zeros((0, 0), np.uint8),
    "a_strip": np.zeros((8, 256), np.uint8),
    "colour": np.zeros((288, 256, 3), np.uint8),
    "float": np.zeros((288, 256), np.float64),
    "uint16": np.zeros((288, 256), np.uint16),
    "huge": _huge((50_000, 50_000)),
}


@pytest.mark.parametrize("image", BAD_PRINTS.values(), ids=BAD_PRINTS.keys())
def test_fingerprint_capture_refuses_what_is_not_a_usable_impression(image):
    with pytest.raises(ValueError, match="fingerprint"):
        FingerprintCapture(outcome=Outcome.CAPTURED, module=INFO, image=image)
    if image is not None:  # an image comes with NO_FINGER too: it must still be one
        with pytest.raises(ValueError, match="fingerprint"):
            FingerprintCapture(outcome=Outcome.NO_FINGER, module=INFO, image=image)


def test_fingerprint_capture_without_a_finger_needs_no_image():
    assert FingerprintCapture(outcome=Outcome.NO_FINGER, module=INFO).image is None


NAN, INF = float("nan"), float("inf")
BAD_STROKES = {
    "x_nan": (((0.1, 0.5, 0.0), (NAN, 0.5, 0.1)),),
    "x_inf": (((0.1, 0.5, 0.0), (INF, 0.5, 0.1)),),
    "x_1e300": (((0.1, 0.5, 0.0), (1e300, 0.5, 0.1)),),
    "y_nan": (((0.1, NAN, 0.0), (0.9, 0.5, 0.1)),),
    "y_negative": (((0.1, -0.2, 0.0), (0.9, 0.5, 0.1)),),
    "x_past_the_edge": (((0.1, 0.5, 0.0), (1.2, 0.5, 0.1)),),
    "t_nan": (((0.1, 0.5, NAN), (0.9, 0.5, 0.1)),),
    "t_inf": (((0.1, 0.5, 0.0), (0.9, 0.5, INF)),),
    "t_runs_back": (((0.1, 0.5, 0.5), (0.9, 0.5, 0.1)),),
    "no_time": (((0.1, 0.5), (0.9, 0.5)),),
    "none_point": ((None,),),
    "none": None,
}


@pytest.mark.parametrize("strokes", BAD_STROKES.values(), ids=BAD_STROKES.keys())
def test_signature_capture_refuses_strokes_no_pen_could_draw(strokes):
    with pytest.raises(ValueError, match="stroke"):
        SignatureCapture(outcome=Outcome.CAPTURED, module=INFO, strokes=strokes)


@pytest.mark.parametrize("aspect", [NAN, INF, -INF, 0.0, -3.0, 1e300, 1e-300, None])
def test_signature_capture_refuses_an_aspect_it_cannot_be_drawn_with(aspect):
    with pytest.raises(ValueError, match="aspect"):
        SignatureCapture(
            outcome=Outcome.CAPTURED, module=INFO, strokes=(tuple(STROKE),), aspect=aspect
        )


def test_signature_capture_outcome_matches_its_strokes():
    with pytest.raises(ValueError, match="'captured' needs at least one point"):
        SignatureCapture(outcome=Outcome.CAPTURED, module=INFO, strokes=())
    with pytest.raises(ValueError, match="'no_signature' has no strokes"):
        SignatureCapture(outcome=Outcome.NO_SIGNATURE, module=INFO, strokes=(tuple(STROKE),))


def test_signature_capture_keeps_its_strokes_as_plain_tuples_of_floats():
    strokes = [np.array(STROKE, np.float32), [[0.5, 0.5, 1]]]
    capture = SignatureCapture(outcome=Outcome.CAPTURED, module=INFO, strokes=strokes)
    assert np.allclose(capture.strokes[0], STROKE)  # float32 in, nearest float out
    assert capture.strokes[1] == ((0.5, 0.5, 1.0),)
    assert isinstance(capture.strokes, tuple)
    assert all(isinstance(stroke, tuple) for stroke in capture.strokes)
    assert all(type(value) is float for stroke in capture.strokes for p in stroke for value in p)


# --- indicators -------------------------------------------------------------------


def test_indicators_record_every_signal():
    with FakeIndicators() as lights:
        assert lights.current is None
        lights.signal(Signal.WORKING)
        lights.signal(Signal.SUCCESS)
        lights.signal("retry")
        assert lights.history == [Signal.WORKING, Signal.SUCCESS, Signal.RETRY]
        assert lights.current is Signal.RETRY
        with pytest.raises(ValueError):
            lights.signal("disco")
        assert lights.current is Signal.RETRY


def test_call_button_press_runs_the_callback():
    pressed: list[str] = []
    with FakeIndicators() as lights:
        assert lights.press_call_button() is False  # nobody listening yet
        lights.on_call_button(lambda: pressed.append("call"))
        assert lights.press_call_button() is True
        assert lights.press_call_button() is True
        lights.on_call_button(None)
        assert lights.press_call_button() is False
    assert pressed == ["call", "call"]


def test_call_button_callback_may_signal_back():
    with FakeIndicators() as lights:
        lights.on_call_button(lambda: lights.signal(Signal.ATTENTION))
        lights.press_call_button()
        assert lights.current is Signal.ATTENTION


def test_closed_indicators_hear_no_presses():
    pressed: list[bool] = []
    lights = FakeIndicators()
    with lights:
        lights.on_call_button(lambda: pressed.append(True))
    assert lights.press_call_button() is False
    assert pressed == []
    with pytest.raises(DeviceClosed):
        lights.on_call_button(lambda: None)
