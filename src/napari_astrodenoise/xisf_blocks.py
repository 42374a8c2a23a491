"""XISF 1.0 data blocks: where they lie, their checksums, compression and byte shuffling.

A data block (the pixels of an image, a property's value, an ICC profile) is stored in one
of three places, named by a ``location`` attribute:

- ``attachment:POSITION:SIZE``: raw bytes at an absolute offset in the file;
- ``inline:base64`` or ``inline:hex``: the element's text;
- ``embedded``: the text of a ``<Data encoding="base64|hex">`` child element.

A block may carry ``checksum="ALGORITHM:HEXDIGEST"`` (SHA-1, SHA-256, SHA-512, SHA3-256,
SHA3-512), computed on the bytes as stored, and ``compression="CODEC:SIZE[:ITEMSIZE]"``
where CODEC is ``zlib``, ``lz4``, ``lz4hc`` or ``zstd``, with ``+sh`` when the bytes were
shuffled by items of ITEMSIZE bytes before compression; a ``subblocks="C1,U1:C2,U2..."``
attribute splits the compressed stream into independently compressed pieces.

Everything here raises :class:`BlockError` (a ``ValueError``) with a message a user
understands; the readers add the file name.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CODECS",
    "BlockError",
    "Compression",
    "checksum_attribute",
    "compress",
    "decode_text",
    "decompress",
    "parse_compression",
    "shuffle",
    "unshuffle",
    "verify_checksum",
]

#: Compression codecs of XISF 1.0 (each also with ``+sh``, byte shuffling).
CODECS: tuple[str, ...] = ("zlib", "lz4", "lz4hc", "zstd")

_HASHES = {
    "sha1": "sha1",
    "sha-1": "sha1",
    "sha256": "sha256",
    "sha-256": "sha256",
    "sha512": "sha512",
    "sha-512": "sha512",
    "sha3-256": "sha3_256",
    "sha3-512": "sha3_512",
}


class BlockError(ValueError):
    """A data block that cannot be read as its attributes say."""


@dataclass(frozen=True)
class Compression:
    """A parsed ``compression`` attribute.

    Attributes
    ----------
    codec : str
        ``zlib``, ``lz4``, ``lz4hc`` or ``zstd``.
    size : int
        Size of the uncompressed block in bytes.
    item_size : int or None
        Byte-shuffling item size, None when the block was not shuffled.
    """

    codec: str
    size: int
    item_size: int | None


def parse_compression(text: str, subject: str) -> Compression:
    """Parse ``CODEC[+sh]:SIZE[:ITEMSIZE]``; ``subject`` names the block in messages."""
    parts = text.strip().split(":")
    codec, shuffled = parts[0].lower(), False
    if codec.endswith("+sh"):
        codec, shuffled = codec[:-3], True
    if codec not in CODECS:
        known = ", ".join(CODECS)
        msg = (
            f"{subject} uses the unknown compression '{parts[0]}' "
            f"(XISF 1.0 knows {known}, each optionally with +sh)"
        )
        raise BlockError(msg)
    try:
        size = int(parts[1])
        item_size = int(parts[2]) if shuffled else None
    except (IndexError, ValueError):
        msg = f"{subject} has a malformed compression attribute '{text}'"
        raise BlockError(msg) from None
    if size < 0 or (item_size is not None and item_size < 1):
        msg = f"{subject} has a malformed compression attribute '{text}'"
        raise BlockError(msg)
    return Compression(codec, size, item_size)


def decode_text(text: str | None, encoding: str, subject: str) -> bytes:
    """Decode the base64 or hex text of an inline or embedded block."""
    encoding = encoding.strip().lower()
    cleaned = "".join((text or "").split())
    try:
        if encoding == "base64":
            return base64.b64decode(cleaned, validate=True)
        if encoding in ("hex", "base16"):
            return bytes.fromhex(cleaned)
    except (binascii.Error, ValueError) as exc:
        msg = f"{subject} is not valid {encoding} text ({exc})"
        raise BlockError(msg) from None
    msg = f"{subject} uses the unknown encoding '{encoding}' (XISF knows base64 and hex)"
    raise BlockError(msg)


def verify_checksum(stored: bytes, attribute: str, subject: str) -> None:
    """Check ``ALGORITHM:DIGEST`` against the block as stored; raise when they differ."""
    algorithm, _, digest = attribute.partition(":")
    name = _HASHES.get(algorithm.strip().lower())
    if name is None:
        msg = f"{subject} has a checksum of unknown algorithm '{algorithm}'"
        raise BlockError(msg)
    found = hashlib.new(name, stored).hexdigest()
    if found != digest.strip().lower():
        msg = (
            f"{subject} fails its {algorithm} checksum: the file is corrupt "
            f"(expected {digest.strip()[:16]}..., found {found[:16]}...)"
        )
        raise BlockError(msg)


def checksum_attribute(stored: bytes) -> str:
    """The ``checksum`` attribute (SHA-1) written for a block."""
    return f"sha1:{hashlib.sha1(stored).hexdigest()}"


def decompress(
    stored: bytes, compression: Compression, subject: str, subblocks: str | None = None
) -> bytes:
    """Decompress (piece by piece when ``subblocks`` is given), then unshuffle."""
    pieces = (
        _subblock_pieces(stored, subblocks, subject) if subblocks else [(stored, compression.size)]
    )
    out = b"".join(_decompress_one(c, compression.codec, u, subject) for c, u in pieces)
    if len(out) != compression.size:
        msg = (
            f"{subject} decompresses to {len(out)} bytes, but its compression attribute "
            f"says {compression.size}: the block is corrupt"
        )
        raise BlockError(msg)
    if compression.item_size is not None:
        out = unshuffle(out, compression.item_size)
    return out


def _subblock_pieces(stored: bytes, subblocks: str, subject: str) -> list[tuple[bytes, int]]:
    pieces, start = [], 0
    try:
        for item in subblocks.split(":"):
            csize, usize = (int(v) for v in item.split(","))
            pieces.append((stored[start : start + csize], usize))
            start += csize
    except ValueError:
        msg = f"{subject} has a malformed subblocks attribute '{subblocks}'"
        raise BlockError(msg) from None
    if start != len(stored):
        msg = f"{subject}: its subblocks add up to {start} bytes, the block has {len(stored)}"
        raise BlockError(msg)
    return pieces


def _decompress_one(data: bytes, codec: str, size: int | None, subject: str) -> bytes:
    try:
        if codec == "zlib":
            if size is None:
                return zlib.decompress(data)
            # at most one byte past the declared size: a wrong size shows, a bomb does not inflate
            return zlib.decompressobj().decompress(data, size + 1)
        if codec in ("lz4", "lz4hc"):
            import lz4.block

            return lz4.block.decompress(data, uncompressed_size=size or _lz4_bound(data))
        import zstandard

        return zstandard.ZstdDecompressor().decompress(
            data, max_output_size=size or 64 * len(data) + (1 << 20)
        )
    except ImportError as exc:
        msg = f"{subject} is {codec}-compressed and the '{exc.name}' package is not installed"
        raise BlockError(msg) from None
    except Exception as exc:  # zlib.error, LZ4BlockError, ZstdError: all mean "corrupt"
        msg = f"{subject} does not decompress with {codec}: the block is corrupt or cut ({exc})"
        raise BlockError(msg) from None


def _lz4_bound(data: bytes) -> int:
    return 255 * len(data) + 16


def compress(raw: bytes, codec: str, *, item_size: int | None = None, level: int = 6) -> bytes:
    """Shuffle (when ``item_size`` is given) and compress with ``zlib`` (the writer's codec)."""
    if codec != "zlib":
        msg = f"only zlib compression is written, got {codec!r}"
        raise ValueError(msg)
    data = shuffle(raw, item_size) if item_size else raw
    return zlib.compress(data, level)


def shuffle(raw: bytes, item_size: int) -> bytes:
    """XISF byte shuffling: byte 0 of every item, then byte 1, ...; a remainder kept as is."""
    count = len(raw) // item_size
    body = np.frombuffer(raw, np.uint8, count * item_size).reshape(count, item_size)
    return body.T.tobytes() + raw[count * item_size :]


def unshuffle(data: bytes, item_size: int) -> bytes:
    """Undo :func:`shuffle`."""
    count = len(data) // item_size
    body = np.frombuffer(data, np.uint8, count * item_size).reshape(item_size, count)
    return body.T.tobytes() + data[count * item_size :]
