"""Write one FITS image faithfully: physical float32, source header and WCS kept, atomically.

:func:`write_fits` writes one primary HDU of float32 (``BITPIX = -32``), linear, NaN and
inf kept, colour or stack planes along ``NAXIS3``. The source header is copied card by
card (WCS included) with these documented changes:

- ``SIMPLE``, ``BITPIX``, ``NAXIS``, ``NAXISn`` and ``EXTEND`` are set for the data
  written; ``XTENSION``, ``PCOUNT`` and ``GCOUNT`` are removed (it becomes a primary HDU);
- ``BSCALE``, ``BZERO`` and ``BLANK`` are removed (the data are physical float32);
- ``CHECKSUM`` and ``DATASUM`` are removed, and written afresh when the source had them;
- one ``HISTORY`` line naming napari-astrodenoise, its version and the UTC date is added,
  then the caller's ``history`` lines, then the caller's ``provenance`` keywords (set or
  replaced); text outside printable ASCII (a file name such as ``Jérôme/NGC 7000 Ha.fits``)
  is escaped (:func:`fits_text`), and long values continue on ``CONTINUE`` cards.

Only this one HDU is written: other HDUs of the source file (tables, masks, calibration
vectors) are not copied. Writes are atomic: the file is written under a temporary name in
the target directory, flushed to disk and moved over the target with :func:`os.replace`,
so a failed write leaves an existing file untouched (a replaced file keeps its permission
bits). Tile-compressed ``.fz`` output is not supported; a name ending in ``.gz`` is
gzip-compressed by astropy.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

#: Header keywords that :func:`write_fits` sets, removes or rewrites (``NAXISn`` included,
#: ``HISTORY`` gains lines at the end, provenance keywords come from the caller).
WRITER_CHANGED_KEYWORDS: frozenset[str] = frozenset(
    {
        "SIMPLE",
        "XTENSION",
        "BITPIX",
        "NAXIS",
        "EXTEND",
        "PCOUNT",
        "GCOUNT",
        "BSCALE",
        "BZERO",
        "BLANK",
        "CHECKSUM",
        "DATASUM",
    }
)

_NAXIS_N = re.compile(r"^NAXIS\d+$")
_KEYWORD = re.compile(r"^[A-Z0-9_-]{1,8}$")
_RESERVED_PROVENANCE = WRITER_CHANGED_KEYWORDS | {"HISTORY", "COMMENT", "CONTINUE", "END", ""}


def write_fits(
    path: str | os.PathLike,
    data: np.ndarray,
    *,
    header: fits.Header | None = None,
    channel_axis: int | None = None,
    provenance: Mapping[str, object] | None = None,
    history: Sequence[str] = (),
    overwrite: bool = False,
) -> Path:
    """Write an image as linear float32 FITS, keeping the source header and WCS.

    Parameters
    ----------
    path : str or os.PathLike
        Target file; a name ending in ``.gz`` is gzip-compressed. ``.fz`` is refused.
    data : numpy.ndarray
        (H, W) mono, or 3-D colour/stack with ``channel_axis`` naming the plane axis.
        Converted to float32; NaN and inf are kept.
    header : astropy.io.fits.Header, optional
        Source header; copied, never modified. Cards changed on the way are listed in
        this module's docstring and in :data:`WRITER_CHANGED_KEYWORDS`.
    channel_axis : int, optional
        Required for 3-D data: the axis moved to axis 0 (``NAXIS3``); 0 for (C, H, W) as
        read from FITS, -1 for a napari rgb layer (H, W, 3).
    provenance : mapping, optional
        FITS keyword (at most 8 characters of A-Z, 0-9, ``-``, ``_``) -> value or
        ``(value, comment)``; written as cards after the history, replacing cards of the
        same keyword.
    history : sequence of str, optional
        ``HISTORY`` lines added after the napari-astrodenoise line.
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
        For data of the wrong shape, a bad ``channel_axis``, an invalid provenance
        keyword or value, or a ``.fz`` name.
    """
    path = Path(path)
    cube = _writable_cube(data, channel_axis)
    cards = _provenance_cards(provenance or {})
    _check_target(path, overwrite=overwrite)
    hdu = fits.PrimaryHDU(data=cube)
    _copy_source_cards(hdu.header, header)
    _add_history(hdu.header, history)
    for card in cards:
        _set_card(hdu.header, card)
    checksum = header is not None and ("CHECKSUM" in header or "DATASUM" in header)
    _atomic_writeto(fits.HDUList([hdu]), path, overwrite=overwrite, checksum=checksum)
    return path


def write_fits_blocks(
    path: str | os.PathLike,
    blocks: Iterable[tuple[slice, np.ndarray]],
    shape: Sequence[int],
    *,
    header: fits.Header | None = None,
    channel_axis: int | None = None,
    provenance: Mapping[str, object] | None = None,
    history: Sequence[str] = (),
    overwrite: bool = False,
) -> Path:
    """:func:`write_fits` of an image given a row block at a time: no whole frame in memory.

    The header is that of :func:`write_fits` (source cards, history, provenance; no
    checksum: it would need the whole data). Each block's rows are written in place as
    they come, in any order, into a temporary file that is moved over ``path`` once all
    rows are there (atomic, as :func:`write_fits`).

    Parameters
    ----------
    path : str or os.PathLike
        Target file (plain FITS: not ``.gz`` nor ``.fz``).
    blocks : iterable of (slice, ndarray)
        ``(rows, data)``: the image's rows ``rows`` in the caller's layout (the row axis
        the first of the picture's two axes), float32, NaN kept.
    shape : sequence of int
        The whole image's shape, in the caller's layout.
    header, channel_axis, provenance, history, overwrite
        As for :func:`write_fits`.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    ValueError
        When the blocks leave rows unwritten, or for the reasons of :func:`write_fits`.
    """
    path = Path(path)
    if path.name.lower().endswith((".gz", ".fz")):
        msg = f"a FITS file written a block at a time is not compressed: {path}; use .fits"
        raise ValueError(msg)
    planes = _plane_shape(shape, channel_axis)
    cards = _provenance_cards(provenance or {})
    _check_target(path, overwrite=overwrite)
    out = fits.Header([("SIMPLE", True), ("BITPIX", -32), ("NAXIS", len(planes))])
    for i, n in enumerate(reversed(planes), start=1):
        out[f"NAXIS{i}"] = n
    out["EXTEND"] = True
    _copy_source_cards(out, header)
    _add_history(out, history)
    for card in cards:
        _set_card(out, card)
    head = out.tostring().encode("ascii")
    data_bytes = 4 * math.prod(planes)
    padded = -(-data_bytes // 2880) * 2880

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as f:
            f.write(head)
            f.truncate(len(head) + padded)  # zeros: the data's FITS padding included
            _write_rows(f, len(head), blocks, planes, channel_axis)

    atomic_write(path, write, overwrite=overwrite)
    return path


def _plane_shape(shape: Sequence[int], channel_axis: int | None) -> tuple[int, ...]:
    """(H, W) or (C, H, W) of an image of ``shape`` in the caller's layout."""
    shape = tuple(int(n) for n in shape)
    if len(shape) == 2 and channel_axis is None:
        return shape
    if len(shape) == 3 and channel_axis is not None and -3 <= channel_axis <= 2:
        axis = channel_axis % 3
        return (shape[axis], *(n for i, n in enumerate(shape) if i != axis))
    msg = f"shape must be (H, W), or 3-D with channel_axis, got {shape} and {channel_axis}"
    raise ValueError(msg)


def _write_rows(
    f: Any,
    offset: int,
    blocks: Iterable[tuple[slice, np.ndarray]],
    planes: tuple[int, ...],
    channel_axis: int | None,
) -> None:
    """Write each block's rows of every plane at its place; check every row came."""
    height, width = planes[-2:]
    written = np.zeros(height, dtype=bool)
    for rows, data in blocks:
        block = np.asarray(data, dtype=np.float32)
        cube = block[np.newaxis] if channel_axis is None else np.moveaxis(block, channel_axis, 0)
        if cube.shape[1:] != (rows.stop - rows.start, width):
            msg = f"block of rows {rows.start}..{rows.stop} has shape {block.shape}"
            raise ValueError(msg)
        for c, plane in enumerate(cube):
            f.seek(offset + 4 * (c * height + rows.start) * width)
            f.write(plane.astype(">f4").tobytes())
        written[rows] = True
    if not written.all():
        msg = f"rows {np.flatnonzero(~written)[:5].tolist()}... were never written"
        raise ValueError(msg)


def _writable_cube(data: np.ndarray, channel_axis: int | None) -> np.ndarray:
    array = np.asarray(data)
    if array.dtype.kind not in "biuf":
        msg = f"data must be numeric, got dtype {array.dtype}"
        raise ValueError(msg)
    if array.ndim == 2:
        if channel_axis is not None:
            msg = f"channel_axis must be None for 2-D data, got {channel_axis}"
            raise ValueError(msg)
    elif array.ndim == 3:
        if channel_axis is None:
            msg = (
                "3-D data needs channel_axis: 0 for (C, H, W) as read from FITS, "
                "-1 for a napari rgb layer (H, W, 3)"
            )
            raise ValueError(msg)
        if not -3 <= channel_axis <= 2:
            msg = f"channel_axis must be in -3..2 for 3-D data, got {channel_axis}"
            raise ValueError(msg)
        array = np.moveaxis(array, channel_axis, 0)
    else:
        msg = f"data must be 2-D (H, W) or 3-D with a channel axis, got shape {array.shape}"
        raise ValueError(msg)
    if array.size == 0:
        msg = f"data must not be empty, got shape {array.shape}"
        raise ValueError(msg)
    return np.ascontiguousarray(array, dtype=np.float32)


def _check_target(path: Path, *, overwrite: bool) -> None:
    if path.name.lower().endswith(".fz"):
        msg = f"writing tile-compressed .fz files is not supported: {path}; use .fits"
        raise ValueError(msg)
    check_target(path, overwrite=overwrite, format_name="FITS")


def check_target(path: Path, *, overwrite: bool, format_name: str) -> None:
    """Refuse a target that is a folder, lies in no folder, or exists without ``overwrite``.

    Parameters
    ----------
    path : pathlib.Path
        The file to write.
    overwrite : bool
        Whether an existing file may be replaced.
    format_name : str
        Named in the messages (``"FITS"``, ``"XISF"``, ``"TIFF"``).
    """
    if path.is_dir():
        msg = f"cannot write {format_name} to '{path}': it is a directory"
        raise IsADirectoryError(msg)
    if not path.parent.is_dir():
        msg = f"cannot write {format_name} to '{path}': folder '{path.parent}' does not exist"
        raise FileNotFoundError(msg)
    if path.exists() and not overwrite:
        msg = f"'{path}' already exists; pass overwrite=True to replace it"
        raise FileExistsError(msg)


def carried_header(
    header: fits.Header | None,
    *,
    provenance: Mapping[str, object] | None = None,
    lines: Sequence[str] = (),
) -> fits.Header:
    """The keywords a writer of another format carries: as :func:`write_fits` writes them.

    Parameters
    ----------
    header : astropy.io.fits.Header or None
        Source header; copied, never modified.
    provenance : mapping, optional
        Keyword -> value or ``(value, comment)``, validated as in :func:`write_fits`.
    lines : sequence of str, optional
        ``HISTORY`` lines, as made by :func:`history_lines`.

    Returns
    -------
    astropy.io.fits.Header
        The source cards less :data:`WRITER_CHANGED_KEYWORDS` and ``NAXISn``, then the
        ``HISTORY`` lines, then the provenance cards (set or replaced).

    Raises
    ------
    ValueError
        For an invalid provenance keyword or value.
    """
    cards = _provenance_cards(provenance or {})
    out = fits.Header()
    _copy_source_cards(out, header)
    for line in lines:
        _append(out, fits.Card("HISTORY", str(line)))
    for card in cards:
        _set_card(out, card)
    return out


def _append(header: fits.Header, card: fits.Card) -> None:
    # useblanks=False: trailing blank cards of the source header are content, not room
    header.append(card, useblanks=False, bottom=True, end=True)


def _copy_source_cards(out: fits.Header, source: fits.Header | None) -> None:
    """Append the source cards to the new primary header, less those the writer sets."""
    if source is None:
        return
    for card in source.copy(strip=False).cards:
        keyword = card.keyword
        if keyword in WRITER_CHANGED_KEYWORDS or _NAXIS_N.match(keyword):
            continue
        _append(out, card)


def _add_history(out: fits.Header, history: Sequence[str]) -> None:
    for line in history_lines(history):
        _append(out, fits.Card("HISTORY", fits_text(line)))


def history_lines(history: Sequence[str]) -> list[str]:
    """The line naming napari-astrodenoise, its version and the UTC time, then ``history``."""
    from napari_astrodenoise import __version__

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [f"napari-astrodenoise {__version__} wrote this file on {stamp}", *map(str, history)]


def fits_text(text: str) -> str:
    """``text`` in the printable ASCII a FITS card holds: other characters escaped.

    A character outside ASCII 32-126 is written as Python writes it in a string literal
    (``é`` -> ``\\xe9``, a newline -> ``\\n``), so a file name such as
    ``Jérôme/NGC 7000 Ha.fits`` stays readable and can be decoded back with
    ``text.encode("ascii").decode("unicode_escape")`` where it holds no backslash of its own.

    Parameters
    ----------
    text : str
        Any text.

    Returns
    -------
    str
        Printable ASCII only.
    """
    return "".join(
        ch if " " <= ch <= "~" else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


def _provenance_cards(provenance: Mapping[str, object]) -> list[fits.Card]:
    """Validate the provenance mapping and return its cards (nothing is written yet)."""
    return [_provenance_card(keyword, item) for keyword, item in provenance.items()]


def _provenance_card(keyword: object, item: object) -> fits.Card:
    key = str(keyword).upper()
    if not _KEYWORD.match(key) or key in _RESERVED_PROVENANCE or _NAXIS_N.match(key):
        msg = (
            f"provenance keyword {keyword!r} is not allowed: use at most 8 characters of "
            "A-Z, 0-9, '-' and '_', and no structural keyword"
        )
        raise ValueError(msg)
    value, comment = item if isinstance(item, tuple) and len(item) == 2 else (item, None)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str):
        value = fits_text(value)
    if value is not None and not isinstance(value, str | bool | int | float):
        msg = f"provenance value for {key} must be str, bool, int or float, got {value!r}"
        raise ValueError(msg)
    if isinstance(value, float) and not math.isfinite(value):
        msg = f"provenance value for {key} must be finite, got {value!r}"
        raise ValueError(msg)
    try:
        card = fits.Card(key, value, "" if comment is None else str(comment))
        card.verify("exception")
    except (ValueError, fits.VerifyError) as exc:
        msg = f"provenance card {key} = {value!r} is not valid FITS: {exc}"
        raise ValueError(msg) from exc
    return card


def _set_card(header: fits.Header, card: fits.Card) -> None:
    if card.keyword in header:
        header[card.keyword] = (card.value, card.comment)
    else:
        _append(header, card)


def _atomic_writeto(hdul: fits.HDUList, path: Path, *, overwrite: bool, checksum: bool) -> None:
    def write(temporary: Path) -> None:
        hdul.writeto(temporary, output_verify="fix+warn", checksum=checksum)

    atomic_write(path, write, overwrite=overwrite)


def atomic_write(path: Path, write: Callable[[Path], None], *, overwrite: bool) -> None:
    """Write a file under a temporary name beside ``path``, flush it, then move it there.

    Parameters
    ----------
    path : pathlib.Path
        The target. A failed write leaves an existing file untouched and no temporary
        file behind; a replaced file keeps its permission bits.
    write : callable
        Writes the whole file to the path it is given.
    overwrite : bool
        Whether an existing ``path`` may be replaced (checked again before the move).
    """
    temporary = path.with_name(f".astrodenoise-{uuid.uuid4().hex[:12]}.{path.name}")
    try:
        write(temporary)
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        if path.exists():
            if not overwrite:
                msg = f"'{path}' already exists; pass overwrite=True to replace it"
                raise FileExistsError(msg)
            shutil.copymode(path, temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
