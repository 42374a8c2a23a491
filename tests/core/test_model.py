"""The ResUNet: any size, residual output, mask head, config round trip."""

from __future__ import annotations

import pytest
import torch

from napari_astrodenoise.core.model import ResUNet, ResUNetConfig, count_parameters


@pytest.mark.parametrize("shape", [(32, 32), (37, 50), (5, 300), (1, 1), (97, 131)])
def test_any_height_and_width_comes_back_the_same_size(shape):
    model = ResUNet(ResUNetConfig(width=8, depth=3)).eval()
    x = torch.randn(2, 3, *shape)
    with torch.inference_mode():
        y = model(x)
    assert y.shape == (2, 4, *shape)


def test_fresh_model_is_the_identity_and_output_is_input_plus_residual():
    model = ResUNet(ResUNetConfig(width=8, depth=2)).eval()
    x = torch.randn(1, 3, 40, 40)
    with torch.inference_mode():
        assert torch.equal(model(x)[:, :3], x)
    torch.nn.init.normal_(model.tail.weight, std=0.1)
    with torch.inference_mode():
        y = model(x)
    residual = y[:, :3] - x
    assert residual.abs().mean() > 1e-3  # the network now changes the image...
    assert y.shape[1] == 4  # ...and predicts a star-mask logit beside it


def test_without_mask_head_only_the_image_comes_out():
    model = ResUNet(ResUNetConfig(width=8, depth=2, mask_head=False))
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3, 32, 32)


def test_default_size_is_small_enough_to_ship():
    n = count_parameters(ResUNet())
    assert 300_000 < n < 2_500_000  # under 10 MB as float32


def test_config_round_trips_through_json_dict():
    cfg = ResUNetConfig(in_channels=1, width=12, depth=2, blocks=2, mask_head=False)
    assert ResUNetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown architecture"):
        ResUNetConfig.from_dict({"type": "Transformer"})


def test_invalid_architecture_is_refused():
    with pytest.raises(ValueError, match="depth >= 1"):
        ResUNet(ResUNetConfig(depth=0))


def test_gradients_reach_every_parameter():
    model = ResUNet(ResUNetConfig(width=8, depth=2))
    torch.nn.init.normal_(model.tail.weight, std=0.1)
    model(torch.randn(2, 3, 32, 32)).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_a_noise_channel_is_one_more_input_and_no_more_output():
    cfg = ResUNetConfig(width=8, depth=2, noise_channel=True)
    assert ResUNetConfig.from_dict(cfg.to_dict()) == cfg
    old = {k: v for k, v in ResUNetConfig().to_dict().items() if k != "noise_channel"}
    assert ResUNetConfig.from_dict(old).noise_channel is False  # configs from before it
    model = ResUNet(cfg).eval()
    x = torch.randn(2, 4, 40, 40)
    with torch.inference_mode():
        y = model(x)
        assert y.shape == (2, 4, 40, 40)
        assert torch.equal(y[:, :3], x[:, :3])  # fresh: the identity on the image
        torch.nn.init.normal_(model.tail.weight, std=0.1)
        x2 = x.clone()
        x2[:, 3] *= 3.0
        assert not torch.allclose(model(x)[:, :3], model(x2)[:, :3])  # the map matters


def test_a_bf16_inner_keeps_the_identity_exact():
    """Only the layers between the first and last convolutions change with
    ``inner_dtype``; a zeroed tail is the identity in either number format."""
    torch.manual_seed(0)
    net = ResUNet(ResUNetConfig(width=8, depth=2)).eval()
    x = torch.randn(2, 3, 40, 56)
    with torch.inference_mode():
        assert torch.equal(net(x, inner_dtype=torch.bfloat16)[:, :3], x)
        torch.nn.init.normal_(net.tail.weight, std=0.1)
        fp32, bf16 = net(x), net(x, inner_dtype=torch.bfloat16)
    assert fp32.dtype == bf16.dtype == torch.float32
    assert 0 < (fp32 - bf16).abs().max() < 0.05
