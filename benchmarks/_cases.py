"""The evaluation's cases: clean references, noise levels, noisy cases and their scores.

The protocol is ``evaluate.py``'s (its docstring says it in full): simulated scenes of the
validation split and real frames (defects removed, 2x2 binned, the star-richest crop) are the
references; Poisson-Gaussian noise at the three ``LEVELS`` makes a case of each; ``score``
measures an output against the reference with the metrics of ``_metrics.py``. The tuning
scripts (``_harness.py``) draw their own references and noise seeds the same way.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

import _metrics as m

ROOT = Path(__file__).resolve().parents[1]
EVAL_DIR = ROOT.parent / "shared" / "data" / "fits" / "eval"
REAL_IMAGES = (
    "horsehead_dss_uks.fits",
    "m2field_sdss_frame_r_2048x1489.fits",
    "m13_raw_light_5s.fits",
    "ngc7023_seestar_raw_bayer_10s.fits",
)

#: first scene seed of the simulated validation split (training seeds are far below it)
SIM_SEED_BASE = 10_000_000
#: noise seeds: NOISE_SEED_BASE + 100 * case index + level index
NOISE_SEED_BASE = 11_000_000
#: the evaluation's crop size (px) and number of simulated scenes, unless told otherwise
EVAL_CROP = 384
EVAL_N_SIM = 6
SIM_PRESETS = ("mixed", "cluster", "nebula", "stars_only", "galaxies", "sparse")

READ_NOISE_E = 5.0


@dataclass(frozen=True)
class Level:
    """One noise level: ``sky_e`` electrons of sky; ``k`` x sigma_ref sky noise (real)."""

    name: str
    sky_e: float
    k: float


LEVELS = {
    "light": Level("light", sky_e=400.0, k=4.0),
    "moderate": Level("moderate", sky_e=100.0, k=8.0),
    "heavy": Level("heavy", sky_e=25.0, k=16.0),
}

#: detection threshold in sigma of the case's sky noise (luminance)
DETECT_SIGMA = 5.0
#: depth of the clean catalogue that an output detection is matched against for "invented":
#: a real star just under the detection threshold in the clean image, which a denoiser lifts
#: just over it, has a counterpart; "spurious" matches the threshold-deep catalogue only
DEEP_SIGMA = 3.0
#: stars in the photometry sample that make a case a star field (flux-error target)
STAR_FIELD_MIN = 20
#: fewest photometry stars for a flux error to be reported
PHOT_MIN = 5
#: single-pixel defects: this many sigma above the neighbours' median ...
DEFECT_SIGMA = 8.0
#: ... and this many times its brightest direct neighbour's excess over the local background
DEFECT_SHARPNESS = 5.0


# ------------------------------------------------------------------------------ references


@dataclass
class Reference:
    """A clean reference image and what the metrics need to know about it.

    Attributes
    ----------
    name : str
    image : ndarray
        ``(H, W)`` or ``(C, H, W)`` float32, linear.
    saturated : ndarray
        ``(H, W)`` bool, clipped pixels.
    sigma_ref : float
        The reference's own noise (0 for a simulated scene).
    sky : ndarray
        ``(C,)`` sky level per channel: the scene's for a simulation, the channel median of
        the whole binned frame for a real one.
    kind : str
        ``"sim"`` or ``"real"``.
    note : str
        How it was made.
    fwhm : float
        Stellar FWHM in pixels (set by :func:`prepare`).
    """

    name: str
    image: np.ndarray
    saturated: np.ndarray
    sigma_ref: float
    sky: np.ndarray
    kind: str
    note: str
    fwhm: float = float("nan")


def simulated_reference(index: int, size: int, *, seed_base: int = SIM_SEED_BASE) -> Reference:
    """Scene ``index`` of the simulated validation split, ``size`` x ``size`` px."""
    from napari_astrodenoise.simulate.sky import SkyConfig, simulate_scene

    preset = SIM_PRESETS[index % len(SIM_PRESETS)]
    channels = 3 if index % 2 == 0 else 1
    seed = seed_base + index
    scene = simulate_scene(
        (size, size), channels=channels, seed=seed, config=SkyConfig.preset(preset)
    )
    image = scene.image if channels == 3 else scene.image[0]
    saturated = np.any(scene.image >= np.float32(scene.saturation), axis=0)
    name = f"sim{index:02d}_{preset}_{'rgb' if channels == 3 else 'mono'}"
    note = f"simulate_scene seed {seed}, preset {preset}, {channels} channel(s)"
    sky = np.asarray(scene.background, dtype=np.float64)
    return Reference(name, image.astype(np.float32), saturated, 0.0, sky, "sim", note)


def remove_defects(native: np.ndarray) -> tuple[np.ndarray, int]:
    """Replace isolated hot pixels of a 2-D frame by the median of their 8 neighbours.

    A pixel is a defect when it exceeds that median by more than ``DEFECT_SIGMA`` local noise
    sigmas and its excess over the local background (the median of the 16 pixels two away)
    is more than ``DEFECT_SHARPNESS`` times that of its brightest direct neighbour: sharper
    than a star (a centred Gaussian star of FWHM 1.5 px has a ratio of 3.4). The local noise
    is the larger of the frame's robust sigma and 1.25 x the mean absolute deviation from
    the neighbours' median over 9x9 px (shot noise is higher on nebulae and cluster cores).

    Returns
    -------
    (ndarray, int)
        The corrected frame (float64) and the number of pixels replaced.
    """
    from napari_astrodenoise.core.noiselevel import noise_sigma

    x = np.asarray(native, dtype=np.float64)
    ring = np.ones((3, 3), dtype=bool)
    ring[1, 1] = False
    outer = np.ones((5, 5), dtype=bool)
    outer[1:4, 1:4] = False
    cross = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=bool)
    med8 = ndimage.median_filter(x, footprint=ring, mode="nearest")
    background = ndimage.median_filter(x, footprint=outer, mode="nearest")
    max4 = ndimage.maximum_filter(x, footprint=cross, mode="nearest")
    excess = x - med8
    local = 1.2533 * ndimage.uniform_filter(np.abs(excess), size=9, mode="nearest")
    sigma = np.maximum(local, float(noise_sigma(x)[0]))
    hot = (excess > DEFECT_SIGMA * sigma) & (
        x - background > DEFECT_SHARPNESS * np.maximum(max4 - background, 0.0)
    )
    return np.where(hot, med8, x), int(hot.sum())


def _bin2(plane: np.ndarray) -> np.ndarray:
    h, w = (plane.shape[0] // 2) * 2, (plane.shape[1] // 2) * 2
    p = plane[:h, :w]
    return 0.25 * (p[0::2, 0::2] + p[0::2, 1::2] + p[1::2, 0::2] + p[1::2, 1::2])


def _bayer_planes(raw: np.ndarray, pattern: str) -> dict[str, list[np.ndarray]]:
    """CFA sub-planes by colour, the pattern read on the array as stored (row 0 first)."""
    h, w = (raw.shape[0] // 2) * 2, (raw.shape[1] // 2) * 2
    planes: dict[str, list[np.ndarray]] = {"R": [], "G": [], "B": []}
    for i, colour in enumerate(pattern[:4]):
        dy, dx = divmod(i, 2)
        planes[colour].append(raw[dy:h:2, dx:w:2])
    return planes


def _binned_frame(data: np.ndarray, bayer: str | None) -> tuple[np.ndarray, np.ndarray, int]:
    """(binned image, binned saturation mask, defects replaced) of a native 2-D frame or a
    (C, H, W) cube (each plane on its own; saturated where any plane is)."""
    data = np.asarray(data, dtype=np.float64)
    top = float(np.nanmax(data))
    clipped = data >= top - 0.005 * abs(top)
    if bayer:
        planes = _bayer_planes(data, bayer)
        sat_planes = _bayer_planes(clipped, bayer)
        chans, n_fixed = [], 0
        for colour in "RGB":
            fixed = []
            for p in planes[colour]:
                q, n = remove_defects(p)
                fixed.append(q)
                n_fixed += n
            chans.append(np.mean(fixed, axis=0))
        saturated = np.any([s for c in "RGB" for s in sat_planes[c]], axis=0)
        return np.stack(chans), saturated, n_fixed
    if data.ndim == 3:
        planes = [_binned_frame(plane, None) for plane in data]
        image = np.stack([p[0] for p in planes])
        saturated = np.any([p[1] for p in planes], axis=0)
        return image, saturated, sum(p[2] for p in planes)
    fixed, n_fixed = remove_defects(data)
    saturated = _bin2(clipped.astype(np.float64)) > 0
    return _bin2(fixed), saturated, n_fixed


def best_crop(xy: np.ndarray, signal: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the ``size`` window holding most of ``xy`` (grid stride size/4).

    Ties (e.g. frames with almost no star above the threshold) go to the window with the
    most ``signal`` (an (H, W) map, e.g. the luminance above the sky, clipped at 0).
    """
    h, w = signal.shape
    table = np.pad(signal.cumsum(0).cumsum(1), ((1, 0), (1, 0)))

    def starts(n: int) -> list[int]:
        s = list(range(0, max(n - size, 0) + 1, max(size // 4, 1)))
        if s[-1] != max(n - size, 0):
            s.append(max(n - size, 0))
        return s

    best, corner = (-1, -np.inf), (0, 0)
    for y0 in starts(h):
        for x0 in starts(w):
            y1, x1 = min(y0 + size, h), min(x0 + size, w)
            inside = (xy[:, 0] >= x0) & (xy[:, 0] < x1) & (xy[:, 1] >= y0) & (xy[:, 1] < y1)
            total = table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]
            if (int(inside.sum()), float(total)) > best:
                best, corner = (int(inside.sum()), float(total)), (y0, x0)
    return corner


def real_reference(path: Path, size: int) -> Reference:
    """A real frame prepared as the module docstring says: defects, 2x2 bin, star-rich crop."""
    from napari_astrodenoise.core.noiselevel import noise_sigma
    from napari_astrodenoise.fits_io import fits_stem, read_fits

    first = read_fits(path)[0]
    image, saturated, n_fixed = _binned_frame(first.data, first.bayer_pattern)
    sigma = float(np.median(noise_sigma(image)))
    chw = image.reshape(-1, *image.shape[-2:])
    sky = np.median(chw.reshape(chw.shape[0], -1), axis=1)
    fwhm = m.estimate_fwhm(image, threshold=20.0 * sigma, saturated=saturated)
    xy = m.find_stars(image, threshold=DETECT_SIGMA * sigma, fwhm=fwhm)
    h, w = image.shape[-2:]
    size = min(size, h, w)
    lum = m.luminance(image)
    y0, x0 = best_crop(xy, np.clip(lum - np.median(lum), 0.0, None), size)
    crop = image[..., y0 : y0 + size, x0 : x0 + size].astype(np.float32)
    how = "per-CFA-colour 2x2 bin (RGB)" if first.bayer_pattern else "2x2 bin"
    note = (
        f"HDU {first.hdu_index}, {n_fixed} defects fixed, {how}, "
        f"crop y{y0}:{y0 + size} x{x0}:{x0 + size} of the binned frame"
    )
    ref = Reference(
        fits_stem(path),
        crop,
        saturated[y0 : y0 + size, x0 : x0 + size],
        sigma,
        sky,
        "real",
        note,
    )
    ref.fwhm = fwhm
    return ref


# ------------------------------------------------------------------------------ noise


@dataclass(frozen=True)
class NoiseModel:
    """Poisson-Gaussian noise: electrons ``gain * (x - offset)`` are Poisson, plus read noise.

    Attributes
    ----------
    gain : float
        Electrons per image unit.
    read_noise : float
        Read noise in electrons.
    offset : ndarray
        ``(C,)`` level of zero photons per channel (0 for simulated scenes).
    """

    gain: float
    read_noise: float
    offset: np.ndarray

    @classmethod
    def for_level(cls, ref: Reference, level: Level) -> NoiseModel:
        """The noise of ``level`` for a reference (see the module docstring)."""
        from napari_astrodenoise.simulate.noise import reference_level

        if ref.kind == "sim":
            gain = level.sky_e / reference_level(ref.image)
            return cls(gain, READ_NOISE_E, np.zeros(len(ref.sky)))
        gain = math.sqrt(level.sky_e + READ_NOISE_E**2) / (level.k * ref.sigma_ref)
        return cls(gain, READ_NOISE_E, ref.sky - level.sky_e / gain)

    def _off(self, image: np.ndarray) -> np.ndarray:
        return self.offset.reshape(-1, 1, 1) if image.ndim == 3 else self.offset[0]

    def apply(self, clean: np.ndarray, seed: int | np.random.Generator) -> np.ndarray:
        """Noisy float32 copy of ``clean``."""
        from napari_astrodenoise.simulate.noise import poisson_gaussian

        off = self._off(clean)
        signal = clean.astype(np.float64) - off
        noisy = poisson_gaussian(signal, gain=self.gain, read_noise=self.read_noise, seed=seed)
        return (noisy + off).astype(np.float32)

    def sky_sigma(self, sky: np.ndarray) -> tuple[float, float]:
        """(channel, luminance) noise sigma at the sky level ``sky`` ``(C,)``.

        The channel value is the rms over channels; the luminance (channel mean) one is
        ``sqrt(sum of variances) / C``.
        """
        sky = np.asarray(sky, dtype=np.float64).reshape(-1)
        electrons = np.maximum(self.gain * (sky - self.offset), 0.0)
        var = (electrons + self.read_noise**2) / self.gain**2
        return math.sqrt(float(var.mean())), math.sqrt(float(var.sum())) / len(var)

    # generalized Anscombe transform and its closed-form unbiased inverse (Makitalo & Foi)
    def gat(self, noisy: np.ndarray) -> np.ndarray:
        """Variance-stabilized data: Gaussian noise of sigma ~1."""
        e = self.gain * (noisy.astype(np.float64) - self._off(noisy))
        return 2.0 * np.sqrt(np.maximum(e + 0.375 + self.read_noise**2, 0.0))

    def inverse_gat(self, d: np.ndarray, like: np.ndarray) -> np.ndarray:
        """Back to image units (float32) from a denoised transformed image."""
        d = np.maximum(np.asarray(d, dtype=np.float64), 1.0)
        r = math.sqrt(1.5)
        e = 0.25 * d**2 + 0.25 * r / d - 1.375 / d**2 + 0.625 * r / d**3 - 0.125
        e = np.maximum(e - self.read_noise**2, 0.0)
        return (e / self.gain + self._off(like)).astype(np.float32)


# ------------------------------------------------------------------------------ one case


@dataclass
class Case:
    """One reference at one noise level, with everything the metrics share."""

    ref: Reference
    level: Level
    nm: NoiseModel
    noisy: np.ndarray
    sigma_chan: float
    sigma_lum: float
    stretch: m.Stretch
    clean_xy: np.ndarray
    phot: np.ndarray
    deep_xy: np.ndarray

    @property
    def name(self) -> str:
        return f"{self.ref.name}/{self.level.name}"

    @property
    def threshold(self) -> float:
        return DETECT_SIGMA * self.sigma_lum


def make_case(ref: Reference, level: Level, seed: int) -> Case:
    """Add the level's noise to a reference and measure the clean image's stars."""
    nm = NoiseModel.for_level(ref, level)
    noisy = nm.apply(ref.image, seed)
    chan, lum = nm.sky_sigma(ref.sky)
    clean_xy = m.find_stars(ref.image, threshold=DETECT_SIGMA * lum, fwhm=ref.fwhm)
    phot = m.photometry_sample(
        clean_xy, ref.image.shape[-2:], fwhm=ref.fwhm, saturated=ref.saturated
    )
    deep_xy = m.find_stars(ref.image, threshold=DEEP_SIGMA * lum, fwhm=ref.fwhm)
    stretch = m.Stretch.fit(ref.image, softening=chan, sky=ref.sky)
    return Case(ref, level, nm, noisy, chan, lum, stretch, clean_xy, phot, deep_xy)


def score(case: Case, out: np.ndarray) -> dict:
    """All metrics of one output against the case's clean reference."""
    clean = case.ref.image
    s_clean, s_out = case.stretch(clean), case.stretch(out)
    s_range = m.robust_range(s_clean)
    out_xy = m.find_stars(out, threshold=case.threshold, fwhm=case.ref.fwhm)
    err, bias = float("nan"), float("nan")
    if len(case.phot) >= PHOT_MIN:
        err, bias = m.flux_error(clean, out, case.clean_xy[case.phot], fwhm=case.ref.fwhm)
    return {
        "psnr": m.psnr(clean, out, m.robust_range(clean)),
        "psnr_asinh": m.psnr(s_clean, s_out, s_range),
        "ssim_asinh": m.ssim(s_clean, s_out, s_range),
        "flux_err": err,
        "flux_bias": bias,
        "recall": m.star_recall(case.clean_xy, out_xy),
        "spurious": m.spurious_stars(case.clean_xy, out_xy),
        "invented": m.spurious_stars(case.deep_xy, out_xy),
    }


def references(
    *,
    n_sim: int,
    crop: int,
    data_dir: Path | None = EVAL_DIR,
    images: tuple[str, ...] | list[str] = REAL_IMAGES,
) -> list[Reference]:
    r"""The evaluation's references: ``n_sim`` simulated scenes, then ``images`` of ``data_dir``.

    ``data_dir`` None: no real frames; a folder that does not exist is skipped with a line
    on stderr. Each reference is :func:`prepare`\ d.
    """
    refs = [simulated_reference(i, crop) for i in range(n_sim)]
    if data_dir is not None:
        if not data_dir.is_dir():
            print(f"real eval frames not found at {data_dir}: skipped", file=sys.stderr)
        else:
            refs += [real_reference(data_dir / n, crop) for n in images]
    return [prepare(r) for r in refs]


def prepare(ref: Reference) -> Reference:
    """Set the reference's FWHM (from its brightest stars) if not yet measured."""
    if not math.isfinite(ref.fwhm):
        nm = NoiseModel.for_level(ref, LEVELS["light"])
        _chan, lum = nm.sky_sigma(ref.sky)
        ref.fwhm = m.estimate_fwhm(ref.image, threshold=20.0 * lum, saturated=ref.saturated)
    return ref
