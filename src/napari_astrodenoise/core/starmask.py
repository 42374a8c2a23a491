"""Soft star mask and star detection on linear images, following nebulosity; numpy/scipy only.

Method (`detect_stars`, then `star_mask`):

1. Luminance: the image itself for mono, the mean of the channels for colour. Non-finite
   pixels (NaN, inf) are ignored in every statistic and never detected; they get mask 0.
2. Local background: block medians (blocks of about ``background_size / 3`` px), a median
   filter over ``background_size`` px and a bilinear upsampling. It follows nebulae and
   galaxy disks on scales larger than ``background_size``; stars, smaller, stand out of it.
   Noise: a local robust sigma (1.4826 x median absolute residual) over blocks of
   ``background_size`` px, so that bright nebulae, where shot noise is larger, do not fill
   with false detections.
3. Pass 1 finds everything significant. Its detections, grown by ``background_size / 5`` px,
   and saturated cores (a plateau at the image's maximum, or ``saturation``), grown by their
   own radius, are then kept out of two pass-2 backgrounds: one where they are replaced by
   the pass-1 background (it follows the light a source sits on, cusps included) and one
   where they are interpolated from around (the sky under a large star).
4. Detection: a pixel is a star pixel when it rises ``threshold`` sigma above the first and
   ``min_contrast`` (0.3) times the light it sits on, or ``threshold`` sigma and twice that
   light above the second (large bright stars), or is saturated; and when at least
   ``min_pixels`` (3) pixels of its 3x3 window do too, so that single hot pixels, hot pairs
   and cosmic-ray hits are not stars. Holes inside detections are filled.
5. Mask: binary dilation by ``dilation`` px, then a Gaussian feather of sigma ``feather``
   outward from the dilated footprint (the footprint stays 1), clipped to [0, 1].

Limits: a compact knot of nebulosity or a galaxy nucleus that stands out like a star (small,
high contrast) is found as one; raise ``min_contrast`` or ``threshold`` to be stricter.

A 2048x2048 image takes one to two seconds on one core. Written with scipy rather than
photutils because core keeps to numpy/scipy/astropy and it must be cheap enough to run
before every denoise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = ["StarDetections", "detect_stars", "mask_from_detections", "star_mask"]

_MAD_TO_SIGMA = 1.4826
#: A source this many times brighter than the light around it is a star, however large.
_LARGE_STAR_CONTRAST = 2.0


@dataclass
class StarDetections:
    """Stars found by `detect_stars`.

    Attributes
    ----------
    labels : ndarray
        ``(H, W)`` int32 label image: 0 is background, ``1..count`` the detections
        (footprints before dilation).
    count : int
        Number of detections; also ``len(detections)``.
    x, y : ndarray
        ``(count,)`` flux-weighted centroids (column, row), pixel centres at integers.
    flux : ndarray
        ``(count,)`` background-subtracted luminance summed over each footprint (a lower
        bound of the star's flux: wings below the threshold are left out).
    peak_snr : ndarray
        ``(count,)`` highest residual in each footprint in units of the local sigma.
    area : ndarray
        ``(count,)`` footprint area in pixels.
    background : ndarray
        ``(H, W)`` float32 local background of the luminance, interpolated from around the
        detections under them (the sky under each star); NaN where the input was not finite.
        ``flux`` and the centroids are measured above it.
    sigma : ndarray
        ``(H, W)`` float32 local per-pixel noise of the luminance.
    """

    labels: np.ndarray
    count: int
    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    peak_snr: np.ndarray
    area: np.ndarray
    background: np.ndarray
    sigma: np.ndarray

    def __len__(self) -> int:
        return self.count


# --------------------------------------------------------------------------------------------
# input handling


def _luminance(image: np.ndarray, channel_axis: int | None) -> np.ndarray:
    """``(H, W)`` float32 luminance of a mono or colour image; NaN where any channel is NaN."""
    arr = np.asarray(image)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        msg = f"image must hold real numbers, got dtype {arr.dtype}"
        raise TypeError(msg)
    if channel_axis is not None:
        if arr.ndim != 3:
            msg = f"channel_axis={channel_axis} needs a 3-D image, got shape {arr.shape}"
            raise ValueError(msg)
        if not -3 <= channel_axis < 3:
            msg = f"channel_axis must be in [-3, 2] for a 3-D image, got {channel_axis}"
            raise ValueError(msg)
        arr = np.moveaxis(arr, channel_axis, 0)
    elif arr.ndim == 3:
        if arr.shape[0] != 1:
            msg = (
                f"image of shape {arr.shape} looks like colour; pass channel_axis "
                "(0 for a (C, H, W) FITS cube, -1 for (H, W, C))"
            )
            raise ValueError(msg)
    elif arr.ndim != 2:
        msg = f"image must be (H, W), (1, H, W) or colour with channel_axis, got {arr.shape}"
        raise ValueError(msg)
    if arr.ndim == 3:
        lum = arr.astype(np.float32, copy=False).mean(axis=0, dtype=np.float32)
    else:
        lum = arr.astype(np.float32, copy=True)
    if min(lum.shape) < 3:
        msg = f"image must be at least 3x3 pixels, got {lum.shape}"
        raise ValueError(msg)
    lum[~np.isfinite(lum)] = np.nan
    return lum


def _check_options(
    threshold: float,
    background_size: int,
    min_pixels: int,
    min_contrast: float,
    saturation: float | None,
    max_star_size: int | None,
) -> None:
    if not (math.isfinite(threshold) and threshold > 0):
        msg = f"threshold must be a positive number of sigma, got {threshold}"
        raise ValueError(msg)
    if int(background_size) != background_size or background_size < 5:
        msg = f"background_size must be an integer of at least 5 pixels, got {background_size}"
        raise ValueError(msg)
    if int(min_pixels) != min_pixels or not 1 <= min_pixels <= 9:
        msg = f"min_pixels must be an integer from 1 to 9 (of a 3x3 window), got {min_pixels}"
        raise ValueError(msg)
    if not (math.isfinite(min_contrast) and min_contrast >= 0):
        msg = f"min_contrast must be a number >= 0, got {min_contrast}"
        raise ValueError(msg)
    if saturation is not None and math.isnan(saturation):
        msg = "saturation must be a level, np.inf (off) or None (auto), got NaN"
        raise ValueError(msg)
    if max_star_size is not None and (int(max_star_size) != max_star_size or max_star_size < 1):
        msg = f"max_star_size must be a positive integer or None, got {max_star_size}"
        raise ValueError(msg)


# --------------------------------------------------------------------------------------------
# background and noise


def _block_nanmedian(a: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Median of each ``block`` x ``block`` tile ignoring NaN, and the count of valid pixels.

    Edge tiles are padded with NaN. One sort along the tile axis; NaN sorts last, so the
    median of ``n`` valid values sits at positions ``(n - 1) // 2`` and ``n // 2``.
    """
    h, w = a.shape
    ny, nx = -(-h // block), -(-w // block)
    padded = np.full((ny * block, nx * block), np.nan, dtype=np.float32)
    padded[:h, :w] = a
    tiles = padded.reshape(ny, block, nx, block).transpose(0, 2, 1, 3).reshape(ny, nx, -1)
    tiles = np.sort(tiles, axis=-1)
    n = np.sum(np.isfinite(tiles), axis=-1)
    lo = np.take_along_axis(tiles, np.maximum((n - 1) // 2, 0)[..., None], axis=-1)[..., 0]
    hi = np.take_along_axis(tiles, np.maximum(n // 2, 0)[..., None], axis=-1)[..., 0]
    med = np.where(n > 0, 0.5 * (lo + hi), np.nan)
    return med, n


def _fill_nearest(mesh: np.ndarray) -> np.ndarray:
    """Replace NaN nodes by the value of the nearest finite node."""
    bad = ~np.isfinite(mesh)
    if not bad.any():
        return mesh
    if bad.all():
        return np.zeros_like(mesh)
    _, (iy, ix) = ndimage.distance_transform_edt(bad, return_indices=True)
    return mesh[iy, ix]


def upsample_blocks(
    mesh: np.ndarray, block: int, shape: tuple[int, int], *, rows: slice | None = None
) -> np.ndarray:
    """Bilinear interpolation of tile values (at tile centres) to every pixel, float32.

    ``rows`` (a slice of the full ``shape``'s rows) gives those rows only, the same values.
    """
    out = mesh.astype(np.float32)
    for axis, n in ((0, shape[0]), (1, shape[1])):
        m = out.shape[axis]
        index = np.arange(n)
        if axis == 0 and rows is not None:
            index = index[rows]
        t = np.clip((index - (block - 1) / 2.0) / block, 0.0, m - 1.0)
        i0 = np.minimum(t.astype(np.int64), max(m - 2, 0))
        f = (t - i0).astype(np.float32)
        i1 = np.minimum(i0 + 1, m - 1)
        a, b = np.take(out, i0, axis=axis), np.take(out, i1, axis=axis)
        f = f[:, None] if axis == 0 else f[None, :]
        out = a + (b - a) * f
    return out


def _smooth_map(values: np.ndarray, block: int, size: int, shape: tuple[int, int]) -> np.ndarray:
    """Median over ``size`` px of ``values`` (NaN ignored), via block medians, upsampled."""
    mesh, count = _block_nanmedian(values, block)
    mesh[count < max(1, block * block // 4)] = np.nan
    mesh = _fill_nearest(mesh)
    k = max(1, round(size / block))
    k += 1 - k % 2
    if k > 1:
        mesh = ndimage.median_filter(mesh, size=k, mode="nearest")
    return upsample_blocks(mesh, block, shape)


def _background(data: np.ndarray, size: int) -> np.ndarray:
    """Median of ``data`` over about ``size`` px, NaN ignored (filled from the nearest)."""
    return _smooth_map(data, max(1, size // 3), size, data.shape)


def _noise(
    lum: np.ndarray, background: np.ndarray, size: int, exclude: np.ndarray | None
) -> np.ndarray:
    """Local per-pixel noise: 1.4826 x median |residual| over ``size`` px tiles, floored.

    Pixels in ``exclude`` (stars) and NaN are left out. The floor is a quarter of the global
    noise, and a tiny fraction of the signal so that a noiseless image still has a finite
    threshold.
    """
    resid = np.abs(lum - background)
    if exclude is not None:
        resid[exclude] = np.nan
    sigma = _MAD_TO_SIGMA * _smooth_map(resid, size, 3 * size, lum.shape)
    finite = np.isfinite(resid)
    global_sigma = _MAD_TO_SIGMA * float(np.median(resid[finite])) if finite.any() else 0.0
    finite_lum = np.isfinite(lum)
    scale = float(np.max(np.abs(lum[finite_lum]))) if finite_lum.any() else 1.0
    floor = max(0.25 * global_sigma, 1e-6 * scale, float(np.finfo(np.float32).tiny))
    return np.maximum(sigma, floor)


# --------------------------------------------------------------------------------------------
# detection


def _fill_small_holes(detected: np.ndarray, max_hole_area: float) -> np.ndarray:
    """Fill holes of detections up to ``max_hole_area`` px (e.g. flat saturated cores).

    A hole is a connected part of the non-detected pixels that does not touch the border.
    """
    labels, n = ndimage.label(~detected)
    if n <= 1:
        return detected
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    fill = sizes <= max_hole_area
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    fill[border] = False
    fill[0] = False
    if not fill.any():
        return detected
    return detected | fill[labels]


def _above(
    lum: np.ndarray,
    background: np.ndarray,
    sigma: np.ndarray,
    threshold: float,
    contrast: float = 0.0,
    sky: float = 0.0,
) -> np.ndarray:
    """Pixels ``threshold`` sigma and ``contrast`` x (background - sky) above the background."""
    level = threshold * sigma
    if contrast > 0:
        level = np.maximum(level, contrast * (background - sky))
    with np.errstate(invalid="ignore"):
        return (lum - background) > level  # False where lum is NaN


def _clean(above: np.ndarray, min_pixels: int, hole_area: float) -> np.ndarray:
    """Keep pixels with ``min_pixels`` detected pixels in their 3x3 window; fill small holes."""
    if min_pixels > 1:
        count = ndimage.correlate(above.view(np.uint8), np.ones((3, 3), np.uint8), mode="constant")
        above = above & (count >= min_pixels)
    return _fill_small_holes(above, hole_area)


def _saturated_cores(
    lum: np.ndarray,
    saturation: float | None,
    background: np.ndarray,
    sigma: np.ndarray,
    threshold: float,
    min_pixels: int,
) -> np.ndarray:
    """Pixels at the saturation level, in groups of ``min_pixels`` in a 3x3 window.

    ``saturation`` None: the image's maximum when at least ``min_pixels`` pixels share it
    (a clipped plateau, which noise never makes). Either way the level must stand
    ``threshold`` sigma above the median background, or there is no saturation.
    """
    valid = np.isfinite(lum)
    if not valid.any():
        return np.zeros(lum.shape, dtype=bool)
    if saturation is None:
        peak = float(np.max(lum[valid]))
        level = peak - 1e-6 * abs(peak)
        if np.count_nonzero(lum >= level) < min_pixels:
            return np.zeros(lum.shape, dtype=bool)
    else:
        level = float(saturation)
    if level <= float(np.median(background)) + threshold * float(np.median(sigma)):
        return np.zeros(lum.shape, dtype=bool)  # a flat image, or a level below the sky
    with np.errstate(invalid="ignore"):
        cores = lum >= level
    return _clean(cores, min_pixels, 0.0)


def _around_cores(cores: np.ndarray, grow: int) -> np.ndarray:
    """Each saturated core grown by its own equivalent radius plus ``grow`` px.

    The halo of a saturated star scales with its clipped core; this zone is left out of the
    background, so that the background under the star is the sky around it.
    """
    zone = np.zeros(cores.shape, dtype=bool)
    labels, n = ndimage.label(cores, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return zone
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    h, w = cores.shape
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        reach = math.ceil(math.sqrt(areas[i] / math.pi)) + grow
        y0, y1 = max(sl[0].start - reach, 0), min(sl[0].stop + reach, h)
        x0, x1 = max(sl[1].start - reach, 0), min(sl[1].stop + reach, w)
        core = labels[y0:y1, x0:x1] == i
        zone[y0:y1, x0:x1] |= ndimage.distance_transform_edt(~core) <= reach
    return zone


def _select(detected: np.ndarray, max_star_size: int | None) -> tuple[np.ndarray, int]:
    """Label detections (8-connected); drop those wider than ``max_star_size``."""
    labels, n = ndimage.label(detected, structure=np.ones((3, 3), dtype=bool))
    labels = labels.astype(np.int32, copy=False)
    if n == 0 or max_star_size is None:
        return labels, n
    slices = ndimage.find_objects(labels)
    extent = np.array([max(s[0].stop - s[0].start, s[1].stop - s[1].start) for s in slices])
    keep = np.concatenate([[False], extent <= max_star_size])
    if keep[1:].all():
        return labels, n
    relabel = np.zeros(n + 1, dtype=np.int32)
    relabel[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return relabel[labels], int(keep.sum())


def detect_stars(
    image: np.ndarray,
    *,
    channel_axis: int | None = None,
    threshold: float = 5.0,
    background_size: int = 15,
    min_pixels: int = 3,
    min_contrast: float = 0.3,
    saturation: float | None = None,
    max_star_size: int | None = None,
) -> StarDetections:
    """Detect stars above a local background that follows nebulosity.

    Parameters
    ----------
    image : ndarray
        Linear image: ``(H, W)``, ``(1, H, W)``, or colour with ``channel_axis`` (a FITS cube
        is ``(3, H, W)``, ``channel_axis=0``). NaN and inf pixels are ignored in the
        background and noise statistics and are never part of a detection.
    channel_axis : int or None, optional
        Axis of the channels of a colour image; the luminance is their mean.
    threshold : float, optional
        Detection threshold in sigma of the local per-pixel noise, above the local
        background. Default 5.
    background_size : int, optional
        Scale in pixels of the local background (>= 5): structures larger than this are
        background (nebulae, galaxy disks), smaller ones can be stars. Default 15.
    min_pixels : int, optional
        A pixel is detected only when at least this many pixels of its 3x3 neighbourhood
        (itself included) are above the threshold, 1 to 9. Default 3: single hot pixels,
        hot pairs and cosmic-ray hits are not stars, while stars down to FWHM ~1.5 px pass.
    min_contrast : float, optional
        A pixel must also rise this many times the light it sits on (local background minus
        the darkest sky of the frame, its 2nd percentile) above the background. Default 0.3:
        knots of bright nebulae and the cusps of galaxy nuclei, which at high SNR rise many
        sigma above a median background, are not stars. 0 turns this off.
    saturation : float or None, optional
        Level (of the luminance) at and above which pixels are clipped; each group of such
        pixels is a star, its core and a halo as wide again are kept out of the background,
        so that large saturated stars are covered whole. None (default): the image's
        maximum, when at least ``min_pixels`` pixels share it (a clipped plateau); pass
        ``np.inf`` to turn this off.
    max_star_size : int or None, optional
        Detections whose bounding box is wider than this (px) are dropped as extended
        (knots of nebulosity, galaxy cores); the same value bounds the holes filled inside
        detections. None (default): no limit, holes up to ``4 * background_size`` wide.

    Returns
    -------
    StarDetections
        Label image, count, centroids, fluxes, peak SNR, areas, background and noise maps.
    """
    _check_options(threshold, background_size, min_pixels, min_contrast, saturation, max_star_size)
    lum = _luminance(image, channel_axis)
    hole_width = max_star_size if max_star_size is not None else 4 * background_size
    hole_area = math.pi * (hole_width / 2.0) ** 2
    detected, background, sigma = _detect(
        lum, threshold, background_size, min_pixels, min_contrast, saturation, hole_area
    )
    labels, count = _select(detected, max_star_size)
    return _measure(labels, count, lum, background, sigma)


def _detect(
    lum: np.ndarray,
    threshold: float,
    size: int,
    min_pixels: int,
    min_contrast: float,
    saturation: float | None,
    hole_area: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two passes of the module docstring: star pixels, sky under them, noise."""
    valid = np.isfinite(lum)
    # pass 1: everything significant, including extended structure, to be kept out of pass 2
    background = _background(lum, size)
    sigma = _noise(lum, background, size, None)
    first = _clean(_above(lum, background, sigma, threshold), min_pixels, hole_area) & valid
    cores = _saturated_cores(lum, saturation, background, sigma, threshold, min_pixels)
    sky_around = background
    if first.any() or cores.any():
        grow = max(2, size // 5)
        exclude = ndimage.maximum_filter(first.view(np.uint8), size=2 * grow + 1).view(bool)
        exclude |= _around_cores(cores, grow)
        # the light that detections sit on: follows nebulae, galaxy disks and cusps ...
        background = _background(np.where(exclude, background, lum), size)
        # ... and the light around them only: the sky under a large saturated star
        sky_around = _background(np.where(exclude, np.nan, lum), size)
        sigma = _noise(lum, background, size, exclude)
    sky = float(np.percentile(background, 2.0))
    detected = _above(lum, background, sigma, threshold, min_contrast, sky)
    detected |= _above(lum, sky_around, sigma, threshold, _LARGE_STAR_CONTRAST, sky)
    detected = _clean(detected | cores, min_pixels, hole_area) & valid
    return detected, sky_around, sigma


def _measure(
    labels: np.ndarray,
    count: int,
    lum: np.ndarray,
    background: np.ndarray,
    sigma: np.ndarray,
) -> StarDetections:
    """Centroids, fluxes, peak SNR and areas from the labelled pixels only (fast)."""
    flat = np.flatnonzero(labels)
    lab = labels.ravel()[flat]
    resid = (lum.ravel()[flat] - background.ravel()[flat]).astype(np.float64)
    snr = resid / sigma.ravel()[flat]
    weights = np.clip(resid, 0.0, None)
    yy, xx = np.divmod(flat, labels.shape[1])
    n = count + 1
    area = np.bincount(lab, minlength=n)[1:]
    flux = np.bincount(lab, weights=resid, minlength=n)[1:]
    wsum = np.bincount(lab, weights=weights, minlength=n)[1:]
    wsafe = np.where(wsum > 0, wsum, 1.0)
    y = np.bincount(lab, weights=weights * yy, minlength=n)[1:] / wsafe
    x = np.bincount(lab, weights=weights * xx, minlength=n)[1:] / wsafe
    peak = np.full(n, -np.inf)
    np.maximum.at(peak, lab, snr)
    return StarDetections(
        labels=labels,
        count=int(count),
        x=x,
        y=y,
        flux=flux,
        peak_snr=peak[1:],
        area=area.astype(np.int64),
        background=np.where(np.isfinite(lum), background, np.nan).astype(np.float32),
        sigma=sigma.astype(np.float32),
    )


# --------------------------------------------------------------------------------------------
# mask


def _disk(radius: int) -> np.ndarray:
    d = np.arange(-radius, radius + 1)
    return (d[:, None] ** 2 + d[None, :] ** 2) <= radius * radius + radius


def star_mask(
    image: np.ndarray, *, dilation: int = 2, feather: float = 1.5, **detection: Any
) -> np.ndarray:
    """Soft mask of the stars of a linear image, 1 on stars and 0 on sky and nebulosity.

    Parameters
    ----------
    image : ndarray
        Linear image: ``(H, W)``, ``(1, H, W)``, or colour with ``channel_axis``. NaN and inf
        pixels are ignored in the statistics and get mask 0.
    dilation : int, optional
        Radius in pixels (>= 0) by which the detected footprints grow, to cover the faint
        wings below the threshold. Default 2.
    feather : float, optional
        Sigma in pixels (>= 0) of the Gaussian edge outside the dilated footprint; 0 gives a
        hard mask. Default 1.5: the mask falls to ~0.05 about 3 px outside.
    **detection
        The keywords of `detect_stars`, with its defaults: ``channel_axis`` (0 for a FITS
        cube), ``threshold`` (sigma of the local noise, 5), ``background_size`` (15),
        ``min_pixels`` (3), ``min_contrast`` (0.3), ``saturation`` (None: a plateau at the
        maximum) and ``max_star_size`` (None).

    Returns
    -------
    ndarray
        ``(H, W)`` float32 in [0, 1]; 0 where the input is NaN or inf.
    """
    _check_mask_options(dilation, feather)
    found = detect_stars(image, **detection)
    return mask_from_detections(found, dilation=dilation, feather=feather)


def _check_mask_options(dilation: int, feather: float) -> None:
    if int(dilation) != dilation or dilation < 0:
        msg = f"dilation must be an integer number of pixels >= 0, got {dilation}"
        raise ValueError(msg)
    if not (math.isfinite(feather) and feather >= 0):
        msg = f"feather must be a sigma in pixels >= 0, got {feather}"
        raise ValueError(msg)


def mask_from_detections(
    found: StarDetections, *, dilation: int = 2, feather: float = 1.5
) -> np.ndarray:
    """Soft mask from detections already made, so a caller needing both detects once.

    Parameters
    ----------
    found : StarDetections
        From :func:`detect_stars`.
    dilation, feather
        As in :func:`star_mask`.

    Returns
    -------
    ndarray
        ``(H, W)`` float32 in [0, 1]; 0 where the input was NaN or inf.
    """
    _check_mask_options(dilation, feather)
    footprint = found.labels > 0
    if dilation > 0 and found.count:
        footprint = ndimage.binary_dilation(footprint, structure=_disk(int(dilation)))
    mask = footprint.astype(np.float32)
    if feather > 0 and found.count:
        # 2 x blur is 1 on the footprint's edge and falls smoothly outside; clip keeps the
        # inside at 1
        mask = np.clip(2.0 * ndimage.gaussian_filter(mask, feather, mode="constant"), 0, 1)
        mask = np.maximum(mask, footprint)
    mask[~np.isfinite(found.background)] = 0.0
    return mask.astype(np.float32, copy=False)
