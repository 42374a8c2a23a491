"""Registration of sub-exposures by whole-pixel shifts, the common crop, and level matching.

No pixel is ever resampled: each frame is only cropped. Shifts are found in whole pixels
(whole 2 x 2 cells for a Bayer mosaic, so that every pixel keeps its colour filter) by FFT
cross-correlation of the frames' star footprints, then checked by matching the stars
themselves: frames whose stars do not line up are refused as unrelated. Levels are matched
for sky and transparency drift by ``frame = offset + gain * reference``: the gain from the
flux ratio of the stars both frames share, the offset from the medians.

Shifts are ``(dy, dx)`` in pixels of the frames: a star at ``(y, x)`` in the reference is at
``(y + dy, x + dx)`` in the shifted frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from napari_astrodenoise.core.starmask import StarDetections, detect_stars
from napari_astrodenoise.finetune.frames import MIN_PLANE_SIDE, SubExposure, split_planes

#: stars each frame needs for a registration
MIN_STARS = 8
#: stars that must line up after the shift (and at least this share of the fewer stars)
MIN_MATCHED = 5
MIN_MATCHED_FRACTION = 0.2
#: a star lines up when its centroid lands within this many pixels (of the star image)
MATCH_RADIUS = 2.0
#: the star image clips each footprint at this many sigma so no one star dominates
_SNR_CLIP = 30.0
#: the gain is measured only where at least this many unsaturated stars are shared
_MIN_GAIN_STARS = 3
#: the significance compares the peak with the best shift at least this far (px) from it
_PEAK_EXCLUSION = 10


@dataclass(frozen=True)
class ShiftMatch:
    """The shift of one frame against the reference, and how well its stars line up.

    Attributes
    ----------
    shift : tuple of int
        ``(dy, dx)`` in pixels of the star images (cells for a mosaic).
    stars : tuple of int
        Stars found in (reference, frame).
    matched : int
        Stars that line up after the shift.
    significance : float
        Correlation peak over the highest value 10 px or more away from it (> 1; near 1:
        ambiguous). For the record only: the frames are accepted on their matched stars.
    """

    shift: tuple[int, int]
    stars: tuple[int, int]
    matched: int
    significance: float


@dataclass(frozen=True)
class Registration:
    """Whole-pixel shifts of frames against the first, and the crop that lines them up.

    Attributes
    ----------
    shifts : list of tuple of int
        ``(dy, dx)`` of each frame in its pixels (even for a mosaic); ``(0, 0)`` first.
    boxes : list of tuple of int
        ``(y0, y1, x0, x1)`` crop of each frame: cropped, all frames show the same sky.
    matches : list of ShiftMatch
        One per frame after the first.
    cell : int
        1, or 2 for a Bayer mosaic (shifts in whole 2 x 2 cells).
    detections : list of StarDetections
        Stars of each frame's star image (the cell sum for a mosaic), full frame.
    """

    shifts: list[tuple[int, int]]
    boxes: list[tuple[int, int, int, int]]
    matches: list[ShiftMatch]
    cell: int
    detections: list[StarDetections]

    def crop(self, k: int, data: np.ndarray) -> np.ndarray:
        """Frame ``k``'s (H, W) data cut to the common area (a view)."""
        y0, y1, x0, x1 = self.boxes[k]
        return data[y0:y1, x0:x1]

    def record(self) -> dict:
        """JSON-ready description for the model's provenance."""
        return {
            "method": "whole-pixel shifts, FFT cross-correlation of star footprints",
            "reference": 0,
            "cell": self.cell,
            "shifts_dy_dx": [list(s) for s in self.shifts],
            "crop_boxes_y0_y1_x0_x1": [list(b) for b in self.boxes],
            "stars": [m.stars[1] for m in self.matches],
            "reference_stars": self.detections[0].count,
            "matched_stars": [m.matched for m in self.matches],
            "peak_significance": [round(m.significance, 3) for m in self.matches],
        }


def star_image(data: np.ndarray, *, cell: int) -> np.ndarray:
    """The image stars are found on: the frame, or the sum of each 2 x 2 cell of a mosaic."""
    data = np.asarray(data, dtype=np.float32)
    if cell == 1:
        return data
    return split_planes(data, bayer=True).sum(axis=0)


def find_stars(image: np.ndarray, name: str) -> StarDetections:
    """Stars of a star image; refuses a frame with fewer than ``MIN_STARS``."""
    found = detect_stars(image)
    if found.count < MIN_STARS:
        msg = (
            f"frame {name}: only {found.count} stars found, at least {MIN_STARS} are needed "
            "to register the frames"
        )
        raise ValueError(msg)
    return found


def _footprints(found: StarDetections, image: np.ndarray) -> np.ndarray:
    """Each star's footprint weighted by its SNR, clipped; 0 elsewhere (float32)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = (image - found.background) / found.sigma
    snr = np.nan_to_num(snr, nan=0.0, posinf=0.0, neginf=0.0)
    out = np.where(found.labels > 0, np.clip(snr, 0.0, _SNR_CLIP), 0.0)
    return out.astype(np.float32)


def _correlation_peak(a: np.ndarray, b: np.ndarray) -> tuple[tuple[int, int], float]:
    """Integer ``(dy, dx)`` maximising ``sum a[y, x] b[y + dy, x + dx]``, and its significance.

    Shifts are searched up to 3/4 of each side (at least a quarter of the frame overlaps).
    """
    h, w = a.shape
    size = (2 * h, 2 * w)
    cc = np.fft.irfft2(np.conj(np.fft.rfft2(a, size)) * np.fft.rfft2(b, size), size)
    cc = np.fft.fftshift(cc)  # index (h, w) is shift (0, 0)
    my, mx = int(0.75 * h), int(0.75 * w)
    window = cc[h - my : h + my + 1, w - mx : w + mx + 1]
    iy, ix = np.unravel_index(int(np.argmax(window)), window.shape)
    peak = float(window[iy, ix])
    away = window.copy()
    r = _PEAK_EXCLUSION
    away[max(iy - r, 0) : iy + r + 1, max(ix - r, 0) : ix + r + 1] = -np.inf
    second = float(away.max())
    significance = peak / second if second > 0 else float("inf")
    return (int(iy - my), int(ix - mx)), significance


def _count_matched(ref: StarDetections, other: StarDetections, shift: tuple[int, int]) -> int:
    """Stars of ``ref`` with a star of ``other`` within ``MATCH_RADIUS`` after the shift."""
    dy, dx = shift
    tree = cKDTree(np.column_stack([other.y, other.x]))
    dist, index = tree.query(np.column_stack([ref.y + dy, ref.x + dx]), k=1)
    close = dist <= MATCH_RADIUS
    return int(np.unique(index[close]).size)


def match_shift(
    reference: StarDetections,
    ref_image: np.ndarray,
    other: StarDetections,
    other_image: np.ndarray,
    names: tuple[str, str] = ("reference", "frame"),
) -> ShiftMatch:
    """Whole-pixel shift of one star image against the reference, checked by its stars.

    Raises
    ------
    ValueError
        Too few stars line up after the best shift: the frames are unrelated (or rotated).
    """
    shift, significance = _correlation_peak(
        _footprints(reference, ref_image), _footprints(other, other_image)
    )
    matched = _count_matched(reference, other, shift)
    need = max(MIN_MATCHED, int(np.ceil(MIN_MATCHED_FRACTION * min(reference.count, other.count))))
    if matched < need:
        msg = (
            f"frames {names[0]} and {names[1]} do not show the same stars: only {matched} of "
            f"{min(reference.count, other.count)} line up (at least {need} needed); are they "
            "of one target, without rotation?"
        )
        raise ValueError(msg)
    return ShiftMatch(shift, (reference.count, other.count), matched, significance)


def register(frames: Sequence[SubExposure]) -> Registration:
    """Whole-pixel registration of frames against the first, and their common crop.

    Parameters
    ----------
    frames : sequence of SubExposure
        Checked frames (:func:`~napari_astrodenoise.finetune.frames.check_frames`), all
        mono or all mosaics.

    Returns
    -------
    Registration

    Raises
    ------
    ValueError
        Too few stars, unrelated frames, or a common area under ``MIN_PLANE_SIDE`` planes.
    """
    cell = 2 if frames[0].bayer_pattern else 1
    images = [star_image(f.data, cell=cell) for f in frames]
    found = [find_stars(image, f.name) for image, f in zip(images, frames, strict=True)]
    matches = [
        match_shift(found[0], images[0], found[k], images[k], (frames[0].name, frames[k].name))
        for k in range(1, len(frames))
    ]
    cells = [(0, 0)] + [m.shift for m in matches]
    boxes = _common_boxes(cells, images[0].shape, cell, [f.name for f in frames])
    shifts = [(dy * cell, dx * cell) for dy, dx in cells]
    return Registration(shifts, boxes, matches, cell, found)


def _common_boxes(
    cells: list[tuple[int, int]], shape: tuple[int, int], cell: int, names: list[str]
) -> list[tuple[int, int, int, int]]:
    """Crop box of each frame, in its pixels, from shifts in cells of a (h, w) star image."""
    h, w = shape
    dys, dxs = [c[0] for c in cells], [c[1] for c in cells]
    y0, y1 = max(0, -min(dys)), h - max(0, max(dys))
    x0, x1 = max(0, -min(dxs)), w - max(0, max(dxs))
    if y1 - y0 < MIN_PLANE_SIDE or x1 - x0 < MIN_PLANE_SIDE:
        worst = int(np.argmax([abs(a) + abs(b) for a, b in cells]))
        msg = (
            f"frames {names[0]} and {names[worst]} overlap on only "
            f"{max(y1 - y0, 0) * cell}x{max(x1 - x0, 0) * cell} px after registration; "
            f"at least {MIN_PLANE_SIDE * cell}x{MIN_PLANE_SIDE * cell} are needed"
        )
        raise ValueError(msg)
    return [
        (cell * (y0 + dy), cell * (y1 + dy), cell * (x0 + dx), cell * (x1 + dx))
        for dy, dx in cells
    ]


@dataclass(frozen=True)
class LevelMatch:
    """``frame = offset + gain * reference`` for one frame, per colour plane.

    Attributes
    ----------
    gain : float
        Transparency ratio (1 when too few shared unsaturated stars were found).
    offsets : tuple of float
        Per plane, in the data's units.
    stars : int
        Stars the gain was measured on.
    """

    gain: float
    offsets: tuple[float, ...]
    stars: int

    def apply(self, planes: np.ndarray) -> np.ndarray:
        """(P, H, W) planes of the frame brought to the reference's level, float32."""
        offsets = np.asarray(self.offsets, dtype=np.float32).reshape(-1, 1, 1)
        return ((planes - offsets) / np.float32(self.gain)).astype(np.float32)

    def record(self) -> dict:
        return {
            "gain": round(self.gain, 6),
            "offsets": [round(o, 6) for o in self.offsets],
            "gain_stars": self.stars,
        }


def match_levels(
    ref_planes: np.ndarray,
    planes: np.ndarray,
    ref_stars: np.ndarray,
    *,
    cell: int,
) -> LevelMatch:
    """Robust linear fit ``planes = offset + gain * ref_planes`` of two registered frames.

    The gain is the flux-weighted median ratio of the stars' background-subtracted fluxes
    (summed over each reference footprint grown by 2 px, the local background from a 3-px
    ring around it), on unsaturated stars; the offset of each plane makes the medians agree.

    Parameters
    ----------
    ref_planes, planes : ndarray
        (P, h, w) cropped planes of the reference and of the frame.
    ref_stars : ndarray
        (h, w) int label image of the reference's stars on the same crop (cells of a mosaic).
    cell : int
        1, or 2 for a mosaic (the planes are then summed into the star image).
    """
    a = ref_planes.sum(axis=0) if cell == 2 else ref_planes[0]
    b = planes.sum(axis=0) if cell == 2 else planes[0]
    gain, used = _flux_ratio(a, b, ref_stars)
    offsets = []
    for p_ref, p in zip(ref_planes, planes, strict=True):
        offsets.append(float(np.nanmedian(p)) - gain * float(np.nanmedian(p_ref)))
    return LevelMatch(gain, tuple(offsets), used)


def _flux_ratio(a: np.ndarray, b: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
    """Flux-weighted median star flux ratio b / a over unsaturated stars; (1, 0) if too few."""
    n = int(labels.max())
    if n == 0:
        return 1.0, 0
    grown = ndimage.grey_dilation(labels, size=5)
    ring = ndimage.grey_dilation(grown, size=7)
    ring[grown > 0] = 0
    index = np.arange(1, n + 1)
    stats = []
    for image in (a, b):
        clean = np.nan_to_num(image, nan=np.nanmedian(image))
        sky = ndimage.median(clean, ring, index)
        area = ndimage.sum_labels(np.ones_like(clean), grown, index)
        flux = ndimage.sum_labels(clean, grown, index) - area * np.asarray(sky)
        peak = ndimage.maximum(clean, grown, index)
        stats.append((np.asarray(flux), np.asarray(peak), float(np.nanmax(image))))
    (fa, pa, ma), (fb, pb, mb) = stats
    with np.errstate(invalid="ignore"):  # stars without a ring have a NaN sky
        keep = (fa > 0) & (fb > 0) & (pa < 0.9 * ma) & (pb < 0.9 * mb)
    if keep.sum() < _MIN_GAIN_STARS:
        return 1.0, 0
    # the median of the stars' ratios weighted by flux: bright stars count most, one star
    # hit by a cosmic ray or a hot pixel cannot move it much
    ratios, weight = fb[keep] / fa[keep], fa[keep]
    order = np.argsort(ratios)
    cumulative = np.cumsum(weight[order])
    middle = order[int(np.searchsorted(cumulative, 0.5 * cumulative[-1]))]
    return float(ratios[middle]), int(ratios.size)
