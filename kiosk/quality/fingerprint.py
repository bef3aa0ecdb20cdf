"""Fingerprint image quality: an NFIQ 2-like score (0..100) with NFIQ 2's measures and advice.

This is **not NIST's NFIQ 2**: NIST's reference code (C++, with the FingerJetFX
minutiae extractor and an OpenCV random forest over 69 features) has no wheel
that runs on Debian bookworm aarch64, the Raspberry Pi's system (research in
docs/fingerprint-quality.md). It computes NFIQ 2's best-ranked features the way
ISO/IEC 29794-4 describes them, on 32 x 32 blocks of the foreground, and
combines them into one score on NFIQ 2's scale, fitted to NFIQ 2's own scores
of synthetic prints (NIST's NFIQ 2 through nbis-py 0.1.3 on x86_64):

- ``UniformImage`` and ``EmptyImageOrContrastTooLow``: NFIQ 2's actionable
  feedback, the grey standard deviation (>= 1) and mean (<= 250) of the image;
- ``Foreground``: the share of the window the finger touches (16 px blocks that
  hold ridges or are darker than empty glass), NFIQ 2's
  ``SufficientFingerprintForeground`` as a share of a small sensor's window;
- ``RidgeCoverage``: the share of that foreground holding ridges with contrast
  (grey std >= 8 after a light blur), where a smudge or grease leaves a dark
  area without ridges;
- ``OCL``: orientation certainty level, 1 - lambda_min / lambda_max of the
  gradient covariance per block, mean over the foreground;
- ``FDA``: frequency domain analysis, the share of a block's ridge signature
  (grey profile across the ridges) in its dominant frequency (ridge period 5 to
  15 px at 500 dpi), mean over the foreground;
- ``LCS``: local clarity, one minus the share of pixels on the wrong side of
  the ridge/valley split their column of the signature predicts;
- ``RidgeShare``: share of foreground pixels darker than the middle of its grey
  range: about a half for a good print, less when dry skin breaks and thins the
  ridges, more when water or heavy pressure closes the valleys.

The score ``NFIQ2Like`` is ``K * F^a * OCL'^b * FDA'^c * RidgeCoverage^d`` with
each term scaled to 0..1 (docs give the fit); as NFIQ 2 does, an image without a
finger scores 0. ``ok`` is True only when every measure is in its band::

    quality = assess_fingerprint(capture.image, SensorSignals.from_capture(capture))
    if not quality.ok:
        say(quality.problem)  # e.g. "quality.finger.dry"
    report_json(quality.measures, score=quality.score)  # kiosk quality finger --json

About 10 ms an image on a PC.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from kiosk.quality.inputs import require_print
from kiosk.quality.measures import Measure

if TYPE_CHECKING:  # the drivers import this package: no import cycle at run time
    from kiosk.drivers.base import FingerprintCapture

DPI = 500
# 16 px at 500 dpi is ~1.8 ridge periods: the segmentation grid (NFIQ 2 segments
# on small blocks too); 32 px blocks (~3.5 periods) for the ridge measures, as NFIQ 2.
SEGMENT_BLOCK = 16
BLOCK = 32
# Blur before measuring: removes pixel noise, keeps ~80 % of a 9 px ridge's swing.
DENOISE_SIGMA = 1.0
# Grey standard deviation above which a block holds ridges; empty glass with
# sensor noise (and a latent print left on it) stays below 4 after the blur.
RIDGE_MIN_STD = 8.0
# Mean grey below which a block is touched by skin: empty glass reads ~220-255.
CONTACT_MAX_MEAN = 205.0
# A 32 px block is judged when three of its four 16 px blocks are foreground.
BLOCK_MIN_FOREGROUND = 0.75
# Ridge periods searched by FDA, px: 5..15 covers 0.25..0.75 mm at 500 dpi.
PERIOD_RANGE = (5.0, 15.0)

# NFIQ 2's actionable feedback thresholds (NFIQ2 ActionableQualityFeedbackThreshold).
UNIFORM_IMAGE_MIN = 1.0
EMPTY_IMAGE_MAX_MEAN = 250.0
# Less foreground than this is no finger at all, only dust or a latent print.
NO_FINGER_FOREGROUND = 0.05
# A well placed fingertip covers ~70-80 % of a 256 x 288 window (NFIQ 2's own
# 50,000 px is for larger windows: it is 68 % of this one); below 45 % too few
# minutiae remain for a reliable match.
MIN_FOREGROUND = 0.45
FULL_FOREGROUND = 0.70
MIN_RIDGE_COVERAGE = 0.70
MIN_OCL = 0.80
MIN_FDA = 0.35
MIN_LCS = 0.70
RIDGE_SHARE_BAND = (0.33, 0.60)
# Below this the print is worth another try (NFIQ 2 scale; NIST's NFIQ 2 gives
# the generator's good prints 44-60, wet 32-43, dry 16-46).
MIN_SCORE = 35.0
# The score's fit (docs/fingerprint-quality.md): K and the exponent of each term.
SCORE_K = 51.0
SCORE_EXPONENTS = {"Foreground": 0.85, "OCL": 1.15, "FDA": 0.4, "RidgeCoverage": 0.6}
# Where each term reaches 0 and 1 before the exponent.
OCL_SCALE = (0.5, 0.95)
FDA_SCALE = (0.2, 0.45)


class FingerprintProblem(enum.StrEnum):
    """What is wrong with a fingerprint impression; the values are i18n keys."""

    NO_FINGER = "quality.finger.no_finger"
    TOO_SMALL = "quality.finger.too_small"
    SMUDGED = "quality.finger.smudged"
    DRY = "quality.finger.dry"
    WET = "quality.finger.wet"
    UNCLEAR = "quality.finger.unclear"


@dataclass(frozen=True)
class SensorSignals:
    """What the reader itself said about the impression, where it says anything.

    ``finger_present`` is the sensor's own finger detection (a ZhianTec module's
    GenImg answering "no finger" is False); ``score`` is the module's own
    quality on a 0..100 scale, for modules that report one (the R307/AS608 do
    not); ``dpi`` is the image's resolution, rescaled to 500 dpi before judging.
    """

    finger_present: bool | None = None
    score: float | None = None
    min_score: float = 40.0
    dpi: int = DPI

    @classmethod
    def from_capture(cls, capture: FingerprintCapture) -> SensorSignals:
        """The signals a :class:`kiosk.drivers.base.FingerprintCapture` carries."""
        from kiosk.drivers.base import Outcome

        if capture.outcome is Outcome.NO_FINGER:
            present: bool | None = False
        elif capture.outcome is Outcome.CAPTURED:
            present = True
        else:
            present = None
        return cls(finger_present=present, dpi=int(capture.dpi))


@dataclass(frozen=True)
class FingerprintQuality:
    """The verdict on one impression and the measures behind it."""

    ok: bool
    score: float  # 0..100, NFIQ 2's scale (NFIQ2Like, or less if the sensor says less)
    problem: FingerprintProblem | None
    measures: dict[str, Measure]


@dataclass(frozen=True)
class _Blocks:
    """Per-block ridge measures over the judged 32 px blocks."""

    ocl: float
    fda: float
    lcs: float
    judged: int


def _scaled(value: float, scale: tuple[float, float]) -> float:
    low, high = scale
    return float(np.clip((value - low) / (high - low), 0.0, 1.0))


def _ridge_blocks(smooth: np.ndarray, foreground: np.ndarray) -> _Blocks:
    """OCL, FDA and LCS means over the 32 px blocks mostly in the foreground."""
    rows, cols = smooth.shape[0] // BLOCK, smooth.shape[1] // BLOCK
    step = BLOCK // SEGMENT_BLOCK
    share = foreground[: rows * step, : cols * step].reshape(rows, step, cols, step)
    judged = share.mean(axis=(1, 3)) >= BLOCK_MIN_FOREGROUND
    if not judged.any():
        return _Blocks(0.0, 0.0, 0.0, 0)
    area = smooth[: rows * BLOCK, : cols * BLOCK]
    gx = cv2.Sobel(area, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(area, cv2.CV_32F, 0, 1, ksize=3)

    def sums(values: np.ndarray) -> np.ndarray:
        return values.reshape(rows, BLOCK, cols, BLOCK).sum(axis=(1, 3))

    gxx, gyy, gxy = sums(gx * gx), sums(gy * gy), sums(gx * gy)
    root = np.sqrt((gxx - gyy) ** 2 + 4.0 * gxy**2)
    ocl = 1.0 - (gxx + gyy - root) / (gxx + gyy + root + 1e-6)
    across = 0.5 * np.arctan2(2.0 * gxy, gxx - gyy)  # the gradient: across the ridges

    yy, xx = np.mgrid[0:BLOCK, 0:BLOCK].astype(np.float32) - (BLOCK - 1) / 2
    disc = xx**2 + yy**2 <= (BLOCK / 2) ** 2  # the same pixels whatever the orientation
    xx, yy = xx[disc], yy[disc]
    fda, lcs = [], []
    for i, j in zip(*np.nonzero(judged), strict=True):
        pixels = area[i * BLOCK : (i + 1) * BLOCK, j * BLOCK : (j + 1) * BLOCK][disc]
        angle = across[i, j]
        column = np.rint(xx * np.cos(angle) + yy * np.sin(angle) + BLOCK / 2).astype(int)
        counts = np.bincount(column, minlength=BLOCK + 2)
        used = counts >= 4
        signature = np.bincount(column, pixels, minlength=BLOCK + 2)[used] / counts[used]
        signature -= signature.mean()
        amplitude = np.abs(np.fft.rfft(signature))
        length = len(signature)
        low = max(1, int(length / PERIOD_RANGE[1]))
        high = min(len(amplitude) - 2, int(np.ceil(length / PERIOD_RANGE[0])))
        peak = low + int(np.argmax(amplitude[low : high + 1]))
        dominant = amplitude[peak] + 0.3 * (amplitude[peak - 1] + amplitude[peak + 1])
        fda.append(dominant / (amplitude[1:].sum() + 1e-6))
        # Local clarity: the signature says which columns are ridge; count pixels
        # on the wrong side of the block's mean grey.
        ridge_column = np.zeros(BLOCK + 2, bool)
        ridge_column[np.nonzero(used)[0]] = signature < 0
        in_ridge = ridge_column[column]
        dark = pixels < pixels.mean()
        valley_wrong = (dark & ~in_ridge).sum() / max(1, (~in_ridge).sum())
        ridge_wrong = (~dark & in_ridge).sum() / max(1, in_ridge.sum())
        lcs.append(1.0 - (valley_wrong + ridge_wrong) / 2.0)
    return _Blocks(
        ocl=float(ocl[judged].mean()),
        fda=float(np.mean(fda)),
        lcs=float(np.mean(lcs)),
        judged=int(judged.sum()),
    )


def _at_500_dpi(image: np.ndarray, dpi: int) -> np.ndarray:
    if dpi == DPI:
        return image
    if not 250 <= dpi <= 2000:
        raise ValueError(f"a fingerprint's resolution must be 250 to 2000 dpi, got {dpi}")
    scale = DPI / dpi
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def assess_fingerprint(
    image_gray: np.ndarray, sensor: SensorSignals | None = None
) -> FingerprintQuality:
    """Judge one grayscale impression (2-D uint8, ridges dark on light, 500 dpi).

    The image alone suffices; ``sensor`` adds what the reader said (its finger
    detection, its own score, the image's dpi). The problem reported is the
    first of: no finger, too little of the window touched, a smudge (skin
    without ridges), dry skin, wet skin, ridges otherwise unclear or the score
    too low. ``ok`` is True only when every measure passes. Anything but such
    an image, 64 to 8192 px a side, is a ValueError; so is a dpi outside
    250..2000. Pure function: safe from any thread.
    """
    require_print(image_gray)
    sensor = sensor or SensorSignals()
    image = _at_500_dpi(image_gray, sensor.dpi)
    require_print(image)
    rows, cols = image.shape[0] // SEGMENT_BLOCK, image.shape[1] // SEGMENT_BLOCK
    raw = image.astype(np.float32)
    smooth = cv2.GaussianBlur(raw, (0, 0), DENOISE_SIGMA)
    blocks = smooth[: rows * SEGMENT_BLOCK, : cols * SEGMENT_BLOCK].reshape(
        rows, SEGMENT_BLOCK, cols, SEGMENT_BLOCK
    )
    ridged = blocks.std(axis=(1, 3)) >= RIDGE_MIN_STD
    foreground = ridged | (blocks.mean(axis=(1, 3)) <= CONTACT_MAX_MEAN)
    foreground_share = float(foreground.mean())
    coverage = float(ridged.sum() / foreground.sum()) if foreground.any() else 0.0
    ridge = _ridge_blocks(smooth, foreground)
    if foreground.any():
        touched = blocks.transpose(0, 2, 1, 3)[foreground]
        low, high = np.percentile(touched, (2, 98))
        ridge_share = float((touched < (low + high) / 2).mean())
    else:
        ridge_share = 0.0

    terms = {
        "Foreground": min(1.0, foreground_share / FULL_FOREGROUND),
        "OCL": _scaled(ridge.ocl, OCL_SCALE),
        "FDA": _scaled(ridge.fda, FDA_SCALE),
        "RidgeCoverage": min(1.0, coverage),
    }
    score = SCORE_K * float(np.prod([terms[k] ** e for k, e in SCORE_EXPONENTS.items()]))
    uniform, mean = float(raw.std()), float(raw.mean())
    no_finger = (
        foreground_share < NO_FINGER_FOREGROUND
        or ridge.judged == 0
        or uniform < UNIFORM_IMAGE_MIN
        or mean > EMPTY_IMAGE_MAX_MEAN
        or sensor.finger_present is False
    )
    if no_finger:
        score = 0.0  # as NFIQ 2: no finger, no quality
    if sensor.score is not None:
        score = min(score, float(sensor.score))
    score = round(float(np.clip(score, 0.0, 100.0)), 1)

    low_share, high_share = RIDGE_SHARE_BAND
    measures = {
        "NFIQ2Like": Measure(score, minimum=MIN_SCORE),
        "UniformImage": Measure(round(uniform, 2), minimum=UNIFORM_IMAGE_MIN),
        "EmptyImageOrContrastTooLow": Measure(round(mean, 2), maximum=EMPTY_IMAGE_MAX_MEAN),
        "Foreground": Measure(round(foreground_share, 3), minimum=MIN_FOREGROUND),
        "RidgeCoverage": Measure(round(coverage, 3), minimum=MIN_RIDGE_COVERAGE),
        "OCL": Measure(round(ridge.ocl, 3), minimum=MIN_OCL),
        "FDA": Measure(round(ridge.fda, 3), minimum=MIN_FDA),
        "LCS": Measure(round(ridge.lcs, 3), minimum=MIN_LCS),
        "RidgeShare": Measure(round(ridge_share, 3), minimum=low_share, maximum=high_share),
    }
    if sensor.finger_present is not None:
        measures["SensorFingerPresent"] = Measure(float(sensor.finger_present), minimum=1.0)
    if sensor.score is not None:
        measures["SensorQuality"] = Measure(float(sensor.score), minimum=sensor.min_score)

    if no_finger:
        problem: FingerprintProblem | None = FingerprintProblem.NO_FINGER
    elif not measures["Foreground"].passed:
        problem = FingerprintProblem.TOO_SMALL
    elif not measures["RidgeCoverage"].passed:
        problem = FingerprintProblem.SMUDGED  # skin on the glass, no ridges: grease, a smear
    elif ridge_share < low_share:
        problem = FingerprintProblem.DRY
    elif ridge_share > high_share:
        problem = FingerprintProblem.WET
    elif all(m.passed for m in measures.values()):
        problem = None
    else:
        problem = FingerprintProblem.UNCLEAR
    return FingerprintQuality(ok=problem is None, score=score, problem=problem, measures=measures)
