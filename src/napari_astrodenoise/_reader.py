"""napari reader: FITS, XISF and TIFF images as image layers, the picture's top at the top.

Thin glue over :func:`napari_astrodenoise.image_io.read_image`; imports neither torch nor
napari.

How a file becomes layers
-------------------------
Every 2-D or 3-D image HDU with data becomes one image layer (tables, empty HDUs and 1-D
images are skipped); every image of an XISF file, and the first image of an astro TIFF
(16-bit integer or 32-bit float, mono or RGB), too. A cube of 3 planes is one colour
layer: the (3, H, W) array is passed as ``np.moveaxis(data, 0, -1)``, a (H, W, 3) view,
with ``rgb=True``; other cubes are a stack with a slider. Metadata are
:func:`napari_astrodenoise.fits_io.layer_metadata`.

Several files (napari passes a list when asked to stack, ``viewer.open(paths, stack=True)``)
become one stack layer with a slider when each holds one image of the same shape and kind,
such as a night's subframes; otherwise a warning says why and each file gives its layers.

Orientation
-----------
napari draws row 0 at the top; FITS row 1 is the bottom of the picture. XISF and TIFF store
the top row first, and their readers reverse the rows, so every image arrives in the FITS
order and the same sky is shown the same way up whichever file it came from. The array
and its pixel (data) coordinates are left as they are; the layer gets a transform that
mirrors the y axis: ``scale`` -1 and ``translate`` H - 1 on it. Data row ``r`` is drawn
at world ``y = H - 1 - r``, so the world extent is the same as unflipped (-0.5 .. H - 0.5)
and layers derived from this one line up when they copy its ``scale`` and ``translate``
(see :func:`display_transform`).

Errors
------
:func:`napari_get_reader` never raises: it returns None for anything whose name does not
end like a FITS, XISF or TIFF file (any case), and for a TIFF that is not an astro image
(an 8-bit picture, say: napari's own reader takes it); for the others it returns the reader
function. It opens no file but a TIFF, whose first directory it reads. The reader function
raises :class:`~napari_astrodenoise.fits_io.ImageReadError` (a ``ValueError``;
``FitsReadError``, ``XisfReadError`` or ``TiffReadError``) naming the file and the
reason; it is not turned into a notification here, because napari already surfaces reader
errors without stopping:

- ``viewer.open(path, plugin="napari-astrodenoise")`` re-raises it to the script;
- ``viewer.open(path, plugin=None)`` with this plugin preferred for ``*.fits`` wraps it in
  napari's ``ReaderPluginError``, whose message quotes ours;
- File > Open and drag-and-drop: napari shows its reader dialog with our message and
  offers the other readers; an error from an explicitly chosen reader leaves the Qt slot
  and napari's exception hook shows it as an error notification.

In every case no layer is added and the viewer keeps running. napari's builtin reader
also lists ``*.fits``/``*.fit``/``*.fts``/``*.fz``, and ``viewer.open`` defaults to
``plugin="napari"``: scripts should name this plugin.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from napari_astrodenoise.fits_io import (
    CONTRAST_SAMPLE,
    FitsImage,
    default_contrast_limits,
    layer_metadata,
)
from napari_astrodenoise.image_io import format_of_name, read_image

__all__ = [
    "display_kwargs",
    "display_transform",
    "fits_layer_data",
    "napari_get_reader",
    "read_fits_layers",
    "read_image_layers",
    "stack_layer_data",
]

LayerData = tuple[Any, dict[str, Any], str]
PathOrPaths = str | os.PathLike | Sequence[str | os.PathLike]


def napari_get_reader(path: object) -> Callable[[PathOrPaths], list[LayerData]] | None:
    """Return the reader for FITS, XISF and astro TIFF files, None for anything else.

    Parameters
    ----------
    path : object
        What napari passes: a str path, or a list of str paths (``stack=True``). Any
        other object is declined.

    Returns
    -------
    callable or None
        :func:`read_image_layers` when every path's name ends with a FITS suffix
        (``.fits``, ``.fit``, ``.fts``, these with ``.gz``, ``.fz``), ``.xisf``, or
        ``.tif``/``.tiff`` for a 16-bit integer or 32-bit float mono or RGB image (any
        case), and is not a directory; None otherwise. Never raises.
    """
    if isinstance(path, str | os.PathLike):
        paths: list[object] = [path]
    elif isinstance(path, list | tuple) and path:
        paths = list(path)
    else:
        return None
    for item in paths:
        found = format_of_name(item)
        if found is None or os.path.isdir(item):  # type: ignore[arg-type]
            return None
        if found == "tiff" and not _is_astro_tiff(item):
            return None
    return read_image_layers


def _is_astro_tiff(path: object) -> bool:
    from napari_astrodenoise.tiff_io import is_astro_tiff

    return is_astro_tiff(path)  # type: ignore[arg-type]


def read_image_layers(path: PathOrPaths) -> list[LayerData]:
    """Read FITS, XISF or TIFF file(s) into napari layer data tuples.

    Parameters
    ----------
    path : str, os.PathLike or sequence of them
        One file, or several (napari's ``stack=True``).

    Returns
    -------
    list of tuple
        ``(data, kwargs, "image")`` for each image HDU, see :func:`fits_layer_data`; for
        several files that each hold one image of the same shape and kind, one stack layer
        (see :func:`stack_layer_data`).

    Raises
    ------
    napari_astrodenoise.fits_io.ImageReadError
        For the first file that cannot be read, naming it and the reason.
    """
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    images = [read_image(item, lazy=_is_large(item)) for item in paths]
    if len(paths) > 1:
        reason = _why_not_stackable(images)
        if reason is None:
            return [stack_layer_data([found[0] for found in images])]
        warnings.warn(f"not stacked: {reason}; each file is opened as it is", stacklevel=2)
    return [fits_layer_data(image) for found in images for image in found]


#: files at least this large open lazily: dask arrays read block by block as napari shows them
LAZY_READ_BYTES = 512 << 20
#: a lazy 2-D layer with a side above this gets a multiscale pyramid (strided views), so a
#: zoomed-out view reads every k-th row only
PYRAMID_SIDE = 4096


def _is_large(path: str | os.PathLike) -> bool:
    try:
        return os.stat(path).st_size >= LAZY_READ_BYTES
    except OSError:
        return False  # the reader says why it cannot read the file


#: the name the reader had when it read FITS alone
read_fits_layers = read_image_layers


def _why_not_stackable(images: list[list[FitsImage]]) -> str | None:
    first = images[0][0] if images[0] else None
    for found in images:
        if len(found) != 1:
            name = found[0].path.name if found else "a file"
            return f"{name} holds {len(found)} images, not one"
        image = found[0]
        if (image.kind, image.data.shape) != (first.kind, first.data.shape):
            return (
                f"{image.path.name} is a {image.kind} image of shape {image.data.shape}, "
                f"{first.path.name} a {first.kind} image of shape {first.data.shape}"
            )
    if first.kind == "stack":
        return "the files are already stacks"
    return None


def stack_layer_data(images: Sequence[FitsImage]) -> LayerData:
    """One stack layer, ``(N, H, W)`` or ``(N, H, W, 3)``, from images of one shape and kind.

    The first image gives the name (with `` (N files)``), the metadata and the WCS;
    ``metadata["stack_paths"]`` lists every file in slider order and
    ``metadata["stack_headers"]`` their headers. The layer's first axis is the file.
    """
    first = images[0]
    rgb = first.kind == "rgb"
    data = np.stack([np.moveaxis(im.data, 0, -1) if rgb else im.data for im in images])
    metadata = layer_metadata(first)
    metadata["stack_paths"] = [str(im.path) for im in images]
    metadata["stack_headers"] = [im.header for im in images]
    kwargs: dict[str, Any] = {
        "name": f"{first.name} ({len(images)} files)",
        "metadata": metadata,
        "rgb": rgb,
        **display_transform(data.shape, rgb=rgb),
    }
    kwargs.update(display_kwargs(data, rgb=rgb))
    return data, kwargs, "image"


def fits_layer_data(image: FitsImage) -> LayerData:
    """Build the napari image layer data tuple for one image (FITS, XISF or TIFF).

    Parameters
    ----------
    image : FitsImage
        As read by :func:`napari_astrodenoise.image_io.read_image`.

    Returns
    -------
    tuple
        ``(data, kwargs, "image")``: the float32 array as read (a (H, W, 3) view for
        colour), and kwargs ``name``, ``metadata``, ``rgb``, ``scale`` and ``translate``
        (the y flip), and the display: see :func:`display_kwargs`.
    """
    rgb = image.kind == "rgb"
    data = np.moveaxis(image.data, 0, -1) if rgb else image.data
    kwargs: dict[str, Any] = {
        "name": image.name,
        "metadata": layer_metadata(image),
        "rgb": rgb,
        **display_transform(data.shape, rgb=rgb),
    }
    # of a lazy image only a strided sample is read to set the display
    shown = data if image.lazy_rows is None else _contrast_sample(image)
    if rgb and image.lazy_rows is not None:
        shown = np.moveaxis(shown, 0, -1)
    kwargs.update(display_kwargs(shown, rgb=rgb))
    if image.lazy_rows is not None and max(data.shape[-2:]) > PYRAMID_SIDE and not rgb:
        kwargs["multiscale"] = True
        return _pyramid(data, image.lazy_rows), kwargs, "image"
    return data, kwargs, "image"


def display_kwargs(data: np.ndarray, *, rgb: bool) -> dict[str, Any]:
    """``contrast_limits`` and ``gamma`` to show linear data; the data are not touched.

    The astro auto-stretch (:func:`napari_astrodenoise.core.display.display_stretch`, colour
    channels linked) unless it is switched off in the settings
    (:func:`napari_astrodenoise.settings.auto_stretch`); then the finite pixels' 0.5 and
    99.8 percentiles with gamma 1. Empty for an image with fewer than two distinct values.
    """
    from napari_astrodenoise.core.display import display_stretch
    from napari_astrodenoise.settings import auto_stretch

    if auto_stretch():
        stretch = display_stretch(data, channel_axis=-1 if rgb else None)
        return {} if stretch is None else stretch.layer_kwargs()
    limits = default_contrast_limits(np.moveaxis(data, -1, 0) if rgb else data)
    return {} if limits is None else {"contrast_limits": limits, "gamma": 1.0}


def _contrast_sample(image: FitsImage) -> Any:
    """Of a lazy image, the pixels `default_contrast_limits` looks at: only those are read."""
    step = max(1, math.ceil(math.sqrt(image.data.size / CONTRAST_SAMPLE)))
    return image.lazy_rows.strided(step)[(slice(None),) * image.data.ndim]


def _pyramid(data: Any, rows: Any) -> list[Any]:
    """Lazy (..., H, W) levels, halved until a side fits `PYRAMID_SIDE`; each reads its rows."""
    from napari_astrodenoise.fits_lazy import lazy_image

    levels = [data]
    while max(levels[-1].shape[-2:]) > PYRAMID_SIDE:
        levels.append(lazy_image(rows.strided(2 ** len(levels))))
    return levels


def display_transform(shape: Sequence[int], *, rgb: bool) -> dict[str, tuple[float, ...]]:
    """Return the ``scale`` and ``translate`` that show FITS row 1 at the bottom.

    Parameters
    ----------
    shape : sequence of int
        Shape of the layer data: (H, W), (N, H, W), or (H, W, C) when ``rgb``.
    rgb : bool
        Whether the last axis is colour (not a spatial axis for napari).

    Returns
    -------
    dict
        ``{"scale": ..., "translate": ...}``, one entry per spatial axis: -1 and H - 1
        on the y axis (the second last spatial axis), 1 and 0 elsewhere.
    """
    spatial = tuple(shape[:-1]) if rgb else tuple(shape)
    if len(spatial) < 2:
        msg = f"need at least 2 spatial axes to flip, got shape {tuple(shape)} (rgb={rgb})"
        raise ValueError(msg)
    scale = [1.0] * len(spatial)
    translate = [0.0] * len(spatial)
    scale[-2] = -1.0
    translate[-2] = float(spatial[-2] - 1)
    return {"scale": tuple(scale), "translate": tuple(translate)}
