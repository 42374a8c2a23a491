"""The training loss: its terms, each a documented function, and their weighted sum.

All terms take network-space tensors (see ``napari_astrodenoise.core.stretch``): images
``(B, 3, H, W)``, the soft star mask ``(B, 1, H, W)`` in [0, 1] and the mask logit
``(B, 1, H, W)``. The model's output ``(B, 4, H, W)`` and the data's target ``(B, 4, H, W)``
are split by :func:`total_loss`::

    loss = (1 - beta) * star_weighted_l1 + beta * (1 - ssim) + gamma * brightness
           + delta * star_tv + mask_weight * mask_bce

Every term is zero when the prediction equals the target (``mask_bce`` is reported as the
excess over the target's own entropy for that reason), so each logged value reads directly
as "how far from the target".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim as _ms_ssim

from training.config_tables import checked_table

__all__ = [
    "LossConfig",
    "brightness_consistency",
    "mask_bce",
    "noise_weight",
    "squash",
    "ssim_index",
    "ssim_loss",
    "star_tv",
    "star_weighted_l1",
    "total_loss",
]


@dataclass
class LossConfig:
    """Weights of the loss terms (the ``[loss]`` table of a config file).

    Attributes
    ----------
    beta : float
        Share of ``1 - SSIM`` against the star-weighted L1 (default 0.2).
    gamma : float
        Weight of the off-star brightness consistency (default 1.0).
    delta : float
        Weight of the total variation on the stars (default 0.05).
    mask_weight : float
        Weight of the star-mask cross-entropy (default 0.1).
    star_weight : float
        Extra L1 weight on star pixels: weight ``1 + star_weight * mask`` (default 4).
    ssim_scale : float
        SSIM is computed on ``(tanh(y / ssim_scale) + 1) / 2`` with data range 1 (default 4).
    tv_mode : {"excess", "plain"}
        ``"excess"`` (default) penalises only variation beyond the target's at the stars;
        ``"plain"`` penalises all of the prediction's variation there.
    noise_weight_max : float
        Upper bound of the L1's noise weight (:func:`noise_weight`); 1 (default) turns it
        off, so that every pixel counts alike apart from the stars.
    """

    beta: float = 0.2
    gamma: float = 1.0
    delta: float = 0.05
    mask_weight: float = 0.1
    star_weight: float = 4.0
    ssim_scale: float = 4.0
    tv_mode: str = "excess"
    noise_weight_max: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.beta <= 1.0:
            msg = f"beta must be in [0, 1], got {self.beta}"
            raise ValueError(msg)
        for name in ("gamma", "delta", "mask_weight", "star_weight"):
            if not getattr(self, name) >= 0:
                msg = f"{name} must be >= 0, got {getattr(self, name)}"
                raise ValueError(msg)
        if not self.ssim_scale > 0:
            msg = f"ssim_scale must be > 0, got {self.ssim_scale}"
            raise ValueError(msg)
        if not self.noise_weight_max >= 1.0:
            msg = f"noise_weight_max must be >= 1, got {self.noise_weight_max}"
            raise ValueError(msg)
        if self.tv_mode not in ("excess", "plain"):
            msg = f"tv_mode must be 'excess' or 'plain', got {self.tv_mode!r}"
            raise ValueError(msg)

    @classmethod
    def from_dict(cls, table: dict[str, Any]) -> LossConfig:
        """Build from a config-file table; unknown keys are an error naming them."""
        return cls(**checked_table(table, "loss", cls))

    def to_dict(self) -> dict:
        return asdict(self)


def noise_weight(
    noisy: torch.Tensor, clean: torch.Tensor, *, max_weight: float, window: int = 5
) -> torch.Tensor:
    """Per-pixel L1 weight that measures errors in units of the local noise.

    The stretch to network space compresses bright signal: at 100 sky sigmas the photon
    noise is about a tenth of the sky's in network units, so a plain L1 barely notices
    noise left on a galaxy core or a bright nebula, and a network trained with it leaves
    that noise in place (in linear units, where photometry and PSNR are measured, it is most
    of the error). The weight is the tile's typical noise over the local noise: ``w =
    clamp(median(s) / s, 1, max_weight)`` per tile and channel, with ``s`` the rms of
    ``noisy - clean`` over a ``window`` square. The sky and faint signal keep weight 1;
    a tile without noise (identity pairs) gets 1 everywhere. No gradient flows through it.

    Parameters
    ----------
    noisy, clean : Tensor
        (B, C, H, W) network input and target.
    max_weight : float
        Upper bound, >= 1; 1 gives weight 1 everywhere.
    window : int
        Odd side of the square for the local rms.

    Returns
    -------
    Tensor
        (B, C, H, W) weights in ``[1, max_weight]``.
    """
    if max_weight <= 1.0:
        return torch.ones_like(clean)
    with torch.no_grad():
        sq = (noisy.float() - clean.float()).square()
        local = F.avg_pool2d(sq, window, stride=1, padding=window // 2, count_include_pad=False)
        rms = local.sqrt()
        typical = rms.flatten(2).median(dim=2).values[..., None, None]
        w = typical / rms.clamp_min(1e-12)
        w = torch.where(typical > 0, w, torch.ones_like(w))
        return w.clamp(1.0, max_weight)


def star_weighted_l1(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    *,
    star_weight: float = 4.0,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean absolute error with star pixels weighted ``1 + star_weight`` times more.

    Stars are a few per cent of the pixels but what a denoiser must not damage; the
    weighted mean ``sum(w |p - t|) / sum(w)`` with ``w = 1 + star_weight * mask`` keeps the
    loss on the scale of a plain L1 (it equals it when ``star_weight`` is 0 or there are no
    stars).

    Parameters
    ----------
    pred, target : Tensor
        (B, C, H, W) network-space images.
    mask : Tensor
        (B, 1, H, W) soft star mask in [0, 1].
    star_weight : float
        Extra weight on stars, >= 0.
    weight : Tensor, optional
        (B, C, H, W) further per-pixel weights (:func:`noise_weight`), multiplied in.

    Returns
    -------
    Tensor
        Scalar, >= 0; 0 for identical images.
    """
    w = (1.0 + star_weight * mask).expand_as(pred)
    if weight is not None:
        w = w * weight
    return (w * (pred - target).abs()).sum() / w.sum()


def squash(y: torch.Tensor, scale: float = 4.0) -> torch.Tensor:
    """Map unbounded network space to (0, 1): ``(tanh(y / scale) + 1) / 2``.

    Network space is ``asinh((x - sky) / (softening * sigma))``: the sky sits at 0 with noise
    of about 1/3, faint structure within a few units and bright star cores near 10. SSIM
    needs a known data range; this squash gives one (1) while staying nearly linear over the
    sky and faint signal (slope 1 / (2 scale) at 0), where denoising matters, and keeping
    star cores from dominating the SSIM statistics.
    """
    return 0.5 * (torch.tanh(y / scale) + 1.0)


def ssim_index(pred: torch.Tensor, target: torch.Tensor, *, scale: float = 4.0) -> torch.Tensor:
    """SSIM of squashed copies (see :func:`squash`), data range 1, pytorch-msssim's Gaussian
    11 x 11 window (sigma 1.5), mean over batch and channels. Scalar in [-1, 1]."""
    return _ms_ssim(squash(pred, scale), squash(target, scale), data_range=1.0, size_average=True)


def ssim_loss(pred: torch.Tensor, target: torch.Tensor, *, scale: float = 4.0) -> torch.Tensor:
    """``1 - SSIM`` of the squashed images (:func:`ssim_index`); 0 for identical images.

    Images must be at least 11 x 11 (the SSIM window).
    """
    return 1.0 - ssim_index(pred, target, scale=scale)


def _off_star_mean(image: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return (image * weight).sum(dim=(2, 3)) / (weight.sum(dim=(2, 3)) + eps)


def brightness_consistency(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, *, eps: float = 1e-6
) -> torch.Tensor:
    """Difference of the mean off-star levels of prediction and target (flux preservation).

    Per image and channel, the mean over the pixels weighted by ``1 - mask`` (the sky and
    extended emission), then the absolute difference, averaged over batch and channels.
    A per-pixel L1 alone is minimised by the conditional median, which for the skewed
    Poisson noise of faint signal is biased low; this term pins the mean level, so the
    sky and nebulae keep their brightness. In network space the off-star signal is in the
    near-linear part of the asinh, so this is close to a linear flux difference.

    Parameters
    ----------
    pred, target : Tensor
        (B, C, H, W).
    mask : Tensor
        (B, 1, H, W) soft star mask in [0, 1].
    eps : float
        Guards an all-star tile.

    Returns
    -------
    Tensor
        Scalar, >= 0; 0 when the off-star means are equal.
    """
    off = 1.0 - mask
    return (_off_star_mean(pred, off, eps) - _off_star_mean(target, off, eps)).abs().mean()


def _gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def star_tv(
    pred: torch.Tensor,
    mask: torch.Tensor,
    *,
    reference: torch.Tensor | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Total variation of the prediction on the stars (suppresses ringing around stars).

    Anisotropic TV ``|dx| + |dy|`` of ``pred``, each difference weighted by the mean star mask
    of its two pixels and normalised by the mask's weight, so it is a per-star-pixel average
    independent of how many stars a tile holds; averaged over channels.

    With ``reference`` (the target), only the variation *beyond* the target's is counted,
    ``relu(|d pred| - |d target|)``: a star's own profile is not flattened (that would move
    its flux), only ripples and halos that the target does not have are penalised.

    Parameters
    ----------
    pred : Tensor
        (B, C, H, W).
    mask : Tensor
        (B, 1, H, W) soft star mask in [0, 1].
    reference : Tensor, optional
        (B, C, H, W) target for the excess mode.
    eps : float
        Guards a tile without stars (the term is then 0).

    Returns
    -------
    Tensor
        Scalar, >= 0; 0 on a flat prediction, and 0 in excess mode when ``pred`` equals
        ``reference``.
    """
    gx, gy = _gradients(pred)
    if reference is not None:
        rx, ry = _gradients(reference)
        gx = F.relu(gx.abs() - rx.abs())
        gy = F.relu(gy.abs() - ry.abs())
    else:
        gx, gy = gx.abs(), gy.abs()
    mx = 0.5 * (mask[..., :, 1:] + mask[..., :, :-1])
    my = 0.5 * (mask[..., 1:, :] + mask[..., :-1, :])
    channels = pred.shape[1]
    num = (gx * mx).sum() + (gy * my).sum()
    den = channels * (mx.sum() + my.sum()) + eps
    return num / den


def mask_bce(logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the star-mask logit against the soft mask, minus its floor.

    With a soft target ``m`` the cross-entropy is smallest, at the target's own entropy
    ``H(m)``, when ``sigmoid(logit) = m``; that constant is subtracted, so the value is the
    mean KL divergence: 0 for a perfect mask, with the gradient of the plain BCE.

    Parameters
    ----------
    logit : Tensor
        (B, 1, H, W) mask logits.
    target : Tensor
        (B, 1, H, W) soft mask in [0, 1].

    Returns
    -------
    Tensor
        Scalar, >= 0 up to rounding.
    """
    bce = F.binary_cross_entropy_with_logits(logit, target)
    t = target.clamp(1e-7, 1.0 - 1e-7)
    entropy = -(t * t.log() + (1.0 - t) * (1.0 - t).log()).mean()
    return bce - entropy.detach()


def total_loss(
    output: torch.Tensor,
    target: torch.Tensor,
    config: LossConfig | None = None,
    noisy: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The weighted training loss and each of its parts.

    Parameters
    ----------
    output : Tensor
        (B, 4, H, W) model output: 3 image channels then the star-mask logit.
    target : Tensor
        (B, 4, H, W): 3 clean image channels then the soft star mask in [0, 1].
    config : LossConfig, optional
        Weights; defaults to ``LossConfig()``.
    noisy : Tensor, optional
        (B, 3, H, W) network input; needed when ``config.noise_weight_max`` > 1.

    Returns
    -------
    loss : Tensor
        Scalar to minimise.
    parts : dict of Tensor
        Detached scalars ``l1``, ``ssim`` (the 1 - SSIM term), ``brightness``, ``tv``,
        ``mask`` and ``total``, unweighted except ``total``.
    """
    cfg = config or LossConfig()
    if output.shape != target.shape or output.shape[1] != 4:
        msg = (
            "output and target must both be (B, 4, H, W), "
            f"got {tuple(output.shape)} and {tuple(target.shape)}"
        )
        raise ValueError(msg)
    output = output.float()
    pred, logit = output[:, :3], output[:, 3:]
    clean, mask = target[:, :3], target[:, 3:]
    weight = None
    if cfg.noise_weight_max > 1.0:
        if noisy is None:
            msg = "noise_weight_max > 1 needs the noisy input (total_loss(..., noisy=x))"
            raise ValueError(msg)
        weight = noise_weight(noisy, clean, max_weight=cfg.noise_weight_max)
    parts = {
        "l1": star_weighted_l1(pred, clean, mask, star_weight=cfg.star_weight, weight=weight),
        "ssim": ssim_loss(pred, clean, scale=cfg.ssim_scale),
        "brightness": brightness_consistency(pred, clean, mask),
        "tv": star_tv(pred, mask, reference=clean if cfg.tv_mode == "excess" else None),
        "mask": mask_bce(logit, mask),
    }
    loss = (
        (1.0 - cfg.beta) * parts["l1"]
        + cfg.beta * parts["ssim"]
        + cfg.gamma * parts["brightness"]
        + cfg.delta * parts["tv"]
        + cfg.mask_weight * parts["mask"]
    )
    parts = {k: v.detach() for k, v in parts.items()}
    parts["total"] = loss.detach()
    return loss, parts
