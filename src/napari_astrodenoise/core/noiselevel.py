"""Noise level of linear astronomical data: sky level, white-noise sigma, noise level function.

:func:`background_level` and :func:`noise_sigma` are the robust per-channel statistics that
the stretch (:mod:`~napari_astrodenoise.core.stretch`) is built from. A :class:`NoiseProfile`
is the noise level as a function of the signal, fitted after the network has run
(:func:`fit_noise_profile`); the safeguards use it to keep every change the network makes
within a few noise sigmas of the input. A model trained with a noise channel is also told,
pixel by pixel, how much noise to expect: :func:`prefit_noise_profile` fits the profile
before the network, from the noisy frame alone, and :func:`noise_map` turns it into the
noise sigma in network space.

Non-finite pixels (NaN, +inf, -inf) are ignored by every statistic here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.ndimage import uniform_filter
from scipy.optimize import nnls

from napari_astrodenoise.core.strips import thread_map

if TYPE_CHECKING:
    from napari_astrodenoise.core.stretch import AstroStretch

# statistics are measured on at most this many pixels per channel (a regular subsample)
_MAX_SAMPLES = 2_000_000
# Gaussian sigma from the median absolute deviation
_MAD_TO_SIGMA = 1.482602218505602
# noise-profile fit: quantile bins of the signal level, and the fewest pixels a bin needs
_PROFILE_BINS = 16
_PROFILE_MIN_PIXELS = 64


def _sample_step(channel: np.ndarray) -> int:
    """Stride in both axes that leaves at most about ``_MAX_SAMPLES`` pixels of a channel."""
    return _grid_step(channel.size)


def _grid_step(size: int) -> int:
    return max(1, int(np.ceil(np.sqrt(size / _MAX_SAMPLES))))


def _row_step(size: int) -> int:
    """Stride of the whole rows :func:`noise_sigma` reads from a channel of ``size`` pixels."""
    return max(1, int(np.ceil(size / (2 * _MAX_SAMPLES))))


def finite_sample(channel: np.ndarray) -> np.ndarray:
    """Regular subsample of the finite pixels of a 2-D channel (a view where possible)."""
    step = _sample_step(channel)
    sample = channel[::step, ::step].ravel()
    return sample[np.isfinite(sample)]


def as_chw(image: np.ndarray) -> np.ndarray:
    """An (H, W) image as (1, H, W); a (C, H, W) one as it is; anything else is refused.

    :class:`SampledPlanes` pass as they are.
    """
    if isinstance(image, SampledPlanes):
        return image
    image = np.asarray(image)
    if image.ndim == 2:
        return image[np.newaxis]
    if image.ndim != 3:
        msg = f"expected an image shaped (H, W) or (C, H, W), got shape {image.shape}"
        raise ValueError(msg)
    return image


def background_level(image: np.ndarray) -> np.ndarray:
    """Per-channel sky level: the median of the finite pixels (NaN and inf ignored).

    ``image`` is (C, H, W) or (H, W) linear data; returns (C,) float64, 0 for a channel with
    no finite pixel.
    """
    return _per_channel(image, _sky_median)


def _per_channel(image: np.ndarray, measure: Callable[[np.ndarray], float]) -> np.ndarray:
    """(C,) float64: ``measure`` of each (H, W) channel of an (H, W) or (C, H, W) image."""
    return np.asarray([measure(channel) for channel in as_chw(image)], dtype=np.float64)


def _sky_median(channel: np.ndarray) -> float:
    sample = finite_sample(channel)
    return float(np.median(sample)) if sample.size else 0.0


def noise_sigma(image: np.ndarray) -> np.ndarray:
    """Robust per-channel white-noise standard deviation.

    Measured as the median absolute deviation of horizontal neighbour differences, divided by
    sqrt(2): smooth structure (nebulae, galaxies, gradients) cancels in the differences, and
    stars are too few to move the median. Pixel-to-pixel correlated noise is underestimated,
    as with any such estimator.

    Parameters
    ----------
    image : ndarray
        (C, H, W) or (H, W) linear data; NaN and inf are ignored.

    Returns
    -------
    ndarray
        (C,) float64, >= 0; 0 for a channel with fewer than two finite neighbouring pixels.
    """
    return _per_channel(image, _difference_sigma)


def _difference_sigma(channel: np.ndarray) -> float:
    step = _row_step(channel.size)
    rows = channel[::step] if channel.shape[1] > 1 else channel.T[::step]
    with np.errstate(invalid="ignore"):  # inf - inf
        diff = np.diff(rows.astype(np.float64, copy=False), axis=1).ravel()
    diff = diff[np.isfinite(diff)]
    if diff.size == 0:
        return 0.0
    mad = np.median(np.abs(diff - np.median(diff)))
    return float(_MAD_TO_SIGMA * mad / np.sqrt(2.0))


def nonfinite_mask(image: np.ndarray) -> np.ndarray | None:
    """Boolean mask of NaN/inf pixels, or None when every pixel is finite."""
    bad = ~np.isfinite(image)
    return bad if bad.any() else None


@dataclass(frozen=True)
class NoiseProfile:
    """Per-channel noise level function ``sigma^2(s) = floor + slope * max(s - sky, 0)``.

    The Poisson-Gaussian model of a linear detector image: ``floor`` is the variance at the
    sky (read noise plus the sky's own photon noise), ``slope`` the variance added per unit
    of signal above the sky (``1 / gain`` for data in ADU and a gain in electrons per ADU).

    Attributes
    ----------
    sky : ndarray
        (C,) float64 per channel: the level of the faintest pixels (the median signal of the
        faintest sixteenth), in the data's units; fainter pixels get the floor.
    floor : ndarray
        (C,) float64 variance at ``sky``, >= 0.
    slope : ndarray
        (C,) float64 variance per unit of signal above ``sky``, >= 0.
    tail : ndarray or None
        (C, len(TAIL_SIGMAS)): the noise's quantile at the two-sided Gaussian share of
        each of :data:`TAIL_SIGMAS`, over that many sigmas (1 for Gaussian noise, more for
        wider tails, at most :data:`_TAIL_MOST`); measured by :func:`fit_noise_profile` on
        the sky, None for a profile fitted without a signal estimate.
    """

    sky: np.ndarray
    floor: np.ndarray
    slope: np.ndarray
    tail: np.ndarray | None = None

    def tail_ratio(self, channel: int, k: float) -> float:
        """How much wider than a Gaussian's the noise's tail is at ``k`` sigmas, >= 1.

        Interpolated between the ratios measured at :data:`TAIL_SIGMAS` (the nearest one
        outside them); 1 when the profile carries none.
        """
        if self.tail is None:
            return 1.0
        return float(np.interp(k, TAIL_SIGMAS, self.tail[channel]))

    def sigma(self, channel: int, signal: np.ndarray) -> np.ndarray:
        """Noise sigma at each pixel of one channel's (H, W) signal estimate, float32.

        Non-finite signal gives the sky's sigma.
        """
        above = np.asarray(signal, dtype=np.float32) - np.float32(self.sky[channel])
        np.nan_to_num(above, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        np.maximum(above, 0.0, out=above)
        above *= np.float32(self.slope[channel])
        above += np.float32(self.floor[channel])
        return np.sqrt(above, out=above)

    def to_dict(self) -> dict:
        """JSON-ready description (for provenance)."""
        out = {key: [float(v) for v in getattr(self, key)] for key in ("sky", "floor", "slope")}
        if self.tail is not None:
            out["tail"] = [[round(float(v), 4) for v in row] for row in self.tail]
        return out

    def scaled(self, unit: float) -> NoiseProfile:
        """The profile of the data multiplied by ``unit`` (itself when ``unit`` is 1)."""
        if unit == 1.0:
            return self
        return NoiseProfile(
            sky=self.sky * unit,
            floor=self.floor * unit * unit,
            slope=self.slope * unit,
            tail=self.tail,
        )


def fit_noise_profile(image: np.ndarray, signal: np.ndarray) -> NoiseProfile:
    """Fit the noise level function of ``image`` from its residual against ``signal``.

    The pixels are sorted into 16 bins of equal count by their level in ``signal``; in each
    bin the residual ``image - signal`` gives a robust variance (median absolute deviation).
    ``floor + slope * (level - sky)``, with ``sky`` the faintest bin's level, is fitted to
    those variances by non-negative least squares with relative errors, so faint and bright
    bins count alike. With a good ``signal`` (a denoised image, or the truth) the residual
    is the noise itself: unlike :func:`noise_sigma`, this sees correlated noise at its full
    amplitude, and the photon noise of bright signal. The floor is never set below half the
    variance measured in the faintest quarter of the bins, so a poor fit cannot forbid all
    change at the sky. At most about 2 million pixels per channel are used (a regular
    subsample).

    Parameters
    ----------
    image : ndarray
        (C, H, W) or (H, W) linear data; NaN and inf are ignored.
    signal : ndarray
        The same shape: an estimate of the noise-free image (for example the denoised one).

    Returns
    -------
    NoiseProfile
        A channel with too few finite pixels (or no noise at all) gets floor and slope 0.
    """
    x, s = as_chw(image), as_chw(signal)
    if x.shape != s.shape:
        msg = f"image and signal must have one shape, got {x.shape} and {s.shape}"
        raise ValueError(msg)
    return _fit_profile(x, lambda c, step: s[c, ::step, ::step])


def fit_noise_profile_of_change(image: np.ndarray, change: np.ndarray) -> NoiseProfile:
    """:func:`fit_noise_profile` of ``image`` against ``image + change``, that sum never formed.

    Only the sampled pixels are added up, so no whole-frame temporary is made; the result
    is the same, bit for bit.

    Parameters
    ----------
    image : ndarray
        (C, H, W) or (H, W) linear data; NaN and inf are ignored.
    change : ndarray
        The same shape: what a denoiser would add to ``image``.
    """
    x, d = as_chw(image), as_chw(change)
    if x.shape != d.shape:
        msg = f"image and change must have one shape, got {x.shape} and {d.shape}"
        raise ValueError(msg)

    def level(c: int, step: int) -> np.ndarray:
        with np.errstate(invalid="ignore"):  # inf - inf
            return x[c, ::step, ::step] + d[c, ::step, ::step]

    return _fit_profile(x, level)


def _fit_profile(x: np.ndarray, signal_sample: Callable[[int, int], np.ndarray]) -> NoiseProfile:
    """The body of :func:`fit_noise_profile`: ``signal_sample(c, step)`` is the strided signal.

    Channels are fitted on threads, one per core (numpy's sorts and selections release the
    GIL); each channel's fit is its own, so the result does not depend on the threads.
    """

    def fit(c: int) -> tuple[float, float, float, np.ndarray]:
        step = _sample_step(x[c])
        level2d = signal_sample(c, step).astype(np.float64)
        level = level2d.ravel()
        with np.errstate(invalid="ignore"):  # inf - inf
            residual = x[c, ::step, ::step].ravel() - level
        keep = np.isfinite(residual) & np.isfinite(level)
        fitted = _fit_samples(level[keep], residual[keep])
        if fitted is None:
            sky = float(np.median(level[keep])) if keep.any() else 0.0
            return sky, 0.0, 0.0, np.ones(len(TAIL_SIGMAS))
        sky, floor, slope = fitted
        floor = max(floor, _sky_floor_from_differences(x[c], level2d, step, sky, slope))
        sigma = np.sqrt(floor + slope * np.maximum(level[keep] - sky, 0.0))
        return sky, floor, slope, _tail_ratios(level[keep], residual[keep], sigma)

    fits = thread_map(fit, range(len(x)))
    sky, floor, slope = (np.array([f[i] for f in fits], dtype=np.float64) for i in range(3))
    tail = np.stack([f[3] for f in fits]) if fits else np.ones((0, len(TAIL_SIGMAS)))
    return NoiseProfile(sky=sky, floor=floor, slope=slope, tail=tail)


#: sigmas at which the noise's tail is measured (beyond 4, a frame has too few pixels)
TAIL_SIGMAS = (1.0, 2.0, 3.0, 4.0)
#: a residual whose tail is wider than this is not noise alone; the ratio stops here
_TAIL_MOST = 2.0


def _tail_ratios(level: np.ndarray, residual: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """The residual's tail against a Gaussian's at each of :data:`TAIL_SIGMAS`, on the sky.

    Real noise is not Gaussian: telegraph read noise, quantisation and the odd warm pixel
    put more of it beyond 3 sigmas than a normal distribution would (one colour plane of a
    raw CMOS frame: a fifth more at 3 sigmas). On the fainter half of the levels (the sky),
    the residual over the profile's sigma has its quantile at the Gaussian two-sided share
    ``erfc(k / sqrt(2))`` measured and divided by ``k``; 1 where too few pixels lie that
    far out to say, and within [1, :data:`_TAIL_MOST`].
    """
    from scipy.special import erfc

    out = np.ones(len(TAIL_SIGMAS))
    if level.size == 0:
        return out
    sky = level <= np.median(level)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(residual[sky]) / sigma[sky]
    z = z[np.isfinite(z)]
    for i, k in enumerate(TAIL_SIGMAS):
        share = float(erfc(k / np.sqrt(2.0)))
        if z.size * share >= 20:
            out[i] = np.clip(np.quantile(z, 1.0 - share) / k, 1.0, _TAIL_MOST)
    return out


def _floor_row_step(height: int, width: int, step: int) -> int:
    """Every how many sampled rows the sky floor reads: all of a small frame, every few of
    a large one (half a million pixels are plenty for a MAD)."""
    sampled = len(range(0, height, step)) * len(range(0, width, step))
    return max(1, sampled // 500_000)


def _sky_floor_from_differences(
    channel: np.ndarray, level: np.ndarray, step: int, sky: float, slope: float
) -> float:
    """The least floor the input's own neighbour differences allow on the sky.

    A residual binned by the level of a denoised image understates the noise: where the
    network kept a little of the noise, that noise also sorts the pixels into the bins,
    so the spread within each bin is narrower than the noise (on raw frames with real
    noise, by 10-15 %). Second differences of horizontal neighbours in the input,
    ``x[i-1] - 2 x[i] + x[i+1]`` (variance 6 sigma^2 for white noise), are free of that
    and of the sky's gradients; they are taken where the signal's local mean is in the
    faintest sixteenth (the sky) and measure the noise at those pixels' median level, which
    the profile reaches ``slope * (level - sky)`` above its floor. Correlated noise,
    which differences understate, keeps the fitted floor: the larger of the two is used.

    Parameters
    ----------
    channel : ndarray
        (H, W) input plane.
    level : ndarray
        (h, w) signal estimate at ``channel[::step, ::step]``.
    step : int
        The sampling stride.
    sky, slope : float
        The fitted profile's sky level and slope.

    Returns
    -------
    float
        A variance; 0 when too few sky pixels have finite neighbours.
    """
    rows = _floor_row_step(*channel.shape, step)
    # centre pixels at the sampled columns j * step (j >= 1), with their two neighbours
    left = channel[:: rows * step, step - 1 :: step]
    centre = channel[:: rows * step, step::step]
    right = channel[:: rows * step, step + 1 :: step]
    # pixels chosen by a local mean of the signal, so that noise the signal kept does not
    # choose them (a pixel picked for a low level would be one with low noise)
    finite = np.isfinite(level)
    fill = float(np.median(level[finite])) if finite.any() else 0.0
    smooth = uniform_filter(np.where(finite, level, fill), size=5, mode="nearest")
    at = np.where(finite, smooth, np.nan)[::rows, 1:]
    n = min(left.shape[1], centre.shape[1], right.shape[1], at.shape[1])
    if n == 0:
        return 0.0
    left, centre, right, at = left[:, :n], centre[:, :n], right[:, :n], at[:, :n]
    with np.errstate(invalid="ignore"):
        curve = left.astype(np.float64) - 2.0 * centre + right
    keep = np.isfinite(curve) & np.isfinite(at)
    if keep.sum() < _PROFILE_MIN_PIXELS * _PROFILE_BINS:
        return 0.0
    curve, at = curve[keep], at[keep]
    faint = at <= np.quantile(at, 1.0 / _PROFILE_BINS)
    curve, at = curve[faint], at[faint]
    mad = float(np.median(np.abs(curve - np.median(curve))))
    sigma = _MAD_TO_SIGMA * mad / np.sqrt(6.0)
    return sigma * sigma - slope * max(float(np.median(at)) - sky, 0.0)


def prefit_noise_profile(image: np.ndarray) -> NoiseProfile:
    """Fit the noise level function of a noisy ``image`` alone, before any denoising.

    Like :func:`fit_noise_profile`, but with no signal estimate to take a residual against:
    each run of three horizontal neighbours gives a noise sample ``(a - 2 b + c) / sqrt(6)``
    (smooth structure and linear gradients cancel) at the level of its middle pixel in a
    3 x 3 box mean of the image. Pixel-to-pixel correlated noise is underestimated, and the
    curvature of stars and galaxy cores overstates the bright bins' noise (on simulated
    Poisson-Gaussian frames the slope comes out 0.7-2.7 times the true one, against 1.2-1.6
    for a fit against the noise-free image); the profile only has to tell a model trained on
    it how the noise grows with the signal (see :func:`noise_map`).

    Parameters
    ----------
    image : ndarray
        (C, H, W) or (H, W) noisy linear data; NaN and inf are ignored.

    Returns
    -------
    NoiseProfile
        A frame too small for 16 bins of 64 pixels gets one white-noise level (slope 0).
    """
    x = as_chw(image)
    sky, floor, slope = (np.zeros(len(x)) for _ in range(3))
    for c in range(len(x)):
        step = _sample_step(x[c])
        channel = x[c].astype(np.float32, copy=False)
        if min(channel.shape) < 3:
            continue
        level, residual = _curvature_samples(channel, step)
        keep = np.isfinite(residual) & np.isfinite(level)
        level, residual = level[keep], residual[keep]
        fitted = _fit_samples(level, residual)
        if fitted is not None:
            sky[c], floor[c], slope[c] = fitted
        elif residual.size:  # too few pixels for bins: one white-noise level
            sky[c] = float(np.median(level))
            mad = np.median(np.abs(residual - np.median(residual)))
            floor[c] = float((_MAD_TO_SIGMA * mad) ** 2)
    return NoiseProfile(sky=sky, floor=floor, slope=slope)


def _curvature_samples(channel: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
    """(3 x 3 box-mean level, ``(a - 2 b + c) / sqrt(6)``) at every ``step``-th interior pixel.

    The box mean is over the finite pixels only, so a NaN does not spread; a sample with a
    non-finite neighbour comes out non-finite.
    """
    h, w = channel.shape

    def shifted(dy: int, dx: int) -> np.ndarray:
        return channel[1 + dy : h - 1 + dy : step, 1 + dx : w - 1 + dx : step]

    total = np.zeros(shifted(0, 0).shape, dtype=np.float64)
    count = np.zeros_like(total)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            v = shifted(dy, dx)
            ok = np.isfinite(v)
            total += np.where(ok, v, 0.0)
            count += ok
    with np.errstate(invalid="ignore", divide="ignore"):  # inf - inf, 0 / 0
        level = total / count
        residual = shifted(0, -1) - 2.0 * shifted(0, 0).astype(np.float64) + shifted(0, 1)
    return level.ravel(), (residual / np.sqrt(6.0)).ravel()


def noise_map(
    image: np.ndarray, stretch: AstroStretch, profile: NoiseProfile, softening: float
) -> np.ndarray:
    """The noise sigma at each pixel in network space, in units of the sky's, (H, W) float32.

    The profile's sigma at the pixel's level (a 3 x 3 box mean of ``image``) times the slope
    of the stretch there, ``1 / sqrt((level - background)^2 + scale^2)``, times
    ``softening``: about 1 on the sky, falling on bright signal, faster for a high gain
    (little shot noise) than a low one. One map serves all channels (their mean), so a
    mono frame and its three replicated channels get the same map. Non-finite pixels get
    the sky's value.

    Parameters
    ----------
    image : ndarray
        (C, H, W) or (H, W) noisy linear data, the frame ``stretch`` and ``profile`` were
        fitted to.
    stretch : AstroStretch
    profile : NoiseProfile
        From :func:`prefit_noise_profile`.
    softening : float
        The stretch's softening (``stretch.scale`` is ``softening`` noise sigmas).
    """
    x = as_chw(image)
    out = np.zeros(x.shape[1:], dtype=np.float32)
    scale = np.float32(stretch.scale)
    for c in range(len(x)):
        bg = float(stretch.background[c])
        channel = np.nan_to_num(x[c].astype(np.float32), nan=bg, posinf=bg, neginf=bg)
        level = uniform_filter(channel, size=3, mode="nearest")
        sigma = profile.sigma(c, level)
        level -= np.float32(bg)
        level /= scale
        np.square(level, out=level)
        level += 1.0
        np.sqrt(level, out=level)
        sigma /= level
        out += sigma
    out *= np.float32(softening) / (scale * len(x))
    return out


def _fit_samples(level: np.ndarray, residual: np.ndarray) -> tuple[float, float, float] | None:
    """(sky, floor, slope) of one channel's noise samples at their levels; None: too few."""
    bins = _binned_variance(level, residual)
    if bins is None:
        return None
    sky = float(bins[0][0])
    floor, slope = _fit_line(bins[0] - sky, *bins[1:])
    return sky, floor, slope


def _binned_variance(
    level: np.ndarray, residual: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(level, robust variance, pixel count) of each usable quantile bin, faintest first."""
    if level.size < _PROFILE_MIN_PIXELS:
        return None
    edges = np.quantile(level, np.linspace(0.0, 1.0, _PROFILE_BINS + 1))
    index = np.clip(np.searchsorted(edges, level, side="right") - 1, 0, _PROFILE_BINS - 1)
    # the samples grouped by bin in one stable sort: each bin a slice, not a mask
    order = np.argsort(index, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(index, minlength=_PROFILE_BINS))])
    residual, level = residual[order], level[order]
    levels, variances, counts = [], [], []
    for b in range(_PROFILE_BINS):
        in_bin = slice(bounds[b], bounds[b + 1])
        r = residual[in_bin]
        if r.size < _PROFILE_MIN_PIXELS:
            continue
        sigma = _MAD_TO_SIGMA * np.median(np.abs(r - np.median(r)))
        if sigma > 0:
            levels.append(float(np.median(level[in_bin])))
            variances.append(sigma * sigma)
            counts.append(r.size)
    if not levels:
        return None
    return np.asarray(levels), np.asarray(variances), np.asarray(counts, dtype=np.float64)


def _fit_line(level: np.ndarray, var: np.ndarray, count: np.ndarray) -> tuple[float, float]:
    """``(floor, slope) >= 0`` of ``var ~ floor + slope * level``, relative errors."""
    weight = np.sqrt(count) / var
    design = np.column_stack([np.ones_like(level), level]) * weight[:, None]
    (floor, slope), _residual = nnls(design, var * weight)
    faintest = var[np.argsort(level)[: max(1, len(var) // 4)]]
    return max(float(floor), 0.5 * float(np.median(faintest))), float(slope)


# --------------------------------------------------------------------------- samples
Key = tuple[int, int, int]


def _norm(key: slice, n: int) -> Key:
    return key.indices(n)


def sample_keys(shape: tuple[int, int], *, curvature: bool = True) -> list[tuple[Key, Key]]:
    """The strided (rows, columns) slices of an (H, W) channel that the statistics here read.

    :func:`finite_sample` (and the noise-profile fits) read every ``step``-th pixel,
    :func:`noise_sigma` every ``step``-th whole row, and :func:`prefit_noise_profile`
    (``curvature``) the nine shifted grids of :func:`_curvature_samples`. Each is a
    ``slice.indices`` triple per axis; :class:`SampledPlanes` holds exactly these.
    """
    h, w = shape
    step, rows = _grid_step(h * w), _row_step(h * w)
    keys = [
        (_norm(slice(None, None, step), h), _norm(slice(None, None, step), w)),
        (_norm(slice(None, None, rows), h), _norm(slice(None), w)),
    ]
    # the sky floor's neighbour differences (:func:`_sky_floor_from_differences`)
    every = _floor_row_step(h, w, step)
    keys += [
        (_norm(slice(None, None, every * step), h), _norm(slice(step + dx, None, step), w))
        for dx in (-1, 0, 1)
    ]
    if curvature and min(h, w) >= 3:
        keys += [
            (
                _norm(slice(1 + dy, h - 1 + dy, step), h),
                _norm(slice(1 + dx, w - 1 + dx, step), w),
            )
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
        ]
    return list(dict.fromkeys(keys))


class SampledPlanes:
    """(C, H, W) planes known only at the strided samples the whole-frame statistics read.

    A frame larger than memory is measured from these: :func:`background_level`,
    :func:`noise_sigma`, :func:`prefit_noise_profile`, :func:`fit_noise_profile` and
    :func:`fit_noise_profile_of_change` (and :func:`~.stretch.fit_stretch`) take them
    like an array and give the whole frame's result, bit for bit, because they read
    nothing else (:func:`sample_keys`). They are gathered a row block at a time
    (:meth:`add`), in one pass.

    Parameters
    ----------
    shape : tuple of int
        (C, H, W) of the whole planes.
    curvature : bool, optional
        Also keep :func:`prefit_noise_profile`'s samples.
    """

    ndim = 3
    dtype = np.dtype(np.float32)

    def __init__(self, shape: tuple[int, int, int], *, curvature: bool = True) -> None:
        self.shape = tuple(int(n) for n in shape)
        self.size = int(np.prod(self.shape))
        self.keys = sample_keys(self.shape[1:], curvature=curvature)
        self._parts: dict[tuple[int, Key, Key], list[np.ndarray]] = {
            (c, ys, xs): [] for c in range(self.shape[0]) for ys, xs in self.keys
        }
        self._done: dict[tuple[int, Key, Key], np.ndarray] = {}

    def add(self, block: np.ndarray, row0: int) -> None:
        """Take the samples from a (C, n, W) block of the planes' rows ``row0 ..``; in order."""
        n = block.shape[1]
        for (c, (y0, y1, dy), xs), parts in self._parts.items():
            first = y0 + max(0, -(-(row0 - y0) // dy)) * dy  # first sampled row >= row0
            last = min(y1, row0 + n)
            if first < last:
                parts.append(block[c, first - row0 : last - row0 : dy, slice(*xs)].copy())

    def scaled(self, factor: np.float32) -> SampledPlanes:
        """The samples of the planes multiplied by ``factor`` (as ``planes * factor``)."""
        out = SampledPlanes.__new__(SampledPlanes)
        out.shape, out.size, out.keys, out._parts = self.shape, self.size, self.keys, {}
        out._done = {key: self._lookup(*key) * factor for key in self._parts}
        return out

    def __len__(self) -> int:
        return self.shape[0]

    def __iter__(self):
        return (SampledPlane(self, c) for c in range(self.shape[0]))

    def __getitem__(self, key: object) -> SampledPlane | np.ndarray:
        if isinstance(key, int | np.integer):
            return SampledPlane(self, int(key))
        c, *rest = key
        return SampledPlane(self, int(c))[tuple(rest)]

    def _lookup(self, c: int, ys: Key, xs: Key) -> np.ndarray:
        key = (c, ys, xs)
        if key not in self._done:
            if key not in self._parts:
                msg = f"rows {ys} and columns {xs} of plane {c} were not sampled"
                raise KeyError(msg)
            parts = self._parts[key]
            empty = np.empty((0, len(range(*xs))), dtype=np.float32)
            self._done[key] = np.concatenate(parts) if parts else empty
        return self._done[key]


class SampledPlane:
    """One (H, W) plane of :class:`SampledPlanes`: strided slices of it, nothing else."""

    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(self, planes: SampledPlanes, c: int) -> None:
        self._planes, self._c = planes, c
        self.shape = planes.shape[1:]
        self.size = self.shape[0] * self.shape[1]

    def astype(self, dtype: object, copy: bool = True) -> SampledPlane:
        """Itself: the samples are float32 already."""
        return self

    def __getitem__(self, key: object) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = (*key, slice(None)) if len(key) == 1 else key
        ys, xs = (_norm(k, n) for k, n in zip(key, self.shape, strict=True))
        return self._planes._lookup(self._c, ys, xs)
