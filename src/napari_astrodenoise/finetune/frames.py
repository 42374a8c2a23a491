"""Sub-exposures for fine-tuning: reading, the checks that refuse bad input, noise correlation.

A frame is a path to a FITS file (its first image HDU) or a 2-D array. Everything here runs
before any training and raises a one-line :class:`ValueError` that names the frame and what
is wrong with it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.ndimage import uniform_filter

from napari_astrodenoise.core.noiselevel import finite_sample, noise_sigma

#: a plane (a mono frame, or one colour sub-plane of a mosaic) must be at least this wide
MIN_PLANE_SIDE = 64
#: frames with less than this fraction of finite pixels are refused
MIN_FINITE_FRACTION = 0.5
#: neighbour correlation of the high-pass sky residual above which noise counts as correlated
MAX_WHITE_CORRELATION = 0.15
#: header cards that must agree between frames when both carry them
_SAME_CARDS = ("INSTRUME", "EXPTIME", "XBINNING", "YBINNING")


@dataclass
class SubExposure:
    """One raw sub-exposure as fine-tuning uses it.

    Attributes
    ----------
    data : ndarray
        (H, W) float32, linear, NaN kept.
    name : str
        File stem, or ``"array <k>"`` for an array.
    sha256 : str or None
        The file's sha256 (None for an array).
    bayer_pattern : str or None
        ``BAYERPAT`` of a raw one-shot-colour mosaic (``"RGGB"``...), None for mono.
    cards : dict
        The header cards that must agree between frames (INSTRUME, EXPTIME, ...), as found.
    """

    data: np.ndarray
    name: str
    sha256: str | None = None
    bayer_pattern: str | None = None
    cards: dict = field(default_factory=dict)

    def record(self) -> dict:
        """JSON-ready description for the model's provenance."""
        out: dict = {"name": self.name, "shape": list(self.data.shape)}
        if self.sha256 is not None:
            out["sha256"] = self.sha256
        if self.bayer_pattern:
            out["bayer_pattern"] = self.bayer_pattern
        out.update({k.lower(): v for k, v in self.cards.items()})
        return out


def load_frames(
    frames: Sequence[str | os.PathLike | np.ndarray], *, bayer: bool | str | None = None
) -> list[SubExposure]:
    """Read frames given as FITS, XISF or TIFF paths, or as arrays.

    Parameters
    ----------
    frames : sequence of path-like or ndarray
        FITS, XISF or TIFF files (the first image is used) or 2-D arrays.
    bayer : bool, str or None, optional
        None (default): mosaics are those whose FITS header has ``BAYERPAT`` (arrays are
        mono). True or a pattern name (``"RGGB"``): every frame is a raw Bayer mosaic.
        False: every frame is mono, whatever the header says.

    Returns
    -------
    list of SubExposure

    Raises
    ------
    ValueError
        A file cannot be read, or a frame is not 2-D.
    """
    from napari_astrodenoise.core.weights import sha256_file
    from napari_astrodenoise.fits_io import fits_stem
    from napari_astrodenoise.image_io import read_image

    if isinstance(frames, (str, os.PathLike, np.ndarray)):
        frames = [frames]
    out = []
    for k, frame in enumerate(frames):
        if isinstance(frame, (str, os.PathLike)):
            image = read_image(frame)[0]
            cards = {c: _card(image.header, c) for c in _SAME_CARDS if c in image.header}
            sub = SubExposure(
                data=np.asarray(image.data, dtype=np.float32),
                name=fits_stem(frame),
                sha256=sha256_file(Path(frame)),
                bayer_pattern=image.bayer_pattern,
                cards=cards,
            )
        else:
            sub = SubExposure(data=np.asarray(frame, dtype=np.float32), name=f"array {k}")
        if sub.data.ndim != 2:
            msg = (
                f"frame {sub.name} has shape {sub.data.shape}: fine-tuning takes 2-D mono "
                "frames or raw Bayer mosaics, not colour cubes"
            )
            raise ValueError(msg)
        if isinstance(bayer, str):
            sub.bayer_pattern = bayer.strip().upper()
        elif bayer is True:
            sub.bayer_pattern = sub.bayer_pattern or "unknown"
        elif bayer is False:
            sub.bayer_pattern = None
        out.append(sub)
    return out


def _card(header: object, key: str) -> object:
    value = header[key]
    if isinstance(value, (bool, int, float)):
        return value
    return str(value).strip()


def check_frames(frames: Sequence[SubExposure], *, single: bool = False) -> None:
    """Refuse frames that cannot be fine-tuned on, with a one-line message.

    Checks: the count (one frame with ``single``, two or more without), one shape, one
    camera, exposure and binning where headers carry them, all mosaics or all mono, each
    plane at least ``MIN_PLANE_SIDE`` px, at least half the pixels finite, not constant.

    Raises
    ------
    ValueError
    """
    if single and len(frames) != 1:
        msg = f"single-frame fine-tuning takes exactly one frame, got {len(frames)}"
        raise ValueError(msg)
    if not single and len(frames) < 2:
        msg = (
            f"fine-tuning needs two or more sub-exposures of one target, got {len(frames)}; "
            "for one frame use single=True"
        )
        raise ValueError(msg)
    first = frames[0]
    for other in frames[1:]:
        _check_same(first, other)
    cell = 2 if first.bayer_pattern else 1
    h, w = first.data.shape
    if min(h, w) < MIN_PLANE_SIDE * cell:
        kind = "Bayer mosaics" if cell == 2 else "frames"
        msg = f"frames are {h}x{w} px: {kind} must be at least {MIN_PLANE_SIDE * cell} px wide"
        raise ValueError(msg)
    for frame in frames:
        _check_content(frame)


def _check_same(a: SubExposure, b: SubExposure) -> None:
    if a.data.shape != b.data.shape:
        msg = (
            f"frames must all have one shape: {a.name} is {a.data.shape}, "
            f"{b.name} is {b.data.shape}"
        )
        raise ValueError(msg)
    if bool(a.bayer_pattern) != bool(b.bayer_pattern) or (
        a.bayer_pattern and b.bayer_pattern and a.bayer_pattern != b.bayer_pattern
    ):
        msg = (
            f"frames must share one Bayer pattern: {a.name} has {a.bayer_pattern or 'none'}, "
            f"{b.name} has {b.bayer_pattern or 'none'}"
        )
        raise ValueError(msg)
    for card in _SAME_CARDS:
        if card in a.cards and card in b.cards and a.cards[card] != b.cards[card]:
            msg = (
                f"frames must come from one camera and exposure: {card} is "
                f"{a.cards[card]!r} in {a.name} but {b.cards[card]!r} in {b.name}"
            )
            raise ValueError(msg)


def _check_content(frame: SubExposure) -> None:
    finite = np.isfinite(frame.data)
    fraction = float(finite.mean())
    if fraction < MIN_FINITE_FRACTION:
        msg = (
            f"frame {frame.name} is {1 - fraction:.0%} NaN or inf: "
            f"at least {MIN_FINITE_FRACTION:.0%} of its pixels must be finite"
        )
        raise ValueError(msg)
    sample = finite_sample(frame.data)
    if sample.size == 0 or float(sample.max()) == float(sample.min()):
        msg = f"frame {frame.name} is constant: there is no signal or noise to learn from"
        raise ValueError(msg)
    for k, plane in enumerate(split_planes(frame.data, bayer=bool(frame.bayer_pattern))):
        if not noise_sigma(plane)[0] > 0:
            where = f" (colour sub-plane {k})" if frame.bayer_pattern else ""
            msg = f"frame {frame.name}{where} has no measurable pixel-to-pixel noise"
            raise ValueError(msg)


def split_planes(data: np.ndarray, *, bayer: bool) -> np.ndarray:
    """(H, W) frame -> (P, H', W') float32 planes: (1, H, W) mono, (4, H/2, W/2) a mosaic.

    A mosaic is cropped to even H and W first; plane ``2 * dy + dx`` holds the pixels at
    row parity ``dy`` and column parity ``dx``, so each plane is one colour filter.
    """
    data = np.asarray(data, dtype=np.float32)
    if not bayer:
        return data[np.newaxis]
    h, w = data.shape
    even = data[: h - h % 2, : w - w % 2]
    h2, w2 = even.shape[0] // 2, even.shape[1] // 2
    return np.ascontiguousarray(even.reshape(h2, 2, w2, 2).transpose(1, 3, 0, 2)).reshape(
        4, h2, w2
    )


def noise_correlation(plane: np.ndarray) -> float:
    """Correlation of neighbouring pixels' noise on the sky, the larger of the two axes.

    The residual of a 5 x 5 box mean is taken on the faintest half of the pixels (by that
    box mean), outliers beyond 4 sigma (stars, hot pixels) left out; the correlation
    coefficient of horizontal and of vertical neighbours is measured. White noise gives
    about -0.04 (the box mean's own share); debayered, resampled or stacked data 0.2 to 0.7.

    Parameters
    ----------
    plane : ndarray
        (H, W) linear data of one colour plane; NaN and inf ignored.

    Returns
    -------
    float
        NaN when fewer than 1000 usable neighbour pairs are found.
    """
    x = np.asarray(plane, dtype=np.float64)
    finite = np.isfinite(x)
    fill = float(np.median(x[finite])) if finite.any() else 0.0
    x = np.where(finite, x, fill)
    smooth = uniform_filter(x, size=5, mode="reflect")
    residual = x - smooth
    ok = finite & (smooth <= np.quantile(smooth[finite], 0.5))
    r = residual[ok]
    mad = np.median(np.abs(r - np.median(r))) * 1.4826
    if not mad > 0:
        return float("nan")
    ok &= np.abs(residual) < 4.0 * mad
    rho = []
    for a, b, m1, m2 in (
        (residual[:, :-1], residual[:, 1:], ok[:, :-1], ok[:, 1:]),
        (residual[:-1], residual[1:], ok[:-1], ok[1:]),
    ):
        both = m1 & m2
        if both.sum() < 1000:
            continue
        u, v = a[both], b[both]
        u, v = u - u.mean(), v - v.mean()
        rho.append(float(np.sum(u * v) / np.sqrt(np.sum(u * u) * np.sum(v * v))))
    return max(rho) if rho else float("nan")


def check_white_noise(frame: SubExposure) -> float:
    """Refuse a frame whose noise is spatially correlated (single-frame fine-tuning).

    Returns
    -------
    float
        The largest neighbour correlation over the frame's colour planes.

    Raises
    ------
    ValueError
        Correlation above ``MAX_WHITE_CORRELATION``, or not measurable.
    """
    planes = split_planes(frame.data, bayer=bool(frame.bayer_pattern))
    rho = max(noise_correlation(p) for p in planes)
    if not np.isfinite(rho):
        msg = f"frame {frame.name}: the noise correlation cannot be measured on its sky"
        raise ValueError(msg)
    if rho > MAX_WHITE_CORRELATION:
        msg = (
            f"frame {frame.name} has spatially correlated noise (neighbour correlation "
            f"{rho:.2f} > {MAX_WHITE_CORRELATION}): debayered, resampled or stacked data "
            "cannot be fine-tuned on alone; give two or more raw sub-exposures"
        )
        raise ValueError(msg)
    return rho
