"""The fine-tuning loop: the loss in linear units, validation, early stopping, the time budget.

The loss. The network works in asinh-stretched space, but a noisy target passed through the
stretch is biased (Jensen: ``E[asinh(t)] != asinh(E[t])``), and a Noise2Noise model trained
against it learns that bias. So the output goes back to LINEAR units with the stretch's exact
inverse, ``x = background + scale * sinh(y)``, and is compared with the linear target:

    loss = mean(rho(sqrt(w) * (x - target))),   w = 1 / (variance(level) * (1 + z(level)^2))

where ``rho(e) = e^2`` for ``|e| <= 6`` and linear beyond (a cosmic ray or a hot pixel in the
target does not steer the step; for noise with tails that light the bias is negligible).
``level`` is the INPUT's local mean, ``variance`` the target's noise level function there
and ``z`` the level in stretch units (the second factor balances bright stars against the
sky; see :mod:`~napari_astrodenoise.finetune.data`). The weight never depends on the
target's own noisy value, so the optimum is ``E[target | input]``: the mean of what the sky
gives. On the sky the loss of a perfect denoiser is about 1 (the target's own noise), of the
identity about 2; star cores count less.

A single frame has no second frame to learn from: Neighbor2Neighbor (Huang et al., CVPR
2021) cuts two sub-images from each 2 x 2 cell, learns one from the other with the same loss,
and adds their regulariser against the network's output on the whole tile. This needs white
noise, which the caller checks.

The star-mask head is kept near the base model's: its logit is pulled towards the base's
with a small cross-entropy, since the denoising loss says nothing about it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_astrodenoise.core.allocator import batch_memory_kept
from napari_astrodenoise.finetune.data import Batch, TileSampler

#: rho's switch from quadratic to linear, in noise sigmas
HUBER_SIGMAS = 6.0
#: weight of the star-mask cross-entropy against the base model's mask
MASK_WEIGHT = 0.05
#: weight of the Neighbor2Neighbor regulariser
N2N_GAMMA = 1.0
#: on a plateau (``patience`` validations with no improvement) the learning rate is
#: multiplied by this and training goes on from the best weights, this many times before
#: stopping early
LR_DECAY = 0.3
LR_DECAYS = 2
#: the weights validated and kept are an exponential moving average of the trained ones, with
#: this decay per step (a time constant of 200 steps, four validations): a Noise2Noise target
#: is as noisy as the input, and the average smooths the steps' noise out. Over the first
#: steps the decay is ``(1 + step) / (10 + step)`` when that is less, so the average follows
#: the training closely while it moves fast. 0 keeps the trained weights themselves
EMA_DECAY = 0.995


@dataclass(frozen=True)
class TrainSettings:
    """How long and how fast to train (validated by the caller)."""

    batch_size: int
    learning_rate: float
    budget_s: float
    max_steps: int | None
    validate_every: int
    patience: int
    validation_tiles: int
    precision: str = "fp32"  # "fp32" or "bf16": the network's inner levels (see MonoNet)


@dataclass
class TrainEvent:
    """What the loop reports: a step or a validation."""

    kind: str  # "baseline" (the base model's validation, step 0), "step" or "validation"
    step: int
    loss: float | None
    val_loss: float | None
    best_val_loss: float
    elapsed_s: float
    eta_s: float | None


@dataclass
class TrainOutcome:
    """The loop's return value."""

    state: dict
    val_before: float
    val_after: float
    best_step: int
    steps: int
    tiles_seen: int
    stopped: str  # "time", "steps" or "early"
    train_s: float
    lr_decays: int = 0  # plateaus met, each multiplying the learning rate by LR_DECAY
    average_decay: float = 0.0  # EMA_DECAY of the run (0: the trained weights were kept)


def weighted_loss(
    torch: Any, pred: Any, target: Any, weight: Any, background: Any, scale: Any
) -> Any:
    """The loss of network-space predictions against linear targets (see the module).

    Parameters
    ----------
    torch : module
    pred : Tensor
        (B, 1, T, T) network-space output.
    target, weight : Tensor
        (B, 1, T, T) linear target and ``1 / variance`` (0: pixel left out).
    background, scale : Tensor
        (B,) the input's stretch.
    """
    bg = background.reshape(-1, 1, 1, 1)
    linear = bg + scale.reshape(-1, 1, 1, 1) * torch.sinh(pred)
    e = (linear - target) * torch.sqrt(weight)
    a = e.abs()
    d = HUBER_SIGMAS
    rho = torch.where(a <= d, e * e, 2.0 * d * a - d * d)
    return (rho * (weight > 0)).sum() / (weight > 0).sum().clamp(min=1)


class MonoNet:
    """Runs a ResUNet on mono planes as inference does: replicated, outputs averaged.

    With ``precision="bf16"`` the network runs as inference's bf16 does (``ResUNet.forward``
    with ``inner_dtype``): the levels between the first and last convolutions in bfloat16
    under autocast, the weights, the image's own sum and the loss in float32. On a CPU with
    AVX512-BF16 the network's forward and backward take about 0.6 of the float32 time.
    """

    def __init__(self, module: Any, precision: str = "fp32") -> None:
        cfg = module.config
        self.module = module
        self.channels = cfg.in_channels
        self.mask_head = cfg.mask_head
        self.inner_dtype = None
        if precision == "bf16":
            import torch

            self.inner_dtype = torch.bfloat16

    def __call__(self, y: Any) -> tuple[Any, Any]:
        """(B, 1, T, T) -> (image (B, 1, T, T), mask logit (B, 1, T, T) or None)."""
        # a contiguous copy: convolutions on an expanded (stride 0) tensor are ~5x slower
        x = y.expand(-1, self.channels, -1, -1).contiguous() if self.channels != 1 else y
        out = self.module(x, inner_dtype=self.inner_dtype)
        image = out[:, : self.channels].mean(dim=1, keepdim=True)
        mask = out[:, self.channels : self.channels + 1] if self.mask_head else None
        return image, mask


def _tensors(torch: Any, batch: Batch, device: str) -> dict:
    out = {}
    for key in ("net", "target", "weight", "background", "scale", "full", "sub1", "sub2"):
        value = getattr(batch, key)
        if value is not None:
            out[key] = torch.from_numpy(np.ascontiguousarray(value)).to(device)
    return out


def _gather(image: Any, index: Any) -> Any:
    """(B, 1, T, T) at flat indices (B, t, t) -> (B, 1, t, t)."""
    b = image.shape[0]
    flat = image.reshape(b, -1)
    return flat.gather(1, index.reshape(b, -1)).reshape(b, 1, *index.shape[1:])


def batch_loss(torch: Any, net: MonoNet, t: dict, *, train: bool) -> tuple[Any, Any]:
    """(denoising loss, network's mask logit) of one batch (tensors from ``_tensors``)."""
    pred, mask = net(t["net"])
    loss = weighted_loss(torch, pred, t["target"], t["weight"], t["background"], t["scale"])
    if train and "full" in t:  # Neighbor2Neighbor regulariser
        with torch.no_grad():
            full, _ = net(t["full"])
        bg = t["background"].reshape(-1, 1, 1, 1)
        sc = t["scale"].reshape(-1, 1, 1, 1)
        lin_full = bg + sc * torch.sinh(full)
        gap = _gather(lin_full, t["sub1"]) - _gather(lin_full, t["sub2"])
        lin_pred = bg + sc * torch.sinh(pred)
        w = t["weight"]
        reg = ((lin_pred - t["target"] - gap) ** 2 * w).sum() / (w > 0).sum().clamp(min=1)
        loss = loss + N2N_GAMMA * reg
    return loss, mask


def validation_loss(torch: Any, net: MonoNet, batches: list[dict]) -> float:
    """Mean denoising loss over fixed validation batches."""
    net.module.eval()
    total = 0.0
    with torch.inference_mode():
        for t in batches:
            loss, _ = batch_loss(torch, net, t, train=False)
            total += float(loss)
    return total / len(batches)


def train(
    module: Any,
    sampler: TileSampler,
    settings: TrainSettings,
    *,
    rng: np.random.Generator,
    device: str,
    started: float,
) -> Generator[TrainEvent, None, TrainOutcome]:
    """Fine-tune ``module`` in place on tiles from ``sampler``; yields a TrainEvent per step.

    The first event (``"baseline"``, step 0) carries the base model's validation loss.

    Stops at the time budget (``started`` is the ``time.perf_counter()`` the budget counts
    from), after ``max_steps``, or early: when ``patience`` validations in a row bring no
    improvement, training goes on from the best weights at ``LR_DECAY`` times the learning
    rate, up to ``LR_DECAYS`` times, and the next such plateau stops it. What is validated is
    the moving average of the weights (``EMA_DECAY``), and the module ends with the average
    of the best validation (the base's weights if none improved). While it runs, each step's
    freed activations are kept for the next instead of being faulted in afresh
    (`batch_memory_kept`).
    """
    with batch_memory_kept():
        return (
            yield from _train(module, sampler, settings, rng=rng, device=device, started=started)
        )


def _train(
    module: Any,
    sampler: TileSampler,
    settings: TrainSettings,
    *,
    rng: np.random.Generator,
    device: str,
    started: float,
) -> Generator[TrainEvent, None, TrainOutcome]:
    """`train`'s body."""
    import torch

    base = MonoNet(copy.deepcopy(module).eval(), settings.precision)
    for p in base.module.parameters():
        p.requires_grad_(False)
    net = MonoNet(module, settings.precision)
    # the weights validated and kept: the moving average, or the trained ones themselves
    averaging = EMA_DECAY > 0
    kept = copy.deepcopy(module).eval().requires_grad_(False) if averaging else module
    judged = MonoNet(kept, settings.precision)
    val_batches = _validation_batches(torch, sampler, settings, rng, device)
    best = validation_loss(torch, judged, val_batches)
    val_before, best_state, best_step = best, _state(module), 0
    optimiser = torch.optim.Adam(module.parameters(), lr=settings.learning_rate)
    step, stale, stopped, tiles, losses, decays = 0, 0, "time", 0, [], 0
    elapsed = time.perf_counter() - started
    yield TrainEvent("baseline", 0, None, best, best, elapsed, _eta(settings, 0, elapsed, 0.0))
    train_start = time.perf_counter()
    while True:
        now = time.perf_counter()
        if now - started >= settings.budget_s:
            stopped = "time"
            break
        if settings.max_steps is not None and step >= settings.max_steps:
            stopped = "steps"
            break
        module.train()
        t = _tensors(torch, sampler.sample(rng, settings.batch_size), device)
        loss, mask = batch_loss(torch, net, t, train=True)
        total = loss + _mask_term(torch, base, t, mask)
        optimiser.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        optimiser.step()
        if averaging:
            _average_into(torch, kept, module, min(EMA_DECAY, (1 + step) / (10 + step)))
        step += 1
        tiles += settings.batch_size
        losses.append(loss.item())
        val = None
        if step % settings.validate_every == 0:
            val = validation_loss(torch, judged, val_batches)
            # the validation tiles are fixed, so any decrease is real progress on held-out
            # sky: it is kept, and only validations without one count towards patience
            if val < best:
                best, best_state, best_step, stale = val, _state(kept), step, 0
            else:
                stale += 1
        elapsed = time.perf_counter() - started
        yield TrainEvent(
            "validation" if val is not None else "step",
            step,
            float(np.mean(losses[-20:])),
            val,
            best,
            elapsed,
            _eta(settings, step, elapsed, time.perf_counter() - train_start),
        )
        if stale >= settings.patience:
            if decays == LR_DECAYS:
                stopped = "early"
                break
            decays, stale = decays + 1, 0
            module.load_state_dict(best_state)
            if averaging:
                kept.load_state_dict(best_state)
            for group in optimiser.param_groups:
                group["lr"] *= LR_DECAY
    if step and step % settings.validate_every:  # the last steps' weights get a say too
        val = validation_loss(torch, judged, val_batches)
        if val < best:
            best, best_state, best_step = val, _state(kept), step
    module.load_state_dict(best_state)
    module.eval()
    return TrainOutcome(
        best_state,
        val_before,
        best,
        best_step,
        step,
        tiles,
        stopped,
        time.perf_counter() - train_start,
        decays,
        EMA_DECAY if averaging else 0.0,
    )


def _mask_term(torch: Any, base: MonoNet, t: dict, mask: Any) -> Any:
    """Cross-entropy of the mask logit against the base model's mask probability."""
    if mask is None:
        return 0.0
    with torch.no_grad():
        _, base_mask = base(t["net"])
    target = torch.sigmoid(base_mask)
    return MASK_WEIGHT * torch.nn.functional.binary_cross_entropy_with_logits(mask, target)


def _validation_batches(
    torch: Any, sampler: TileSampler, settings: TrainSettings, rng: np.random.Generator, device
) -> list[dict]:
    """The fixed validation tiles, drawn once from the held-out strip."""
    out, left = [], settings.validation_tiles
    while left > 0:
        n = min(left, max(settings.batch_size, 8))
        out.append(_tensors(torch, sampler.sample(rng, n, validation=True), device))
        left -= n
    return out


def _average_into(torch: Any, average: Any, module: Any, decay: float) -> None:
    """``average <- decay * average + (1 - decay) * module``, parameter by parameter."""
    with torch.no_grad():
        for a, p in zip(average.parameters(), module.parameters(), strict=True):
            a.lerp_(p.detach(), 1.0 - decay)
        for a, b in zip(average.buffers(), module.buffers(), strict=True):
            a.copy_(b)


def _state(module: Any) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _eta(settings: TrainSettings, step: int, elapsed: float, training: float) -> float:
    """Seconds left: to the time budget, or to ``max_steps`` if that comes first."""
    left = max(settings.budget_s - elapsed, 0.0)
    if settings.max_steps is not None and step:
        left = min(left, (settings.max_steps - step) * training / step)
    return left
