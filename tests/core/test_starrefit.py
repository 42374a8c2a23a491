"""The star refit: flux given back where the data support it, nothing made, strips exact."""

from __future__ import annotations

import numpy as np
import pytest

from napari_astrodenoise.core.noiselevel import NoiseProfile
from napari_astrodenoise.core.pipeline import denoise, iter_denoise
from napari_astrodenoise.core.progress import drain
from napari_astrodenoise.core.provenance import provenance
from napari_astrodenoise.core.starrefit import refit_stars


def _sky(shape, *, level=1000.0, sigma=10.0, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = level + rng.normal(0, sigma, size=shape)
    return img.astype(np.float32)


def _refit_case(scale: float, *, flux=20000.0, seed=3):
    """A 12-sigma-peak star on a noisy sky, and a noise-free prediction at ``scale`` x it."""
    yy, xx = np.mgrid[:96, :96]
    star = flux / (2 * np.pi * 1.5**2) * np.exp(-((xx - 47.3) ** 2 + (yy - 48.6) ** 2) / 4.5)
    sky, sigma = 100.0, 10.0
    rng = np.random.default_rng(seed)
    noisy = (sky + star + rng.normal(0.0, sigma, star.shape)).astype(np.float32)[None]
    prediction = (sky + scale * star).astype(np.float32)[None]
    profile = NoiseProfile(np.array([sky]), np.array([sigma**2]), np.array([0.0]))
    return star, noisy, prediction, profile


def _aperture(image: np.ndarray, sky: float = 100.0) -> float:
    yy, xx = np.mgrid[: image.shape[-2], : image.shape[-1]]
    inside = np.hypot(xx - 47.3, yy - 48.6) <= 4.0
    return float((image[..., inside] - sky).sum())


def test_star_refit_gives_a_dimmed_star_its_flux_back():
    star, noisy, prediction, profile = _refit_case(0.9)
    truth = _aperture(star, sky=0.0)
    assert _aperture(prediction[0]) / truth == pytest.approx(0.9, abs=1e-3)
    refit_stars(prediction, noisy, 0.04, profile)
    assert _aperture(prediction[0]) / truth == pytest.approx(1.0, abs=0.02)


def test_star_refit_dims_a_star_the_input_does_not_have():
    star, noisy, prediction, profile = _refit_case(1.0)
    invented = prediction + 0.5 * star[None].astype(np.float32)  # half as bright again
    refit_stars(invented, noisy, 0.04, profile)
    # nine tenths of the excess go (the top-hat template is the core, not the whole star)
    assert _aperture(invented[0]) / _aperture(star, sky=0.0) < 1.06


def test_star_refit_makes_nothing_where_the_prediction_has_no_source():
    _star, noisy, _prediction, profile = _refit_case(1.0)
    flat = np.full_like(noisy, 100.0)  # the star erased: the residual holds all of it
    out = flat.copy()
    refit_stars(out, noisy, 0.04, profile)
    np.testing.assert_array_equal(out, flat)


def test_star_refit_never_lifts_a_marginal_source():
    # a core a few sigmas above the sky, dimmed: even a wide prior gives nothing back
    _star, noisy, prediction, profile = _refit_case(0.8, flux=1000.0)
    before = _aperture(prediction[0])
    refit_stars(prediction, noisy, 1.0, profile)
    assert _aperture(prediction[0]) <= before * 1.001


def test_star_refit_prior_holds_the_correction_to_what_the_data_support():
    changes = []
    for prior in (0.002, 0.04):
        _star, noisy, prediction, profile = _refit_case(0.7)
        before = _aperture(prediction[0])
        refit_stars(prediction, noisy, prior, profile)
        changes.append(_aperture(prediction[0]) / before - 1.0)
    assert 0 < changes[0] < 0.5 * changes[1]


def test_star_refit_zero_leaves_the_prediction_alone_and_keeps_nans():
    _star, noisy, prediction, profile = _refit_case(0.9)
    before = prediction.copy()
    refit_stars(prediction, noisy, 0.0, profile)
    np.testing.assert_array_equal(prediction, before)
    noisy[0, 10, 10] = np.nan
    prediction[0, 11, 11] = np.nan
    refit_stars(prediction, noisy, 0.04, profile)
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
    cards = provenance(result.settings)["provenance"]
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
    profile = NoiseProfile(np.full(2, 100.0), np.full(2, 100.0), np.full(2, 0.01))
    whole = prediction.copy()
    refit_stars(whole, noisy, 0.04, profile, strip_rows=len(clean[0]))  # one strip
    refit_stars(prediction, noisy, 0.04, profile)
    assert not np.array_equal(whole, 100.0 + 0.9 * (clean - 100.0))  # it did something
    np.testing.assert_array_equal(prediction, whole)


def test_star_refit_of_a_noise_free_profile_stays_finite():
    _star, noisy, prediction, _profile = _refit_case(0.9)
    silent = NoiseProfile(np.array([100.0]), np.array([0.0]), np.array([0.0]))
    out = prediction.copy()
    refit_stars(out, noisy, 0.04, silent)  # no noise to weigh by: left alone
    np.testing.assert_array_equal(out, prediction)
    # no noise at the sky, photon noise above it: finite, and the star still refitted
    shot = NoiseProfile(np.array([100.0]), np.array([0.0]), np.array([1.0]))
    refit_stars(out, noisy, 0.04, shot)
    assert np.isfinite(out).all()
    assert _aperture(out[0]) > _aperture(prediction[0])
