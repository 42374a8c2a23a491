"""Denoising quality of the shipped model against BM3D, non-local means and wavelets.

Two sets of cases, each with synthetic Poisson-Gaussian noise at three levels:

(a) the simulated validation split: ``simulate.sky.simulate_scene`` scenes with seeds
    10_000_000 + i (training draws its scenes from its own seeds, all far below this), the
    scene presets taken in turn, colour and mono alternating; the clean scene is the truth.
(b) the real frames in ``../shared/data/fits/eval/`` (evaluation only, nothing here is tuned
    to them). Each frame is prepared by one generic rule: single-pixel defects (hot pixels,
    cosmic rays) are replaced by their neighbours' median on the native pixels, then the
    frame is 2x2-binned (mean) to make the reference cleaner; the raw Bayer frame is binned
    per CFA colour instead (R, mean of the two G, B: a colour image at half resolution). The
    crop is the one, on a grid of stride crop/4, that holds the most stars detected at
    5 sigma. These references still carry their own noise: noise is added on top of them
    and metrics are against the reference. No denoiser can tell the reference's own noise
    from the added noise, so the attainable PSNR gain is about 10 log10(1 + k**2) dB for
    added noise k times the reference's (the "gain cap" column).

Noise levels (``LEVELS``; read noise 5 e- throughout):

- simulated: ``sky_e`` electrons at the scene's sky level (``noise.reference_level``, the
  convention of the training noise): gain = sky_e / sky.
- real: the sky level in photons is unknown (bias pedestals, sky-subtracted frames), so the
  added noise is set against the reference's own robust noise sigma_ref
  (``noiselevel.noise_sigma`` of the whole binned frame): the sky noise is ``k x sigma_ref``
  with ``sky_e`` electrons of virtual sky, i.e. gain = sqrt(sky_e + 5**2) / (k sigma_ref),
  and the shot noise acts on ``x - sky + sky_e / gain`` (sky = the channel median of the
  whole binned frame).

Methods: the model (``pipeline.denoise``, default settings), BM3D, scikit-image non-local
means (fast mode, patch 5, distance 6, h = 0.6 sigma: the scikit-image gallery's settings
for a known sigma) and wavelet denoising (BayesShrink, soft). The three classical methods
are given the true noise model: they run on the generalized Anscombe transform of the data
(Makitalo & Foi), where the noise is Gaussian with sigma 1, rescaled to about [0, 1]
(0.1st..99.9th percentile), with that true sigma, and are mapped back by the closed-form
unbiased inverse. Colour BM3D is ``bm3d_rgb`` (opponent colour space). Metrics are defined
in ``_metrics.py``.

Prints a markdown table and writes ``benchmarks/results/eval_<tag>.md`` and one PNG per
reference image (``eval_<tag>_<name>.png``: rows are noise levels; noisy | model | BM3D |
clean on the same asinh stretch, the central 200x200 px at 1:1). Usage::

    .venv/bin/python benchmarks/evaluate.py                        # shipped default model
    .venv/bin/python benchmarks/evaluate.py --model path/to/m.safetensors
    .venv/bin/python benchmarks/evaluate.py --quick --model untrained   # smoke test

The shipping rule's crowded-field check (``training/README.md``) runs the same protocol on
the crowded, undersampled training frames instead, never the evaluation frames::

    .venv/bin/python benchmarks/evaluate.py --model PATH --no-sim --methods model bm3d \
        --data-dir ../shared/data/fits/train --images ngc6976_sdss_g_reproj.fits \
        ngc6976_sdss_r_reproj.fits ngc6976_sdss_i_reproj.fits m67_dss_poss1.fits \
        --no-png --tag crowded_NAME
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

import _metrics as m

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
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


# ------------------------------------------------------------------------------ methods


def _classical(
    run: Callable[[np.ndarray, float, bool], np.ndarray],
) -> Callable[[np.ndarray, NoiseModel], np.ndarray]:
    """Wrap a Gaussian denoiser ``run(hwc_or_hw, sigma, colour)`` in GAT + [0, 1] scaling."""

    def method(noisy: np.ndarray, nm: NoiseModel) -> np.ndarray:
        f = nm.gat(noisy)
        lo, hi = np.percentile(f, m.RANGE_PERCENTILES)
        span = max(float(hi - lo), 1e-6)
        u = (f - lo) / span
        colour = u.ndim == 3
        z = np.moveaxis(u, 0, -1) if colour else u
        out = np.asarray(run(z, 1.0 / span, colour), dtype=np.float64)
        out = np.moveaxis(out, -1, 0) if colour else out
        return nm.inverse_gat(out * span + lo, noisy)

    return method


def _bm3d(z: np.ndarray, sigma: float, colour: bool) -> np.ndarray:
    import bm3d

    if colour:
        return bm3d.bm3d_rgb(z, sigma)
    return bm3d.bm3d(z, sigma)


def _nlm(z: np.ndarray, sigma: float, colour: bool) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    return denoise_nl_means(
        z,
        patch_size=5,
        patch_distance=6,
        h=0.6 * sigma,
        sigma=sigma,
        fast_mode=True,
        channel_axis=-1 if colour else None,
    )


def _wavelet(z: np.ndarray, sigma: float, colour: bool) -> np.ndarray:
    from skimage.restoration import denoise_wavelet

    return denoise_wavelet(
        z,
        sigma=sigma,
        method="BayesShrink",
        mode="soft",
        rescale_sigma=True,
        channel_axis=-1 if colour else None,
    )


CLASSICAL = {"bm3d": _classical(_bm3d), "nlm": _classical(_nlm), "wavelet": _classical(_wavelet)}
METHODS = ("noisy", "model", "bm3d", "nlm", "wavelet")


def load_denoiser(
    spec: str,
    device: str = "auto",
    flux_lock: float | None = None,
    ensemble: int = 1,
    change_limit: float | None = None,
    peak_cap: int | None = None,
    lock_threshold: float | None = None,
    star_refit: float | None = None,
):
    """``(callable(noisy) -> output, label, name)`` for ``--model``: default, untrained or a
    path, run with ``flux_lock``, ``change_limit``, ``peak_cap``, ``lock_threshold`` and
    ``star_refit`` (None: the engine's defaults) and ``ensemble``."""
    from napari_astrodenoise.core.options import defaults
    from napari_astrodenoise.core.pipeline import denoise

    DEFAULT = defaults()
    from napari_astrodenoise.core.weights import ModelNotFoundError, load_model

    if spec == "untrained":
        loaded = _untrained_model(device)
        label = "untrained ResUNet (identity; smoke test only)"
    else:
        try:
            loaded = load_model(spec, device=device)
        except ModelNotFoundError as err:
            sys.exit(f"{err}\n(use --model PATH, or --model untrained for a smoke test)")
        label = f"{loaded.name} (sha256 {loaded.sha256[:12]})"
    lock = DEFAULT["flux_lock"] if flux_lock is None else flux_lock
    limit = DEFAULT["change_limit"] if change_limit is None else change_limit
    cap = DEFAULT["peak_cap"] if peak_cap is None else peak_cap
    threshold = DEFAULT["lock_threshold"] if lock_threshold is None else lock_threshold
    refit = DEFAULT["star_refit"] if star_refit is None else star_refit
    label += (
        f", flux lock {lock:g} px (threshold {threshold:g} sigma), change limit {limit:g} "
        f"sigma, peak cap {cap} px, star refit {refit:g}, self-ensemble {ensemble}"
    )
    name = loaded.name if lock == DEFAULT["flux_lock"] else f"{loaded.name}_lock{lock:g}"
    name += "" if limit == DEFAULT["change_limit"] else f"_limit{limit:g}"
    name += "" if threshold == DEFAULT["lock_threshold"] else f"_lockth{threshold:g}"
    name += "" if cap == DEFAULT["peak_cap"] else f"_cap{cap}"
    name += "" if refit == DEFAULT["star_refit"] else f"_refit{refit:g}"
    name += "" if ensemble == 1 else f"_ens{ensemble}"

    def run(noisy: np.ndarray) -> np.ndarray:
        axis = 0 if noisy.ndim == 3 else None
        return denoise(
            noisy,
            model=loaded,
            channel_axis=axis,
            flux_lock=lock,
            lock_threshold=threshold,
            change_limit=limit,
            peak_cap=cap,
            star_refit=refit,
            ensemble=ensemble,
        )

    return run, label, name


def add_model_options(p: argparse.ArgumentParser) -> None:
    """The options that choose and run the model (for ``denoiser_from_args``)."""
    p.add_argument("--model", default="default", help="default | untrained | PATH")
    p.add_argument("--device", default="auto")
    p.add_argument("--flux-lock", type=float, default=None, help="px (default: the engine's)")
    p.add_argument(
        "--change-limit", type=float, default=None, help="noise sigmas (default: the engine's)"
    )
    p.add_argument("--peak-cap", type=int, default=None, help="px (default: the engine's)")
    p.add_argument(
        "--lock-threshold", type=float, default=None, help="sigmas (default: the engine's)"
    )
    p.add_argument(
        "--star-refit", type=float, default=None, help="prior width (default: the engine's)"
    )
    p.add_argument("--ensemble", type=int, choices=(1, 2, 4, 8), default=1)


def denoiser_from_args(args: argparse.Namespace):
    """``load_denoiser`` with the options of ``add_model_options``."""
    return load_denoiser(
        args.model,
        args.device,
        args.flux_lock,
        args.ensemble,
        args.change_limit,
        args.peak_cap,
        args.lock_threshold,
        args.star_refit,
    )


def _untrained_model(device: str):
    """A small fresh ResUNet (its zeroed tail makes it the identity), saved to a temp dir."""
    import tempfile

    import torch

    from napari_astrodenoise.core.model import ResUNet, ResUNetConfig
    from napari_astrodenoise.core.weights import load_model, save_model

    torch.manual_seed(0)
    module = ResUNet(ResUNetConfig(width=8, depth=2))
    with tempfile.TemporaryDirectory(prefix="astrodenoise-eval-") as folder:
        path = Path(folder) / "untrained.safetensors"
        save_model(module, path, name="untrained")
        return load_model(path, device=device)  # weights are in memory once loaded


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


def run_case(case: Case, methods: dict[str, Callable[[np.ndarray], np.ndarray]]) -> dict:
    """``{method: (output, metrics)}`` for every method on one case."""
    results = {}
    for name, fn in methods.items():
        start = time.perf_counter()
        out = fn(case.noisy)
        seconds = time.perf_counter() - start
        metrics = score(case, out)
        metrics["seconds"] = seconds
        results[name] = (out, metrics)
    return results


def prepare(ref: Reference) -> Reference:
    """Set the reference's FWHM (from its brightest stars) if not yet measured."""
    if not math.isfinite(ref.fwhm):
        nm = NoiseModel.for_level(ref, LEVELS["light"])
        _chan, lum = nm.sky_sigma(ref.sky)
        ref.fwhm = m.estimate_fwhm(ref.image, threshold=20.0 * lum, saturated=ref.saturated)
    return ref


# ------------------------------------------------------------------------------ figures


def display(stretch: m.Stretch, image: np.ndarray) -> np.ndarray:
    """``(H, W)`` or ``(H, W, 3)`` in [0, 1]: the stretch from -2 sky sigma to the top."""
    s = stretch(image)
    lo = np.arcsinh(-2.0) / np.arcsinh(stretch.top / stretch.softening)
    d = np.clip((s - lo) / (1.0 - lo), 0.0, 1.0)
    return np.moveaxis(d, 0, -1) if d.ndim == 3 else d


def _window(image: np.ndarray, size: int = 200) -> np.ndarray:
    h, w = image.shape[-2:]
    y0, x0 = max((h - size) // 2, 0), max((w - size) // 2, 0)
    return image[..., y0 : y0 + size, x0 : x0 + size]


def figure(rows: list[tuple[Case, dict]], path: Path, model_label: str) -> None:
    """PNG of one reference: a row per noise level, noisy | model | BM3D | clean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [c for c in ("noisy", "model", "bm3d") if c in rows[0][1]] + ["clean"]
    fig, axes = plt.subplots(
        len(rows), len(columns), figsize=(2.0 * len(columns), 2.0 * len(rows) + 0.35), dpi=100,
        squeeze=False,
    )  # fmt: skip
    for (case, results), row in zip(rows, axes, strict=True):
        for col, ax in zip(columns, row, strict=True):
            image = case.ref.image if col == "clean" else results[col][0]
            shown = display(case.stretch, _window(image))
            ax.imshow(shown, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            title = col if col == "clean" else f"{col} {results[col][1]['psnr']:.1f} dB"
            ax.set_title(title, fontsize=8)
        row[0].set_ylabel(case.level.name, fontsize=8)
    fig.suptitle(f"{rows[0][0].ref.name} (model: {model_label})", fontsize=8)
    fig.tight_layout(pad=0.3, rect=(0, 0, 1, 1 - 0.25 / fig.get_figheight()))
    fig.savefig(path)
    plt.close(fig)
    compact_png(path, grey=rows[0][0].ref.image.ndim == 2)


def compact_png(path: Path, *, grey: bool = False) -> None:
    """Rewrite a matplotlib PNG small: greyscale, or a 256-colour palette (about 1/3 size)."""
    from PIL import Image

    with Image.open(path) as im:
        rgb = im.convert("RGB")
    small = rgb.convert("L") if grey else rgb.quantize(256)
    small.save(path, optimize=True)


# ------------------------------------------------------------------------------ tables


def _f(value: float, fmt: str) -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, fmt)


def _pct(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{100 * value:+.1f} %"


def results_table(rows: list[tuple[Case, dict]]) -> list[str]:
    head = (
        "| case | method | PSNR dB | gain dB | PSNR asinh | SSIM asinh | flux err | flux bias "
        "| recall | spurious | invented | time s |"
    )
    lines = [head, "|" + "---|" * 12]
    for case, results in rows:
        base = results["noisy"][1]["psnr"]
        for method, (_out, r) in results.items():
            lines.append(
                f"| {case.name} | {method} | {_f(r['psnr'], '.2f')} | "
                f"{_f(r['psnr'] - base, '+.2f')} | {_f(r['psnr_asinh'], '.2f')} | "
                f"{_f(r['ssim_asinh'], '.3f')} | "
                f"{_f(100 * r['flux_err'], '.2f')}{' %' if math.isfinite(r['flux_err']) else ''}"
                f" | {_pct(r['flux_bias'])} | {_f(r['recall'], '.3f')} | {r['spurious']} | "
                f"{r['invented']} | {r['seconds']:.2f} |"
            )
    return lines


def cases_table(rows: list[tuple[Case, dict]]) -> list[str]:
    lines = [
        "| case | shape | FWHM px | sigma_ref | sky sigma | k | gain cap dB | gain e-/unit "
        "| stars | phot |",
        "|" + "---|" * 10,
    ]
    for case, _results in rows:
        ref = case.ref
        k = case.sigma_chan / ref.sigma_ref if ref.sigma_ref > 0 else float("nan")
        cap = 10 * math.log10(1 + k * k) if math.isfinite(k) else float("nan")
        lines.append(
            f"| {case.name} | {'x'.join(map(str, ref.image.shape))} | {ref.fwhm:.2f} | "
            f"{ref.sigma_ref:.4g} | {case.sigma_chan:.4g} | {_f(k, '.1f')} | {_f(cap, '.1f')} | "
            f"{case.nm.gain:.4g} | {len(case.clean_xy)} | {len(case.phot)} |"
        )
    return lines


def summary_table(rows: list[tuple[Case, dict]]) -> list[str]:
    methods = list(rows[0][1])
    lines = [
        "| method | mean gain dB | mean SSIM asinh | median flux err | mean recall "
        "| spurious (total) | invented (total) | time s (total) |",
        "|" + "---|" * 8,
    ]
    for method in methods:
        gains = [r[method][1]["psnr"] - r["noisy"][1]["psnr"] for _c, r in rows]
        ssims = [r[method][1]["ssim_asinh"] for _c, r in rows]
        errs = [r[method][1]["flux_err"] for _c, r in rows]
        errs = [e for e in errs if math.isfinite(e)]
        recalls = [r[method][1]["recall"] for _c, r in rows]
        recalls = [x for x in recalls if math.isfinite(x)]
        lines.append(
            f"| {method} | {np.mean(gains):+.2f} | {np.mean(ssims):.3f} | "
            f"{_f(100 * np.median(errs) if errs else float('nan'), '.2f')} % | "
            f"{_f(np.mean(recalls) if recalls else float('nan'), '.3f')} | "
            f"{sum(r[method][1]['spurious'] for _c, r in rows)} | "
            f"{sum(r[method][1]['invented'] for _c, r in rows)} | "
            f"{sum(r[method][1]['seconds'] for _c, r in rows):.1f} |"
        )
    return lines


def targets(rows: list[tuple[Case, dict]]) -> list[str]:
    """The issue's targets for the model against BM3D, each with PASS or FAIL."""
    if not rows or "model" not in rows[0][1] or "bm3d" not in rows[0][1]:
        return ["Targets: not evaluated (needs both the model and BM3D)."]

    def get(results: dict, method: str, key: str) -> float:
        return results[method][1][key]

    diff = [get(r, "model", "psnr") - get(r, "bm3d", "psnr") for _c, r in rows]
    above = sum(d > 0 for d in diff)
    t1 = above == len(diff) and np.mean(diff) >= 1.0
    phot = [(c, r) for c, r in rows if math.isfinite(get(r, "bm3d", "flux_err"))]
    no_worse = [get(r, "model", "flux_err") <= get(r, "bm3d", "flux_err") for _c, r in phot]
    fields = [(c, r) for c, r in phot if len(c.phot) >= STAR_FIELD_MIN]
    under = [get(r, "model", "flux_err") < 0.02 for _c, r in fields]
    t2 = all(no_worse) and all(under)
    spur = [get(r, "model", "spurious") <= get(r, "bm3d", "spurious") for _c, r in rows]
    t3 = all(spur)
    invented = [get(r, "model", "invented") <= get(r, "bm3d", "invented") for _c, r in rows]
    word = {True: "PASS", False: "FAIL"}
    return [
        f"- PSNR gain above BM3D's on every case and by >= 1 dB on average: **{word[bool(t1)]}**"
        f" (model above BM3D on {above}/{len(diff)} cases, mean difference "
        f"{np.mean(diff):+.2f} dB, worst {min(diff):+.2f} dB)",
        f"- median star-flux error no worse than BM3D's (every case with >= {PHOT_MIN} "
        f"photometry stars) and under 2 % on star fields (>= {STAR_FIELD_MIN} photometry "
        f"stars): **{word[bool(t2)]}** (no worse on {sum(no_worse)}/{len(no_worse)}, under 2 % "
        f"on {sum(under)}/{len(under)} star fields)",
        f"- no more spurious stars than BM3D: **{word[bool(t3)]}** (on {sum(spur)}/{len(spur)} "
        f"cases; totals model {sum(get(r, 'model', 'spurious') for _c, r in rows)}, BM3D "
        f"{sum(get(r, 'bm3d', 'spurious') for _c, r in rows)}). Not a target, for reading it: "
        f"detections with no clean source even at {DEEP_SIGMA:g} sigma (invented) no more "
        f"than BM3D's on {sum(invented)}/{len(invented)} cases; totals model "
        f"{sum(get(r, 'model', 'invented') for _c, r in rows)}, BM3D "
        f"{sum(get(r, 'bm3d', 'invented') for _c, r in rows)}",
    ]


def _shown(path: Path) -> str:
    """``path`` relative to the repository root when it can be (``../shared/...``)."""
    try:
        return os.path.relpath(path, ROOT)
    except ValueError:  # another drive on Windows
        return str(path)


def report(rows, refs, args, model_label: str) -> str:
    levels = ", ".join(
        f"{lv.name}: {lv.sky_e:g} e- sky (sim) / {lv.k:g} x sigma_ref (real)"
        for lv in (LEVELS[n] for n in args.levels)
    )
    lines = [
        f"# Denoising evaluation: {args.tag}",
        "",
        f"Model: {model_label}. Host: {platform.node() or 'unknown'} ({platform.machine()}), "
        f"crop {args.crop} px{', quick run' if args.quick else ''}.",
        "",
        f"Command: `.venv/bin/python {args.command}`",
        "",
        "Protocol (see benchmarks/evaluate.py): Poisson-Gaussian noise, read noise "
        f"{READ_NOISE_E:g} e-, levels {levels}. Simulated scenes are the truth; the real "
        "frames are references that carry their own noise (after defect removal and 2x2 "
        "binning) with noise added on top, so the attainable gain there is capped at about "
        "10 log10(1 + k^2) dB (gain cap). PSNR on "
        "linear data, data range = clean 0.1..99.9th percentile; PSNR/SSIM asinh on the "
        "display stretch (softening = the case's sky sigma). Stars: DAOStarFinder at "
        f"{DETECT_SIGMA:g} x the case's sky sigma (luminance) for clean and outputs alike; "
        "recall within 1.5 px, spurious = no clean star within 2 px, invented = no clean "
        f"source within 2 px even at {DEEP_SIGMA:g} sigma (a deeper clean catalogue, so that "
        "a real star just under the threshold that a method lifts over it is not counted). "
        "Flux: apertures of "
        "1.5 FWHM at the clean stars, isolated and unsaturated, annulus 3-5 FWHM. Classical "
        "methods get the true noise model (GAT, sigma 1).",
        "",
        f"References{'' if args.no_real else f' (real frames from {_shown(args.data_dir)})'}:",
        "",
        *[f"- {ref.name}: {ref.note}" for ref in refs],
        "",
        "## Cases",
        "",
        *cases_table(rows),
        "",
        "## Results",
        "",
        *results_table(rows),
        "",
        "## Summary over all cases",
        "",
        *summary_table(rows),
        "",
        "## Targets (model against BM3D)",
        "",
        *targets(rows),
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ main


def references(args) -> list[Reference]:
    refs: list[Reference] = []
    if not args.no_sim:
        refs += [simulated_reference(i, args.crop) for i in range(args.n_sim)]
    if not args.no_real:
        if not args.data_dir.is_dir():
            print(f"real eval frames not found at {args.data_dir}: skipped", file=sys.stderr)
        else:
            refs += [real_reference(args.data_dir / n, args.crop) for n in args.images]
    return [prepare(r) for r in refs]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_options(p)
    p.add_argument("--quick", action="store_true", help="128 px crops, 2 scenes, one level")
    p.add_argument("--crop", type=int, default=None, help="crop size in px (default 384)")
    p.add_argument("--n-sim", type=int, default=None, help="simulated scenes (default 6)")
    p.add_argument("--levels", nargs="+", choices=list(LEVELS), default=None)
    p.add_argument("--methods", nargs="+", choices=METHODS[1:], default=list(METHODS[1:]))
    p.add_argument("--images", nargs="+", default=list(REAL_IMAGES), help="files in --data-dir")
    p.add_argument("--data-dir", type=Path, default=EVAL_DIR)
    p.add_argument("--no-sim", action="store_true")
    p.add_argument("--no-real", action="store_true")
    p.add_argument("--no-png", action="store_true")
    p.add_argument("--tag", default=None, help="results name (default: model name)")
    args = p.parse_args(argv)
    args.crop = args.crop or (128 if args.quick else 384)
    args.n_sim = args.n_sim if args.n_sim is not None else (2 if args.quick else 6)
    args.levels = args.levels or (["moderate"] if args.quick else list(LEVELS))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.command = shlex.join(
        ["benchmarks/evaluate.py", *(sys.argv[1:] if argv is None else argv)]
    )
    methods: dict[str, Callable[[np.ndarray], np.ndarray]] = {"noisy": lambda z: z}
    model_label, model_name = "not run", "nomodel"
    if "model" in args.methods:
        methods["model"], model_label, model_name = denoiser_from_args(args)
    args.tag = args.tag or (model_name + ("_quick" if args.quick else ""))
    refs = references(args)
    rows: list[tuple[Case, dict]] = []
    for i, ref in enumerate(refs):
        ref_rows = []
        for j, name in enumerate(args.levels):
            case = make_case(ref, LEVELS[name], seed=NOISE_SEED_BASE + 100 * i + j)
            fns = dict(methods)
            for meth in ("bm3d", "nlm", "wavelet"):
                if meth in args.methods:
                    fns[meth] = lambda z, f=CLASSICAL[meth], nm=case.nm: f(z, nm)
            results = run_case(case, fns)
            ref_rows.append((case, results))
            r = {k: v[1] for k, v in results.items()}
            line = "  ".join(f"{k} {v['psnr']:.2f}" for k, v in r.items())
            print(f"[{case.name}] PSNR {line}", file=sys.stderr, flush=True)
        if not args.no_png:
            RESULTS.mkdir(parents=True, exist_ok=True)
            figure(ref_rows, RESULTS / f"eval_{args.tag}_{ref.name}.png", model_label)
        rows += ref_rows
    text = report(rows, refs, args, model_label)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"eval_{args.tag}.md"
    out.write_text(text)
    print(f"written {_shown(out)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
