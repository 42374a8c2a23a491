"""Tests of the argument checks shared by the simulators."""

from __future__ import annotations

import pytest

from napari_astrodenoise.simulate._checks import check_config_fields, config_or_default
from napari_astrodenoise.simulate.noise import NoiseConfig
from napari_astrodenoise.simulate.sky import SkyConfig


def test_config_fields_become_floats_and_tuples():
    config = SkyConfig(p_cluster=1, flux_range=[10, 20])
    assert config.p_cluster == 1.0 and isinstance(config.p_cluster, float)
    assert config.flux_range == (10.0, 20.0)
    config.p_nebula = "0.5"  # set after construction, checked again on request
    check_config_fields(config)
    assert config.p_nebula == 0.5


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"p_dust": -0.1}, "p_dust must be a probability"),
        ({"gradient_range": (0.3, 0.1)}, "gradient_range must satisfy"),
        ({"gradient_range": (1.0,)}, "gradient_range must be a pair"),
    ],
)
def test_bad_config_fields_are_named(fields, match):
    with pytest.raises(ValueError, match=match):
        SkyConfig(**fields)


def test_config_or_default_gives_the_default_and_rejects_other_types():
    assert config_or_default(None, NoiseConfig) == NoiseConfig()
    given = NoiseConfig(p_chroma=0.0)
    assert config_or_default(given, NoiseConfig) is given
    with pytest.raises(TypeError, match="config must be a SkyConfig or None, got dict"):
        config_or_default({}, SkyConfig)
