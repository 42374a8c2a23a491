"""The fixed validation tiles of a run, its validation metrics and the epoch previews.

Validation metrics are computed in network space, where the model works (see README):
``psnr`` with the peak-to-peak range of each clean target tile as the peak, ``ssim`` on the
squashed copies the SSIM loss uses (data range 1), both over the validation tiles that carry
noise; ``psnr_input`` / ``ssim_input`` give the same for the noisy input, the baseline to
beat; ``identity_change`` is how much the model alters the identity / low-noise tiles, whose
target is their input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from training.config import Config
from training.data import Frame, TileDataset
from training.losses import ssim_index, total_loss

__all__ = ["ValidationSet", "save_preview", "validate"]


@dataclass
class ValidationSet:
    """The fixed validation tiles, made once.

    Attributes
    ----------
    inputs, targets : Tensor
        (N, 3, T, T) and (N, 4, T, T).
    denoise : Tensor
        (N,) bool: the target differs from the input (a noisy draw); False for the identity
        and low-noise pairs, whose target is the input itself.
    kinds, sources : list of str
        Each tile's noise draw and source (``sim``, ``real``, ``paired``).
    description : dict
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    denoise: torch.Tensor
    kinds: list[str]
    sources: list[str]
    description: dict

    def preview_indices(self, count: int) -> list[int]:
        """``count`` tiles for the previews: the first of each source, then in order."""
        firsts = [self.sources.index(s) for s in dict.fromkeys(self.sources)]
        rest = [i for i in range(len(self.sources)) if i not in firsts]
        return sorted((firsts + rest)[:count])

    @classmethod
    def build(cls, config: Config, real: list[Frame], paired: list[Frame]) -> ValidationSet:
        ds = TileDataset(
            config.data,
            split="val",
            length=config.run.val_samples,
            epoch=0,
            real_frames=real,
            paired_frames=paired,
        )
        samples = [ds.sample(i) for i in range(len(ds))]
        inputs = torch.stack([torch.from_numpy(s.input) for s in samples])
        targets = torch.stack([torch.from_numpy(s.target) for s in samples])
        kinds = [s.kind for s in samples]
        denoise = torch.tensor([k.split("+")[0] not in ("identity", "low_noise") for k in kinds])
        sources = [s.source for s in samples]
        return cls(inputs, targets, denoise, kinds, sources, ds.describe())


def _psnr_per_tile(pred: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of each tile, peak = the clean tile's peak-to-peak range (network space)."""
    mse = ((pred - clean) ** 2).flatten(1).mean(dim=1).clamp_min(1e-12)
    flat = clean.flatten(1)
    peak = (flat.max(dim=1).values - flat.min(dim=1).values).clamp_min(1e-6)
    return 10.0 * torch.log10(peak**2 / mse)


def _mask_iou(logit: torch.Tensor, mask: torch.Tensor) -> float:
    p, t = torch.sigmoid(logit) > 0.5, mask > 0.5
    union = (p | t).sum().item()
    return 1.0 if union == 0 else (p & t).sum().item() / union


@torch.no_grad()
def validate(
    model: torch.nn.Module, val: ValidationSet, config: Config, device: str
) -> tuple[dict[str, float], torch.Tensor]:
    """Validation loss parts, PSNR, SSIM, identity change and mask IoU; also the outputs.

    PSNR and SSIM (network space, see the module docstring) are over the tiles that carry
    noise to remove; ``identity_change`` is the mean absolute change the model makes to the
    identity and low-noise tiles, whose target is their input (0 is perfect).
    """
    model.eval()
    outs = []
    for start in range(0, len(val.inputs), config.run.val_batch_size):
        x = val.inputs[start : start + config.run.val_batch_size].to(device)
        outs.append(model(x).float().cpu())
    model.train()
    out = torch.cat(outs)
    x = val.inputs[:, :3]  # without the noise map, if any
    _, parts = total_loss(out, val.targets, config.loss, noisy=x)
    clean = val.targets[:, :3]
    scale = config.loss.ssim_scale
    metrics = {f"val_{k}": float(v) for k, v in parts.items()}
    noisy = val.denoise
    if noisy.any():
        p, c, xi = out[noisy, :3], clean[noisy], x[noisy]
        metrics.update(
            psnr=float(_psnr_per_tile(p, c).mean()),
            ssim=float(ssim_index(p, c, scale=scale)),
            psnr_input=float(_psnr_per_tile(xi, c).mean()),
            ssim_input=float(ssim_index(xi, c, scale=scale)),
        )
    if (~noisy).any():
        metrics["identity_change"] = float((out[~noisy, :3] - x[~noisy]).abs().mean())
    metrics["mask_iou"] = _mask_iou(out[:, 3], val.targets[:, 3])
    return metrics, out


def _display(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(C, T, T) network space -> (T, T, 3) uint8 with a fixed black and white point."""
    v = np.clip((a - lo) / (hi - lo), 0.0, 1.0)
    rgb = np.repeat(v, 3, axis=0) if v.shape[0] == 1 else v
    return (np.moveaxis(rgb, 0, -1) * 255.0 + 0.5).astype(np.uint8)


def save_preview(
    path: Path,
    inputs: torch.Tensor,
    outputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    softening: float,
) -> Path:
    """PNG grid, one row per tile: noisy | denoised | clean | mask (predicted) | mask (target).

    The three images share a display range: black 3 noise sigmas below the sky
    (``-3 / softening`` in network space), white at the clean tile's 99.5th percentile.
    """
    from PIL import Image, ImageDraw

    rows = []
    t = inputs.shape[-1]
    zoom = max(1, math.ceil(96 / t))
    gap = 4
    for x, o, y in zip(inputs.numpy(), outputs.numpy(), targets.numpy(), strict=True):
        lo = -3.0 / softening
        hi = max(float(np.percentile(y[:3], 99.5)), lo + 1.0)
        mask_pred = 1.0 / (1.0 + np.exp(-o[3:4]))
        panels = [
            _display(x, lo, hi),
            _display(o[:3], lo, hi),
            _display(y[:3], lo, hi),
            _display(mask_pred, 0.0, 1.0),
            _display(y[3:4], 0.0, 1.0),
        ]
        panels = [p.repeat(zoom, axis=0).repeat(zoom, axis=1) for p in panels]
        spacer = np.full((t * zoom, gap, 3), 40, np.uint8)
        row = np.concatenate([c for p in panels for c in (p, spacer)][:-1], axis=1)
        rows.append(row)
        rows.append(np.full((gap, row.shape[1], 3), 40, np.uint8))
    header = np.full((14, rows[0].shape[1], 3), 0, np.uint8)
    grid = Image.fromarray(np.concatenate([header, *rows[:-1]], axis=0))
    draw = ImageDraw.Draw(grid)
    for i, label in enumerate(("noisy", "denoised", "clean", "mask (pred)", "mask (target)")):
        draw.text((i * (t * zoom + gap) + 2, 1), label, fill=(230, 230, 230))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path
