"""Tests of the synthetic noise models: their statistics follow their parameters."""

from __future__ import annotations

import numpy as np
import pytest

from napari_astrodenoise.simulate.noise import (
    NoiseConfig,
    NoiseSample,
    gaussian,
    poisson_gaussian,
    random_noise,
    random_variance_gaussian,
    reference_level,
)

# ------------------------------------------------------------------------------------------
# Poisson-Gaussian


@pytest.mark.parametrize(("level", "gain", "read_noise"), [(1000.0, 2.0, 5.0), (50.0, 0.5, 3.0)])
def test_poisson_gaussian_variance_is_shot_plus_read_noise(level, gain, read_noise, flat):
    noisy = poisson_gaussian(flat(level), gain=gain, read_noise=read_noise, seed=1)
    expected = level / gain + (read_noise / gain) ** 2
    assert noisy.var() == pytest.approx(expected, rel=0.03)
    assert noisy.mean() == pytest.approx(level, abs=3 * np.sqrt(expected / noisy.size) + 1e-3)


def test_poisson_gaussian_variance_follows_the_signal_per_channel(flat):
    clean = np.stack([flat(100.0)[0], flat(1000.0)[0], flat(10000.0)[0]])
    noisy = poisson_gaussian(clean, gain=1.5, read_noise=2.0, seed=2)
    for c, level in enumerate((100.0, 1000.0, 10000.0)):
        assert noisy[c].var() == pytest.approx(level / 1.5 + (2.0 / 1.5) ** 2, rel=0.03)


def test_poisson_gaussian_negative_input_gets_only_read_noise(flat):
    noisy = poisson_gaussian(flat(-40.0), gain=2.0, read_noise=4.0, seed=3)
    assert noisy.mean() == pytest.approx(-40.0, abs=0.05)
    assert noisy.var() == pytest.approx((4.0 / 2.0) ** 2, rel=0.03)


def test_poisson_gaussian_keeps_nans_shape_and_dtype(flat):
    clean = flat(500.0, (3, 32, 32))
    clean[1, 5, 7] = np.nan
    noisy = poisson_gaussian(clean, gain=1.0, read_noise=1.0, seed=0)
    assert noisy.shape == clean.shape and noisy.dtype == np.float32
    assert np.isnan(noisy[1, 5, 7])
    assert np.isfinite(noisy).sum() == clean.size - 1
    assert not np.isnan(clean[0]).any()  # input untouched


def test_poisson_gaussian_accepts_2d_and_rejects_bad_gain(flat):
    assert poisson_gaussian(flat()[0], gain=1.0, read_noise=0.0, seed=0).shape == (256, 256)
    with pytest.raises(ValueError, match="gain"):
        poisson_gaussian(flat(), gain=0.0, read_noise=1.0)
    with pytest.raises(ValueError, match="read_noise"):
        poisson_gaussian(flat(), gain=1.0, read_noise=-1.0)


# ------------------------------------------------------------------------------------------
# Gaussian


def test_gaussian_per_channel_sigma(flat):
    clean = flat(100.0, (3, 128, 128))
    noisy = gaussian(clean, sigma=(1.0, 5.0, 20.0), seed=4)
    for c, sigma in enumerate((1.0, 5.0, 20.0)):
        assert (noisy[c] - clean[c]).std() == pytest.approx(sigma, rel=0.03)


def test_gaussian_scalar_sigma_and_validation(flat):
    noisy = gaussian(flat(), sigma=3.0, seed=5)
    assert (noisy - 1000.0).std() == pytest.approx(3.0, rel=0.03)
    with pytest.raises(ValueError, match="one value per channel"):
        gaussian(flat(shape=(3, 8, 8)), sigma=(1.0, 2.0))
    with pytest.raises(ValueError, match=">= 0"):
        gaussian(flat(), sigma=-1.0)


def test_random_variance_gaussian_returns_the_sigma_it_used(flat):
    noisy, sigma = random_variance_gaussian(flat(), sigma_range=(2.0, 50.0), seed=6)
    assert 2.0 <= sigma <= 50.0
    assert (noisy - 1000.0).std() == pytest.approx(sigma, rel=0.03)


def test_random_variance_gaussian_draws_log_uniformly(flat):
    clean = flat(shape=(1, 2, 2))
    sigmas = np.array(
        [random_variance_gaussian(clean, sigma_range=(1.0, 100.0), seed=s)[1] for s in range(400)]
    )
    # log-uniform on [1, 100]: half the draws below 10, a quarter below sqrt(10)
    assert np.mean(sigmas < 10.0) == pytest.approx(0.5, abs=0.08)
    assert np.mean(sigmas < np.sqrt(10.0)) == pytest.approx(0.25, abs=0.07)
    with pytest.raises(ValueError, match="strictly positive"):
        random_variance_gaussian(clean, sigma_range=(0.0, 1.0))


# ------------------------------------------------------------------------------------------
# the training mixture


def test_reference_level_is_the_sky_and_scales_with_the_image(flat, textured):
    assert reference_level(flat(700.0)) == pytest.approx(700.0)
    sky_subtracted = np.zeros((1, 32, 32), np.float32)
    sky_subtracted[0, :4] = 10.0  # 12.5 % of pixels bright: median 0, 99th percentile 10
    assert reference_level(sky_subtracted) == pytest.approx(10.0)
    assert reference_level(np.zeros((1, 4, 4))) == 1.0
    img = textured(3)
    assert reference_level(3.5 * img) == pytest.approx(3.5 * reference_level(img), rel=1e-6)


def test_identity_pair_is_exact(textured):
    clean = textured(4)
    sample = random_noise(clean, seed=0, config=NoiseConfig(p_identity=1.0, p_low_noise=0.0))
    assert isinstance(sample, NoiseSample) and sample.kind == "identity"
    np.testing.assert_array_equal(sample.noisy, clean)
    np.testing.assert_array_equal(sample.target, clean)
    assert sample.noisy is not clean


def test_low_noise_pair_targets_its_own_noisy_input(textured):
    clean = textured(5)
    sample = random_noise(clean, seed=0, config=NoiseConfig(p_identity=0.0, p_low_noise=1.0))
    assert sample.kind == "low_noise"
    np.testing.assert_array_equal(sample.target, sample.noisy)
    deviation = np.abs(sample.noisy - clean)
    assert deviation.max() > 0
    assert deviation.max() < 6 * 1e-3 * reference_level(clean)


def test_artefacts_are_stacked_and_their_target_is_clean(textured):
    clean = textured(6)
    config = NoiseConfig(
        p_identity=0.0,
        p_low_noise=0.0,
        p_gaussian=0.0,
        p_chroma=1.0,
        p_banding=1.0,
        p_hot_cold=1.0,
    )
    sample = random_noise(clean, seed=1, config=config)
    assert sample.kind == "poisson_gaussian+chroma+banding+hot_cold"
    np.testing.assert_array_equal(sample.target, clean)
    for key in (
        "gain",
        "read_noise",
        "chroma_amplitude",
        "banding_amplitude",
        "hot_cold_fraction",
    ):
        assert key in sample.params


def test_main_noise_matches_its_drawn_parameters(flat):
    clean = flat(2000.0, (1, 128, 128))
    config = NoiseConfig(
        p_identity=0, p_low_noise=0, p_gaussian=0, p_chroma=0, p_banding=0, p_hot_cold=0
    )
    sample = random_noise(clean, seed=3, config=config)
    p = sample.params
    expected = 2000.0 / p["gain"] + (p["read_noise"] / p["gain"]) ** 2
    assert sample.noisy.var() == pytest.approx(expected, rel=0.05)
    assert np.sqrt(expected) == pytest.approx(p["background_sigma"], rel=1e-6)


def test_random_noise_is_deterministic_from_a_seed(textured):
    clean = textured(7)
    a, b = random_noise(clean, seed=42), random_noise(clean, seed=42)
    c = random_noise(clean, seed=np.random.default_rng(43))
    assert a.kind == b.kind and a.params == b.params
    np.testing.assert_array_equal(a.noisy, b.noisy)
    assert not np.array_equal(a.noisy, c.noisy)


def test_random_noise_amplitudes_follow_the_flux_scale(textured):
    clean = textured(8)
    for seed in range(6):
        a = random_noise(clean, seed=seed)
        b = random_noise(clean * np.float32(7.5), seed=seed)
        assert a.kind == b.kind
        atol = 1e-4 * 7.5 * reference_level(clean)
        np.testing.assert_allclose(b.noisy, 7.5 * a.noisy, rtol=1e-3, atol=atol)


def test_random_noise_keeps_nans_in_noisy_and_target(textured):
    clean = textured(9)
    clean[:, 3, 4] = np.nan
    for seed in range(8):
        sample = random_noise(clean, seed=seed)
        assert np.isnan(sample.noisy[:, 3, 4]).all() and np.isnan(sample.target[:, 3, 4]).all()
        assert np.isfinite(sample.noisy).sum() == clean.size - 3


def test_default_mixture_is_mostly_poisson_gaussian(textured):
    clean = textured(10, (1, 8, 8))
    kinds = [random_noise(clean, seed=s).kind for s in range(300)]
    main = np.array([k.split("+")[0] for k in kinds])
    assert np.mean(main == "poisson_gaussian") == pytest.approx(0.9 * 0.75, abs=0.08)
    assert np.mean(main == "identity") == pytest.approx(0.05, abs=0.04)
    assert np.mean(main == "low_noise") == pytest.approx(0.05, abs=0.04)


def test_noise_config_validates_and_round_trips_through_a_dict(textured):
    config = NoiseConfig(read_noise_range=[2, 8])  # lists from a TOML file are accepted
    assert config.read_noise_range == (2.0, 8.0)
    assert NoiseConfig(**config.to_dict()) == config
    with pytest.raises(ValueError, match="p_chroma"):
        NoiseConfig(p_chroma=1.5)
    with pytest.raises(ValueError, match="read_noise_range"):
        NoiseConfig(read_noise_range=(5.0, 1.0))
    with pytest.raises(ValueError, match="p_identity \\+ p_low_noise"):
        NoiseConfig(p_identity=0.6, p_low_noise=0.6)
    with pytest.raises(ValueError, match="log-uniformly"):
        NoiseConfig(sky_electrons_range=(0.0, 10.0))
    with pytest.raises(TypeError, match="NoiseConfig"):
        random_noise(textured(), config={"p_identity": 1.0})
