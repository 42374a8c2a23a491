"""The tile predictor: the self-ensemble's symmetry, and its record through denoise()."""

from __future__ import annotations

import numpy as np
import pytest

from napari_astrodenoise.core.pipeline import iter_denoise
from napari_astrodenoise.core.predictor import TilePredictor
from napari_astrodenoise.core.progress import drain


def _sky(shape, *, level=1000.0, sigma=10.0, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = level + rng.normal(0, sigma, size=shape)
    return img.astype(np.float32)


_FLIPS = [
    lambda a: a[..., ::-1, :],
    lambda a: a[..., :, ::-1],
    lambda a: a[..., ::-1, ::-1],
]
_TRANSPOSES = [lambda a: a.swapaxes(-1, -2), lambda a: a.swapaxes(-1, -2)[..., ::-1, :]]


@pytest.mark.parametrize(("ensemble", "views"), [(4, _FLIPS), (8, _FLIPS + _TRANSPOSES)])
def test_an_ensemble_is_as_symmetric_as_its_group_and_a_single_pass_is_not(
    random_model, ensemble, views
):
    from napari_astrodenoise.core.stretch import fit_stretch

    tiles = np.stack([_sky((3, 32, 32), seed=6), _sky((3, 32, 32), seed=7)])
    stretch = fit_stretch(tiles[0])  # one fixed stretch: the network's symmetry alone

    def predict(x, k):
        return TilePredictor(random_model, stretch, 3, 4, k)(np.ascontiguousarray(x))

    base, single = predict(tiles, ensemble), predict(tiles, 1)
    asymmetry = 0.0
    for view in views:  # change and star mask alike
        np.testing.assert_allclose(predict(view(tiles), ensemble), view(base), atol=1e-4)
        asymmetry = max(asymmetry, np.abs(predict(view(tiles), 1) - view(single)).max())
    assert asymmetry > 0.01


def test_an_ensemble_is_recorded_and_changes_the_output(random_model):
    img = _sky((3, 48, 48))
    one = drain(iter_denoise(img, model=random_model, tile_size=32, channel_axis=0))
    four = drain(iter_denoise(img, model=random_model, tile_size=32, channel_axis=0, ensemble=4))
    assert four.provenance()["provenance"]["ADENSMBL"][0] == 4
    assert np.abs(four.output() - one.output()).max() > 0.01
