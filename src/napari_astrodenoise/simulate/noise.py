"""Synthetic noise for linear astronomical images, shared by training, sample data and tests.

All functions take a clean image, ``(C, H, W)`` (or ``(H, W)``) float, linear, in ADU-like
units, and return a new noisy array of the same shape; the input is never modified. The
output dtype is the input's floating dtype (at least float32). NaN pixels stay NaN in every
output: noise is drawn for them but never replaces the NaN. Randomness comes only from the
``seed`` argument (``np.random.default_rng(seed)``); there is no global random state.

`random_noise` draws one training pair from a mixture of these models and of the detector
artefacts of `napari_astrodenoise.simulate.artifacts`; `NoiseConfig` holds the probabilities
and ranges of that mixture and is what goes into a training configuration file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from napari_astrodenoise.simulate._checks import as_image as _as_image
from napari_astrodenoise.simulate._checks import check_config_fields as _check_config_fields
from napari_astrodenoise.simulate._checks import check_positive as _check_positive
from napari_astrodenoise.simulate._checks import check_range as _check_range
from napari_astrodenoise.simulate._checks import chw as _chw
from napari_astrodenoise.simulate._checks import config_or_default as _config_or_default
from napari_astrodenoise.simulate._checks import keep_nans as _keep_nans
from napari_astrodenoise.simulate._random import log_uniform as _log_uniform
from napari_astrodenoise.simulate.artifacts import banding, chroma_blotches, hot_cold_pixels

__all__ = [
    "NoiseConfig",
    "NoiseSample",
    "banding",
    "chroma_blotches",
    "gaussian",
    "hot_cold_pixels",
    "poisson_gaussian",
    "random_noise",
    "random_variance_gaussian",
    "reference_level",
]


def reference_level(clean: np.ndarray) -> float:
    """Robust brightness scale of an image, used to make noise amplitudes scale-free.

    Parameters
    ----------
    clean : ndarray
        ``(C, H, W)`` or ``(H, W)`` linear image; NaN and inf are ignored.

    Returns
    -------
    float
        The median of the finite pixels (the sky level) when it is positive; otherwise (a
        sky-subtracted image) the spread between the 99th percentile and the median; otherwise
        the largest absolute value; otherwise (an all-zero image) 1.0. Always > 0, and it
        scales exactly with the image: ``reference_level(k * x) == k * reference_level(x)``
        for ``k > 0``.
    """
    arr = np.asarray(clean, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return 1.0
    median, p99 = np.percentile(finite, [50.0, 99.0])
    for candidate in (median, p99 - median, np.max(np.abs(finite))):
        if candidate > 0:
            return float(candidate)
    return 1.0


# --------------------------------------------------------------------------------------------
# single noise models


def poisson_gaussian(
    clean: np.ndarray,
    *,
    gain: float,
    read_noise: float,
    seed: int | np.random.Generator | None = None,
) -> np.ndarray:
    """Shot noise plus read noise of a CCD/CMOS sensor.

    The clean signal is converted to electrons (``clean * gain``), each pixel is replaced by a
    Poisson draw of that mean, converted back to ADU, and Gaussian read noise of ``read_noise``
    electrons (``read_noise / gain`` ADU) is added. On a flat field of level ``s`` ADU the
    variance is ``s / gain + (read_noise / gain) ** 2`` ADU².

    Parameters
    ----------
    clean : ndarray
        ``(C, H, W)`` or ``(H, W)`` linear image in ADU. Negative values (a bias-subtracted
        background below zero) carry no shot noise: their negative part is kept as it is and
        only read noise is added. NaN pixels stay NaN.
    gain : float
        Electrons per ADU, > 0.
    read_noise : float
        Read noise in electrons (rms), >= 0.
    seed : int, numpy.random.Generator or None, optional
        Seed for ``np.random.default_rng``.

    Returns
    -------
    ndarray
        Noisy image, same shape as ``clean``, its floating dtype (at least float32).
    """
    arr = _as_image(clean)
    gain = _check_positive(gain, "gain")
    read_noise = _check_positive(read_noise, "read_noise", allow_zero=True)
    rng = np.random.default_rng(seed)

    electrons = arr.astype(np.float64) * gain
    rate = np.where(np.isfinite(electrons), np.maximum(electrons, 0.0), 0.0)
    negative_part = np.where(np.isfinite(electrons), np.minimum(electrons, 0.0), 0.0)
    counts = rng.poisson(rate).astype(np.float64)
    counts += negative_part
    if read_noise > 0:
        counts += rng.normal(0.0, read_noise, size=counts.shape)
    noisy = (counts / gain).astype(arr.dtype)
    return _keep_nans(noisy, arr)


def gaussian(
    clean: np.ndarray,
    *,
    sigma: float | Sequence[float],
    seed: int | np.random.Generator | None = None,
) -> np.ndarray:
    """Additive white Gaussian noise, optionally with a different sigma per channel.

    Parameters
    ----------
    clean : ndarray
        ``(C, H, W)`` or ``(H, W)`` linear image. NaN pixels stay NaN.
    sigma : float or sequence of float
        Standard deviation in the image's units (>= 0); a sequence gives one value per channel
        and must have length C.
    seed : int, numpy.random.Generator or None, optional
        Seed for ``np.random.default_rng``.

    Returns
    -------
    ndarray
        Noisy image, same shape and floating dtype as ``clean``.
    """
    arr = _as_image(clean)
    chw = _chw(arr)
    sig = np.atleast_1d(np.asarray(sigma, dtype=np.float64))
    if sig.ndim != 1 or sig.size not in (1, chw.shape[0]):
        msg = (
            f"sigma must be a number or one value per channel ({chw.shape[0]}), "
            f"got {np.asarray(sigma).tolist()}"
        )
        raise ValueError(msg)
    if not np.all(np.isfinite(sig) & (sig >= 0)):
        msg = f"sigma must be finite and >= 0, got {sig.tolist()}"
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(chw.shape) * sig[:, None, None]
    noisy = (chw + noise).astype(arr.dtype).reshape(arr.shape)
    return noisy


def random_variance_gaussian(
    clean: np.ndarray,
    *,
    sigma_range: tuple[float, float],
    seed: int | np.random.Generator | None = None,
) -> tuple[np.ndarray, float]:
    """Additive Gaussian noise whose sigma is drawn log-uniformly from a range.

    Parameters
    ----------
    clean : ndarray
        ``(C, H, W)`` or ``(H, W)`` linear image. NaN pixels stay NaN.
    sigma_range : tuple of float
        ``(low, high)`` with ``0 < low <= high``, in the image's units.
    seed : int, numpy.random.Generator or None, optional
        Seed for ``np.random.default_rng``.

    Returns
    -------
    noisy : ndarray
        Noisy image, same shape and floating dtype as ``clean``.
    sigma : float
        The sigma that was drawn (the same for all channels).
    """
    lo, hi = _check_range(sigma_range, "sigma_range")
    if lo <= 0:
        msg = f"sigma_range must be strictly positive for a log-uniform draw, got ({lo}, {hi})"
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    sigma = _log_uniform(rng, lo, hi)
    return gaussian(clean, sigma=sigma, seed=rng), sigma


# --------------------------------------------------------------------------------------------
# the training mixture


_LOG_RANGES = (
    "sky_electrons_range",
    "gaussian_sigma_range",
    "low_noise_sigma_range",
    "chroma_scale_range",
    "hot_cold_fraction_range",
)


@dataclass
class NoiseConfig:
    """Probabilities and ranges of the noise mixture drawn by `random_noise`.

    All amplitudes are relative, so that one configuration works at any flux scaling: the
    reference is `reference_level` of the clean image (its sky level when positive), and
    "x background sigma" means a multiple of the std the main noise gives at that level.
    Ranges are ``(low, high)``; values marked log are drawn log-uniformly. A configuration
    file can pass a table of these names: ``NoiseConfig(**table)`` (lists become tuples).

    Attributes
    ----------
    p_identity : float
        Probability of the identity pair (noisy = target = clean). Default 0.05: the model
        must learn to leave clean data alone.
    p_low_noise : float
        Probability of the low-noise pair: a tiny Gaussian noise is added and the target is
        that slightly noisy input itself, so that already-good data pass through untouched.
        Default 0.05.
    p_gaussian : float
        Among the remaining (noisy) draws, probability of random-variance Gaussian noise
        instead of Poisson-Gaussian. Default 0.25; Poisson-Gaussian is the main case.
    sky_electrons_range : tuple of float
        Electrons collected at the reference level (log), which sets the gain as
        ``electrons / reference``. Default (10, 50000): from a single short sub with a sky
        SNR of ~3 to a deep stack with a sky SNR of ~200.
    read_noise_range : tuple of float
        Read noise in electrons (uniform). Default (1, 12): modern CMOS to older CCDs.
    gaussian_sigma_range : tuple of float
        Gaussian sigma relative to the reference (log). Default (0.003, 0.3).
    low_noise_sigma_range : tuple of float
        Sigma of the low-noise pair relative to the reference (log). Default (1e-4, 1e-3):
        well below what is visible on a stretched screen.
    p_chroma : float
        Probability of adding chroma blotches (luminance mottle for mono). Default 0.3.
    chroma_amplitude_range : tuple of float
        Blotch std in x background sigma (uniform). Default (0.2, 1.0).
    chroma_scale_range : tuple of float
        Blotch size in pixels (log). Default (6, 48).
    p_banding : float
        Probability of adding row or column banding. Default 0.15.
    banding_amplitude_range : tuple of float
        Band offset std in x background sigma (uniform). Default (0.05, 0.5).
    p_hot_cold : float
        Probability of adding hot and cold pixels. Default 0.2.
    hot_cold_fraction_range : tuple of float
        Fraction of pixels that are defective (log). Default (1e-4, 2e-3).

    Notes
    -----
    Chroma blotches, banding, hot and cold pixels are artefacts, not signal: their target is
    the clean image, so the model learns to remove them rather than to keep them. Only the
    low-noise pair asks the model to return its input unchanged.
    """

    p_identity: float = 0.05
    p_low_noise: float = 0.05
    p_gaussian: float = 0.25
    sky_electrons_range: tuple[float, float] = (10.0, 50000.0)
    read_noise_range: tuple[float, float] = (1.0, 12.0)
    gaussian_sigma_range: tuple[float, float] = (0.003, 0.3)
    low_noise_sigma_range: tuple[float, float] = (1e-4, 1e-3)
    p_chroma: float = 0.3
    chroma_amplitude_range: tuple[float, float] = (0.2, 1.0)
    chroma_scale_range: tuple[float, float] = (6.0, 48.0)
    p_banding: float = 0.15
    banding_amplitude_range: tuple[float, float] = (0.05, 0.5)
    p_hot_cold: float = 0.2
    hot_cold_fraction_range: tuple[float, float] = (1e-4, 2e-3)

    def __post_init__(self) -> None:
        _check_config_fields(self)
        if self.p_identity + self.p_low_noise > 1.0:
            msg = (
                "p_identity + p_low_noise must be at most 1, "
                f"got {self.p_identity} + {self.p_low_noise}"
            )
            raise ValueError(msg)
        for name in _LOG_RANGES:
            if getattr(self, name)[0] <= 0:
                msg = f"{name} is drawn log-uniformly and must be > 0, got {getattr(self, name)}"
                raise ValueError(msg)
        if self.chroma_scale_range[0] < 1:
            msg = f"chroma_scale_range must be at least 1 pixel, got {self.chroma_scale_range}"
            raise ValueError(msg)
        if self.hot_cold_fraction_range[1] > 1:
            msg = f"hot_cold_fraction_range must lie in (0, 1], got {self.hot_cold_fraction_range}"
            raise ValueError(msg)

    def to_dict(self) -> dict:
        """The configuration as a plain dict (ranges as lists), for a config file."""
        out = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


@dataclass
class NoiseSample:
    """One training pair drawn by `random_noise`.

    Attributes
    ----------
    noisy : ndarray
        The model's input, same shape and floating dtype as the clean image; NaNs kept.
    target : ndarray
        What the model should return: the clean image, or for the low-noise pair the noisy
        input itself.
    kind : str
        ``"identity"``, ``"low_noise"``, or the main model (``"poisson_gaussian"`` or
        ``"gaussian"``) followed by ``"+chroma"``, ``"+banding"``, ``"+hot_cold"`` for each
        artefact stacked on it.
    params : dict
        The drawn parameters (``reference``, ``gain``, ``read_noise``, ``sigma``,
        ``background_sigma``, ``chroma_amplitude``, ...), in the image's units.
    """

    noisy: np.ndarray
    target: np.ndarray
    kind: str
    params: dict


def random_noise(
    clean: np.ndarray,
    *,
    seed: int | np.random.Generator | None = None,
    config: NoiseConfig | None = None,
) -> NoiseSample:
    """Draw one (noisy, target) training pair from the noise mixture of ``config``.

    With probability ``p_identity`` the pair is (clean, clean); with ``p_low_noise`` a tiny
    Gaussian noise is added and the target is that noisy image itself. Otherwise the main
    noise is Poisson-Gaussian (gain set from a random electron count at the image's reference
    level, random read noise) or, with ``p_gaussian``, random-variance Gaussian; chroma
    blotches, banding and hot/cold pixels are then stacked on it, each with its own
    probability, and the target is the clean image (artefacts are to be removed).

    Parameters
    ----------
    clean : ndarray
        ``(C, H, W)`` or ``(H, W)`` clean linear image, any flux scaling (amplitudes are
        relative to `reference_level`). NaN pixels stay NaN in ``noisy`` and ``target``.
    seed : int, numpy.random.Generator or None, optional
        Seed for ``np.random.default_rng``; the same seed gives the same pair.
    config : NoiseConfig or None, optional
        The mixture; None uses ``NoiseConfig()`` defaults.

    Returns
    -------
    NoiseSample
        The pair, its kind and the drawn parameters.
    """
    arr = _as_image(clean)
    config = _config_or_default(config, NoiseConfig)
    rng = np.random.default_rng(seed)
    ref = reference_level(arr)
    params: dict = {"reference": ref}

    u = rng.uniform()
    if u < config.p_identity:
        return NoiseSample(noisy=arr.copy(), target=arr.copy(), kind="identity", params=params)
    if u < config.p_identity + config.p_low_noise:
        sigma = ref * _log_uniform(rng, *config.low_noise_sigma_range)
        noisy = gaussian(arr, sigma=sigma, seed=rng)
        params["sigma"] = sigma
        return NoiseSample(noisy=noisy, target=noisy.copy(), kind="low_noise", params=params)

    if rng.uniform() < config.p_gaussian:
        lo, hi = config.gaussian_sigma_range
        noisy, sigma = random_variance_gaussian(arr, sigma_range=(ref * lo, ref * hi), seed=rng)
        kind = "gaussian"
        params["sigma"] = sigma
        background_sigma = sigma
    else:
        electrons = _log_uniform(rng, *config.sky_electrons_range)
        read_noise = float(rng.uniform(*config.read_noise_range))
        gain = electrons / ref
        noisy = poisson_gaussian(arr, gain=gain, read_noise=read_noise, seed=rng)
        kind = "poisson_gaussian"
        params.update(gain=gain, read_noise=read_noise)
        background_sigma = math.sqrt(electrons + read_noise**2) / gain
    params["background_sigma"] = background_sigma

    if rng.uniform() < config.p_chroma:
        amplitude = background_sigma * float(rng.uniform(*config.chroma_amplitude_range))
        scale = _log_uniform(rng, *config.chroma_scale_range)
        noisy = chroma_blotches(noisy, amplitude=amplitude, scale=scale, seed=rng)
        kind += "+chroma"
        params.update(chroma_amplitude=amplitude, chroma_scale=scale)
    if rng.uniform() < config.p_banding:
        amplitude = background_sigma * float(rng.uniform(*config.banding_amplitude_range))
        axis = int(rng.integers(2))
        noisy = banding(noisy, amplitude=amplitude, axis=axis, seed=rng)
        kind += "+banding"
        params.update(banding_amplitude=amplitude, banding_axis=axis)
    if rng.uniform() < config.p_hot_cold:
        fraction = _log_uniform(rng, *config.hot_cold_fraction_range)
        noisy = hot_cold_pixels(noisy, fraction=fraction, seed=rng)
        kind += "+hot_cold"
        params["hot_cold_fraction"] = fraction
    noisy = _keep_nans(noisy, arr)
    return NoiseSample(noisy=noisy, target=arr.copy(), kind=kind, params=params)
