"""The band powers of benchmarks/error_spectrum.py."""

from __future__ import annotations

import numpy as np
import pytest

from error_spectrum import BANDS, LEVEL_EDGES, band_powers, bias_variance, level_powers


def test_band_powers_add_up_to_the_sum_of_squares():
    error = np.random.default_rng(0).normal(2.0, 3.0, (3, 64, 48))  # a level, and noise
    powers = band_powers(error)
    assert powers.shape == (len(BANDS),)
    assert powers.sum() == pytest.approx((error**2).sum(), rel=1e-9)
    assert powers[-1] >= 2.0**2 * error.size  # the level lies in the open, longest band


@pytest.mark.parametrize(("cycles", "band"), [(40, 0), (12, 2), (6, 3), (1, 5)])
def test_a_ripple_lands_in_the_band_of_its_wavelength(cycles, band):
    x = np.arange(128)  # whole cycles across the frame: wavelength 128 / cycles px
    ripple = np.tile(np.sin(2 * np.pi * cycles * x / 128), (128, 1))
    powers = band_powers(ripple)
    assert powers[band] > 0.95 * powers.sum()


def test_level_powers_sort_each_pixel_by_its_signal_level():
    snr = np.array([[-2.0, 0.5, 1.0, 2.9], [5.0, 10.0, 99.0, 500.0]])
    error = np.arange(1.0, 9.0).reshape(2, 4)
    powers = level_powers(error, snr)
    assert powers.shape == (len(LEVEL_EDGES),)
    assert powers.sum() == pytest.approx((error**2).sum())
    # < 1: 1, 2; 1-3: 3, 4; 3-10: 5; 10-30: 6; 30-100: 7; > 100: 8
    np.testing.assert_allclose(powers, [1 + 4, 9 + 16, 25, 36, 49, 64])


def test_bias_variance_recovers_a_known_bias_and_noise():
    rng = np.random.default_rng(4)
    snr = np.repeat([[0.5], [50.0]], 20000, axis=1)  # two level bands, 20000 pixels each
    bias = np.where(snr > 10, 0.5, 0.0)  # only the bright band is biased
    sigma = np.where(snr > 10, 2.0, 1.0)
    first = bias + rng.normal(0, 1, snr.shape) * sigma
    second = bias + rng.normal(0, 1, snr.shape) * sigma
    b2, var = bias_variance(first, second, snr)
    n = snr.shape[1]
    np.testing.assert_allclose(var[[0, 4]] / n, [1.0, 4.0], rtol=0.05)
    np.testing.assert_allclose(b2[[0, 4]] / n, [0.0, 0.25], atol=0.05)
    # the two parts add up to one draw's sum of squares, up to the draws' spread
    np.testing.assert_allclose(b2 + var, level_powers(first, snr), rtol=0.05, atol=1.0)
