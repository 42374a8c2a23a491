"""The ResUNet denoiser: residual blocks, skip connections, residual output and a star-mask head.

One model serves mono and colour data: it always takes three channels in network space (see
``stretch``). Colour frames go in as they are; a mono frame goes in as three identical
channels and the three outputs are averaged (``predict``). Training mixes mono and colour
scenes, so the network learns to keep identical channels identical. This costs a mono frame
no more than a colour one and keeps a single set of weights to train, ship and validate.

A model may also take one more input channel, the noise sigma at each pixel in network space
(``noise_channel``; see ``noiselevel.noise_map``): with a fixed asinh stretch the noise of a
bright pixel is much smaller in network space than the sky's, by an amount that depends on
the camera's gain, which the image alone does not tell the network tile by tile.

Outputs are ``in_channels + 1`` maps: the denoised channels (input plus a predicted residual,
so an untrained or zeroed head is the identity) and one star-mask logit, trained against the
soft star mask as the fourth target channel of the published pipeline.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ResUNetConfig:
    """Architecture of a :class:`ResUNet` (stored in each model's JSON config).

    Attributes
    ----------
    in_channels : int
        Image channels (3: colour, mono replicated).
    width : int
        Feature channels at full resolution; doubled at each level down.
    depth : int
        Number of 2x downsamplings; inputs are padded inside to a multiple of ``2**depth``.
    blocks : int
        Residual blocks per encoder and decoder level (the bottleneck has two).
    mask_head : bool
        Whether a star-mask logit is predicted as an extra output channel.
    noise_channel : bool
        Whether the input carries one more channel after the image: the noise sigma at each
        pixel in network space, in units of the sky's
        (:func:`~napari_astrodenoise.core.noiselevel.noise_map`). Outputs are unchanged.
    """

    in_channels: int = 3
    width: int = 16
    depth: int = 3
    blocks: int = 1
    mask_head: bool = True
    noise_channel: bool = False

    def to_dict(self) -> dict:
        return {"type": "ResUNet", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> ResUNetConfig:
        if data.get("type", "ResUNet") != "ResUNet":
            msg = f"unknown architecture type {data['type']!r}"
            raise ValueError(msg)
        return cls(**{k: v for k, v in data.items() if k != "type"})


class ResBlock(nn.Module):
    """conv3x3 - ReLU - conv3x3 plus the input (1x1 projection when the width changes)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.act(self.conv1(x))) + self.skip(x))


def _stage(c_in: int, c_out: int, blocks: int) -> nn.Sequential:
    return nn.Sequential(
        ResBlock(c_in, c_out), *(ResBlock(c_out, c_out) for _ in range(blocks - 1))
    )


class ResUNet(nn.Module):
    """Residual U-Net denoiser for network-space astro images.

    Parameters
    ----------
    config : ResUNetConfig, optional
        Architecture; defaults to ``ResUNetConfig()`` (about 0.9 M parameters).

    Notes
    -----
    ``forward`` takes (B, in_channels + noise_channel, H, W) of any H x W (reflect-padded
    inside to a multiple of ``2**depth`` and cropped back) and returns
    (B, in_channels + mask_head, H, W): the input image plus a predicted residual, then the
    star-mask logit.
    """

    def __init__(self, config: ResUNetConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or ResUNetConfig()
        if cfg.depth < 1 or cfg.width < 4 or cfg.blocks < 1:
            msg = f"invalid ResUNet config {cfg}: need depth >= 1, width >= 4, blocks >= 1"
            raise ValueError(msg)
        widths = [cfg.width * 2**i for i in range(cfg.depth + 1)]
        self.head = nn.Conv2d(cfg.in_channels + int(cfg.noise_channel), widths[0], 3, padding=1)
        self.encoders = nn.ModuleList(_stage(w, w, cfg.blocks) for w in widths[:-1])
        self.downs = nn.ModuleList(
            nn.Conv2d(w, w2, 2, stride=2) for w, w2 in itertools.pairwise(widths)
        )
        self.bottleneck = _stage(widths[-1], widths[-1], 2)
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(w2, w, 2, stride=2) for w, w2 in itertools.pairwise(widths)
        )
        self.decoders = nn.ModuleList(_stage(w, w, cfg.blocks) for w in widths[:-1])
        n_out = cfg.in_channels + int(cfg.mask_head)
        self.tail = nn.Conv2d(widths[0], n_out, 3, padding=1)
        # Start as the identity: a zero residual and a neutral mask.
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def _inner(self, full: torch.Tensor) -> torch.Tensor:
        """The U-Net below the full-resolution level: first downsampling to last upsampling."""
        f = self.downs[0](full)
        skips = []
        for enc, down in zip(self.encoders[1:], self.downs[1:], strict=True):
            f = enc(f)
            skips.append(f)
            f = down(f)
        f = self.bottleneck(f)
        for up, dec, skip in zip(
            reversed(self.ups[1:]), reversed(self.decoders[1:]), reversed(skips), strict=True
        ):
            f = dec(up(f) + skip)
        return self.ups[0](f)

    @property
    def multiple(self) -> int:
        """Spatial sizes are padded inside to a multiple of this."""
        return 2**self.config.depth

    def forward(self, x: torch.Tensor, *, inner_dtype: torch.dtype | None = None) -> torch.Tensor:
        """(B, C, H, W) network space in, (B, C', H, W) out (see the class's notes).

        With ``inner_dtype`` (``torch.bfloat16``) everything between the first and the
        last convolution runs under ``torch.autocast`` in that type: the full-resolution
        blocks and every level below. The first convolution (from the image) and the last
        (to the residual) stay float32, and so does the residual's sum with the input,
        where bfloat16's 8-bit mantissa would round the image itself
        (``benchmarks/precision.py`` measures the difference).
        """
        h, w = x.shape[-2:]
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        xp = x
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            xp = F.pad(x, (0, pw, 0, ph), mode=mode)
        head = self.head(xp)  # float32
        with torch.autocast(
            x.device.type, dtype=inner_dtype or torch.bfloat16, enabled=inner_dtype is not None
        ):
            full = self.encoders[0](head)
            f = self.decoders[0](self._inner(full) + full)
        f = f.float()
        out = self.tail(f)[..., :h, :w]
        c = self.config.in_channels
        image = x[:, :c] + out[:, :c]
        return torch.cat([image, out[:, c:]], dim=1) if self.config.mask_head else image


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
