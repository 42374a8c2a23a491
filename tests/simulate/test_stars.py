"""Tests of the point sources: photometry, saturation, star colours, clusters."""

from __future__ import annotations

import numpy as np
import pytest

from napari_astrodenoise.simulate.sky import SkyConfig, SkyScene, simulate_scene


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
    scene = simulate_scene((128, 128), seed=6, config=photometry_config())
    flux = scene.stars["flux"]
    order = np.argsort(scene.stars["temperature"])
    assert np.all(np.diff((flux[:, 2] / flux[:, 0])[order]) > 0)  # hotter is bluer


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
