"""Tests of the detector artefacts: banding, chroma blotches, hot and cold pixels."""

from __future__ import annotations

import numpy as np
import pytest

from napari_astrodenoise.simulate.artifacts import banding, chroma_blotches, hot_cold_pixels


@pytest.mark.parametrize("axis", [0, 1])
def test_banding_is_constant_along_its_rows_or_columns(axis, textured):
    clean = textured(1, (3, 400, 300))
    pattern = banding(clean, amplitude=4.0, axis=axis, seed=7) - clean
    along = 2 if axis == 0 else 1  # rows are constant along x, columns along y
    assert np.ptp(pattern, axis=along).max() < 1e-3
    across = pattern[0, :, 0] if axis == 0 else pattern[0, 0, :]
    assert across.std() == pytest.approx(4.0, rel=0.15)
    assert abs(across.mean()) < 1e-3
    # the same read-out pattern in every channel
    np.testing.assert_allclose(pattern[0], pattern[2], atol=1e-3)


def test_banding_rejects_other_axes(flat):
    with pytest.raises(ValueError, match="axis"):
        banding(flat(), amplitude=1.0, axis=2)


def radial_power_fraction(field: np.ndarray, k_max: float) -> float:
    """Share of the power at spatial frequencies below k_max (cycles per pixel)."""
    power = np.abs(np.fft.fft2(field)) ** 2
    ky = np.fft.fftfreq(field.shape[0])[:, None]
    kx = np.fft.fftfreq(field.shape[1])[None, :]
    return float(power[np.hypot(ky, kx) < k_max].sum() / power.sum())


def test_chroma_blotches_are_low_frequency_zero_mean_colour_noise(flat):
    clean = flat(1000.0, (3, 256, 256))
    pattern = chroma_blotches(clean, amplitude=10.0, scale=32.0, seed=8) - clean
    assert pattern.std() == pytest.approx(10.0, rel=0.02)
    assert np.abs(pattern.mean(axis=(1, 2))).max() < 0.05
    # pure chrominance: the luminance does not move
    assert np.abs(pattern.mean(axis=0)).max() < 1e-3
    # the channels differ from one another
    assert np.corrcoef(pattern[0].ravel(), pattern[1].ravel())[0, 1] < 0.9
    # features of ~32 px: almost all power below 2 / 32 cycles per pixel
    for c in range(3):
        assert radial_power_fraction(pattern[c], 2.0 / 32.0) > 0.9
    white = np.random.default_rng(0).standard_normal((256, 256))
    assert radial_power_fraction(white, 2.0 / 32.0) < 0.05  # the measure can fail


def test_chroma_blotches_on_mono_are_a_luminance_mottle(flat):
    clean = flat(1000.0, (1, 128, 128))
    pattern = chroma_blotches(clean, amplitude=5.0, scale=16.0, seed=9) - clean
    assert pattern.std() == pytest.approx(5.0, rel=0.02)
    assert abs(pattern.mean()) < 0.05
    assert radial_power_fraction(pattern[0], 2.0 / 16.0) > 0.9


def test_hot_cold_pixels_fraction_and_levels(textured):
    clean = textured(2, (3, 200, 200))
    out = hot_cold_pixels(clean, fraction=0.01, seed=10)
    changed = np.any(out != clean, axis=0)
    assert changed.sum() == 400  # exactly round(fraction * H * W) positions
    hot = np.all(out == clean.max(), axis=0)
    cold = np.all(out == 0.0, axis=0)
    assert hot.sum() == 280 and cold.sum() == 120  # default cold_share 0.3
    np.testing.assert_array_equal(out[:, ~changed], clean[:, ~changed])


def test_hot_cold_pixels_custom_levels_and_nans(flat):
    clean = flat(100.0, (1, 50, 50))
    clean[0, :5] = np.nan
    out = hot_cold_pixels(clean, fraction=0.5, hot_level=65535.0, cold_level=-5.0, seed=11)
    assert np.isnan(out[0, :5]).all()
    values = set(np.unique(out[0, 5:]).tolist())
    assert values <= {100.0, 65535.0, -5.0} and {65535.0, -5.0} <= values
    with pytest.raises(ValueError, match="fraction"):
        hot_cold_pixels(clean, fraction=1.5)
