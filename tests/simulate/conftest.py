"""Test images of the simulator tests: flat and textured clean frames."""

from __future__ import annotations

import numpy as np
import pytest


def _flat(level: float = 1000.0, shape: tuple[int, ...] = (1, 256, 256)) -> np.ndarray:
    return np.full(shape, level, dtype=np.float32)


def _textured(seed: int = 0, shape: tuple[int, ...] = (3, 64, 64)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (800.0 + 400.0 * rng.random(shape)).astype(np.float32)


@pytest.fixture
def flat():
    """``flat(level=1000, shape=(1, 256, 256))``: a constant float32 frame."""
    return _flat


@pytest.fixture
def textured():
    """``textured(seed=0, shape=(3, 64, 64))``: float32 values uniform in [800, 1200)."""
    return _textured
