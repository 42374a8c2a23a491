"""The safeguards on a network's change, in order: flux lock, change limit, star refit, peak cap.

:func:`guard_change` runs them all; the flux lock (:mod:`.fluxlock`) and the star refit
(:mod:`.starrefit`) have modules of their own. Each keeps the network honest in one way:

- the flux lock takes the change's low spatial frequencies out, so the network may remove
  noise and reshape detail but cannot move the image's level, nor the flux and colour of
  anything larger than the lock scale;
- the change limit (:func:`limit_change`) keeps every pixel within a few noise sigmas of the
  input, with the noise level function fitted to the image's own residual;
- the star refit gives star cores back the flux the residual supports, and never makes a
  star where the prediction has none;
- the peak cap (:func:`cap_peaks`) keeps every output pixel at or below the brightest input
  pixel around it, so a star core cannot be sharpened above anything observed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_astrodenoise.core.fluxlock import lock_flux, lock_reach
from napari_astrodenoise.core.noiselevel import (
    NoiseProfile,
    fit_noise_profile,
    fit_noise_profile_of_change,
)
from napari_astrodenoise.core.options import SAFEGUARDS, option, resolve
from napari_astrodenoise.core.starrefit import REFIT_WINDOW, refit_reach, refit_stars
from napari_astrodenoise.core.strips import (
    for_each_strip,
    row_strips,
    square_max,
    strip_rows,
    with_halo,
)


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
    levels (times the profile's tail ratio at ``limit``: real noise with wider tails than a
    Gaussian's gets its own quantile at the Gaussian share, see
    :meth:`~napari_astrodenoise.core.noiselevel.NoiseProfile.tail_ratio`), the change is cut
    back to that bound; every other pixel is left bit for bit.
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
    option("change_limit").check(limit)
    if limit == 0:
        return None
    if profile is None:
        profile = fit_noise_profile(original, denoised)
    for c, (plane_out, plane_inp) in enumerate(zip(denoised, original, strict=True)):
        scaled = np.float32(limit * profile.tail_ratio(c, limit))

        def strip(rows: slice, plane_out=plane_out, plane_inp=plane_inp, c=c, scaled=scaled):
            out, inp = plane_out[rows], plane_inp[rows]
            # the sigma of the fainter of the two levels: a star made up out of sky, or a
            # real star erased, is held to the noise of the sky, not to that of the star
            bound = profile.sigma(c, np.fmin(out, inp))
            bound *= scaled
            with np.errstate(invalid="ignore"):
                change = out - inp
                over = np.abs(change) > bound
            out[over] = inp[over] + np.copysign(bound[over], change[over])

        for_each_strip(plane_out.shape[0], strip_rows(plane_out.shape[1]), strip)
    return profile


@dataclass(frozen=True)
class GuardStats:
    """Whole-frame statistics of :func:`guard_change`, measured beforehand.

    An out-of-core run (:mod:`.outofcore`) measures them once over the whole frame and
    shares them with every row block, so that a block's safeguards are those of the whole
    frame. Each is fitted by :func:`guard_change` itself where it is None.

    Attributes
    ----------
    free : NoiseProfile or None
        ``fit_noise_profile_of_change(original, change)``: the noise-aware lock's profile
        (and the change limit's and the refit's with it).
    locked : NoiseProfile or None
        ``fit_noise_profile(original, locked prediction)``: the profile where the lock is
        strict (or the change limit off).
    brightest : tuple of float or None
        Per plane, the brightest pixel of the prediction after the lock and the change
        limit (:func:`refit_stars`' noise floor is a fraction of the sigma there).
    """

    free: NoiseProfile | None = None
    locked: NoiseProfile | None = None
    brightest: tuple[float, ...] | None = None


def guard_needs(**options: float) -> tuple[str, ...]:
    """Which :class:`GuardStats` fields :func:`guard_change` uses with these options, in order.

    ``"free"`` is measured on the network's change, ``"locked"`` on the prediction after
    the lock (``guard_change(..., until="locked")``), ``"brightest"`` after the change
    limit (``until="limited"``), each with the ones before it known.
    """
    o = resolve(options, SAFEGUARDS, caller="guard_needs")
    soft = o["flux_lock"] > 0 and o["lock_threshold"] > 0
    limit, refit = o["change_limit"] > 0, o["star_refit"] > 0
    needs = []
    if soft:
        needs.append("free")
    if (limit and not soft) or (not limit and refit):
        needs.append("locked")
    if refit:
        needs.append("brightest")
    return tuple(needs)


def guard_profile(stats: GuardStats, **options: float) -> NoiseProfile | None:
    """The profile :func:`guard_change` returns, given its whole-frame statistics."""
    o = resolve(options, SAFEGUARDS, caller="guard_profile")
    if o["change_limit"] > 0:
        return stats.free if o["flux_lock"] > 0 and o["lock_threshold"] > 0 else stats.locked
    return stats.locked if o["star_refit"] > 0 else None


def guard_change(
    change: np.ndarray,
    original: np.ndarray,
    *,
    bad: np.ndarray | None = None,
    refit_window: float = REFIT_WINDOW,
    stats: GuardStats | None = None,
    until: str | None = None,
    **options: float,
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
    safeguard call it on a network's free change (all of them off in ``denoise``).

    Parameters
    ----------
    change : ndarray
        (C, H, W) float32 prediction minus input, in the input's units; modified.
    original : ndarray
        (C, H, W) input planes.
    bad : ndarray, optional
        ``~np.isfinite(original)``, when the caller has it.
    refit_window : float, optional
        :func:`refit_stars`'s window in pixels of these planes.
    stats : GuardStats, optional
        Whole-frame statistics measured beforehand (a row block of a larger frame);
        those that are None are fitted here.
    until : {None, "locked", "limited"}, optional
        Stop after the lock (the prediction the ``locked`` profile is fitted to) or after
        the change limit (the prediction ``brightest`` is measured on).
    **options
        The :data:`~napari_astrodenoise.core.options.SAFEGUARDS` (``flux_lock``,
        ``lock_threshold``, ``change_limit``, ``peak_cap``, ``star_refit``), as for
        :func:`denoise` but in pixels of these planes; their defaults where not given.

    Returns
    -------
    (ndarray, NoiseProfile or None)
        The guarded prediction (``change``'s memory) and the change limit's fitted profile.
    """
    o = resolve(options, SAFEGUARDS, caller="guard_change")
    stats = GuardStats() if stats is None else stats
    flux_lock, lock_threshold = o["flux_lock"], o["lock_threshold"]
    change_limit, peak_cap, star_refit = o["change_limit"], o["peak_cap"], o["star_refit"]
    any_bad = _zero_change_at_bad(change, original, bad)
    profile = None
    if flux_lock > 0 and lock_threshold > 0:
        # fitted once, to the free prediction (bad pixels stay non-finite and are ignored)
        profile = stats.free or fit_noise_profile_of_change(original, change)
    lock_flux(change, flux_lock, threshold=lock_threshold, original=original, profile=profile)
    prediction = _add_input(change, original, bad, any_bad=any_bad)
    if until == "locked":
        return prediction, profile
    if profile is None and change_limit > 0:
        profile = stats.locked or _fit_locked(original, prediction)
    profile = limit_change(prediction, original, change_limit, profile)
    if until == "limited":
        return prediction, profile
    if star_refit > 0:
        if profile is None:
            profile = stats.locked or _fit_locked(original, prediction)
        refit_stars(
            prediction,
            original,
            star_refit,
            profile,
            window=refit_window,
            brightest=stats.brightest,
        )
        limit_change(prediction, original, change_limit, profile)
    cap_peaks(prediction, original, peak_cap)
    return prediction, profile


def _fit_locked(original: np.ndarray, prediction: np.ndarray) -> NoiseProfile:
    with np.errstate(invalid="ignore"):
        return fit_noise_profile(original, prediction)


def guard_reach(*, refit_window: float = REFIT_WINDOW, **options: float) -> int:
    """Rows each side a pixel of :func:`guard_change`'s result depends on, given the stats.

    With its whole-frame statistics given (:class:`GuardStats`), a pixel of the result
    depends on the change and the input within this many rows: the flux lock's reach
    (:func:`~napari_astrodenoise.core.fluxlock.lock_reach`), then the star refit's
    footprint, then the peak cap's window, added up (each stage reads the one before).
    A row block read with this halo each side gives the whole frame's result, bit for bit
    (the lock's blocks must start where the frame's do: see ``lock_reach``).
    """
    o = resolve(options, SAFEGUARDS, caller="guard_reach")
    reach = lock_reach(o["flux_lock"], o["lock_threshold"])
    if o["star_refit"] > 0:
        reach += refit_reach(refit_window)
    return reach + int(o["peak_cap"])


def _zero_change_at_bad(change: np.ndarray, original: np.ndarray, bad: np.ndarray | None) -> bool:
    """Set the change to 0 where ``original`` is not finite, strip by strip; say if any is."""
    any_bad = False
    for rows in row_strips(original.shape[1], strip_rows(original.shape[2])):
        here = ~np.isfinite(original[:, rows]) if bad is None else bad[:, rows]
        if here.any():
            change[:, rows][here] = 0.0
            any_bad = True
    return any_bad


def _add_input(
    change: np.ndarray, original: np.ndarray, bad: np.ndarray | None, *, any_bad: bool
) -> np.ndarray:
    """``change + original`` in ``change``'s memory, ``original`` itself at bad pixels."""
    for rows in row_strips(original.shape[1], strip_rows(original.shape[2])):
        part, inp = change[:, rows], original[:, rows]
        np.add(part, inp, out=part)
        if any_bad:
            here = ~np.isfinite(inp) if bad is None else bad[:, rows]
            part[here] = inp[here]
    return change


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
    option("peak_cap").check(radius)
    if radius == 0:
        return
    for plane_out, plane_inp in zip(denoised, original, strict=True):
        height = plane_out.shape[0]

        # strips read with ``radius`` rows each side of the input (never written) give
        # exactly the whole plane's maxima
        def strip(rows: slice, plane_out=plane_out, plane_inp=plane_inp, height=height):
            read, own = with_halo(rows, radius, height)
            inp, out = plane_inp[read], plane_out[rows]
            finite = np.isfinite(inp)
            source = inp if finite.all() else np.where(finite, inp, -np.inf)
            top = square_max(np.asarray(source, dtype=np.float32), radius)[own]
            # non-finite output pixels (a NaN or inf restored from the input) stay as they
            # are, and so does a pixel with no finite input around it
            np.minimum(out, top, out=out, where=np.isfinite(out) & np.isfinite(top))

        for_each_strip(height, strip_rows(plane_out.shape[1], radius), strip)
