"""The star refit: compact sources of the prediction rescaled to the flux the input supports."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from napari_astrodenoise.core.noiselevel import NoiseProfile
from napari_astrodenoise.core.options import option
from napari_astrodenoise.core.strips import square_max, square_min

#: Star refit window (Gaussian sigma, pixels of the caller's image): see `refit_stars`.
REFIT_WINDOW = 2.0


#: core peak (noise sigmas) below which the star refit gives no flux back, and from which
#: it gives all of it (linear between): see `refit_stars`
_REFIT_LIFT = (10.0, 20.0)


def refit_stars(
    denoised: np.ndarray,
    original: np.ndarray,
    prior: float,
    profile: NoiseProfile,
    *,
    window: float = REFIT_WINDOW,
    strip_rows: int = 256,
    brightest: tuple[float, ...] | None = None,
) -> None:
    """Give compact sources the brightness the input supports, in place.

    A denoiser shrinks what it is unsure of: the cores of faint and moderate stars come
    out dimmer than they were (the shipped model takes a few per cent from them, more
    from a colour channel it deems implausible). What it removed is in the residual
    ``original - denoised``, mixed with the noise. For each plane, the compact structure
    of the prediction, ``s`` (its white top-hat: the prediction less its grey opening by
    a ``2 round(window) + 1`` px square, so stars and knots, not the sky, nebulae or halos),
    is taken as a template known up to a scale, and at every pixel the scale ``lam`` that
    best explains the residual around it is fitted by weighted least squares over a
    Gaussian window (sigma ``window``, weights ``1 / sigma^2`` of the fitted noise level
    function), with a Gaussian prior of width ``prior`` on ``lam``:

        lam = sum(g s r / v) / (sum(g s^2 / v) + 1 / prior^2),  clipped to [-1, 1]

    and ``denoised += lam * s``, where a positive ``lam`` (flux given back) is scaled down
    for sources whose core peaks less than 20 noise sigmas above its surroundings, to
    nothing at 10 sigmas: a marginal source is never lifted over a detection threshold.
    A bright star, whose template carries much information,
    gets most of its flux back (about nine tenths of a uniform deficit: the template is
    the core above the opening, not the whole star), with the noise of a fit that weighs
    the profile, which is smaller than that of an aperture sum of the input; a faint one,
    whose information is below ``1 / prior^2``, is hardly changed, so the noise of the
    fit does not come back. Structure the residual does not support is dimmed by the same
    rule, whatever its brightness. Under :func:`guard_change` the residual is bounded by
    the change limit, so a cosmic ray the network removed weighs no more than the noise.
    The correction is a multiple of structure already in the prediction: it cannot make a
    star where the prediction has none, and ``lam >= -1`` never turns one into a hole.
    ``benchmarks/star_refit.py`` measures it on the tuning set.

    Parameters
    ----------
    denoised : ndarray
        (C, H, W) float32 prediction; modified. Non-finite pixels stay as they are.
    original : ndarray
        (C, H, W) input planes; non-finite pixels carry no weight.
    prior : float
        Width (1 sigma) of the prior on the relative correction; 0 leaves ``denoised``
        alone.
    profile : NoiseProfile
        Noise level function of ``original`` (see :func:`fit_noise_profile`).
    window : float, optional
        Gaussian sigma of the fitting window in pixels of these planes; also sets the
        top-hat's size.
    strip_rows : int, optional
        Rows per strip: strips (each read with the halo its correction depends on) run on
        threads and give exactly the whole plane's result.
    brightest : tuple of float, optional
        Each plane's brightest pixel of ``denoised`` (NaN for none), when ``denoised`` is a
        row block of a larger frame; measured here when None.
    """
    option("star_refit").check(prior)
    if prior == 0:
        return
    from concurrent.futures import ThreadPoolExecutor

    height = denoised.shape[1]
    # every correction depends on pixels at most 2 size + 4 window away (the opening, the
    # window's Gaussian truncated at 4 sigma, the peak's square), so strips with that halo
    # give exactly the whole plane's result; scipy's filters release the GIL, so strips
    # run in parallel, mono frames included
    halo = refit_reach(window)
    strip_rows = max(strip_rows, halo)  # a strip reads into its neighbours only
    starts = range(0, height, strip_rows)
    workers = min(len(starts), os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for c, (out, inp) in enumerate(zip(denoised, original, strict=True)):
            # the noise sigma is floored at a thousandth of the plane's largest, so that a
            # profile with no noise at the sky (floor 0) weighs nothing infinitely; a plane
            # with no noise at all has nothing to weigh the residual by and is left alone
            # (the noise level function grows with the signal: its largest is at the
            # brightest pixel)
            top = float(profile.sigma(c, _brightest(out, brightest, c))[0, 0])
            if not top > 0:
                continue
            least = np.float32(_REFIT_LEAST_SIGMA * top)

            def strip(y0: int, out=out, inp=inp, c=c, least=least) -> np.ndarray:
                lo, hi = max(0, y0 - halo), min(height, y0 + strip_rows + halo)
                corr = _refit_correction(out[lo:hi], inp[lo:hi], c, prior, profile, window, least)
                return corr[y0 - lo : y0 - lo + min(strip_rows, height - y0)]

            _correct_in_waves(out, pool, strip, starts, workers)


def refit_reach(window: float = REFIT_WINDOW) -> int:
    """Rows each side a pixel of :func:`refit_stars`' correction depends on.

    The opening, the window's Gaussian truncated at 4 sigma and the peak's square:
    ``2 size + ceil(4 window) + 1``.
    """
    return 2 * _refit_size(window) + int(np.ceil(4 * window)) + 1


def _brightest(out: np.ndarray, given: tuple[float, ...] | None, c: int) -> np.ndarray:
    """(1, 1) float32: a plane's brightest pixel (NaN for none), given or measured."""
    if given is not None:
        return np.full((1, 1), given[c], dtype=np.float32)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN plane
        return np.nanmax(out, keepdims=True)


def brightest_of(planes: np.ndarray) -> tuple[float, ...]:
    """Each plane's brightest pixel, NaN for a plane with none (for ``brightest``)."""
    return tuple(float(_brightest(plane, None, 0)[0, 0]) for plane in planes)


def _correct_in_waves(
    out: np.ndarray,
    pool: Any,
    strip: Callable[[int], np.ndarray],
    starts: range,
    workers: int,
) -> None:
    """Add each strip's correction to ``out``, a wave of ``workers`` strips at a time.

    A wave's corrections are added only once the next wave has read the plane: a strip
    reads at most its halo (less than a strip) into the strips before it, so every strip
    reads the plane as it was, and two waves of corrections are held at a time.
    """
    pending: list[tuple[int, np.ndarray]] = []
    for first in range(0, len(starts), workers):
        wave = list(starts[first : first + workers])
        done = list(zip(wave, pool.map(strip, wave), strict=True))
        for y0, corr in pending:
            out[y0 : y0 + len(corr)] += corr
        pending = done
    for y0, corr in pending:
        out[y0 : y0 + len(corr)] += corr


#: :func:`refit_stars`'s smallest noise sigma, as a fraction of the plane's largest
_REFIT_LEAST_SIGMA = 1e-3


def _refit_size(window: float) -> int:
    """Side of the square of :func:`refit_stars`'s opening for a window, odd, >= 3."""
    return 2 * max(1, round(window)) + 1


def _refit_correction(
    out: np.ndarray,
    inp: np.ndarray,
    c: int,
    prior: float,
    profile: NoiseProfile,
    window: float,
    least: np.float32,
) -> np.ndarray:
    """``lam * s`` of :func:`refit_stars` for one (H, W) plane (or strip) of channel ``c``.

    ``least`` floors the noise sigma (> 0).
    """
    from scipy.ndimage import gaussian_filter

    size = _refit_size(window)
    # the window's weights peak at 1, so that 1 / prior^2 weighs like that many pixels'
    # worth of information at the centre
    norm = np.float32(2.0 * np.pi * window * window)
    good = np.isfinite(out) & np.isfinite(inp)
    level = np.where(good, out, np.float32(profile.sky[c]))
    # the grey opening by the square (scipy's grey_opening with mode "reflect", bit for bit)
    s = level - square_max(square_min(level, size // 2), size // 2)
    np.maximum(s, 0.0, out=s)
    s[~good] = 0.0
    sigma = np.maximum(profile.sigma(c, level), least)
    var = sigma * sigma
    with np.errstate(invalid="ignore"):
        r = np.where(good, inp - out, 0.0).astype(np.float32)
    weight = s / var
    num = gaussian_filter(weight * r, window, mode="reflect") * norm
    den = gaussian_filter(weight * s, window, mode="reflect") * norm
    lam = num / (den + np.float32(1.0 / (prior * prior)))
    np.clip(lam, -1.0, 1.0, out=lam)
    # flux is given back only to sources well above the noise (the core's peak in noise
    # sigmas): none below _REFIT_LIFT[0], all of it from _REFIT_LIFT[1]
    lo, hi = _REFIT_LIFT
    peak = square_max(s / sigma, size // 2)
    lift = np.clip((peak - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0)
    np.multiply(lam, lift, out=lam, where=lam > 0)
    lam *= s
    return lam
