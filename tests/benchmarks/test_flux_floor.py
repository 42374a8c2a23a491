"""The bound of benchmarks/flux_floor.py: the spread of a weighted least-squares flux."""

from __future__ import annotations

import numpy as np
import pytest

import flux_floor as ff


def _star(shape=(41, 41), xy=(20.3, 19.6), flux=2000.0, sigma=1.5, sky=10.0):
    y, x = np.mgrid[: shape[0], : shape[1]]
    r2 = (x - xy[0]) ** 2 + (y - xy[1]) ** 2
    return sky + flux / (2 * np.pi * sigma**2) * np.exp(-r2 / (2 * sigma**2))


def test_relative_sigma_is_the_spread_of_the_best_profile_fit():
    clean = _star()
    var = np.full((1, *clean.shape), 4.0)
    xy = np.array([[20.3, 19.6]])
    fwhm = 1.5 * 2.3548
    (sigma,) = ff.relative_sigmas(clean, var, xy, fwhm=fwhm)
    # the estimator the bound describes: fit the known profile to noisy data
    r = ff.PROFILE_RADII * max(ff.m.APERTURE_FWHM * fwhm, ff.m.MIN_APERTURE_PX)
    y, x = np.mgrid[: clean.shape[0], : clean.shape[1]]
    core = np.hypot(x - 20.3, y - 19.6) <= r
    profile = clean[core] - 10.0
    rng = np.random.default_rng(1)
    noise = rng.normal(0.0, 2.0, (4000, core.sum()))
    a = (noise + profile) @ profile / (profile @ profile)
    assert sigma == pytest.approx(np.std(a), rel=0.05)
    assert 0 < sigma < 0.05


def test_colour_channels_share_the_scale_and_add_information():
    mono = _star()
    xy = np.array([[20.3, 19.6]])
    one = ff.relative_sigmas(mono, np.full((1, 41, 41), 4.0), xy, fwhm=3.5)
    three = ff.relative_sigmas(np.stack([mono] * 3), np.full((3, 41, 41), 4.0), xy, fwhm=3.5)
    assert three[0] == pytest.approx(one[0] / np.sqrt(3.0))


def test_median_abs_floor_of_equal_sigmas_is_the_half_normal_median():
    got = ff.median_abs_floor(np.full(201, 0.03), draws=4000)
    assert got == pytest.approx(0.03 * 0.6745, rel=0.03)


def test_record_flux_reads_the_model_and_bm3d_cells(tmp_path):
    record = tmp_path / "eval_x.md"
    record.write_text(
        "| case | method | PSNR dB | gain dB | PSNR asinh | SSIM asinh | flux err | x |\n"
        "|---|---|---|---|---|---|---|---|\n"
        "| a/light | model | 1 | 2 | 3 | 4 | 1.27 % | 0 |\n"
        "| a/light | bm3d | 1 | 2 | 3 | 4 | 2.50 % | 0 |\n"
    )
    cells = ff.record_flux(record)
    assert cells == {("a/light", "model"): "1.27 %", ("a/light", "bm3d"): "2.50 %"}
