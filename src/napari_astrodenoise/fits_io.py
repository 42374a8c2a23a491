"""Read and write astronomical FITS images faithfully: physical float32 data, header and WCS kept.

Reading
-------
:func:`read_fits` returns one :class:`FitsImage` per image HDU that holds a 2-D or 3-D
image (the primary HDU and image extensions, plain, gzip-compressed ``.fits.gz`` or
tile-compressed ``.fz``). A gzip or bzip2 file is known by its first bytes, whatever its
name, and read to its end first, so a damaged one (a failed CRC) is refused, never read
as wrong pixels. Astropy's warnings on a file that cannot be read are part of the error.
Table HDUs, empty HDUs and 1-D images (spectra, calibration
vectors such as the second HDU of an SDSS frame) are skipped; a file with none left is
an error. Leading axes of length 1 are dropped, so ``NAXIS3 = 1`` reads as a 2-D image;
images with more axes than that are skipped.

- Data become float32 in native byte order, numpy axis order as in the file:
  ``(NAXIS2, NAXIS1)`` or ``(NAXIS3, NAXIS2, NAXIS1)``; the array is never flipped.
- Integer pixels are scaled to physical values ``BZERO + BSCALE * raw``, computed in
  float64 and rounded once to float32; integer pixels equal to ``BLANK`` become NaN.
  NaN and inf in float images are kept as they are.
- The header is a full copy of the HDU's header, *as in the file*: ``BSCALE``/``BZERO``/
  ``BLANK`` are still there although the data are already scaled.
- Memory: plain files are memory-mapped and converted to float32 in blocks of rows, so
  reading holds one float32 array plus a block (a few MiB), never a second full copy.
  Gzip- and tile-compressed files are decompressed by astropy first and then hold the
  decompressed raw array as well while converting.

Writing (:func:`write_fits`) lives in :mod:`napari_astrodenoise.fits_write` and is
re-exported here, so ``from napari_astrodenoise.fits_io import read_fits, write_fits``
serves both directions.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from napari_astrodenoise.fits_write import WRITER_CHANGED_KEYWORDS, write_fits

__all__ = [
    "FITS_SUFFIXES",
    "WRITER_CHANGED_KEYWORDS",
    "FitsImage",
    "FitsReadError",
    "ImageReadError",
    "celestial_wcs",
    "compression_of",
    "default_contrast_limits",
    "fits_stem",
    "is_fits_path",
    "layer_metadata",
    "read_fits",
    "write_fits",
]

#: File-name endings read as FITS (compared case-insensitively).
FITS_SUFFIXES: tuple[str, ...] = (
    ".fits",
    ".fit",
    ".fts",
    ".fits.gz",
    ".fit.gz",
    ".fts.gz",
    ".fits.fz",
    ".fz",
)


_ImageHDU = fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU
_BLOCK_ELEMENTS = 1 << 18  # pixels converted per block: a 2 MiB float64 temporary at most
CONTRAST_SAMPLE = 1 << 18  # pixels sampled for default contrast limits


class ImageReadError(ValueError):
    """An image file that was taken for reading could not be read.

    The base of :class:`FitsReadError` and of the XISF and TIFF readers' errors; its
    message names the format, the file and the reason.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    reason : str
        What is wrong, in words a user understands.

    Attributes
    ----------
    path : str
        The file, as given.
    reason : str
        What is wrong.
    """

    #: the format named in the message
    format_name = "image"

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"Cannot open {self.format_name} file '{self.path}': {reason}")

    def __reduce__(self) -> tuple[type[ImageReadError], tuple[str, str]]:
        return type(self), (self.path, self.reason)


class FitsReadError(ImageReadError):
    """A FITS file that was taken for reading could not be read (see :class:`ImageReadError`)."""

    format_name = "FITS"


@dataclass
class FitsImage:
    """One image of a FITS, XISF or TIFF file, as read by :func:`read_fits` and its siblings.

    Whatever the format, ``data`` follows the FITS convention: row 0 is the bottom of the
    picture (XISF and TIFF rows, stored top-down, are reversed on reading).

    Attributes
    ----------
    data : numpy.ndarray or dask.array.Array
        float32, native byte order, physical (scaled) values, NaN and inf kept; numpy
        axis order as in the file: (H, W), (3, H, W) or (N, H, W). FITS row 1 is row 0.
        A dask array of whole row blocks when read with ``lazy=True``.
    header : astropy.io.fits.Header
        A copy of that HDU's full header, as in the file.
    wcs : astropy.wcs.WCS or None
        The celestial WCS when the header has one.
    path : pathlib.Path
        The file.
    hdu_index : int
        Index of the HDU in the file (0 is the primary HDU).
    extname : str or None
        ``EXTNAME`` of the HDU, if any.
    name : str
        Layer name: the file stem, plus ``[EXTNAME]`` (or ``[index]``) when the file has
        several image HDUs.
    bayer_pattern : str or None
        ``BAYERPAT`` of a raw one-shot-colour mosaic (2-D only), e.g. ``"RGGB"``.
    kind : str
        ``"mono"`` (2-D), ``"rgb"`` (3 planes) or ``"stack"`` (any other number of planes).
    file_format : str
        ``"fits"``, ``"xisf"`` or ``"tiff"``.
    format_info : dict
        What the format holds beyond the header: for XISF ``properties`` and
        ``file_properties`` (id -> ``XisfProperty``), ``icc_profile`` (bytes or None) and
        ``image_attributes``; for TIFF ``sample_format``, ``scaling`` and ``description``.
        Empty for FITS.
    lazy_rows : napari_astrodenoise.fits_lazy.FitsRows or None
        The file's pixels behind a lazy ``data``: strided views of them
        (``lazy_rows.strided(k)``) read only their own rows (a zoomed-out view, a sample).
    """

    data: np.ndarray
    header: fits.Header
    wcs: WCS | None
    path: Path
    hdu_index: int
    extname: str | None
    name: str
    bayer_pattern: str | None
    kind: str
    file_format: str = "fits"
    format_info: dict[str, Any] = field(default_factory=dict)
    lazy_rows: Any = field(default=None, repr=False)


def is_fits_path(path: object) -> bool:
    """Say whether ``path`` is a str or path-like whose name ends like a FITS file.

    Parameters
    ----------
    path : object
        Anything; only ``str`` and :class:`os.PathLike` of ``str`` can match.

    Returns
    -------
    bool
        True when the name ends with one of :data:`FITS_SUFFIXES`, in any case.
    """
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str):
        return False
    return path.lower().endswith(FITS_SUFFIXES)


def fits_stem(path: str | os.PathLike) -> str:
    """Return the file name without its FITS suffix (``a.fits.gz`` -> ``a``).

    Parameters
    ----------
    path : str or os.PathLike
        A file path.

    Returns
    -------
    str
        The name with the longest matching suffix of :data:`FITS_SUFFIXES` removed.
    """
    name = Path(path).name
    lower = name.lower()
    for suffix in sorted(FITS_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


# --------------------------------------------------------------------------- reading


def read_fits(path: str | os.PathLike, *, lazy: bool = False) -> list[FitsImage]:
    """Read every 2-D or 3-D image HDU with data from a FITS file.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.fits``/``.fit``/``.fts`` file, gzip-compressed (``.gz``) or holding
        tile-compressed image HDUs (``.fz``).
    lazy : bool, optional
        Give each uncompressed image HDU's data as a dask array of whole row blocks, each
        memory-mapped and scaled when it is computed (:mod:`.fits_lazy`), bit for bit the
        eager values; nothing but the headers is read now. Compressed data (``.gz``,
        ``.fz``) cannot be mapped and is read eagerly as numpy.

    Returns
    -------
    list of FitsImage
        In HDU order; float32 physical data, header copy, celestial WCS.

    Raises
    ------
    FitsReadError
        When the file is missing, empty, truncated, not FITS, or holds no 2-D or 3-D
        image with data; the message names the file and the reason.
    """
    path = Path(path)
    heard: list[warnings.WarningMessage] = []
    try:
        _check_file(path)
        compression = compression_of(path)
        if compression is not None:
            _verify_stream(path, compression)
        with warnings.catch_warnings(record=True) as heard:
            warnings.simplefilter("always")
            with fits.open(
                path, memmap=True, do_not_scale_image_data=True, lazy_load_hdus=False
            ) as hdul:
                images = _read_hdulist(path, hdul, compressed=compression is not None, lazy=lazy)
    except FitsReadError as err:
        raise FitsReadError(path, _with_warnings(err.reason, heard)) from err.__cause__
    except Exception as exc:  # astropy raises OSError, ValueError, TypeError, EOFError...
        raise FitsReadError(path, _with_warnings(_describe(exc), heard)) from exc
    _repeat(heard)
    return images


#: leading bytes of the compressed streams astropy opens, whatever the file's name
_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"PK\x03\x04", "zip"),
    (b"\x1f\x9d", "compress"),
)


def compression_of(path: str | os.PathLike) -> str | None:
    """Say how a file is compressed, from its first bytes (never from its name).

    Parameters
    ----------
    path : str or os.PathLike
        A readable file.

    Returns
    -------
    str or None
        ``"gzip"``, ``"bzip2"``, ``"xz"``, ``"zip"`` or ``"compress"``; None for a file
        that starts like none of them (plain FITS starts with ``SIMPLE``).
    """
    with open(path, "rb") as handle:
        head = handle.read(6)
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


def _verify_stream(path: Path, compression: str) -> None:
    """Read a compressed file to its end, so that its checksums are checked.

    astropy reads only the bytes the HDUs need and never reaches the end of the stream,
    where gzip keeps its CRC: a damaged file would be read as wrong pixels without a word.
    """
    import bz2
    import gzip
    import lzma
    import zipfile
    import zlib

    openers = {"gzip": gzip.open, "bzip2": bz2.open, "xz": lzma.open}
    try:
        if compression == "zip":
            with zipfile.ZipFile(path) as archive:
                broken = archive.testzip()
            if broken is not None:
                reason = f"the zip archive is corrupt: member {broken!r} fails its CRC check"
                raise FitsReadError(path, reason)
            return
        if compression not in openers:
            return  # Unix compress has no checksum to verify
        with openers[compression](path, "rb") as stream:
            while stream.read(1 << 22):
                pass
    except FitsReadError:
        raise
    except EOFError as exc:
        reason = f"the file is truncated: the {compression} stream ends early ({exc})"
        raise FitsReadError(path, reason) from exc
    except (OSError, ValueError, lzma.LZMAError, zipfile.BadZipFile, zlib.error) as exc:
        text = str(exc).strip() or type(exc).__name__
        reason = f"the {compression} stream is corrupt ({text}); nothing was read from it"
        raise FitsReadError(path, reason) from exc


def _with_warnings(reason: str, heard: list[warnings.WarningMessage]) -> str:
    """The reason a file could not be read, with what astropy warned of on the way."""
    notes = _warning_texts(heard)
    if not notes:
        return reason
    return f"{reason}; astropy warned: " + "; ".join(notes)


def _warning_texts(heard: list[warnings.WarningMessage]) -> list[str]:
    """Distinct warnings, each on one line (truncation is reported as the error itself)."""
    texts: list[str] = []
    for item in _about_the_file(heard):
        text = " ".join(str(item.message).split())
        if text not in texts:
            texts.append(text)
    return texts


def _about_the_file(heard: list[warnings.WarningMessage]) -> list[warnings.WarningMessage]:
    """The warnings that speak of the file (astropy's are UserWarnings), truncation aside."""
    return [
        item
        for item in heard
        if issubclass(item.category, UserWarning)
        and "File may have been truncated" not in str(item.message)
    ]


def _repeat(heard: list[warnings.WarningMessage]) -> None:
    """Warn again of what astropy said while a file was read that did open."""
    for item in _about_the_file(heard):
        text = " ".join(str(item.message).split())
        warnings.warn(text, item.category, stacklevel=3)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise FitsReadError(path, "no such file")
    if not path.is_file():
        raise FitsReadError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise FitsReadError(path, "the file is empty (0 bytes)")


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, EOFError):
        return f"the file is truncated: the compressed stream ends early ({text})"
    if "buffer is too small" in text:
        return "the file is truncated: its data unit is shorter than the header says"
    if "Empty or corrupt FITS file" in text or "No SIMPLE card" in text:
        return "not a valid FITS file: no complete FITS header at the start (corrupt or truncated)"
    if isinstance(exc, KeyError | TypeError):
        return (
            f"the header is damaged: astropy could not use a value ({type(exc).__name__}: {text})"
        )
    return f"astropy could not read it ({type(exc).__name__}: {text})"


def _read_hdulist(
    path: Path, hdul: fits.HDUList, *, compressed: bool, lazy: bool = False
) -> list[FitsImage]:
    size = path.stat().st_size
    candidates: list[tuple[int, _ImageHDU]] = []
    skipped: list[str] = []
    for index, hdu in enumerate(hdul):
        why_not = _why_not_an_image(hdu)
        if why_not is None:
            candidates.append((index, hdu))
        else:
            skipped.append(f"HDU {index} {why_not}")
    if not candidates:
        found = "; ".join(skipped) if skipped else "no HDU at all"
        raise FitsReadError(path, f"no 2-D or 3-D image with data ({found})")
    several = len(candidates) > 1
    images = []
    for index, hdu in candidates:
        mappable = not compressed and not isinstance(hdu, fits.CompImageHDU)
        if mappable:
            _check_not_truncated(path, index, hdu, size)
        images.append(
            _read_image_hdu(path, hdul, index, hdu, several=several, lazy=lazy and mappable)
        )
    return images


def _why_not_an_image(hdu: object) -> str | None:
    """Return why an HDU does not become an image, or None when it does."""
    if not getattr(hdu, "is_image", False):
        return f"is a table ({type(hdu).__name__})"
    shape = tuple(int(n) for n in hdu.shape)
    if len(shape) == 0:
        return "is empty (NAXIS = 0)"
    if math.prod(shape) == 0:
        return f"has zero size (shape {shape})"
    squeezed = _squeeze_leading(shape)
    if len(squeezed) == 1:
        return f"is a 1-D image of {squeezed[0]} pixels, not a picture"
    if len(squeezed) > 3:
        return f"is a {len(squeezed)}-D image {squeezed}, only 2-D and 3-D are read"
    return None


def _squeeze_leading(shape: tuple[int, ...]) -> tuple[int, ...]:
    shape = tuple(shape)
    while len(shape) > 2 and shape[0] == 1:
        shape = shape[1:]
    return shape


def _check_not_truncated(path: Path, index: int, hdu: _ImageHDU, size: int) -> None:
    # (only for uncompressed files: a compressed stream was read to its end already)
    info = hdu.fileinfo()
    needed = abs(int(hdu.header["BITPIX"])) // 8 * math.prod(int(n) for n in hdu.shape)
    if info is not None and info["datLoc"] + needed > size:
        have = max(size - info["datLoc"], 0)
        reason = (
            f"the file is truncated: HDU {index} needs {needed} bytes of data but only "
            f"{have} are there"
        )
        raise FitsReadError(path, reason)


def _read_image_hdu(
    path: Path, hdul: fits.HDUList, index: int, hdu: _ImageHDU, *, several: bool, lazy: bool
) -> FitsImage:
    header = hdu.header.copy()
    rows = None
    if lazy:
        data, rows = _lazy_data(path, hdu, header)
    else:
        raw = hdu.data
        raw = raw.reshape(_squeeze_leading(raw.shape))
        data = _to_float32(
            raw,
            bscale=float(header.get("BSCALE", 1.0)),
            bzero=float(header.get("BZERO", 0.0)),
            blank=header.get("BLANK") if raw.dtype.kind in "iu" else None,
        )
        del raw  # drop the memory map before the file closes
    extname = _extname(header)
    kind = "mono" if data.ndim == 2 else ("rgb" if data.shape[0] == 3 else "stack")
    bayer = _bayer_pattern(header) if kind == "mono" else None
    return FitsImage(
        data=data,
        header=header,
        wcs=_celestial_wcs(header, hdul),
        path=path,
        hdu_index=index,
        extname=extname,
        name=_layer_name(path, index, header, extname, several=several),
        bayer_pattern=bayer,
        kind=kind,
        lazy_rows=rows,
    )


def _lazy_data(path: Path, hdu: _ImageHDU, header: fits.Header) -> tuple[Any, Any]:
    """The HDU's data as a dask array read block by block, and its FitsRows (nothing read)."""
    from napari_astrodenoise.fits_lazy import FitsRows, lazy_image

    bitpix = int(header["BITPIX"])
    rows = FitsRows(
        path,
        hdu.fileinfo()["datLoc"],
        _squeeze_leading(tuple(int(n) for n in hdu.shape)),
        bitpix,
        bscale=float(header.get("BSCALE", 1.0)),
        bzero=float(header.get("BZERO", 0.0)),
        blank=header.get("BLANK") if bitpix > 0 else None,
    )
    return lazy_image(rows), rows


def _to_float32(raw: np.ndarray, *, bscale: float, bzero: float, blank: object) -> np.ndarray:
    """Convert raw FITS pixels to physical float32 in blocks of rows (no full temporary)."""
    out = np.empty(raw.shape, dtype=np.float32)
    scaled = bscale != 1.0 or bzero != 0.0
    width = raw.shape[-1]
    flat_raw = raw.reshape(-1, width)
    flat_out = out.reshape(-1, width)
    rows = max(1, _BLOCK_ELEMENTS // width)
    scratch = np.empty((min(rows, flat_raw.shape[0]), width), dtype=np.float64) if scaled else None
    for start in range(0, flat_raw.shape[0], rows):
        block = flat_raw[start : start + rows]
        target = flat_out[start : start + rows]
        if scratch is not None:
            physical = scratch[: block.shape[0]]
            np.multiply(block, bscale, out=physical)
            physical += bzero
            target[...] = physical
        else:
            target[...] = block
        if blank is not None:
            target[block == int(blank)] = np.nan
    return out


def _bayer_pattern(header: fits.Header) -> str | None:
    value = header.get("BAYERPAT")
    if value is None:
        return None
    text = str(value).strip().upper()
    return text or None


def _extname(header: fits.Header) -> str | None:
    value = header.get("EXTNAME")
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _layer_name(
    path: Path, index: int, header: fits.Header, extname: str | None, *, several: bool
) -> str:
    stem = fits_stem(path)
    if not several:
        return stem
    if extname is None:
        return f"{stem}[{index}]"
    extver = header.get("EXTVER")
    if isinstance(extver, int) and extver > 1:
        return f"{stem}[{extname},{extver}]"
    return f"{stem}[{extname}]"


def celestial_wcs(header: fits.Header) -> WCS | None:
    """Return the celestial WCS that the header's keywords define, or None.

    Parameters
    ----------
    header : astropy.io.fits.Header
        Any header; a WCS that astropy cannot parse gives a warning and None.

    Returns
    -------
    astropy.wcs.WCS or None
        The celestial part of the WCS, None when the header has no ``CTYPEn``.
    """
    return _celestial_wcs(header, None)


def _celestial_wcs(header: fits.Header, hdul: fits.HDUList | None) -> WCS | None:
    if not any(str(key).startswith("CTYPE") for key in header):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header, fobj=hdul)
    except Exception as exc:  # a broken WCS must not stop the image from opening
        msg = f"WCS in the header ignored, astropy could not parse it: {exc}"
        warnings.warn(msg, UserWarning, stacklevel=4)
        return None
    return wcs.celestial if wcs.has_celestial else None


def layer_metadata(image: FitsImage) -> dict:
    """Return the napari layer metadata for an image read from FITS.

    Parameters
    ----------
    image : FitsImage
        As returned by :func:`read_fits`.

    Returns
    -------
    dict
        Keys ``"fits_header"`` (Header), ``"wcs"`` (WCS or None), ``"source_path"``
        (str), ``"hdu_index"``, ``"extname"``, ``"bayer_pattern"``, ``"fits_kind"``
        (``"mono"``, ``"rgb"`` or ``"stack"``), ``"file_format"`` (``"fits"``, ``"xisf"``
        or ``"tiff"``) and ``"format_info"`` (see :class:`FitsImage`).
    """
    return {
        "fits_header": image.header,
        "wcs": image.wcs,
        "source_path": str(image.path),
        "hdu_index": image.hdu_index,
        "extname": image.extname,
        "bayer_pattern": image.bayer_pattern,
        "fits_kind": image.kind,
        "file_format": image.file_format,
        "format_info": image.format_info,
    }


def default_contrast_limits(data: np.ndarray) -> tuple[float, float] | None:
    """Suggest display limits from finite pixels: the 0.5 and 99.8 percentiles.

    Computed on an evenly strided sample of at most about 262,000 pixels, so it costs
    no copy of the image. Linear astronomical data shown from min to max look black
    apart from the stars; these limits show the sky background and faint structure.

    Parameters
    ----------
    data : numpy.ndarray or dask.array.Array
        Any shape; NaN and inf are ignored.

    Returns
    -------
    tuple of float or None
        ``(low, high)`` with ``low < high``, or None when fewer than two distinct
        finite values are found.
    """
    step = max(1, math.ceil(math.sqrt(data.size / CONTRAST_SAMPLE)))
    sample = np.asarray(data[..., ::step, ::step])  # a lazy array reads these rows only
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        return None
    low, high = (float(v) for v in np.percentile(finite, [0.5, 99.8]))
    if not low < high:
        low, high = float(finite.min()), float(finite.max())
    if not low < high:
        return None
    return low, high


# --------------------------------------------------------------------------- writing
