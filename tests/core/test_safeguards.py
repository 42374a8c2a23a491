"""The change limit and the peak cap, unit by unit and through denoise()."""

from __future__ import annotations

import numpy as np
import pytest

from napari_astrodenoise.core.noiselevel import TAIL_SIGMAS, NoiseProfile, fit_noise_profile
from napari_astrodenoise.core.pipeline import denoise
from napari_astrodenoise.core.safeguards import cap_peaks, limit_change
from napari_astrodenoise.core.strips import square_max
from napari_astrodenoise.simulate.noise import poisson_gaussian


def _sky(shape, *, level=1000.0, sigma=10.0, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = level + rng.normal(0, sigma, size=shape)
    return img.astype(np.float32)


def _invented_star_case():
    """(clean, noisy, sigma, denoised): Poisson sky, and a 'denoiser' that adds a star."""
    gain, read_noise = 1.0, 5.0
    yy, xx = np.mgrid[:128, :128]
    clean = 500.0 + 3.0 * xx  # sky with a gradient, 500-880 ADU
    noisy = poisson_gaussian(clean, gain=gain, read_noise=read_noise, seed=3)
    sigma = np.sqrt(gain * clean + read_noise**2) / gain
    invented = 50.0 * 25.0 * np.exp(-((xx - 64) ** 2 + (yy - 60) ** 2) / (2 * 2.0**2))
    denoised = clean + invented  # the noise removed, and a 50-sigma star made up
    return clean, noisy.astype(np.float32), sigma, denoised.astype(np.float32)


def test_change_limit_cuts_an_invented_star_to_the_noise():
    _clean, noisy, sigma, denoised = _invented_star_case()
    out = denoised[np.newaxis].copy()
    profile = limit_change(out, noisy[np.newaxis], 3.0)
    change = out[0] - noisy
    assert (np.abs(change) <= 3.0 * 1.1 * sigma).all()  # the fitted sigma is within 10 %
    assert change[60, 64] < 0.1 * (denoised - noisy)[60, 64]  # the star is cut to the noise
    kept = np.abs(denoised - noisy) < 2.5 * sigma
    np.testing.assert_array_equal(out[0][kept], denoised[kept])  # noise removal untouched
    assert profile.slope[0] == pytest.approx(1.0, rel=0.15)  # gain 1: Poisson seen


def test_change_limit_zero_leaves_the_output_alone():
    _clean, noisy, _sigma, denoised = _invented_star_case()
    out = denoised[np.newaxis].copy()
    assert limit_change(out, noisy[np.newaxis], 0.0) is None
    np.testing.assert_array_equal(out[0], denoised)


def test_change_limit_keeps_a_random_model_near_its_input(random_model):
    # the random model's changes are a fraction of the noise (sigma 10): a limit of a
    # twentieth of a sigma binds on them
    img = _sky((64, 64), sigma=10.0)
    free = denoise(img, model=random_model, tile_size=32, change_limit=0.0, peak_cap=0)
    limited = denoise(img, model=random_model, tile_size=32, change_limit=0.05)
    assert np.abs(free - img).max() > 3 * np.abs(limited - img).max()
    assert np.abs(limited - img).max() < 2.0 * 0.05 * 10.0  # with the fitted sigma


# ------------------------------------------------------------------------------ peak cap


def _sharpened_star_case():
    """A noisy star and a 'denoised' copy whose core was sharpened to twice its peak."""
    yy, xx = np.mgrid[:48, :48]
    star = 2000.0 * np.exp(-((xx - 24) ** 2 + (yy - 20) ** 2) / (2 * 1.2**2))
    clean = 100.0 + star
    noisy = poisson_gaussian(clean, gain=1.0, read_noise=5.0, seed=7).astype(np.float32)
    denoised = clean.astype(np.float32)
    denoised[20, 24] = 100.0 + 2.0 * 2000.0
    return noisy, denoised


def test_peak_cap_holds_a_sharpened_core_to_the_brightest_pixel_around_it():
    noisy, denoised = _sharpened_star_case()
    out = denoised[np.newaxis].copy()
    cap_peaks(out, noisy[np.newaxis], 1)
    assert out[0, 20, 24] == noisy[19:22, 23:26].max()  # the 3 x 3 maximum of the input
    assert out[0, 20, 24] < 100.0 + 1.2 * 2000.0  # the doubling is gone
    keep = np.ones(denoised.shape, bool)
    keep[20, 24] = False
    # below every neighbourhood's maximum: left bit for bit (the star's wings, the sky)
    untouched = keep & (denoised <= noisy)
    np.testing.assert_array_equal(out[0][untouched], denoised[untouched])
    from scipy.ndimage import maximum_filter

    assert (out[0] <= maximum_filter(noisy, size=3, mode="nearest")).all()


def test_peak_cap_zero_leaves_the_output_alone_and_a_wider_cap_binds_less():
    noisy, denoised = _sharpened_star_case()
    off = denoised[np.newaxis].copy()
    cap_peaks(off, noisy[np.newaxis], 0)
    np.testing.assert_array_equal(off[0], denoised)
    narrow, wide = denoised[np.newaxis].copy(), denoised[np.newaxis].copy()
    cap_peaks(narrow, noisy[np.newaxis], 1)
    cap_peaks(wide, noisy[np.newaxis], 3)
    assert (wide >= narrow).all() and wide[0, 20, 24] <= denoised[20, 24]


@pytest.mark.parametrize("shape", [(7, 9), (1, 5), (2, 2), (40, 3)])
@pytest.mark.parametrize("radius", [1, 2, 3])
def test_peak_cap_square_maximum_is_scipys_maximum_filter(shape, radius):
    from scipy.ndimage import maximum_filter

    plane = np.random.default_rng(radius).normal(size=shape).astype(np.float32)
    expected = maximum_filter(plane, size=2 * radius + 1, mode="nearest")
    np.testing.assert_array_equal(square_max(plane, radius), expected)


def test_peak_cap_keeps_nans_and_infs_and_leaves_them_out_of_the_maxima():
    noisy, denoised = _sharpened_star_case()
    noisy[19, 23] = np.nan  # beside the core
    noisy[0, :] = np.inf
    denoised[5, 5] = np.nan
    denoised[6, 6] = np.inf  # a non-finite output pixel is left as it is
    noisy[40:, 40:] = np.nan  # and a finite one with no finite input around it
    out = denoised[np.newaxis].copy()
    cap_peaks(out, noisy[np.newaxis], 1)
    assert np.isnan(out[0, 5, 5]) and out[0, 6, 6] == np.inf
    assert out[0, 45, 45] == denoised[45, 45]
    finite = np.where(np.isfinite(noisy[19:22, 23:26]), noisy[19:22, 23:26], -np.inf)
    assert out[0, 20, 24] == finite.max()
    assert np.isfinite(out[0, 1:]).sum() == out[0, 1:].size - 2  # only the NaN and inf given


def test_peak_cap_through_denoise_bounds_a_random_model(random_model):
    from scipy.ndimage import maximum_filter

    img = _sky((64, 64), sigma=10.0)
    img[30, 30] += 400.0  # a hot core for the model to play with
    free = denoise(img, model=random_model, tile_size=32, change_limit=0.0, peak_cap=0)
    top = maximum_filter(img, size=3, mode="nearest")
    assert (free > top).any()  # the random model overshoots somewhere
    capped = denoise(img, model=random_model, tile_size=32, change_limit=0.0, peak_cap=1)
    assert (capped <= top).all()
    below = free <= top
    np.testing.assert_array_equal(capped[below], free[below])


def test_peak_cap_of_a_bayer_mosaic_compares_pixels_behind_the_same_filter(random_model):
    rng = np.random.default_rng(5)
    mosaic = rng.normal(100.0, 5.0, (64, 64)).astype(np.float32)
    mosaic[0::2, 0::2] += 5000.0  # bright red pixels beside faint green and blue
    out = denoise(mosaic, model=random_model, tile_size=32, bayer=True, change_limit=0.0)
    from scipy.ndimage import maximum_filter

    for y0 in (0, 1):
        for x0 in (0, 1):
            plane = mosaic[y0::2, x0::2]
            assert (out[y0::2, x0::2] <= maximum_filter(plane, size=3, mode="nearest")).all()


# ---------------------------------------------------------------- the noise's own tail


def _flat_profile(sigma: float, tail: float | None = None) -> NoiseProfile:
    return NoiseProfile(
        sky=np.zeros(1),
        floor=np.array([sigma**2]),
        slope=np.zeros(1),
        tail=None if tail is None else np.full((1, len(TAIL_SIGMAS)), tail),
    )


def test_gaussian_noise_has_no_wider_tail():
    rng = np.random.default_rng(3)
    noisy = rng.normal(100.0, 5.0, (600, 600)).astype(np.float32)
    profile = fit_noise_profile(noisy, np.full_like(noisy, 100.0))
    np.testing.assert_allclose(profile.tail[0], 1.0, atol=0.03)
    assert profile.tail_ratio(0, 3.0) == pytest.approx(1.0, abs=0.03)


def test_a_heavy_tailed_noise_has_its_own_quantile_measured():
    # Student's t with 4 degrees of freedom, scaled to unit MAD-sigma: at 3 sigmas its tail
    # holds several times the Gaussian share
    from scipy.stats import t as student

    rng = np.random.default_rng(4)
    noise = rng.standard_t(4, (800, 800))
    noise /= 1.4826 * np.median(np.abs(noise))
    profile = fit_noise_profile((100.0 + noise).astype(np.float32), np.full(noise.shape, 100.0))
    sigma = np.sqrt(profile.floor[0])
    scale = 1.0 / (1.4826 * student.ppf(0.75, 4))
    expected = student.ppf(1 - 0.0013499, 4) * scale / sigma / 3.0  # at the 3-sigma share
    assert profile.tail_ratio(0, 3.0) == pytest.approx(expected, rel=0.05)
    assert profile.tail_ratio(0, 3.0) > 1.2
    assert profile.to_dict()["tail"][0][2] == pytest.approx(profile.tail_ratio(0, 3.0), abs=1e-4)


def test_the_limit_holds_pure_noise_in_the_gaussian_share_of_pixels():
    rng = np.random.default_rng(4)
    noise = rng.standard_t(4, (600, 600)).astype(np.float32)
    noise /= np.float32(1.4826 * np.median(np.abs(noise)))
    wide = float(np.quantile(np.abs(noise), 1 - 0.0027) / 3.0)
    for tail, share in ((None, np.mean(np.abs(noise) > 3.0)), (wide, 0.0027)):
        limited = np.zeros((1, *noise.shape), np.float32)
        limit_change(limited, noise[np.newaxis], 3.0, _flat_profile(1.0, tail))
        assert np.mean(limited[0] != 0.0) == pytest.approx(share, rel=0.05)


def test_a_residual_of_outliers_does_not_open_the_limit():
    rng = np.random.default_rng(5)
    noisy = rng.normal(100.0, 1.0, (400, 400)).astype(np.float32)
    noisy[rng.random(noisy.shape) < 0.02] = 1000.0  # two per cent of wild pixels
    profile = fit_noise_profile(noisy, np.full_like(noisy, 100.0))
    assert profile.tail_ratio(0, 3.0) == 2.0
