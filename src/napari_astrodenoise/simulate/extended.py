"""Extended light of a simulated scene: Sersic galaxies, nebulae and dust lanes."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from scipy import fft, ndimage

from napari_astrodenoise.simulate._random import log_uniform as _log_uniform
from napari_astrodenoise.simulate.colour import (
    DUST_REDDENING,
    NEBULA_COLOURS,
    _channel_colours,
    blackbody_rgb,
)

if TYPE_CHECKING:
    from napari_astrodenoise.simulate.sky import SkyConfig


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
