"""Loss terms: known values on crafted inputs, SSIM against pytorch-msssim, gradient flow."""

from __future__ import annotations

import pytest
import torch
from pytorch_msssim import ssim as reference_ssim
from training.losses import (
    LossConfig,
    brightness_consistency,
    mask_bce,
    noise_weight,
    squash,
    ssim_loss,
    star_tv,
    star_weighted_l1,
    total_loss,
)

from napari_astrodenoise.core.model import ResUNet, ResUNetConfig


def _images(seed: int = 0, shape=(2, 3, 24, 24)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g)


def _star_mask(shape=(2, 1, 24, 24)) -> torch.Tensor:
    mask = torch.zeros(shape)
    mask[..., 5:9, 5:9] = 1.0
    mask[..., 4, 5:9] = 0.5  # a soft edge
    return mask


def test_every_term_is_zero_for_a_perfect_prediction():
    clean, mask = _images(), _star_mask()
    soft = mask.clamp(0.05, 0.95)
    assert float(star_weighted_l1(clean, clean, mask)) == 0.0
    assert float(ssim_loss(clean, clean)) == pytest.approx(0.0, abs=1e-6)
    assert float(brightness_consistency(clean, clean, mask)) == 0.0
    assert float(star_tv(clean, mask, reference=clean)) == 0.0
    assert float(mask_bce(torch.logit(soft), soft)) == pytest.approx(0.0, abs=1e-6)
    output = torch.cat([clean, torch.logit(soft)], dim=1)
    target = torch.cat([clean, soft], dim=1)
    loss, parts = total_loss(output, target)
    assert float(loss) == pytest.approx(0.0, abs=1e-5)
    assert set(parts) == {"l1", "ssim", "brightness", "tv", "mask", "total"}


def test_l1_weights_an_error_on_a_star_one_plus_star_weight_times_more():
    target = torch.zeros(1, 3, 16, 16)
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 8, 8] = 1.0
    on_star, off_star = target.clone(), target.clone()
    on_star[0, 0, 8, 8] = 1.0
    off_star[0, 0, 2, 2] = 1.0
    a = star_weighted_l1(on_star, target, mask, star_weight=4.0)
    b = star_weighted_l1(off_star, target, mask, star_weight=4.0)
    assert float(a / b) == pytest.approx(5.0)
    # with no star weight it is the plain mean absolute error
    plain = star_weighted_l1(off_star, target, mask, star_weight=0.0)
    assert float(plain) == pytest.approx(1.0 / (3 * 16 * 16))


def test_brightness_term_measures_the_off_star_mean_difference():
    target, mask = _images(1), (_star_mask() == 1.0).float()  # a hard mask
    assert float(brightness_consistency(target + 0.1, target, mask)) == pytest.approx(
        0.1, rel=1e-4
    )
    # changes on the stars only, or zero-mean changes off the stars, keep the level
    assert float(brightness_consistency(target + 5.0 * mask, target, mask)) == pytest.approx(
        0.0, abs=1e-6
    )
    pattern = torch.zeros_like(target)
    pattern[..., 16:, 0::2], pattern[..., 16:, 1::2] = 0.3, -0.3
    assert float(brightness_consistency(target + pattern, target, mask)) == pytest.approx(
        0.0, abs=1e-6
    )
    # a level change of one channel is seen in that channel (mean over batch and channels)
    shifted = target.clone()
    shifted[:, 1] += 0.3
    assert float(brightness_consistency(shifted, target, mask)) == pytest.approx(0.1, rel=1e-4)


def test_total_variation_is_zero_on_a_flat_image_and_counts_only_star_pixels():
    mask = torch.ones(1, 1, 8, 10)
    assert float(star_tv(torch.full((1, 3, 8, 10), 2.5), mask)) == 0.0
    ramp = 0.2 * torch.arange(10.0).expand(1, 3, 8, 10)  # slope 0.2 along x only
    h, w = 8, 10
    expected = 0.2 * h * (w - 1) / (h * (w - 1) + (h - 1) * w)
    assert float(star_tv(ramp, mask)) == pytest.approx(expected, rel=1e-5)
    assert float(star_tv(ramp, torch.zeros_like(mask))) == 0.0


def test_excess_total_variation_ignores_the_stars_own_profile_but_not_ringing():
    target = torch.zeros(1, 3, 16, 16)
    target[..., 6:10, 6:10] = 4.0  # a star
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1.0
    assert float(star_tv(target, mask, reference=target)) == 0.0
    ringing = target.clone()
    ringing[..., 4:12, 4:12] += 0.5 * (-1.0) ** torch.arange(8.0)  # ripples over the star
    assert float(star_tv(ringing, mask, reference=target)) > 0.1
    off_star = target.clone()
    off_star[..., 0:2, :] += 0.5 * (-1.0) ** torch.arange(16.0)
    assert float(star_tv(off_star, mask, reference=target)) == 0.0


def test_ssim_term_is_pytorch_msssim_on_the_squashed_images():
    pred, target = _images(2), _images(3)
    expected = 1.0 - reference_ssim(squash(pred, 4.0), squash(target, 4.0), data_range=1.0)
    torch.testing.assert_close(ssim_loss(pred, target, scale=4.0), expected)
    squashed = squash(torch.tensor([-1e6, 0.0, 1e6]))
    torch.testing.assert_close(squashed, torch.tensor([0.0, 0.5, 1.0]))


def test_mask_term_has_the_gradient_of_binary_cross_entropy():
    target = torch.rand(1, 1, 12, 12, generator=torch.Generator().manual_seed(4))
    logit = torch.zeros_like(target, requires_grad=True)
    mask_bce(logit, target).backward()
    expected = (torch.sigmoid(torch.zeros_like(target)) - target) / target.numel()
    torch.testing.assert_close(logit.grad, expected)
    assert float(mask_bce(torch.zeros_like(target), target)) > 0.0


def test_total_loss_is_the_documented_weighted_sum():
    cfg = LossConfig(beta=0.3, gamma=2.0, delta=0.5, mask_weight=0.25)
    output = torch.cat([_images(5), _images(6, (2, 1, 24, 24))], dim=1)
    target = torch.cat([_images(7), _star_mask()], dim=1)
    loss, p = total_loss(output, target, cfg)
    expected = (
        0.7 * p["l1"] + 0.3 * p["ssim"] + 2.0 * p["brightness"] + 0.5 * p["tv"] + 0.25 * p["mask"]
    )
    torch.testing.assert_close(loss.detach(), expected)
    assert float(p["total"]) == pytest.approx(float(loss))
    with pytest.raises(ValueError, match=r"\(B, 4, H, W\)"):
        total_loss(output[:, :3], target[:, :3])
    with pytest.raises(ValueError, match="unknown"):
        LossConfig.from_dict({"alpha": 1.0})


def test_noise_weight_is_the_typical_over_the_local_noise_within_its_bounds():
    g = torch.Generator().manual_seed(3)
    clean = torch.zeros(2, 3, 64, 64)
    sigma = torch.full_like(clean, 0.3)
    sigma[0, :, 16:48, 16:48] = 0.03  # a bright core: a tenth of the sky's noise
    noisy = clean + sigma * torch.randn(clean.shape, generator=g)
    noisy[1] = clean[1]  # an identity pair: no noise at all
    w = noise_weight(noisy, clean, max_weight=20.0)
    assert w.shape == clean.shape
    assert not w.requires_grad
    core, sky = w[0, :, 20:44, 20:44], w[0, :, :12, :12]
    assert float(core.median()) == pytest.approx(10.0, rel=0.15)
    assert 1.0 <= float(sky.min()) and float(sky.median()) < 1.3
    assert torch.equal(w[1], torch.ones_like(w[1]))
    capped = noise_weight(noisy, clean, max_weight=4.0)
    assert float(capped.max()) == 4.0 and float(capped.min()) >= 1.0
    assert torch.equal(noise_weight(noisy, clean, max_weight=1.0), torch.ones_like(clean))


def test_noise_weight_multiplies_into_the_l1_and_is_off_by_default():
    g = torch.Generator().manual_seed(4)
    target, mask = torch.zeros(1, 3, 16, 16), torch.zeros(1, 1, 16, 16)
    pred = torch.rand(target.shape, generator=g)
    weight = torch.ones_like(target)
    weight[..., :8, :] = 3.0
    got = star_weighted_l1(pred, target, mask, weight=weight)
    expected = (weight * pred).sum() / weight.sum()
    torch.testing.assert_close(got, expected)
    output = torch.cat([pred, torch.zeros(1, 1, 16, 16)], dim=1)
    full = torch.cat([target, mask], dim=1)
    noisy = pred + 0.1
    # default config: the noisy input changes nothing
    a, _ = total_loss(output, full)
    b, _ = total_loss(output, full, noisy=noisy)
    torch.testing.assert_close(a, b)
    cfg = LossConfig(noise_weight_max=10.0)
    with pytest.raises(ValueError, match="noisy input"):
        total_loss(output, full, cfg)
    _, parts = total_loss(output, full, cfg, noisy=noisy)
    w = noise_weight(noisy, target, max_weight=10.0)
    torch.testing.assert_close(parts["l1"], star_weighted_l1(pred, target, mask, weight=w))
    with pytest.raises(ValueError, match="noise_weight_max"):
        LossConfig(noise_weight_max=0.5)


def test_gradients_reach_every_model_parameter():
    torch.manual_seed(0)
    model = ResUNet(ResUNetConfig(width=8, depth=2))
    torch.nn.init.normal_(model.tail.weight, std=0.05)  # a zero tail would block the gradient
    x = _images(8, (2, 3, 32, 32))
    target = torch.cat([_images(9, (2, 3, 32, 32)), _star_mask((2, 1, 32, 32))], dim=1)
    loss, _ = total_loss(model(x), target)
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert float(param.grad.abs().sum()) > 0.0, name
