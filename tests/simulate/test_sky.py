"""Tests of the sky simulator: shapes, determinism, photometry, saturation, components."""

from __future__ import annotations

import numpy as np
import pytest

from napari_astrodenoise.simulate.sky import SkyConfig, SkyScene, blackbody_rgb, simulate_scene

PRESETS = ["mixed", "sparse", "cluster", "nebula", "galaxies", "stars_only"]


def photometry_config(**overrides) -> SkyConfig:
    """Stars only, none saturated, a sparse field so that most stars are isolated."""
    base = {
        "flux_range": (3e3, 3e5),
        "fwhm_range": (2.0, 4.0),
        "star_density_range": (3e-4, 3e-4),
    }
    return SkyConfig.preset("stars_only", **{**base, **overrides})


def isolated(scene: SkyScene, radius: float) -> np.ndarray:
    """Stars with no other star within 2 radius and wholly inside the frame."""
    x, y = scene.stars["x"], scene.stars["y"]
    _, h, w = scene.image.shape
    d = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    np.fill_diagonal(d, np.inf)
    inside = (x > radius) & (x < w - 1 - radius) & (y > radius) & (y < h - 1 - radius)
    return inside & (d.min(axis=1) > 2 * radius)


def aperture_sum(image: np.ndarray, x: float, y: float, radius: float) -> np.ndarray:
    yy, xx = np.indices(image.shape[1:])
    inside = np.hypot(xx - x, yy - y) <= radius
    return image[:, inside].sum(axis=1), inside.sum()


# ------------------------------------------------------------------------------------------


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


def test_mono_is_the_mean_of_colour_for_the_same_seed():
    config = photometry_config()
    colour = simulate_scene((96, 96), channels=3, seed=3, config=config)
    mono = simulate_scene((96, 96), channels=1, seed=3, config=config)
    np.testing.assert_array_equal(mono.stars["x"], colour.stars["x"])
    np.testing.assert_allclose(mono.stars["flux"][:, 0], colour.stars["flux"].mean(axis=1))
    np.testing.assert_allclose(mono.image[0], colour.image.mean(axis=0), rtol=1e-4)


@pytest.mark.parametrize("psf", ["moffat", "gaussian"])
def test_isolated_star_fluxes_are_recovered_by_aperture_sums(psf):
    config = photometry_config(p_moffat=1.0 if psf == "moffat" else 0.0)
    scene = simulate_scene((256, 256), seed=4, config=config)
    assert scene.params["psf"]["profile"] == psf
    radius = 6.0 * scene.stars["fwhm"].max()
    chosen = np.flatnonzero(isolated(scene, radius))
    assert chosen.size >= 3
    for i in chosen:
        star = scene.stars[i]
        total, area = aperture_sum(scene.image, star["x"], star["y"], radius)
        measured = total - area * scene.background
        np.testing.assert_allclose(measured, star["flux"], rtol=0.02)


def test_bright_stars_are_clipped_at_saturation_and_flagged():
    config = photometry_config(flux_range=(2e6, 5e6), saturation=30000.0)
    scene = simulate_scene((128, 128), seed=5, config=config)
    assert scene.saturation == 30000.0
    assert scene.image.max() == pytest.approx(30000.0)
    on_frame = (scene.stars["x"] >= 0) & (scene.stars["x"] <= 127)
    on_frame &= (scene.stars["y"] >= 0) & (scene.stars["y"] <= 127)
    assert scene.stars["saturated"][on_frame].all()
    faint = simulate_scene((128, 128), seed=5, config=photometry_config())
    assert not faint.stars["saturated"].any()
    assert faint.image.max() < faint.saturation


def test_default_scenes_contain_some_saturated_cores():
    saturated = sum(simulate_scene((256, 256), seed=s).params["n_saturated"] for s in range(8))
    assert saturated >= 1


def test_star_colours_follow_temperature():
    r, g, b = blackbody_rgb(3000.0)
    assert r > g > b
    r, g, b = blackbody_rgb(30000.0)
    assert b > g > r
    np.testing.assert_allclose(blackbody_rgb(5800.0), 1.0)
    scene = simulate_scene((128, 128), seed=6, config=photometry_config())
    flux = scene.stars["flux"]
    order = np.argsort(scene.stars["temperature"])
    assert np.all(np.diff((flux[:, 2] / flux[:, 0])[order]) > 0)  # hotter is bluer


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


def test_nebula_adds_extended_emission_with_colour():
    config = SkyConfig.preset("nebula", stars=False, p_dust=0.0, p_gradient=0.0)
    scene = simulate_scene((128, 128), seed=11, config=config)
    assert scene.params["nebula"]
    excess = scene.image - scene.background[:, None, None]
    assert np.percentile(excess.mean(axis=0), 99.5) == pytest.approx(
        scene.params["nebula_amplitude"], rel=0.05
    )
    # extended: a large share of the frame is lit, unlike a star field
    assert np.mean(excess.mean(axis=0) > 0.05 * scene.params["nebula_amplitude"]) > 0.2
    # coloured emission: channels are not all alike
    ratios = excess.sum(axis=(1, 2)) / excess.sum()
    assert np.ptp(ratios) > 0.05


def test_dust_absorbs_the_light_behind_it():
    base = {"stars": False, "p_galaxies": 0.0, "nebula_amplitude_range": (2.0, 2.0)}
    clear = simulate_scene(
        (128, 128), seed=12, config=SkyConfig.preset("nebula", p_dust=0.0, **base)
    )
    dusty = simulate_scene(
        (128, 128),
        seed=12,
        config=SkyConfig.preset("nebula", p_dust=1.0, dust_opacity_range=(3.0, 3.0), **base),
    )
    assert dusty.params["dust_opacity"] == 3.0
    assert np.all(dusty.image <= clear.image + 1e-3)
    assert (clear.image - dusty.image).max() > 0.3 * clear.params["nebula_amplitude"]


def test_galaxies_are_catalogued_and_add_their_flux():
    config = SkyConfig.preset("galaxies", stars=False, p_dust=0.0, p_gradient=0.0)
    scene = simulate_scene((128, 128), seed=13, config=config)
    assert len(scene.galaxies) >= 1
    for name in ("x", "y", "flux", "re", "n", "q", "theta"):
        assert name in scene.galaxies.dtype.names
    excess = (scene.image - scene.background[:, None, None]).sum(axis=(1, 2))
    # the flux of galaxies near the edge partly falls off the frame
    assert 0.3 * scene.galaxies["flux"].sum(axis=0).min() < excess.min()
    assert np.all(excess <= scene.galaxies["flux"].sum(axis=0) * 1.001)


def test_cluster_preset_concentrates_stars():
    config = SkyConfig.preset("cluster", p_nebula=0.0, p_galaxies=0.0)
    scene = simulate_scene((256, 256), seed=14, config=config)
    p = scene.params
    assert p["cluster"]
    r = np.hypot(scene.stars["x"] - p["cluster_x"], scene.stars["y"] - p["cluster_y"])
    # projected Plummer: half the members within the core radius (the rest of the field adds)
    within = np.sum(r < p["cluster_core"])
    assert within >= 0.45 * p["n_cluster"]
    core_density = within / (np.pi * p["cluster_core"] ** 2)
    assert core_density > 5 * len(scene.stars) / 256**2


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
