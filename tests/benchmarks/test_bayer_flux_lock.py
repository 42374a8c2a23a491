"""The mosaics of benchmarks/bayer_flux_lock.py: each pixel keeps its RGGB filter's channel."""

from __future__ import annotations

import numpy as np

import bayer_flux_lock as bfl
from napari_astrodenoise.core.planes import PlaneMap


def test_mosaic_samples_each_channel_behind_its_filter():
    rgb = np.stack([np.full((4, 6), v, np.float32) for v in (1.0, 2.0, 3.0)])
    out = bfl.mosaic(rgb)
    assert out.shape == (4, 6)
    assert (out[0::2, 0::2] == 1.0).all()  # R
    assert (out[0::2, 1::2] == 2.0).all() and (out[1::2, 0::2] == 2.0).all()  # G, G
    assert (out[1::2, 1::2] == 3.0).all()  # B


def test_the_engine_splits_the_mosaic_back_into_the_scene_s_channels():
    rng = np.random.default_rng(0)
    rgb = rng.normal(size=(3, 8, 10)).astype(np.float32)
    planes = PlaneMap.of(bfl.mosaic(rgb), None, True).to_planes(bfl.mosaic(rgb))
    np.testing.assert_array_equal(planes[0], rgb[0, 0::2, 0::2])
    np.testing.assert_array_equal(planes[1], rgb[1, 0::2, 1::2])
    np.testing.assert_array_equal(planes[2], rgb[1, 1::2, 0::2])
    np.testing.assert_array_equal(planes[3], rgb[2, 1::2, 1::2])
