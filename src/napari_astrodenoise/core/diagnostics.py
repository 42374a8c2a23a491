"""Tile-seam diagnostics: how much a tiled result depends on where the tile edges fall.

A predictor that only looks at each pixel (``2 * x``) gives the same answer on any tile grid;
a CNN sees less context near a tile's edge, so its tiled output carries seams. `measure_seams`
measures them as the difference between the tiled result and a reference that has no seams
in the same places, and sums it up as one number in units of the image's noise sigma.
"""

from __future__ import annotations

import itertools
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np

from napari_astrodenoise.core.options import TILING, resolve
from napari_astrodenoise.core.progress import drain, relay
from napari_astrodenoise.core.tiling import (
    Predictor,
    TilePlan,
    count_batches,
    iter_tiled,
    plan_tiles,
)

__all__ = ["REFERENCES", "SeamReport", "iter_measure_seams", "measure_seams", "seam_verdict"]

REFERENCES = ("shifted", "whole")
_MODEL_MULTIPLE = 16  # the model downsamples four times; whole-image input is padded to this
#: (upper bound in noise sigmas, verdict): how a seam of that strength looks in a picture
_VERDICTS = (
    (0.05, "invisible: {s} sigma, far below the noise"),
    (0.2, "hard to see: {s} sigma, well below the noise"),
    (0.5, "may show under a hard stretch: {s} sigma, below the noise"),
    (np.inf, "visible: {s} sigma, as strong as the noise; use more overlap or the Gaussian blend"),
)


def seam_verdict(seam_sigma: float) -> str:
    """A seam strength in words, e.g. "invisible: 0.02 sigma, far below the noise".

    Parameters
    ----------
    seam_sigma : float
        ``SeamReport.seam_sigma``: the seam RMS in units of the noise sigma.
    """
    for bound, text in _VERDICTS:
        if seam_sigma < bound:
            return text.format(s=f"{seam_sigma:.2g}")
    return _VERDICTS[-1][1].format(s=f"{seam_sigma:.2g}")  # NaN


@dataclass(frozen=True)
class SeamReport:
    """The tile-seam difference map and its summary.

    Attributes
    ----------
    diff : ndarray
        (C_out, H, W) float32: tiled result minus reference, in the predictor's units.
    seam_sigma : float
        Seam strength of one tiled run in units of the noise sigma: the RMS over channels of
        ``seam_sigma_per_channel`` (see `measure_seams`). About 0 for seamless tiling; well below 1
        means seams are buried in the noise.
    noise_sigma : float
        The noise sigma used, as the RMS over channels of ``noise_sigma_per_channel``.
    reference : str
        ``"shifted"`` or ``"whole"``.
    seam_sigma_per_channel : ndarray
        (C_out,) float64 seam strength per channel, in units of that channel's noise sigma.
    noise_sigma_per_channel : ndarray
        (C_out,) float64 noise sigma per channel, in the image's units.
    peak_sigma : float
        99.9th percentile of ``|diff| / noise_sigma`` over all channels and pixels: the
        strongest seam pixels, read from the map itself (not rescaled like ``seam_sigma``).
    tile_size, overlap, blend
        The tiling that was measured.
    """

    diff: np.ndarray
    seam_sigma: float
    noise_sigma: float
    reference: str
    seam_sigma_per_channel: np.ndarray
    noise_sigma_per_channel: np.ndarray
    peak_sigma: float
    tile_size: int
    overlap: float
    blend: str


def _check_reference(reference: object) -> str:
    if reference not in REFERENCES:
        msg = f"reference must be one of {', '.join(map(repr, REFERENCES))}, got {reference!r}"
        raise ValueError(msg)
    return str(reference)


def _check_noise_sigma(noise_sigma: object) -> np.ndarray | None:
    """None, or a positive finite (n,) float64 array from a number or a sequence of numbers."""
    if noise_sigma is None:
        return None
    ok = isinstance(noise_sigma, Real | np.ndarray | Sequence) and not isinstance(
        noise_sigma, bool | str
    )
    arr = np.atleast_1d(np.asarray(noise_sigma, dtype=np.float64)) if ok else np.empty(0)
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        msg = (
            "noise_sigma must be a positive number or one positive number per channel, "
            f"got {noise_sigma!r}"
        )
        raise ValueError(msg)
    return arr


def _check_max_pixels(value: object) -> int:
    if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
        msg = f"max_whole_pixels must be a whole number of at least 1, got {value!r}"
        raise ValueError(msg)
    return int(value)


def _channel_noise(image: np.ndarray, noise_sigma: np.ndarray | None, c_out: int) -> np.ndarray:
    """Noise sigma per output channel: given, or estimated on the input image."""
    if noise_sigma is None:
        from napari_astrodenoise.core.noiselevel import noise_sigma as estimate

        sigma = np.asarray(estimate(image), dtype=np.float64)
        if not np.all(np.isfinite(sigma)) or np.any(sigma <= 0):
            msg = (
                f"could not measure the image's noise (estimated sigma {sigma.tolist()}); "
                "pass noise_sigma explicitly"
            )
            raise ValueError(msg)
        if sigma.size != c_out:  # channels change in the predictor: one pooled value
            sigma = np.full(c_out, np.sqrt(np.mean(sigma**2)))
        return sigma
    if noise_sigma.size == 1:
        return np.full(c_out, noise_sigma[0])
    if noise_sigma.size != c_out:
        msg = (
            f"noise_sigma has {noise_sigma.size} values but the predictor returns {c_out} "
            "channels; give one value or one per output channel"
        )
        raise ValueError(msg)
    return noise_sigma


def _whole_padding(n: int, context: int) -> tuple[int, int]:
    """Pad an axis by ``context`` each side, then up to a multiple of 16 (at least 32)."""
    size = n + 2 * context
    target = max(2 * _MODEL_MULTIPLE, -(-size // _MODEL_MULTIPLE) * _MODEL_MULTIPLE)
    extra = target - size
    return context + extra // 2, context + extra - extra // 2


def _check_whole_fits(shape: tuple[int, int], context: int, max_pixels: int) -> None:
    """Refuse, before any work, a whole-image reference larger than ``max_pixels``."""
    (h, w), (pad_y, pad_x) = shape, (_whole_padding(n, context) for n in shape)
    hp, wp = h + sum(pad_y), w + sum(pad_x)
    if hp * wp > max_pixels:
        msg = (
            f"a {h}x{w} image padded to {hp}x{wp} is too large for reference='whole' "
            f"(max_whole_pixels={max_pixels}); use reference='shifted'"
        )
        raise ValueError(msg)


def _whole_inference(image: np.ndarray, predictor: Predictor, context: int) -> np.ndarray:
    """Run the predictor once on the whole reflect-padded image; return (C_out, H, W)."""
    _, h, w = image.shape
    pad_y, pad_x = _whole_padding(h, context), _whole_padding(w, context)
    hp, wp = h + sum(pad_y), w + sum(pad_x)
    padded = np.pad(image, ((0, 0), pad_y, pad_x), mode="reflect")[None]
    out = np.asarray(predictor(padded), dtype=np.float32)
    del padded
    if out.ndim != 4 or out.shape[0] != 1 or out.shape[2:] != (hp, wp):
        msg = (
            f"predictor must return a (1, C_out, {hp}, {wp}) array for the whole padded "
            f"image, got shape {out.shape}"
        )
        raise ValueError(msg)
    return np.ascontiguousarray(out[0, :, pad_y[0] : pad_y[0] + h, pad_x[0] : pad_x[0] + w])


def _relay(
    gen: Generator[tuple[int, int], None, np.ndarray], done_before: int, total: int
) -> Generator[tuple[int, int], None, np.ndarray]:
    """Re-yield a tiled run's batches as steps of a longer job; return its result."""
    steps = itertools.count(done_before + 1)
    return relay(gen, lambda _item: (next(steps), total))


def iter_measure_seams(
    image: np.ndarray,
    predictor: Predictor,
    *,
    batch_size: int = 4,
    reference: str = "shifted",
    noise_sigma: float | Sequence[float] | np.ndarray | None = None,
    max_whole_pixels: int = 4096 * 4096,
    **options: Any,
) -> Generator[tuple[int, int], None, SeamReport]:
    """Map the tile seams of a tiled run and measure them in units of the noise sigma.

    The map is the tiled result minus a reference without seams in the same places:

    - ``reference="shifted"`` (default, any image size): the same tiled run on a grid
      shifted by half a stride in both axes. The map then holds the seams of both grids,
      with opposite signs.
    - ``reference="whole"``: the predictor called once on the whole image, reflect-padded
      like the tiles at the image edges and then up to a multiple of 16 (at least 32). Only
      where that fits in memory: at most ``max_whole_pixels`` padded pixels.

    Seam strength, ``seam_sigma``: per channel, the RMS of the map over all pixels, divided
    by that channel's noise sigma; for ``"shifted"`` also divided by sqrt(2), because the
    two grids' seam errors are uncorrelated and add in quadrature, so the number describes
    one tiled run and reads the same for either reference. Channels are combined by RMS.
    No border is left out: both runs pad the image edges the same way, so differences there
    are tiling effects too. The RMS is over the whole image, so it is the seam error per
    pixel; the strongest seam pixels are in ``peak_sigma``.

    Parameters
    ----------
    image : ndarray
        (C, H, W) finite data, as given to `~napari_astrodenoise.core.tiling.iter_tiled`.
    predictor : callable
        (B, C, Ht, Wt) float32 -> (B, C_out, Ht, Wt); for ``"whole"`` it also receives one
        (1, C, H', W') batch of the whole padded image.
    batch_size : int, optional
        Tiles per predictor call.
    reference : {"shifted", "whole"}, optional
        What the tiled result is compared with (see above).
    noise_sigma : float or sequence of float, optional
        Noise sigma of the image, one value or one per output channel, in the predictor's
        output units. By default estimated on ``image`` with
        `napari_astrodenoise.core.noiselevel.noise_sigma` (per channel; pooled into one value
        when the predictor changes the number of channels).
    max_whole_pixels : int, optional
        Largest padded image that ``reference="whole"`` may send in one call.

    **options
        The tiling to measure (``tile_size``, ``overlap``, ``blend``, ``sigma_scale``, see
        :data:`~napari_astrodenoise.core.options.TILING`), as for
        `~napari_astrodenoise.core.tiling.iter_tiled`.

    Yields
    ------
    (int, int)
        ``(steps_done, steps_total)``; a step is one predictor call: a batch of tiles in
        either tiled run, or the single whole-image call.

    Returns
    -------
    SeamReport
        The (C_out, H, W) float32 map ``diff``, ``seam_sigma`` and the numbers behind it.

    Raises
    ------
    ValueError
        On a bad argument, an image too large for ``"whole"``, or an image whose noise
        cannot be estimated (pass ``noise_sigma``).
    """
    reference = _check_reference(reference)
    sigma_arg = _check_noise_sigma(noise_sigma)
    max_whole_pixels = _check_max_pixels(max_whole_pixels)
    tiling = resolve(options, TILING, caller="iter_measure_seams")
    # checks the image and every option
    tiled = iter_tiled(image, predictor, batch_size=batch_size, **tiling)
    image = np.asarray(image, dtype=np.float32)
    geometry = {k: tiling[k] for k in ("tile_size", "overlap", "blend")}
    layout = plan_tiles(image.shape[1:], **geometry)
    if reference == "shifted":
        offset = (layout.stride // 2, layout.stride // 2)
        ref = iter_tiled(image, predictor, grid_offset=offset, batch_size=batch_size, **tiling)
        shifted = plan_tiles(image.shape[1:], grid_offset=offset, **geometry)
        ref_steps = count_batches(shifted, batch_size)
    else:
        _check_whole_fits(layout.shape, layout.context, max_whole_pixels)
        ref, ref_steps = None, 1
    job = _SeamJob(
        image=image,
        predictor=predictor,
        layout=layout,
        reference=reference,
        noise_sigma=sigma_arg,
        overlap=tiling["overlap"],
        blend=tiling["blend"],
    )
    return _run_seam_job(job, tiled, ref, (count_batches(layout, batch_size), ref_steps))


@dataclass(frozen=True)
class _SeamJob:
    """Checked inputs of one seam measurement."""

    image: np.ndarray
    predictor: Predictor
    layout: TilePlan
    reference: str
    noise_sigma: np.ndarray | None
    overlap: float
    blend: str


def _run_seam_job(
    job: _SeamJob,
    tiled: Generator[tuple[int, int], None, np.ndarray],
    ref: Generator[tuple[int, int], None, np.ndarray] | None,
    steps: tuple[int, int],
) -> Generator[tuple[int, int], None, SeamReport]:
    """The body of `iter_measure_seams`: both runs, their difference, its summary."""
    total = steps[0] + steps[1]
    diff = yield from _relay(tiled, 0, total)
    if ref is None:
        reference_out = _whole_inference(job.image, job.predictor, job.layout.context)
        yield total, total
    else:
        reference_out = yield from _relay(ref, steps[0], total)
    if reference_out.shape != diff.shape:
        msg = (
            f"predictor returned {reference_out.shape[0]} channels for the reference but "
            f"{diff.shape[0]} for the tiles"
        )
        raise ValueError(msg)
    diff -= reference_out
    del reference_out
    sigma = _channel_noise(job.image, job.noise_sigma, diff.shape[0])
    return _summarise(diff, sigma, job)


def _summarise(diff: np.ndarray, sigma: np.ndarray, job: _SeamJob) -> SeamReport:
    """Reduce the difference map to `SeamReport` numbers (defined in `iter_measure_seams`)."""
    # "shifted": diff = e1 - e2 holds the seam errors of two grids whose tile edges lie in
    # different places; the errors are uncorrelated, so their mean squares add.
    grids = 2.0 if job.reference == "shifted" else 1.0
    mean_sq = np.array([np.mean(np.square(c, dtype=np.float64)) for c in diff])
    per_channel = np.sqrt(mean_sq / grids) / sigma
    scaled = np.abs(diff) / sigma.astype(np.float32)[:, None, None]
    return SeamReport(
        diff=diff,
        seam_sigma=float(np.sqrt(np.mean(per_channel**2))),
        noise_sigma=float(np.sqrt(np.mean(sigma**2))),
        reference=job.reference,
        seam_sigma_per_channel=per_channel,
        noise_sigma_per_channel=sigma,
        peak_sigma=float(np.percentile(scaled, 99.9)),
        tile_size=job.layout.tile_size,
        overlap=job.overlap,
        blend=job.blend,
    )


def measure_seams(image: np.ndarray, predictor: Predictor, **kwargs: Any) -> SeamReport:
    """Map the tile seams of a tiled run and measure them: `iter_measure_seams` to the end.

    Same arguments; returns the `SeamReport`.
    """
    return drain(iter_measure_seams(image, predictor, **kwargs))
