"""Faces and their 468 landmarks: MediaPipe's BlazeFace and FaceMesh models on LiteRT.

The two ``.tflite`` files in ``models/`` are Google's MediaPipe models (Apache-2.0,
see models/NOTICE.md), run by ``ai-edge-litert``, the small TensorFlow Lite
runtime that has wheels for the Pi's aarch64. Why these and not Haar, YuNet or
dlib: docs/face-detection.md. Pre- and post-processing are ours, on OpenCV::

    marker = FaceLandmarker.shared()
    faces = marker.detect(frame_rgb)          # every face, largest first
    points = marker.mesh(frame_rgb, faces[0]) # 468 x 3 (x, y in pixels; z depth, same scale)

Mesh indices follow MediaPipe's canonical face model (``MESH_*`` below).
"""

from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

MODELS = Path(__file__).parent / "models"
# The files we ship, as published by MediaPipe (checked when loaded: a damaged
# SD card must not give a silently wrong detector).
MODEL_SHA256 = {
    "face_detection_short_range.tflite": (
        "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633"
    ),
    "face_landmark.tflite": "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493",
}
DETECT_SIZE = 128  # BlazeFace short-range input, pixels a side
MESH_SIZE = 192  # FaceMesh input
# MediaPipe's defaults for this detector: a face below 0.5 is not reported, and
# boxes overlapping by more than 0.3 IoU are one face (blended by score).
MIN_DETECTION_SCORE = 0.5
NMS_IOU = 0.3
# The mesh looks at the detection box enlarged 1.5x, rotated level with the eyes.
MESH_ROI_SCALE = 1.5
# FaceMesh's own "is this a face" output: below this the landmarks are noise.
MIN_MESH_PRESENCE = 0.5
INTERPRETER_THREADS = 2

# Mesh landmark indices. "Right" is the subject's right, on the image's left.
MESH_FOREHEAD = 10
MESH_CHIN = 152
MESH_NOSE_TIP = 1
RIGHT_EYE = {"outer": 33, "inner": 133, "upper": 159, "lower": 145}
LEFT_EYE = {"outer": 263, "inner": 362, "upper": 386, "lower": 374}
RIGHT_EYE_RING = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE_RING = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
MOUTH = {"right": 61, "left": 291, "upper_inner": 13, "lower_inner": 14}
# The face's outline (MediaPipe's "silhouette"), for the face region.
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip


class ModelError(RuntimeError):
    """A model file is missing or not the one we ship."""


@dataclass(frozen=True)
class Detection:
    """One face found by BlazeFace, in frame pixels."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    score: float
    # subject's right eye, left eye, nose tip, mouth, right ear, left ear: 6 x 2
    keypoints: np.ndarray

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]


def _anchors() -> np.ndarray:
    """BlazeFace short-range's 896 SSD anchor centres (0..1): 16x16 cells with 2
    anchors at stride 8, then 8x8 cells with 6 at stride 16 (MediaPipe's options)."""
    centres = []
    for grid, per_cell in ((16, 2), (8, 6)):
        for y in range(grid):
            for x in range(grid):
                centres += [((x + 0.5) / grid, (y + 0.5) / grid)] * per_cell
    return np.array(centres, dtype=np.float32)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def _weighted_nms(boxes: np.ndarray, points: np.ndarray, scores: np.ndarray) -> list:
    """MediaPipe's blending suppression: overlapping boxes average, weighted by score."""
    order = np.argsort(-scores)
    boxes, points, scores = boxes[order], points[order], scores[order]
    kept = []
    remaining = np.ones(len(scores), dtype=bool)
    for i in range(len(scores)):
        if not remaining[i]:
            continue
        group = remaining & (_iou(boxes[i], boxes) > NMS_IOU)
        group[i] = True
        weights = scores[group][:, None]
        box = (boxes[group] * weights).sum(0) / weights.sum()
        kps = (points[group] * weights[:, :, None]).sum(0) / weights.sum()
        kept.append((box, kps, float(scores[i])))
        remaining &= ~group
    return kept


def _check_model(name: str) -> Path:
    path = MODELS / name
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise ModelError(f"face model {path} cannot be read: {exc.strerror}") from None
    if digest != MODEL_SHA256[name]:
        raise ModelError(f"face model {path} is damaged (SHA-256 {digest[:12]}...); reinstall")
    return path


class _Model:
    """One LiteRT interpreter with its single float input and named outputs."""

    def __init__(self, name: str) -> None:
        from ai_edge_litert.interpreter import Interpreter  # here: a slow import

        path = _check_model(name)
        self.interpreter = Interpreter(model_path=str(path), num_threads=INTERPRETER_THREADS)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.outputs = [d["index"] for d in self.interpreter.get_output_details()]

    def __call__(self, tensor: np.ndarray) -> list[np.ndarray]:
        self.interpreter.set_tensor(self.input, tensor[np.newaxis])
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(i)[0] for i in self.outputs]


class FaceLandmarker:
    """BlazeFace then FaceMesh. One call at a time per instance (a lock): the
    interpreters keep state between set_tensor and invoke."""

    _shared: FaceLandmarker | None = None
    _shared_lock = threading.Lock()

    def __init__(self) -> None:
        self._detector = _Model("face_detection_short_range.tflite")
        self._mesh = _Model("face_landmark.tflite")
        self._anchors = _anchors()
        self._lock = threading.Lock()

    @classmethod
    def shared(cls) -> FaceLandmarker:
        """The process's one landmarker, loaded on first use (~50 ms)."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Every face in an RGB frame, widest first."""
        height, width = rgb.shape[:2]
        scale = DETECT_SIZE / max(width, height)
        small_w, small_h = max(1, round(width * scale)), max(1, round(height * scale))
        pad_x, pad_y = (DETECT_SIZE - small_w) // 2, (DETECT_SIZE - small_h) // 2
        tensor = np.full((DETECT_SIZE, DETECT_SIZE, 3), -1.0, dtype=np.float32)
        small = cv2.resize(rgb, (small_w, small_h), interpolation=cv2.INTER_AREA)
        tensor[pad_y : pad_y + small_h, pad_x : pad_x + small_w] = small * np.float32(2 / 255) - 1
        with self._lock:
            outputs = self._detector(tensor)
        raw, logits = sorted(outputs, key=lambda a: -a.shape[-1])  # 16 values, then 1
        scores = 1 / (1 + np.exp(-np.clip(logits[:, 0], -80, 80)))
        keep = scores >= MIN_DETECTION_SCORE
        if not keep.any():
            return []
        raw, scores, anchors = raw[keep] / DETECT_SIZE, scores[keep], self._anchors[keep]
        centre = raw[:, :2] + anchors
        half = raw[:, 2:4] / 2
        boxes = np.hstack([centre - half, centre + half])
        points = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]
        # back from the padded 128 square to frame pixels
        offset = np.array([pad_x, pad_y], dtype=np.float32)

        def frame(xy: np.ndarray) -> np.ndarray:
            return (xy * DETECT_SIZE - offset) / scale

        found = []
        for box, kps, score in _weighted_nms(boxes, points, scores):
            x0, y0 = frame(box[:2])
            x1, y1 = frame(box[2:])
            found.append(Detection((x0, y0, x1, y1), score, frame(kps)))
        return sorted(found, key=lambda d: -d.width)

    def mesh(self, rgb: np.ndarray, face: Detection) -> np.ndarray | None:
        """The 468 landmarks of one detected face (x, y in frame pixels, z depth in
        the same scale, larger away from the camera), or None if the mesh model
        does not see a face there."""
        (rx, ry), (lx, ly) = face.keypoints[0], face.keypoints[1]
        angle = math.atan2(ly - ry, lx - rx)  # level the eyes
        x0, y0, x1, y1 = face.box
        centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        side = max(x1 - x0, y1 - y0) * MESH_ROI_SCALE
        along = np.array([math.cos(angle), math.sin(angle)]) * side / 2
        down = np.array([-math.sin(angle), math.cos(angle)]) * side / 2
        corners = np.float32([centre - along - down, centre + along - down, centre + along + down])
        target = np.float32([(0, 0), (MESH_SIZE, 0), (MESH_SIZE, MESH_SIZE)])
        warp = cv2.getAffineTransform(corners, target)
        crop = cv2.warpAffine(rgb, warp, (MESH_SIZE, MESH_SIZE), flags=cv2.INTER_LINEAR)
        with self._lock:
            outputs = self._mesh(crop * np.float32(1 / 255))
        points, presence = sorted(outputs, key=lambda a: -a.size)
        if 1 / (1 + math.exp(-float(presence.ravel()[0]))) < MIN_MESH_PRESENCE:
            return None
        points = points.reshape(-1, 3)[:468].astype(np.float64)
        back = cv2.invertAffineTransform(warp)
        xy = points[:, :2] @ back[:, :2].T + back[:, 2]
        z = points[:, 2:] * (side / MESH_SIZE)
        return np.hstack([xy, z])
