"""Whether a fine-tuned model needs the flux lock, measured on its own frames.

The flux lock (:func:`~napari_astrodenoise.core.fluxlock.lock_flux`) hands the input's own
large scales back near signal, because a network can move a star's or a nebula's flux. A
model fine-tuned on the camera's own exposures learnt the mean of another exposure and may
keep flux by itself; near signal the lock then hands back noise alone. Which is the case is
measured after training, on frame 1 denoised whole with the default lock and without it:

- **The faint sky, on the held-out rows** (training never saw them). Both outputs are
  compared with the mean of the other frames, registered and at frame 1's level, its smooth
  background (Gaussian sigma ``BACKGROUND_SIGMA`` px) matched to frame 1's, since the sky
  changes between exposures. The target's own noise is the same for both outputs, so the
  difference of the two mean squared errors (in noise units, away from stars and defects)
  estimates the difference against the true sky; its standard error comes from 32 x 32
  blocks. Without that background match the sky's change between exposures decides.
- **Star flux, on all of frame 1's stars.** Aperture photometry on the planes' sum, of radius
  the lock's scale, the local sky from a ring beyond: the median change of the stars' flux
  when the lock is off, relative to their flux in frame 1, and its standard error. The two
  outputs see the same noise, so the change is measured far more precisely than either
  flux.

The model runs without the lock (``"options": {"flux_lock": 0}`` in its JSON, which the
engine uses unless the caller sets the option) only when the held-out faint sky is closer to
the other frames without it **and** the stars' flux changes by less than ``FLUX_TOLERANCE``
with two standard errors' margin, on at least ``MIN_STARS`` stars. Otherwise it runs with the
default lock. Either way the model's JSON records what was measured.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
from scipy import ndimage

from napari_astrodenoise.core.noiselevel import noise_sigma
from napari_astrodenoise.core.options import option
from napari_astrodenoise.core.starmask import star_mask
from napari_astrodenoise.finetune.frames import split_planes

#: Gaussian sigma (px of the planes) of the background matched between frame 1 and the target
BACKGROUND_SIGMA = 64.0
#: a pixel further than this many noise sigmas from its 3 x 3 median is a defect
DEFECT_SIGMA = 6.0
#: px by which star footprints grow before the faint sky is taken
STAR_GROW = 4
#: side of the blocks of the faint sky's standard error, px of the planes
BLOCK = 32
#: without the lock, the stars' median flux may change by at most this fraction, two
#: standard errors included
FLUX_TOLERANCE = 0.01
#: fewer measurable stars than this: no evidence on flux, the lock stays
MIN_STARS = 10
#: the photometry's sky ring: from this many px beyond the aperture, this many px wide
RING_GAP, RING_WIDTH = 3, 3


def checked_model(loaded: Any, module: Any, name: str) -> Any:
    """The base ``LoadedModel`` with the trained ``module`` in it, ready to denoise."""
    module.eval()
    return dataclasses.replace(loaded, module=module, name=name)


def check_flux_lock(
    model: Any, frames: list, registration: Any, targets: list[np.ndarray], split: int
) -> dict:
    """Measure frame 1 with the default flux lock and without it (see the module).

    Parameters
    ----------
    model : LoadedModel
        The fine-tuned model.
    frames : list of SubExposure
        The sub-exposures; the first is denoised.
    registration : Registration
        Their registration (crop boxes, mosaic cell).
    targets : list of ndarray
        (P, h, w) planes of the other frames, registered and at frame 1's level.
    split : int
        First held-out row of the planes.

    Returns
    -------
    dict
        The record, JSON-ready: ``flux_lock`` (the value the model runs with) and what
        was measured.
    """
    from napari_astrodenoise.core.pipeline import denoise

    lock = float(option("flux_lock").default)
    bayer = registration.cell == 2
    raw = np.asarray(registration.crop(0, frames[0].data), dtype=np.float32)
    source = split_planes(raw, bayer=bayer)
    # the lock set both ways: a base model's own options must not decide either run
    with_lock = split_planes(denoise(raw, model=model, bayer=bayer, flux_lock=lock), bayer=bayer)
    without = split_planes(denoise(raw, model=model, bayer=bayer, flux_lock=0.0), bayer=bayer)

    sky = held_out_sky(with_lock, without, source, np.mean(np.stack(targets), axis=0), split)
    flux = flux_change(with_lock, without, source, radius=lock / registration.cell)
    sky_says_off = sky["error"] is not None and sky["difference"] > 0
    flux_kept = (
        flux["stars"] >= MIN_STARS and abs(flux["median"]) + 2 * flux["error"] <= FLUX_TOLERANCE
    )
    return {
        "flux_lock": 0.0 if sky_says_off and flux_kept else lock,
        "tested_px": lock,
        "held_out_faint_sky": sky,
        "star_flux_change_without_lock": flux,
        "rule": (
            "off when the held-out faint sky is closer to the other frames without the lock "
            f"and the stars' median flux change without it, plus two standard errors, is at "
            f"most {FLUX_TOLERANCE:.0%} (at least {MIN_STARS} stars)"
        ),
    }


def verdict(check: dict) -> str:
    """One line on what :func:`check_flux_lock` measured and chose."""
    sky, flux = check["held_out_faint_sky"], check["star_flux_change_without_lock"]
    state = "off" if check["flux_lock"] == 0 else f"{check['flux_lock']:g} px"
    return (
        f"{state} for this model (on the held-out faint sky the lock costs "
        f"{sky['difference']:+.4f} noise variances; without it the stars' flux changes by "
        f"{flux['median']:+.2%}, {flux['stars']} stars)"
    )


def held_out_sky(
    with_lock: np.ndarray,
    without: np.ndarray,
    source: np.ndarray,
    target: np.ndarray,
    split: int,
) -> dict:
    """Squared errors in noise units against ``target`` on the held-out faint sky.

    ``difference`` is the error with the lock minus the error without it (> 0: the lock
    costs), ``error`` its standard error from ``BLOCK`` px blocks.
    """
    sigma = noise_sigma(source).reshape(-1, 1, 1)
    where = _faint_sky(source, target, sigma)
    target = target + background_offset(source - target, where)
    where[:, :split] = False
    loss_on = np.square((with_lock - target) / sigma)
    loss_off = np.square((without - target) / sigma)
    difference, error = _mean_and_error(np.where(where, loss_on - loss_off, np.nan))
    return {
        "pixels": int(where.sum()),
        "with_lock": round(float(loss_on[where].mean()), 6) if where.any() else None,
        "without_lock": round(float(loss_off[where].mean()), 6) if where.any() else None,
        "difference": round(difference, 6),
        "error": round(error, 6) if np.isfinite(error) else None,
    }


def flux_change(
    with_lock: np.ndarray, without: np.ndarray, source: np.ndarray, *, radius: float
) -> dict:
    """Median relative change of the stars' flux with the lock off, and its standard error.

    Aperture sums of radius ``radius`` px on the planes' sum, less the median of a ring
    beyond, for every star of ``source`` whose ring lies inside the frame and whose flux is
    positive; the change is ``(off - on) / source``.
    """
    lum = np.nan_to_num(source.sum(axis=0))
    labels, n = ndimage.label(star_mask(lum) > 0)
    centres = ndimage.center_of_mass(lum.clip(min=0), labels, np.arange(1, n + 1)) if n else []
    outer = int(np.ceil(radius)) + RING_GAP + RING_WIDTH
    yy, xx = np.mgrid[-outer : outer + 1, -outer : outer + 1]
    r = np.hypot(yy, xx)
    aperture, ring = r <= radius, (r > outer - RING_WIDTH) & (r <= outer)
    images = (lum, *(np.nan_to_num(o.sum(axis=0)) for o in (with_lock, without)))
    h, w = lum.shape
    fluxes = []
    for cy, cx in centres:
        y, x = round(cy), round(cx)
        if outer <= y < h - outer and outer <= x < w - outer:
            cuts = [im[y - outer : y + outer + 1, x - outer : x + outer + 1] for im in images]
            fluxes.append([float((c[aperture] - np.median(c[ring])).sum()) for c in cuts])
    f = np.asarray(fluxes, dtype=np.float64).reshape(-1, 3)
    f = f[f[:, 0] > 0]
    if len(f) < 2:
        return {"stars": len(f), "median": 0.0, "error": 1.0, "radius_px": radius}
    change = (f[:, 2] - f[:, 1]) / f[:, 0]
    # the standard error of a median: sqrt(pi / 2) times the mean's for a normal spread,
    # the spread measured robustly (faint stars' relative changes have long tails)
    spread = 1.4826 * float(np.median(np.abs(change - np.median(change))))
    error = float(1.2533 * spread / np.sqrt(len(change)))
    return {
        "stars": len(f),
        "median": round(float(np.median(change)), 5),
        "error": round(error, 5),
        "radius_px": radius,
    }


def _faint_sky(source: np.ndarray, target: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """(P, h, w) bool: away from the stars of both and from defects in either."""
    bad = np.zeros(source.shape, bool)
    for planes in (source, target):
        med = ndimage.median_filter(planes, size=(1, 3, 3), mode="nearest")
        bad |= ~(np.abs(planes - med) <= DEFECT_SIGMA * sigma)
    bad = ndimage.binary_dilation(bad, structure=np.ones((1, 3, 3), bool))
    stars = star_mask(np.nan_to_num(source.sum(axis=0) + target.sum(axis=0))) > 0
    stars = ndimage.binary_dilation(stars, iterations=STAR_GROW)
    return ~bad & ~stars[np.newaxis]


def background_offset(diff: np.ndarray, where: np.ndarray) -> np.ndarray:
    """(P, h, w) smooth part of ``diff`` (frame 1 minus a target) from ``where`` alone.

    A normalised Gaussian convolution of sigma ``BACKGROUND_SIGMA``: the sky's change between
    exposures (gradient, transparency), which the target takes on so that it describes frame
    1's sky. White noise averages away at that scale. Float32 for float32 ``diff``, else
    float64.
    """
    out = np.empty(diff.shape, np.result_type(diff.dtype, np.float32))
    for p, (d, w) in enumerate(zip(diff, where, strict=True)):
        num = ndimage.gaussian_filter(np.where(w, d, 0.0), BACKGROUND_SIGMA, mode="nearest")
        den = ndimage.gaussian_filter(w.astype(np.float64), BACKGROUND_SIGMA, mode="nearest")
        out[p] = num / np.maximum(den, 1e-6)
    return out


def _mean_and_error(values: np.ndarray) -> tuple[float, float]:
    """Mean of the finite values and its standard error from ``BLOCK`` px block means."""
    if not np.isfinite(values).any():
        return 0.0, float("inf")
    p, h, w = values.shape
    hb, wb = max(h // BLOCK, 1), max(w // BLOCK, 1)
    cut = values[:, : hb * (h // hb), : wb * (w // wb)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # blocks with no faint sky
        blocks = np.nanmean(cut.reshape(p, hb, h // hb, wb, w // wb), axis=(2, 4)).ravel()
    blocks = blocks[np.isfinite(blocks)]
    error = float(blocks.std(ddof=1) / np.sqrt(len(blocks))) if len(blocks) > 1 else float("inf")
    return float(np.nanmean(values)), error
