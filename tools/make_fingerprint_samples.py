"""Generate the synthetic fingerprint samples the fake reader serves.

Writes ``kiosk/drivers/fingerprint/samples/good_1.png`` .. ``good_4.png`` and
``poor.png``: 256 x 288 grayscale, dark ridges on light, as an R307/AS608
sensor gives at 500 dpi. No real person's finger is involved.

How (the SFinGe idea, much simplified):

1. an orientation field from the zero-pole model of Sherlock and Monro: each
   core turns the ridge direction by +pi/2 around it, each delta by -pi/2;
2. ridges grown from white noise by repeatedly filtering it with a Gabor filter
   tuned to the local orientation and a 9 px ridge period, squashing the result
   after each pass, until a clean ridge pattern with minutiae remains;
3. an elliptical finger area with soft edges, uneven pressure, sensor noise.

Run from the repository root; the output is the same on every run::

    python tools/make_fingerprint_samples.py
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

WIDTH, HEIGHT = 256, 288
RIDGE_PERIOD = 9.0  # pixels between ridges at 500 dpi (~0.46 mm)
ORIENTATION_BINS = 24
GROWTH_PASSES = 12
OUT_DIR = Path(__file__).resolve().parent.parent / "kiosk" / "drivers" / "fingerprint" / "samples"

Point = tuple[float, float]


@dataclass(frozen=True)
class FingerSpec:
    """One synthetic impression: pattern, finger placement and skin/sensor condition."""

    name: str
    seed: int
    cores: list[Point]
    deltas: list[Point]
    rotation: float  # degrees added to the whole orientation field
    centre: Point = (128.0, 150.0)  # finger ellipse centre, pixels
    axes: Point = (112.0, 138.0)  # finger ellipse half-axes, pixels
    tilt: float = 0.0  # finger ellipse tilt, degrees
    ridge_level: float = 55.0  # grey of a ridge's centre
    valley_level: float = 215.0  # grey between ridges
    smudge: float = 0.0  # Gaussian blur sigma: wet or dirty skin
    blotches: float = 0.0  # 0..1: how much of the print patchy pressure wipes out
    noise: float = 6.0  # sensor noise, grey levels


SPECS = [
    # A right loop: core upper centre, delta lower left.
    FingerSpec("good_1", seed=101, cores=[(135, 120)], deltas=[(70, 215)], rotation=0),
    # A left loop, core higher and to the left, finger slightly tilted.
    FingerSpec(
        "good_2",
        seed=202,
        cores=[(110, 105)],
        deltas=[(190, 200)],
        rotation=8,
        centre=(124.0, 146.0),
        tilt=-8.0,
    ),
    # A whorl: two cores side by side, a delta each side below.
    FingerSpec(
        "good_3",
        seed=303,
        cores=[(115, 135), (145, 150)],
        deltas=[(45, 225), (215, 230)],
        rotation=-5,
        axes=(116.0, 136.0),
    ),
    # A tented arch pressed lower and darker: core and delta one above the other.
    FingerSpec(
        "good_4",
        seed=404,
        cores=[(128, 135)],
        deltas=[(128, 190)],
        rotation=0,
        centre=(130.0, 158.0),
        axes=(108.0, 128.0),
        tilt=5.0,
        ridge_level=40.0,
        valley_level=200.0,
    ),
    # Partial, smudged, faint: a finger barely touching one corner of the glass.
    FingerSpec(
        "poor",
        seed=505,
        cores=[(90, 110)],
        deltas=[(40, 200)],
        rotation=-15,
        centre=(80.0, 95.0),
        axes=(70.0, 85.0),
        tilt=20.0,
        ridge_level=120.0,
        valley_level=190.0,
        smudge=1.8,
        blotches=0.5,
        noise=9.0,
    ),
]


def orientation_field(spec: FingerSpec) -> np.ndarray:
    """Ridge direction (radians, modulo pi) at every pixel, from the zero-pole model."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    z = xx + 1j * yy
    theta = np.full((HEIGHT, WIDTH), np.deg2rad(spec.rotation))
    for cx, cy in spec.cores:
        theta += 0.5 * np.angle(z - (cx + 1j * cy))
    for dx, dy in spec.deltas:
        theta -= 0.5 * np.angle(z - (dx + 1j * dy))
    return np.mod(theta, np.pi)


def gabor_bank() -> list[np.ndarray]:
    """One Gabor kernel per orientation bin, each passing ridges along its direction."""
    sigma = 0.45 * RIDGE_PERIOD
    size = int(4 * sigma) | 1
    kernels = []
    for k in range(ORIENTATION_BINS):
        ridge_direction = k * np.pi / ORIENTATION_BINS
        # OpenCV's theta is the normal to the stripes, i.e. across the ridges.
        kernel = cv2.getGaborKernel(
            (size, size), sigma, ridge_direction + np.pi / 2, RIDGE_PERIOD, 0.6, 0.0
        )
        kernels.append((kernel - kernel.mean()).astype(np.float32))
    return kernels


def grow_ridges(theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ridge pattern in -1..1 (1 = ridge) grown from noise along ``theta``."""
    kernels = gabor_bank()
    position = theta / np.pi * ORIENTATION_BINS
    lower = np.floor(position).astype(int) % ORIENTATION_BINS
    upper = (lower + 1) % ORIENTATION_BINS
    weight = (position - np.floor(position)).astype(np.float32)
    rows, cols = np.indices(theta.shape)
    pattern = rng.standard_normal(theta.shape).astype(np.float32)
    for _ in range(GROWTH_PASSES):
        responses = np.stack([cv2.filter2D(pattern, -1, k) for k in kernels])
        mixed = (1 - weight) * responses[lower, rows, cols] + weight * responses[upper, rows, cols]
        pattern = np.tanh(3.0 * mixed / (mixed.std() + 1e-6))
    return pattern


def finger_mask(spec: FingerSpec) -> np.ndarray:
    """1 inside the finger's contact ellipse, falling off softly at its edge."""
    mask = np.zeros((HEIGHT, WIDTH), np.float32)
    centre = (round(spec.centre[0]), round(spec.centre[1]))
    axes = (round(spec.axes[0]), round(spec.axes[1]))
    cv2.ellipse(mask, centre, axes, spec.tilt, 0, 360, 1.0, thickness=-1)
    return cv2.GaussianBlur(mask, (0, 0), 6.0)


def smooth_noise(rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Low-frequency noise scaled to 0..1: uneven pressure, blotches."""
    noise = rng.standard_normal((HEIGHT, WIDTH)).astype(np.float32)
    blurred = cv2.GaussianBlur(noise, (0, 0), sigma)
    return (blurred - blurred.min()) / (blurred.max() - blurred.min() + 1e-6)


def render(spec: FingerSpec) -> np.ndarray:
    """The finished grayscale impression for one spec."""
    rng = np.random.default_rng(spec.seed)
    ridges = grow_ridges(orientation_field(spec), rng)
    ink = (ridges + 1.0) / 2.0  # 1 on a ridge, 0 in a valley
    pressure = 0.75 + 0.25 * smooth_noise(rng, 30.0)
    if spec.blotches:
        wiped = smooth_noise(rng, 12.0) < spec.blotches
        ink = np.where(wiped, 0.5 + 0.2 * (ink - 0.5), ink)
    ink = ink * pressure * finger_mask(spec)
    background = 235.0
    valley = background + (spec.valley_level - background) * finger_mask(spec)
    image = valley - (spec.valley_level - spec.ridge_level) * ink
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 0.7)
    if spec.smudge:
        image = cv2.GaussianBlur(image, (0, 0), spec.smudge)
    image = image + rng.normal(0.0, spec.noise, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def main() -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for spec in SPECS:
        path = OUT_DIR / f"{spec.name}.png"
        cv2.imwrite(str(path), render(spec), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
