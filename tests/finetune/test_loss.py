"""The fine-tuning loss: its optimum is the mean of the target in LINEAR units (no Jensen bias)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from napari_astrodenoise.finetune.loop import weighted_loss
from napari_astrodenoise.simulate.noise import poisson_gaussian


def _targets(level: float, n: int = 100_000) -> np.ndarray:
    """Poisson-Gaussian draws of a faint level (gain 1, read noise 2 e-): skewed noise."""
    return poisson_gaussian(np.full((1, n), level), gain=1.0, read_noise=2.0, seed=7).ravel()


def _best_constant(loss_of, level: float) -> float:
    """The constant prediction (linear units) that minimises ``loss_of`` near ``level``."""
    found = minimize_scalar(
        lambda c: float(loss_of(c)),
        bounds=(level - 1.0, level + 1.0),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(found.x)


@pytest.mark.parametrize("level", [2.0, 6.0, 20.0])
def test_the_linear_weighted_loss_learns_the_mean_where_the_stretched_one_is_biased(level):
    bg, sigma = 0.0, 2.0  # the sky: read noise only
    scale = 3.0 * sigma  # the stretch of softening 3
    t = torch.from_numpy(_targets(level).astype(np.float32)).reshape(1, 1, 1, -1)
    var = sigma**2 + level  # the noise level function at the signal, not at each target
    w = torch.full_like(t, 1.0 / var)
    background, scl = torch.tensor([bg]), torch.tensor([scale])

    def ours(c: float) -> torch.Tensor:
        pred = torch.full_like(t, float(np.arcsinh((c - bg) / scale)))
        return weighted_loss(torch, pred, t, w, background, scl)

    def stretched(c: float) -> torch.Tensor:  # the trap: MSE against the stretched target
        pred = np.arcsinh((c - bg) / scale)
        return ((torch.asinh((t - bg) / scale) - pred) ** 2).mean()

    mean = float(t.mean())
    err = np.sqrt(var / t.numel())
    assert _best_constant(ours, level) == pytest.approx(mean, abs=3 * err)
    bias = _best_constant(stretched, level) - mean
    assert abs(bias) > 0.05  # the trap is real at these levels: many standard errors
    assert abs(bias) > 10 * err


def test_pixels_without_weight_do_not_count_and_outliers_do_not_steer():
    t = torch.zeros(1, 1, 4, 4)
    w = torch.ones_like(t)
    pred = torch.zeros_like(t)
    one = torch.tensor([0.0]), torch.tensor([1.0])
    assert float(weighted_loss(torch, pred, t, w, *one)) == 0.0
    t[0, 0, 0, 0] = 1e6  # a cosmic ray in the target, 1e6 sigma
    w[0, 0, 0, 1] = 0.0
    t[0, 0, 0, 1] = 5.0  # left out
    loss = float(weighted_loss(torch, pred, t, w, *one))
    # the ray costs linearly beyond 6 sigma, so its gradient is bounded
    assert loss == pytest.approx((2 * 6 * 1e6 - 36) / 15)
    pred.requires_grad_(True)
    weighted_loss(torch, pred, t, w, *one).backward()
    assert float(pred.grad.abs().max()) <= 2 * 6 / 15 + 1e-6
