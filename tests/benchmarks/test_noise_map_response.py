"""The helpers of benchmarks/noise_map_response.py."""

from __future__ import annotations

import numpy as np
import pytest

import noise_map_response as nmr
from napari_astrodenoise.core import pipeline


def test_faint_error_ratio_is_zero_for_the_truth_and_one_for_the_noisy_input():
    rng = np.random.default_rng(0)
    clean = np.tile(np.linspace(0.0, 100.0, 32), (3, 32, 1))
    noisy = clean + rng.normal(0.0, 1.0, clean.shape)
    assert nmr.faint_error_ratio(clean, noisy, clean) == 0.0
    assert nmr.faint_error_ratio(clean, noisy, noisy) == pytest.approx(1.0)
    halved = clean + 0.5 * (noisy - clean)
    assert nmr.faint_error_ratio(clean, noisy, halved) == pytest.approx(0.5)


def test_only_the_faint_half_counts():
    clean = np.zeros((8, 8))
    clean[:, 4:] = 100.0  # the bright half
    noisy = clean + 1.0
    out = clean.copy()
    out[:, 4:] += 50.0  # large errors on bright pixels only
    assert nmr.faint_error_ratio(clean, noisy, out) == 0.0


def test_scaled_noise_map_scales_and_restores_the_engines_map():
    original = pipeline.noise_map
    with nmr.scaled_noise_map(2.0):
        assert pipeline.noise_map is not original
    assert pipeline.noise_map is original
