"""denoise(): layouts, exactness, NaNs, strength re-blending, progress, seams."""

from __future__ import annotations

import numpy as np
import pytest

from napari_astrodenoise.core import pipeline
from napari_astrodenoise.core.pipeline import (
    cap_peaks,
    denoise,
    iter_denoise,
    limit_change,
    lock_flux,
    seam_map,
)
from napari_astrodenoise.core.tiling import drain
from napari_astrodenoise.simulate.noise import poisson_gaussian


def _sky(shape, *, level=1000.0, sigma=10.0, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = level + rng.normal(0, sigma, size=shape)
    return img.astype(np.float32)


#: the safeguards applied after the flux lock, off: the network (and lock) alone
_AFTER_LOCK_OFF = {"change_limit": 0.0, "peak_cap": 0, "star_refit": 0.0}


@pytest.mark.parametrize(
    ("shape", "channel_axis"),
    [((45, 70), None), ((3, 40, 52), 0), ((40, 52, 3), -1), ((5, 33, 33), 0), ((1, 30, 30), 0)],
    ids=["mono", "rgb-first", "rgb-last", "stack-5", "single-plane"],
)
@pytest.mark.parametrize("ensemble", [1, 8])
def test_identity_model_returns_the_input_bit_for_bit(
    identity_model, shape, channel_axis, ensemble
):
    img = _sky(shape)
    out = denoise(
        img,
        model=identity_model,
        tile_size=32,
        overlap=0.25,
        channel_axis=channel_axis,
        ensemble=ensemble,
    )
    assert out.shape == img.shape
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize(
    ("level", "sigma"),
    [(40_000.0, 50.0), (0.0, 1e-4), (-3.0, 0.2)],
    ids=["counts", "tiny", "negative"],
)
def test_data_range_is_never_clipped_or_rescaled(random_model, level, sigma):
    img = _sky((48, 48), level=level, sigma=sigma)
    out = denoise(img, model=random_model, tile_size=32)
    # the output lives in the input's units: its level follows the input's, not [0, 1]
    assert abs(np.median(out) - level) < 5 * sigma
    assert np.abs(out - img).max() < 50 * sigma


def test_nan_and_inf_come_back_where_they_were(random_model):
    img = _sky((3, 50, 60))
    img[0, 10:14, 20:30] = np.nan
    img[1, 30, 5] = np.inf
    img[2, 0, 0] = -np.inf
    out = denoise(img, model=random_model, tile_size=32, channel_axis=0)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(img))
    assert out[1, 30, 5] == np.inf and out[2, 0, 0] == -np.inf
    assert np.isfinite(out[np.isfinite(img)]).all()


def test_strength_and_protection_reblend_without_running_the_network(random_model, monkeypatch):
    img = _sky((3, 40, 40))
    result = drain(iter_denoise(img, model=random_model, tile_size=32, channel_axis=0))
    calls = []
    monkeypatch.setattr(pipeline._TilePredictor, "__call__", lambda *a: calls.append(a))
    full = result.output()
    np.testing.assert_array_equal(result.output(strength=0.0), img)
    half = result.output(strength=0.5)
    np.testing.assert_allclose(half, img + 0.5 * (full - img), rtol=1e-6, atol=1e-3)
    # under a full star mask, full protection keeps the input
    result.star_mask = np.ones((40, 40), np.float32)
    np.testing.assert_allclose(result.output(star_protection=1.0), img, rtol=0, atol=1e-6)
    np.testing.assert_allclose(result.output(star_protection=0.5), half, rtol=1e-6, atol=1e-3)
    assert calls == []
    assert result.provenance(strength=0.5)["provenance"]["ADSTRNTH"][0] == 0.5


def test_star_protection_keeps_star_cores_closer_to_the_input(random_model):
    img = _sky((64, 64), sigma=5.0)
    yy, xx = np.mgrid[:64, :64]
    img += 20_000 * np.exp(-((xx - 32) ** 2 + (yy - 30) ** 2) / (2 * 1.5**2))
    result = drain(iter_denoise(img, model=random_model, tile_size=32))
    plain = result.output(star_protection=0.0)
    kept = result.output(star_protection=1.0)
    core = (slice(28, 33), slice(30, 35))
    assert result.star_mask[30, 32] > 0.9
    assert np.abs(kept[core] - img[core]).max() < 0.2 * np.abs(plain[core] - img[core]).max()


def test_progress_counts_up_to_the_total_and_the_run_can_stop_early(random_model):
    img = _sky((3, 100, 100))
    gen = iter_denoise(img, model=random_model, tile_size=32, batch_size=2, channel_axis=0)
    steps = [next(gen) for _ in range(2)]
    gen.close()  # a Cancel between batches
    assert steps[0][0] < steps[1][0] <= steps[1][1]
    seen = list(iter_denoise(img, model=random_model, tile_size=32, batch_size=2, channel_axis=0))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[-1][0] == seen[-1][1]


def test_provenance_records_model_hash_and_settings(random_model):
    result = drain(iter_denoise(_sky((40, 40)), model=random_model, tile_size=32, overlap=0.5))
    meta = result.provenance()
    cards = meta["provenance"]
    assert cards["ADMSHA"][0] == random_model.sha256
    assert cards["ADOVERLP"][0] == 0.5 and cards["ADTILE"][0] == 32
    assert cards["ADFLUXLK"][0] == pipeline.FLUX_LOCK
    assert cards["ADENSMBL"][0] == 1
    assert cards["ADCHGLIM"][0] == pipeline.CHANGE_LIMIT
    assert cards["ADPKCAP"][0] == pipeline.PEAK_CAP
    assert set(result.settings["noise_profile"]) == {"sky", "floor", "slope"}
    assert all(len(key) <= 8 for key in cards)
    assert random_model.sha256[:16] in meta["history"][0]


def test_gaussian_blending_hides_seams_that_naive_tiles_show(random_model):
    img = _sky((3, 160, 160), sigma=10.0)
    smooth = seam_map(img, model=random_model, tile_size=64, overlap=0.25, channel_axis=0)
    naive = seam_map(img, model=random_model, tile_size=64, blend="none", channel_axis=0)
    assert smooth.diff.shape == (3, 160, 160)  # the caller's layout
    mono = seam_map(img[0], model=random_model, tile_size=64)
    assert mono.diff.shape == (160, 160)
    assert smooth.seam_sigma < 0.5 * naive.seam_sigma


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strength": 1.5}, "strength must be between 0 and 1"),
        ({"star_protection": -0.1}, "star_protection must be between 0 and 1"),
        ({"overlap": 0.9}, "overlap must be between 0 and 0.75"),
        ({"blend": "box"}, "blend must be one of"),
        ({"channel_axis": None, "image": np.zeros((3, 8, 8))}, "mono image must be 2-D"),
        ({"star_mask": np.zeros((3, 3))}, "star_mask must have shape"),
        ({"flux_lock": -1.0}, "flux_lock must be a number of pixels >= 0"),
        ({"ensemble": 3}, "ensemble must be one of"),
        ({"flux_lock": float("nan")}, "flux_lock must be a number of pixels >= 0"),
        ({"change_limit": -3.0}, "change_limit must be a number of noise sigmas >= 0"),
        ({"change_limit": float("inf")}, "change_limit must be a number of noise sigmas"),
        ({"peak_cap": -1}, "peak_cap must be a whole number of pixels >= 0"),
        ({"peak_cap": 1.5}, "peak_cap must be a whole number of pixels"),
        ({"peak_cap": True}, "peak_cap must be a whole number of pixels"),
    ],
)
def test_bad_arguments_get_a_clear_message(random_model, kwargs, message):
    image = kwargs.pop("image", np.zeros((16, 16), np.float32))
    with pytest.raises(ValueError, match=message):
        denoise(image, model=random_model, tile_size=32, **kwargs)


def test_mono_goes_through_the_colour_model_as_grey_and_comes_back_averaged(random_model):
    grey = _sky((32, 32), seed=4)  # one tile, so no blending between the two runs
    # the network path alone: the change limit, star refit and peak cap work per channel
    opts = {"model": random_model, "tile_size": 32, **_AFTER_LOCK_OFF}
    out_mono = denoise(grey, **opts)
    out_rgb = denoise(np.stack([grey] * 3), channel_axis=0, **opts)
    # mono = inverse(mean of the three network channels); the stretch is monotonic, so the
    # mono answer lies between the channels of the same grey frame run as colour
    eps = 1e-3
    assert (out_mono >= out_rgb.min(axis=0) - eps).all()
    assert (out_mono <= out_rgb.max(axis=0) + eps).all()
    assert np.abs(out_mono - grey).max() > 0.1  # and the random model did change it


@pytest.mark.parametrize("shape", [(40, 52), (41, 53), (2, 2)], ids=["even", "odd", "2x2"])
def test_bayer_mosaic_round_trips_bit_for_bit_through_its_sub_planes(identity_model, shape):
    img = _sky(shape)
    out = denoise(img, model=identity_model, tile_size=32, bayer=True)
    assert out.shape == img.shape
    np.testing.assert_array_equal(out, img)


def test_bayer_mosaic_never_mixes_pixels_behind_different_filters(random_model):
    rng = np.random.default_rng(7)
    mosaic = rng.normal(5000, 20, size=(64, 64)).astype(np.float32)
    mosaic[0::2, 0::2] = rng.normal(1000, 20, size=(32, 32))  # the red filter sees far less
    out = denoise(mosaic, model=random_model, tile_size=32, bayer=True)
    assert abs(np.median(out[0::2, 0::2]) - 1000) < 20
    assert abs(np.median(out[1::2, 1::2]) - 5000) < 20
    with pytest.raises(ValueError, match="bayer=True needs a 2-D raw mosaic"):
        denoise(np.zeros((3, 8, 8)), model=random_model, channel_axis=0, bayer=True)


# ------------------------------------------------------------------------------ flux lock


@pytest.fixture(scope="module")
def biased_model(tmp_path_factory):
    """The identity network plus a constant shift per channel: it moves level and colour."""
    import torch

    from napari_astrodenoise.core.model import ResUNet, ResUNetConfig
    from napari_astrodenoise.core.weights import load_model, save_model

    module = ResUNet(ResUNetConfig(width=8, depth=2))
    with torch.no_grad():
        module.tail.bias[:3] = torch.tensor([-0.5, 0.2, 0.4])
    path = tmp_path_factory.mktemp("models") / "biased-test.safetensors"
    save_model(module, path, name="biased-test", softening=3.0)
    return load_model(path)


def test_lock_flux_takes_out_large_scales_and_keeps_pixel_scale_work():
    rng = np.random.default_rng(1)
    _, xx = np.mgrid[:128, :128]
    wave = np.sin(2 * np.pi * xx / 128)
    small = rng.normal(size=(128, 128))
    large = (5.0 + 3.0 * wave)[np.newaxis].astype(np.float32)
    locked = lock_flux(large.copy(), 8.0)[0]
    assert abs(locked.mean()) < 0.01  # the level shift is gone
    assert abs(2 * (locked * wave).mean()) < 0.1 * 3.0  # and most of the 128 px wave
    kept = lock_flux(small[np.newaxis].astype(np.float32), 8.0)[0]
    assert np.corrcoef(kept.ravel(), small.ravel())[0, 1] > 0.99  # pixel-scale noise stays
    np.testing.assert_array_equal(lock_flux(large.copy(), 0.0), large)  # 0: off


def test_flux_lock_keeps_the_level_and_colour_a_model_would_move(biased_model):
    img = _sky((3, 96, 96), sigma=10.0)
    opts = {"model": biased_model, "tile_size": 32, "channel_axis": 0, **_AFTER_LOCK_OFF}
    free = denoise(img, flux_lock=0.0, **opts)
    locked = denoise(img, **opts)
    shift_free = (free - img).mean(axis=(1, 2))
    shift_locked = (locked - img).mean(axis=(1, 2))
    assert np.abs(shift_free).min() > 1.0  # unlocked, each channel's level moves (sigma 10)
    assert np.abs(shift_locked).max() < 0.01 * np.abs(shift_free).min()


def test_flux_lock_keeps_the_flux_of_a_star_the_model_dims(random_model):
    img = _sky((96, 96), sigma=5.0)
    yy, xx = np.mgrid[:96, :96]
    img += 5_000 * np.exp(-((xx - 48) ** 2 + (yy - 47) ** 2) / (2 * 1.5**2))
    aperture = (xx - 48) ** 2 + (yy - 47) ** 2 <= 30**2
    flux_in = img[aperture].sum()
    opts = {"model": random_model, "tile_size": 32, **_AFTER_LOCK_OFF}  # the lock alone
    free = denoise(img, flux_lock=0.0, **opts)
    locked = denoise(img, flux_lock=4.0, **opts)
    err_free = abs(free[aperture].sum() - flux_in)
    err_locked = abs(locked[aperture].sum() - flux_in)
    assert err_locked < 0.1 * err_free


def _removed_noise(shape=(1, 256, 256), *, level=1000.0, sigma=10.0, seed=5):
    """An empty sky and the change of a perfect denoiser: minus the noise."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, sigma, size=shape).astype(np.float32)
    clean = np.full(shape, level, dtype=np.float32)
    return clean, clean + noise, -noise


def _inner_rms(image: np.ndarray) -> float:
    return float(image[:, 48:-48, 48:-48].std())


def test_noise_aware_lock_keeps_the_sky_noise_removed_that_the_strict_lock_returns():
    clean, noisy, change = _removed_noise()
    strict = noisy + lock_flux(change.copy(), 8.0)
    aware = noisy + lock_flux(change.copy(), 8.0, threshold=1.0, original=noisy)
    # the strict lock gives the noise back beyond 8 px: 1 / (2 sqrt(pi) 8) of its sigma
    assert _inner_rms(strict - clean) == pytest.approx(10.0 / (2 * np.sqrt(np.pi) * 8), rel=0.2)
    # the noise-aware one under half of that (a quarter of the power)
    assert _inner_rms(aware - clean) < 0.5 * _inner_rms(strict - clean)
    # beyond 4 x the scale both are strict: the frame's level is the input's
    assert float((aware - noisy).mean()) == pytest.approx(0.0, abs=0.05)
    # pixel-scale work passes: the output is far closer to the truth than the input
    assert float(np.abs(aware - clean).mean()) < 0.1 * float(np.abs(noisy - clean).mean())


def test_noise_aware_lock_still_corrects_a_large_error_in_the_band():
    _, yy, xx = np.mgrid[:1, :256, :256]
    clean, noisy, change = _removed_noise()
    # the model also dims a 16 px wide patch of faint nebula it should have kept: 2 sigma
    # deep, far above the band's noise (10 / 28 ~ 0.36), under the 3 sigma of "signal"
    patch = -20.0 * np.exp(-((xx - 128) ** 2 + (yy - 128) ** 2) / (2 * 16.0**2))
    change = change + patch.astype(np.float32)
    aware = noisy + lock_flux(change.copy(), 8.0, threshold=1.0, original=noisy)
    strict = noisy + lock_flux(change.copy(), 8.0)
    centre = (slice(None), slice(112, 144), slice(112, 144))
    dip_free = float(-(noisy + change - clean)[centre].mean())
    dip_aware = float(-(aware - clean)[centre].mean())
    dip_strict = float(-(strict - clean)[centre].mean())
    assert dip_free > 14.0
    # the strict lock takes out the patch's scales beyond 8 px (most of it); the noise-aware
    # one does as much, give or take the band's noise
    assert abs(dip_strict) < 0.2 * dip_free
    assert abs(dip_aware - dip_strict) < 10.0 / (2 * np.sqrt(np.pi) * 8)


def test_noise_aware_lock_is_strict_around_stars():
    _, yy, xx = np.mgrid[:1, :256, :256]
    clean, noisy, change = _removed_noise(seed=6)
    star = (2_000.0 * np.exp(-((xx - 100) ** 2 + (yy - 140) ** 2) / (2 * 1.5**2))).astype(
        np.float32
    )
    clean, noisy = clean + star, noisy + star
    change = change - 0.05 * star  # the model dims the star by 5 %
    aperture = (xx - 100) ** 2 + (yy - 140) ** 2 <= 24**2
    flux_in = float(noisy[aperture].sum())  # what the lock keeps: the input's flux
    strict = noisy + lock_flux(change.copy(), 8.0)
    aware = noisy + lock_flux(change.copy(), 8.0, threshold=1.0, original=noisy)
    star_flux = float(star.sum())
    err_free = float((noisy + change)[aperture].sum()) - flux_in
    err_strict = float(strict[aperture].sum()) - flux_in
    err_aware = float(aware[aperture].sum()) - flux_in
    assert abs(err_free) > 0.02 * star_flux  # 5 % of the star, give or take its noise
    assert abs(err_strict) < 0.01 * star_flux
    assert abs(err_aware - err_strict) < 0.002 * star_flux


def test_block_reductions_are_means_and_maxima_of_edge_padded_squares():
    x = np.random.default_rng(8).normal(size=(10, 13)).astype(np.float32)
    padded = np.pad(x, ((0, 2), (0, 3)), mode="edge").reshape(3, 4, 4, 4)
    np.testing.assert_allclose(
        pipeline._block_reduce(x, 4, np.add), padded.mean(axis=(1, 3)), rtol=1e-6
    )
    np.testing.assert_array_equal(
        pipeline._block_reduce(x, 4, np.maximum), padded.max(axis=(1, 3))
    )
    np.testing.assert_array_equal(pipeline._block_reduce(x, 1, np.maximum), x)


def test_noise_aware_lock_low_pass_on_blocks_matches_the_full_resolution_gaussian():
    from scipy.ndimage import gaussian_filter

    from napari_astrodenoise.core.starmask import upsample_blocks

    x = np.random.default_rng(7).normal(size=(512, 512)).astype(np.float32)
    ref = gaussian_filter(x, 8.0)
    coarse = gaussian_filter(pipeline._block_reduce(x, 4, np.add), pipeline._coarse_sigma(8.0, 4))
    got = upsample_blocks(coarse, 4, x.shape)
    inner = (slice(64, -64), slice(64, -64))
    assert np.std(got[inner]) == pytest.approx(np.std(ref[inner]), rel=0.03)  # same power
    assert np.std((got - ref)[inner]) < 0.2 * np.std(ref[inner])
    # a 24 px box's sum moves by under a tenth of the box's own noise (sqrt(576) = 24)
    box = (slice(200, 224), slice(300, 324))
    assert float(got[box].sum()) == pytest.approx(float(ref[box].sum()), abs=0.1 * 24)


def test_noise_aware_lock_leaves_no_change_alone_and_checks_its_arguments():
    _, noisy, _ = _removed_noise(shape=(3, 70, 90))
    zero = np.zeros_like(noisy)
    out = lock_flux(zero.copy(), 8.0, threshold=1.0, original=noisy)
    assert np.array_equal(out, zero)
    noisy[0, 5, 5] = np.nan  # a non-finite input pixel is read as sky
    out = lock_flux(np.ones_like(noisy), 4.0, threshold=1.0, original=noisy)
    assert np.isfinite(out).all()
    with pytest.raises(ValueError, match="original"):
        lock_flux(zero.copy(), 8.0, threshold=1.0)
    with pytest.raises(ValueError, match="lock_threshold"):
        lock_flux(zero.copy(), 8.0, threshold=-1.0, original=noisy)
    with pytest.raises(ValueError, match="lock_threshold"):
        denoise(noisy[0], lock_threshold=float("nan"))


def test_denoise_records_the_lock_threshold(random_model):
    img = _sky((64, 64))
    result = drain(iter_denoise(img, model=random_model, tile_size=32, lock_threshold=1.5))
    assert result.settings["lock_threshold"] == 1.5
    cards = result.provenance()["provenance"]
    assert cards["ADLOCKTH"][0] == 1.5
    assert "threshold 1.5 sigma" in result.provenance()["history"][0]
    strict = denoise(img, model=random_model, tile_size=32, lock_threshold=0.0)
    aware = denoise(img, model=random_model, tile_size=32)
    assert not np.array_equal(strict, aware)  # the default is the noise-aware lock


# ------------------------------------------------------------------------------ change limit


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
    img = _sky((64, 64), sigma=10.0)
    free = denoise(img, model=random_model, tile_size=32, change_limit=0.0, peak_cap=0)
    limited = denoise(img, model=random_model, tile_size=32, change_limit=1.0)
    assert np.abs(free - img).max() > 3 * np.abs(limited - img).max()
    assert np.abs(limited - img).max() < 2.0 * 10.0  # ~1 sigma, with the fitted sigma


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
    np.testing.assert_array_equal(pipeline._square_max(plane, radius), expected)


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


# ------------------------------------------------------------------------------ self-ensemble

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
        return pipeline._TilePredictor(random_model, stretch, 3, 4, k)(np.ascontiguousarray(x))

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


# ------------------------------------------------------------------ noise-channel models


def _noise_channel_model(tmp_path_factory, name: str, *, identity: bool):
    import torch

    from napari_astrodenoise.core.model import ResUNet, ResUNetConfig
    from napari_astrodenoise.core.weights import load_model, save_model

    torch.manual_seed(1)
    module = ResUNet(ResUNetConfig(width=8, depth=2, noise_channel=True))
    if not identity:
        torch.nn.init.normal_(module.tail.weight, std=0.05)
    path = tmp_path_factory.mktemp("models") / f"{name}.safetensors"
    save_model(module, path, name=name, softening=3.0)
    return load_model(path)


@pytest.fixture(scope="module")
def noise_models(tmp_path_factory):
    """(identity, random) small ResUNets that take the noise map as a 4th input channel."""
    return (
        _noise_channel_model(tmp_path_factory, "noise-identity-test", identity=True),
        _noise_channel_model(tmp_path_factory, "noise-random-test", identity=False),
    )


@pytest.mark.parametrize(("shape", "channel_axis"), [((45, 70), None), ((3, 40, 52), 0)])
def test_a_noise_channel_identity_model_returns_the_input_bit_for_bit(
    noise_models, shape, channel_axis
):
    img = _sky(shape)
    img.flat[7] = np.nan
    out = denoise(img, model=noise_models[0], tile_size=32, channel_axis=channel_axis)
    np.testing.assert_array_equal(out, img)


def test_a_noise_channel_model_is_given_the_frames_noise_map(noise_models, monkeypatch):
    img = _sky((3, 64, 64), sigma=10.0)
    opts = {"model": noise_models[1], "tile_size": 32, "channel_axis": 0}
    result = drain(iter_denoise(img, **opts))
    assert set(result.settings["noise_prefit"]) == {"sky", "floor", "slope"}
    base = result.output()
    calls = []
    real_map = pipeline.noise_map

    def doubled(*args, **kwargs):
        calls.append(args[0].shape)
        return 2.0 * real_map(*args, **kwargs)

    monkeypatch.setattr(pipeline, "noise_map", doubled)
    changed = denoise(img, **opts)
    assert calls == [(3, 64, 64)]  # once, on the whole frame
    assert np.abs(changed - base).max() > 1e-3  # the network sees the map
    monkeypatch.undo()
    plain = drain(iter_denoise(img, model="astrodenoise-quick", tile_size=32, channel_axis=0))
    assert "noise_prefit" not in plain.settings  # only models with the channel get one


def test_a_noise_channel_model_tiles_without_seams(noise_models):
    img = _sky((3, 160, 160), sigma=10.0)
    model = noise_models[1]
    smooth = seam_map(img, model=model, tile_size=64, overlap=0.25, channel_axis=0)
    naive = seam_map(img, model=model, tile_size=64, blend="none", channel_axis=0)
    assert smooth.diff.shape == (3, 160, 160)
    assert smooth.noise_sigma == pytest.approx(10.0, rel=0.1)  # the image's, not the map's
    assert smooth.seam_sigma < 0.5 * naive.seam_sigma


def _refit_case(scale: float, *, flux=20000.0, seed=3):
    """A 12-sigma-peak star on a noisy sky, and a noise-free prediction at ``scale`` x it."""
    yy, xx = np.mgrid[:96, :96]
    star = flux / (2 * np.pi * 1.5**2) * np.exp(-((xx - 47.3) ** 2 + (yy - 48.6) ** 2) / 4.5)
    sky, sigma = 100.0, 10.0
    rng = np.random.default_rng(seed)
    noisy = (sky + star + rng.normal(0.0, sigma, star.shape)).astype(np.float32)[None]
    prediction = (sky + scale * star).astype(np.float32)[None]
    profile = pipeline.NoiseProfile(np.array([sky]), np.array([sigma**2]), np.array([0.0]))
    return star, noisy, prediction, profile


def _aperture(image: np.ndarray, sky: float = 100.0) -> float:
    yy, xx = np.mgrid[: image.shape[-2], : image.shape[-1]]
    inside = np.hypot(xx - 47.3, yy - 48.6) <= 4.0
    return float((image[..., inside] - sky).sum())


def test_star_refit_gives_a_dimmed_star_its_flux_back():
    star, noisy, prediction, profile = _refit_case(0.9)
    truth = _aperture(star, sky=0.0)
    assert _aperture(prediction[0]) / truth == pytest.approx(0.9, abs=1e-3)
    pipeline.refit_stars(prediction, noisy, 0.04, profile)
    assert _aperture(prediction[0]) / truth == pytest.approx(1.0, abs=0.02)


def test_star_refit_dims_a_star_the_input_does_not_have():
    star, noisy, prediction, profile = _refit_case(1.0)
    invented = prediction + 0.5 * star[None].astype(np.float32)  # half as bright again
    pipeline.refit_stars(invented, noisy, 0.04, profile)
    # nine tenths of the excess go (the top-hat template is the core, not the whole star)
    assert _aperture(invented[0]) / _aperture(star, sky=0.0) < 1.06


def test_star_refit_makes_nothing_where_the_prediction_has_no_source():
    _star, noisy, _prediction, profile = _refit_case(1.0)
    flat = np.full_like(noisy, 100.0)  # the star erased: the residual holds all of it
    out = flat.copy()
    pipeline.refit_stars(out, noisy, 0.04, profile)
    np.testing.assert_array_equal(out, flat)


def test_star_refit_never_lifts_a_marginal_source():
    # a core a few sigmas above the sky, dimmed: even a wide prior gives nothing back
    _star, noisy, prediction, profile = _refit_case(0.8, flux=1000.0)
    before = _aperture(prediction[0])
    pipeline.refit_stars(prediction, noisy, 1.0, profile)
    assert _aperture(prediction[0]) <= before * 1.001


def test_star_refit_prior_holds_the_correction_to_what_the_data_support():
    changes = []
    for prior in (0.002, 0.04):
        _star, noisy, prediction, profile = _refit_case(0.7)
        before = _aperture(prediction[0])
        pipeline.refit_stars(prediction, noisy, prior, profile)
        changes.append(_aperture(prediction[0]) / before - 1.0)
    assert 0 < changes[0] < 0.5 * changes[1]


def test_star_refit_zero_leaves_the_prediction_alone_and_keeps_nans():
    _star, noisy, prediction, profile = _refit_case(0.9)
    before = prediction.copy()
    pipeline.refit_stars(prediction, noisy, 0.0, profile)
    np.testing.assert_array_equal(prediction, before)
    noisy[0, 10, 10] = np.nan
    prediction[0, 11, 11] = np.nan
    pipeline.refit_stars(prediction, noisy, 0.04, profile)
    assert np.isnan(prediction[0, 11, 11])
    assert np.isfinite(np.delete(prediction, 11 * 96 + 11)).all()


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_star_refit_rejects_a_bad_prior(bad):
    with pytest.raises(ValueError, match="star_refit"):
        denoise(_sky((32, 32)), star_refit=bad)


def test_denoise_records_the_star_refit_and_turns_it_off(random_model):
    img = _sky((64, 64), sigma=10.0)
    img[20:23, 30:33] += 400.0  # a compact source for the refit to act on
    result = drain(iter_denoise(img, model=random_model, tile_size=32, star_refit=0.1))
    assert result.settings["star_refit"] == 0.1
    cards = pipeline.provenance(result.settings)["provenance"]
    assert cards["ADREFIT"][0] == 0.1
    off = denoise(img, model=random_model, tile_size=32, star_refit=0.0)
    on = result.output()
    assert not np.array_equal(off, on)
    # both still within the change limit of the input
    assert np.abs(on - img).max() < 3.0 * 1.5 * np.abs(off - img).max() + 1e-3


def test_star_refit_in_strips_is_the_whole_planes_refit():
    # strips of 256 rows with their halo give the whole plane's result, bit for bit
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:600, :90]
    clean = np.full((2, 600, 90), 100.0)
    stars = zip(
        rng.uniform(5, 85, 60), rng.uniform(5, 595, 60), rng.uniform(1e3, 5e4, 60), strict=True
    )
    for x, y, f in stars:
        clean += f / (2 * np.pi * 2.0) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 4.0)
    noisy = (clean + rng.normal(0.0, 10.0, clean.shape)).astype(np.float32)
    prediction = (100.0 + 0.9 * (clean - 100.0)).astype(np.float32)
    profile = pipeline.NoiseProfile(np.full(2, 100.0), np.full(2, 100.0), np.full(2, 0.01))
    whole = prediction.copy()
    for c in range(2):
        least = np.float32(1e-3 * profile.sigma(c, prediction[c]).max())
        whole[c] += pipeline._refit_correction(
            prediction[c], noisy[c], c, 0.04, profile, 2.0, least
        )
    pipeline.refit_stars(prediction, noisy, 0.04, profile)
    assert not np.array_equal(whole, 100.0 + 0.9 * (clean - 100.0))  # it did something
    np.testing.assert_array_equal(prediction, whole)


def test_star_refit_of_a_noise_free_profile_stays_finite():
    _star, noisy, prediction, _profile = _refit_case(0.9)
    silent = pipeline.NoiseProfile(np.array([100.0]), np.array([0.0]), np.array([0.0]))
    out = prediction.copy()
    pipeline.refit_stars(out, noisy, 0.04, silent)  # no noise to weigh by: left alone
    np.testing.assert_array_equal(out, prediction)
    # no noise at the sky, photon noise above it: finite, and the star still refitted
    shot = pipeline.NoiseProfile(np.array([100.0]), np.array([0.0]), np.array([1.0]))
    pipeline.refit_stars(out, noisy, 0.04, shot)
    assert np.isfinite(out).all()
    assert _aperture(out[0]) > _aperture(prediction[0])
