"""The flux lock: the network's change loses its low spatial frequencies, so levels, flux and
colour beyond a scale stay the input's (strict, or noise-aware between the scale and 4x it)."""

from __future__ import annotations

import numpy as np

from napari_astrodenoise.core.noiselevel import NoiseProfile, fit_noise_profile_of_change
from napari_astrodenoise.core.options import option
from napari_astrodenoise.core.starmask import upsample_blocks
from napari_astrodenoise.core.strips import filter_in_place, strip_rows


def lock_flux(
    change: np.ndarray,
    scale: float,
    *,
    threshold: float = 0.0,
    original: np.ndarray | None = None,
    profile: NoiseProfile | None = None,
) -> np.ndarray:
    """Take the low spatial frequencies out of a change map, plane by plane, in place.

    **Strict lock** (``threshold`` 0): ``change -= gaussian_filter(change, scale)`` for each
    (H, W) plane of a (C, H, W) array (reflecting borders). What is left sums to zero over
    the frame and over any region much larger than ``scale``: adding it to an image keeps
    the image's level, the flux of every source in apertures beyond a few ``scale``, and the
    colour of everything larger than ``scale`` (each channel keeps its own flux).
    Small-scale work (noise removed, a star's profile sharpened, a hot pixel taken out)
    passes almost unchanged: the part held back at wavelength ``L`` is
    ``exp(-(2 pi scale / L)^2 / 2)``, at ``scale`` 8 px half at 42 px, a quarter at 30 px
    and 2 % at 18 px. The cost is a little of the noise the change took away returning at
    those long wavelengths: about ``1 / (2 sqrt(pi) scale)`` of the noise's amplitude for
    white noise, 1/28 at 8 px, which on an empty sky is most of what is left after
    denoising.

    **Noise-aware lock** (``threshold`` > 0, the engine's default 1): the low-pass change
    ``low`` is split at ``4 scale``. Beyond ``4 scale`` it is always taken out, as above,
    so levels and the flux and colour of anything larger are kept (the noise this returns
    is a sixteenth of the strict lock's power). Between ``scale`` and ``4 scale``
    it is taken out only where it is more than ``threshold`` times the noise of that band
    (the fitted noise level function at the smoothed signal, for white noise), by that
    excess (a soft threshold): a network's real error there (a nebula's level, a galaxy's
    halo) is well above the noise and is still corrected, while the band's share of the
    removed noise, a pure-noise field below the threshold, stays removed. Within ``2
    scale`` of any signal ``3`` noise sigmas above the sky (stars, galaxies, nebulae, in
    the denoised image), feathered over ``scale``, the strict lock applies in full, so
    the flux of faint stars, whose low-pass change is below the band's noise, is kept as
    before. The soft part works on blocks of ``scale / 2`` px (the fields are smooth at
    those scales). ``benchmarks/lock_threshold.py`` measures it on the tuning set.

    Parameters
    ----------
    change : ndarray
        (C, H, W) float32 (prediction minus input); finite everywhere.
    scale : float
        Gaussian sigma in pixels of these planes; 0 leaves ``change`` alone.
    threshold : float, optional
        Noise sigmas of the band between ``scale`` and ``4 scale`` (>= 0); 0 is the strict
        lock.
    original : ndarray, optional
        (C, H, W) input planes; needed when ``threshold`` > 0 (non-finite pixels are read as
        the sky).
    profile : NoiseProfile, optional
        Noise level function of ``original``; fitted to ``original`` against ``original +
        change`` when None and ``threshold`` > 0.

    Returns
    -------
    ndarray
        ``change``, modified.
    """
    option("flux_lock").check(scale)
    option("lock_threshold").check(threshold)
    if scale == 0:
        return change
    if threshold > 0:
        if original is None:
            msg = "lock_flux with threshold > 0 needs the original planes"
            raise ValueError(msg)
        return _soft_lock(change, original, scale, threshold, profile)
    for plane in change:
        _subtract_low_pass(plane, scale)
    return change


def lock_block(scale: float, threshold: float) -> int:
    """Rows of the noise-aware lock's blocks (1 for the strict lock or none).

    A row block of a larger frame must start at a multiple of this for its lock to be the
    frame's: the blocks are counted from the first row.
    """
    return max(1, int(scale // 2)) if scale > 0 and threshold > 0 else 1


def lock_reach(scale: float, threshold: float = 0.0) -> int:
    """Rows each side a pixel of :func:`lock_flux`'s result depends on (profile given).

    The strict lock reads its Gaussian's radius. The noise-aware lock also reads what
    stays of the low-pass change, on blocks of ``scale / 2``: the widest of its block-grid
    Gaussians (the band, ``4 scale``, the level and the feathering after the signal
    mask's growth), plus the block the pixel lies in and the one the interpolation
    reaches, in blocks.
    """
    if scale == 0:
        return 0
    full = _gaussian_radius(scale)
    if threshold == 0:
        return full
    block = lock_block(scale, threshold)
    grow = 2 * max(1, round(2 * scale / block)) + 1
    coarse = max(
        _gaussian_radius(coarse_sigma(scale, block)),
        _gaussian_radius(coarse_sigma(_LOCK_BASE * scale, block)),
        _gaussian_radius(scale / block),
        grow // 2 + _gaussian_radius(scale / block),
    )
    return max(full, block * (coarse + 2))


def _gaussian_radius(sigma: float) -> int:
    """Rows each side that scipy's ``gaussian_filter`` reads (its default 4-sigma truncation)."""
    return int(4.0 * float(sigma) + 0.5)


def _subtract_low_pass(
    plane: np.ndarray, scale: float, kept: np.ndarray | None = None, block: int = 1
) -> None:
    """``plane -= gaussian_filter(plane, scale) - upsample_blocks(kept)``, in row strips.

    Strips read with the Gaussian's radius each side give exactly the whole plane's filter.
    """
    from scipy.ndimage import gaussian_filter

    def compute(read: slice, own: slice) -> np.ndarray:
        low = gaussian_filter(plane[read], scale, mode="reflect")[own]
        if kept is not None:
            rows = slice(read.start + own.start, read.start + own.stop)
            low -= upsample_blocks(kept, block, plane.shape, rows=rows)
        return low

    def apply(rows: slice, low: np.ndarray) -> None:
        plane[rows] -= low

    filter_in_place(plane, _gaussian_radius(scale), compute, apply)


#: Band between ``scale`` and this times ``scale``: noise-aware; beyond it: always locked.
_LOCK_BASE = 4.0
#: Signal this many noise sigmas above the sky gets the strict lock around it.
_LOCK_SIGNAL = 3.0
# white-noise sigma of G_s - G_4s (unit-variance noise) times s:
# sqrt((1 + 1/16 - 4/17) / (4 pi))
_BAND_NOISE = float(np.sqrt((1.0 + 1.0 / 16.0 - 4.0 / 17.0) / (4.0 * np.pi)))


def _soft_lock(
    change: np.ndarray,
    original: np.ndarray,
    scale: float,
    threshold: float,
    profile: NoiseProfile | None,
) -> np.ndarray:
    """The noise-aware lock of :func:`lock_flux`, in place.

    The strict lock's low-pass is taken at full resolution, as without a threshold; what
    stays of it (the band below the threshold, away from signal) is smooth on the scale of
    ``scale`` and is computed on a grid of ``scale / 2`` px blocks, then interpolated back
    once per plane, bilinearly (the Gaussians are narrowed by the variance the block means
    and the interpolation add). On white noise that block low-pass differs from the
    full-resolution one by about 15 % rms of its own amplitude (half a percent of the
    noise's sigma at 8 px); near stars, where the change is large, nothing stays and the
    full-resolution lock applies unchanged.
    """
    from scipy.ndimage import gaussian_filter, maximum_filter1d

    block = lock_block(scale, threshold)
    if profile is None:
        profile = fit_noise_profile_of_change(original, change)
    coarse, level, near = [], [], None
    for c in range(len(change)):
        coarse_c, level_c, top_c = _block_sums(change[c], original[c], profile.sky[c], block)
        coarse.append(coarse_c)
        level.append(level_c)
        sky_sigma = float(np.sqrt(max(profile.floor[c], 0.0)))
        bright = top_c > np.float32(profile.sky[c]) + _LOCK_SIGNAL * sky_sigma
        near = bright if near is None else near | bright
    # strict within 2 scale of signal, feathered over scale
    grow = 2 * max(1, round(2 * scale / block)) + 1
    near = maximum_filter1d(near.astype(np.float32), grow, axis=0, mode="nearest")
    near = maximum_filter1d(near, grow, axis=1, mode="nearest")
    free_weight = 1.0 - np.clip(gaussian_filter(near, scale / block, mode="nearest"), 0.0, 1.0)
    for c, plane in enumerate(change):
        low = gaussian_filter(coarse[c], coarse_sigma(scale, block), mode="reflect")
        base = gaussian_filter(coarse[c], coarse_sigma(_LOCK_BASE * scale, block), mode="reflect")
        smooth = gaussian_filter(level[c], scale / block, mode="reflect")
        bound = profile.sigma(c, smooth) * np.float32(threshold * _BAND_NOISE / scale)
        # what stays of the low-pass change: the band below the threshold, away from signal
        kept = np.clip(low - base, -bound, bound) * free_weight
        # the strict lock at full resolution (exact where stars change most), less what stays
        _subtract_low_pass(plane, scale, kept, block)
    return change


def _block_sums(
    change: np.ndarray, original: np.ndarray, sky: float, block: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Block means of the change and of the free prediction, and the prediction's block maxima.

    The free prediction is ``original + change``, non-finite pixels read as ``sky``; it is
    formed a strip of whole blocks at a time, so the results are :func:`block_reduce`'s on
    the whole plane, bit for bit.
    """
    height, width = change.shape
    step = block * max(1, strip_rows(width) // block)
    coarse, level, top = [], [], []
    for y in range(0, height, step):
        rows = slice(y, min(y + step, height))
        with np.errstate(invalid="ignore"):
            free = original[rows] + change[rows]
        free[~np.isfinite(free)] = np.float32(sky)
        coarse.append(block_reduce(change[rows], block, np.add))
        level.append(block_reduce(free, block, np.add))
        top.append(block_reduce(free, block, np.maximum))
    return np.concatenate(coarse), np.concatenate(level), np.concatenate(top)


def coarse_sigma(sigma: float, block: int) -> float:
    """Gaussian sigma on the block grid whose result, interpolated back, has ``sigma`` px.

    Block means add ``(block^2 - 1) / 12`` px^2 of variance and bilinear interpolation
    ``block^2 / 6``.
    """
    extra = (block**2 - 1) / 12.0 + block**2 / 6.0
    return float(np.sqrt(max(sigma**2 - extra, 0.25 * sigma**2))) / block


def block_reduce(plane: np.ndarray, block: int, how: np.ufunc) -> np.ndarray:
    """Block means (``np.add``) or maxima (``np.maximum``): (H, W) -> (ceil(H / b), ceil(W / b)).

    Edges are padded by copies of the last row and column. Strided slices, one pass per
    position in the block: several times faster than a reduction over a reshaped view.
    """
    if block == 1:
        return plane.astype(np.float32)
    h, w = plane.shape
    ny, nx = -(-h // block), -(-w // block)
    if (ny * block, nx * block) != (h, w):
        plane = np.pad(plane, ((0, ny * block - h), (0, nx * block - w)), mode="edge")
    cols = plane[:, 0::block].astype(np.float32)
    for j in range(1, block):
        how(cols, plane[:, j::block], out=cols)
    out = cols[0::block].copy()
    for j in range(1, block):
        how(out, cols[j::block], out=out)
    if how is np.add:
        out *= np.float32(1.0 / block**2)
    return out
