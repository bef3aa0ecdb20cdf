"""The V4L2 (USB webcam) backend, run against video files and a fake udev tree.

OpenCV opens a small MJPG video written here (``api="any"``) where a kiosk
opens /dev/videoN; ``by_id_dir`` and ``by_path_dir`` point at symlinks in
tmp_path laid out as udev lays out /dev/v4l. One test, marked ``hardware``,
opens a real /dev/video0 and is skipped without one.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from support import wait_for

from kiosk.drivers import registry
from kiosk.drivers.base import Camera, HealthStatus, ModuleKind
from kiosk.drivers.camera import stream
from kiosk.drivers.camera.v4l2 import V4l2Camera, model_fragment, parse_by_id_name
from kiosk.errors import CaptureCancelled, DeviceUnavailable

WIDTH, HEIGHT = 160, 120
QUADRANTS = {  # where in the frame (fractions of width, height), which colour (RGB)
    (0.25, 0.25): (255, 0, 0),
    (0.75, 0.25): (0, 255, 0),
    (0.25, 0.75): (0, 0, 255),
    (0.75, 0.75): (255, 255, 255),
}
C920 = "usb-046d_HD_Pro_Webcam_C920_{serial}-video-index0"
PORT = "platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.2:1.0-video-index0"


def write_video(path: Path, frames: int) -> Path:
    """An MJPG AVI of ``frames`` frames of the quadrant pattern (written as BGR)."""
    rgb = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    for (x, y), colour in QUADRANTS.items():
        top, left = int((y - 0.25) * HEIGHT), int((x - 0.25) * WIDTH)
        rgb[top : top + HEIGHT // 2, left : left + WIDTH // 2] = colour
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for _ in range(frames):
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("v4l2") / "video0.avi", 60)


@pytest.fixture
def tree(tmp_path, video):
    """A fake /dev/v4l: by-id and by-path directories of links to "device nodes"
    (copies of the video, so each camera has its own node)."""

    class Tree:
        by_id = tmp_path / "by-id"
        by_path = tmp_path / "by-path"

        def node(self, name: str) -> Path:
            path = tmp_path / name
            if not path.exists():
                path.write_bytes(video.read_bytes())
            return path

        def plug(self, name: str, node: str = "video0.avi", port: str | None = None) -> Path:
            self.by_id.mkdir(exist_ok=True)
            target = self.node(node)
            (self.by_id / name).symlink_to(os.path.relpath(target, self.by_id))
            if port:
                self.by_path.mkdir(exist_ok=True)
                (self.by_path / port).symlink_to(os.path.relpath(target, self.by_path))
            return target

        def unplug(self, name: str) -> None:
            (self.by_id / name).unlink()

        def camera(self, **options) -> V4l2Camera:
            options = {"by_id_dir": self.by_id, "by_path_dir": self.by_path, **options}
            camera = V4l2Camera(api="any", **options)
            made.append(camera)
            return camera

    made: list[V4l2Camera] = []
    yield Tree()
    for camera in made:
        camera.close()


@pytest.fixture
def make_camera():
    made = []

    def make(**options) -> V4l2Camera:
        camera = V4l2Camera(api="any", **options)
        made.append(camera)
        return camera

    yield make
    for camera in made:
        camera.close()


def first_frame(camera):
    assert wait_for(lambda: camera.latest_frame() is not None), "no preview frame"
    return camera.latest_frame()


def assert_quadrants(image: np.ndarray, tolerance: int = 30) -> None:
    height, width = image.shape[:2]
    for (x, y), rgb in QUADRANTS.items():
        pixel = image[int(y * height), int(x * width)].astype(int)
        assert np.all(np.abs(pixel - np.array(rgb)) <= tolerance), f"{pixel} at {x, y}, not {rgb}"


# -- frames ------------------------------------------------------------------------------------


def test_preview_frames_flow_as_rgb(make_camera, video):
    with make_camera(device=str(video)) as camera:
        camera.start_preview()
        first = first_frame(camera)
        assert wait_for(lambda: camera.latest_frame().captured_at > first.captured_at)
        frame = camera.latest_frame()
        assert frame.image.shape == (HEIGHT, WIDTH, 3)
        assert_quadrants(frame.image)  # the red patch stays red: BGR was turned into RGB
        assert frame.age() < 0.2
        assert camera.health().status is HealthStatus.OK


def test_preview_plays_at_the_asked_rate(make_camera, video):
    with make_camera(device=str(video), fps=20) as camera:
        camera.start_preview()
        first_frame(camera)
        time.sleep(0.5)
    assert camera.read_failures == 0  # 60 frames at 20 fps last 3 s: not used up in 0.5 s


def test_still_is_a_whole_rgb_frame(make_camera, video):
    with make_camera(device=str(video)) as camera:
        frame = camera.still(deadline_s=2.0).result()
        camera.start_preview()
        first_frame(camera)
        during_preview = camera.still(deadline_s=2.0).result()
    for image in (frame.image, during_preview.image):
        assert image.shape == (HEIGHT, WIDTH, 3)
        assert_quadrants(image)
    assert frame.module.simulated and frame.module.model == "video file"


def test_end_of_stream_stops_frames_health_fails_and_a_reopen_recovers(
    make_camera, tmp_path, monkeypatch
):
    monkeypatch.setattr(stream, "STALE_AFTER_S", 0.3)
    short = write_video(tmp_path / "short.avi", 12)  # "unplugged" after 0.4 s
    camera = make_camera(device=str(short))
    camera.open()
    camera.start_preview()
    first_frame(camera)
    assert wait_for(lambda: camera.health().status is HealthStatus.FAILED)
    assert camera.read_failures > 0
    with pytest.raises(DeviceUnavailable, match="no frame"):
        camera.still(deadline_s=1.0).result()

    camera.close()  # what the supervisor does
    camera.open()
    assert camera.still(deadline_s=1.0).result().image.shape == (HEIGHT, WIDTH, 3)
    camera.start_preview()
    assert first_frame(camera).image.shape == (HEIGHT, WIDTH, 3)
    assert camera.health().status is HealthStatus.OK  # the good still cleared the failed one


def test_close_from_another_thread_ends_a_blocked_still(make_camera, video, monkeypatch):
    """OpenCV must not release a capture another thread reads: close() leaves that to
    the read, which a stalled V4L2 camera ends after its select timeout."""
    stalled = threading.Event()
    released = []
    real_capture = cv2.VideoCapture

    class StallingCapture:
        def __init__(self, *args):
            self._capture = real_capture(*args)

        def grab(self):
            if stalled.is_set():
                time.sleep(0.5)  # OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT, shortened
                return False
            return self._capture.grab()

        def release(self):
            released.append(threading.current_thread().name)
            self._capture.release()

        def __getattr__(self, name):
            return getattr(self._capture, name)

    monkeypatch.setattr(cv2, "VideoCapture", StallingCapture)
    camera = make_camera(device=str(video))
    camera.open()
    stalled.set()
    job = camera.still(deadline_s=10.0)
    time.sleep(0.1)
    start = time.monotonic()
    camera.close()
    with pytest.raises(CaptureCancelled):
        job.result(timeout=2.0)
    assert time.monotonic() - start < 1.5
    assert len(released) == 1 and released[0].startswith("camera-")  # by the reading thread


# -- finding the camera by its udev name ------------------------------------------------------


def test_a_replacement_of_the_same_model_is_found_with_its_new_serial(tree):
    tree.plug(C920.format(serial="AAAA1111"))
    camera = tree.camera(device="usb-046d_HD_Pro_Webcam_C920")
    camera.open()
    first = camera.info()
    assert (first.model, first.serial) == ("046d HD Pro Webcam C920", "AAAA1111")
    assert first.serial_source == "v4l-by-id"
    assert camera.still(deadline_s=2.0).result().module == first
    camera.close()

    tree.unplug(C920.format(serial="AAAA1111"))  # the technician swaps the camera
    tree.plug(C920.format(serial="BBBB2222"), node="video2.avi")
    camera.open()
    second = camera.identify()
    assert (second.model, second.serial) == ("046d HD Pro Webcam C920", "BBBB2222")
    assert second.identity != first.identity  # the supervisor sees a swap
    camera.start_preview()
    assert first_frame(camera).module.serial == "BBBB2222"


def test_the_fragment_ignores_case_and_skips_metadata_nodes(tree):
    tree.plug(C920.format(serial="AAAA1111"))
    tree.plug(C920.format(serial="AAAA1111").replace("index0", "index1"), node="video1.avi")
    with tree.camera(device="hd_pro_webcam_c920") as camera:
        assert camera.info().serial == "AAAA1111"
        assert camera._path.name == "video0.avi"


def test_several_matches_use_the_first_sorted_and_say_so(tree, caplog):
    tree.plug(C920.format(serial="CCCC3333"), node="video4.avi")
    tree.plug(C920.format(serial="AAAA1111"), node="video2.avi")
    with (
        caplog.at_level(logging.INFO, "kiosk.drivers.camera.v4l2"),
        tree.camera(device="C920") as camera,
    ):
        assert camera.info().serial == "AAAA1111"
    assert "AAAA1111" in caplog.text and "CCCC3333" in caplog.text


def test_the_default_takes_the_first_usb_camera(tree):
    tree.plug("usb-Sonix_Technology_Co.__Ltd._USB_2.0_Camera_SN0001-video-index0")
    with tree.camera() as camera:
        info = camera.info()
    assert (info.model, info.serial) == ("Sonix Technology Co. Ltd. USB 2.0 Camera", "SN0001")


def test_a_missing_camera_names_what_is_there(tree):
    tree.plug("usb-Generic_USB2.0_PC_CAMERA-video-index0")
    with pytest.raises(DeviceUnavailable) as error:
        tree.camera(device="usb-046d_HD_Pro_Webcam_C920").open()
    message = str(error.value)
    assert "no USB camera matching 'usb-046d_HD_Pro_Webcam_C920'" in message
    assert "present: usb-Generic_USB2.0_PC_CAMERA-video-index0" in message


def test_no_usb_camera_at_all_says_so(tree):
    with pytest.raises(DeviceUnavailable, match="does not exist: no USB camera is plugged in"):
        tree.camera(device="C920").open()


def test_an_exact_by_id_path_is_this_unit_only_and_hints_at_the_fragment(tree):
    tree.plug(C920.format(serial="BBBB2222"))
    gone = tree.by_id / C920.format(serial="AAAA1111")
    with pytest.raises(DeviceUnavailable) as error:
        tree.camera(device=str(gone)).open()
    message = str(error.value)
    assert f"camera {gone} is not there" in message
    assert "BBBB2222" in message
    assert "device = 'usb-046d_HD_Pro_Webcam_C920'" in message


def test_a_camera_without_serial_is_known_by_its_usb_port(tree):
    tree.plug("usb-Generic_USB2.0_PC_CAMERA-video-index0", port=PORT)
    with tree.camera(device="Generic") as camera:
        info = camera.info()
    assert info.model == "Generic USB2.0 PC CAMERA"
    assert (info.serial, info.serial_source) == (PORT.removesuffix("-video-index0"), "usb-port")


def test_without_serial_or_port_the_model_name_is_all_there_is(tree):
    tree.plug("usb-Generic_USB2.0_PC_CAMERA-video-index0")
    with tree.camera(device="Generic") as camera:
        info = camera.info()
    assert (info.serial, info.serial_source) == ("Generic USB2.0 PC CAMERA", "model-name")


def test_a_device_node_path_is_named_from_its_by_id_link(tree):
    node = tree.plug(C920.format(serial="AAAA1111"))
    with tree.camera(device=str(node)) as camera:
        assert camera.info().serial == "AAAA1111"


@pytest.mark.parametrize(
    ("name", "model", "serial", "fragment"),
    [
        (C920.format(serial="2B2B0A8F"), "046d HD Pro Webcam C920", "2B2B0A8F",
         "usb-046d_HD_Pro_Webcam_C920"),
        ("usb-046d_0825_B1E28A50-video-index0", "046d 0825", "B1E28A50", "usb-046d_0825"),
        ("usb-Microsoft_Microsoft_LifeCam_HD-3000-video-index0",
         "Microsoft Microsoft LifeCam HD-3000", "",
         "usb-Microsoft_Microsoft_LifeCam_HD-3000"),
        ("usb-HD_Camera_Manufacturer_USB_2.0_Camera-video-index0",
         "HD Camera Manufacturer USB 2.0 Camera", "", "usb-HD_Camera_Manufacturer_USB_2.0_Camera"),
        ("usb-SunplusIT_Inc_HD_Camera_200901010001-video-index0", "SunplusIT Inc HD Camera",
         "200901010001", "usb-SunplusIT_Inc_HD_Camera"),
    ],
)  # fmt: skip
def test_by_id_names_are_read_as_model_and_serial(name, model, serial, fragment):
    assert parse_by_id_name(name) == (model, serial)
    assert model_fragment(name) == fragment


# -- contract and options ------------------------------------------------------------------------


def test_it_is_a_camera_and_registered():
    assert isinstance(V4l2Camera(), Camera)
    assert registry.backend_class(ModuleKind.CAMERA, "v4l2") is V4l2Camera


def test_self_test_reads_a_frame(make_camera, video):
    camera = make_camera(device=str(video))
    assert not camera.self_test().passed  # closed
    with camera:
        result = camera.self_test()
    assert result.passed, result.detail
    assert f"frame {WIDTH}x{HEIGHT} RGB" in result.detail


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"device": 0}, "device"),
        ({"by_id_dir": ""}, "by_id_dir"),
        ({"by_path_dir": None}, "by_path_dir"),
        ({"width": 0}, "width"),
        ({"height": "720"}, "height"),
        ({"width": True}, "width"),
        ({"fps": 0}, "fps"),
        ({"fps": float("nan")}, "fps"),
        ({"fps": "30"}, "fps"),
        ({"fourcc": "MJPEG"}, "fourcc"),
        ({"api": "gstreamer"}, "api"),
        ({"still_s": -1}, "still_s"),
    ],
)
def test_bad_options_are_refused_naming_the_option(options, named):
    with pytest.raises(ValueError, match=named):
        V4l2Camera(**options)


# -- real hardware ---------------------------------------------------------------------------------


def _real_camera_present() -> bool:
    try:
        return stat.S_ISCHR(os.stat("/dev/video0").st_mode)
    except OSError:
        return False


@pytest.mark.hardware
@pytest.mark.skipif(not _real_camera_present(), reason="needs a USB camera at /dev/video0")
def test_a_real_usb_camera_takes_a_still():
    with V4l2Camera(device="/dev/video0") as camera:
        camera.start_preview()
        frame = camera.still(deadline_s=10.0).result()
        assert frame.image.ndim == 3 and frame.image.shape[2] == 3
        assert not frame.module.simulated
        assert wait_for(lambda: camera.latest_frame() is not None, 5.0)
