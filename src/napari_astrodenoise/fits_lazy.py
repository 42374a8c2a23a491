"""Lazy FITS images: dask arrays of whole row blocks, each block memory-mapped when it is read.

A 20000 x 20000 float32 mosaic (1.6 GB) opens at once: nothing but the header is read until
a block is asked for. Each block maps only its own bytes of the file, converts them to
physical float32 exactly as :func:`~napari_astrodenoise.fits_io.read_fits` does (``BZERO +
BSCALE * raw`` in float64, rounded once; integer ``BLANK`` pixels to NaN) and unmaps them,
so a process that walks the whole frame holds one block at a time, not the file. A strided
read (a zoomed-out view, a statistics sample) maps the rows it needs and no others.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

#: bytes of raw pixels per lazy block (whole rows): 64 MiB
LAZY_BLOCK_BYTES = 64 << 20

#: FITS BITPIX -> big-endian numpy dtype of the raw pixels
_BITPIX_DTYPE = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
_DTYPE_BITPIX = {np.dtype(v).str: k for k, v in _BITPIX_DTYPE.items()}


class FitsRows:
    """The pixels of one uncompressed FITS image HDU, readable by numpy-style indexing.

    ``rows[key]`` maps the rows ``key`` needs from the file, converts them to physical
    float32 and unmaps them. It is the source of :func:`lazy_image` (dask calls it once per
    block, with the block's slices) and pickles as a path and a layout, so dask workers in
    other processes read the file themselves.

    Parameters
    ----------
    path : path-like
        The FITS file.
    offset : int
        Byte offset of the HDU's data in the file.
    shape : tuple of int
        numpy shape of the image as read (leading axes of length 1 dropped).
    bitpix : int
        FITS ``BITPIX``.
    bscale, bzero : float
        FITS scaling; integer pixels become ``bzero + bscale * raw``.
    blank : int or None
        FITS ``BLANK`` of an integer image: those raw values become NaN.
    step : int, optional
        Every ``step``-th row and column only (:meth:`strided`): a zoomed-out view that
        maps no other row.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        offset: int,
        shape: tuple[int, ...],
        bitpix: int,
        bscale: float = 1.0,
        bzero: float = 0.0,
        blank: int | None = None,
        step: int = 1,
    ) -> None:
        self.path = Path(path)
        self.offset = int(offset)
        self.file_shape = tuple(int(n) for n in shape)
        self.step = int(step)
        *planes, h, w = self.file_shape
        self.shape = (*planes, -(-h // self.step), -(-w // self.step))
        self.raw_dtype = np.dtype(_BITPIX_DTYPE[int(bitpix)])
        self.bscale, self.bzero = float(bscale), float(bzero)
        self.blank = None if blank is None or self.raw_dtype.kind == "f" else int(blank)
        self.dtype = np.dtype(np.float32)
        self.ndim = len(self.shape)

    def _mapped(self, first: int, n: int) -> np.memmap:
        """Rows ``first .. first + n`` (planes flattened into rows), memory-mapped."""
        itemsize, width = self.raw_dtype.itemsize, self.file_shape[-1]
        return np.memmap(
            self.path,
            dtype=self.raw_dtype,
            mode="r",
            offset=self.offset + first * width * itemsize,
            shape=(n, width),
        )

    def _read_rows(self, rows: np.ndarray) -> np.ndarray:
        """Scattered rows, read one by one: mapping them would map the pages between too
        (the kernel maps the cached pages around each one it faults in)."""
        width = self.file_shape[-1]
        raw = np.empty((len(rows), width), dtype=self.raw_dtype)
        size = width * self.raw_dtype.itemsize
        with open(self.path, "rb") as f:
            for i, r in enumerate(rows):
                f.seek(self.offset + int(r) * size)
                if f.readinto(memoryview(raw[i]).cast("B")) != size:
                    msg = f"{self.path}: row {r} is beyond the end of the file"
                    raise OSError(msg)
        return raw

    def strided(self, step: int) -> FitsRows:
        """Every ``step``-th row and column of these pixels, read without the others."""
        return FitsRows(
            self.path,
            self.offset,
            self.file_shape,
            _DTYPE_BITPIX[self.raw_dtype.str],
            self.bscale,
            self.bzero,
            self.blank,
            self.step * int(step),
        )

    def __getitem__(self, key: Any) -> np.ndarray:
        from napari_astrodenoise.fits_io import _to_float32

        key = key if isinstance(key, tuple) else (key,)
        if len(key) != self.ndim or not all(isinstance(k, slice) for k in key):
            msg = f"FitsRows takes one slice per axis ({self.ndim}), got {key!r}"
            raise IndexError(msg)
        ranges = [range(*k.indices(n)) for k, n in zip(key, self.shape, strict=True)]
        shape = tuple(len(r) for r in ranges)
        if 0 in shape:
            return np.empty(shape, dtype=np.float32)
        # the file rows asked for, planes flattened into rows: a run of them is mapped,
        # scattered ones are read one by one
        planes = np.asarray(ranges[0] if self.ndim == 3 else range(1))
        ys = np.asarray(ranges[-2]) * self.step
        flat = (planes[:, None] * self.file_shape[-2] + ys[None, :]).ravel()
        cols = key[-1] if self.step == 1 else np.asarray(ranges[-1]) * self.step
        if np.all(np.diff(flat) == 1):
            raw = self._mapped(int(flat[0]), len(flat))
            try:
                picked = raw[:, cols].reshape(shape)  # the map lasts until converted
            finally:
                del raw
        else:
            picked = self._read_rows(flat)[:, cols].reshape(shape)
        return _to_float32(picked, bscale=self.bscale, bzero=self.bzero, blank=self.blank)


def _sliced_shape(shape: tuple[int, ...], key: tuple[slice, ...]) -> tuple[int, ...]:
    return tuple(len(range(*k.indices(n))) for k, n in zip(key, shape, strict=True))


def block_rows(shape: tuple[int, ...], itemsize: int, block_bytes: int | None = None) -> int:
    """Rows per lazy block: about ``block_bytes`` (`LAZY_BLOCK_BYTES`) of raw pixels, >= 1."""
    block_bytes = LAZY_BLOCK_BYTES if block_bytes is None else block_bytes
    per_row = itemsize * shape[-1] * (math.prod(shape[:-2]) if len(shape) > 2 else 1)
    return int(max(1, min(shape[-2], block_bytes // max(1, per_row))))


def lazy_image(rows: FitsRows, block_bytes: int | None = None) -> Any:
    """A dask array over ``rows``: chunks of whole row blocks (every plane in one chunk).

    Returns
    -------
    dask.array.Array
        float32, ``rows.shape``; computing a chunk reads only that chunk's rows.
    """
    import dask.array as da

    step = block_rows(rows.shape, rows.raw_dtype.itemsize, block_bytes)
    chunks = (*rows.shape[:-2], step, rows.shape[-1])
    stamp = os.stat(rows.path).st_mtime_ns
    name = f"fits-{rows.path.name}-{stamp}-{rows.offset}-{rows.step}"
    return da.from_array(
        rows,
        chunks=chunks,
        name=name,
        asarray=False,
        fancy=False,
        meta=np.empty((0,) * rows.ndim, np.float32),
    )
