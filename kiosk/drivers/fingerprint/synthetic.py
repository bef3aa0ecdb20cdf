"""Synthetic fingerprint impressions, made the SFinGe way: no real finger involved.

The fake reader's samples and the fingerprint quality tests use these images:
256 x 288 grayscale (width x height), ridges dark on a light background, about
9 px between ridges as at 500 dpi, what an R307 or AS608 sensor returns. The
same spec and seed give the same image on every run (numpy and OpenCV only).

How an impression is made (Cappelli, Maio and Maltoni's SFinGe, simplified):

1. **Orientation field** from singular points with the zero-pole model of
   Sherlock and Monro: each core turns the ridge direction by +pi/2 around it,
   each delta by -pi/2; a rotation is added to the whole field.
2. **Ridges** grown from white noise by filtering it again and again with a
   Gabor filter tuned to the local orientation and a 9 px ridge period,
   squashing the result after each pass (``tanh``), until a clean ridge pattern
   with its own minutiae (endings, bifurcations) remains. The filtering is done
   in the frequency domain, one inverse DFT per orientation bin, and each pixel
   mixes its two nearest bins: about 0.15 s an image on a PC.
3. **Contact**: an elliptical finger area with soft edges where the skin
   touches the glass; a partial impression is an ellipse mostly off the window.
4. **Pressure**: slowly varying pressure across the finger (lighter ridges at
   the edges), and a width bias: heavy pressure or wet skin widens ridges.
5. **Skin and glass**: dryness breaks ridges into dashes and pales them (dry
   skin touches the glass only in spots); wetness widens ridges until valleys
   close and leaves dark blobs where water bridges them; smudge blurs the
   print (grease, a moving finger); patchy pressure (``blotches``) wipes areas
   out; finally sensor blur and noise.

Variants for tests and benchmarks (:class:`Variant`): good, partial, dry, wet,
smudged, rotated and blank (empty glass with a faint latent print left by a
previous finger)::

    from kiosk.drivers.fingerprint.synthetic import synthetic_print
    image = synthetic_print("dry", seed=3)   # 288 x 256 uint8

``SAMPLE_SPECS`` are the images shipped in ``samples/`` for the fake reader and
the emulator (ten different good fingers and a poor one);
``python tools/make_fingerprint_samples.py`` writes them again.

**Several impressions of one finger** (for matching): :func:`finger_ridges`
grows a finger's ridges once, on a canvas ``MARGIN`` px larger than the window
on every side (a moved finger brings new ridges into view), and
:func:`impression` places them on the glass: shifted, turned, skin stretched,
with its own contact area, pressure, blur and noise. :func:`impressions` gives
a first centred, clean one and others moved 10-30 px and turned 5-20 degrees::

    from kiosk.drivers.fingerprint.synthetic import finger_ridges, finger_spec, impressions
    ridges = finger_ridges(finger_spec("good", seed=4, pattern="left_loop"))
    first, again, third = impressions(ridges, seed=4, count=3)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

import cv2
import numpy as np

from kiosk.quality.gabor import ORIENTATION_BINS, gabor_spectra

WIDTH, HEIGHT = 256, 288
# RIDGE_PERIOD and ORIENTATION_BINS (16 bins of 11.25 degrees, each pixel mixing its
# two nearest: finer bins look no different and cost one inverse DFT each per pass)
# come with the Gabor filters from kiosk.quality.gabor.
# Ridges are clean after about 6 passes; 8 leaves margin for noisy seeds.
GROWTH_PASSES = 8
# Reflected margin around the window before the DFT, wider than the Gabor
# kernel's reach, so the circular convolution does not wrap ridges round.
PAD = 16
GLASS = 235.0  # grey of the empty glass
MARGIN = 48  # finger beyond the window on each side, for impressions placed differently

Point = tuple[float, float]


class Variant(enum.StrEnum):
    """The conditions :func:`synthetic_print` makes."""

    GOOD = "good"
    PARTIAL = "partial"
    DRY = "dry"
    WET = "wet"
    SMUDGED = "smudged"
    ROTATED = "rotated"
    BLANK = "blank"


@dataclass(frozen=True)
class FingerSpec:
    """One synthetic impression: pattern, finger placement and skin/sensor condition."""

    name: str
    seed: int
    cores: list[Point]
    deltas: list[Point]
    rotation: float  # degrees added to the whole orientation field
    centre: Point = (128.0, 150.0)  # finger ellipse centre, pixels
    axes: Point = (112.0, 138.0)  # finger ellipse half-axes, pixels; (0, 0): no finger
    tilt: float = 0.0  # finger ellipse tilt, degrees
    ridge_level: float = 55.0  # grey of a ridge's centre
    valley_level: float = 215.0  # grey between ridges
    width_bias: float = 0.0  # -1..1: thinner (light touch, dry) or wider (heavy, wet) ridges
    dryness: float = 0.0  # 0..1: share of ridge length broken off
    wetness: float = 0.0  # 0..1: share of the print under dark water blobs
    smudge: float = 0.0  # Gaussian blur sigma: grease or a moving finger
    blotches: float = 0.0  # 0..1: how much of the print patchy pressure wipes out
    noise: float = 6.0  # sensor noise, grey levels
    latent: float = 0.0  # grey levels of a previous finger's print left on empty glass


SAMPLE_SPECS = [
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

# Pattern classes for :func:`finger_spec`: (cores, deltas) in window pixels, before jitter.
PATTERNS: dict[str, tuple[list[Point], list[Point]]] = {
    "right_loop": ([(135, 120)], [(70, 215)]),
    "left_loop": ([(118, 112)], [(192, 208)]),
    "whorl": ([(115, 135), (145, 150)], [(45, 225), (215, 230)]),
    "tented_arch": ([(128, 135)], [(128, 190)]),
}


def orientation_field(spec: FingerSpec, margin: int = 0) -> np.ndarray:
    """Ridge direction (radians, modulo pi) at every pixel, from the zero-pole model.

    ``margin`` px more on every side than the window (whose pixel (0, 0) stays at
    ``spec``'s origin), for a finger larger than the window.
    """
    shape = (HEIGHT + 2 * margin, WIDTH + 2 * margin)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    z = (xx - margin) + 1j * (yy - margin)
    theta = np.full(shape, np.deg2rad(spec.rotation))
    for cx, cy in spec.cores:
        theta += 0.5 * np.angle(z - (cx + 1j * cy))
    for dx, dy in spec.deltas:
        theta -= 0.5 * np.angle(z - (dx + 1j * dy))
    return np.mod(theta, np.pi)


def grow_ridges(theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ridge pattern in -1..1 (1 = ridge) grown from noise along ``theta`` (any size)."""
    spectra = gabor_spectra((theta.shape[0] + 2 * PAD, theta.shape[1] + 2 * PAD))
    position = theta / np.pi * ORIENTATION_BINS
    lower = np.floor(position).astype(int) % ORIENTATION_BINS
    upper = (lower + 1) % ORIENTATION_BINS
    weight = (position - np.floor(position)).astype(np.float32)
    shares = [
        (k, np.where(lower == k, 1 - weight, 0) + np.where(upper == k, weight, 0))
        for k in range(ORIENTATION_BINS)
    ]
    shares = [(k, share.astype(np.float32)) for k, share in shares if share.any()]
    pattern = rng.standard_normal(theta.shape).astype(np.float32)
    for _ in range(GROWTH_PASSES):
        padded = cv2.copyMakeBorder(pattern, PAD, PAD, PAD, PAD, cv2.BORDER_REFLECT_101)
        spectrum = cv2.dft(padded)
        mixed = np.zeros_like(pattern)
        for k, share in shares:
            filtered = cv2.dft(
                cv2.mulSpectrums(spectrum, spectra[k], 0),
                flags=cv2.DFT_INVERSE | cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE,
            )
            mixed += share * filtered[PAD:-PAD, PAD:-PAD]
        pattern = np.tanh(3.0 * mixed / (mixed.std() + 1e-6))
    return pattern


def finger_mask(spec: FingerSpec) -> np.ndarray:
    """1 inside the finger's contact ellipse, falling off softly at its edge."""
    return contact_mask(spec.centre, spec.axes, spec.tilt)


def contact_mask(centre: Point, axes: Point, tilt: float) -> np.ndarray:
    """1 inside an ellipse (pixels, degrees), falling off softly at its edge; (0, 0) axes: 0."""
    mask = np.zeros((HEIGHT, WIDTH), np.float32)
    if min(axes) <= 0:
        return mask
    centre_px = (round(centre[0]), round(centre[1]))
    axes_px = (round(axes[0]), round(axes[1]))
    cv2.ellipse(mask, centre_px, axes_px, tilt, 0, 360, 1.0, thickness=-1)
    return cv2.GaussianBlur(mask, (0, 0), 6.0)


def smooth_noise(rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Noise of feature size ``sigma`` px scaled to 0..1: pressure, blotches, pores."""
    noise = rng.standard_normal((HEIGHT, WIDTH)).astype(np.float32)
    blurred = cv2.GaussianBlur(noise, (0, 0), sigma)
    return (blurred - blurred.min()) / (blurred.max() - blurred.min() + 1e-6)


def render(spec: FingerSpec) -> np.ndarray:
    """The finished grayscale impression (HEIGHT x WIDTH uint8) for one spec."""
    rng = np.random.default_rng(spec.seed)
    mask = finger_mask(spec)
    ridges = grow_ridges(orientation_field(spec), rng)
    # Width bias shifts the ridge/valley boundary: > 0 closes valleys, < 0 thins ridges.
    ink = np.clip((ridges + 1.0) / 2.0 + 0.5 * spec.width_bias, 0.0, 1.0)
    pressure = 0.75 + 0.25 * smooth_noise(rng, 30.0)
    if spec.blotches:
        wiped = smooth_noise(rng, 12.0) < spec.blotches
        ink = np.where(wiped, 0.5 + 0.2 * (ink - 0.5), ink)
    if spec.dryness:
        # Dry skin touches the glass in spots: ridge-sized gaps along every ridge.
        gaps = smooth_noise(rng, 2.0)
        broken = gaps < np.quantile(gaps, spec.dryness)
        ink = np.where(broken, ink * 0.15, ink)
    if spec.wetness:
        # Water fills valleys where it pools: dark blobs a few ridges wide.
        pools = smooth_noise(rng, 7.0)
        wet = pools > np.quantile(pools, 1.0 - spec.wetness)
        soft = cv2.GaussianBlur(wet.astype(np.float32), (0, 0), 2.0)
        ink = np.maximum(ink, 0.9 * soft)
    ink = ink * pressure * mask
    valley = GLASS + (spec.valley_level - GLASS) * mask
    image = valley - (spec.valley_level - spec.ridge_level) * ink
    if spec.latent:
        # A previous finger's grease on the glass: its ridges, a few grey levels deep.
        ghost = grow_ridges(orientation_field(replace(spec, rotation=spec.rotation + 30)), rng)
        image = image - spec.latent * (ghost + 1.0) / 2.0 * finger_mask(
            replace(spec, axes=(100, 120))
        )
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 0.7)
    if spec.smudge:
        image = cv2.GaussianBlur(image, (0, 0), spec.smudge)
    image = image + rng.normal(0.0, spec.noise, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _rotated(points: list[Point], centre: Point, degrees: float) -> list[Point]:
    """``points`` turned by ``degrees`` about ``centre`` (image axes: y down, clockwise)."""
    c, s = np.cos(np.deg2rad(degrees)), np.sin(np.deg2rad(degrees))
    cx, cy = centre
    return [(cx + c * (x - cx) - s * (y - cy), cy + s * (x - cx) + c * (y - cy)) for x, y in points]


def finger_spec(
    variant: Variant | str = Variant.GOOD, seed: int = 0, pattern: str | None = None
) -> FingerSpec:
    """A spec for one ``variant``: pattern, placement and skin drawn from ``seed``.

    ``pattern`` (a key of :data:`PATTERNS`) chooses the class; by default the
    seed does (right loop, left loop, whorl, tented arch in turn).
    """
    variant = Variant(variant)
    rng = np.random.default_rng([seed, 8])
    if pattern is None:
        pattern = list(PATTERNS)[seed % len(PATTERNS)]
    cores, deltas = PATTERNS[pattern]
    shift = rng.uniform(-10, 10, 2)
    spec = FingerSpec(
        name=f"{variant}_{seed}",
        seed=seed * 7919 + 11,
        cores=[(x + shift[0], y + shift[1]) for x, y in cores],
        deltas=[(x + shift[0], y + shift[1]) for x, y in deltas],
        rotation=float(rng.uniform(-8, 8)),
        centre=(128.0 + rng.uniform(-6, 6), 150.0 + rng.uniform(-6, 6)),
        axes=(112.0 + rng.uniform(-6, 6), 138.0 + rng.uniform(-6, 6)),
        tilt=float(rng.uniform(-8, 8)),
        ridge_level=float(rng.uniform(40, 65)),
        valley_level=float(rng.uniform(205, 220)),
    )
    corner_x, corner_y = rng.choice([-1, 1], 2)
    match variant:
        case Variant.GOOD:
            return spec
        case Variant.PARTIAL:
            # Only the fingertip's edge, in one corner of the window.
            return replace(
                spec,
                centre=(128.0 + corner_x * 125.0, 150.0 + corner_y * 135.0),
                axes=(100.0, 125.0),
            )
        case Variant.DRY:
            return replace(
                spec,
                dryness=0.55,
                width_bias=-0.35,
                ridge_level=spec.ridge_level + 80.0,
                valley_level=min(spec.valley_level + 10.0, GLASS),
            )
        case Variant.WET:
            return replace(spec, wetness=0.35, width_bias=0.55, smudge=1.2)
        case Variant.SMUDGED:
            return replace(
                spec, smudge=3.0, blotches=0.35, ridge_level=spec.ridge_level + 40.0, noise=8.0
            )
        case Variant.ROTATED:
            angle = float(rng.choice([-1, 1]) * rng.uniform(35, 50))
            return replace(
                spec,
                cores=_rotated(spec.cores, spec.centre, angle),
                deltas=_rotated(spec.deltas, spec.centre, angle),
                rotation=spec.rotation + angle,
                tilt=spec.tilt + angle,
            )
        case Variant.BLANK:
            return replace(spec, axes=(0.0, 0.0), latent=float(rng.uniform(3, 6)))
    raise AssertionError(variant)  # every Variant is handled above


# Ten different good fingers for a whole simulated enrollment (a finger given twice
# is refused): the four drawn above, then six from the generator.
SAMPLE_SPECS += [
    replace(finger_spec(Variant.GOOD, seed), name=f"good_{seed + 4}") for seed in range(1, 7)
]
GOOD_SAMPLE_NAMES = tuple(spec.name for spec in SAMPLE_SPECS if spec.name.startswith("good_"))


def synthetic_print(variant: Variant | str = Variant.GOOD, seed: int = 0) -> np.ndarray:
    """One synthetic impression (288 x 256 uint8, 500 dpi) of ``variant``; same seed, same image.

    Raises ValueError for a name that is not a :class:`Variant`.
    """
    return render(finger_spec(variant, seed))


def finger_ridges(spec: FingerSpec, margin: int = MARGIN) -> np.ndarray:
    """One finger's ridges (-1..1, 1 = ridge), grown from ``spec``'s pattern and seed on
    a canvas ``margin`` px larger than the window on every side, for :func:`impression`.

    Only the pattern counts (cores, deltas, rotation, seed); placement and skin
    are the impression's.
    """
    return grow_ridges(orientation_field(spec, margin), np.random.default_rng(spec.seed))


def impression(
    ridges: np.ndarray,
    seed: int,
    *,
    shift: Point = (0.0, 0.0),
    angle: float = 0.0,
    pressure: float = 0.0,
    stretch: float = 0.0,
    smudge: float = 0.0,
    noise: float = 6.0,
) -> np.ndarray:
    """One sensor image (HEIGHT x WIDTH uint8) of the finger ``ridges`` (from
    :func:`finger_ridges`) placed ``shift`` px off centre and turned ``angle`` degrees.

    ``pressure`` -1..1 thins or widens the ridges, ``stretch`` is the skin's
    elastic displacement (px, a smooth random field), ``smudge`` an extra blur
    sigma, ``noise`` the sensor noise in grey levels. ``seed`` draws the rest:
    the contact ellipse, uneven pressure, ridge and valley greys, the noise.
    """
    rng = np.random.default_rng(seed)
    margin_x, margin_y = (ridges.shape[1] - WIDTH) / 2, (ridges.shape[0] - HEIGHT) / 2
    m = cv2.getRotationMatrix2D((ridges.shape[1] / 2, ridges.shape[0] / 2), angle, 1.0)
    m[:, 2] += (shift[0] - margin_x, shift[1] - margin_y)
    placed = cv2.warpAffine(
        ridges, m, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )
    if stretch:
        yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
        dx, dy = (2 * smooth_noise(rng, 40.0) - 1 for _ in range(2))
        placed = cv2.remap(
            placed, xx + stretch * dx, yy + stretch * dy, cv2.INTER_LINEAR, cv2.BORDER_REFLECT_101
        )
    ink = np.clip((placed + 1) / 2 + 0.5 * pressure, 0, 1)
    contact = contact_mask(
        centre=(128 + shift[0] / 2 + rng.uniform(-8, 8), 150 + shift[1] / 2 + rng.uniform(-8, 8)),
        axes=(rng.uniform(100, 115), rng.uniform(122, 140)),
        tilt=angle + rng.uniform(-6, 6),
    )
    ink = ink * (0.7 + 0.3 * smooth_noise(rng, 30.0)) * contact
    ridge_level, valley_level = rng.uniform(40, 70), rng.uniform(200, 220)
    image = GLASS + (valley_level - GLASS) * contact - (valley_level - ridge_level) * ink
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 0.7 + smudge)
    image = image + rng.normal(0, noise, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def impressions(ridges: np.ndarray, seed: int, count: int) -> list[np.ndarray]:
    """``count`` impressions of one finger: the first centred and clean, the others
    shifted 10-30 px, turned 5-20 degrees either way, skin stretched 2-5 px,
    pressed harder or lighter, blurred and noisier, each its own way."""
    rng = np.random.default_rng([seed, 99])
    out = [impression(ridges, seed * 10)]
    for k in range(1, count):
        distance, bearing = rng.uniform(10, 30), rng.uniform(0, 2 * np.pi)
        out.append(
            impression(
                ridges,
                seed * 10 + k,
                shift=(distance * np.cos(bearing), distance * np.sin(bearing)),
                angle=float(rng.choice([-1, 1]) * rng.uniform(5, 20)),
                pressure=rng.uniform(-0.25, 0.3),
                stretch=rng.uniform(2, 5),
                smudge=rng.uniform(0, 0.8),
                noise=rng.uniform(5, 10),
            )
        )
    return out
