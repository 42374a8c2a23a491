"""Shared fixtures of the engine tests: a noisy flat sky and the safeguards after the lock."""

from __future__ import annotations

import numpy as np
import pytest

from napari_astrodenoise.core.options import turned_off


def _sky(shape, *, level=1000.0, sigma=10.0, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = level + rng.normal(0, sigma, size=shape)
    return img.astype(np.float32)


@pytest.fixture
def sky():
    """``sky(shape, level=1000, sigma=10, seed=0)``: float32 flat sky with Gaussian noise."""
    return _sky


@pytest.fixture
def after_lock_off():
    """The safeguards applied after the flux lock, off: the network (and lock) alone."""
    return {k: v for k, v in turned_off().items() if k not in ("flux_lock", "lock_threshold")}
