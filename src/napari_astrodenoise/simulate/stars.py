"""Point sources of a simulated scene: the seeing (PSF), star draws, stamps and the catalogue.

Stars are rendered in small stamps around each object, batched by stamp size and added with
one ``np.bincount`` per channel (see `napari_astrodenoise.simulate.sky` for why).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from napari_astrodenoise.simulate._random import log_uniform as _log_uniform

if TYPE_CHECKING:
    from napari_astrodenoise.simulate.sky import SkyConfig

_STAMP_RADII = (3, 4, 6, 8, 11, 16, 23, 32, 48)
_STAMP_FLOOR_ADU = 0.5  # stamps reach out until the profile falls below this
_SUPERSAMPLE = 3
_SUPERSAMPLE_BELOW_FWHM = 2.5
_STAR_MARGIN = 4.0  # stars are placed up to this far off the frame, so edges look natural


def _power_law(rng: np.random.Generator, lo: float, hi: float, slope: float, n: int):
    """``n`` draws from ``dN/dF ~ F**-slope`` on ``[lo, hi]`` (inverse CDF)."""
    u = rng.uniform(size=n)
    if lo == hi:
        return np.full(n, lo)
    if abs(slope - 1.0) < 1e-9:
        return lo * (hi / lo) ** u
    e = 1.0 - slope
    return (lo**e + u * (hi**e - lo**e)) ** (1.0 / e)


def _draw_psf(rng: np.random.Generator, config: SkyConfig) -> dict:
    """The scene's seeing: FWHM, ellipticity, angle and Moffat beta (None: Gaussian)."""
    psf = {
        "fwhm": float(_log_uniform(rng, *config.fwhm_range)),
        "ellipticity": float(rng.uniform(0.0, config.ellipticity_max)),
        "theta": float(rng.uniform(0.0, np.pi)),
    }
    beta = float(rng.uniform(*config.moffat_beta_range))
    psf["beta"] = beta if rng.uniform() < config.p_moffat else None
    return psf


def _psf_values(
    dx: np.ndarray,
    dy: np.ndarray,
    fwhm: np.ndarray,
    ellipticity: np.ndarray,
    theta: np.ndarray,
    beta: float | None,
) -> np.ndarray:
    """Unnormalised elliptical Moffat (``beta``) or Gaussian (``beta=None``) values.

    ``dx``, ``dy`` are ``(n, ...)`` offsets from each star's centre; the per-star parameters
    are ``(n,)`` and broadcast over the trailing axes.
    """
    extra = (1,) * (dx.ndim - 1)

    def per_star(values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=dx.dtype).reshape(-1, *extra)

    fwhm = per_star(fwhm)
    c = per_star(np.cos(theta))
    s = per_star(np.sin(theta))
    b = per_star(1.0 - ellipticity)
    u = dx * c + dy * s
    v = (-dx * s + dy * c) / b
    r2 = u * u + v * v
    if beta is None:
        sigma2 = (fwhm / np.float32(2.0 * math.sqrt(2.0 * math.log(2.0)))) ** 2
        return np.exp(np.float32(-0.5) * r2 / sigma2)
    alpha2 = (fwhm / np.float32(2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))) ** 2
    return (1.0 + r2 / alpha2) ** np.float32(-beta)


def _stamp_radius(flux: np.ndarray, fwhm: np.ndarray, beta: float | None) -> np.ndarray:
    """Stamp half-width per object: where its profile falls below `_STAMP_FLOOR_ADU`."""
    if beta is None:
        sigma = fwhm / 2.3548
        peak = flux / (2 * math.pi * sigma**2)
        reach = sigma * np.sqrt(2.0 * np.log(np.maximum(peak / _STAMP_FLOOR_ADU, 1.0)))
    else:
        alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
        peak = flux * (beta - 1.0) / (math.pi * alpha**2)
        ratio = np.maximum(peak / _STAMP_FLOOR_ADU, 1.0)
        reach = alpha * np.sqrt(np.maximum(ratio ** (1.0 / beta) - 1.0, 0.0))
    reach = np.maximum(reach, 1.5 * fwhm + 1.0)
    radii = np.asarray(_STAMP_RADII)
    idx = np.searchsorted(radii, np.ceil(reach))
    return radii[np.minimum(idx, radii.size - 1)]


def _render_points(
    shape: tuple[int, int],
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    fwhm: np.ndarray,
    ellipticity: np.ndarray,
    theta: np.ndarray,
    beta: float | None,
) -> np.ndarray:
    """Sum of PSF stamps, ``(C, H, W)`` float64; each stamp sums to its star's ``flux``.

    Stars are grouped by stamp radius; each group is evaluated at once on a supersampled
    grid, normalised to unit sum per star and scattered into a padded frame by
    ``np.bincount``. Flux falling off the frame is lost, as on a sensor.
    """
    h, w = shape
    n_ch = flux.shape[1]
    # stars lie at most _STAR_MARGIN px off the frame, so every stamp fits in the padding
    pad = max(_STAMP_RADII) + math.ceil(_STAR_MARGIN) + 1
    hp, wp = h + 2 * pad, w + 2 * pad
    out = np.zeros((n_ch, hp * wp))
    radius = _stamp_radius(flux.mean(axis=1), fwhm, beta)
    # undersampled stars are integrated over the pixel on a k x k grid; wider ones sampled
    factor = np.where(fwhm < _SUPERSAMPLE_BELOW_FWHM, _SUPERSAMPLE, 1)
    ix = np.rint(x).astype(np.int64)
    iy = np.rint(y).astype(np.int64)
    for r, k in sorted({(int(a), int(b)) for a, b in zip(radius, factor, strict=True)}):
        sel = np.flatnonzero((radius == r) & (factor == k))
        d = np.arange(-r, r + 1)
        sub = (np.arange(k) + 0.5) / k - 0.5
        fine = (d[:, None] + sub[None, :]).reshape(-1)
        # offsets of the (super)sampled points from each star's centre, (n, S*k, S*k)
        grid_y = (fine[None, :, None] - (y[sel] - iy[sel])[:, None, None]).astype(np.float32)
        grid_x = (fine[None, None, :] - (x[sel] - ix[sel])[:, None, None]).astype(np.float32)
        vals = _psf_values(grid_x, grid_y, fwhm[sel], ellipticity[sel], theta[sel], beta)
        size = d.size
        if k > 1:
            vals = vals.reshape(sel.size, size, k, size, k).sum(axis=(2, 4))
        vals /= vals.sum(axis=(1, 2), keepdims=True)
        rows = iy[sel][:, None, None] + d[None, :, None] + pad
        cols = ix[sel][:, None, None] + d[None, None, :] + pad
        index = (rows * wp + cols).reshape(-1)
        for c in range(n_ch):
            weights = (vals * flux[sel, c][:, None, None]).reshape(-1)
            out[c] += np.bincount(index, weights=weights, minlength=hp * wp)
    return out.reshape(n_ch, hp, wp)[:, pad : pad + h, pad : pad + w]


def _draw_stars(
    rng: np.random.Generator,
    shape: tuple[int, int],
    config: SkyConfig,
    psf: dict,
    transmission: np.ndarray | None,
) -> tuple[np.ndarray, dict]:
    """Positions, fluxes, shapes and colours of field and cluster stars."""
    h, w = shape
    info: dict = {"cluster": False}
    if not config.stars:
        info["n_stars"] = 0
        return {}, info
    n_field = rng.poisson(float(_log_uniform(rng, *config.star_density_range)) * h * w)
    margin = _STAR_MARGIN
    x = rng.uniform(-margin, w - 1 + margin, n_field)
    y = rng.uniform(-margin, h - 1 + margin, n_field)
    if rng.uniform() < config.p_cluster:
        n_cl = round(max(n_field, 10) * float(_log_uniform(rng, *config.cluster_richness_range)))
        core = float(rng.uniform(*config.cluster_core_range)) * min(h, w)
        cx = rng.uniform(0.2, 0.8) * (w - 1)
        cy = rng.uniform(0.2, 0.8) * (h - 1)
        # projected Plummer profile: the share within R is R**2 / (R**2 + core**2)
        u = rng.uniform(0.0, 0.999, n_cl)
        r = np.minimum(core * np.sqrt(u / (1.0 - u)), 2.0 * max(h, w))
        phi = rng.uniform(0, 2 * np.pi, n_cl)
        x = np.concatenate([x, cx + r * np.cos(phi)])
        y = np.concatenate([y, cy + r * np.sin(phi)])
        info.update(cluster=True, cluster_x=cx, cluster_y=cy, cluster_core=core, n_cluster=n_cl)
        keep = (x > -margin) & (x < w - 1 + margin) & (y > -margin) & (y < h - 1 + margin)
        x, y = x[keep], y[keep]
    if transmission is not None and x.size:
        # stars behind dust: drop each with probability 1 - transmission at its position
        t = transmission[
            np.clip(np.rint(y).astype(int), 0, h - 1), np.clip(np.rint(x).astype(int), 0, w - 1)
        ]
        keep = rng.uniform(size=x.size) < t
        x, y = x[keep], y[keep]
    n = x.size
    total = _power_law(rng, *config.flux_range, config.flux_slope, n)
    lo_t, hi_t = config.temperature_range
    # skewed to cool stars: u**2 puts the median near lo * (hi / lo) ** 0.25
    temperature = lo_t * (hi_t / lo_t) ** (rng.uniform(size=n) ** 2)
    fwhm = psf["fwhm"] * np.clip(1.0 + config.fwhm_scatter * rng.standard_normal(n), 0.7, 1.5)
    ellipticity = np.clip(psf["ellipticity"] + 0.03 * rng.standard_normal(n), 0.0, 0.6)
    theta = psf["theta"] + 0.1 * rng.standard_normal(n)
    stars = {
        "x": x,
        "y": y,
        "total": total,
        "fwhm": fwhm,
        "ellipticity": ellipticity,
        "theta": theta,
        "temperature": temperature,
    }
    info["n_stars"] = n
    return stars, info


def _star_table(stars: dict, flux: np.ndarray, saturated: np.ndarray) -> np.ndarray:
    n_ch = flux.shape[1]
    dtype = [
        ("x", "f8"),
        ("y", "f8"),
        ("flux", "f8", (n_ch,)),
        ("fwhm", "f8"),
        ("ellipticity", "f8"),
        ("theta", "f8"),
        ("temperature", "f8"),
        ("saturated", "?"),
    ]
    table = np.zeros(flux.shape[0], dtype=dtype)
    if flux.shape[0]:
        for name in ("x", "y", "fwhm", "ellipticity", "theta", "temperature"):
            table[name] = stars[name]
        table["flux"] = flux
        table["saturated"] = saturated
    return table
