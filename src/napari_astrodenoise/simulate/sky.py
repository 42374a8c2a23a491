"""Simulated clean linear sky scenes (stars, nebulae, dust, galaxies, gradients) with catalogues.

Used for training pairs, napari sample data and tests. A scene is a ``(C, H, W)`` float32
linear image in ADU-like units (sky of hundreds to thousands, saturation 60000), noise-free;
add noise with `napari_astrodenoise.simulate.noise`. Pixel ``(row, col)`` has its centre at
``(y, x) = (row, col)``, the numpy/photutils convention. Randomness comes only from ``seed``.

Stars and galaxies are rendered in small stamps around each object, batched by stamp size
and added with one ``np.bincount`` per channel, so that a 256x256 colour scene takes a few
milliseconds and a 2048x2048 one well under a second. Written here rather than with
photutils' model rendering because that draws one full frame per source, far too slow for
on-the-fly training data, and because core keeps to numpy/scipy/astropy.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
from scipy import fft, ndimage

from napari_astrodenoise.simulate._random import log_uniform as _log_uniform

__all__ = ["SkyConfig", "SkyScene", "blackbody_rgb", "simulate_scene"]

#: Effective wavelengths (micrometres) of the R, G, B channels used for star colours.
RGB_WAVELENGTHS_UM = (0.61, 0.53, 0.46)
#: White point: a G2V star (the Sun) is rendered grey, as after colour calibration.
WHITE_POINT_K = 5800.0
_HC_OVER_K_UM_K = 14387.77  # h c / k_B in micrometre kelvin

#: Emission colours (R, G, B) of nebular components, relative.
NEBULA_COLOURS = {
    "h_alpha": (1.0, 0.14, 0.18),  # H-alpha + [SII] red, a little H-beta blue
    "oiii": (0.08, 0.85, 0.80),  # [OIII] teal
    "reflection": (0.35, 0.55, 1.0),  # starlight scattered by dust, blue
    "ifn": (0.85, 0.75, 0.62),  # broadband dust glow, brownish grey
}
#: Relative optical depth of dust in R, G, B (reddening: blue is absorbed most).
DUST_REDDENING = (0.8, 1.0, 1.3)

_STAMP_RADII = (3, 4, 6, 8, 11, 16, 23, 32, 48)
_STAMP_FLOOR_ADU = 0.5  # stamps reach out until the profile falls below this
_SUPERSAMPLE = 3
_SUPERSAMPLE_BELOW_FWHM = 2.5
_STAR_MARGIN = 4.0  # stars are placed up to this far off the frame, so edges look natural


def blackbody_rgb(temperature: float | np.ndarray) -> np.ndarray:
    """RGB flux ratios of a blackbody, white-balanced to a 5800 K star and with mean 1.

    Parameters
    ----------
    temperature : float or ndarray
        Temperature(s) in kelvin, > 0.

    Returns
    -------
    ndarray
        ``(..., 3)`` ratios R, G, B; each row has mean 1. A 3000 K star comes out about
        (1.6, 0.9, 0.5) and a 30000 K star about (0.6, 0.9, 1.5).
    """
    t = np.asarray(temperature, dtype=np.float64)[..., None]
    if np.any(~np.isfinite(t) | (t <= 0)):
        msg = "temperature must be finite and > 0 kelvin"
        raise ValueError(msg)
    lam = np.asarray(RGB_WAVELENGTHS_UM)
    planck = lam**-5 / np.expm1(_HC_OVER_K_UM_K / (lam * t))
    white = lam**-5 / np.expm1(_HC_OVER_K_UM_K / (lam * WHITE_POINT_K))
    ratio = planck / white
    return ratio / ratio.mean(axis=-1, keepdims=True)


# --------------------------------------------------------------------------------------------
# configuration and result


@dataclass
class SkyConfig:
    """What goes into a simulated scene; each component can be weighted or switched off.

    Ranges are ``(low, high)``; values marked log are drawn log-uniformly, once per scene.
    ``p_*`` are the probabilities that a scene contains a component. A configuration file
    can pass a table of these names: ``SkyConfig(**table)``; `SkyConfig.preset` gives the
    named scene types.

    Attributes
    ----------
    background_range : tuple of float
        Sky level in ADU (log). Default (200, 3000): dark site to suburban sky.
    sky_tint : float
        Std of the relative per-channel deviation of the sky colour from grey. Default 0.15.
    saturation : float
        Level at which every channel is clipped. Default 60000 (a 16-bit sensor).
    stars : bool
        Whether to draw stars at all. Default True.
    star_density_range : tuple of float
        Field stars per pixel (log). Default (2e-4, 4e-3): 13 to 260 in 256x256.
    flux_range : tuple of float
        Total star flux in ADU, summed over the star, mean over channels. Default (100, 2e7).
    flux_slope : float
        Power law ``dN/dF ~ F**-flux_slope``. Default 1.5: mostly faint stars and, per few
        hundred, one or two bright enough to saturate.
    fwhm_range : tuple of float
        Scene seeing FWHM in pixels (log). Default (1.5, 6).
    fwhm_scatter : float
        Relative star-to-star scatter of the FWHM. Default 0.08.
    ellipticity_max : float
        Largest scene ellipticity ``1 - b/a`` (tracking, optics). Default 0.25.
    p_moffat : float
        Probability that the scene's PSF is a Moffat (else a Gaussian). Default 0.7.
    moffat_beta_range : tuple of float
        Moffat beta (uniform). Default (2.0, 4.5).
    temperature_range : tuple of float
        Star temperatures in kelvin. Default (3000, 30000); drawn skewed to cool stars
        (median about 5300 K), as in real fields.
    p_cluster : float
        Probability of a star cluster (Plummer profile) on top of the field. Default 0.25.
    cluster_richness_range : tuple of float
        Cluster members as a multiple of the field stars (log). Default (0.5, 3).
    cluster_core_range : tuple of float
        Plummer radius as a fraction of the image's shorter side. Default (0.03, 0.15).
    p_nebula : float
        Probability of nebulosity. Default 0.5.
    nebula_amplitude_range : tuple of float
        Brightness of the nebula's bright parts (99.5th percentile) as a multiple of the sky
        level (log). Default (0.05, 3).
    nebula_contrast_range : tuple of float
        Log-normal contrast of the emission (uniform); larger gives knottier, filamentary
        emission. Default (0.8, 1.8).
    nebula_slope_range : tuple of float
        Index of the power spectrum ``k**-slope`` of the emission's detail (uniform); lower
        is finer, more filamentary. Default (2.8, 3.5), as measured for ISM clouds. The
        nebula is then blurred by the seeing.
    p_dust : float
        Probability of dark dust lanes (in scenes with nebulosity or galaxies). Default 0.6.
    dust_opacity_range : tuple of float
        Peak optical depth in G (uniform). Default (0.5, 3).
    p_galaxies : float
        Probability of galaxies. Default 0.4.
    galaxy_density_range : tuple of float
        Galaxies per pixel (log). Default (2e-5, 2e-4): 1 to 13 in 256x256.
    galaxy_flux_range : tuple of float
        Total galaxy flux in ADU (log). Default (2e3, 2e6).
    galaxy_re_range : tuple of float
        Sersic effective radius in pixels (log). Default (1.5, 25).
    sersic_n_range : tuple of float
        Sersic index (uniform). Default (0.5, 4): disks to ellipticals.
    p_gradient : float
        Probability of a light-pollution gradient. Default 0.6.
    gradient_range : tuple of float
        Peak-to-peak gradient across the frame as a fraction of the sky (uniform).
        Default (0.02, 0.3).
    """

    background_range: tuple[float, float] = (200.0, 3000.0)
    sky_tint: float = 0.15
    saturation: float = 60000.0
    stars: bool = True
    star_density_range: tuple[float, float] = (2e-4, 4e-3)
    flux_range: tuple[float, float] = (100.0, 2e7)
    flux_slope: float = 1.5
    fwhm_range: tuple[float, float] = (1.5, 6.0)
    fwhm_scatter: float = 0.08
    ellipticity_max: float = 0.25
    p_moffat: float = 0.7
    moffat_beta_range: tuple[float, float] = (2.0, 4.5)
    temperature_range: tuple[float, float] = (3000.0, 30000.0)
    p_cluster: float = 0.25
    cluster_richness_range: tuple[float, float] = (0.5, 3.0)
    cluster_core_range: tuple[float, float] = (0.03, 0.15)
    p_nebula: float = 0.5
    nebula_amplitude_range: tuple[float, float] = (0.05, 3.0)
    nebula_contrast_range: tuple[float, float] = (0.8, 1.8)
    nebula_slope_range: tuple[float, float] = (2.8, 3.5)
    p_dust: float = 0.6
    dust_opacity_range: tuple[float, float] = (0.5, 3.0)
    p_galaxies: float = 0.4
    galaxy_density_range: tuple[float, float] = (2e-5, 2e-4)
    galaxy_flux_range: tuple[float, float] = (2e3, 2e6)
    galaxy_re_range: tuple[float, float] = (1.5, 25.0)
    sersic_n_range: tuple[float, float] = (0.5, 4.0)
    p_gradient: float = 0.6
    gradient_range: tuple[float, float] = (0.02, 0.3)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("p_"):
                if not 0.0 <= float(value) <= 1.0:
                    msg = f"{f.name} must be a probability in [0, 1], got {value}"
                    raise ValueError(msg)
            elif f.name.endswith("_range"):
                setattr(self, f.name, _range(value, f.name))
        for name in ("saturation", "flux_slope"):
            if not getattr(self, name) > 0:
                msg = f"{name} must be > 0, got {getattr(self, name)}"
                raise ValueError(msg)
        if not 0.0 <= self.ellipticity_max < 1.0:
            msg = f"ellipticity_max must be in [0, 1), got {self.ellipticity_max}"
            raise ValueError(msg)
        for name in ("sky_tint", "fwhm_scatter"):
            if not getattr(self, name) >= 0:
                msg = f"{name} must be >= 0, got {getattr(self, name)}"
                raise ValueError(msg)
        if self.fwhm_range[0] < 0.5:
            msg = f"fwhm_range must start at 0.5 px or more, got {self.fwhm_range}"
            raise ValueError(msg)
        if self.moffat_beta_range[0] <= 1.0:
            msg = f"moffat_beta_range must be > 1 (finite flux), got {self.moffat_beta_range}"
            raise ValueError(msg)

    @classmethod
    def preset(cls, name: str, **overrides: object) -> SkyConfig:
        """A named scene type, optionally with some fields overridden.

        Parameters
        ----------
        name : {"mixed", "sparse", "cluster", "nebula", "galaxies", "stars_only"}
            ``mixed`` is the default configuration; ``sparse`` a thin star field;
            ``cluster`` a dense cluster on a rich field; ``nebula`` a nebula-dominated field
            with dust; ``galaxies`` a galaxy field; ``stars_only`` stars on a flat sky, no
            nebula, galaxies, cluster or gradient (for tests and photometry).
        **overrides
            Fields to set on top of the preset.

        Returns
        -------
        SkyConfig
        """
        presets: dict[str, dict[str, object]] = {
            "mixed": {},
            "sparse": {
                "star_density_range": (1e-4, 6e-4),
                "p_cluster": 0.0,
                "p_nebula": 0.0,
                "p_galaxies": 0.1,
            },
            "cluster": {"p_cluster": 1.0, "star_density_range": (1e-3, 4e-3), "p_nebula": 0.2},
            "nebula": {
                "p_nebula": 1.0,
                "p_dust": 0.8,
                "nebula_amplitude_range": (0.3, 5.0),
                "p_galaxies": 0.0,
                "p_cluster": 0.1,
            },
            "galaxies": {
                "p_galaxies": 1.0,
                "galaxy_density_range": (1e-4, 5e-4),
                "star_density_range": (1e-4, 1e-3),
                "p_nebula": 0.0,
                "p_cluster": 0.0,
            },
            "stars_only": {
                "p_cluster": 0.0,
                "p_nebula": 0.0,
                "p_galaxies": 0.0,
                "p_gradient": 0.0,
                "p_dust": 0.0,
            },
        }
        if name not in presets:
            msg = f"unknown preset {name!r}; choose one of {sorted(presets)}"
            raise ValueError(msg)
        return cls(**{**presets[name], **overrides})

    def to_dict(self) -> dict:
        """The configuration as a plain dict (ranges as lists), for a config file."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass
class SkyScene:
    """A simulated clean scene and what was put into it.

    Attributes
    ----------
    image : ndarray
        ``(C, H, W)`` float32, linear, noise-free, in [0, saturation].
    stars : ndarray
        Structured array, one row per star (including those off the edge or partly on it):
        ``x``, ``y`` (pixel coordinates, column and row), ``flux`` ``(C,)`` total ADU per
        channel as injected (before clipping at saturation), ``fwhm`` (major axis, px),
        ``ellipticity``, ``theta`` (radians, from +x towards +y), ``temperature`` (K),
        ``saturated`` (some channel of its peak pixel reached ``saturation``).
    galaxies : ndarray
        Structured array: ``x``, ``y``, ``flux`` ``(C,)``, ``re`` (px), ``n``, ``q`` (axis
        ratio), ``theta``.
    background : ndarray
        ``(C,)`` sky level per channel, ADU: the mean of the sky and its gradient.
    saturation : float
        The clipping level.
    params : dict
        The scene-level draws (PSF, components present, ...), for logs and tests.
    """

    image: np.ndarray
    stars: np.ndarray
    galaxies: np.ndarray
    background: np.ndarray
    saturation: float
    params: dict


# --------------------------------------------------------------------------------------------
# small helpers


def _range(values: object, name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in values)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        msg = f"{name} must be a pair (low, high) of numbers, got {values!r}"
        raise ValueError(msg) from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi):
        msg = f"{name} must satisfy 0 <= low <= high (finite), got ({lo}, {hi})"
        raise ValueError(msg)
    return lo, hi


def _power_law(rng: np.random.Generator, lo: float, hi: float, slope: float, n: int):
    """``n`` draws from ``dN/dF ~ F**-slope`` on ``[lo, hi]`` (inverse CDF)."""
    u = rng.uniform(size=n)
    if lo == hi:
        return np.full(n, lo)
    if abs(slope - 1.0) < 1e-9:
        return lo * (hi / lo) ** u
    e = 1.0 - slope
    return (lo**e + u * (hi**e - lo**e)) ** (1.0 / e)


def _channel_colours(rgb: np.ndarray, channels: int) -> np.ndarray:
    """``(..., 3)`` RGB ratios -> ``(..., channels)``; mono takes the RGB mean."""
    rgb = np.asarray(rgb, dtype=np.float64)
    return rgb if channels == 3 else rgb.mean(axis=-1, keepdims=True)


def _random_field(
    rng: np.random.Generator, shape: tuple[int, int], slope: float, count: int = 1
) -> np.ndarray:
    """Gaussian random fields with power spectrum ``k**-slope``, zero mean and unit std.

    Drawn by FFT on a grid 1.25x larger than ``shape`` and cropped, so the periodic wrap of
    the FFT does not show.
    """
    h, w = shape
    ph = fft.next_fast_len(h + max(8, h // 4), real=True)
    pw = fft.next_fast_len(w + max(8, w // 4), real=True)
    ky = fft.fftfreq(ph).astype(np.float32)[:, None]
    kx = fft.rfftfreq(pw).astype(np.float32)[None, :]
    k2 = np.maximum(ky * ky + kx * kx, np.float32(1.0 / max(ph, pw) ** 2))
    amp = k2 ** np.float32(-slope / 4.0)
    amp[0, 0] = 0.0
    # white noise drawn directly in Fourier space (its transform is white noise too)
    spectrum = np.empty((count, ph, pw // 2 + 1), dtype=np.complex64)
    spectrum.real = rng.standard_normal(spectrum.shape, dtype=np.float32)
    spectrum.imag = rng.standard_normal(spectrum.shape, dtype=np.float32)
    spectrum *= amp
    out = fft.irfft2(spectrum, s=(ph, pw))[:, :h, :w].astype(np.float64)
    out -= out.mean(axis=(1, 2), keepdims=True)
    out /= out.std(axis=(1, 2), keepdims=True) + 1e-12
    return out


# --------------------------------------------------------------------------------------------
# point sources


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


# --------------------------------------------------------------------------------------------
# extended sources


def _galaxy_dtype(channels: int) -> list:
    return [
        ("x", "f8"),
        ("y", "f8"),
        ("flux", "f8", (channels,)),
        ("re", "f8"),
        ("n", "f8"),
        ("q", "f8"),
        ("theta", "f8"),
    ]


def _sersic_b(n: float) -> float:
    """Ciotti & Bertin (1999) approximation of the Sersic b_n."""
    return 2.0 * n - 1.0 / 3.0 + 4.0 / (405.0 * n) + 46.0 / (25515.0 * n * n)


def _render_galaxies(
    rng: np.random.Generator,
    shape: tuple[int, int],
    config: SkyConfig,
    channels: int,
    psf_fwhm: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Sersic galaxies blurred by the seeing, each normalised to its flux within its stamp."""
    h, w = shape
    n_ch = channels
    n = max(rng.poisson(float(_log_uniform(rng, *config.galaxy_density_range)) * h * w), 1)
    table = np.zeros(n, dtype=_galaxy_dtype(n_ch))
    table["x"] = rng.uniform(0, w - 1, n)
    table["y"] = rng.uniform(0, h - 1, n)
    table["re"] = _log_uniform(rng, *config.galaxy_re_range, n)
    table["n"] = rng.uniform(*config.sersic_n_range, n)
    table["q"] = rng.uniform(0.2, 1.0, n)
    table["theta"] = rng.uniform(0, np.pi, n)
    total = _log_uniform(rng, *config.galaxy_flux_range, n)
    # ellipticals (high n) redder, disks bluer
    temp = np.clip(9000.0 - 1200.0 * table["n"] + rng.normal(0, 700, n), 3500, 12000)
    table["flux"] = total[:, None] * _channel_colours(blackbody_rgb(temp), n_ch)

    out = np.zeros((n_ch, h, w))
    blur = psf_fwhm / 2.3548
    for g in table:
        profile, r = _sersic_stamp(g, blur, max(h, w))
        x0, y0 = round(g["x"]), round(g["y"])
        r0, r1 = max(y0 - r, 0), min(y0 + r + 1, h)
        c0, c1 = max(x0 - r, 0), min(x0 + r + 1, w)
        cut = profile[r0 - (y0 - r) : r1 - (y0 - r), c0 - (x0 - r) : c1 - (x0 - r)]
        out[:, r0:r1, c0:c1] += g["flux"][:, None, None] * cut[None]
    return out, table


def _sersic_stamp(galaxy: np.void, blur: float, frame: int) -> tuple[np.ndarray, int]:
    """Unit-sum stamp of one Sersic galaxy, blurred by the seeing, and its half-width.

    The profile is tapered to zero at the elliptical radius ``reach`` (about 5 to 10 re,
    and at most the frame's size), so the stamp has no edge. Only the centre, where the
    profile is curved on the scale of the seeing, is blurred.
    """
    re, n, q = float(galaxy["re"]), float(galaxy["n"]), float(galaxy["q"])
    reach = min(re * min(3.0 + 2.5 * n, 10.0), float(frame))
    r = math.ceil(reach + 3.0 * blur) + 1
    d = np.arange(-r, r + 1, dtype=np.float32)
    x0, y0 = round(galaxy["x"]), round(galaxy["y"])
    dy = d[:, None] + np.float32(y0 - galaxy["y"])
    dx = d[None, :] + np.float32(x0 - galaxy["x"])
    c, s = math.cos(galaxy["theta"]), math.sin(galaxy["theta"])
    u = dx * np.float32(c) + dy * np.float32(s)
    v = (dy * np.float32(c) - dx * np.float32(s)) / np.float32(q)
    b_n = _sersic_b(n)
    rr = np.maximum(np.hypot(u, v), np.float32(0.3)) / np.float32(re)
    profile = np.exp(np.float32(-b_n) * (rr ** np.float32(1.0 / n) - np.float32(1.0)))
    edge = math.exp(-b_n * ((reach / re) ** (1.0 / n) - 1.0))
    profile = np.clip(profile - np.float32(edge), 0.0, None)
    core = min(r, math.ceil(4.0 * blur + re) + 2)
    centre = profile[r - core : r + core + 1, r - core : r + core + 1]
    centre[2:-2, 2:-2] = ndimage.gaussian_filter(centre, blur, mode="nearest")[2:-2, 2:-2]
    profile /= profile.sum(dtype=np.float64)
    return profile, r


def _nebula(
    rng: np.random.Generator,
    shape: tuple[int, int],
    config: SkyConfig,
    channels: int,
    sky: float,
    psf_fwhm: float,
) -> tuple[np.ndarray, dict]:
    """Multi-scale emission: log-normal random fields, one per colour component, seen
    through the seeing (blurred by the PSF's FWHM, so no structure is finer than a star)."""
    names = list(NEBULA_COLOURS)
    weights = rng.dirichlet(np.full(len(names), 0.6))
    weights[0] += 0.5  # H-alpha dominates most emission nebulae
    weights /= weights.sum()
    envelope = _random_field(rng, shape, slope=4.0)[0]
    slope = float(rng.uniform(*config.nebula_slope_range))
    detail = _random_field(rng, shape, slope=slope, count=len(names))
    contrast = float(rng.uniform(*config.nebula_contrast_range))
    out = np.zeros((channels, *shape))
    for i, name in enumerate(names):
        if weights[i] < 0.03:
            continue
        shared = 0.6 * detail[0] + 0.8 * detail[i] if i else detail[0]
        emission = np.exp(contrast * (1.1 * envelope + 0.7 * shared))
        colour = _channel_colours(np.asarray(NEBULA_COLOURS[name]), channels)
        out += weights[i] * colour[:, None, None] * emission[None]
    out = ndimage.gaussian_filter(out, (0, psf_fwhm / 2.3548, psf_fwhm / 2.3548))
    scale = np.percentile(out.mean(axis=0), 99.5)
    amplitude = float(_log_uniform(rng, *config.nebula_amplitude_range)) * sky
    out *= amplitude / scale
    mix = dict(zip(names, weights.tolist(), strict=True))
    return out, {"nebula_amplitude": amplitude, "nebula_slope": slope, "nebula_weights": mix}


def _dust_transmission(
    rng: np.random.Generator,
    shape: tuple[int, int],
    config: SkyConfig,
    channels: int,
    psf_fwhm: float,
) -> tuple[np.ndarray, float]:
    """``(C, H, W)`` transmission ``exp(-tau)`` of dark lanes, reddened (blue absorbed most)."""
    g = _random_field(rng, shape, slope=3.4)[0]
    opacity = float(rng.uniform(*config.dust_opacity_range))
    lanes = ndimage.gaussian_filter(np.clip(g - 0.3, 0.0, None), psf_fwhm / 2.3548)
    tau = opacity * lanes / (lanes.max() + 1e-12)
    red = _channel_colours(np.asarray(DUST_REDDENING), channels)
    return np.exp(-red[:, None, None] * tau[None]), opacity


def _sky(
    rng: np.random.Generator, shape: tuple[int, int], config: SkyConfig, channels: int
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Sky level per channel and the zero-mean light-pollution gradient, ``(C, H, W)``."""
    h, w = shape
    level = float(_log_uniform(rng, *config.background_range))
    tint = np.clip(1.0 + config.sky_tint * rng.standard_normal(3), 0.3, None)
    tint = _channel_colours(tint / tint.mean(), channels)
    background = level * tint
    info: dict = {"sky_level": level, "gradient": 0.0}
    gradient = np.zeros((channels, h, w))
    if rng.uniform() < config.p_gradient:
        strength = float(rng.uniform(*config.gradient_range))
        angle = rng.uniform(0, 2 * np.pi)
        yy = (np.arange(h)[:, None] - (h - 1) / 2) / max(h, w)
        xx = (np.arange(w)[None, :] - (w - 1) / 2) / max(h, w)
        plane = xx * math.cos(angle) + yy * math.sin(angle)
        plane = plane + rng.uniform(0, 1.5) * (plane**2 + 0.3 * (xx**2 + yy**2))
        plane -= plane.mean()
        span = plane.max() - plane.min()
        plane *= strength / span if span > 0 else 0.0
        # light pollution is warmer than the sky's own tint
        lp = _channel_colours(np.asarray([1.15, 1.0, 0.8]), channels)
        gradient = level * tint[:, None, None] * lp[:, None, None] * plane[None]
        info.update(gradient=strength, gradient_angle=angle)
    return background, gradient, info


# --------------------------------------------------------------------------------------------
# public entry point


def simulate_scene(
    shape: tuple[int, int],
    *,
    channels: int = 3,
    seed: int | np.random.Generator | None = None,
    config: SkyConfig | None = None,
) -> SkyScene:
    """Simulate a clean, linear sky scene and its catalogues.

    The image is ``sky + gradient + dust_transmission * (nebula + galaxies) + stars``,
    clipped to ``[0, saturation]`` per channel. Stars behind dust are thinned out (dropped
    with probability ``1 - transmission``) rather than dimmed, so the star catalogue holds
    each star's true injected flux.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)``, each >= 8.
    channels : {1, 3}, optional
        1 for mono, 3 for colour R, G, B. Default 3.
    seed : int, numpy.random.Generator or None, optional
        Seed for ``np.random.default_rng``; the same seed and config give the same scene.
    config : SkyConfig or None, optional
        Components and ranges; None uses ``SkyConfig()`` (a varied mixture of scenes).

    Returns
    -------
    SkyScene
        The ``(C, H, W)`` float32 image, star and galaxy catalogues, sky level, saturation
        and the scene-level parameters.
    """
    (h, w), config = _check_scene_args(shape, channels, config)
    rng = np.random.default_rng(seed)

    background, gradient, params = _sky(rng, (h, w), config, channels)
    psf = _draw_psf(rng, config)
    params["psf"] = dict(psf, profile="gaussian" if psf["beta"] is None else "moffat")
    extended, galaxies, transmission = _extended(rng, (h, w), config, channels, psf, params)
    stars, info = _draw_stars(rng, (h, w), config, psf, transmission)
    params.update(info)
    flux, points = _star_layer((h, w), channels, stars, psf)

    image = background[:, None, None] + gradient + extended + points
    np.clip(image, 0.0, config.saturation, out=image)
    image = image.astype(np.float32)
    saturated = _saturated_stars(image, stars, config.saturation)
    params["n_saturated"] = int(saturated.sum())
    return SkyScene(
        image=image,
        stars=_star_table(stars, flux, saturated),
        galaxies=galaxies,
        background=background.astype(np.float64),
        saturation=float(config.saturation),
        params=params,
    )


def _check_scene_args(
    shape: tuple[int, int], channels: int, config: SkyConfig | None
) -> tuple[tuple[int, int], SkyConfig]:
    try:
        h, w = (int(v) for v in shape)
    except (TypeError, ValueError):
        msg = f"shape must be a pair (H, W) of integers, got {shape!r}"
        raise ValueError(msg) from None
    if h < 8 or w < 8:
        msg = f"shape must be at least (8, 8), got {(h, w)}"
        raise ValueError(msg)
    if channels not in (1, 3):
        msg = f"channels must be 1 (mono) or 3 (R, G, B), got {channels}"
        raise ValueError(msg)
    config = SkyConfig() if config is None else config
    if not isinstance(config, SkyConfig):
        msg = f"config must be a SkyConfig or None, got {type(config).__name__}"
        raise TypeError(msg)
    return (h, w), config


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


def _extended(
    rng: np.random.Generator,
    shape: tuple[int, int],
    config: SkyConfig,
    channels: int,
    psf: dict,
    params: dict,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Nebula and galaxies behind dust: ``(C, H, W)`` light, galaxy table, transmission."""
    extended = np.zeros((channels, *shape))
    if rng.uniform() < config.p_nebula:
        nebula, info = _nebula(rng, shape, config, channels, params["sky_level"], psf["fwhm"])
        extended += nebula
        params.update(info)
    params["nebula"] = "nebula_amplitude" in params
    galaxies = np.zeros(0, dtype=_galaxy_dtype(channels))
    if rng.uniform() < config.p_galaxies:
        rendered, galaxies = _render_galaxies(rng, shape, config, channels, psf["fwhm"])
        extended += rendered
    params["n_galaxies"] = len(galaxies)
    params["dust_opacity"] = 0.0
    transmission = None
    if extended.any() and rng.uniform() < config.p_dust:
        trans, params["dust_opacity"] = _dust_transmission(
            rng, shape, config, channels, psf["fwhm"]
        )
        extended *= trans
        transmission = trans.mean(axis=0)
    return extended, galaxies, transmission


def _star_layer(
    shape: tuple[int, int], channels: int, stars: dict, psf: dict
) -> tuple[np.ndarray, np.ndarray | float]:
    """Per-channel star fluxes ``(N, C)`` and the rendered stars ``(C, H, W)`` (or 0)."""
    if not stars or stars["x"].size == 0:
        return np.zeros((0, channels)), 0.0
    colours = _channel_colours(blackbody_rgb(stars["temperature"]), channels)
    flux = stars["total"][:, None] * colours
    points = _render_points(
        shape,
        stars["x"],
        stars["y"],
        flux,
        stars["fwhm"],
        stars["ellipticity"],
        stars["theta"],
        psf["beta"],
    )
    return flux, points


def _saturated_stars(image: np.ndarray, stars: dict, saturation: float) -> np.ndarray:
    """Whether some channel of each star's peak pixel reached ``saturation``."""
    if not stars or stars["x"].size == 0:
        return np.zeros(0, dtype=bool)
    _, h, w = image.shape
    iy = np.rint(stars["y"]).astype(int)
    ix = np.rint(stars["x"]).astype(int)
    on = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    saturated = np.zeros(iy.size, dtype=bool)
    saturated[on] = np.any(image[:, iy[on], ix[on]] >= np.float32(saturation), axis=0)
    return saturated
