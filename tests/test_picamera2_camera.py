"""The picamera2 backend, run against a stand-in for Picamera2 (tests/picamera2_standin.py).

The backend's own code runs unchanged; only picamera2's surface is faked, in
its real memory layouts and with its real waits and flushes. One test, marked
``hardware``, opens a real camera module and is skipped without one.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from picamera2_standin import CameraRig, encode
from support import wait_for

from kiosk.drivers import registry
from kiosk.drivers.base import Camera, HealthStatus, ModuleKind
from kiosk.drivers.camera import picamera2 as backend
from kiosk.drivers.camera import stream
from kiosk.drivers.camera.picamera2 import Picamera2Camera, yuv420_to_rgb
from kiosk.errors import CaptureCancelled, CaptureTimeout, DeviceUnavailable

RED = (255, 0, 0)
QUADRANTS = {  # where in the frame (fractions of width, height), which colour
    (0.25, 0.25): (255, 0, 0),
    (0.75, 0.25): (0, 255, 0),
    (0.25, 0.75): (0, 0, 255),
    (0.75, 0.75): (255, 255, 255),
}


def first_frame(camera, timeout: float = 2.0):
    assert wait_for(lambda: camera.latest_frame() is not None, timeout), "no preview frame"
    return camera.latest_frame()


def assert_colour(image: np.ndarray, where: tuple[float, float], rgb, tolerance: int = 3):
    height, width = image.shape[:2]
    pixel = image[int(where[1] * height), int(where[0] * width)].astype(int)
    assert np.all(np.abs(pixel - np.array(rgb)) <= tolerance), f"{pixel} at {where}, not {rgb}"


@pytest.fixture
def rig():
    rig = CameraRig()
    yield rig
    rig.release_stop()
    rig.resume()


@pytest.fixture
def make_camera(rig):
    made = []

    def make(**options) -> Picamera2Camera:
        camera = Picamera2Camera(picamera2_factory=rig, **options)
        made.append(camera)
        return camera

    yield make
    for camera in made:
        camera.close()


# -- colours, sizes, freshness ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("preview_format", "platform"),
    [("YUV420", "vc4"), ("XBGR8888", "pisp"), ("RGB888", "pisp"), ("BGR888", "pisp")],
)
def test_a_red_picture_comes_out_red_in_preview_and_still(
    rig, make_camera, preview_format, platform
):
    rig.platform = platform
    rig.image = np.full((480, 640, 3), RED, np.uint8)
    with make_camera(preview_format=preview_format) as camera:
        camera.start_preview()
        preview = first_frame(camera).image
        still = camera.still().result().image
    assert_colour(preview, (0.5, 0.5), RED)
    assert_colour(still, (0.5, 0.5), RED)


@pytest.mark.parametrize(("preview_format", "platform"), [("YUV420", "vc4"), ("XBGR8888", "pisp")])
def test_quadrants_keep_their_colour_and_place(rig, make_camera, preview_format, platform):
    rig.platform = platform
    # 336 x 252 pads each YUV row to a stride of 384: the padding must not show
    with make_camera(preview_format=preview_format, preview_size=[336, 252]) as camera:
        camera.start_preview()
        preview = first_frame(camera).image
        still = camera.still().result().image
    assert preview.shape == (252, 336, 3)
    for where, rgb in QUADRANTS.items():
        assert_colour(preview, where, rgb)
        assert_colour(still, where, rgb)


def test_yuv_is_read_as_full_range():
    # sYCC (the preview's colour space) maps Y = 128 to grey 128; OpenCV's own I420
    # conversion (video range) would give 130, and clip the highlights.
    grey = np.full((64, 96, 3), 128, np.uint8)
    rgb = yuv420_to_rgb(encode(grey, "YUV420", (96, 64)), 96, 64)
    assert rgb.shape == (64, 96, 3)
    assert np.abs(rgb.astype(int) - 128).max() <= 1


def test_preview_updates_and_its_frames_are_fresh(make_camera):
    with make_camera() as camera:
        assert camera.latest_frame() is None
        camera.start_preview()
        first = first_frame(camera)
        assert wait_for(lambda: camera.latest_frame().captured_at > first.captured_at)
        latest = camera.latest_frame()
        assert latest.age() < 0.2
        assert latest.image.shape == (480, 640, 3)
        assert latest.module.model == "imx708"
        assert camera.health().status is HealthStatus.OK


def test_still_has_the_still_size_from_the_one_configuration(rig, make_camera):
    with make_camera(still_size=[2028, 1520], preview_size=[640, 480]) as camera:
        frame = camera.still().result()
    assert frame.image.shape == (1520, 2028, 3)
    assert frame.module.simulated  # the stand-in says so; a real camera's frames are not
    config = rig.current.config
    assert config["main"] == {"format": "RGB888", "size": (2028, 1520)}
    assert config["lores"] == {"format": "YUV420", "size": (640, 480)}
    assert config["queue"] is False and config["display"] is None
    assert rig.current.starts == 1  # never stopped and reconfigured for a still


def test_still_without_preview_and_many_in_a_row(rig, make_camera):
    with make_camera() as camera:
        shapes = [camera.still(1.0).result().image.shape for _ in range(5)]
    assert shapes == [(1232, 1640, 3)] * 5
    assert rig.queued("main") == 0


# -- faults -----------------------------------------------------------------------------------


def test_still_timing_out_raises_capture_timeout_and_leaves_nothing_queued(rig, make_camera):
    with make_camera() as camera:
        camera.start_preview()
        first_frame(camera)
        rig.stall()
        start = time.monotonic()
        with pytest.raises(CaptureTimeout):
            camera.still(deadline_s=0.4).result()
        assert time.monotonic() - start < 0.4 + 0.5
        assert rig.queued("main") == 0  # flushed, not left in picamera2's queue
        assert rig.flushes >= 1
        assert camera.health().status is not HealthStatus.OK
        rig.resume()
        assert camera.still(deadline_s=1.0).result().image.shape == (1232, 1640, 3)
        assert rig.queued("main") == 0


def test_frames_that_stop_make_it_failed_and_a_reopen_recovers(rig, make_camera, monkeypatch):
    monkeypatch.setattr(stream, "STALE_AFTER_S", 0.3)
    camera = make_camera()
    camera.open()
    camera.start_preview()
    first_frame(camera)
    rig.stall(until_reopen=True)  # the pipeline wedged: only a new Picamera2 helps
    assert wait_for(lambda: camera.health().status is HealthStatus.FAILED)
    assert "no preview frame" in camera.health().detail

    camera.close()  # what the supervisor does
    assert rig.current.closed and rig.current.stops == 1
    assert camera.health().status is HealthStatus.FAILED  # closed
    camera.open()
    camera.start_preview()
    assert len(rig.instances) == 2 and rig.open_cameras == 1  # a fresh object
    first_frame(camera)
    assert wait_for(lambda: camera.health().status is HealthStatus.OK)
    assert camera.still(1.0).result().image.shape == (1232, 1640, 3)


def test_close_is_idempotent_and_reopen_works_many_times(rig, make_camera):
    camera = make_camera()
    for _ in range(3):
        camera.open()
        camera.start_preview()
        first_frame(camera)
        camera.close()
        camera.close()
    assert rig.closes == 3 and rig.open_cameras == 0
    assert all(instance.stops == 1 for instance in rig.instances)


def test_close_from_another_thread_unblocks_a_waiting_still(rig, make_camera):
    camera = make_camera()
    camera.open()
    rig.stall()
    job = camera.still(deadline_s=10.0)
    closer = threading.Timer(0.2, camera.close)
    closer.start()
    start = time.monotonic()
    with pytest.raises(CaptureCancelled):
        job.result()
    assert time.monotonic() - start < 1.5
    closer.join()
    assert rig.queued() == 0 and rig.open_cameras == 0


def test_cancelling_a_still_stops_its_wait(rig, make_camera):
    with make_camera() as camera:
        rig.stall()
        job = camera.still(deadline_s=10.0)
        time.sleep(0.1)
        job.cancel()
        with pytest.raises(CaptureCancelled):
            job.result(timeout=1.0)
        assert wait_for(lambda: rig.queued("main") == 0, 1.0)


def test_close_is_bounded_when_picamera2_stop_hangs(rig, make_camera, monkeypatch):
    monkeypatch.setattr(backend, "RELEASE_TIMEOUT_S", 0.3)
    camera = make_camera()
    camera.open()
    rig.stop_hangs.set()  # picamera2#1065: stop() with the cable out never returns
    start = time.monotonic()
    camera.close()
    assert time.monotonic() - start < 1.5
    assert camera.closed


def test_without_picamera2_open_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # as on a PC: import fails
    camera = Picamera2Camera()
    with pytest.raises(DeviceUnavailable, match="picamera2 is not installed") as error:
        camera.open()
    assert "python3-picamera2" in str(error.value)
    assert "--system-site-packages" in str(error.value)
    assert camera.closed


def test_importing_the_backend_does_not_import_picamera2():
    code = (
        "import sys, kiosk.drivers.camera.picamera2; "
        "sys.exit('picamera2' in sys.modules or 'libcamera' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=30).returncode == 0


def test_start_failing_is_device_unavailable_and_releases_the_camera(rig, make_camera):
    rig.start_error = "Failed to start camera"
    camera = make_camera()
    with pytest.raises(DeviceUnavailable, match="Failed to start camera"):
        camera.open()
    assert camera.closed and rig.open_cameras == 0  # not left acquired
    rig.start_error = None
    camera.open()
    assert camera.still(1.0).result().image.shape == (1232, 1640, 3)


def test_init_failing_says_why(rig, make_camera):
    rig.init_error = "Failed to acquire camera: Device or resource busy"
    with pytest.raises(DeviceUnavailable, match=r"did not complete.*Device or resource busy"):
        make_camera().open()


def test_no_camera_at_that_number_lists_what_is_there(make_camera):
    with pytest.raises(DeviceUnavailable, match=r"number 1: found 0: imx708 at /base/soc"):
        make_camera(camera_num=1).open()


def test_an_rgb_preview_on_a_pi_4_is_refused_with_a_hint(rig, make_camera):
    rig.platform = "vc4"
    with pytest.raises(DeviceUnavailable, match=r"lores stream must be YUV.*only.*YUV420"):
        make_camera(preview_format="XBGR8888").open()
    assert rig.open_cameras == 0


def test_picamera2_errors_become_ours():
    camera = Picamera2Camera(picamera2_factory=CameraRig())
    assert isinstance(camera._translate(TimeoutError("late")), CaptureTimeout)
    assert isinstance(
        camera._translate(RuntimeError("Camera frontend has timed out!")), DeviceUnavailable
    )
    memory = camera._translate(OSError(12, "Cannot allocate memory"))
    assert isinstance(memory, DeviceUnavailable) and "CMA" in str(memory)


# -- identity, contract, options ----------------------------------------------------------------


def test_identity_is_the_sensor_and_its_port(rig, make_camera):
    camera = make_camera()
    assert camera.info().serial == ""  # not read before open
    camera.open()
    info = camera.identify()
    assert (info.driver, info.model) == ("picamera2", "imx708")
    assert info.serial == "/base/soc/i2c0mux/i2c@1/imx708@1a"
    assert info.serial_source == "csi-port"
    assert camera.info() == info
    camera.close()
    rig.cameras[0]["Model"] = "imx219"  # a Camera Module 2 put on the same port
    camera.open()
    assert camera.info().model == "imx219"
    assert camera.info().identity != info.identity


def test_it_is_a_camera_and_registered(make_camera):
    assert isinstance(make_camera(), Camera)
    assert registry.backend_class(ModuleKind.CAMERA, "picamera2") is Picamera2Camera


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"camera_num": -1}, "camera_num"),
        ({"camera_num": True}, "camera_num"),
        ({"preview_size": [640]}, "preview_size"),
        ({"preview_size": [641, 480]}, "preview_size"),
        ({"still_size": "1640x1232"}, "still_size"),
        ({"still_size": [1640.0, 1232]}, "still_size"),
        ({"preview_size": [2048, 1536]}, "larger than still_size"),
        ({"preview_size": [640, 360]}, "same shape"),
        ({"preview_format": "MJPEG"}, "preview_format"),
        ({"still_s": 0}, "still_s"),
        ({"picamera2_factory": "picamera2.Picamera2"}, "picamera2_factory"),
    ],
)
def test_bad_options_are_refused_naming_the_option(options, named):
    with pytest.raises(ValueError, match=named):
        Picamera2Camera(**options)


# -- real hardware --------------------------------------------------------------------------------


def _real_camera_present() -> bool:
    try:
        from picamera2 import Picamera2
    except ImportError:
        return False
    try:
        return bool(Picamera2.global_camera_info())
    except Exception:
        return False


@pytest.mark.hardware
@pytest.mark.skipif(not _real_camera_present(), reason="needs picamera2 and a camera module")
def test_a_real_camera_module_takes_a_still():
    with Picamera2Camera() as camera:
        camera.start_preview()
        frame = camera.still(deadline_s=10.0).result()
        assert frame.image.shape == (1232, 1640, 3)
        assert not frame.module.simulated and frame.module.serial_source == "csi-port"
        assert wait_for(lambda: camera.latest_frame() is not None, 5.0)
