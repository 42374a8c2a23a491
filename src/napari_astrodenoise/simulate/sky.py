"""Simulated clean linear sky scenes (stars, nebulae, dust, galaxies, gradients) with catalogues.

Used for training pairs, napari sample data and tests. A scene is a ``(C, H, W)`` float32
linear image in ADU-like units (sky of hundreds to thousands, saturation 60000), noise-free;
add noise with `napari_astrodenoise.simulate.noise`. Pixel ``(row, col)`` has its centre at
``(y, x) = (row, col)``, the numpy/photutils convention. Randomness comes only from ``seed``.
This module holds the configuration, the sky and its gradient, and puts the scene together;
stars are drawn and rendered in `.stars`, galaxies, nebulae and dust in `.extended`.

Stars and galaxies are rendered in small stamps around each object, batched by stamp size
and added with one ``np.bincount`` per channel, so that a 256x256 colour scene takes a few
milliseconds and a 2048x2048 one well under a second. Written here rather than with
photutils' model rendering because that draws one full frame per source, far too slow for
on-the-fly training data, and because core keeps to numpy/scipy/astropy.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from napari_astrodenoise.simulate._checks import check_config_fields as _check_config_fields
from napari_astrodenoise.simulate._checks import config_or_default as _config_or_default
from napari_astrodenoise.simulate._random import log_uniform as _log_uniform
from napari_astrodenoise.simulate.colour import _channel_colours, blackbody_rgb
from napari_astrodenoise.simulate.extended import _extended
from napari_astrodenoise.simulate.stars import _draw_psf, _draw_stars, _render_points, _star_table

__all__ = ["SkyConfig", "SkyScene", "blackbody_rgb", "simulate_scene"]


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
        _check_config_fields(self)
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
# the sky and its gradient


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
    return (h, w), _config_or_default(config, SkyConfig)


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
