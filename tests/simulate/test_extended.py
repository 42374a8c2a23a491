"""Tests of the extended light: nebulae, dust lanes and galaxies."""

from __future__ import annotations

import numpy as np
import pytest

from napari_astrodenoise.simulate.sky import SkyConfig, simulate_scene


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
