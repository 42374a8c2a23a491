"""Tests of the colours of simulated light."""

from __future__ import annotations

import numpy as np
import pytest

from napari_astrodenoise.simulate.colour import blackbody_rgb


def test_blackbody_colours_are_red_when_cool_blue_when_hot_grey_at_the_white_point():
    r, g, b = blackbody_rgb(3000.0)
    assert r > g > b
    r, g, b = blackbody_rgb(30000.0)
    assert b > g > r
    np.testing.assert_allclose(blackbody_rgb(5800.0), 1.0)


def test_blackbody_rows_have_mean_one_and_bad_temperatures_are_rejected():
    ratios = blackbody_rgb(np.array([3000.0, 8000.0, 20000.0]))
    assert ratios.shape == (3, 3)
    np.testing.assert_allclose(ratios.mean(axis=1), 1.0)
    with pytest.raises(ValueError, match="temperature"):
        blackbody_rgb(0.0)
