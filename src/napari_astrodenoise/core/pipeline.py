"""denoise(): normalize -> overlapping tiles -> model -> stitch -> inverse -> strength blend.

Everything a script, a notebook, the CLI and the napari widgets need, with no Qt in it.

Stitching happens in the data's own linear units: each tile is stretched with statistics of
the whole frame (``normalize``), denoised and mapped back, and only the change the network made
(prediction minus input, in the input's units) is blended across tiles and then added to the
input. An identity network therefore returns the input bit for bit, and Gaussian blending
averages flux changes, not stretched values. A model with a noise channel gets the frame's
noise map (``noiselevel.noise_map``, also measured on the whole frame) tiled along with it.

The stitched change is then flux-locked (:func:`lock_flux`): its low spatial frequencies are
taken out, so the network may remove noise and reshape detail but cannot move the image's
level, nor the flux and colour of anything larger than the lock scale. This is what keeps
repeated denoising from drifting and stops the model from muting faint colour.

Then the change is limited (:func:`limit_change`) to a few noise sigmas at every pixel,
with the noise level function fitted to the image's own residual: a denoiser removes
noise, and a change far larger than the noise would be a star or structure made or erased.
The stars are then refitted (:func:`refit_stars`, and the limit applied again): the
compact structure of the prediction is scaled, locally, by the gain that best explains what
the network took out of the input, which gives back the flux a denoiser takes from star
cores and never makes a star where the prediction has none. Last, peaks are capped
(:func:`cap_peaks`): no output pixel is brighter than the brightest
input pixel around it, so a star core cannot be sharpened above anything observed.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_astrodenoise.core import tiling
from napari_astrodenoise.core.noiselevel import (
    NoiseProfile,
    fit_noise_profile,
    noise_map,
    noise_sigma,
    prefit_noise_profile,
)
from napari_astrodenoise.core.starmask import upsample_blocks
from napari_astrodenoise.core.stretch import (
    AstroStretch,
    fit_stretch,
)

if TYPE_CHECKING:
    from napari_astrodenoise.core.diagnostics import SeamReport
    from napari_astrodenoise.core.weights import LoadedModel

BLENDS = ("gaussian", "none")
#: Test-time self-ensembles: how many flips / transposes of each tile are averaged.
ENSEMBLES = (1, 2, 4, 8)
# (transpose, flip y, flip x) of each member, the tile as it is first: 2 adds the mirror
# image, 4 all flips, 8 the flips of the transposed tile as well
_VIEWS = tuple((t, fy, fx) for t in (False, True) for fy in (False, True) for fx in (False, True))
#: Default flux-lock scale (Gaussian sigma in pixels of the caller's image): see `lock_flux`.
FLUX_LOCK = 8.0
#: Default flux-lock threshold (noise sigmas of the lock's band): see `lock_flux`.
LOCK_THRESHOLD = 1.0
#: Default change limit (noise sigmas at each pixel): see `limit_change`.
CHANGE_LIMIT = 3.0
#: Default peak cap radius (pixels of the engine's planes): see `cap_peaks`.
PEAK_CAP = 1
#: Default star refit prior (relative flux, 1 sigma): see `refit_stars`.
STAR_REFIT = 0.04
#: Star refit window (Gaussian sigma, pixels of the caller's image): see `refit_stars`.
REFIT_WINDOW = 2.0
# tiles per batch when batch_size is None
_AUTO_BATCH = {"cpu": 4, "mps": 8, "cuda": 16}


@dataclass
class DenoiseResult:
    """A finished run: the raw prediction is kept so that re-blending costs no network pass.

    Attributes
    ----------
    original : ndarray
        (C, H, W) float32 input, channel first, non-finite pixels as given.
    prediction : ndarray
        (C, H, W) float32 full-strength network output in the input's units, flux-locked,
        change-limited, star-refitted and peak-capped; non-finite input pixels are restored.
    model_mask : ndarray or None
        (C', H', W') float32 star-mask probability from the network's mask head, in the
        engine's planes (one plane; four for a Bayer mosaic).
    layout : Layout
        How the caller's array maps to the engine's (C, H, W) planes.
    settings : dict
        Model name and hash and every option of the run (``flux_lock``, ``change_limit`` and
        ``peak_cap`` included: the prediction already has them), and the fitted
        ``noise_profile``, for provenance.
    star_mask : ndarray or None
        Soft mask in [0, 1] used by ``star_protection``, shaped like one image plane of the
        caller's array ((H, W)); measured with :func:`star_mask` defaults on first need.
    """

    original: np.ndarray
    prediction: np.ndarray
    model_mask: np.ndarray | None
    layout: Layout
    settings: dict
    star_mask: np.ndarray | None = None
    _delta: np.ndarray | None = field(default=None, repr=False)

    @property
    def channel_axis(self) -> int | None:
        """Where the channel axis is in the caller's layout (None: a 2-D frame)."""
        return self.layout.channel_axis

    def output(
        self, strength: float | None = None, star_protection: float | None = None
    ) -> np.ndarray:
        """The denoised image in the caller's layout, float32.

        ``out = input + strength * (1 - star_protection * mask) * (prediction - input)``;
        no network pass. Defaults are the run's own settings.
        """
        strength = self.settings["strength"] if strength is None else strength
        protection = (
            self.settings["star_protection"] if star_protection is None else star_protection
        )
        _check_unit("strength", strength)
        _check_unit("star_protection", protection)
        if self._delta is None:
            with np.errstate(invalid="ignore"):
                delta = self.prediction - self.original
            delta[~np.isfinite(delta)] = 0.0
            self._delta = delta
        weight = np.float32(strength)
        if protection > 0:
            if self.star_mask is None:
                self.star_mask = self.layout.measure_star_mask(self.original)
            mask = self.layout.mask_to_planes(self.star_mask)
            weight = weight * (1.0 - np.float32(protection) * mask)
        out = self.original + weight * self._delta
        return self.layout.from_planes(out.astype(np.float32, copy=False))

    def provenance(
        self, strength: float | None = None, star_protection: float | None = None
    ) -> dict:
        """FITS keywords and HISTORY lines of this run (layer metadata ``astrodenoise``)."""
        s = dict(self.settings)
        if strength is not None:
            s["strength"] = strength
        if star_protection is not None:
            s["star_protection"] = star_protection
        return provenance(s)


def provenance(settings: dict) -> dict:
    """``{"provenance": {KEYWORD: (value, comment)}, "history": [...]}`` for ``write_fits``."""
    from napari_astrodenoise import __version__

    cards = {
        "ADVERS": (__version__, "napari-astrodenoise version"),
        "ADMODEL": (settings["model"], "denoising model name"),
        "ADMSHA": (settings["sha256"], ""),  # 64 hex digits fill the card: no comment
        "ADSTRNTH": (float(settings["strength"]), "denoise strength, 0..1"),
        "ADSTARPR": (float(settings["star_protection"]), "star protection, 0..1"),
        "ADTILE": (int(settings["tile_size"]), "tile size, px"),
        "ADOVERLP": (float(settings["overlap"]), "tile overlap fraction"),
        "ADBLEND": (settings["blend"], "tile blending"),
        "ADSIGSCL": (float(settings["sigma_scale"]), "Gaussian blend sigma / tile"),
        "ADSOFTEN": (float(settings["softening"]), "asinh softening, noise sigmas"),
        "ADDEVICE": (settings["device"], "torch device used"),
        "ADBAYER": (bool(settings.get("bayer", False)), "Bayer sub-planes denoised apart"),
        "ADFLUXLK": (float(settings.get("flux_lock", 0.0)), "flux kept beyond this sigma, px"),
        "ADLOCKTH": (float(settings.get("lock_threshold", 0.0)), "flux lock threshold, sigma"),
        "ADENSMBL": (int(settings.get("ensemble", 1)), "flips/transposes averaged per tile"),
        "ADCHGLIM": (float(settings.get("change_limit", 0.0)), "change kept within N noise sigma"),
        "ADPKCAP": (int(settings.get("peak_cap", 0)), "no pixel above input max within N px"),
        "ADREFIT": (float(settings.get("star_refit", 0.0)), "star flux refit prior, 0: off"),
    }
    history = [
        f"napari-astrodenoise {__version__}: denoised with model {settings['model']} "
        f"(sha256 {settings['sha256'][:16]}), strength {settings['strength']:g}, "
        f"star protection {settings['star_protection']:g}, tiles {settings['tile_size']} px, "
        f"overlap {settings['overlap']:g}, blend {settings['blend']}, "
        f"flux lock {settings.get('flux_lock', 0.0):g} px "
        f"(threshold {settings.get('lock_threshold', 0.0):g} sigma), "
        f"self-ensemble {settings.get('ensemble', 1)}, "
        f"change limit {settings.get('change_limit', 0.0):g} sigma, "
        f"peak cap {settings.get('peak_cap', 0)} px, "
        f"star refit {settings.get('star_refit', 0.0):g}, "
        f"device {settings['device']}; data kept linear, not clipped or rescaled"
    ]
    return {"provenance": cards, "history": history}


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
    _check_lock(scale)
    _check_threshold(threshold)
    if scale == 0:
        return change
    if threshold > 0:
        if original is None:
            msg = "lock_flux with threshold > 0 needs the original planes"
            raise ValueError(msg)
        return _soft_lock(change, original, scale, threshold, profile)
    from scipy.ndimage import gaussian_filter

    low = np.empty(change.shape[1:], dtype=change.dtype)
    for plane in change:
        gaussian_filter(plane, scale, output=low, mode="reflect")
        plane -= low
    return change


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

    block = max(1, int(scale // 2))
    if profile is None:
        with np.errstate(invalid="ignore"):
            profile = fit_noise_profile(original, original + change)
    coarse, level, near = [], [], None
    for c in range(len(change)):
        # the free prediction of this plane; non-finite pixels read as the sky
        sky = np.float32(profile.sky[c])
        with np.errstate(invalid="ignore"):
            free = original[c] + change[c]
        free[~np.isfinite(free)] = sky
        coarse.append(_block_reduce(change[c], block, np.add))
        level.append(_block_reduce(free, block, np.add))
        sky_sigma = float(np.sqrt(max(profile.floor[c], 0.0)))
        bright = _block_reduce(free, block, np.maximum) > sky + _LOCK_SIGNAL * sky_sigma
        near = bright if near is None else near | bright
    # strict within 2 scale of signal, feathered over scale
    grow = 2 * max(1, round(2 * scale / block)) + 1
    near = maximum_filter1d(near.astype(np.float32), grow, axis=0, mode="nearest")
    near = maximum_filter1d(near, grow, axis=1, mode="nearest")
    free_weight = 1.0 - np.clip(gaussian_filter(near, scale / block, mode="nearest"), 0.0, 1.0)
    full = np.empty(change.shape[1:], dtype=change.dtype)
    for c, plane in enumerate(change):
        low = gaussian_filter(coarse[c], _coarse_sigma(scale, block), mode="reflect")
        base = gaussian_filter(coarse[c], _coarse_sigma(_LOCK_BASE * scale, block), mode="reflect")
        smooth = gaussian_filter(level[c], scale / block, mode="reflect")
        bound = profile.sigma(c, smooth) * np.float32(threshold * _BAND_NOISE / scale)
        # what stays of the low-pass change: the band below the threshold, away from signal
        kept = np.clip(low - base, -bound, bound) * free_weight
        # the strict lock at full resolution (exact where stars change most), less what stays
        gaussian_filter(plane, scale, output=full, mode="reflect")
        full -= upsample_blocks(kept, block, plane.shape)
        plane -= full
    return change


def _coarse_sigma(sigma: float, block: int) -> float:
    """Gaussian sigma on the block grid whose result, interpolated back, has ``sigma`` px.

    Block means add ``(block^2 - 1) / 12`` px^2 of variance and bilinear interpolation
    ``block^2 / 6``.
    """
    extra = (block**2 - 1) / 12.0 + block**2 / 6.0
    return float(np.sqrt(max(sigma**2 - extra, 0.25 * sigma**2))) / block


def _block_reduce(plane: np.ndarray, block: int, how: np.ufunc) -> np.ndarray:
    """Mean (``np.add``) or maximum (``np.maximum``) over ``block`` x ``block`` squares.

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


def limit_change(
    denoised: np.ndarray,
    original: np.ndarray,
    limit: float,
    profile: NoiseProfile | None = None,
) -> NoiseProfile | None:
    """Keep every pixel of ``denoised`` within ``limit`` noise sigmas of ``original``, in place.

    The noise level function (:class:`~napari_astrodenoise.core.noiselevel.NoiseProfile`,
    Poisson-Gaussian: a floor plus a term that grows with the signal) is fitted to the
    residual ``original - denoised`` itself (:func:`fit_noise_profile`), so it needs no gain
    or read noise from the user and follows correlated noise at its true amplitude. Where
    ``|denoised - original|`` exceeds ``limit`` times the sigma at the fainter of the two
    levels, the change is cut back to that bound; every other pixel is left bit for bit.
    Noise removal is rarely touched (white noise passes 3 sigma in 0.3 % of pixels, and only
    the excess is kept), but no star, ripple or structure brighter than ``limit`` sigmas can
    be made or erased in one pass, and a model's large errors at bright cores, where the
    stretch magnifies them, are cut to the noise there. A defect far above the noise (a hot
    pixel, a cosmic ray) is therefore only lowered by ``limit`` sigmas, not removed: that is
    cosmetic correction's work.

    Parameters
    ----------
    denoised : ndarray
        (C, H, W) float32 denoised planes; modified.
    original : ndarray
        (C, H, W) input planes; non-finite pixels are left out of the fit and not limited.
    limit : float
        Noise sigmas (> 0), or 0 to leave ``denoised`` alone.
    profile : NoiseProfile, optional
        The noise level function to use (one already fitted, as the noise-aware flux lock
        does); fitted here when None.

    Returns
    -------
    NoiseProfile or None
        The profile used (None when ``limit`` is 0).
    """
    _check_limit(limit)
    if limit == 0:
        return None
    if profile is None:
        profile = fit_noise_profile(original, denoised)
    for c, (out, inp) in enumerate(zip(denoised, original, strict=True)):
        # the sigma of the fainter of the two levels: a star made up out of sky, or a real
        # star erased, is held to the noise of the sky, not to that of the star
        bound = profile.sigma(c, np.fmin(out, inp))
        bound *= np.float32(limit)
        with np.errstate(invalid="ignore"):
            change = out - inp
            over = np.abs(change) > bound
        out[over] = inp[over] + np.copysign(bound[over], change[over])
    return profile


def guard_change(
    change: np.ndarray,
    original: np.ndarray,
    *,
    flux_lock: float,
    change_limit: float,
    peak_cap: int,
    lock_threshold: float,
    bad: np.ndarray | None = None,
    star_refit: float = 0.0,
    refit_window: float = REFIT_WINDOW,
) -> tuple[np.ndarray, NoiseProfile | None]:
    """The engine's safeguards on a network's change, in their order; ``change`` is reused.

    :func:`lock_flux` of the change, added to ``original``; then :func:`limit_change`,
    :func:`refit_stars` and :func:`limit_change` again (the refit's gain stays within the
    limit), and :func:`cap_peaks` of the result. The noise level function is fitted once
    (to the free prediction with a noise-aware lock, ``lock_threshold`` > 0, otherwise to
    the locked one) and serves the limit and the refit.
    Non-finite pixels of ``original`` (``bad``, measured when None) get no change and come
    back as they were. This is what :func:`denoise`
    returns at full strength, given the stitched change; benchmarks that vary one
    safeguard call it on a network's free change (all three off in ``denoise``).

    Parameters
    ----------
    change : ndarray
        (C, H, W) float32 prediction minus input, in the input's units; modified.
    original : ndarray
        (C, H, W) input planes.
    flux_lock, change_limit, peak_cap, lock_threshold, star_refit
        As for :func:`denoise`, in pixels of these planes (``star_refit`` 0, off, unless
        given: benchmarks that vary another safeguard keep their tables).
    bad : ndarray, optional
        ``~np.isfinite(original)``, when the caller has it.
    refit_window : float, optional
        :func:`refit_stars`'s window in pixels of these planes.

    Returns
    -------
    (ndarray, NoiseProfile or None)
        The guarded prediction (``change``'s memory) and the change limit's fitted profile.
    """
    bad = ~np.isfinite(original) if bad is None else bad
    any_bad = bool(bad.any())
    if any_bad:
        change[bad] = 0.0
    profile = None
    if flux_lock > 0 and lock_threshold > 0:
        # fitted once, to the free prediction (bad pixels stay non-finite and are ignored)
        with np.errstate(invalid="ignore"):
            profile = fit_noise_profile(original, original + change)
    lock_flux(change, flux_lock, threshold=lock_threshold, original=original, profile=profile)
    prediction = np.add(change, original, out=change)
    if any_bad:
        prediction[bad] = original[bad]
    profile = limit_change(prediction, original, change_limit, profile)
    if star_refit > 0:
        if profile is None:
            with np.errstate(invalid="ignore"):
                profile = fit_noise_profile(original, prediction)
        refit_stars(prediction, original, star_refit, profile, window=refit_window)
        limit_change(prediction, original, change_limit, profile)
    cap_peaks(prediction, original, peak_cap)
    return prediction, profile


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
    """
    _check_refit(prior)
    if prior == 0:
        return
    from concurrent.futures import ThreadPoolExecutor

    height = denoised.shape[1]
    # every correction depends on pixels at most 2 size + 4 window away (the opening, the
    # window's Gaussian truncated at 4 sigma, the peak's square), so strips with that halo
    # give exactly the whole plane's result; scipy's filters release the GIL, so strips
    # run in parallel, mono frames included
    halo = 2 * _refit_size(window) + int(np.ceil(4 * window)) + 1
    starts = range(0, height, _REFIT_STRIP)
    workers = min(len(starts), os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for c, (out, inp) in enumerate(zip(denoised, original, strict=True)):
            # the noise sigma is floored at a thousandth of the plane's largest, so that a
            # profile with no noise at the sky (floor 0) weighs nothing infinitely; a plane
            # with no noise at all has nothing to weigh the residual by and is left alone
            # (the noise level function grows with the signal: its largest is at the
            # brightest pixel)
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN plane
                brightest = np.nanmax(out, keepdims=True)
            top = float(profile.sigma(c, brightest)[0, 0])
            if not top > 0:
                continue
            least = np.float32(_REFIT_LEAST_SIGMA * top)

            def strip(y0: int, out=out, inp=inp, c=c, least=least) -> np.ndarray:
                lo, hi = max(0, y0 - halo), min(height, y0 + _REFIT_STRIP + halo)
                corr = _refit_correction(out[lo:hi], inp[lo:hi], c, prior, profile, window, least)
                return corr[y0 - lo : y0 - lo + min(_REFIT_STRIP, height - y0)]

            # all of a plane's strips read the plane before any correction is added
            corrections = list(pool.map(strip, starts))
            for y0, corr in zip(starts, corrections, strict=True):
                out[y0 : y0 + len(corr)] += corr


#: rows per strip of :func:`refit_stars` (each with its halo)
_REFIT_STRIP = 256
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
    from scipy.ndimage import gaussian_filter, grey_opening, maximum_filter

    size = _refit_size(window)
    # the window's weights peak at 1, so that 1 / prior^2 weighs like that many pixels'
    # worth of information at the centre
    norm = np.float32(2.0 * np.pi * window * window)
    good = np.isfinite(out) & np.isfinite(inp)
    level = np.where(good, out, np.float32(profile.sky[c]))
    s = level - grey_opening(level, size=(size, size), mode="reflect")
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
    peak = maximum_filter(s / sigma, size=size, mode="nearest")
    lift = np.clip((peak - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0)
    np.multiply(lam, lift, out=lam, where=lam > 0)
    lam *= s
    return lam


def cap_peaks(denoised: np.ndarray, original: np.ndarray, radius: int) -> None:
    """Keep every pixel of ``denoised`` at or below its neighbourhood's maximum, in place.

    The bound at a pixel is the brightest finite pixel of ``original`` in the
    ``(2 radius + 1)`` square around it, plane by plane. The brightest noisy pixel of a
    neighbourhood is at or above the true peak at least half the time (the core's own
    pixel alone is, half the time) and below it by about the noise otherwise, so the bound
    costs an honest estimate little. A model that sharpens a core (a bright, undersampled
    or saturated star read as a blurred point) is stopped at what was observed, where the
    change limit would allow a bright core's own, large noise on every pass. The bound
    only ever lowers pixels, and an image the model leaves alone is left alone bit for bit.
    ``benchmarks/peak_cap.py`` measures it on the tuning set, in one pass and in the
    repeated noise-and-denoise loop.

    Parameters
    ----------
    denoised : ndarray
        (C, H, W) float32 denoised planes; modified. Non-finite pixels stay as they are.
    original : ndarray
        (C, H, W) input planes; non-finite pixels are left out of the maxima.
    radius : int
        Neighbourhood half-width in pixels of these planes (>= 0), 0 to leave ``denoised``
        alone.
    """
    _check_cap(radius)
    if radius == 0:
        return
    for out, inp in zip(denoised, original, strict=True):
        finite = np.isfinite(inp)
        source = inp if finite.all() else np.where(finite, inp, -np.inf)
        top = _square_max(np.asarray(source, dtype=np.float32), radius)
        # non-finite output pixels (a NaN or inf restored from the input) stay as they are,
        # and so does a pixel with no finite input around it
        np.minimum(out, top, out=out, where=np.isfinite(out) & np.isfinite(top))


def _square_max(plane: np.ndarray, radius: int) -> np.ndarray:
    """Maximum over the ``(2 radius + 1)`` square around each pixel, clipped at the edges.

    ``scipy.ndimage.maximum_filter(plane, 2 * radius + 1, mode="nearest")`` (a test holds
    them equal), as running maxima of shifted views, rows then columns: 2 radius array
    operations per axis, several times faster than scipy's filter for the small radii used
    here, which matters on a 24 MPix frame.
    """
    top = plane
    for axis in (0, 1):
        src, top = top, top.copy()
        n = src.shape[axis]
        for k in range(1, min(radius, n - 1) + 1):
            head = [slice(None)] * 2
            tail = [slice(None)] * 2
            head[axis], tail[axis] = slice(0, n - k), slice(k, n)
            head_t, tail_t = tuple(head), tuple(tail)
            np.maximum(top[head_t], src[tail_t], out=top[head_t])  # the pixel k after
            np.maximum(top[tail_t], src[head_t], out=top[tail_t])  # the pixel k before
    return top


def _check_cap(radius: int) -> None:
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        msg = f"peak_cap must be a whole number of pixels >= 0 (0: off), got {radius!r}"
        raise ValueError(msg)


def _check_limit(limit: float) -> None:
    if not (np.isfinite(limit) and limit >= 0):
        msg = f"change_limit must be a number of noise sigmas >= 0 (0: off), got {limit}"
        raise ValueError(msg)


def _check_refit(prior: float) -> None:
    if not (np.isfinite(prior) and prior >= 0):
        msg = f"star_refit must be a relative flux >= 0 (0: off), got {prior!r}"
        raise ValueError(msg)


def _check_threshold(threshold: float) -> None:
    if not (np.isfinite(threshold) and threshold >= 0):
        msg = f"lock_threshold must be a number of noise sigmas >= 0 (0: strict), got {threshold}"
        raise ValueError(msg)


def _check_lock(scale: float) -> None:
    if not (np.isfinite(scale) and scale >= 0):
        msg = f"flux_lock must be a number of pixels >= 0 (0: off), got {scale}"
        raise ValueError(msg)


def _check_unit(name: str, value: float) -> None:
    if not 0.0 <= float(value) <= 1.0:
        msg = f"{name} must be between 0 and 1, got {value}"
        raise ValueError(msg)


@dataclass(frozen=True)
class Layout:
    """How the caller's array maps to the engine's (C, H, W) planes, and back.

    - mono ``(H, W)``: one plane;
    - ``channel_axis`` given: that axis becomes C (colour when C is 3, otherwise a stack of
      frames denoised one by one);
    - ``bayer=True``: a raw one-shot-colour mosaic ``(H, W)`` is split into its four
      colour sub-planes (half size, padded by mirroring the row or column of the same colour
      when H or W is odd), so the network never mixes pixels of different filters.
    """

    shape: tuple[int, ...]
    channel_axis: int | None = None
    bayer: bool = False

    @classmethod
    def of(cls, image: np.ndarray, channel_axis: int | None, bayer: bool) -> Layout:
        """Check the image against the options and describe it."""
        shape = np.shape(image)
        if bayer and (channel_axis is not None or len(shape) != 2 or min(shape) < 2):
            msg = f"bayer=True needs a 2-D raw mosaic of at least 2x2, got shape {shape}"
            raise ValueError(msg)
        if channel_axis is None and len(shape) != 2:
            msg = (
                f"a mono image must be 2-D (H, W), got shape {shape}; "
                "for colour or a stack pass channel_axis "
                "(FITS cubes are (3, H, W): channel_axis=0)"
            )
            raise ValueError(msg)
        if channel_axis is not None and len(shape) != 3:
            msg = f"with channel_axis the image must be 3-D, got shape {shape}"
            raise ValueError(msg)
        if channel_axis is not None and not -3 <= channel_axis <= 2:
            msg = f"channel_axis must be -3..2 for a 3-D image, got {channel_axis}"
            raise ValueError(msg)
        if min(shape) < 1:
            msg = f"image has no pixels (shape {shape})"
            raise ValueError(msg)
        return cls(tuple(shape), channel_axis, bool(bayer))

    @property
    def plane_shape(self) -> tuple[int, int]:
        """(H, W) of one image plane in the caller's array."""
        if self.channel_axis is None:
            return self.shape
        return tuple(n for i, n in enumerate(self.shape) if i != self.channel_axis % 3)

    def to_planes(self, image: np.ndarray) -> np.ndarray:
        """Caller's array -> (C, H', W') float32 (a view where possible)."""
        image = np.asarray(image)
        if self.bayer:
            h, w = image.shape
            even = np.pad(image, ((0, h % 2), (0, w % 2)), mode="reflect")
            h2, w2 = even.shape[0] // 2, even.shape[1] // 2
            chw = even.reshape(h2, 2, w2, 2).transpose(1, 3, 0, 2).reshape(4, h2, w2)
        elif self.channel_axis is None:
            chw = image[np.newaxis]
        else:
            chw = np.moveaxis(image, self.channel_axis, 0)
        return chw.astype(np.float32, copy=False)

    def from_planes(self, chw: np.ndarray) -> np.ndarray:
        """(C, H', W') planes -> the caller's layout."""
        if self.bayer:
            _, h2, w2 = chw.shape
            h, w = self.shape
            return chw.reshape(2, 2, h2, w2).transpose(2, 0, 3, 1).reshape(2 * h2, 2 * w2)[:h, :w]
        if self.channel_axis is None:
            return chw[0]
        return np.moveaxis(chw, 0, self.channel_axis)

    def mask_to_planes(self, mask: np.ndarray) -> np.ndarray:
        """An (H, W) mask of the caller's image -> broadcastable against the planes."""
        return self.to_planes(mask) if self.bayer else np.asarray(mask, np.float32)[np.newaxis]

    def measure_star_mask(self, planes: np.ndarray) -> np.ndarray:
        """Default soft star mask of the caller's image, (H, W)."""
        from napari_astrodenoise.core.starmask import star_mask

        axis = None if self.channel_axis is None else self.channel_axis % 3
        return star_mask(self.from_planes(planes), channel_axis=axis)


def _load(model: str | os.PathLike | LoadedModel, device: str) -> LoadedModel:
    from napari_astrodenoise.core.weights import LoadedModel, load_model, resolve_device

    if isinstance(model, LoadedModel):
        wanted = resolve_device(device)
        if device != "auto" and wanted != model.device:
            model.module.to(wanted)
            model.device = wanted
        return model
    return load_model(model, device=device)


class _TilePredictor:
    """Linear tiles (B, C, T, T) -> the network's change plus mask (B, C + 1, T, T).

    The change is ``inverse(network(y)) - inverse(y)`` in the data's units (zero for an
    identity network); the last channel is the star-mask probability.

    With ``ensemble`` > 1 the network also runs on flipped (and, for 8, transposed) copies
    of each tile and the outputs, mapped back, are averaged: the model's own directional
    errors average out, at ``ensemble`` times the cost.

    Channels are served in groups the model takes: all of them when C equals the model's
    input channels, otherwise one at a time (a mono channel is repeated to the model's width
    and its outputs averaged). The batch is halved and retried on out-of-memory.

    For a model with a noise channel the tiles carry one more channel, the network-space
    noise map (:func:`~napari_astrodenoise.core.noiselevel.noise_map`), which is passed to
    the network with every group and is not part of the output.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        stretch: AstroStretch,
        channels: int,
        batch_size: int,
        ensemble: int = 1,
    ):
        self.loaded = loaded
        self.views = _VIEWS[:ensemble]
        self.stretch = stretch
        self.model_channels = loaded.module.config.in_channels
        self.mask_head = loaded.module.config.mask_head
        self.noise_channel = loaded.module.config.noise_channel
        same = channels == self.model_channels
        self.groups = [list(range(channels))] if same else [[c] for c in range(channels)]
        self.batch_size = batch_size

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        noise = None
        if self.noise_channel:
            tiles, noise = tiles[:, :-1], tiles[:, -1:]
        b, c, t, u = tiles.shape
        out = np.empty((b, c + 1, t, u), dtype=np.float32)
        mask = np.zeros((b, t, u), dtype=np.float64)
        for group in self.groups:
            x = tiles[:, group]
            stretch = AstroStretch(self.stretch.background[group], self.stretch.scale)
            y = stretch.forward(x)
            y_hat, m = self._network(y, noise)
            out[:, group] = stretch.change(y_hat, y)
            mask += m
        out[:, c] = mask / len(self.groups)
        return out

    def _network(self, y: np.ndarray, noise: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        import torch

        start = 0
        outputs, masks = [], []
        while start < len(y):
            chunk = y[start : start + self.batch_size]
            noise_chunk = None if noise is None else noise[start : start + self.batch_size]
            try:
                img, mask = self._forward(torch, chunk, noise_chunk)
            except (torch.cuda.OutOfMemoryError, RuntimeError) as err:
                if "out of memory" not in str(err).lower() or self.batch_size == 1:
                    raise
                self.batch_size //= 2
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            outputs.append(img)
            masks.append(mask)
            start += len(chunk)
        return np.concatenate(outputs), np.concatenate(masks)

    def _forward(
        self, torch: Any, chunk: np.ndarray, noise: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(chunk)).to(self.loaded.device)
        g = x.shape[1]
        n = self.model_channels
        if g != n:
            x = x.expand(-1, n, -1, -1)
        if noise is not None:
            noise = torch.from_numpy(np.ascontiguousarray(noise)).to(self.loaded.device)
        net_in = x if noise is None else torch.cat([x, noise], dim=1)
        change = mask_sum = None
        with torch.inference_mode():
            for transpose, flip_y, flip_x in self.views:
                dims = [d for d, f in ((-2, flip_y), (-1, flip_x)) if f]
                v = net_in.transpose(-1, -2) if transpose else net_in
                v = v.flip(dims) if dims else v
                o = self.loaded.module(v.contiguous(memory_format=torch.channels_last)).float()
                o = o.flip(dims) if dims else o
                o = o.transpose(-1, -2) if transpose else o
                # sum the changes, not the outputs: an identity network stays exact
                d, m = o[:, :n] - x, o[:, n:]
                change = d if change is None else change + d
                mask_sum = m if mask_sum is None else mask_sum + m
        k = len(self.views)
        img = x + change / k
        if g != n:
            img = img.mean(dim=1, keepdim=True)
        if self.mask_head:
            mask = torch.sigmoid(mask_sum[:, 0] / k)
        else:
            mask = torch.zeros_like(img[:, 0])
        return img.cpu().numpy(), mask.cpu().numpy()


def _prepare(
    image,
    channel_axis,
    bayer,
    model,
    device,
    tile_size,
    overlap,
    blend,
    sigma_scale,
    batch_size,
    ensemble=1,
):
    if ensemble not in ENSEMBLES:
        msg = f"ensemble must be one of {ENSEMBLES}, got {ensemble!r}"
        raise ValueError(msg)
    if blend not in BLENDS:
        msg = f"blend must be one of {BLENDS}, got {blend!r}"
        raise ValueError(msg)
    if not 0.0 <= overlap <= 0.75:
        msg = f"overlap must be between 0 and 0.75, got {overlap}"
        raise ValueError(msg)
    if batch_size is not None and batch_size < 1:
        msg = f"batch_size must be >= 1, got {batch_size}"
        raise ValueError(msg)
    layout = Layout.of(image, channel_axis, bayer)
    chw = layout.to_planes(image)
    loaded = _load(model, device)
    stretch = fit_stretch(chw, softening=loaded.softening)
    filled = chw
    bad = ~np.isfinite(chw)
    if bad.any():
        filled = np.where(bad, stretch.background.reshape(-1, 1, 1).astype(np.float32), chw)
    prefit = None
    if loaded.module.config.noise_channel:
        # the network's extra input: the noise map, tiled along with the image
        prefit = prefit_noise_profile(chw)
        sigma_map = noise_map(chw, stretch, prefit, loaded.softening)
        filled = np.concatenate([filled, sigma_map[np.newaxis]], axis=0)
    kind = loaded.device.split(":")[0]
    predictor = _TilePredictor(
        loaded, stretch, chw.shape[0], batch_size or _AUTO_BATCH[kind], ensemble
    )
    settings = {
        "model": loaded.name,
        "sha256": loaded.sha256,
        "tile_size": int(tile_size),
        "overlap": float(overlap),
        "blend": blend,
        "sigma_scale": float(sigma_scale),
        "device": loaded.device,
        "softening": loaded.softening,
        "stretch": stretch.to_dict(),
        "bayer": bool(bayer),
        "ensemble": int(ensemble),
    }
    if prefit is not None:
        settings["noise_prefit"] = prefit.to_dict()
    return layout, chw, filled, bad, predictor, settings


def iter_denoise(
    image: np.ndarray,
    *,
    model: str | os.PathLike | LoadedModel = "default",
    strength: float = 1.0,
    star_protection: float = 0.0,
    tile_size: int = 256,
    overlap: float = 0.25,
    blend: str = "gaussian",
    sigma_scale: float = 0.125,
    device: str = "auto",
    channel_axis: int | None = None,
    bayer: bool = False,
    batch_size: int | None = None,
    star_mask: np.ndarray | None = None,
    flux_lock: float = FLUX_LOCK,
    change_limit: float = CHANGE_LIMIT,
    peak_cap: int = PEAK_CAP,
    ensemble: int = 1,
    lock_threshold: float = LOCK_THRESHOLD,
    star_refit: float = STAR_REFIT,
) -> Generator[tuple[int, int], None, DenoiseResult]:
    """Denoise step by step: yields ``(tiles_done, tiles_total)``, returns a DenoiseResult.

    Stop it between batches by no longer iterating (or ``.close()``). Arguments are those of
    :func:`denoise`; the generator's return value (``StopIteration.value``, or napari's
    ``worker.returned``) is the :class:`DenoiseResult`.
    """
    _check_unit("strength", strength)
    _check_unit("star_protection", star_protection)
    _check_lock(flux_lock)
    _check_threshold(lock_threshold)
    _check_limit(change_limit)
    _check_cap(peak_cap)
    _check_refit(star_refit)
    layout, chw, network_in, bad, predictor, settings = _prepare(
        image,
        channel_axis,
        bayer,
        model,
        device,
        tile_size,
        overlap,
        blend,
        sigma_scale,
        batch_size,
        ensemble,
    )
    if star_mask is not None and np.shape(star_mask) != layout.plane_shape:
        msg = f"star_mask must have shape {layout.plane_shape}, got {np.shape(star_mask)}"
        raise ValueError(msg)
    stitched = yield from tiling.iter_tiled(
        network_in,
        predictor,
        tile_size=tile_size,
        overlap=overlap,
        blend=blend,
        sigma_scale=sigma_scale,
        batch_size=predictor.batch_size,
        out_channels=chw.shape[0] + 1,
    )
    # stitched[:-1] is the network's change, in the input's units; a Bayer sub-plane has
    # half the caller's pixel scale
    prediction, profile = guard_change(
        stitched[:-1],
        chw,
        flux_lock=flux_lock / 2 if layout.bayer else flux_lock,
        change_limit=change_limit,
        peak_cap=peak_cap,
        lock_threshold=lock_threshold,
        bad=bad,
        star_refit=star_refit,
        refit_window=REFIT_WINDOW / 2 if layout.bayer else REFIT_WINDOW,
    )
    settings.update(
        strength=float(strength),
        star_protection=float(star_protection),
        flux_lock=float(flux_lock),
        lock_threshold=float(lock_threshold),
        change_limit=float(change_limit),
        peak_cap=int(peak_cap),
        star_refit=float(star_refit),
    )
    if profile is not None:
        settings["noise_profile"] = profile.to_dict()
    mask = None if star_mask is None else np.asarray(star_mask, dtype=np.float32)
    return DenoiseResult(
        original=chw,
        prediction=prediction,
        model_mask=stitched[-1],
        layout=layout,
        settings=settings,
        star_mask=mask,
    )


def denoise(
    image: np.ndarray,
    *,
    model: str | os.PathLike | LoadedModel = "default",
    strength: float = 1.0,
    star_protection: float = 0.0,
    tile_size: int = 256,
    overlap: float = 0.25,
    blend: str = "gaussian",
    sigma_scale: float = 0.125,
    device: str = "auto",
    channel_axis: int | None = None,
    bayer: bool = False,
    batch_size: int | None = None,
    star_mask: np.ndarray | None = None,
    flux_lock: float = FLUX_LOCK,
    change_limit: float = CHANGE_LIMIT,
    peak_cap: int = PEAK_CAP,
    ensemble: int = 1,
    lock_threshold: float = LOCK_THRESHOLD,
    star_refit: float = STAR_REFIT,
) -> np.ndarray:
    """Denoise a linear astronomical image.

    Parameters
    ----------
    image : ndarray
        Linear data of any offset, scale and sign: mono (H, W), or colour / a stack with
        ``channel_axis`` naming the channel axis (FITS cubes are (3, H, W): ``channel_axis=0``).
        NaN and inf pixels are ignored, filled for the network and restored in the output.
    model : str, path-like or LoadedModel, optional
        ``"default"`` (the shipped model), a registry name, a model file, or a model already
        loaded with :func:`load_model` (reuse it across many images).
    strength : float, optional
        0..1; 1 is the network's full output, 0 the input unchanged.
    star_protection : float, optional
        0..1; how much of the input to keep under the soft star mask (star cores).
    tile_size : int, optional
        Tile edge in pixels, a multiple of 16, at least 32 (default 256).
    overlap : float, optional
        Overlap fraction between tiles, 0..0.75 (default 0.25).
    blend : {"gaussian", "none"}, optional
        Gaussian-weighted blending (default) or naive non-overlapping tiles (for comparison).
    sigma_scale : float, optional
        Gaussian blend sigma as a fraction of the tile size (default 0.125).
    device : str, optional
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"`` or ``"mps"``.
    channel_axis : int, optional
        Axis of the channels; None for a 2-D mono image.
    bayer : bool, optional
        The image is a raw one-shot-colour mosaic (H, W) (FITS ``BAYERPAT``): its four
        colour sub-planes are denoised separately and re-interleaved, so pixels behind
        different filters never mix. The output is the same mosaic, ready for debayering.
    batch_size : int, optional
        Tiles per network call; automatic by device when None, halved on out-of-memory.
    star_mask : ndarray, optional
        (H, W) soft mask in [0, 1] for ``star_protection``; measured with :func:`star_mask`
        defaults when None.
    flux_lock : float, optional
        Keep the input's flux and colour at scales beyond this many pixels (Gaussian sigma,
        default 8): the network's change loses its low spatial frequencies (:func:`lock_flux`),
        so the level, large-aperture photometry and the colour of extended emission are the
        input's. 0 turns it off, letting the model also remove large-scale patterns such as
        colour blotches (and shift levels and colours, if it errs). See ``lock_threshold``
        for how strictly the scales between this and 4 times this are held.
    change_limit : float, optional
        Keep every output pixel within this many noise sigmas of the input (default 3;
        :func:`limit_change`), with the noise level function fitted to the image's own
        residual: the model may remove noise but cannot make or erase a star or structure
        brighter than that in one pass. Hot pixels and cosmic rays are lowered by that
        much, not removed. 0 turns it off.
    peak_cap : int, optional
        No output pixel brighter than the brightest input pixel within this many pixels
        (default 1, a 3 x 3 neighbourhood; of each colour sub-plane for a Bayer mosaic;
        :func:`cap_peaks`): a star core cannot be sharpened above what was observed around
        it. 0 turns it off.
    ensemble : {1, 2, 4, 8}, optional
        Test-time self-ensemble: average the network over this many flips (2, 4) or flips
        and transposes (8) of every tile. 1 (default) is the fastest; 8 costs 8 times the
        network time for a cleaner result (see the README's figures).
    lock_threshold : float, optional
        Noise-aware flux lock (default 1; :func:`lock_flux`): at scales between
        ``flux_lock`` and 4 times it, away from stars and other signal, the change is
        held back only where it exceeds this many sigmas of the noise at that scale, so
        the noise removed from an empty sky does not come back as a faint mottle. Beyond
        4 times ``flux_lock``, and within twice it of any signal, the lock is strict. 0
        is the strict lock everywhere.
    star_refit : float, optional
        Star flux refit (default 0.04; :func:`refit_stars`): the compact structure of the
        prediction (stars, knots) is rescaled locally by the gain that best explains what
        the network removed from the input, under a prior of this width on the relative
        correction, so star cores keep the input's flux where the data support it and
        nothing is made where the prediction has no source. 0 turns it off.

    Returns
    -------
    ndarray
        float32, the input's shape; values in the input's own units, never clipped or rescaled.
    """
    result = tiling.drain(
        iter_denoise(
            image,
            model=model,
            strength=strength,
            star_protection=star_protection,
            tile_size=tile_size,
            overlap=overlap,
            blend=blend,
            sigma_scale=sigma_scale,
            device=device,
            channel_axis=channel_axis,
            bayer=bayer,
            batch_size=batch_size,
            star_mask=star_mask,
            flux_lock=flux_lock,
            change_limit=change_limit,
            peak_cap=peak_cap,
            ensemble=ensemble,
            lock_threshold=lock_threshold,
            star_refit=star_refit,
        )
    )
    return result.output()


def iter_seam_map(
    image: np.ndarray,
    *,
    model: str | os.PathLike | LoadedModel = "default",
    tile_size: int = 256,
    overlap: float = 0.25,
    blend: str = "gaussian",
    sigma_scale: float = 0.125,
    device: str = "auto",
    channel_axis: int | None = None,
    bayer: bool = False,
    batch_size: int | None = None,
    reference: str = "shifted",
) -> Generator[tuple[int, int], None, SeamReport]:
    """Tile-seam difference map of a denoising run and its visibility in noise sigmas.

    The image is denoised on the requested tile grid and on a reference (the same grid
    shifted by half a stride, or whole-image inference with ``reference="whole"``); the
    difference shows exactly what the tiling adds. See
    :func:`napari_astrodenoise.core.diagnostics.seam_map` for the metric.

    Yields ``(steps_done, steps_total)`` (a step is one batch of tiles of either run) and
    returns the report; :func:`seam_map` runs it to the end.

    Returns
    -------
    SeamReport
        ``.diff`` in the image's units and the caller's layout (the input's shape),
        ``.seam_sigma`` one number.
    """
    from napari_astrodenoise.core import diagnostics

    layout, chw, network_in, _bad, predictor, _settings = _prepare(
        image,
        channel_axis,
        bayer,
        model,
        device,
        tile_size,
        overlap,
        blend,
        sigma_scale,
        batch_size,
    )
    channels = chw.shape[0]

    def change_only(tiles: np.ndarray) -> np.ndarray:
        # the image term cancels in the difference of two tilings, so the change suffices
        return predictor(tiles)[:, :channels]

    report = yield from diagnostics.iter_seam_map(
        network_in,
        change_only,
        tile_size=tile_size,
        overlap=overlap,
        blend=blend,
        sigma_scale=sigma_scale,
        batch_size=predictor.batch_size,
        reference=reference,
        # the input's own noise: network_in has the noise map as one more channel
        noise_sigma=noise_sigma(chw) if predictor.noise_channel else None,
    )
    return dataclasses.replace(report, diff=layout.from_planes(report.diff))


def seam_map(image: np.ndarray, **options: Any) -> SeamReport:
    """Run :func:`iter_seam_map` to the end; same arguments, returns its SeamReport."""
    return tiling.drain(iter_seam_map(image, **options))
