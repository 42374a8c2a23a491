"""The flux lock: strict and noise-aware, unit by unit and through denoise()."""

from __future__ import annotations

import numpy as np
import pytest

from napari_astrodenoise.core.fluxlock import block_reduce, coarse_sigma, lock_flux
from napari_astrodenoise.core.pipeline import denoise, iter_denoise
from napari_astrodenoise.core.progress import drain


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


def test_flux_lock_keeps_the_level_and_colour_a_model_would_move(
    biased_model, sky, after_lock_off
):
    img = sky((3, 96, 96), sigma=10.0)
    opts = {"model": biased_model, "tile_size": 32, "channel_axis": 0, **after_lock_off}
    free = denoise(img, flux_lock=0.0, **opts)
    locked = denoise(img, **opts)
    shift_free = (free - img).mean(axis=(1, 2))
    shift_locked = (locked - img).mean(axis=(1, 2))
    assert np.abs(shift_free).min() > 1.0  # unlocked, each channel's level moves (sigma 10)
    assert np.abs(shift_locked).max() < 0.01 * np.abs(shift_free).min()


def test_flux_lock_keeps_the_flux_of_a_star_the_model_dims(random_model, sky, after_lock_off):
    img = sky((96, 96), sigma=5.0)
    yy, xx = np.mgrid[:96, :96]
    img += 5_000 * np.exp(-((xx - 48) ** 2 + (yy - 47) ** 2) / (2 * 1.5**2))
    aperture = (xx - 48) ** 2 + (yy - 47) ** 2 <= 30**2
    flux_in = img[aperture].sum()
    opts = {"model": random_model, "tile_size": 32, **after_lock_off}  # the lock alone
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
    np.testing.assert_allclose(block_reduce(x, 4, np.add), padded.mean(axis=(1, 3)), rtol=1e-6)
    np.testing.assert_array_equal(block_reduce(x, 4, np.maximum), padded.max(axis=(1, 3)))
    np.testing.assert_array_equal(block_reduce(x, 1, np.maximum), x)


def test_noise_aware_lock_low_pass_on_blocks_matches_the_full_resolution_gaussian():
    from scipy.ndimage import gaussian_filter

    from napari_astrodenoise.core.starmask import upsample_blocks

    x = np.random.default_rng(7).normal(size=(512, 512)).astype(np.float32)
    ref = gaussian_filter(x, 8.0)
    coarse = gaussian_filter(block_reduce(x, 4, np.add), coarse_sigma(8.0, 4))
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


def test_denoise_records_the_lock_threshold(random_model, sky):
    img = sky((64, 64))
    result = drain(iter_denoise(img, model=random_model, tile_size=32, lock_threshold=1.5))
    assert result.settings["lock_threshold"] == 1.5
    cards = result.provenance()["provenance"]
    assert cards["ADLOCKTH"][0] == 1.5
    assert "threshold 1.5 sigma" in result.provenance()["history"][0]
    strict = denoise(img, model=random_model, tile_size=32, lock_threshold=0.0)
    aware = denoise(img, model=random_model, tile_size=32)
    assert not np.array_equal(strict, aware)  # the default is the noise-aware lock
