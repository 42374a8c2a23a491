"""napari writers: save an image layer as linear float32 FITS, XISF or TIFF, header kept.

Thin glue over :func:`napari_astrodenoise.image_io.write_image`; imports neither torch nor
napari. What a written FITS file holds (XISF and TIFF hold the same, as their writers in
:mod:`~napari_astrodenoise.xisf_write` and :mod:`~napari_astrodenoise.tiff_io` say: the
keywords, with the WCS, in ``<FITSKeyword>`` elements or the TIFF description; rows stored
top row first, as those formats want; mono and RGB layers only; an XISF layer's properties
and ICC profile written back):

- the layer data as float32 in the axis order it came from: (H, W); a stack (N, H, W) as
  ``NAXIS3 = N``; an rgb layer (H, W, 3) as (3, H, W), i.e. ``NAXIS3 = 3``. The display
  transform (the y flip set by the reader) is not applied: the array is written as is, so
  a FITS file read and saved again keeps its orientation;
- the header in ``metadata["fits_header"]`` (changed only as ``fits_io`` documents), with
  ``metadata["wcs"]`` added when that header has no WCS of its own;
- ``metadata["astrodenoise"]["provenance"]`` as keyword cards and
  ``metadata["astrodenoise"]["history"]`` as ``HISTORY`` lines, after a ``HISTORY`` line
  naming napari-astrodenoise and one naming the napari layer.

An existing file is replaced (napari's save dialog has already asked), atomically: a failed
write leaves it untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from astropy.io import fits

from napari_astrodenoise.image_io import write_image

__all__ = ["write_fits_layer", "write_tiff_layer", "write_xisf_layer"]


def write_fits_layer(path: str, data: Any, meta: dict) -> list[str]:
    """Write one napari image layer to a FITS file.

    Parameters
    ----------
    path : str
        Target file (``.fits``, ``.fit`` or ``.fts``).
    data : array-like
        The layer data; for a multiscale layer, the list of levels (the first, full
        resolution level is written).
    meta : dict
        The layer state (``layer.as_layer_data_tuple()[1]``): ``metadata``, ``rgb``,
        ``multiscale`` and ``name`` are used.

    Returns
    -------
    list of str
        The one file written.

    Raises
    ------
    ValueError
        For data that are neither 2-D nor 3-D, or invalid provenance in the metadata.
    """
    return _write_layer(path, data, meta, "fits")


def write_xisf_layer(path: str, data: Any, meta: dict) -> list[str]:
    """Write one mono or RGB napari image layer to an XISF file (Float32).

    Parameters and return as :func:`write_fits_layer`; ``metadata["format_info"]`` of a
    layer read from XISF gives the properties and ICC profile written back.

    Raises
    ------
    ValueError
        For a stack layer (XISF holds mono or RGB), or invalid provenance.
    """
    return _write_layer(path, data, meta, "xisf")


def write_tiff_layer(path: str, data: Any, meta: dict) -> list[str]:
    """Write one mono or RGB napari image layer to a float32 TIFF.

    Parameters and return as :func:`write_fits_layer`.

    Raises
    ------
    ValueError
        For a stack layer (TIFF is written mono or RGB), or invalid provenance.
    """
    return _write_layer(path, data, meta, "tiff")


def _write_layer(path: str, data: Any, meta: dict, file_format: str) -> list[str]:
    metadata = meta.get("metadata") or {}
    array = np.asarray(data[0] if meta.get("multiscale") else data)
    rgb = bool(meta.get("rgb", False))
    channel_axis = -1 if rgb else (0 if array.ndim == 3 else None)
    extra = metadata.get("astrodenoise") or {}
    history = [f"saved from napari layer '{meta.get('name', '')}'", *extra.get("history", ())]
    source_info = metadata.get("format_info") if metadata.get("file_format") == "xisf" else None
    written = write_image(
        path,
        array,
        file_format=file_format,
        header=_layer_header(metadata),
        channel_axis=channel_axis,
        provenance=extra.get("provenance"),
        history=history,
        format_info=source_info,
        overwrite=True,
    )
    return [str(written)]


def _layer_header(metadata: Mapping[str, Any]) -> fits.Header | None:
    """The layer's FITS header, with its WCS added when the header has none."""
    header = metadata.get("fits_header")
    if isinstance(header, str):
        header = fits.Header.fromstring(header)
    elif header is not None and not isinstance(header, fits.Header):
        msg = f"metadata['fits_header'] must be an astropy Header, got {type(header).__name__}"
        raise ValueError(msg)
    wcs = metadata.get("wcs")
    if wcs is None or not hasattr(wcs, "to_header"):
        return header
    header = fits.Header() if header is None else header.copy()
    if not any(str(key).startswith("CTYPE") for key in header):
        header.extend(wcs.to_header(relax=True), update=True)
    return header
