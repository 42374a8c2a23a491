"""Read XISF images (PixInsight's format) into the same image object as FITS files.

:func:`read_xisf` reads every ``<Image>`` of a monolithic XISF 1.0 file:

- geometry ``WIDTH:HEIGHT:CHANNELS`` (2-D images only), ``Gray`` with 1 channel (mono) or
  ``RGB`` with 3 (colour); planar or normal (interleaved) pixel storage; samples UInt8,
  UInt16, UInt32, UInt64, Float32 or Float64, little- or big-endian;
- data blocks attached, embedded or inline; zlib, lz4, lz4hc or zstd compression, each with
  or without byte shuffling, in one piece or in sub-blocks; the checksum verified when the
  block has one (see :mod:`napari_astrodenoise.xisf_blocks`);
- the ``orientation`` attribute applied, so the picture is the one meant to be shown.

What the image object holds:

- ``data``: float32, the sample values as stored (integers keep their ADU, 0-65535 for
  UInt16; floats are not rescaled by ``bounds``), NaN kept; ``(H, W)`` or ``(3, H, W)``.
  **Rows follow the FITS convention**: XISF stores the top row first, FITS the bottom
  row first; the rows are reversed on reading, so ``data[0]`` is the bottom of the
  picture, as from :func:`~napari_astrodenoise.fits_io.read_fits`. The napari reader's
  y flip then shows the same sky the same way up from either file, WCS keywords apply
  as they do to FITS, and a FITS file written from it is the right way up;
- ``header``: the ``<FITSKeyword>`` elements in file order (duplicates, ``HISTORY`` and
  ``COMMENT`` kept) as an :class:`astropy.io.fits.Header`; ``wcs`` from its keywords;
- ``format_info["properties"]`` (the image's ``<Property>`` elements) and
  ``["file_properties"]`` (the file's ``<Metadata>``), id -> :class:`XisfProperty`;
  ``["icc_profile"]`` (bytes or None); ``["image_attributes"]`` (the ``<Image>``
  element's attributes as in the file). Thumbnails are not read.

Errors are one :class:`XisfReadError` (a ``ValueError``) naming the file and the reason:
no such file, not XISF, a header or block cut short, XML that does not parse, a checksum
that does not match, an unknown compression or a block that does not decompress, and
content that is not read (complex samples, alpha channels, CIELab, N-D images, external
data blocks). Nothing is ever written to the file.
"""

from __future__ import annotations

import os
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning

from napari_astrodenoise.fits_io import FitsImage, ImageReadError, celestial_wcs
from napari_astrodenoise.xisf_blocks import (
    BlockError,
    decode_text,
    decompress,
    parse_compression,
    verify_checksum,
)

__all__ = [
    "SIGNATURE",
    "XISF_SUFFIXES",
    "XisfProperty",
    "XisfReadError",
    "format_fits_value",
    "is_xisf_path",
    "parse_fits_value",
    "read_xisf",
]

#: File-name endings read as XISF (compared case-insensitively).
XISF_SUFFIXES: tuple[str, ...] = (".xisf",)
#: The first 8 bytes of a monolithic XISF 1.0 file.
SIGNATURE = b"XISF0100"

_SAMPLES = {
    "UInt8": "u1",
    "UInt16": "u2",
    "UInt32": "u4",
    "UInt64": "u8",
    "Float32": "f4",
    "Float64": "f8",
}
_SCALAR_TYPES = {
    "Int8": int,
    "UInt8": int,
    "Int16": int,
    "UInt16": int,
    "Int32": int,
    "UInt32": int,
    "Int64": int,
    "UInt64": int,
    "Float32": float,
    "Float64": float,
    "Complex32": complex,
    "Complex64": complex,
}
_ARRAY_DTYPES = {
    "I8": "i1",
    "UI8": "u1",
    "I16": "i2",
    "UI16": "u2",
    "I32": "i4",
    "UI32": "u4",
    "I64": "i8",
    "UI64": "u8",
    "F32": "f4",
    "F64": "f8",
    "C32": "c8",
    "C64": "c16",
}
_TYPE_ALIASES = {
    "Byte": "UInt8",
    "Short": "Int16",
    "UShort": "UInt16",
    "Int": "Int32",
    "UInt": "UInt32",
    "Float": "Float32",
    "Double": "Float64",
    "ByteArray": "UI8Vector",
    "IVector": "I32Vector",
    "UIVector": "UI32Vector",
    "Vector": "F64Vector",
    "Matrix": "F64Matrix",
}
_ROTATIONS = {"0": 0, "90": 1, "-90": -1, "270": -1, "180": 2}


class XisfReadError(ImageReadError):
    """An XISF file that was taken for reading could not be read."""

    format_name = "XISF"


@dataclass
class XisfProperty:
    """One XISF property.

    Attributes
    ----------
    type : str
        The XISF type name (``String``, ``Float64``, ``F64Vector``, ``TimePoint``...),
        aliases resolved (``Double`` -> ``Float64``).
    value : object
        str (String, TimePoint), bool, int, float, complex, or a numpy array (vectors,
        1-D; matrices, 2-D).
    comment : str or None
        The ``comment`` attribute.
    format : str or None
        The ``format`` attribute (a display hint).
    """

    type: str
    value: Any
    comment: str | None = None
    format: str | None = None


def is_xisf_path(path: object) -> bool:
    """Say whether ``path`` is a str or path-like whose name ends in ``.xisf`` (any case)."""
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    return isinstance(path, str) and path.lower().endswith(XISF_SUFFIXES)


def read_xisf(path: str | os.PathLike) -> list[FitsImage]:
    """Read every image of an XISF file.

    Parameters
    ----------
    path : str or os.PathLike
        A monolithic XISF 1.0 file.

    Returns
    -------
    list of FitsImage
        In file order; float32 data with rows in the FITS order (bottom row first),
        header from the FITS keywords, WCS, XISF properties and ICC profile in
        ``format_info`` (see this module's docstring).

    Raises
    ------
    XisfReadError
        When the file is missing, not XISF, cut short, corrupt, or holds content that is
        not read; the message names the file and the reason.
    """
    path = Path(path)
    try:
        _check_file(path)
        with open(path, "rb") as handle:
            blocks = _Blocks(handle, os.fstat(handle.fileno()).st_size)
            root = _read_header(handle, blocks.size)
            images = _read_images(path, root, blocks)
    except XisfReadError:
        raise
    except (BlockError, OSError) as exc:
        reason = "permission denied" if isinstance(exc, PermissionError) else str(exc)
        raise XisfReadError(path, reason) from exc
    return images


def _check_file(path: Path) -> None:
    if not path.exists():
        raise XisfReadError(path, "no such file")
    if not path.is_file():
        raise XisfReadError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise XisfReadError(path, "the file is empty (0 bytes)")


def _local(tag: object) -> str:
    """An element's name without its namespace."""
    return str(tag).rpartition("}")[2]


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in element if _local(child.tag) == name]


def _read_header(handle: BinaryIO, size: int) -> ET.Element:
    head = handle.read(16)
    if head[:8] != SIGNATURE:
        if head[:4] == b"XISF":
            msg = f"XISF version '{head[4:8].decode('ascii', 'replace')}' is not read (only 0100)"
        else:
            msg = "not an XISF file: it does not start with the signature XISF0100"
        raise BlockError(msg)
    if len(head) < 16:
        msg = "the file is truncated: it ends inside the XISF file header"
        raise BlockError(msg)
    length = int.from_bytes(head[8:12], "little")
    if 16 + length > size:
        msg = (
            f"the file is truncated: the XML header needs {length} bytes but only "
            f"{size - 16} follow the file header"
        )
        raise BlockError(msg)
    text = handle.read(length).rstrip(b"\0")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        msg = f"the XML header does not parse ({exc})"
        raise BlockError(msg) from None
    if _local(root.tag) != "xisf":
        msg = f"the XML header's root element is <{_local(root.tag)}>, not <xisf>"
        raise BlockError(msg)
    return root


class _Blocks:
    """Reads the data block an element points to, checked and decompressed."""

    def __init__(self, handle: BinaryIO, size: int) -> None:
        self.handle = handle
        self.size = size

    def read(self, element: ET.Element, subject: str) -> bytes:
        location = (element.get("location") or "").strip()
        kind, _, rest = location.partition(":")
        holder = element
        if kind == "attachment":
            stored = self._attachment(rest, subject)
        elif kind == "inline":
            stored = decode_text(element.text, rest, subject)
        elif kind == "embedded":
            found = _children(element, "Data")
            if not found:
                msg = f"{subject} is 'embedded' but its element has no <Data> child"
                raise BlockError(msg)
            holder = found[0]
            stored = decode_text(holder.text, holder.get("encoding", "base64"), subject)
        elif location.startswith(("url(", "path(")):
            msg = (
                f"{subject} lies in another file ({location}); only monolithic XISF "
                "files, with every block inside, are read"
            )
            raise BlockError(msg)
        else:
            msg = f"{subject} has an unknown location '{location}'"
            raise BlockError(msg)
        return _checked(stored, holder, element, subject)

    def _attachment(self, rest: str, subject: str) -> bytes:
        try:
            position, length = (int(v) for v in rest.split(":"))
        except ValueError:
            msg = f"{subject} has a malformed location 'attachment:{rest}'"
            raise BlockError(msg) from None
        if position < 0 or length < 0 or position + length > self.size:
            msg = (
                f"the file is truncated: {subject} lies at bytes {position} to "
                f"{position + length} but the file has {self.size} bytes"
            )
            raise BlockError(msg)
        self.handle.seek(position)
        return self.handle.read(length)


def _checked(stored: bytes, holder: ET.Element, element: ET.Element, subject: str) -> bytes:
    """Verify the checksum of a stored block, then decompress it."""

    def attribute(name: str) -> str | None:
        return holder.get(name) or element.get(name)

    checksum = attribute("checksum")
    if checksum:
        verify_checksum(stored, checksum, subject)
    compression = attribute("compression")
    if not compression:
        return stored
    spec = parse_compression(compression, subject)
    return decompress(stored, spec, subject, attribute("subblocks"))


def _read_images(path: Path, root: ET.Element, blocks: _Blocks) -> list[FitsImage]:
    file_properties: dict[str, XisfProperty] = {}
    for metadata in _children(root, "Metadata"):
        file_properties.update(_properties(metadata, blocks))
    elements = _children(root, "Image")
    if not elements:
        msg = "it holds no <Image> element"
        raise BlockError(msg)
    several = len(elements) > 1
    return [
        _read_image(path, index, element, blocks, file_properties, several=several)
        for index, element in enumerate(elements)
    ]


def _read_image(
    path: Path,
    index: int,
    element: ET.Element,
    blocks: _Blocks,
    file_properties: dict[str, XisfProperty],
    *,
    several: bool,
) -> FitsImage:
    subject = f"image {index}" if several else "the image"
    width, height, channels = _geometry(element.get("geometry"), subject)
    dtype = _sample_dtype(element, subject)
    kind = _kind(element.get("colorSpace", "Gray"), channels, subject)
    raw = blocks.read(element, f"{subject}'s data block")
    planes = _planes(raw, element, (width, height, channels), dtype, subject)
    data = np.ascontiguousarray(planes[:, ::-1, :], dtype=np.float32)  # top-down -> FITS
    del raw, planes
    header = _header(element)
    return FitsImage(
        data=data[0] if kind == "mono" else data,
        header=header,
        wcs=celestial_wcs(header),
        path=path,
        hdu_index=index,
        extname=element.get("id") or None,
        name=f"{path.stem}[{index}]" if several else path.stem,
        bayer_pattern=_bayer_pattern(element, header, data.shape[1]) if kind == "mono" else None,
        kind=kind,
        file_format="xisf",
        format_info={
            "properties": _properties(element, blocks),
            "file_properties": file_properties,
            "icc_profile": _icc_profile(element, blocks),
            "image_attributes": dict(element.attrib),
        },
    )


def _geometry(text: str | None, subject: str) -> tuple[int, int, int]:
    try:
        sizes = [int(v) for v in (text or "").split(":")]
    except ValueError:
        sizes = []
    if len(sizes) < 3 or min(sizes) < 1:
        msg = f"{subject} has a malformed geometry '{text}'"
        raise BlockError(msg)
    if len(sizes) > 3:
        msg = f"{subject} is {len(sizes) - 1}-D (geometry '{text}'); only 2-D images are read"
        raise BlockError(msg)
    return sizes[0], sizes[1], sizes[2]


def _sample_dtype(element: ET.Element, subject: str) -> np.dtype:
    sample = _TYPE_ALIASES.get(element.get("sampleFormat", ""), element.get("sampleFormat", ""))
    if sample.startswith("Complex"):
        msg = f"{subject} has complex samples ({sample}), which are not supported"
        raise BlockError(msg)
    if sample not in _SAMPLES:
        msg = f"{subject} has the unknown sample format '{sample}'"
        raise BlockError(msg)
    order = element.get("byteOrder", "little").strip().lower()
    if order not in ("little", "big"):
        msg = f"{subject} has the unknown byte order '{order}'"
        raise BlockError(msg)
    return np.dtype(("<" if order == "little" else ">") + _SAMPLES[sample])


def _kind(color_space: str, channels: int, subject: str) -> str:
    nominal = {"Gray": 1, "RGB": 3}.get(color_space)
    if nominal is None:
        msg = (
            f"{subject} is in the {color_space} colour space; only Gray (mono) and RGB "
            "images are read"
        )
        raise BlockError(msg)
    if channels < nominal:
        msg = f"{subject} has {channels} channel(s), fewer than {color_space} needs"
        raise BlockError(msg)
    if channels > nominal:
        msg = (
            f"{subject} has {channels} channels in the {color_space} colour space: "
            f"{channels - nominal} alpha channel(s), which are not supported"
        )
        raise BlockError(msg)
    return "mono" if nominal == 1 else "rgb"


def _planes(
    raw: bytes,
    element: ET.Element,
    geometry: tuple[int, int, int],
    dtype: np.dtype,
    subject: str,
) -> np.ndarray:
    """The stored samples as (C, H, W), top row first, orientation applied."""
    width, height, channels = geometry
    needed = width * height * channels * dtype.itemsize
    if len(raw) != needed:
        msg = (
            f"{subject}'s data block holds {len(raw)} bytes; a {width}x{height}x{channels} "
            f"{element.get('sampleFormat')} image needs {needed}"
        )
        raise BlockError(msg)
    samples = np.frombuffer(raw, dtype)
    storage = element.get("pixelStorage", "Planar").strip().lower()
    if storage == "planar":
        planes = samples.reshape(channels, height, width)
    elif storage == "normal":
        planes = samples.reshape(height, width, channels).transpose(2, 0, 1)
    else:
        msg = f"{subject} has the unknown pixel storage '{storage}'"
        raise BlockError(msg)
    return _orient(planes, element.get("orientation"), subject)


def _orient(planes: np.ndarray, text: str | None, subject: str) -> np.ndarray:
    """Apply an ``orientation`` (a rotation, counter-clockwise, then a horizontal flip)."""
    if not text:
        return planes
    parts = [p.strip() for p in text.split(";") if p.strip()]
    flip = "flip" in parts
    rotations = [p for p in parts if p != "flip"]
    if len(rotations) > 1 or any(p not in _ROTATIONS for p in rotations):
        msg = f"{subject} has an unknown orientation '{text}'"
        raise BlockError(msg)
    turned = np.rot90(planes, _ROTATIONS[rotations[0]] if rotations else 0, axes=(1, 2))
    return turned[:, :, ::-1] if flip else turned


def _bayer_pattern(element: ET.Element, header: fits.Header, height: int) -> str | None:
    """The CFA pattern for rows in the FITS order (a 2x2 pattern's rows swap for even H)."""
    found = _children(element, "ColorFilterArray")
    text = found[0].get("pattern") if found else header.get("BAYERPAT")
    pattern = str(text or "").strip().upper()
    if not pattern:
        return None
    if len(pattern) == 4 and height % 2 == 0:
        return pattern[2:] + pattern[:2]
    return pattern


def _header(element: ET.Element) -> fits.Header:
    header = fits.Header()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        for keyword in _children(element, "FITSKeyword"):
            card = _card(keyword.get("name", ""), keyword.get("value", ""), keyword.get("comment"))
            header.append(card, useblanks=False, bottom=True)
    return header


def _card(name: str, value: str, comment: str | None) -> fits.Card:
    key = name.strip().upper()
    comment = _ascii(comment or "")
    if key in ("HISTORY", "COMMENT", ""):
        text = comment or _ascii(str(parse_fits_value(value) or ""))
        return fits.Card(key, text)
    parsed = parse_fits_value(value)
    try:
        return fits.Card(key, parsed, comment)
    except (ValueError, TypeError):
        return fits.Card(key, _ascii(str(parsed)), comment)


def _ascii(text: str) -> str:
    return text.encode("ascii", "backslashreplace").decode("ascii")


def parse_fits_value(text: str) -> Any:
    """Turn the ``value`` attribute of a ``<FITSKeyword>`` into a Python value.

    Parameters
    ----------
    text : str
        A FITS value as written in a card: ``'a string'`` (quotes doubled inside), ``T``
        or ``F``, an integer, a real (``E`` or ``D`` exponent), or empty.

    Returns
    -------
    object
        str, bool, int, float, or None for an empty value; text that is none of these
        is returned as it is (a string).
    """
    t = text.strip()
    if not t:
        return None
    if t.startswith("'"):
        inner = t[1:-1] if len(t) > 1 and t.endswith("'") else t[1:]
        return inner.replace("''", "'").rstrip()
    if t in ("T", "F"):
        return t == "T"
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t.replace("D", "E").replace("d", "e"))
    except ValueError:
        return t


def format_fits_value(value: Any) -> str:
    """The inverse of :func:`parse_fits_value`, for writing a ``<FITSKeyword>``."""
    if value is None or isinstance(value, fits.card.Undefined):
        return ""
    if isinstance(value, bool | np.bool_):
        return "T" if value else "F"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return repr(float(value))
    if isinstance(value, complex):
        return f"({value.real!r}, {value.imag!r})"
    return "'" + str(value).replace("'", "''") + "'"


def _properties(parent: ET.Element, blocks: _Blocks) -> dict[str, XisfProperty]:
    found = {}
    for element in _children(parent, "Property"):
        identifier = element.get("id", "")
        found[identifier] = _property(element, blocks, f"property {identifier}")
    return found


def _property(element: ET.Element, blocks: _Blocks, subject: str) -> XisfProperty:
    ptype = _TYPE_ALIASES.get(element.get("type", ""), element.get("type", ""))
    extra = {"comment": element.get("comment"), "format": element.get("format")}
    has_block = element.get("location") is not None
    if ptype == "String":
        text = blocks.read(element, subject).decode("utf-8") if has_block else element.text
        return XisfProperty(ptype, text or "", **extra)
    if ptype == "TimePoint":
        return XisfProperty(ptype, element.get("value", element.text or ""), **extra)
    if ptype == "Boolean":
        value = element.get("value", "").strip().lower() in ("true", "1")
        return XisfProperty(ptype, value, **extra)
    if ptype in _SCALAR_TYPES:
        return XisfProperty(ptype, _scalar(ptype, element.get("value", ""), subject), **extra)
    if ptype[:-6] in _ARRAY_DTYPES and ptype.endswith(("Vector", "Matrix")):
        return XisfProperty(ptype, _array(ptype, element, blocks, subject), **extra)
    text = element.get("value", element.text or "")
    return XisfProperty(ptype, text, **extra)  # a type of a later revision: kept as text


def _scalar(ptype: str, text: str, subject: str) -> int | float | complex:
    kind = _SCALAR_TYPES[ptype]
    try:
        if kind is complex:
            real, imag = text.strip().strip("()").split(",")
            return complex(float(real), float(imag))
        return kind(text.strip())
    except ValueError:
        msg = f"{subject} ({ptype}) has an unreadable value '{text}'"
        raise BlockError(msg) from None


def _array(ptype: str, element: ET.Element, blocks: _Blocks, subject: str) -> np.ndarray:
    order = "<" if element.get("byteOrder", "little").strip().lower() == "little" else ">"
    dtype = np.dtype(order + _ARRAY_DTYPES[ptype[:-6]])
    try:
        if ptype.endswith("Vector"):
            shape: tuple[int, ...] = (int(element.get("length", "")),)
        else:
            shape = (int(element.get("rows", "")), int(element.get("columns", "")))
    except ValueError:
        msg = f"{subject} ({ptype}) lacks its length, rows or columns"
        raise BlockError(msg) from None
    raw = blocks.read(element, subject)
    count = int(np.prod(shape))
    if len(raw) != count * dtype.itemsize:
        msg = f"{subject} ({ptype}) holds {len(raw)} bytes for {count} items"
        raise BlockError(msg)
    return np.frombuffer(raw, dtype).astype(dtype.newbyteorder("=")).reshape(shape)


def _icc_profile(element: ET.Element, blocks: _Blocks) -> bytes | None:
    found = _children(element, "ICCProfile")
    return blocks.read(found[0], "the ICC profile") if found else None
