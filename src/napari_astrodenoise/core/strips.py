"""Row strips of (H, W) planes: whole-frame work done a few MiB at a time, results unchanged."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

T = TypeVar("T")
R = TypeVar("R")

#: pixels per strip: 2 Mi pixels, an 8 MiB float32 temporary per intermediate
STRIP_PIXELS = 1 << 21


def strip_rows(width: int, halo: int = 0) -> int:
    """Rows per strip of a plane ``width`` pixels wide: about `STRIP_PIXELS`, >= ``halo``."""
    return max(1, halo, STRIP_PIXELS // max(1, width))


def strip_workers(n_strips: int) -> int:
    """Threads for ``n_strips`` strips: one per core, at most one per strip.

    numpy's ufuncs and scipy's filters release the GIL on arrays this large, so strips on
    threads run in parallel.
    """
    return max(1, min(n_strips, os.cpu_count() or 1))


def thread_map(work: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[work(item) for item in items]``, on threads, one per core (in this thread for one).

    For independent items (strips, channels) whose work releases the GIL; the results are
    in the items' order, the same as the loop's.
    """
    workers = strip_workers(len(items))
    if workers == 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(work, items))


def for_each_strip(height: int, rows: int, work: Callable[[slice], None]) -> None:
    """``work(strip)`` for every strip of ``rows`` rows, on threads, one per core.

    For work whose strips are independent: each writes only its own rows, and reads
    nothing another strip writes. The result is that of a loop over the strips, exactly.
    """
    thread_map(work, list(row_strips(height, rows)))


def row_strips(height: int, rows: int) -> Iterator[slice]:
    """Consecutive row slices of ``rows`` rows (the last may be shorter) covering ``height``."""
    for start in range(0, height, rows):
        yield slice(start, min(start + rows, height))


def with_halo(rows: slice, halo: int, height: int) -> tuple[slice, slice]:
    """(rows read, where the strip's own rows lie within them) for a strip and a halo."""
    lo, hi = max(0, rows.start - halo), min(height, rows.stop + halo)
    return slice(lo, hi), slice(rows.start - lo, rows.stop - lo)


def filter_in_place(
    plane: np.ndarray,
    halo: int,
    compute: Callable[[slice, slice], np.ndarray],
    apply: Callable[[slice, np.ndarray], None],
) -> None:
    """Replace a plane strip by strip by a neighbourhood function of its own old values.

    ``compute(read, own)`` gets the rows to read (the strip plus ``halo`` rows each side,
    clipped to the plane) and where the strip's rows lie within them, and returns the
    strip's result; ``apply(rows, result)`` writes it. Each result is applied only after
    the next strip's has been computed, so every strip reads the plane as it was (a strip
    is at least ``halo`` rows high): the outcome is the whole plane's, exactly. Strips are
    computed on threads, a wave of one per core at a time, with a wave's results held.

    Parameters
    ----------
    plane : ndarray
        (H, W), read by ``compute`` and changed by ``apply``.
    halo : int
        Rows each side a strip's result depends on (>= 0).
    compute, apply : callable
        As above.
    """
    height, width = plane.shape
    strips = list(row_strips(height, strip_rows(width, halo)))
    workers = strip_workers(len(strips))

    def run(rows: slice) -> np.ndarray:
        return compute(*with_halo(rows, halo, height))

    pending: tuple[slice, np.ndarray] | None = None
    # strips are computed a wave (one per thread) at a time, all from the plane as it was;
    # a wave's last result waits until the next wave, which reads its rows, is computed
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for first in range(0, len(strips), workers):
            wave = strips[first : first + workers]
            results = list(pool.map(run, wave)) if workers > 1 else [run(wave[0])]
            if pending is not None:
                apply(*pending)
            for rows, result in zip(wave[:-1], results[:-1], strict=True):
                apply(rows, result)
            pending = (wave[-1], results[-1])
    if pending is not None:
        apply(*pending)


def square_max(plane: np.ndarray, radius: int) -> np.ndarray:
    """(H, W) maximum over the ``(2 radius + 1)`` square around each pixel, edges clipped.

    ``scipy.ndimage.maximum_filter(plane, 2 * radius + 1, mode="nearest")`` bit for bit
    (tests hold them equal; ``mode="reflect"`` gives the same, as a mirrored row adds no
    value the clipped window lacks), as running maxima of shifted views, rows then columns:
    2 radius array operations per axis, several times faster than scipy's filter for the
    small radii used here, which matters on a 24 MPix frame.
    """
    return _square_extreme(plane, radius, np.maximum)


def square_min(plane: np.ndarray, radius: int) -> np.ndarray:
    """:func:`square_max`'s minimum: ``scipy.ndimage.minimum_filter``'s, bit for bit."""
    return _square_extreme(plane, radius, np.minimum)


def _square_extreme(plane: np.ndarray, radius: int, how: np.ufunc) -> np.ndarray:
    top = plane
    for axis in (0, 1):
        src, top = top, top.copy()
        n = src.shape[axis]
        for k in range(1, min(radius, n - 1) + 1):
            head = [slice(None)] * 2
            tail = [slice(None)] * 2
            head[axis], tail[axis] = slice(0, n - k), slice(k, n)
            head_t, tail_t = tuple(head), tuple(tail)
            how(top[head_t], src[tail_t], out=top[head_t])  # the pixel k after
            how(top[tail_t], src[head_t], out=top[tail_t])  # the pixel k before
    return top
