"""benchmarks/finetune_real.py: the score against a noisy reference is an unbiased error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import finetune_real as fr


def _case(n_ref: int, sigma: float, seed: int = 0) -> tuple[fr.RealCase, np.ndarray]:
    """A flat sky with a gradient, frame 1 and ``n_ref`` more frames of white noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:200, :240]
    truth = 500.0 + 0.2 * xx + 0.1 * yy
    frames = truth + rng.normal(0.0, sigma, (n_ref + 1, *truth.shape))
    stack = frames[1:, np.newaxis]
    case = fr.RealCase(
        name="synthetic",
        paths=[Path(f"f{k}.fits") for k in range(n_ref + 2)],
        bayer=False,
        frame1=frames[0].astype(np.float32),
        box=(0, 200, 0, 240),
        reference=stack.mean(axis=0),
        ref_var=stack.var(axis=0, ddof=1) / n_ref,
        score=np.ones((1, *truth.shape), bool),
        extended=np.zeros((1, *truth.shape), bool),
        stars=np.zeros((0, 2)),
        fwhm=2.0,
        sigma=np.array([sigma]),
    )
    return case, truth


@pytest.mark.parametrize("n_ref", [3, 8])
def test_the_reference_noise_is_taken_out_of_the_squared_error(n_ref):
    case, truth = _case(n_ref, sigma=10.0)
    # the noisy frame's error against the true sky is its own noise variance
    assert fr.mse(case, case.planes(case.frame1), case.score) == pytest.approx(100.0, rel=0.03)
    # and a perfect denoiser's is zero, although the reference is itself noisy
    assert abs(fr.mse(case, truth[np.newaxis], case.score)) < 1.0
    # half the noise left: a quarter of the variance, i.e. +6 dB
    half = truth + 0.5 * (case.frame1 - truth)
    gain = fr.db(
        fr.mse(case, case.planes(case.frame1), case.score),
        fr.mse(case, half[np.newaxis], case.score),
    )
    assert gain == pytest.approx(6.02, abs=0.2)


def test_the_background_offset_follows_a_smooth_sky_change_only():
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:256, :256]
    change = 3.0 * np.sin(xx / 300.0) + 0.01 * yy  # the sky moved between exposures
    noise = rng.normal(0.0, 10.0, change.shape)
    where = np.ones((1, *change.shape), bool)
    where[0, 100:140, 100:140] = False  # a star, left out of the fit
    got = fr.background_offset((change + noise)[np.newaxis], where)[0]
    inner = (slice(64, -64), slice(64, -64))
    assert np.abs(got - change)[inner].max() < 0.6  # noise averaged away, sky change kept
