"""Detector artefacts: chroma blotches, row and column banding, hot and cold pixels.

Like the noise models of `napari_astrodenoise.simulate.noise`, each function takes a clean
``(C, H, W)`` or ``(H, W)`` linear image and returns a new array of the same shape and
floating dtype; NaN pixels stay NaN and randomness comes only from ``seed``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import numpy as np
from scipy import ndimage
from scipy.interpolate import RectBivariateSpline

from napari_astrodenoise.simulate._checks import as_image as _as_image
from napari_astrodenoise.simulate._checks import check_positive as _check_positive
from napari_astrodenoise.simulate._checks import check_probability as _check_probability
from napari_astrodenoise.simulate._checks import chw as _chw
from napari_astrodenoise.simulate._checks import keep_nans as _keep_nans

__all__ = ["banding", "chroma_blotches", "hot_cold_pixels"]


def _smooth_field(
    rng: np.random.Generator, shape: tuple[int, int], scale: float, count: int
) -> np.ndarray:
    """``count`` zero-mean, unit-std random fields of size ``shape`` with features of ``scale`` px.

    White noise on a coarse grid (one node every ``scale`` px, lightly smoothed so the spline
    does not ring) is interpolated to every pixel by a bicubic spline; each field is then
    shifted to zero mean and scaled to unit std.
    """
    h, w = shape
    ny = math.ceil(h / scale) + 4
    nx = math.ceil(w / scale) + 4
    coarse = rng.standard_normal((count, ny, nx))
    coarse = ndimage.gaussian_filter(coarse, sigma=(0, 0.7, 0.7), mode="wrap")
    # node k lies at pixel coordinate (k - 2) * scale, so the image sits inside the grid
    ky = (np.arange(ny) - 2.0) * scale
    kx = (np.arange(nx) - 2.0) * scale
    yy = np.arange(h, dtype=np.float64)
    xx = np.arange(w, dtype=np.float64)
    out = np.empty((count, h, w), dtype=np.float64)
    for i in range(count):
        out[i] = RectBivariateSpline(ky, kx, coarse[i], kx=3, ky=3, s=0)(yy, xx)
    out -= out.mean(axis=(1, 2), keepdims=True)
    std = out.std(axis=(1, 2), keepdims=True)
    out /= np.where(std > 0, std, 1.0)
    return out


def chroma_blotches(
    clean: np.ndarray,
    *,
    amplitude: float,
    scale: float,
    seed: int | np.random.Generator | None = None,
) -> np.ndarray:
    """Low-frequency colour mottle ("chroma blotches"), or a luminance mottle for mono data.

    For colour data (C > 1) an independent smooth field is drawn per channel and the mean over
    channels is subtracted, so the pattern is pure chrominance (the luminance is unchanged)
    and differs between channels. For mono data (C == 1) a single smooth luminance field is
    added. Each channel's pattern has zero spatial mean; the pattern's std over the whole
    image is ``amplitude``.

    Parameters
    ----------
    clean : ndarray
        ``(C, H, W)`` or ``(H, W)`` linear image. NaN pixels stay NaN.
    amplitude : float
        Standard deviation of the added pattern in the image's units, >= 0.
    scale : float
        Typical blotch size in pixels (the spacing of the coarse random grid that is
        upsampled), >= 1.
    seed : int, numpy.random.Generator or None, optional
        Seed for ``np.random.default_rng``.

    Returns
    -------
    ndarray
        Noisy image, same shape and floating dtype as ``clean``.
    """
    scale = _check_positive(scale, "scale")
    if scale < 1:
        msg = f"scale must be at least 1 pixel, got {scale}"
        raise ValueError(msg)
    return _add_pattern(clean, amplitude, partial(_blotches, scale=scale), seed)


def _blotches(rng: np.random.Generator, shape: tuple[int, int, int], scale: float) -> np.ndarray:
    """``(C, H, W)`` unit-std blotches: chrominance only for colour, a mottle for mono."""
    c, h, w = shape
    fields_ = _smooth_field(rng, (h, w), scale, c)
    if c > 1:
        fields_ -= fields_.mean(axis=0, keepdims=True)
        fields_ -= fields_.mean(axis=(1, 2), keepdims=True)
        std = fields_.std()
        fields_ /= std if std > 0 else 1.0
    return fields_


def banding(
    clean: np.ndarray,
    *,
    amplitude: float,
    axis: int = 0,
    seed: int | np.random.Generator | None = None,
) -> np.ndarray:
    """Row or column pattern noise: one random offset per row (or column).

    The offsets are Gaussian with std ``amplitude`` and zero mean over the image, the same in
    every channel (a read-out pattern of the sensor).

    Parameters
    ----------
    clean : ndarray
        ``(C, H, W)`` or ``(H, W)`` linear image. NaN pixels stay NaN.
    amplitude : float
        Standard deviation of the offsets in the image's units, >= 0.
    axis : {0, 1}, optional
        0: each row (constant along x) gets its own offset, horizontal bands; 1: each column.
    seed : int, numpy.random.Generator or None, optional
        Seed for ``np.random.default_rng``.

    Returns
    -------
    ndarray
        Noisy image, same shape and floating dtype as ``clean``.
    """
    if axis not in (0, 1):
        msg = f"axis must be 0 (rows) or 1 (columns) of the (H, W) plane, got {axis}"
        raise ValueError(msg)
    return _add_pattern(clean, amplitude, partial(_bands, axis=axis), seed)


def _bands(rng: np.random.Generator, shape: tuple[int, int, int], axis: int) -> np.ndarray:
    """Unit-std, zero-mean offsets, one per row (``axis`` 0) or column (1), shared by channels."""
    _, h, w = shape
    n = h if axis == 0 else w
    offsets = rng.standard_normal(n)
    if n > 1:
        offsets -= offsets.mean()
    return offsets[:, None] if axis == 0 else offsets[None, :]


def _add_pattern(
    clean: np.ndarray,
    amplitude: float,
    draw: Callable[[np.random.Generator, tuple[int, int, int]], np.ndarray],
    seed: int | np.random.Generator | None,
) -> np.ndarray:
    """``clean`` plus ``amplitude`` times the pattern ``draw(rng, (C, H, W))`` (broadcast)."""
    arr = _as_image(clean)
    amplitude = _check_positive(amplitude, "amplitude", allow_zero=True)
    chw = _chw(arr)
    pattern = draw(np.random.default_rng(seed), chw.shape)
    return (chw + amplitude * pattern).astype(arr.dtype).reshape(arr.shape)


def hot_cold_pixels(
    clean: np.ndarray,
    *,
    fraction: float,
    seed: int | np.random.Generator | None = None,
    hot_level: float | None = None,
    cold_level: float = 0.0,
    cold_share: float = 0.3,
) -> np.ndarray:
    """Defective pixels: some stuck hot (saturated), some cold (dead, at the bias level).

    Exactly ``round(fraction * H * W)`` pixel positions are picked without replacement; a
    share ``cold_share`` of them is set to ``cold_level`` and the rest to ``hot_level``, in all
    channels.

    Parameters
    ----------
    clean : ndarray
        ``(C, H, W)`` or ``(H, W)`` linear image. NaN pixels stay NaN even when picked.
    fraction : float
        Fraction of pixel positions affected, in [0, 1].
    seed : int, numpy.random.Generator or None, optional
        Seed for ``np.random.default_rng``.
    hot_level : float or None, optional
        Value of a hot pixel. None: the largest finite value of ``clean`` (what this image
        saturates at), so that the model works at any flux scaling.
    cold_level : float, optional
        Value of a cold pixel; 0 (the bias level of bias-subtracted data) by default.
    cold_share : float, optional
        Share of the defective pixels that are cold, in [0, 1].

    Returns
    -------
    ndarray
        Image with defects, same shape and floating dtype as ``clean``.
    """
    arr = _as_image(clean)
    fraction = _check_probability(fraction, "fraction")
    cold_share = _check_probability(cold_share, "cold_share")
    if hot_level is None:
        finite = arr[np.isfinite(arr)]
        hot_level = float(finite.max()) if finite.size else 1.0
    for value, name in ((hot_level, "hot_level"), (cold_level, "cold_level")):
        if not math.isfinite(float(value)):
            msg = f"{name} must be finite, got {value}"
            raise ValueError(msg)
    rng = np.random.default_rng(seed)
    out = _chw(arr).copy()
    _, h, w = out.shape
    n = round(fraction * h * w)
    flat = rng.choice(h * w, size=n, replace=False)
    n_cold = round(cold_share * n)
    cold, hot = flat[:n_cold], flat[n_cold:]
    plane = out.reshape(out.shape[0], h * w)
    plane[:, hot] = hot_level
    plane[:, cold] = cold_level
    out = out.reshape(arr.shape)
    return _keep_nans(out, arr)
