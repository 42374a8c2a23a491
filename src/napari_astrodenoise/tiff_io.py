"""Read and write astronomical TIFF images (16-bit integer or 32-bit float) with tifffile.

Reading (:func:`read_tiff`) takes the first image series of a file when it is an astro
image: 16-bit integer or 32-bit float samples, mono (Y, X) or RGB (3 samples, interleaved
or planar). Other TIFFs (8-bit pictures, alpha, multi-page stacks) are refused, and
:func:`is_astro_tiff` lets the napari reader leave them to napari's own reader.

- Data become float32 **without rescaling**: 16-bit integers keep their ADU (0-65535),
  floats their values; ``format_info["scaling"]`` says so. NaN and inf are kept.
- Rows follow the FITS convention, as for every reader of this package: a TIFF stores the
  top row first (``Orientation`` 1), so rows are reversed on reading and ``data[0]`` is the
  bottom of the picture. Orientations 2-4 (mirrored) are honoured; 5-8 (transposed) refused.
- A FITS header in the ``ImageDescription`` (as Siril and others write it, one 80-column
  card per line or run together) becomes the image's header and WCS; any other
  description is kept as text in ``format_info["description"]``.

Writing (:func:`write_tiff`) stores float32 (or 16-bit integers with ``bits=16``, the
scaling recorded in ``T16ZERO``/``T16SCALE``: value = T16ZERO + T16SCALE * stored), top
row first, uncompressed, with the source's keywords, the ``HISTORY`` lines and the
provenance keywords as a FITS header in the ``ImageDescription``. Writes are atomic and
an existing file is replaced only with ``overwrite=True``.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning

from napari_astrodenoise.fits_io import FitsImage, ImageReadError, celestial_wcs
from napari_astrodenoise.fits_write import (
    _writable_cube,
    atomic_write,
    carried_header,
    check_target,
    history_lines,
)

__all__ = [
    "TIFF_SUFFIXES",
    "TiffReadError",
    "is_astro_tiff",
    "is_tiff_path",
    "read_tiff",
    "write_tiff",
]

#: File-name endings read as TIFF (compared case-insensitively).
TIFF_SUFFIXES: tuple[str, ...] = (".tif", ".tiff")

_ASTRO_DTYPES = (np.dtype("uint16"), np.dtype("int16"), np.dtype("float32"))
_CARD = re.compile(r"^(?:[A-Z0-9_-]{1,8} *= |HISTORY |COMMENT |END *$)")
_U16_MAX = 65535


class TiffReadError(ImageReadError):
    """A TIFF file that was taken for reading could not be read."""

    format_name = "TIFF"


def is_tiff_path(path: object) -> bool:
    """Say whether ``path`` is a str or path-like whose name ends in ``.tif``/``.tiff``."""
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    return isinstance(path, str) and path.lower().endswith(TIFF_SUFFIXES)


def is_astro_tiff(path: str | os.PathLike) -> bool:
    """Say whether a file is a TIFF that :func:`read_tiff` takes; never raises.

    Parameters
    ----------
    path : str or os.PathLike
        Any file; only its TIFF header and first directory are read.

    Returns
    -------
    bool
        True for a 16-bit integer or 32-bit float, mono or RGB image; False for other
        TIFFs and for anything that is not a readable TIFF.
    """
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return _why_not_astro(tif) is None
    except Exception:  # not a TIFF, unreadable: not ours
        return False


def _why_not_astro(tif: Any) -> str | None:
    if not tif.series:
        return "it holds no image"
    series = tif.series[0]
    if series.dtype not in _ASTRO_DTYPES:
        return f"its samples are {series.dtype}, not 16-bit integers or 32-bit floats"
    axes, shape = series.axes, tuple(series.shape)
    if axes == "YX":
        return None
    if axes in ("YXS", "SYX") and shape[axes.index("S")] == 3:
        return None
    return f"its first image has axes {axes} of shape {shape}, not mono or RGB"


def read_tiff(path: str | os.PathLike) -> list[FitsImage]:
    """Read the first image of an astronomical TIFF.

    Parameters
    ----------
    path : str or os.PathLike
        A 16-bit integer or 32-bit float, mono or RGB TIFF.

    Returns
    -------
    list of FitsImage
        One image: float32 data as stored (no rescaling), rows in the FITS order, the
        FITS header of the ``ImageDescription`` when it holds one.

    Raises
    ------
    TiffReadError
        When the file is missing, not a TIFF, unreadable, or not an astro image.
    """
    import tifffile

    path = Path(path)
    if not path.is_file():
        raise TiffReadError(path, "no such file" if not path.exists() else "not a regular file")
    try:
        with tifffile.TiffFile(path) as tif:
            reason = _why_not_astro(tif)
            if reason is not None:
                raise TiffReadError(path, f"not an astronomical image: {reason}")
            series, page = tif.series[0], tif.pages[0]
            raw = series.asarray()
            axes = series.axes
            description = page.description or ""
            orientation = int(page.tags["Orientation"].value) if "Orientation" in page.tags else 1
    except TiffReadError:
        raise
    except Exception as exc:  # tifffile raises TiffFileError, ValueError, struct.error...
        raise TiffReadError(path, _describe(exc)) from exc
    planes = (
        raw[np.newaxis] if axes == "YX" else (raw if axes == "SYX" else raw.transpose(2, 0, 1))
    )
    data = _fits_rows(planes, orientation, path)
    return [_image(path, data, raw.dtype, description)]


def _describe(exc: BaseException) -> str:
    text = str(exc).strip("'\" ")
    if "imagecodecs" in text:  # LZW, PackBits, JPEG... are decoded by imagecodecs
        return f"its compression needs the 'imagecodecs' package ({text}): pip install imagecodecs"
    return f"tifffile could not read it ({type(exc).__name__}: {text})"


def _fits_rows(planes: np.ndarray, orientation: int, path: Path) -> np.ndarray:
    """(C, H, W) as stored -> float32 with the bottom row first, mirroring undone."""
    if orientation not in (1, 2, 3, 4):
        reason = f"TIFF orientation {orientation} (rows and columns swapped) is not supported"
        raise TiffReadError(path, reason)
    if orientation in (2, 3):  # TOPRIGHT, BOTRIGHT: columns run right to left
        planes = planes[:, :, ::-1]
    if orientation in (1, 2):  # TOPLEFT, TOPRIGHT: top row first
        planes = planes[:, ::-1, :]
    return np.ascontiguousarray(planes, dtype=np.float32)


def _image(path: Path, data: np.ndarray, dtype: np.dtype, description: str) -> FitsImage:
    header = description_header(description)
    rgb = data.shape[0] == 3
    if dtype.kind in "iu":
        scaling = f"{dtype} integers kept as stored (ADU), not rescaled to 0-1"
        if header is not None and "T16SCALE" in header:
            scaling += "; the file records value = T16ZERO + T16SCALE * stored"
    else:
        scaling = "32-bit floats as stored"
    bayer = None if header is None or rgb else header.get("BAYERPAT")
    return FitsImage(
        data=data if rgb else data[0],
        header=header if header is not None else fits.Header(),
        wcs=celestial_wcs(header) if header is not None else None,
        path=path,
        hdu_index=0,
        extname=None,
        name=path.stem,
        bayer_pattern=_rows_reversed_pattern(bayer, data.shape[1]) if bayer else None,
        kind="rgb" if rgb else "mono",
        file_format="tiff",
        format_info={"sample_format": str(dtype), "scaling": scaling, "description": description},
    )


def _rows_reversed_pattern(pattern: object, height: int) -> str | None:
    text = str(pattern).strip().upper()
    if len(text) == 4 and height % 2 == 0:
        return text[2:] + text[:2]
    return text or None


def description_header(text: str) -> fits.Header | None:
    """The FITS header held in a TIFF ``ImageDescription``, or None when it holds none.

    Parameters
    ----------
    text : str
        The description: cards one per line, or 80-column cards run together.

    Returns
    -------
    astropy.io.fits.Header or None
        None unless most non-blank lines look like FITS cards; lines that do not parse
        as a card are skipped.
    """
    if not text or "=" not in text:
        return None
    lines = (
        text.splitlines() if "\n" in text else [text[i : i + 80] for i in range(0, len(text), 80)]
    )
    lines = [line.rstrip() for line in lines if line.strip()]
    looks = sum(bool(_CARD.match(line)) for line in lines)
    if not lines or looks < max(1, (len(lines) + 1) // 2):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        try:
            return fits.Header.fromstring("".join(line[:80].ljust(80) for line in lines))
        except Exception:  # one bad card: take the others one by one
            return _cards_one_by_one(lines)


def _cards_one_by_one(lines: Sequence[str]) -> fits.Header:
    header = fits.Header()
    for line in lines:
        if line.strip() == "END":
            break
        try:
            card = fits.Card.fromstring(line[:80].ljust(80))
            card.verify("silentfix")
            header.append(card, useblanks=False, bottom=True)
        except Exception:  # a line that is no card is skipped, as documented
            continue
    return header


def write_tiff(
    path: str | os.PathLike,
    data: np.ndarray,
    *,
    header: fits.Header | None = None,
    channel_axis: int | None = None,
    provenance: Mapping[str, object] | None = None,
    history: Sequence[str] = (),
    bits: int = 32,
    overwrite: bool = False,
) -> Path:
    """Write a mono or RGB image as a float32 (or 16-bit) TIFF, header as its description.

    Parameters
    ----------
    path : str or os.PathLike
        Target file (``.tif`` or ``.tiff``).
    data : numpy.ndarray
        (H, W) mono, or 3-D colour with ``channel_axis`` naming the 3-plane axis; rows in
        the FITS order (row 0 at the bottom).
    header : astropy.io.fits.Header, optional
        Source header; its cards (structural ones dropped) go into the description.
    channel_axis : int, optional
        Required for 3-D data: 0 for (3, H, W), -1 for a napari rgb layer (H, W, 3).
    provenance : mapping, optional
        FITS keyword -> value or ``(value, comment)``, as for ``write_fits``.
    history : sequence of str, optional
        ``HISTORY`` lines after the one naming napari-astrodenoise.
    bits : {32, 16}, optional
        32: float32, NaN kept (default). 16: unsigned 16-bit integers; whole values in
        0-65535 are stored as they are, anything else is scaled linearly from its finite
        minimum and maximum to 0-65535; the scaling is recorded (``T16ZERO``,
        ``T16SCALE`` and a ``HISTORY`` line); NaN and -inf are stored as 0, +inf as 65535.
    overwrite : bool, optional
        Replace an existing file (atomically). Default False.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    FileExistsError
        When ``path`` exists and ``overwrite`` is False.
    ValueError
        For data that are not mono or 3-plane colour, ``bits`` other than 16 or 32, or
        invalid provenance.
    """
    import tifffile

    from napari_astrodenoise import __version__

    if bits not in (16, 32):
        msg = f"bits must be 32 (float) or 16 (integer), got {bits!r}"
        raise ValueError(msg)
    path = Path(path)
    cube = _writable_cube(data, channel_axis)
    planes = cube[np.newaxis] if cube.ndim == 2 else cube
    if planes.shape[0] not in (1, 3):
        msg = f"TIFF is written mono or RGB, got {planes.shape[0]} planes; write a stack as FITS"
        raise ValueError(msg)
    stored, extra, notes = (planes, {}, []) if bits == 32 else _to_uint16(planes)
    lines = history_lines([*history, *notes])
    keywords = carried_header(header, provenance={**(provenance or {}), **extra}, lines=lines)
    check_target(path, overwrite=overwrite, format_name="TIFF")
    top_down = stored[:, ::-1, :]
    array = top_down[0] if top_down.shape[0] == 1 else top_down.transpose(1, 2, 0)
    description = _description(keywords)

    def write(temporary: Path) -> None:
        tifffile.imwrite(
            temporary,
            np.ascontiguousarray(array),
            photometric="minisblack" if array.ndim == 2 else "rgb",
            description=description,
            metadata=None,
            software=f"napari-astrodenoise {__version__}",
        )

    atomic_write(path, write, overwrite=overwrite)
    return path


def _description(header: fits.Header) -> str:
    """The header as text: one 80-column card per line, trailing blanks dropped.

    A comment too long for its card is cut, as in any FITS header.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Card is too long", VerifyWarning)
        text = header.tostring(sep="", endcard=True, padding=False)
    return "\n".join(text[i : i + 80].rstrip() for i in range(0, len(text), 80))


def _to_uint16(planes: np.ndarray) -> tuple[np.ndarray, dict[str, tuple[float, str]], list[str]]:
    finite = np.isfinite(planes)
    values = planes[finite]
    zero, scale = 0.0, 1.0
    whole = values.size == 0 or (
        values.min() >= 0 and values.max() <= _U16_MAX and np.array_equal(values, np.round(values))
    )
    if not whole:
        zero = float(values.min())
        scale = (float(values.max()) - zero) / _U16_MAX or 1.0
    scaled = np.where(finite, np.round((planes.astype(np.float64) - zero) / scale), 0.0)
    scaled[np.isposinf(planes)] = _U16_MAX
    stored = np.clip(scaled, 0, _U16_MAX).astype(np.uint16)
    bad = int(planes.size - np.count_nonzero(finite))
    extra = {
        "T16ZERO": (zero, "value = T16ZERO + T16SCALE * stored"),
        "T16SCALE": (scale, "value = T16ZERO + T16SCALE * stored"),
    }
    note = f"16-bit TIFF: value = {zero!r} + {scale!r} * stored"
    notes = [note + (f"; {bad} NaN/inf pixels stored as 0 or 65535" if bad else "")]
    return stored, extra, notes
