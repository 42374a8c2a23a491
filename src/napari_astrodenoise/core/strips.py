"""Row strips of (H, W) planes: whole-frame work done a few MiB at a time, results unchanged."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

#: pixels per strip: 2 Mi pixels, an 8 MiB float32 temporary per intermediate
STRIP_PIXELS = 1 << 21


def strip_rows(width: int, halo: int = 0) -> int:
    """Rows per strip of a plane ``width`` pixels wide: about `STRIP_PIXELS`, >= ``halo``."""
    return max(1, halo, STRIP_PIXELS // max(1, width))


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
    is at least ``halo`` rows high): the outcome is the whole plane's, exactly, with two
    strips of results held at a time.

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
    pending: tuple[slice, np.ndarray] | None = None
    for rows in row_strips(height, strip_rows(width, halo)):
        read, own = with_halo(rows, halo, height)
        result = compute(read, own)
        if pending is not None:
            apply(*pending)
        pending = (rows, result)
    if pending is not None:
        apply(*pending)
