"""One door for every format: FITS, XISF and TIFF read into one image object and written.

:func:`read_image` looks at a file's first bytes (FITS ``SIMPLE``, XISF ``XISF0100``, TIFF
``II*``/``MM*``) and, where they say nothing (a gzip stream, an empty or missing file), at
its name, then calls :func:`~napari_astrodenoise.fits_io.read_fits`,
:func:`~napari_astrodenoise.xisf_io.read_xisf` or
:func:`~napari_astrodenoise.tiff_io.read_tiff`. Each returns a list of
:class:`~napari_astrodenoise.fits_io.FitsImage`: float32 data with rows in the FITS order
(the bottom row first), a header, a WCS and ``format_info``.

:func:`write_image` writes one image in the format asked for, or the one its name ends in,
with the writer of that format (all atomic, none replacing a file without ``overwrite``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from napari_astrodenoise.fits_io import (
    FITS_SUFFIXES,
    FitsImage,
    ImageReadError,
    compression_of,
    read_fits,
)

__all__ = [
    "FORMATS",
    "SUFFIXES",
    "detect_format",
    "format_of_name",
    "read_image",
    "write_image",
]

#: The formats read and written, in the order the CLI lists them.
FORMATS: tuple[str, ...] = ("fits", "xisf", "tiff")
#: File-name endings of each format; the first is the one outputs get.
SUFFIXES: dict[str, tuple[str, ...]] = {
    "fits": FITS_SUFFIXES,
    "xisf": (".xisf",),
    "tiff": (".tif", ".tiff"),
}
_MAGIC = (
    (b"SIMPLE  =", "fits"),
    (b"XISF", "xisf"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),
    (b"MM\x00+", "tiff"),
)


def format_of_name(path: object) -> str | None:
    """The format a file name ends like (``"fits"``, ``"xisf"``, ``"tiff"``), or None.

    Parameters
    ----------
    path : object
        A str or path-like; anything else gives None.

    Returns
    -------
    str or None
        Compared case-insensitively with :data:`SUFFIXES`.
    """
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str):
        return None
    lower = path.lower()
    for name, suffixes in SUFFIXES.items():
        if lower.endswith(suffixes):
            return name
    return None


def detect_format(path: str | os.PathLike) -> str | None:
    """The format of a file from its first bytes, else from its name; None if neither says.

    Parameters
    ----------
    path : str or os.PathLike
        A file; a missing or unreadable one is judged by its name.

    Returns
    -------
    str or None
        ``"fits"``, ``"xisf"`` or ``"tiff"``.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
    except OSError:
        head = b""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head and compression_of(path) is not None:
        return "fits"  # compressed files are read as FITS, which says what it cannot open
    return format_of_name(path)


def read_image(path: str | os.PathLike, *, lazy: bool = False) -> list[FitsImage]:
    """Read a FITS, XISF or TIFF file into images.

    Parameters
    ----------
    path : str or os.PathLike
        The file; its format is found by :func:`detect_format`.
    lazy : bool, optional
        For an uncompressed FITS file, dask arrays read block by block (see
        :func:`~napari_astrodenoise.fits_io.read_fits`); other formats are read eagerly.

    Returns
    -------
    list of FitsImage
        As the format's reader returns them (see this module's docstring).

    Raises
    ------
    ImageReadError
        ``FitsReadError``, ``XisfReadError`` or ``TiffReadError`` from the reader, or an
        ``ImageReadError`` when neither the content nor the name says which format.
    """
    found = detect_format(path)
    if found == "fits":
        return read_fits(path, lazy=lazy)
    if found == "xisf":
        from napari_astrodenoise.xisf_io import read_xisf

        return read_xisf(path)
    if found == "tiff":
        from napari_astrodenoise.tiff_io import read_tiff

        return read_tiff(path)
    reason = "neither its first bytes nor its name say FITS, XISF or TIFF"
    raise ImageReadError(path, reason)


def write_image(
    path: str | os.PathLike,
    data: np.ndarray,
    *,
    file_format: str | None = None,
    header: fits.Header | None = None,
    channel_axis: int | None = None,
    provenance: Mapping[str, object] | None = None,
    history: Sequence[str] = (),
    format_info: Mapping[str, Any] | None = None,
    compress: bool = False,
    bits: int = 32,
    overwrite: bool = False,
) -> Path:
    """Write one image as FITS, XISF or TIFF.

    Parameters
    ----------
    path : str or os.PathLike
        Target file.
    data : numpy.ndarray
        (H, W), or 3-D with ``channel_axis``; rows in the FITS order.
    file_format : {"fits", "xisf", "tiff"}, optional
        Default: the format :func:`format_of_name` finds in ``path``.
    header : astropy.io.fits.Header, optional
        Source header, kept as each writer documents.
    channel_axis : int, optional
        The plane axis of 3-D data.
    provenance : mapping, optional
        Keyword -> value or ``(value, comment)``.
    history : sequence of str, optional
        History lines.
    format_info : mapping, optional
        The source's ``FitsImage.format_info``: XISF properties and ICC profile are
        written back to XISF; ignored by the other writers.
    compress : bool, optional
        XISF only: zlib with byte shuffling.
    bits : {32, 16}, optional
        TIFF only: float32 or scaled 16-bit integers.
    overwrite : bool, optional
        Replace an existing file (atomically).

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    ValueError
        For an unknown format, or what the format's writer refuses.
    FileExistsError
        When ``path`` exists and ``overwrite`` is False.
    """
    chosen = file_format or format_of_name(path)
    if chosen not in FORMATS:
        msg = (
            f"cannot tell which format to write '{path}' in: name it .fits, .xisf or .tif, "
            f"or choose one of {', '.join(FORMATS)} (got {chosen!r})"
        )
        raise ValueError(msg)
    common = {
        "header": header,
        "channel_axis": channel_axis,
        "provenance": provenance,
        "history": history,
        "overwrite": overwrite,
    }
    if chosen == "xisf":
        from napari_astrodenoise.xisf_write import write_xisf

        info = format_info or {}
        return write_xisf(
            path,
            data,
            properties=info.get("properties"),
            file_properties=info.get("file_properties"),
            icc_profile=info.get("icc_profile"),
            compress=compress,
            **common,
        )
    if chosen == "tiff":
        from napari_astrodenoise.tiff_io import write_tiff

        return write_tiff(path, data, bits=bits, **common)
    from napari_astrodenoise.fits_write import write_fits

    return write_fits(path, data, **common)
