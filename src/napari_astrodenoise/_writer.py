"""napari writer: save an image layer as linear float32 FITS, header, WCS and provenance kept.

Thin glue over :func:`napari_astrodenoise.fits_io.write_fits`; imports neither torch nor
napari. What the written file holds:

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

from napari_astrodenoise.fits_io import write_fits

__all__ = ["write_fits_layer"]


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
    metadata = meta.get("metadata") or {}
    array = np.asarray(data[0] if meta.get("multiscale") else data)
    rgb = bool(meta.get("rgb", False))
    channel_axis = -1 if rgb else (0 if array.ndim == 3 else None)
    extra = metadata.get("astrodenoise") or {}
    history = [f"saved from napari layer '{meta.get('name', '')}'", *extra.get("history", ())]
    written = write_fits(
        path,
        array,
        header=_layer_header(metadata),
        channel_axis=channel_axis,
        provenance=extra.get("provenance"),
        history=history,
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
