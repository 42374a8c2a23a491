"""The astro stretch (exact inverse, any offset/scale/sign, NaN/inf ignored); noise profiles."""

from __future__ import annotations

import numpy as np
import pytest

from napari_astrodenoise.core.noiselevel import (
    background_level,
    fit_noise_profile,
    noise_map,
    noise_sigma,
    nonfinite_mask,
    prefit_noise_profile,
)
from napari_astrodenoise.core.stretch import (
    AstroStretch,
    fit_stretch,
)
from napari_astrodenoise.simulate.noise import poisson_gaussian


def _frame(level: float, sigma: float, *, shape=(3, 96, 128), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xx = np.arange(shape[2])[None, None, :]
    gradient = 0.5 * sigma * (xx / shape[2])  # smooth light pollution
    img = level + gradient + rng.normal(0, sigma, size=shape)
    img[:, 40:44, 60:64] += 200 * sigma  # a bright star
    return img.astype(np.float32)


@pytest.mark.parametrize(
    ("level", "sigma"),
    [(30_000.0, 40.0), (0.0, 1e-3), (0.2, 0.01), (-500.0, 3.0)],
    ids=["counts", "sky-subtracted", "stretched-0-1", "negative-offset"],
)
def test_round_trip_is_exact_to_float32_precision_for_any_range(level, sigma):
    img = _frame(level, sigma)
    stretch = fit_stretch(img)
    y = stretch.forward(img)
    assert y.dtype == np.float32
    back = stretch.inverse(y)
    # forward rounds to float32 once; the inverse adds no error of its own
    np.testing.assert_allclose(back, img, rtol=2e-6, atol=2e-6 * sigma)
    # in float64 the two maps are inverse to machine precision
    y64 = np.arcsinh((img.astype(np.float64) - stretch.background[:, None, None]) / stretch.scale)
    np.testing.assert_allclose(stretch.inverse(y64), img, rtol=1e-12, atol=1e-9 * sigma)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_is_asinh_over_the_whole_float_range(dtype):
    # the log-sqrt form of asinh must agree with arcsinh from the sky noise to where z * z
    # overflows, for either sign, and keep non-finite pixels at 0
    mag = np.concatenate([[0.0], np.logspace(-8, 30, 400)])
    z = np.concatenate([mag, -mag]).astype(dtype)
    stretch = AstroStretch(background=np.array([5.0]), scale=2.0)
    image = (z * 2.0 + 5.0).astype(dtype)[np.newaxis, np.newaxis]
    got = stretch.forward(image)[0, 0]
    want = np.arcsinh((image[0, 0].astype(np.float64) - 5.0) / 2.0)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    bad = np.array([[[np.nan, np.inf, -np.inf, 5.0]]], dtype=dtype)
    np.testing.assert_array_equal(stretch.forward(bad), 0.0)


@pytest.mark.parametrize(
    ("level", "spread", "step"),
    [
        (0.0, 0.5, 0.01),
        (3.0, 0.5, 0.01),
        (12.0, 0.5, 0.01),
        (60.0, 0.5, 0.01),
        (89.7, 0.05, 1e-3),
        (3.0, 0.5, 0.5),  # half-differences on both sides of the Taylor series' range
    ],
    ids=["sky", "faint", "star", "huge", "beyond-float32-cosh", "large-change"],
)
def test_change_is_the_difference_of_inverses_without_cancellation(level, spread, step):
    # network-space values from the sky (0) to where float32 cosh overflows (~89.4) but the
    # change itself still fits in float32
    rng = np.random.default_rng(3)
    old = (level + rng.normal(0, spread, (2, 3, 16, 16))).astype(np.float32)
    new = (old + rng.normal(0, step, old.shape)).astype(np.float32)
    stretch = fit_stretch(_frame(1000.0, 25.0))
    got = stretch.change(new, old)
    assert got.dtype == np.float32 and got.shape == old.shape
    a, b = new.astype(np.float64), old.astype(np.float64)
    exact = stretch.scale * (np.sinh(a) - np.sinh(b))  # float64: exact enough for this test
    np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-5 * stretch.scale)
    np.testing.assert_array_equal(stretch.change(old, old), 0.0)  # unchanged stays exact


def test_sky_noise_has_about_one_over_softening_in_network_space():
    img = _frame(1000.0, 25.0)
    y = fit_stretch(img, softening=3.0).forward(img)
    sky = y[:, 5:35, 5:50]
    assert 0.29 < sky.std() < 0.38
    assert abs(float(np.median(sky))) < 0.05


def test_noise_sigma_ignores_smooth_structure():
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:200, :200]
    nebula = 500 * np.exp(-((xx - 100) ** 2 + (yy - 100) ** 2) / (2 * 40**2))
    img = (nebula + rng.normal(0, 7.0, size=(200, 200)))[None]
    assert noise_sigma(img)[0] == pytest.approx(7.0, rel=0.05)
    # a plain MAD of the pixels would have been dominated by the nebula
    assert np.std(img) > 50


def test_statistics_ignore_nan_and_inf():
    img = _frame(100.0, 2.0)
    clean = fit_stretch(img)
    dirty = img.copy()
    dirty[:, :10, :10] = np.nan
    dirty[:, 50, :] = np.inf
    dirty[:, 51, :] = -np.inf
    stretch = fit_stretch(dirty)
    np.testing.assert_allclose(stretch.background, clean.background, rtol=1e-3)
    assert stretch.scale == pytest.approx(clean.scale, rel=0.05)
    y = stretch.forward(dirty)
    assert np.isfinite(y).all()
    assert (y[:, :10, :10] == 0).all()  # filled as sky
    assert nonfinite_mask(dirty).sum() == 3 * (100 + 2 * 128)
    assert nonfinite_mask(img) is None


def test_noiseless_or_constant_frames_get_a_finite_invertible_stretch():
    flat = np.full((1, 32, 32), 1234.5, dtype=np.float32)
    stretch = fit_stretch(flat)
    assert stretch.scale > 0
    np.testing.assert_allclose(stretch.inverse(stretch.forward(flat)), flat, rtol=1e-7)
    zeros = np.zeros((1, 16, 16), dtype=np.float32)
    assert fit_stretch(zeros).scale > 0


def test_background_is_the_median_per_channel():
    img = np.stack([np.full((20, 20), v, np.float32) for v in (1.0, 2.0, 3.0)])
    np.testing.assert_array_equal(background_level(img), [1.0, 2.0, 3.0])


def test_bad_arguments_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="softening must be > 0"):
        fit_stretch(np.zeros((4, 4)), softening=0)
    with pytest.raises(ValueError, match=r"\(H, W\) or \(C, H, W\)"):
        background_level(np.zeros(5))


def _poisson_scene(gain: float, read_noise: float, *, seed: int = 0):
    """(clean, noisy): sky 200 ADU, a nebula-like ramp to 5000 ADU and a few stars."""
    yy, xx = np.mgrid[:256, :256].astype(np.float64)
    clean = 200.0 + 4800.0 * (xx / 255.0) ** 2 * np.exp(-(((yy - 128) / 90.0) ** 2))
    for y, x in ((40, 50), (200, 30), (90, 220)):
        clean += 20_000.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.5**2))
    noisy = poisson_gaussian(clean, gain=gain, read_noise=read_noise, seed=seed)
    return clean, noisy


@pytest.mark.parametrize(("gain", "read_noise"), [(1.5, 5.0), (0.2, 12.0), (8.0, 2.0)])
def test_noise_profile_recovers_gain_and_read_noise(gain, read_noise):
    clean, noisy = _poisson_scene(gain, read_noise)
    profile = fit_noise_profile(noisy, clean)
    sky = profile.sky[0]
    expected_floor = (gain * sky + read_noise**2) / gain**2
    assert profile.floor[0] == pytest.approx(expected_floor, rel=0.1)
    assert profile.slope[0] == pytest.approx(1.0 / gain, rel=0.1)
    sigma = profile.sigma(0, clean)
    truth = np.sqrt(gain * clean + read_noise**2) / gain
    assert np.median(np.abs(sigma / truth - 1.0)) < 0.05
    assert sigma.dtype == np.float32 and sigma.shape == clean.shape


def test_noise_profile_ignores_nan_and_needs_matching_shapes():
    clean, noisy = _poisson_scene(1.5, 5.0)
    holed = noisy.copy()
    holed[:60] = np.nan
    profile = fit_noise_profile(holed, clean)
    assert np.isfinite(profile.floor).all() and profile.slope[0] == pytest.approx(1 / 1.5, 0.1)
    assert np.isfinite(profile.sigma(0, np.full((4, 4), np.nan))).all()  # the sky's sigma
    with pytest.raises(ValueError, match="one shape"):
        fit_noise_profile(noisy, clean[:100])


def test_a_noiseless_image_has_a_zero_profile():
    flat = np.full((2, 64, 64), 7.0, np.float32)
    profile = fit_noise_profile(flat, flat)
    assert (profile.floor == 0).all() and (profile.slope == 0).all()


# ------------------------------------------------------------------ the noise map


def _ramp_frame(
    gain: float, *, read_noise: float = 5.0, seed: int = 0, start: int = 224
) -> np.ndarray:
    """Sky of 100 ADU, then a ramp to 20 000 ADU from row ``start`` down; Poisson-Gaussian.

    The ramp runs along the rows, so it cancels in the horizontal differences that measure
    the noise.
    """
    yy, _ = np.mgrid[:256, :256]
    ramp = np.clip((yy - start) / (255.0 - start), 0.0, 1.0)
    clean = (100.0 + 20_000.0 * ramp**2).astype(np.float32)
    return poisson_gaussian(clean, gain=gain, read_noise=read_noise, seed=seed)


@pytest.mark.parametrize("gain", [0.5, 4.0])
def test_prefit_noise_profile_finds_the_noise_of_a_frame_from_the_frame_alone(gain):
    # the sky's variance, on a frame that is mostly sky
    profile = prefit_noise_profile(_ramp_frame(gain))
    assert profile.floor[0] == pytest.approx((100.0 * gain + 25.0) / gain**2, rel=0.25)
    # the slope (1 / gain), on a frame with every level up to 20 000 ADU equally often
    profile = prefit_noise_profile(_ramp_frame(gain, start=0))
    assert profile.slope[0] == pytest.approx(1.0 / gain, rel=0.15)
    level = np.array([5_000.0, 10_000.0, 20_000.0], dtype=np.float32)
    true_var = level / gain + (5.0 / gain) ** 2
    np.testing.assert_allclose(profile.sigma(0, level) ** 2, true_var, rtol=0.15)


def test_prefit_noise_profile_ignores_nonfinite_pixels():
    noisy = _ramp_frame(1.0, start=0)
    clean_fit = prefit_noise_profile(noisy)
    noisy[::7, ::5] = np.nan
    noisy[3, :] = np.inf
    fit = prefit_noise_profile(noisy)
    assert np.isfinite([fit.floor[0], fit.slope[0]]).all()
    assert fit.slope[0] == pytest.approx(clean_fit.slope[0], rel=0.1)


def test_noise_map_is_one_on_the_sky_and_falls_with_the_signal_slower_for_shot_noise():
    maps = {}
    # much / little shot noise for about the same sky noise (7 ADU): at 20 000 ADU the noise
    # is 100 ADU for the first, 21 ADU for the second
    for gain, read_noise in ((2.0, 0.0), (50.0, 350.0)):
        noisy = _ramp_frame(gain, read_noise=read_noise, seed=2)
        stretch = fit_stretch(noisy, softening=3.0)
        m = noise_map(noisy, stretch, prefit_noise_profile(noisy), 3.0)
        assert m.shape == noisy.shape and m.dtype == np.float32
        maps[gain] = m
    for m in maps.values():
        assert np.median(m[:20]) == pytest.approx(1.0, abs=0.15)  # the sky
        assert np.median(m[-8:]) < 0.5 * np.median(m[:20])  # bright: less in network space
    # the same brightness carries more noise where the gain is low
    assert np.median(maps[2.0][-8:]) > 3.0 * np.median(maps[50.0][-8:])


def test_noise_map_of_a_colour_frame_is_one_plane_and_nan_pixels_get_a_value():
    noisy = np.stack([_ramp_frame(1.0, seed=s) for s in range(3)])
    noisy[1, 10, 10] = np.nan
    stretch = fit_stretch(noisy)
    m = noise_map(noisy, stretch, prefit_noise_profile(noisy), 3.0)
    assert m.shape == noisy.shape[1:]
    assert np.isfinite(m).all()


def test_prefit_noise_profile_of_a_tiny_frame_is_its_white_noise_level():
    rng = np.random.default_rng(3)
    tiny = (50.0 + rng.normal(0, 4.0, (24, 24))).astype(np.float32)
    profile = prefit_noise_profile(tiny)
    assert profile.slope[0] == 0.0
    assert np.sqrt(profile.floor[0]) == pytest.approx(4.0, rel=0.2)


@pytest.mark.parametrize(("gain", "read_noise"), [(1.5, 5.0), (0.2, 12.0), (8.0, 2.0)])
def test_a_denoiser_that_keeps_some_noise_does_not_lower_the_floor(gain, read_noise):
    # a prediction that follows the noise a little sorts the pixels by it: the residual's
    # spread within each level bin is narrower than the noise, the input's differences are not
    clean, noisy = _poisson_scene(gain, read_noise)
    leaky = clean + 0.4 * (noisy - clean)
    profile = fit_noise_profile(noisy, leaky)
    sky = profile.sky[0]
    true_floor = (gain * sky + read_noise**2) / gain**2
    assert profile.floor[0] == pytest.approx(true_floor, rel=0.1)


def test_correlated_noise_keeps_the_floor_fitted_to_the_residual():
    from scipy.ndimage import uniform_filter

    rng = np.random.default_rng(6)
    noise = uniform_filter(rng.normal(0.0, 10.0, (512, 512)), 3)  # neighbours correlated
    noisy = (500.0 + noise).astype(np.float32)
    profile = fit_noise_profile(noisy, np.full_like(noisy, 500.0))
    assert np.sqrt(profile.floor[0]) == pytest.approx(np.std(noise), rel=0.1)
