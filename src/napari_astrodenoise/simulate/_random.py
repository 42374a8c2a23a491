"""Random draws shared by the sky and noise simulators and the training tiles."""

from __future__ import annotations

import math

import numpy as np


def log_uniform(
    rng: np.random.Generator, lo: float, hi: float, size: int | tuple[int, ...] | None = None
) -> float | np.ndarray:
    """Draw(s) uniform in ``log(x)`` between ``lo`` and ``hi``.

    Parameters
    ----------
    rng : numpy.random.Generator
    lo, hi : float
        The range, ``lo <= hi``. ``lo == hi`` gives ``lo`` itself without drawing (the
        generator is left as it was); ``lo <= 0``, where no log scale reaches, draws
        uniformly in ``x``.
    size : int or tuple of int, optional
        Shape of an array of draws; None (default) for one draw, returned as a float.

    Returns
    -------
    float or ndarray
    """
    if lo == hi:
        return float(lo) if size is None else np.full(size, lo, dtype=np.float64)
    if lo <= 0:
        draws = rng.uniform(lo, hi, size)
    else:
        draws = np.exp(rng.uniform(math.log(lo), math.log(hi), size))
    return float(draws) if size is None else draws
