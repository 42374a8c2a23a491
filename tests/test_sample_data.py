"""Sample data: bundled, no downloads; the synthetic scene is noisy and comes with its truth."""

from __future__ import annotations

import numpy as np
import pytest

from napari_astrodenoise import _sample_data
from napari_astrodenoise.core.noiselevel import noise_sigma


def test_m13_sample_is_the_real_astropy_frame_as_float32():
    ((data, kwargs, kind),) = _sample_data.m13_sample()
    assert kind == "image"
    assert data.shape == (300, 300) and data.dtype == np.float32
    assert kwargs["metadata"]["fits_header"]["NAXIS1"] == 300
    assert kwargs["scale"][0] == -1  # FITS row 1 at the bottom


def test_synthetic_sample_is_a_noisy_colour_scene_with_its_clean_truth():
    noisy, clean = _sample_data.synthetic_sample()
    assert noisy[0].shape == clean[0].shape == (512, 512, 3)  # rgb layers
    assert noisy[1]["rgb"] and clean[1]["visible"] is False
    residual = np.moveaxis(noisy[0] - clean[0], -1, 0)
    # Poisson-Gaussian: zero-mean, variance = signal / gain + (read noise / gain)^2
    assert abs(float(residual.mean())) < 0.5
    clean_chw = np.moveaxis(clean[0], -1, 0)
    gain, read = _sample_data.SYNTHETIC_GAIN, _sample_data.SYNTHETIC_READ_NOISE
    for lo, hi in ((0, 20), (99, 99.9)):
        sel = (clean_chw >= np.percentile(clean_chw, lo)) & (
            clean_chw <= np.percentile(clean_chw, hi)
        )
        expected = clean_chw[sel].mean() / gain + (read / gain) ** 2
        assert residual[sel].var() == pytest.approx(expected, rel=0.15)
    assert noise_sigma(np.moveaxis(noisy[0], -1, 0)).min() > 3 * noise_sigma(clean_chw).max()


def test_synthetic_scene_is_reproducible():
    a, _ = _sample_data.synthetic_pair((64, 64), seed=5)
    b, _ = _sample_data.synthetic_pair((64, 64), seed=5)
    np.testing.assert_array_equal(a.data, b.data)
