"""Tests of the scene: shapes, determinism, the sky and its gradient, argument checks."""

from __future__ import annotations

import numpy as np
import pytest

from napari_astrodenoise.simulate.sky import SkyConfig, simulate_scene

PRESETS = ["mixed", "sparse", "cluster", "nebula", "galaxies", "stars_only"]


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_gives_a_valid_colour_image(preset):
    scene = simulate_scene((96, 128), seed=1, config=SkyConfig.preset(preset))
    assert scene.image.shape == (3, 96, 128) and scene.image.dtype == np.float32
    assert np.isfinite(scene.image).all()
    assert scene.image.min() >= 0.0
    assert scene.image.max() <= scene.saturation
    assert scene.background.shape == (3,) and np.all(scene.background > 0)
    assert scene.stars["flux"].shape == (len(scene.stars), 3)


def test_mono_scene_has_one_channel():
    scene = simulate_scene((64, 80), channels=1, seed=2)
    assert scene.image.shape == (1, 64, 80)
    assert scene.stars["flux"].shape == (len(scene.stars), 1)
    assert scene.background.shape == (1,)


def test_same_seed_same_scene_and_different_seed_different_scene():
    a = simulate_scene((64, 64), seed=7)
    b = simulate_scene((64, 64), seed=7)
    c = simulate_scene((64, 64), seed=8)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.stars, b.stars)
    assert a.params == b.params
    assert not np.array_equal(a.image, c.image)


def test_everything_off_leaves_a_flat_sky():
    config = SkyConfig.preset("stars_only", stars=False)
    scene = simulate_scene((64, 64), seed=9, config=config)
    assert len(scene.stars) == 0 and len(scene.galaxies) == 0
    np.testing.assert_allclose(scene.image, scene.background[:, None, None] * np.ones((64, 64)))


def test_gradient_is_smooth_and_averages_to_the_background():
    config = SkyConfig.preset("stars_only", stars=False, p_gradient=1.0, gradient_range=(0.3, 0.3))
    scene = simulate_scene((128, 128), channels=1, seed=10, config=config)
    img = scene.image[0]
    assert img.mean() == pytest.approx(scene.background[0], rel=1e-4)
    assert np.ptp(img) == pytest.approx(0.3 * scene.params["sky_level"], rel=0.25)
    assert np.abs(np.diff(img, axis=1)).max() < 0.02 * img.mean()


def test_invalid_arguments_are_rejected_with_clear_messages():
    with pytest.raises(ValueError, match="channels"):
        simulate_scene((32, 32), channels=2)
    with pytest.raises(ValueError, match="at least"):
        simulate_scene((4, 32))
    with pytest.raises(ValueError, match="unknown preset"):
        SkyConfig.preset("moon")
    with pytest.raises(ValueError, match="p_nebula"):
        SkyConfig(p_nebula=2.0)
    with pytest.raises(ValueError, match="fwhm_range"):
        SkyConfig(fwhm_range=(3.0, 1.0))
    with pytest.raises(TypeError, match="SkyConfig"):
        simulate_scene((32, 32), config={"stars": False})
    assert SkyConfig(**SkyConfig().to_dict()) == SkyConfig()
