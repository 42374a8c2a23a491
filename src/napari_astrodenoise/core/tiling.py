"""Tile grid, blend windows and stitching for tiled inference on (C, H, W) images.

The image is mirror-padded, cut into overlapping square tiles, run through a predictor in
batches, and stitched back with a weighted average: an accumulator and a weight map, both
float32 and shaped like the padded image, so memory grows with the image, never with the
number of tiles. The approach follows MONAI's ``sliding_window_inference`` (Gaussian
importance window, weights floored, last tile shifted inward) but is written on numpy, so
this module imports no torch: the predictor is any callable on float32 arrays.

Geometry, along each axis of length ``n``:

- ``stride = max(1, round(tile_size * (1 - overlap)))`` for ``blend="gaussian"``;
  ``stride = tile_size`` for ``blend="none"`` (its overlap is ignored).
- The image is reflect-padded by ``context = (tile_size - stride) // 2`` pixels on each side
  (half the overlap region, 0 for ``"none"``), so an image-edge pixel sees as much real,
  mirrored context as a pixel in the middle of an overlap does. An image shorter than a tile
  is padded further, split evenly, up to one tile. Padding reflects repeatedly where the pad
  is longer than the image (numpy's ``"reflect"`` mode does this).
- Tiles start every ``stride`` pixels, shifted by the grid offset; a start that would fall
  outside the padded image is moved inward to its edge instead of padding further.
- Where laying the tiles over the padded axis would take one tile more than laying them over
  the image itself (4096 px at tile 256, overlap 0.25: 22 tiles against 21), the grid is laid
  over the image instead, and the tiles at its two edges grow by ``context`` into the
  mirrored padding: the network sees the same mirrored context at the edge, the blend window
  and the seams stay where the grid puts them, and a row of tiles is saved for an eighth of a
  tile more at each edge. Such edge tiles are ``T + context`` (or ``T + 2 * context``) pixels
  along that axis; the predictor gets them in batches of their own shape, and only their
  ``T x T`` window is stitched.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any

import numpy as np

from napari_astrodenoise.core.allocator import batch_memory_kept
from napari_astrodenoise.core.options import option
from napari_astrodenoise.core.progress import drain
from napari_astrodenoise.core.strips import row_strips, strip_rows

__all__ = [
    "BLEND_MODES",
    "MAX_OVERLAP",
    "WEIGHT_FLOOR",
    "Predictor",
    "TilePlan",
    "blend_window",
    "count_batches",
    "count_tiles",
    "iter_tiled",
    "iter_tiled_rows",
    "origins_over",
    "plan_tiles",
    "tile_grid",
    "tile_rows_read",
    "tiled_apply",
]

Predictor = Callable[[np.ndarray], np.ndarray]
"""(B, C, Ht, Wt) float32 -> (B, C_out, Ht, Wt) float32: a batch of tiles of one shape, T x T
or, at an image edge, grown by the mirrored context (see the module); B may be smaller in a
shape's last batch."""

_TILE, _OVERLAP, _BLEND, _SIGMA = (
    option(name) for name in ("tile_size", "overlap", "blend", "sigma_scale")
)
BLEND_MODES = _BLEND.choices
MAX_OVERLAP = _OVERLAP.maximum
WEIGHT_FLOOR = 1e-3
"""Floor of each 1-D Gaussian profile, as a fraction of its peak (see `blend_window`)."""


# --------------------------------------------------------------------------- validation
def _check_positive_int(value: object, name: str) -> int:
    if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
        msg = f"{name} must be a whole number of at least 1, got {value!r}"
        raise ValueError(msg)
    return int(value)


def _check_grid_offset(grid_offset: object) -> tuple[int, int]:
    ok = (
        isinstance(grid_offset, Sequence)
        and len(grid_offset) == 2
        and all(isinstance(v, Integral) and not isinstance(v, bool) for v in grid_offset)
    )
    if not ok:
        msg = f"grid_offset must be two whole numbers of pixels (dy, dx), got {grid_offset!r}"
        raise ValueError(msg)
    return int(grid_offset[0]), int(grid_offset[1])


def _check_shape(shape: object) -> tuple[int, int]:
    ok = (
        isinstance(shape, Sequence)
        and len(shape) == 2
        and all(isinstance(v, Integral) and not isinstance(v, bool) and v >= 1 for v in shape)
    )
    if not ok:
        msg = f"shape must be the image's (height, width), both at least 1, got {shape!r}"
        raise ValueError(msg)
    return int(shape[0]), int(shape[1])


def _check_image(image: object, fill: object) -> tuple[np.ndarray, np.ndarray | None]:
    arr = np.asarray(image)
    if arr.ndim != 3 or 0 in arr.shape:
        msg = f"image must be a non-empty (C, H, W) array, got shape {arr.shape}"
        raise ValueError(msg)
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        msg = f"image must hold real numbers, got dtype {arr.dtype}"
        raise ValueError(msg)
    arr = arr.astype(np.float32, copy=False)
    if fill is not None:
        values = np.asarray(fill, dtype=np.float32).reshape(-1)
        if values.shape != (arr.shape[0],) or not np.isfinite(values).all():
            msg = f"fill must be one finite value per channel ({arr.shape[0]}), got {fill!r}"
            raise ValueError(msg)
        return arr, values
    for rows in row_strips(arr.shape[1], strip_rows(arr.shape[2])):
        if not np.isfinite(arr[:, rows]).all():
            msg = "image contains NaN or infinite pixels; fill them before tiled inference"
            raise ValueError(msg)
    return arr, None


# --------------------------------------------------------------------------- geometry
def _axis_padding(n: int, tile: int, context: int) -> tuple[int, int]:
    """Pad before and after an axis of length ``n``: ``context`` each side, then up to a tile."""
    extra = max(0, tile - (n + 2 * context))
    return context + extra // 2, context + extra - extra // 2


def _axis_starts(length: int, tile: int, stride: int, offset: int) -> tuple[int, ...]:
    """Tile starts on a padded axis: every ``stride`` from ``offset``, within [0, length-tile]."""
    last = length - tile
    phase = offset % stride
    start = phase - stride if phase else 0
    starts: list[int] = []
    while True:
        s = min(max(start, 0), last)
        if not starts or s != starts[-1]:
            starts.append(s)
        if s >= last:
            return tuple(starts)
        start += stride


def _axis_layout(
    n: int, tile: int, stride: int, context: int, offset: int
) -> tuple[tuple[int, int], tuple[int, ...], int]:
    """(padding, tile starts in padded coordinates, edge growth) along one axis.

    The grid goes over the padded axis unless going over the image saves a tile (judged at
    grid offset 0, so a shifted grid is laid the same way); then the edge tiles grow by
    ``context`` into the padding instead.
    """
    pad = _axis_padding(n, tile, context)
    padded = n + sum(pad)
    if context and n >= tile:
        over_image = _axis_starts(n, tile, stride, 0)
        if len(over_image) < len(_axis_starts(padded, tile, stride, 0)):
            starts = _axis_starts(n, tile, stride, offset)
            return pad, tuple(s + pad[0] for s in starts), context
    return pad, _axis_starts(padded, tile, stride, offset), 0


@dataclass(frozen=True)
class TilePlan:
    """Where the tiles of one tiled run lie.

    Attributes
    ----------
    shape : tuple of int
        (H, W) of the image.
    tile_size : int
        Tile side T in pixels.
    stride : int
        Step between tile starts before the last tile is moved inward.
    pad : tuple of tuple of int
        ((top, bottom), (left, right)) reflect padding around the image.
    starts_y, starts_x : tuple of int
        Tile starts along each axis, in padded coordinates: where each tile's ``T x T``
        blend window lies.
    grow : tuple of int
        (gy, gx): how far the tiles at the image's edges reach beyond their window into the
        mirrored padding along each axis (0: they do not; see the module).
    """

    shape: tuple[int, int]
    tile_size: int
    stride: int
    pad: tuple[tuple[int, int], tuple[int, int]]
    starts_y: tuple[int, ...]
    starts_x: tuple[int, ...]
    grow: tuple[int, int] = (0, 0)

    @property
    def padded_shape(self) -> tuple[int, int]:
        """(H, W) of the padded image."""
        (top, bottom), (left, right) = self.pad
        return self.shape[0] + top + bottom, self.shape[1] + left + right

    @property
    def context(self) -> int:
        """Reflect padding at the image edges before any padding up to a tile: half the overlap."""
        return (self.tile_size - self.stride) // 2

    @property
    def n_tiles(self) -> int:
        """Number of tiles."""
        return len(self.starts_y) * len(self.starts_x)

    def padded_origins(self) -> list[tuple[int, int]]:
        """Top-left corner (y, x) of every tile in padded coordinates, row by row."""
        return [(y, x) for y in self.starts_y for x in self.starts_x]

    def input_box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """(y0, y1, x0, x1) in padded coordinates of what the tile at (y, x) gives the predictor.

        Its window, grown by ``grow`` into the mirrored padding where it meets an image edge.
        """
        (top, _), (left, _) = self.pad
        h, w = self.shape
        t = self.tile_size
        gy, gx = self.grow
        return (
            y - gy if y == top else y,
            y + t + gy if y + t == top + h else y + t,
            x - gx if x == left else x,
            x + t + gx if x + t == left + w else x + t,
        )

    def image_boxes(self) -> list[tuple[int, int, int, int]]:
        """Every tile as (y0, x0, y1, x1) in image coordinates, clipped to the image."""
        (top, _), (left, _) = self.pad
        h, w = self.shape
        t = self.tile_size
        return [
            (max(y - top, 0), max(x - left, 0), min(y - top + t, h), min(x - left + t, w))
            for y, x in self.padded_origins()
        ]


def plan_tiles(
    shape: tuple[int, int],
    *,
    tile_size: int = _TILE.default,
    overlap: float = _OVERLAP.default,
    blend: str = _BLEND.default,
    grid_offset: tuple[int, int] = (0, 0),
) -> TilePlan:
    """Lay out the tiles for an image of the given shape.

    Parameters
    ----------
    shape : tuple of int
        (H, W) of the image.
    tile_size : int, optional
        Tile side in pixels: a multiple of 16, at least 32.
    overlap : float, optional
        Overlap between neighbouring tiles as a fraction of the tile, 0 to 0.75.
        Ignored for ``blend="none"``, whose tiles abut.
    blend : {"gaussian", "none"}, optional
        Blend mode; decides stride and padding (see the module docstring).
    grid_offset : tuple of int, optional
        (dy, dx) shift of the whole tile grid in pixels, taken modulo the stride.

    Returns
    -------
    TilePlan
        Padding and tile starts.
    """
    h, w = _check_shape(shape)
    tile = _TILE.check(tile_size)
    overlap = _OVERLAP.check(overlap)
    blend = _BLEND.check(blend)
    dy, dx = _check_grid_offset(grid_offset)

    stride = tile if blend == "none" else max(1, round(tile * (1.0 - overlap)))
    context = (tile - stride) // 2
    pad_y, starts_y, grow_y = _axis_layout(h, tile, stride, context, dy)
    pad_x, starts_x, grow_x = _axis_layout(w, tile, stride, context, dx)
    return TilePlan(
        shape=(h, w),
        tile_size=tile,
        stride=stride,
        pad=(pad_y, pad_x),
        starts_y=starts_y,
        starts_x=starts_x,
        grow=(grow_y, grow_x),
    )


def tile_grid(shape: tuple[int, int], **tiling: Any) -> list[tuple[int, int, int, int]]:
    """Tile boxes in image coordinates, for drawing the grid over the image.

    Parameters
    ----------
    shape : tuple of int
        (H, W) of the image.
    **tiling
        ``tile_size``, ``overlap``, ``blend``, ``grid_offset``: as for `plan_tiles`.

    Returns
    -------
    list of tuple of int
        (y0, x0, y1, x1) per tile, row by row, clipped to the image (a tile reaching into
        the mirrored padding is drawn only over the image).
    """
    return plan_tiles(shape, **tiling).image_boxes()


def count_tiles(shape: tuple[int, int], **tiling: Any) -> int:
    """Number of tiles `iter_tiled` runs for an image of the given (H, W) shape.

    ``**tiling`` (``tile_size``, ``overlap``, ``blend``, ``grid_offset``) is as for
    `plan_tiles`.
    """
    return plan_tiles(shape, **tiling).n_tiles


def blend_window(
    tile_size: int, *, blend: str = _BLEND.default, sigma_scale: float = _SIGMA.default
) -> np.ndarray:
    """Per-pixel weight of a tile's prediction when tiles are stitched.

    Parameters
    ----------
    tile_size : int
        Tile side T in pixels: a multiple of 16, at least 32.
    blend : {"gaussian", "none"}, optional
        ``"gaussian"``: a separable Gaussian centred on the tile with
        sigma = ``sigma_scale * tile_size``. Each 1-D profile is scaled to a peak of 1 and
        floored at `WEIGHT_FLOOR` (1e-3) before the outer product, so the tile edges, which
        see the least context, weigh little but never almost nothing: the smallest weight, at
        the tile corners, is 1e-6 of the peak, where an unfloored window would reach ~1e-7
        (sigma_scale 0.125) or underflow float32 to 0 (small sigma_scale). Flooring each axis
        rather than the 2-D window keeps it separable, so the blend across a vertical seam is
        the same on every row, also near tile corners. ``"none"``: uniform weights of 1.
    sigma_scale : float, optional
        Gaussian sigma as a fraction of the tile size (MONAI's default 0.125).

    Returns
    -------
    ndarray
        (T, T) float32 weights in [1e-6, 1].
    """
    tile = _TILE.check(tile_size)
    blend = _BLEND.check(blend)
    sigma_scale = _SIGMA.check(sigma_scale)
    if blend == "none":
        return np.ones((tile, tile), dtype=np.float32)
    x = np.arange(tile, dtype=np.float64) - (tile - 1) / 2.0
    g = np.exp(-0.5 * (x / (sigma_scale * tile)) ** 2)
    g = np.maximum(g / g.max(), WEIGHT_FLOOR)
    return np.outer(g, g).astype(np.float32)


# --------------------------------------------------------------------------- inference
def iter_tiled(
    image: np.ndarray,
    predictor: Predictor,
    *,
    tile_size: int = _TILE.default,
    overlap: float = _OVERLAP.default,
    blend: str = _BLEND.default,
    sigma_scale: float = _SIGMA.default,
    batch_size: int = 4,
    out_channels: int | None = None,
    grid_offset: tuple[int, int] = (0, 0),
    fill: Sequence[float] | None = None,
) -> Generator[tuple[int, int], None, np.ndarray]:
    """Run a predictor over overlapping tiles, yielding progress, and stitch the result.

    Arguments are checked when this is called, before the first tile runs. Stop early by
    no longer iterating (or calling ``.close()``): nothing runs after the last batch asked
    for, and the buffers are freed with the generator.

    Parameters
    ----------
    image : ndarray
        (C, H, W), converted to float32; must be finite unless ``fill`` is given. Any H,
        W >= 1, including images smaller than a tile. Never copied whole: each tile is cut
        from it (mirrored at the edges) as its batch is filled.
    predictor : callable
        Maps a (B, C, Ht, Wt) float32 batch to a (B, C_out, Ht, Wt) array: T x T tiles, and
        where the grid is laid over the image (see the module) batches of edge tiles grown
        by the mirrored context. A batch holds at most ``batch_size`` tiles' worth of
        pixels: ``batch_size`` T x T tiles, fewer grown ones (at least one), so the network's
        memory does not grow with the edge tiles; a shape's last batch may be smaller, and
        a lone tile comes with a copy of itself (its second output is not used). The
        input buffer is reused between calls, so a predictor must not keep a
        reference to it.
    tile_size : int, optional
        Tile side T in pixels: a multiple of 16, at least 32.
    overlap : float, optional
        Overlap of neighbouring tiles as a fraction of the tile, 0 to 0.75. The stride is
        ``max(1, round(tile_size * (1 - overlap)))``. Ignored for ``blend="none"``.
    blend : {"gaussian", "none"}, optional
        ``"gaussian"``: overlapping tiles averaged with the weights of `blend_window`, the
        image reflect-padded by half the overlap region. ``"none"``: naive tiles, kept for
        comparison: stride = tile, no context padding, uniform weights; only where the last
        tile of a row or column is moved inward do tiles overlap, and there they are averaged.
    sigma_scale : float, optional
        Gaussian sigma as a fraction of the tile (``"gaussian"`` only).
    batch_size : int, optional
        T x T tiles per predictor call (grown edge tiles: as many as hold their pixels).
    out_channels : int, optional
        C_out expected from the predictor; by default taken from its first output.
    grid_offset : tuple of int, optional
        (dy, dx) shift of the whole tile grid in pixels (modulo the stride); the seam
        diagnostic compares a run with one on a grid shifted by half a stride.
    fill : sequence of float, optional
        One value per channel that stands in for the channel's NaN and inf pixels in the
        tiles the predictor sees (``image`` itself is not changed).

    Yields
    ------
    tuple of int
        (tiles_done, tiles_total) after each batch.

    Returns
    -------
    ndarray
        The generator's return value (``StopIteration.value``): the stitched
        (C_out, H, W) float32 result.

    Raises
    ------
    ValueError
        On a bad argument, or a predictor output of the wrong shape.
    """
    image, fill_values = _check_image(image, fill)
    if not callable(predictor):
        msg = f"predictor must be callable on a (B, C, T, T) array, got {type(predictor)!r}"
        raise TypeError(msg)
    layout = plan_tiles(
        image.shape[1:],
        tile_size=tile_size,
        overlap=overlap,
        blend=blend,
        grid_offset=grid_offset,
    )
    window = blend_window(layout.tile_size, blend=blend, sigma_scale=sigma_scale)
    batch_size = _check_positive_int(batch_size, "batch_size")
    if out_channels is not None:
        out_channels = _check_positive_int(out_channels, "out_channels")
    return _run_tiles(image, predictor, layout, window, batch_size, out_channels, fill_values)


def tiled_apply(image: np.ndarray, predictor: Predictor, **options: object) -> np.ndarray:
    """Run `iter_tiled` to the end and return its stitched (C_out, H, W) float32 result.

    Keyword options and errors are those of `iter_tiled`.
    """
    return drain(iter_tiled(image, predictor, **options))


def _call_predictor(
    predictor: Predictor, batch: np.ndarray, out_channels: int | None
) -> np.ndarray:
    """Run the predictor on one batch and check the shape of what it returns."""
    out = np.asarray(predictor(batch), dtype=np.float32)
    n, _, th, tw = batch.shape
    if out.ndim != 4 or out.shape[0] != n or out.shape[2:] != (th, tw):
        msg = (
            f"predictor must return a (B, C_out, Ht, Wt) = ({n}, C_out, {th}, {tw}) array "
            f"for a {batch.shape} batch, got shape {out.shape}"
        )
        raise ValueError(msg)
    if out_channels is not None and out.shape[1] != out_channels:
        msg = f"predictor returned {out.shape[1]} channels, expected out_channels={out_channels}"
        raise ValueError(msg)
    return out


def _reflect_index(index: np.ndarray, n: int) -> np.ndarray:
    """Source index of each padded position along an axis of ``n``: numpy's "reflect" pad."""
    if n == 1:
        return np.zeros_like(index)
    period = 2 * (n - 1)
    folded = np.mod(index, period)
    return np.where(folded < n, folded, period - folded)


def _run_tiles(
    image: np.ndarray,
    predictor: Predictor,
    layout: TilePlan,
    window: np.ndarray,
    batch_size: int,
    out_channels: int | None,
    fill: np.ndarray | None,
    rows: slice | None = None,
    row0: int = 0,
) -> Generator[tuple[int, int], None, np.ndarray]:
    """The body of `iter_tiled` (and `iter_tiled_rows`), after its arguments were checked.

    The result is accumulated in an array of the image's own shape (the tiles' parts in
    the mirrored padding are not needed), and the weight map is never stored whole. With
    ``rows``, only the tiles over those rows of the frame run (in the whole frame's order)
    and only those rows are stitched; ``image`` then holds the frame's rows from ``row0``.
    While the tiles run, the network's freed blocks are kept for the next batch instead of
    being faulted in afresh each time (`batch_memory_kept`).
    """
    rows = slice(0, layout.shape[0]) if rows is None else rows
    with batch_memory_kept():
        acc = yield from _stitch_tiles(
            image, predictor, layout, window, batch_size, out_channels, fill, rows, row0
        )
    _divide_by_weights(acc, layout, window, rows)
    return acc


def _stitch_tiles(
    image: np.ndarray,
    predictor: Predictor,
    layout: TilePlan,
    window: np.ndarray,
    batch_size: int,
    out_channels: int | None,
    fill: np.ndarray | None,
    rows: slice,
    row0: int,
) -> Generator[tuple[int, int], None, np.ndarray]:
    """Every batch of tiles over ``rows`` run and added, weighted, into the (unnormalised) sum."""
    t = layout.tile_size
    (top, _), (left, _) = layout.pad
    h, w = layout.shape
    hp, wp = layout.padded_shape
    source_y = _reflect_index(np.arange(hp) - top, h) - row0
    source_x = _reflect_index(np.arange(wp) - left, w)
    channels = np.arange(image.shape[0])[:, None, None]
    acc: np.ndarray | None = None
    done, total = 0, len(origins_over(layout, rows))
    for (height, width), chunks in _batches(layout, rows, batch_size):
        batch = np.empty((len(chunks[0]), image.shape[0], height, width), dtype=np.float32)
        for chunk in chunks:
            for b, (_, (iy0, iy1, ix0, ix1)) in enumerate(chunk):
                batch[b] = image[channels, source_y[iy0:iy1, None], source_x[None, ix0:ix1]]
            if fill is not None:
                _fill_nonfinite(batch[: len(chunk)], fill)
            n = len(chunk)
            if n == 1 < len(batch):
                # never a batch of one where the batches hold more: some network kernels
                # round a lone tile differently, and a tile's output must not depend on how
                # a run's tiles fall into batches (the out-of-core run's blocks cut them
                # otherwise than the whole frame's run)
                batch[1], n = batch[0], 2
            out = _call_predictor(predictor, batch[:n], out_channels)
            if acc is None:
                out_channels = out.shape[1]
                acc = np.zeros((out_channels, rows.stop - rows.start, w), dtype=np.float32)
            for b, ((y, x), (iy, _, ix, _)) in enumerate(chunk):
                # the part of the window over the image's wanted rows, in window and image
                # coordinates; the tile's output is offset by its growth into the padding
                y0, y1 = max(y, top + rows.start), min(y + t, top + rows.stop)
                x0, x1 = max(x, left), min(x + t, left + w)
                part = (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))
                grown = (slice(y0 - iy, y1 - iy), slice(x0 - ix, x1 - ix))
                below = top + rows.start
                acc[:, y0 - below : y1 - below, x0 - left : x1 - left] += (
                    out[b][(slice(None), *grown)] * window[part]
                )
            del out
            done += len(chunk)
            yield done, total
        del batch
    return acc


def _batches(layout: TilePlan, rows: slice, batch_size: int) -> list:
    """The tiles over ``rows`` as [(an input shape, batches of its tiles)], in run order.

    Each tile is ((y, x) of its window, its input box). Tiles are taken in the frame's order
    within each input shape, the shapes one after another (a stable sort), so a pixel's
    sums gather its tiles in the same order whichever rows are run. A batch of a shape holds
    at most the pixels of ``batch_size`` tiles of ``tile_size``: the network's activations
    grow with a batch's pixels, and grown edge tiles must not raise the run's peak memory.
    """
    tiles = [((y, x), layout.input_box(y, x)) for y, x in origins_over(layout, rows)]
    tiles.sort(key=lambda tile: (tile[1][1] - tile[1][0], tile[1][3] - tile[1][2]))
    groups: list = []
    for tile in tiles:
        y0, y1, x0, x1 = tile[1]
        if groups and groups[-1][0] == (y1 - y0, x1 - x0):
            groups[-1][1].append(tile)
        else:
            groups.append(((y1 - y0, x1 - x0), [tile]))
    budget = batch_size * layout.tile_size**2
    out = []
    for (h, w), members in groups:
        n = max(1, min(batch_size, budget // (h * w)))
        out.append(((h, w), [members[i : i + n] for i in range(0, len(members), n)]))
    return out


def count_batches(layout: TilePlan, batch_size: int) -> int:
    """Predictor calls of a whole-frame run of ``layout`` with ``batch_size`` tiles a call."""
    rows = slice(0, layout.shape[0])
    return sum(len(chunks) for _, chunks in _batches(layout, rows, batch_size))


def origins_over(layout: TilePlan, rows: slice) -> list[tuple[int, int]]:
    """The tiles (padded origins, in the whole frame's order) that cover any of ``rows``."""
    (top, _), _ = layout.pad
    t = layout.tile_size
    return [
        (y, x)
        for y, x in layout.padded_origins()
        if y < top + rows.stop and y + t > top + rows.start
    ]


def tile_rows_read(layout: TilePlan, rows: slice) -> slice:
    """The frame rows that the tiles over ``rows`` read (mirrored padding included)."""
    (top, _), _ = layout.pad
    boxes = [layout.input_box(y, x) for y, x in origins_over(layout, rows)]
    first, last = min(b[0] for b in boxes), max(b[1] for b in boxes)
    read = _reflect_index(np.arange(first, last) - top, layout.shape[0])
    return slice(int(read.min()), int(read.max()) + 1)


def iter_tiled_rows(
    image: np.ndarray,
    predictor: Predictor,
    *,
    frame_height: int,
    row0: int,
    rows: slice,
    tile_size: int = _TILE.default,
    overlap: float = _OVERLAP.default,
    blend: str = _BLEND.default,
    sigma_scale: float = _SIGMA.default,
    batch_size: int = 4,
    out_channels: int | None = None,
    grid_offset: tuple[int, int] = (0, 0),
    fill: Sequence[float] | None = None,
) -> Generator[tuple[int, int], None, np.ndarray]:
    """`iter_tiled` for some rows of a frame, on the whole frame's tile grid.

    The tiles are laid out for the whole (``frame_height``, W) frame, so seams fall where
    they fall in memory; only those over ``rows`` run, in the whole frame's order, and the
    result is those rows of `iter_tiled`'s result. This is how a frame larger than memory
    is stitched a row block at a time.

    Parameters
    ----------
    image : ndarray
        (C, n, W): the frame's rows ``row0 .. row0 + n``, which must include
        ``tile_rows_read(plan, rows)``.
    frame_height : int
        H of the whole frame.
    row0 : int
        The frame row of ``image``'s first row.
    rows : slice
        The frame rows wanted (step 1).
    **others
        As for `iter_tiled`.

    Yields
    ------
    tuple of int
        (tiles_done, tiles_total) of this block's tiles.

    Returns
    -------
    ndarray
        (C_out, len(rows), W) float32.
    """
    image, fill_values = _check_image(image, fill)
    if not callable(predictor):
        msg = f"predictor must be callable on a (B, C, T, T) array, got {type(predictor)!r}"
        raise TypeError(msg)
    layout = plan_tiles(
        (frame_height, image.shape[2]),
        tile_size=tile_size,
        overlap=overlap,
        blend=blend,
        grid_offset=grid_offset,
    )
    rows = slice(*rows.indices(frame_height))
    need = tile_rows_read(layout, rows)
    if need.start < row0 or need.stop > row0 + image.shape[1]:
        msg = (
            f"image holds frame rows {row0}..{row0 + image.shape[1]}, the tiles over rows "
            f"{rows.start}..{rows.stop} read rows {need.start}..{need.stop}"
        )
        raise ValueError(msg)
    window = blend_window(layout.tile_size, blend=blend, sigma_scale=sigma_scale)
    batch_size = _check_positive_int(batch_size, "batch_size")
    if out_channels is not None:
        out_channels = _check_positive_int(out_channels, "out_channels")
    return _run_tiles(
        image, predictor, layout, window, batch_size, out_channels, fill_values, rows, row0
    )


def _fill_nonfinite(batch: np.ndarray, fill: np.ndarray) -> None:
    """Replace a batch's NaN and inf pixels by the fill value of their channel, in place."""
    bad = ~np.isfinite(batch)
    if bad.any():
        batch[bad] = np.broadcast_to(fill[None, :, None, None], batch.shape)[bad]


def _divide_by_weights(
    acc: np.ndarray, layout: TilePlan, window: np.ndarray, rows: slice | None = None
) -> None:
    """Divide the accumulated (C, n, W) sums of the frame's ``rows`` by the summed weights.

    Each strip's weights are summed from the tiles over it in the order they ran, so they
    are those of a whole weight map, bit for bit, without one being stored.
    """
    (top, _), (left, _) = layout.pad
    h, w = layout.shape
    rows = slice(0, h) if rows is None else rows
    t = layout.tile_size
    wp = layout.padded_shape[1]
    for strip in row_strips(rows.stop - rows.start, strip_rows(w)):
        r0, r1 = strip.start + rows.start + top, strip.stop + rows.start + top  # padded
        weight = np.zeros((r1 - r0, wp), dtype=np.float32)
        for y in layout.starts_y:
            y0, y1 = max(y, r0), min(y + t, r1)
            if y0 >= y1:
                continue
            for x in layout.starts_x:
                weight[y0 - r0 : y1 - r0, x : x + t] += window[y0 - y : y1 - y]
        acc[:, strip] /= weight[:, left : left + w]
