"""Write one image as XISF: linear Float32, source keywords and properties kept, atomically.

:func:`write_xisf` writes a monolithic XISF 1.0 file with one ``<Image>``:

- ``Float32`` samples, planar storage, little-endian, ``Gray`` (mono) or ``RGB`` (3
  planes); ``bounds`` is ``0:1`` when every finite value lies in [0, 1] (PixInsight's
  normalised range), else the data's finite minimum and maximum. NaN and inf are kept.
- **Rows**: the data are taken in the FITS order (row 0 at the bottom, as every reader
  of this package gives them) and stored top row first, as XISF wants; so a file read
  here and written back holds the same rows, and the picture is the same way up.
- The pixels are one attached block with a SHA-1 checksum, optionally compressed with
  zlib after byte shuffling (``compress=True``).
- ``<FITSKeyword>`` elements: the source header's cards less the structural ones (as
  :func:`~napari_astrodenoise.fits_write.write_fits` drops them), then ``HISTORY`` lines
  (one naming napari-astrodenoise, its version and the UTC time, then ``history``), then
  the ``provenance`` keywords.
- The same history lines are appended to the ``Processing:History`` property (the
  source's text, if any, is kept before them).
- The source's image properties (e.g. ``PixInsight:ProcessingHistory``) and ICC profile
  are written back; its file properties too, except the ``XISF:`` ones, which describe
  the file and are written afresh. The thumbnail is not carried (it would show the
  source's pixels).

Writes are atomic (a temporary file beside the target, flushed, then moved over it); an
existing file is replaced only with ``overwrite=True``.
"""

from __future__ import annotations

import base64
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from astropy.io import fits

from napari_astrodenoise.fits_write import (
    _writable_cube,
    atomic_write,
    carried_header,
    check_target,
    history_lines,
)
from napari_astrodenoise.xisf_blocks import checksum_attribute
from napari_astrodenoise.xisf_blocks import compress as _compress
from napari_astrodenoise.xisf_io import (
    _ARRAY_DTYPES,
    _SCALAR_TYPES,
    SIGNATURE,
    XisfProperty,
    format_fits_value,
)

__all__ = ["write_xisf"]

_NS = "http://www.pixinsight.com/xisf"
_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_ALIGNMENT = 4096
_HISTORY_PROPERTY = "Processing:History"


def write_xisf(
    path: str | os.PathLike,
    data: np.ndarray,
    *,
    header: fits.Header | None = None,
    channel_axis: int | None = None,
    provenance: Mapping[str, object] | None = None,
    history: Sequence[str] = (),
    properties: Mapping[str, XisfProperty] | None = None,
    file_properties: Mapping[str, XisfProperty] | None = None,
    icc_profile: bytes | None = None,
    compress: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write a mono or RGB image as linear Float32 XISF, keeping keywords and properties.

    Parameters
    ----------
    path : str or os.PathLike
        Target file (``.xisf``).
    data : numpy.ndarray
        (H, W) mono, or 3-D colour with ``channel_axis`` naming the 3-plane axis; rows in
        the FITS order (row 0 at the bottom). Converted to float32; NaN and inf kept.
    header : astropy.io.fits.Header, optional
        Source header; its cards become ``<FITSKeyword>`` elements (structural keywords
        dropped). Never modified.
    channel_axis : int, optional
        Required for 3-D data: 0 for (3, H, W), -1 for a napari rgb layer (H, W, 3).
    provenance : mapping, optional
        FITS keyword -> value or ``(value, comment)``, as for ``write_fits``.
    history : sequence of str, optional
        History lines, as ``HISTORY`` keywords and in ``Processing:History``.
    properties, file_properties : mapping of str to XisfProperty, optional
        The source's image and file properties (``format_info`` of the image read).
    icc_profile : bytes, optional
        The source's ICC profile, written back unchanged.
    compress : bool, optional
        Compress the pixels with zlib after byte shuffling. Default False.
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
        For data that are not mono or 3-plane colour, a bad ``channel_axis``, or an
        invalid provenance keyword or value.
    """
    path = Path(path)
    cube = _writable_cube(data, channel_axis)
    planes = cube[np.newaxis] if cube.ndim == 2 else cube
    if planes.shape[0] not in (1, 3):
        msg = (
            f"XISF holds mono or RGB images, got {planes.shape[0]} planes of shape "
            f"{planes.shape[1:]}; write a stack as FITS"
        )
        raise ValueError(msg)
    lines = history_lines(history)
    keywords = carried_header(header, provenance=provenance, lines=lines)
    check_target(path, overwrite=overwrite, format_name="XISF")
    raw = np.ascontiguousarray(planes[:, ::-1, :], dtype="<f4").tobytes()  # FITS -> top-down
    stored = _compress(raw, "zlib", item_size=4) if compress else raw
    image_properties = _with_history(properties or {}, lines)
    block = {
        "geometry": f"{planes.shape[2]}:{planes.shape[1]}:{planes.shape[0]}",
        "sampleFormat": "Float32",
        "bounds": _bounds(planes),
        "colorSpace": "Gray" if planes.shape[0] == 1 else "RGB",
        "pixelStorage": "Planar",
        "byteOrder": "little",
        "checksum": checksum_attribute(stored),
    }
    if compress:
        block["compression"] = f"zlib+sh:{len(raw)}:4"

    def build(position: int) -> bytes:
        root = _root()
        image = ET.SubElement(
            root, "Image", {**block, "location": f"attachment:{position}:{len(stored)}"}
        )
        _add_keywords(image, keywords)
        for identifier, prop in image_properties.items():
            _add_property(image, identifier, prop)
        if icc_profile:
            icc = ET.SubElement(image, "ICCProfile", {"location": "inline:base64"})
            icc.text = base64.b64encode(bytes(icc_profile)).decode("ascii")
        _add_metadata(root, file_properties or {}, compressed=compress)
        declaration = b'<?xml version="1.0" encoding="UTF-8"?>\n'
        return declaration + ET.tostring(root, encoding="unicode").encode("utf-8")

    xml, position = _layout(build)

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as handle:
            handle.write(SIGNATURE + len(xml).to_bytes(4, "little") + bytes(4))
            handle.write(xml)
            handle.write(bytes(position - 16 - len(xml)))
            handle.write(stored)

    atomic_write(path, write, overwrite=overwrite)
    return path


def _layout(build: object) -> tuple[bytes, int]:
    """The XML header and the block position it names, found until they agree."""
    position = _ALIGNMENT
    for _ in range(8):
        xml = build(position)  # type: ignore[operator]
        needed = math.ceil((16 + len(xml)) / _ALIGNMENT) * _ALIGNMENT
        if needed == position:
            return xml, position
        position = needed
    msg = "the XISF header did not settle on a block position"  # pragma: no cover
    raise RuntimeError(msg)  # pragma: no cover


def _root() -> ET.Element:
    return ET.Element(
        "xisf",
        {
            "version": "1.0",
            "xmlns": _NS,
            "xmlns:xsi": _XSI,
            "xsi:schemaLocation": f"{_NS} http://pixinsight.com/xisf/xisf-1.0.xsd",
        },
    )


def _bounds(planes: np.ndarray) -> str:
    finite = planes[np.isfinite(planes)]
    if finite.size == 0:
        return "0:1"
    low, high = float(finite.min()), float(finite.max())
    if low >= 0.0 and high <= 1.0:
        return "0:1"
    if low == high:
        high = low + 1.0
    return f"{low!r}:{high!r}"


def _add_keywords(image: ET.Element, header: fits.Header) -> None:
    for card in header.cards:
        key = card.keyword
        if key in ("HISTORY", "COMMENT", ""):
            attrs = {"name": key, "value": "", "comment": str(card.value)}
        else:
            attrs = {"name": key, "value": format_fits_value(card.value), "comment": card.comment}
        ET.SubElement(image, "FITSKeyword", attrs)


def _with_history(
    properties: Mapping[str, XisfProperty], lines: Sequence[str]
) -> dict[str, XisfProperty]:
    out = dict(properties)
    old = out.get(_HISTORY_PROPERTY)
    before = str(old.value).rstrip("\n") + "\n" if old is not None and old.value else ""
    out[_HISTORY_PROPERTY] = XisfProperty("String", before + "\n".join(lines))
    return out


def _add_metadata(
    root: ET.Element, file_properties: Mapping[str, XisfProperty], *, compressed: bool
) -> None:
    from napari_astrodenoise import __version__

    metadata = ET.SubElement(root, "Metadata")
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    own = {
        "XISF:CreationTime": XisfProperty("TimePoint", now),
        "XISF:CreatorApplication": XisfProperty("String", f"napari-astrodenoise {__version__}"),
        "XISF:BlockAlignmentSize": XisfProperty("UInt16", _ALIGNMENT),
    }
    if compressed:
        own["XISF:CompressionCodecs"] = XisfProperty("String", "zlib+sh")
    kept = {k: v for k, v in file_properties.items() if not k.startswith("XISF:")}
    for identifier, prop in {**own, **kept}.items():
        _add_property(metadata, identifier, prop)


def _add_property(parent: ET.Element, identifier: str, prop: XisfProperty) -> None:
    attrs = {"id": identifier, "type": prop.type}
    if prop.comment:
        attrs["comment"] = prop.comment
    if prop.format:
        attrs["format"] = prop.format
    element = ET.SubElement(parent, "Property", attrs)
    ptype, value = prop.type, prop.value
    if ptype == "String":
        element.text = str(value)
    elif ptype == "Boolean":
        element.set("value", "true" if value else "false")
    elif _SCALAR_TYPES.get(ptype) is complex:
        element.set("value", f"({complex(value).real!r},{complex(value).imag!r})")
    elif _SCALAR_TYPES.get(ptype) is float:
        element.set("value", repr(float(value)))
    elif _SCALAR_TYPES.get(ptype) is int:
        element.set("value", str(int(value)))
    elif ptype[:-6] in _ARRAY_DTYPES and ptype.endswith(("Vector", "Matrix")):
        _add_array(element, ptype, value)
    else:  # TimePoint, and types of later revisions kept as text
        element.set("value", str(value))


def _add_array(element: ET.Element, ptype: str, value: object) -> None:
    array = np.asarray(value, dtype="<" + _ARRAY_DTYPES[ptype[:-6]])
    if ptype.endswith("Vector"):
        element.set("length", str(array.size))
    else:
        element.set("rows", str(array.shape[0]))
        element.set("columns", str(array.shape[1]))
    element.set("location", "inline:base64")
    element.text = base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")
