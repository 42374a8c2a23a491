"""The metric helpers of the evaluation benchmarks (benchmarks/_metrics.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import _metrics as m

FWHM = 2.5
SIGMA = 1.0  # pixel noise of the synthetic field
THRESHOLD = 5.0 * SIGMA


def _gaussian_star(shape, x, y, flux, fwhm=FWHM):
    s = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    yy, xx = np.indices(shape, dtype=np.float64)
    return flux / (2 * np.pi * s * s) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s * s))


@pytest.fixture(scope="module")
def field():
    """(clean 128x128 star field on a sky of 100 with a little noise, star positions)."""
    rng = np.random.default_rng(1)
    shape = (128, 128)
    grid = np.arange(20, 120, 20, dtype=np.float64)
    xs, ys = np.meshgrid(grid, grid)
    xy = np.column_stack([xs.ravel(), ys.ravel()]) + rng.uniform(-0.4, 0.4, (xs.size, 2))
    image = np.full(shape, 100.0)
    for (x, y), flux in zip(xy, rng.uniform(300.0, 3000.0, len(xy)), strict=True):
        image += _gaussian_star(shape, x, y, flux)
    image += rng.normal(0.0, SIGMA, shape)
    return image, xy


def test_psnr_of_identical_images_is_infinite():
    a = np.random.default_rng(0).random((16, 16))
    assert m.psnr(a, a.copy(), 1.0) == float("inf")


def test_psnr_of_a_known_mse():
    a = np.zeros((32, 32))
    # MSE 0.01 with a range of 1: 10 log10(1 / 0.01) = 20 dB
    assert m.psnr(a, a + 0.1, 1.0) == pytest.approx(20.0)
    assert m.psnr(a, a + 0.1, 10.0) == pytest.approx(40.0)


def test_psnr_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        m.psnr(np.zeros((4, 4)), np.zeros((4, 5)), 1.0)


def test_robust_range_ignores_a_single_hot_pixel():
    a = np.tile(np.linspace(0.0, 1.0, 100), (100, 1))
    hot = a.copy()
    hot[5, 5] = 1e6
    assert m.robust_range(hot) == pytest.approx(m.robust_range(a), rel=1e-3)


def test_stretch_maps_sky_to_zero_and_top_to_one():
    clean = np.full((3, 8, 8), 50.0)
    clean[:, 4, 4] = 1050.0
    st = m.Stretch(sky=np.full(3, 50.0), softening=2.0, top=1000.0)
    out = st(clean)
    assert out.shape == clean.shape
    assert out[0, 0, 0] == pytest.approx(0.0)
    assert out[1, 4, 4] == pytest.approx(1.0)


def test_ssim_of_identical_images_is_one(field):
    image, _ = field
    assert m.ssim(image, image, m.robust_range(image)) == pytest.approx(1.0)


def test_clean_image_against_itself_has_full_recall_and_no_spurious_star(field):
    image, truth = field
    found = m.find_stars(image, threshold=THRESHOLD, fwhm=FWHM)
    assert len(found) == len(truth)
    assert m.star_recall(found, found) == 1.0
    assert m.spurious_stars(found, found) == 0
    # the detections are where the stars were put
    assert m.star_recall(truth, found) == 1.0


def test_an_injected_star_is_spurious(field):
    image, _ = field
    clean_xy = m.find_stars(image, threshold=THRESHOLD, fwhm=FWHM)
    faked = image + _gaussian_star(image.shape, 30.0, 50.0, 2000.0)
    out_xy = m.find_stars(faked, threshold=THRESHOLD, fwhm=FWHM)
    assert m.spurious_stars(clean_xy, out_xy) == 1
    assert m.star_recall(clean_xy, out_xy) == 1.0


def test_a_faint_real_star_lifted_over_the_threshold_is_spurious_but_not_invented():
    # evaluate.py's two counts: "spurious" matches the output's detections against the clean
    # catalogue at the detection threshold, "invented" against a deeper one (DEEP_SIGMA).
    # Noise-free, as a simulated reference is; thresholds in units of SIGMA as in the field.
    import _cases as cs

    image = np.full((96, 96), 100.0)
    for x, y in ((20.0, 20.0), (70.0, 75.0)):
        image += _gaussian_star(image.shape, x, y, 1000.0)
    faint = image + _gaussian_star(image.shape, 30.0, 50.0, 40.0)
    shallow = m.find_stars(faint, threshold=cs.DETECT_SIGMA * SIGMA, fwhm=FWHM)
    deep = m.find_stars(faint, threshold=cs.DEEP_SIGMA * SIGMA, fwhm=FWHM)
    assert len(deep) == len(shallow) + 1  # the faint star lies between the two depths
    lifted = faint + _gaussian_star(image.shape, 30.0, 50.0, 40.0)
    made_up = faint + _gaussian_star(image.shape, 60.0, 25.0, 80.0)
    for out, spurious, invented in ((lifted, 1, 0), (made_up, 1, 1)):
        out_xy = m.find_stars(out, threshold=cs.DETECT_SIGMA * SIGMA, fwhm=FWHM)
        assert m.spurious_stars(shallow, out_xy) == spurious
        assert m.spurious_stars(deep, out_xy) == invented


def test_a_removed_star_lowers_recall(field):
    image, truth = field
    clean_xy = m.find_stars(image, threshold=THRESHOLD, fwhm=FWHM)
    x, y = np.rint(truth[0]).astype(int)
    erased = image.copy()
    erased[y - 6 : y + 7, x - 6 : x + 7] = np.median(image)
    out_xy = m.find_stars(erased, threshold=THRESHOLD, fwhm=FWHM)
    assert m.star_recall(clean_xy, out_xy) == pytest.approx(1.0 - 1.0 / len(clean_xy))
    assert m.spurious_stars(clean_xy, out_xy) == 0


def test_recall_and_spurious_on_empty_lists():
    none = np.zeros((0, 2))
    some = np.array([[10.0, 10.0]])
    assert math.isnan(m.star_recall(none, some))
    assert m.star_recall(some, none) == 0.0
    assert m.spurious_stars(none, some) == 1
    assert m.spurious_stars(some, none) == 0


def test_flux_error_is_zero_for_identical_images(field):
    image, truth = field
    sample = m.photometry_sample(truth, image.shape, fwhm=FWHM)
    assert len(sample) > 10
    err, bias = m.flux_error(image, image, truth[sample], fwhm=FWHM)
    assert err == pytest.approx(0.0, abs=1e-12)
    assert bias == pytest.approx(0.0, abs=1e-12)


def test_flux_error_of_a_ten_percent_brighter_image(field):
    image, truth = field
    sample = m.photometry_sample(truth, image.shape, fwhm=FWHM)
    err, bias = m.flux_error(image, 1.1 * image, truth[sample], fwhm=FWHM)
    assert err == pytest.approx(0.10, abs=1e-6)
    assert bias == pytest.approx(0.10, abs=1e-6)
    err, bias = m.flux_error(image, 0.9 * image, truth[sample], fwhm=FWHM)
    assert bias == pytest.approx(-0.10, abs=1e-6)


def test_aperture_flux_recovers_an_injected_star():
    shape = (64, 64)
    image = 10.0 + _gaussian_star(shape, 32.2, 31.7, 5000.0)
    flux = m.aperture_fluxes(image, np.array([[32.2, 31.7]]), fwhm=FWHM)
    assert flux[0] == pytest.approx(5000.0, rel=0.01)


def test_photometry_sample_drops_edge_crowded_and_saturated_stars():
    xy = np.array([[50.0, 50.0], [2.0, 50.0], [80.0, 80.0], [82.0, 80.0], [50.0, 20.0]])
    saturated = np.zeros((100, 100), dtype=bool)
    saturated[20, 51] = True
    keep = m.photometry_sample(xy, (100, 100), fwhm=FWHM, saturated=saturated)
    assert keep.tolist() == [0]


def test_estimate_fwhm_of_gaussian_stars(field):
    image, _ = field
    assert m.estimate_fwhm(image, threshold=THRESHOLD) == pytest.approx(FWHM, rel=0.1)


def test_chroma_of_grey_and_coloured_patches():
    mask = np.ones((16, 16), dtype=bool)
    grey = np.full((3, 16, 16), 10.0)
    assert m.chroma(grey, sky=np.zeros(3), mask=mask) == pytest.approx(0.0, abs=1e-12)
    red = grey * np.array([2.0, 1.0, 0.0])[:, None, None]
    assert m.chroma(red, sky=np.zeros(3), mask=mask) == pytest.approx(np.std([2.0, 1.0, 0.0]))
    assert math.isnan(m.chroma(grey[0], sky=np.zeros(1), mask=mask))


def test_peak_ratio_follows_the_brightest_core_above_the_sky(field):
    image, _xy = field
    sky = np.array([100.0])
    assert m.peak_ratio(image, image, sky=sky) == pytest.approx(1.0)
    brighter = 100.0 + 2.0 * (image - 100.0)
    assert m.peak_ratio(image, brighter, sky=sky) == pytest.approx(2.0)
    assert math.isnan(m.peak_ratio(np.full((8, 8), 5.0), np.ones((8, 8)), sky=np.array([5.0])))
    with pytest.raises(ValueError, match="shape"):
        m.peak_ratio(image, image[:64], sky=sky)
