"""The band powers of benchmarks/error_spectrum.py."""

from __future__ import annotations

import numpy as np
import pytest

from error_spectrum import BANDS, band_powers


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
