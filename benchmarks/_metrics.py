"""Image-quality and photometric metrics shared by the evaluation benchmarks.

Everything here compares an image against a clean reference of the same shape: mono
``(H, W)`` or colour ``(C, H, W)``, float, linear, in the reference's own units. Definitions
(used by ``evaluate.py`` and ``faithfulness.py`` and pinned by ``tests/benchmarks``):

- **PSNR** ``10 log10(L**2 / MSE)`` on the linear data, over all pixels and channels, with
  ``L = robust_range(clean)``, the 0.1st to 99.9th percentile span of the clean image, so
  that one hot pixel or saturated core does not set the scale. Identical images give inf.
- **asinh stretch** ``asinh((x - sky) / soft) / asinh((top - sky) / soft)``: the display
  stretch of the figures and the scale of the stretched PSNR and SSIM; ``sky``, ``soft`` and
  ``top`` come from the clean image and the case's noise and are the same for every method.
- **SSIM** scikit-image's ``structural_similarity`` with Gaussian weights (sigma 1.5, as in
  Wang et al. 2004), channels averaged.
- **Stars** DAOStarFinder (photutils) on the luminance (channel mean), one absolute threshold
  and one FWHM per case for the clean image and every output. **Recall**: the fraction of
  clean-image stars with an output detection within 1.5 px. **Spurious**: output detections
  with no clean-image star within 2 px.
- **Star flux** circular-aperture sums (radius 1.5 FWHM, at least 2 px) at the clean-image
  star positions, minus the sigma-clipped median of an annulus from 3 to 5 FWHM times the
  aperture area, on the luminance. The flux error is the median of
  ``|flux_out / flux_clean - 1|`` over the photometry sample: clean-image stars that are
  unsaturated, isolated (no other clean star within 3 FWHM) and whose annulus lies inside
  the frame. The signed median (the bias) is returned too.
- **Chroma** of a colour image: the mean over a pixel mask of the standard deviation across
  channels divided by the mean over the mask of the channel mean, on sky-subtracted channels
  smoothed with a Gaussian of sigma 3 px (so that pixel noise does not read as colour).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

#: clean-star to output-detection radius for recall (px)
RECALL_RADIUS = 1.5
#: output detection to clean-star radius below which a detection is not spurious (px)
SPURIOUS_RADIUS = 2.0
#: aperture radius and background annulus, in FWHM
APERTURE_FWHM = 1.5
ANNULUS_FWHM = (3.0, 5.0)
#: smallest aperture radius in pixels (undersampled stars)
MIN_APERTURE_PX = 2.0
#: Gaussian smoothing (px) of the channels before chroma is measured
CHROMA_SMOOTH = 3.0
#: percentiles of the clean image that define the PSNR data range
RANGE_PERCENTILES = (0.1, 99.9)


# ------------------------------------------------------------------------------ basics


def luminance(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` float64 luminance: the image itself for mono, the channel mean for colour.

    Parameters
    ----------
    image : ndarray
        ``(H, W)`` or ``(C, H, W)`` linear image.

    Returns
    -------
    ndarray
        ``(H, W)`` float64.
    """
    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim == 3:
        return arr.mean(axis=0)
    if arr.ndim != 2:
        msg = f"image must be (H, W) or (C, H, W), got shape {arr.shape}"
        raise ValueError(msg)
    return arr


def robust_range(clean: np.ndarray) -> float:
    """PSNR data range: the 0.1st to 99.9th percentile span of the finite clean pixels.

    Parameters
    ----------
    clean : ndarray
        Reference image, any shape; NaN and inf are ignored.

    Returns
    -------
    float
        The span, > 0 (1.0 for a constant image).
    """
    arr = np.asarray(clean, dtype=np.float64)
    lo, hi = np.percentile(arr[np.isfinite(arr)], RANGE_PERCENTILES)
    span = float(hi - lo)
    return span if span > 0 else 1.0


def psnr(reference: np.ndarray, test: np.ndarray, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range**2 / MSE)``.

    Parameters
    ----------
    reference, test : ndarray
        Same shape; pixels non-finite in either are ignored.
    data_range : float
        The signal span ``L`` (> 0), e.g. :func:`robust_range` of the reference.

    Returns
    -------
    float
        PSNR in dB; ``inf`` when the images are identical.
    """
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(test, dtype=np.float64)
    if ref.shape != out.shape:
        msg = f"reference and test must have one shape, got {ref.shape} and {out.shape}"
        raise ValueError(msg)
    if not data_range > 0:
        msg = f"data_range must be > 0, got {data_range}"
        raise ValueError(msg)
    ok = np.isfinite(ref) & np.isfinite(out)
    mse = float(np.mean((ref[ok] - out[ok]) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


@dataclass(frozen=True)
class Stretch:
    """The asinh display stretch of one case (see the module docstring).

    Attributes
    ----------
    sky : ndarray
        ``(C,)`` per-channel sky level (by default the clean image's channel medians).
    softening : float
        Linear range of the asinh, in the image's units (the case's sky noise).
    top : float
        Level that maps to 1 (the clean luminance's 99.9th percentile).
    """

    sky: np.ndarray
    softening: float
    top: float

    @classmethod
    def fit(cls, clean: np.ndarray, softening: float, sky: np.ndarray | None = None) -> Stretch:
        """The stretch of a clean image for a case whose sky noise is ``softening``.

        ``sky`` is the per-channel sky level; the clean image's channel medians when None.
        """
        chw = _chw(clean)
        if sky is None:
            sky = np.median(chw.reshape(chw.shape[0], -1), axis=1)
        sky = np.asarray(sky, dtype=np.float64).reshape(-1)
        lum = luminance(clean) - float(np.mean(sky))
        top = float(np.percentile(lum, RANGE_PERCENTILES[1]))
        return cls(sky=sky.astype(np.float64), softening=float(softening), top=max(top, 1e-30))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Stretched image, same shape, float64; sky at 0, ``top`` at 1."""
        chw = _chw(image).astype(np.float64)
        norm = np.arcsinh(self.top / self.softening)
        out = np.arcsinh((chw - self.sky[:, None, None]) / self.softening) / norm
        return out.reshape(np.shape(image))


def ssim(reference: np.ndarray, test: np.ndarray, data_range: float) -> float:
    """Structural similarity (Gaussian-weighted, sigma 1.5), channels averaged.

    Parameters
    ----------
    reference, test : ndarray
        ``(H, W)`` or ``(C, H, W)``, same shape.
    data_range : float
        Span of the reference's values.

    Returns
    -------
    float
    """
    from skimage.metrics import structural_similarity

    ref = np.asarray(reference, dtype=np.float64)
    return float(
        structural_similarity(
            ref,
            np.asarray(test, dtype=np.float64),
            data_range=data_range,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            channel_axis=0 if ref.ndim == 3 else None,
        )
    )


def _chw(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    return arr[np.newaxis] if arr.ndim == 2 else arr


# ------------------------------------------------------------------------------ stars


def find_stars(image: np.ndarray, *, threshold: float, fwhm: float) -> np.ndarray:
    """Positions of the stars DAOStarFinder finds on the luminance.

    Parameters
    ----------
    image : ndarray
        ``(H, W)`` or ``(C, H, W)`` linear image.
    threshold : float
        Absolute detection threshold in the image's units (photutils scales it by the
        kernel's relative error, as DAOFIND does); the same for every image compared.
    fwhm : float
        FWHM of the detection kernel in pixels.

    Returns
    -------
    ndarray
        ``(N, 2)`` float64 ``(x, y)`` positions (column, row), sorted by row then column;
        ``(0, 2)`` when nothing is found.
    """
    from photutils.detection import DAOStarFinder

    lum = luminance(image)
    lum = lum - float(np.median(lum))
    finder = DAOStarFinder(threshold=float(threshold), fwhm=float(fwhm), exclude_border=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no sources were found" is an answer here
        table = finder(lum)
    if table is None or len(table) == 0:
        return np.zeros((0, 2))
    xy = np.column_stack([np.asarray(table["x_centroid"]), np.asarray(table["y_centroid"])])
    return xy[np.lexsort((xy[:, 0], xy[:, 1]))]


def _nearest(reference: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Distance from each ``query`` point to its nearest ``reference`` point (inf if none)."""
    if len(query) == 0:
        return np.zeros(0)
    if len(reference) == 0:
        return np.full(len(query), np.inf)
    dist, _ = cKDTree(reference).query(query, k=1)
    return np.asarray(dist, dtype=np.float64)


def star_recall(clean_xy: np.ndarray, test_xy: np.ndarray, radius: float = RECALL_RADIUS) -> float:
    """Fraction of clean-image stars re-detected in the test image within ``radius`` px.

    Returns
    -------
    float
        In [0, 1]; NaN when the clean image has no star.
    """
    clean_xy = np.asarray(clean_xy, dtype=np.float64).reshape(-1, 2)
    if len(clean_xy) == 0:
        return float("nan")
    found = _nearest(np.asarray(test_xy, dtype=np.float64).reshape(-1, 2), clean_xy) <= radius
    return float(found.mean())


def spurious_stars(
    clean_xy: np.ndarray, test_xy: np.ndarray, radius: float = SPURIOUS_RADIUS
) -> int:
    """Number of test-image detections with no clean-image star within ``radius`` px."""
    test_xy = np.asarray(test_xy, dtype=np.float64).reshape(-1, 2)
    dist = _nearest(np.asarray(clean_xy, dtype=np.float64).reshape(-1, 2), test_xy)
    return int(np.count_nonzero(dist > radius))


def aperture_radii(fwhm: float) -> tuple[float, float, float]:
    """(aperture radius, annulus inner, annulus outer) in pixels for a FWHM."""
    r = max(APERTURE_FWHM * fwhm, MIN_APERTURE_PX)
    return r, max(ANNULUS_FWHM[0] * fwhm, r + 2.0), max(ANNULUS_FWHM[1] * fwhm, r + 5.0)


def aperture_fluxes(image: np.ndarray, xy: np.ndarray, *, fwhm: float) -> np.ndarray:
    """Local-background-subtracted aperture sums of the luminance at ``xy``.

    Parameters
    ----------
    image : ndarray
        ``(H, W)`` or ``(C, H, W)`` linear image.
    xy : ndarray
        ``(N, 2)`` positions (column, row).
    fwhm : float
        Sets the aperture and annulus radii (:func:`aperture_radii`).

    Returns
    -------
    ndarray
        ``(N,)`` float64 fluxes in the image's units times pixels.
    """
    from astropy.stats import SigmaClip
    from photutils.aperture import (
        ApertureStats,
        CircularAnnulus,
        CircularAperture,
        aperture_photometry,
    )

    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if len(xy) == 0:
        return np.zeros(0)
    lum = luminance(image)
    r, r_in, r_out = aperture_radii(fwhm)
    aperture = CircularAperture(xy, r=r)
    annulus = CircularAnnulus(xy, r_in=r_in, r_out=r_out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        local = ApertureStats(lum, annulus, sigma_clip=SigmaClip(sigma=3.0, maxiters=5)).median
    total = np.asarray(aperture_photometry(lum, aperture)["aperture_sum"], dtype=np.float64)
    return total - np.asarray(local, dtype=np.float64) * aperture.area


def photometry_sample(
    clean_xy: np.ndarray,
    shape: tuple[int, int],
    *,
    fwhm: float,
    saturated: np.ndarray | None = None,
) -> np.ndarray:
    """Indices of the clean-image stars used for the flux error.

    Kept: stars whose background annulus lies inside the frame, with no other clean star
    within 3 FWHM (``2 x`` the aperture radius), and no saturated pixel inside the aperture.

    Parameters
    ----------
    clean_xy : ndarray
        ``(N, 2)`` clean-image star positions.
    shape : tuple of int
        ``(H, W)`` of the image.
    fwhm : float
        The case's FWHM in pixels.
    saturated : ndarray of bool, optional
        ``(H, W)`` mask of saturated (clipped) pixels of the clean image.

    Returns
    -------
    ndarray
        Integer indices into ``clean_xy``.
    """
    xy = np.asarray(clean_xy, dtype=np.float64).reshape(-1, 2)
    if len(xy) == 0:
        return np.zeros(0, dtype=int)
    r, _r_in, r_out = aperture_radii(fwhm)
    h, w = shape
    inside = (
        (xy[:, 0] >= r_out) & (xy[:, 0] <= w - 1 - r_out)
        & (xy[:, 1] >= r_out) & (xy[:, 1] <= h - 1 - r_out)
    )  # fmt: skip
    isolated = np.ones(len(xy), dtype=bool)
    if len(xy) > 1:
        dist, _ = cKDTree(xy).query(xy, k=2)
        isolated = dist[:, 1] > 2.0 * r
    keep = inside & isolated
    if saturated is not None and np.any(saturated):
        # any saturated pixel within the aperture radius (+1 px) of the star
        grown = ndimage.binary_dilation(saturated, structure=_disk(int(np.ceil(r)) + 1))
        iy = np.clip(np.rint(xy[:, 1]).astype(int), 0, h - 1)
        ix = np.clip(np.rint(xy[:, 0]).astype(int), 0, w - 1)
        keep &= ~grown[iy, ix]
    return np.flatnonzero(keep)


def _disk(radius: int) -> np.ndarray:
    d = np.arange(-radius, radius + 1)
    return (d[:, None] ** 2 + d[None, :] ** 2) <= radius * radius


def flux_error(
    clean: np.ndarray, test: np.ndarray, xy: np.ndarray, *, fwhm: float
) -> tuple[float, float]:
    """Median absolute and median signed relative flux change at ``xy``.

    Parameters
    ----------
    clean, test : ndarray
        Same shape, ``(H, W)`` or ``(C, H, W)``.
    xy : ndarray
        ``(N, 2)`` star positions, e.g. the clean stars picked by :func:`photometry_sample`.
    fwhm : float
        The case's FWHM.

    Returns
    -------
    (float, float)
        ``median |f_test / f_clean - 1|`` and ``median (f_test / f_clean - 1)``; NaN when
        no star has a positive clean flux.
    """
    f_clean = aperture_fluxes(clean, xy, fwhm=fwhm)
    f_test = aperture_fluxes(test, xy, fwhm=fwhm)
    ok = f_clean > 0
    if not ok.any():
        return float("nan"), float("nan")
    rel = f_test[ok] / f_clean[ok] - 1.0
    return float(np.median(np.abs(rel))), float(np.median(rel))


def estimate_fwhm(
    clean: np.ndarray,
    *,
    threshold: float,
    saturated: np.ndarray | None = None,
    n_stars: int = 40,
    default: float = 2.5,
) -> float:
    """Typical stellar FWHM of an image: the median Gaussian fit to its brightest stars.

    Parameters
    ----------
    clean : ndarray
        ``(H, W)`` or ``(C, H, W)`` image.
    threshold : float
        Detection threshold for the candidate stars (absolute, the image's units).
    saturated : ndarray of bool, optional
        ``(H, W)`` mask of clipped pixels; stars touching it are skipped.
    n_stars : int, optional
        How many of the brightest isolated, unsaturated stars are fitted.
    default : float, optional
        Returned when fewer than three stars can be fitted.

    Returns
    -------
    float
        FWHM in pixels, clipped to [1, 10].
    """
    from photutils.psf import fit_fwhm

    lum = luminance(clean)
    xy = find_stars(clean, threshold=threshold, fwhm=default)
    keep = photometry_sample(xy, lum.shape, fwhm=default, saturated=saturated)
    xy = xy[keep]
    if len(xy) < 3:
        return float(default)
    peaks = ndimage.map_coordinates(lum, [xy[:, 1], xy[:, 0]], order=1)
    xy = xy[np.argsort(peaks)[::-1][:n_stars]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fwhm = fit_fwhm(lum - float(np.median(lum)), xypos=xy, fit_shape=7, fwhm=default)
    fwhm = np.asarray(fwhm, dtype=np.float64)
    fwhm = fwhm[np.isfinite(fwhm) & (fwhm > 0.5) & (fwhm < 20)]
    if len(fwhm) < 3:
        return float(default)
    return float(np.clip(np.median(fwhm), 1.0, 10.0))


# ------------------------------------------------------------------------------ colour


def chroma(
    image: np.ndarray, *, sky: np.ndarray, mask: np.ndarray, smooth: float = CHROMA_SMOOTH
) -> float:
    """Mean colour saturation of a colour image over a pixel mask.

    ``mean_mask(std_c(x_c)) / mean_mask(mean_c(x_c))`` with ``x_c`` the sky-subtracted
    channel smoothed by a Gaussian of sigma ``smooth`` px.

    Parameters
    ----------
    image : ndarray
        ``(C, H, W)`` colour image, C >= 2.
    sky : ndarray
        ``(C,)`` per-channel sky level subtracted first (the original's, for every image
        compared).
    mask : ndarray of bool
        ``(H, W)`` pixels to average over (e.g. star-free bright nebulosity).
    smooth : float, optional
        Gaussian sigma in pixels (0: none).

    Returns
    -------
    float
        NaN for a mono image, an empty mask or a non-positive mean signal.
    """
    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[0] < 2 or not np.any(mask):
        return float("nan")
    chans = arr - np.asarray(sky, dtype=np.float64)[:, None, None]
    if smooth > 0:
        chans = np.stack([ndimage.gaussian_filter(c, smooth) for c in chans])
    spread = chans.std(axis=0)[mask].mean()
    level = chans.mean(axis=0)[mask].mean()
    return float(spread / level) if level > 0 else float("nan")


def peak_ratio(reference: np.ndarray, image: np.ndarray, *, sky: np.ndarray) -> float:
    """Brightest pixel of ``image`` above the sky, relative to the reference's.

    ``max(image - sky) / max(reference - sky)`` over all pixels and channels. 1 when the
    brightest core is kept; above 1 when a denoiser sharpens or brightens it (a core that
    grows pass after pass in the iterated test), below 1 when it flattens it.

    Parameters
    ----------
    reference, image : ndarray
        ``(H, W)`` or ``(C, H, W)`` linear images of one shape.
    sky : ndarray
        ``(C,)`` per-channel sky level of the reference, subtracted from both.

    Returns
    -------
    float
        NaN when the reference has no pixel above its sky.
    """
    ref, img = _chw(reference), _chw(image)
    if ref.shape != img.shape:
        msg = f"images differ in shape: {ref.shape} and {img.shape}"
        raise ValueError(msg)
    level = np.asarray(sky, dtype=np.float64).reshape(-1, 1, 1)
    top = float(np.nanmax(ref - level))
    return float(np.nanmax(img - level)) / top if top > 0 else float("nan")


def star_chroma(image: np.ndarray, xy: np.ndarray, *, fwhm: float) -> float:
    """Median colour saturation of stars: ``std_c(F_c) / mean_c(F_c)`` of aperture fluxes.

    Parameters
    ----------
    image : ndarray
        ``(C, H, W)`` colour image, C >= 2.
    xy : ndarray
        ``(N, 2)`` star positions (e.g. the original's photometry sample).
    fwhm : float
        Sets the apertures (:func:`aperture_radii`).

    Returns
    -------
    float
        Median over the stars whose channel fluxes have a positive mean; NaN for a mono image
        or no such star.
    """
    arr = np.asarray(image, dtype=np.float64)
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if arr.ndim != 3 or arr.shape[0] < 2 or len(xy) == 0:
        return float("nan")
    fluxes = np.stack([aperture_fluxes(c, xy, fwhm=fwhm) for c in arr])
    mean = fluxes.mean(axis=0)
    ok = mean > 0
    if not ok.any():
        return float("nan")
    return float(np.median(fluxes[:, ok].std(axis=0) / mean[ok]))
