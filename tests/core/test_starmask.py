"""Tests of the soft star mask and star detection."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage

from napari_astrodenoise.core.starmask import StarDetections, detect_stars, star_mask
from napari_astrodenoise.simulate.noise import hot_cold_pixels, poisson_gaussian
from napari_astrodenoise.simulate.sky import SkyConfig, SkyScene, simulate_scene

GAIN, READ_NOISE = 1.0, 5.0


def star_field(
    seed: int = 0, size: int = 256, channels: int = 1, density: float = 2e-3
) -> tuple[SkyScene, np.ndarray]:
    """A noisy star field without saturated stars, and its clean scene."""
    config = SkyConfig.preset(
        "stars_only",
        flux_range=(300.0, 3e5),
        star_density_range=(density, density),
        fwhm_range=(2.0, 4.0),
    )
    scene = simulate_scene((size, size), channels=channels, seed=seed, config=config)
    noisy = poisson_gaussian(scene.image, gain=GAIN, read_noise=READ_NOISE, seed=seed)
    return scene, noisy


def third_brightest(scene: SkyScene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per star: row, column, and the noiseless 3rd-brightest pixel of its 3x3 core (ADU).

    That is what the detector needs: 3 pixels of a 3x3 window above threshold. Stars off the
    frame's inner border get -inf.
    """
    lum = scene.image.mean(axis=0) - scene.background.mean()
    _, h, w = scene.image.shape
    iy = np.rint(scene.stars["y"]).astype(int)
    ix = np.rint(scene.stars["x"]).astype(int)
    inner = (iy >= 1) & (iy <= h - 2) & (ix >= 1) & (ix <= w - 2)
    amplitude = np.full(iy.size, -np.inf)
    for i in np.flatnonzero(inner):
        amplitude[i] = np.sort(lum[iy[i] - 1 : iy[i] + 2, ix[i] - 1 : ix[i] + 2].ravel())[-3]
    return np.clip(iy, 0, h - 1), np.clip(ix, 0, w - 1), amplitude


def third_brightest_snr(scene: SkyScene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`third_brightest` in sigma of the luminance noise on the scene's sky."""
    iy, ix, amplitude = third_brightest(scene)
    sigma = np.sqrt(scene.background.mean() / GAIN + (READ_NOISE / GAIN) ** 2)
    return iy, ix, amplitude / (sigma / np.sqrt(scene.image.shape[0]))


def assert_bright_stars_covered(scene: SkyScene, mask: np.ndarray, *, at_least: int) -> None:
    """At least ``at_least`` stars stand 7 sigma out (`third_brightest_snr`); all are masked."""
    iy, ix, snr = third_brightest_snr(scene)
    bright = snr > 7.0
    assert bright.sum() >= at_least
    assert np.all(mask[iy[bright], ix[bright]] > 0.5)


def smooth_nebula(size: int = 256, seed: int = 0) -> np.ndarray:
    """Sky of 1000 plus broad emission blobs up to five times brighter; no stars."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    img = np.full((size, size), 1000.0)
    for _ in range(6):
        cx, cy = rng.uniform(0, size, 2)
        width, amp = rng.uniform(15, 50), rng.uniform(500, 5000)
        img += amp * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * width**2))
    return img[None].astype(np.float32)


# ------------------------------------------------------------------------------------------


def test_mask_is_float32_in_unit_range_with_the_image_shape():
    _, noisy = star_field(1, size=128)
    mask = star_mask(noisy)
    assert mask.shape == (128, 128) and mask.dtype == np.float32
    assert mask.min() >= 0.0 and mask.max() <= 1.0
    assert mask.max() == 1.0


def test_stars_well_above_threshold_are_covered():
    scene, noisy = star_field(2)
    assert_bright_stars_covered(scene, star_mask(noisy, threshold=5.0), at_least=20)


def test_sky_far_from_stars_is_zero():
    scene, noisy = star_field(3, density=5e-4)
    mask = star_mask(noisy)
    yy, xx = np.mgrid[:256, :256]
    far = np.ones((256, 256), bool)
    for star in scene.stars:  # beyond the wings: brighter stars reach further
        reach = 3 * star["fwhm"] + 6 * np.log10(star["flux"][0])
        far &= np.hypot(xx - star["x"], yy - star["y"]) > reach
    assert far.mean() > 0.2
    assert np.mean(mask[far] == 0.0) > 0.995


def test_detection_count_matches_the_injected_bright_stars():
    scene, noisy = star_field(4)
    found = detect_stars(noisy)
    assert isinstance(found, StarDetections) and len(found) == found.count
    _, _, snr = third_brightest_snr(scene)
    strong, detectable = np.sum(snr > 8.0), np.sum(snr > 3.0)
    assert strong >= 20
    # blended pairs can merge, faint ones can fluctuate in; no false detections on the sky
    assert 0.85 * strong <= found.count <= detectable


def test_centroids_land_on_the_injected_stars():
    scene, noisy = star_field(5)
    found = detect_stars(noisy)
    _, _, snr = third_brightest_snr(scene)
    for i in np.flatnonzero(snr > 20):
        d = np.hypot(found.x - scene.stars["x"][i], found.y - scene.stars["y"][i])
        others = np.hypot(
            scene.stars["x"] - scene.stars["x"][i], scene.stars["y"] - scene.stars["y"][i]
        )
        if np.sort(others)[1] > 10:  # isolated: its own detection, not a blend
            assert d.min() < 0.5


def test_smooth_bright_nebula_gives_an_almost_empty_mask():
    clean = smooth_nebula()
    for gain in (1.0, 100.0):  # noisy, and so deep that every curve is significant
        noisy = poisson_gaussian(clean, gain=gain, read_noise=5.0, seed=6)
        assert detect_stars(noisy).count == 0
        assert np.mean(star_mask(noisy) > 0.5) < 0.001


def test_galaxy_disk_is_not_a_star():
    yy, xx = np.mgrid[:256, :256]
    radius = np.hypot(xx - 128, (yy - 128) / 0.5)
    disk = 1000.0 + 3000.0 * np.exp(-radius / 25.0)  # exponential disk, 25 px scale length
    noisy = poisson_gaussian(disk[None], gain=10.0, read_noise=5.0, seed=7)
    mask = star_mask(noisy)
    # at most the cusp of the nucleus; the disk itself stays unmasked
    assert np.mean(mask > 0.5) < 0.005
    assert mask[radius > 30].max() == 0.0


def test_stars_on_a_bright_nebula_are_found_and_the_nebula_is_not():
    nebula = smooth_nebula(seed=8)
    scene, _ = star_field(8)
    with_stars = nebula + (scene.image - scene.background[:, None, None])
    noisy = poisson_gaussian(with_stars, gain=GAIN, read_noise=READ_NOISE, seed=8)
    mask = star_mask(noisy)
    iy, ix, amplitude = third_brightest(scene)
    # a star must stand 5 sigma of the local (nebula) noise and 0.3 x the nebula above sky;
    # ask twice that for a margin
    local = nebula[0, iy, ix]
    sigma = np.sqrt(local / GAIN + READ_NOISE**2)
    stands_out = (amplitude > 10.0 * sigma) & (amplitude > 0.6 * (local - 1000.0))
    assert stands_out.sum() >= 8
    assert np.all(mask[iy[stands_out], ix[stands_out]] > 0.5)
    assert np.mean(mask > 0.5) < 0.1


def test_hot_pixels_alone_are_not_stars():
    sky = np.full((1, 200, 200), 1000.0, np.float32)
    noisy = poisson_gaussian(sky, gain=GAIN, read_noise=READ_NOISE, seed=9)
    defective = hot_cold_pixels(noisy, fraction=2e-3, hot_level=60000.0, seed=9)
    for y, x in ((50, 50), (120, 80)):  # a horizontal and a vertical hot pair, kept apart
        defective[0, y - 3 : y + 4, x - 3 : x + 4] = noisy[0, y - 3 : y + 4, x - 3 : x + 4]
    defective[0, 50, 50:52] = 60000.0
    defective[0, 120:122, 80] = 60000.0
    assert detect_stars(defective).count == 0
    assert star_mask(defective).max() == 0.0
    # the same check without the guard: hot pixels would be found
    assert detect_stars(defective, min_pixels=1).count > 50


def saturated_star(amplitude: float, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """A bright Moffat star (beta 2.5) on a 1000 ADU sky, clipped at 60000 after the noise."""
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(xx - size / 2 - 0.3, yy - size / 2 + 0.2)
    star = 1000.0 + amplitude * (1.0 + (r / 6.0) ** 2) ** -2.5
    noisy = poisson_gaussian(star[None], gain=GAIN, read_noise=READ_NOISE, seed=10)
    return np.minimum(noisy, 60000.0).astype(np.float32), r


@pytest.mark.parametrize("amplitude", [5e5, 5e6, 5e7, 5e9])
def test_saturated_stars_are_one_detection_covered_whole(amplitude):
    image, r = saturated_star(amplitude)
    core = r[image[0] >= 60000.0].max()  # 7 to 58 px: larger than background_size
    found = detect_stars(image)
    assert found.count == 1
    assert found.x[0] == pytest.approx(128.3, abs=0.3)
    assert found.y[0] == pytest.approx(127.8, abs=0.3)
    mask = star_mask(image)
    assert np.all(mask[r <= core + 2] == 1.0)
    # without the saturation rule, the largest ones fall apart or vanish
    if amplitude >= 5e7:
        unaided = star_mask(image, saturation=np.inf)
        assert not np.all(unaided[r <= core + 2] == 1.0)


def test_nans_are_ignored_and_masked_zero():
    _, noisy = star_field(11)
    reference = star_mask(noisy)
    holed = noisy.copy()
    holed[0, 20:60, 30:120] = np.nan
    holed[0, 200, 200] = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mask = star_mask(holed)
    assert np.isfinite(mask).all()
    assert mask[20:60, 30:120].max() == 0.0 and mask[200, 200] == 0.0
    # far from the hole, the stars are found as before
    away = np.ones((256, 256), bool)
    away[:80, :140] = False
    away[190:211, 190:211] = False
    assert np.mean(np.abs(mask[away] - reference[away]) < 0.05) > 0.99
    all_nan = np.full((32, 32), np.nan, np.float32)
    assert star_mask(all_nan).max() == 0.0 and detect_stars(all_nan).count == 0


def test_colour_and_mono_agree_on_a_grey_image():
    _, noisy = star_field(12, size=128)
    mono = star_mask(noisy[0])
    np.testing.assert_array_equal(star_mask(noisy), mono)  # (1, H, W) is mono
    cube = np.repeat(noisy, 3, axis=0)
    np.testing.assert_array_equal(star_mask(cube, channel_axis=0), mono)
    np.testing.assert_array_equal(star_mask(np.moveaxis(cube, 0, -1), channel_axis=-1), mono)


def test_colour_scene_uses_the_luminance():
    scene, noisy = star_field(13, channels=3)
    assert_bright_stars_covered(scene, star_mask(noisy, channel_axis=0), at_least=10)


def test_dilation_and_feather_shape_the_mask():
    _, noisy = star_field(14, size=128)
    found = detect_stars(noisy)
    hard = star_mask(noisy, dilation=0, feather=0.0)
    np.testing.assert_array_equal(hard, (found.labels > 0).astype(np.float32))
    grown = star_mask(noisy, dilation=3, feather=0.0)
    distance = ndimage.distance_transform_edt(found.labels == 0)
    assert np.all(grown[distance <= 3.0] == 1.0)  # a disk of radius 3 around each detection
    assert np.all(grown[distance > 3.5] == 0.0)
    soft = star_mask(noisy, dilation=3, feather=2.0)
    assert np.all(soft >= grown)  # feathering only adds outside the footprint
    edge = (soft > 0) & (soft < 1)
    assert edge.sum() > 0 and np.all(grown[edge] == 0)


def test_invalid_arguments_are_rejected_with_clear_messages():
    with pytest.raises(ValueError, match="channel_axis"):
        star_mask(np.zeros((3, 32, 32)))
    with pytest.raises(ValueError, match="threshold"):
        star_mask(np.zeros((32, 32)), threshold=0.0)
    with pytest.raises(ValueError, match="dilation"):
        star_mask(np.zeros((32, 32)), dilation=-1)
    with pytest.raises(ValueError, match="feather"):
        star_mask(np.zeros((32, 32)), feather=-1.0)
    with pytest.raises(ValueError, match="background_size"):
        detect_stars(np.zeros((32, 32)), background_size=3)
    with pytest.raises(ValueError, match="min_pixels"):
        detect_stars(np.zeros((32, 32)), min_pixels=10)
    with pytest.raises(ValueError, match="min_contrast"):
        detect_stars(np.zeros((32, 32)), min_contrast=-0.1)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        star_mask(np.zeros((2, 3, 32, 32)))


def test_real_open_cluster_plate_gives_a_plausible_star_count(shared_fits_dir):
    from astropy.io import fits

    with fits.open(shared_fits_dir / "train" / "m67_dss_poss1.fits") as hdul:
        data = hdul[0].data[300:556, 300:556].astype(np.float32)
    found = detect_stars(data)
    # M67 on a POSS-I plate: a rich field; by eye about 150 stars in this 256x256 crop
    assert 80 <= found.count <= 250
    mask = star_mask(data)
    assert 0.05 < np.mean(mask > 0.5) < 0.5
    # the brightest pixel of the crop is on a star
    peak = np.unravel_index(np.argmax(data), data.shape)
    assert mask[peak] == 1.0


def test_mask_from_detections_equals_star_mask_so_callers_detect_once():
    from napari_astrodenoise.core.starmask import mask_from_detections
    from napari_astrodenoise.simulate.sky import simulate_scene

    rng = np.random.default_rng(3)
    image = simulate_scene((96, 96), channels=3, seed=11).image
    image = image + rng.normal(0, 5, size=image.shape).astype(np.float32)
    found = detect_stars(image, channel_axis=0)
    np.testing.assert_array_equal(
        mask_from_detections(found, dilation=3, feather=2.0),
        star_mask(image, channel_axis=0, dilation=3, feather=2.0),
    )
