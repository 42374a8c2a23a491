"""The helpers of benchmarks/noise_estimate_response.py."""

from __future__ import annotations

import numpy as np
import pytest

import noise_estimate_response as ner
from napari_astrodenoise.core import pipeline
from napari_astrodenoise.core.stretch import fit_stretch


def test_faint_error_ratio_is_zero_for_the_truth_and_one_for_the_noisy_input():
    rng = np.random.default_rng(0)
    clean = np.tile(np.linspace(0.0, 100.0, 32), (3, 32, 1))
    noisy = clean + rng.normal(0.0, 1.0, clean.shape)
    assert ner.faint_error_ratio(clean, noisy, clean) == 0.0
    assert ner.faint_error_ratio(clean, noisy, noisy) == pytest.approx(1.0)
    halved = clean + 0.5 * (noisy - clean)
    assert ner.faint_error_ratio(clean, noisy, halved) == pytest.approx(0.5)


def test_only_the_faint_half_counts():
    clean = np.zeros((8, 8))
    clean[:, 4:] = 100.0  # the bright half
    noisy = clean + 1.0
    out = clean.copy()
    out[:, 4:] += 50.0  # large errors on bright pixels only
    assert ner.faint_error_ratio(clean, noisy, out) == 0.0


def test_the_stretch_scale_is_scaled_inside_the_block_and_restored_after():
    image = np.random.default_rng(1).normal(100.0, 5.0, (3, 32, 32))
    own = fit_stretch(image, softening=3.0)
    with ner.scaled_estimate("stretch", 2.0):
        scaled = pipeline.fit_stretch(image, softening=3.0)
    assert scaled.scale == pytest.approx(2.0 * own.scale)
    np.testing.assert_array_equal(scaled.background, own.background)
    assert pipeline.fit_stretch(image, softening=3.0).scale == own.scale


def test_the_noise_map_is_scaled_inside_the_block_and_restored_after():
    original = pipeline.noise_map
    with ner.scaled_estimate("map", 2.0):
        assert pipeline.noise_map is not original
    assert pipeline.noise_map is original
