"""Train the ResUNet denoiser from a TOML configuration: ``python -m training.train --config C``.

One run writes everything into its run folder (``--out``, default ``runs/<config name>``):
``config.json`` (the resolved configuration), ``metrics.jsonl`` (one line per epoch: every
loss part, validation PSNR / SSIM / mask IoU, learning rate, throughput), ``steps.jsonl``
(running losses every ``log_every`` steps), ``previews/epoch_NNN.png`` (noisy | denoised |
clean | predicted mask | target mask for a few fixed validation tiles), ``checkpoint_last.pt``
and ``checkpoint_best.pt`` (model, optimizer, scheduler, counters; by lowest validation
loss) and ``summary.json`` at the end. ``--resume`` continues from ``checkpoint_last.pt`` at
the next epoch; ``--export DIR`` / ``--ship`` export the best checkpoint when training ends
(see ``training.export``).

Validation metrics are computed in network space, where the model works (see README):
``psnr`` with the peak-to-peak range of each clean target tile as the peak, ``ssim`` on the
squashed copies the SSIM loss uses (data range 1), both over the validation tiles that carry
noise; ``psnr_input`` / ``ssim_input`` give the same for the noisy input, the baseline to
beat; ``identity_change`` is how much the model alters the identity / low-noise tiles, whose
target is their input.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from napari_astrodenoise.core.model import ResUNet, ResUNetConfig, count_parameters
from napari_astrodenoise.core.weights import resolve_device
from training.config_tables import checked_table
from training.data import (
    REPO_ROOT,
    DataConfig,
    Frame,
    TileDataset,
    load_fits_folder,
    load_paired_folder,
)
from training.losses import LossConfig, ssim_index, total_loss

__all__ = ["Config", "RunConfig", "load_config", "main", "parse_config", "train"]

log = logging.getLogger("training")

CHECKPOINT_LAST = "checkpoint_last.pt"
CHECKPOINT_BEST = "checkpoint_best.pt"
SCHEDULES = ("cosine", "step", "constant")


# --------------------------------------------------------------------------------------------
# configuration


@dataclass
class RunConfig:
    """The ``[run]`` table: the optimisation and the loop.

    Attributes
    ----------
    name : str
        Run name (default folder ``runs/<name>``).
    seed : int
        Seed of the weights' initialisation and (unless ``[data]`` sets its own) of the data.
    threads : int
        ``torch.set_num_threads``; 0 leaves torch's default.
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"mps"``.
    epochs, steps_per_epoch, batch_size : int
        ``epochs * steps_per_epoch`` optimizer steps of ``batch_size`` fresh tiles each.
    lr : float
        Adam's peak learning rate (default 1e-4).
    weight_decay : float
        Adam's L2 penalty (default 0).
    schedule : {"cosine", "step", "constant"}
        After a linear warm-up of ``warmup_steps``: cosine decay to ``lr * lr_min_factor``,
        or multiply by ``step_gamma`` every ``step_epochs`` epochs, or constant.
    grad_clip : float
        Clip the gradient norm to this (0: no clipping).
    num_workers : int
        Data-loader worker processes (0: tiles are made in the training process).
    val_samples, val_batch_size : int
        Size of the fixed validation set and its batch.
    validate_first : bool
        Validate before the first epoch (epoch 0: the untrained, identity network, which
        gives the noisy input's scores).
    preview_samples : int
        Validation tiles shown in each epoch's preview PNG.
    amp : bool
        bfloat16 autocast on CUDA (ignored elsewhere).
    log_every : int
        Steps between lines of ``steps.jsonl``.
    init : str
        Start from these weights instead of a random initialisation (fine-tuning): a run's
        checkpoint (``runs/quick/checkpoint_best.pt``) or a model the engine loads (a
        registry name such as ``"astrodenoise-quick"``, or a ``.safetensors`` / ``.json``
        path). The architecture must match ``[model]``; the optimizer and schedule start
        fresh. ``""`` (default): random initialisation.
    """

    name: str = "run"
    seed: int = 0
    threads: int = 0
    device: str = "auto"
    epochs: int = 10
    steps_per_epoch: int = 200
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup_steps: int = 0
    lr_min_factor: float = 0.05
    step_epochs: int = 10
    step_gamma: float = 0.5
    grad_clip: float = 1.0
    num_workers: int = 0
    val_samples: int = 64
    val_batch_size: int = 16
    validate_first: bool = True
    preview_samples: int = 4
    amp: bool = False
    log_every: int = 50
    init: str = ""

    def __post_init__(self) -> None:
        for name in ("epochs", "steps_per_epoch", "batch_size", "val_samples", "val_batch_size"):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 1:
                msg = f"run.{name} must be an integer >= 1, got {getattr(self, name)}"
                raise ValueError(msg)
        if self.schedule not in SCHEDULES:
            msg = f"run.schedule must be one of {SCHEDULES}, got {self.schedule!r}"
            raise ValueError(msg)
        if not self.lr > 0:
            msg = f"run.lr must be > 0, got {self.lr}"
            raise ValueError(msg)
        if self.num_workers < 0 or self.threads < 0 or self.warmup_steps < 0:
            msg = "run.num_workers, run.threads and run.warmup_steps must be >= 0"
            raise ValueError(msg)


@dataclass
class Config:
    """A whole training configuration (one TOML file)."""

    run: RunConfig
    model: ResUNetConfig
    data: DataConfig
    loss: LossConfig
    export: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready dict; ``parse_config(config.to_dict())`` rebuilds it."""
        data = self.data.to_dict()
        noise, sky = data.pop("noise"), data.pop("sky")
        return {
            "run": asdict(self.run),
            "model": {k: v for k, v in self.model.to_dict().items() if k != "type"},
            "data": data,
            "noise": noise,
            "sky": sky,
            "loss": self.loss.to_dict(),
            "export": dict(self.export),
        }


def _table(raw: dict, name: str, cls: type) -> dict:
    return checked_table(raw.get(name, {}), name, cls)


def parse_config(raw: dict) -> Config:
    """Build a :class:`Config` from the tables of a TOML file (or ``Config.to_dict()``).

    Tables: ``[run]``, ``[model]`` (``ResUNetConfig`` fields), ``[data]`` (``DataConfig``),
    ``[noise]`` (``NoiseConfig`` fields), ``[sky]`` (``SkyConfig`` overrides), ``[loss]``
    (``LossConfig``), ``[export]`` (``name``, ``description``). Unknown tables or keys are an
    error naming them.
    """
    extra = sorted(set(raw) - {"run", "model", "data", "noise", "sky", "loss", "export"})
    if extra:
        msg = f"unknown tables {extra} in the configuration"
        raise ValueError(msg)
    run = RunConfig(**_table(raw, "run", RunConfig))
    model = ResUNetConfig(**_table(raw, "model", ResUNetConfig))
    data_table = dict(raw.get("data", {}))
    data_table.setdefault("seed", run.seed)
    data_table["noise"] = dict(raw.get("noise", {}))
    data_table["sky"] = dict(raw.get("sky", {}))
    data = DataConfig.from_dict(data_table)
    loss = LossConfig.from_dict(dict(raw.get("loss", {})))
    if model.in_channels != 3 or not model.mask_head:
        msg = "training needs model.in_channels = 3 and model.mask_head = true"
        raise ValueError(msg)
    if model.noise_channel != data.noise_map:
        msg = (
            f"model.noise_channel ({model.noise_channel}) and data.noise_map "
            f"({data.noise_map}) must agree: the noise map is the model's extra input"
        )
        raise ValueError(msg)
    return Config(run=run, model=model, data=data, loss=loss, export=dict(raw.get("export", {})))


def load_config(path: str | os.PathLike) -> Config:
    """Read and check a TOML configuration file."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    with open(path, "rb") as fh:
        raw = tomllib.load(fh)
    raw.setdefault("run", {}).setdefault("name", Path(path).stem)
    return parse_config(raw)


# --------------------------------------------------------------------------------------------
# pieces of the loop


def lr_lambda(run: RunConfig) -> Callable[[int], float]:
    """Learning-rate factor per optimizer step: linear warm-up, then the schedule."""
    total = run.epochs * run.steps_per_epoch
    warm = run.warmup_steps

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if run.schedule == "constant":
            return 1.0
        if run.schedule == "step":
            return run.step_gamma ** (step // max(1, run.step_epochs * run.steps_per_epoch))
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return run.lr_min_factor + (1.0 - run.lr_min_factor) * 0.5 * (
            1.0 + math.cos(math.pi * progress)
        )

    return factor


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # tiles are numpy work; keep the cores for the training process


def _loader(dataset: TileDataset, batch_size: int, num_workers: int, device: str) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,  # every index is an independent random draw already
        num_workers=num_workers,
        drop_last=True,
        pin_memory=device.startswith("cuda"),
        worker_init_fn=_worker_init if num_workers else None,
        prefetch_factor=4 if num_workers else None,
    )


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


def _save_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: dict,
    config: Config,
) -> None:
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "state": state,
        "config": config.to_dict(),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint written by :func:`train` (tensors and plain Python values only)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def _append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def _train_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loader: DataLoader,
    config: Config,
    device: str,
    state: dict,
    out_dir: Path,
    progress: bool,
) -> dict[str, float]:
    """One epoch of optimizer steps; returns the mean of each loss part and timings."""
    from tqdm import tqdm

    run = config.run
    sums: dict[str, float] = {}
    n = 0
    data_time = 0.0
    start = time.perf_counter()
    tick = start
    amp = run.amp and device.startswith("cuda")
    bar = tqdm(
        total=run.steps_per_epoch,
        desc=f"epoch {state['epoch'] + 1}/{run.epochs}",
        disable=not progress,
        mininterval=0.5 if sys.stderr.isatty() else 30.0,
        dynamic_ncols=True,
    )
    for x, y in loader:
        data_time += time.perf_counter() - tick
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=amp):
            out = model(x)
        loss, parts = total_loss(out, y, config.loss, noisy=x[:, :3])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if run.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), run.grad_clip)
        optimizer.step()
        scheduler.step()
        state["step"] += 1
        n += 1
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        bar.update(1)
        bar.set_postfix(loss=f"{sums['total'] / n:.4f}", refresh=False)
        if state["step"] % run.log_every == 0:
            record = {"step": state["step"], "lr": scheduler.get_last_lr()[0]}
            record.update({k: float(v) for k, v in parts.items()})
            _append_jsonl(out_dir / "steps.jsonl", record)
        tick = time.perf_counter()
    bar.close()
    elapsed = time.perf_counter() - start
    means = {f"train_{k}": v / max(n, 1) for k, v in sums.items()}
    means.update(
        steps=n,
        epoch_seconds=elapsed,
        data_wait_seconds=data_time,
        tiles_per_second=n * run.batch_size / max(elapsed, 1e-9),
    )
    return means


def _build(
    config: Config, device: str
) -> tuple[ResUNet, torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    torch.manual_seed(config.run.seed)
    model = ResUNet(config.model).to(device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.run.lr, weight_decay=config.run.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config.run))
    return model, optimizer, scheduler


def initial_weights(source: str, config: ResUNetConfig) -> tuple[dict, dict]:
    """State dict and a provenance record of ``[run] init`` (see :class:`RunConfig`).

    The record names the source, its sha256 (models) and the training it already had
    (epochs, steps, tiles seen, wall time, device), so that an exported fine-tune states its
    whole history.
    """
    if source.endswith(".pt"):
        ckpt = load_checkpoint(source)
        arch = ckpt["config"]["model"]
        state = ckpt["state"]
        before = {
            "epochs": state["epoch"],
            "steps": state["step"],
            "tiles_seen": state["step"] * ckpt["config"]["run"]["batch_size"],
            "wall_time_s": round(state["wall_time"], 1),
        }
        weights, record = ckpt["model"], {"source": source, **before}
    else:
        from napari_astrodenoise.core.weights import load_model

        loaded = load_model(source, device="cpu")
        arch = {k: v for k, v in loaded.module.config.to_dict().items() if k != "type"}
        meta = loaded.config.get("training", {})
        before = {k: meta[k] for k in ("epochs", "steps", "tiles_seen", "wall_time_s", "device")}
        if "init" in meta:  # the model was itself a fine-tune
            before["init"] = meta["init"]
        weights = loaded.module.state_dict()
        record = {"source": source, "name": loaded.name, "sha256": loaded.sha256, **before}
    wanted = {k: v for k, v in config.to_dict().items() if k != "type"}
    arch = {"noise_channel": False, **arch}
    widen = config.noise_channel and not arch["noise_channel"]
    if widen:
        # a model without the noise channel starts one with it: zero weights on the new
        # input, so the network starts as the same function
        arch["noise_channel"] = True
        head = weights["head.weight"]
        weights = dict(weights)
        weights["head.weight"] = torch.cat([head, torch.zeros_like(head[:, :1])], dim=1)
        record["widened"] = "noise channel added with zero weights"
    if arch != wanted:
        msg = f"run.init {source!r} has architecture {arch}, the config asks for {wanted}"
        raise ValueError(msg)
    return weights, record


def _check_resume(stored: dict, config: Config) -> None:
    # a checkpoint from before the noise channel existed has none
    if {"noise_channel": False, **stored["model"]} != config.to_dict()["model"]:
        msg = f"cannot resume: the checkpoint's model {stored['model']} differs from the config's"
        raise ValueError(msg)
    for table in ("data", "noise", "sky", "loss"):
        if stored.get(table) != config.to_dict()[table]:
            log.warning("resuming with a changed [%s] table", table)


# --------------------------------------------------------------------------------------------
# the loop


def train(
    config: Config,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    device: str | None = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> dict:
    """Train (or continue training) a model and write the run folder.

    Parameters
    ----------
    config : Config
    out_dir : path-like
        The run folder; created if needed. Without ``resume`` it must not hold a checkpoint.
    resume : bool
        Continue from ``out_dir/checkpoint_last.pt`` at the next epoch (``config.run.epochs``
        may have been raised to train longer).
    device : str, optional
        Overrides ``config.run.device``.
    progress : bool
        Show a tqdm progress bar.
    stop_after : int, optional
        Stop after this epoch (the schedule still spans ``config.run.epochs``); resume later
        to go on exactly as an uninterrupted run would.

    Returns
    -------
    dict
        The summary also written to ``summary.json``: epochs, steps, wall time, device, the
        last and best validation metrics, parameters.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = config.run
    if run.threads:
        torch.set_num_threads(run.threads)
    device = resolve_device(device or run.device)
    if device == "cpu":
        torch.set_flush_denormal(True)  # denormal floats can slow CPU convolutions 10x
    model, optimizer, scheduler = _build(config, device)
    state: dict[str, Any] = {"epoch": 0, "step": 0, "wall_time": 0.0, "best": None, "history": []}
    last = out / CHECKPOINT_LAST
    if resume:
        if not last.is_file():
            msg = f"nothing to resume: {last} does not exist"
            raise FileNotFoundError(msg)
        ckpt = load_checkpoint(last)
        _check_resume(ckpt["config"], config)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        state = ckpt["state"]
        log.info("resuming %s at epoch %d, step %d", out, state["epoch"] + 1, state["step"])
    elif last.exists():
        msg = f"{out} already holds a run; pass --resume to continue it or choose another --out"
        raise FileExistsError(msg)
    else:
        if run.init:
            weights, state["init"] = initial_weights(run.init, config.model)
            model.load_state_dict(weights)
            log.info("weights from %s (%s)", run.init, state["init"])
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")

    t0 = time.perf_counter()
    wall_before = state["wall_time"]
    d = config.data
    real = load_fits_folder(
        d.fits_dir, tile=d.tile, binning=d.real_bin, fraction=d.val_fraction, seed=d.seed
    )
    paired = load_paired_folder(
        d.paired_dir, tile=d.tile, binning=d.paired_bin, fraction=d.val_fraction, seed=d.seed
    )
    val = ValidationSet.build(config, real, paired)
    train_desc = TileDataset(
        config.data, split="train", length=1, real_frames=real, paired_frames=paired
    ).describe()
    state["data"] = {"train": train_desc, "val": val.description}
    log.info(
        "device %s, %d threads, %d parameters; sources %s; %d real frames, %d pairs",
        device,
        torch.get_num_threads(),
        count_parameters(model),
        train_desc["source_p"],
        len(real),
        len(paired),
    )
    preview = val.preview_indices(min(run.preview_samples, run.val_samples))

    nan = float("nan")

    def finish_epoch(epoch: int, record: dict) -> None:
        metrics, outputs = validate(model, val, config, device)
        record.update(metrics)
        record.update(epoch=epoch, step=state["step"], lr=scheduler.get_last_lr()[0])
        state["wall_time"] = wall_before + time.perf_counter() - t0
        record["wall_time"] = state["wall_time"]
        if preview:
            save_preview(
                out / "previews" / f"epoch_{epoch:03d}.png",
                val.inputs[preview, :3],
                outputs[preview],
                val.targets[preview],
                softening=config.data.softening,
            )
        state["epoch"] = epoch
        state["history"].append(record)
        is_best = epoch > 0 and (
            state["best"] is None or record["val_total"] < state["best"]["val_total"]
        )
        if is_best:
            state["best"] = dict(record)
        _append_jsonl(out / "metrics.jsonl", record)
        _save_checkpoint(last, model, optimizer, scheduler, state, config)
        if is_best:
            _save_checkpoint(out / CHECKPOINT_BEST, model, optimizer, scheduler, state, config)
        log.info(
            "epoch %d/%d step %d: train %.4f val %.4f | PSNR %.2f dB (input %.2f) SSIM %.4f "
            "(input %.4f) identity change %.4f mask IoU %.3f | %.1f tiles/s | %.0f s",
            epoch,
            run.epochs,
            state["step"],
            record.get("train_total", nan),
            record["val_total"],
            record.get("psnr", nan),
            record.get("psnr_input", nan),
            record.get("ssim", nan),
            record.get("ssim_input", nan),
            record.get("identity_change", nan),
            record["mask_iou"],
            record.get("tiles_per_second", nan),
            state["wall_time"],
        )

    if state["epoch"] == 0 and not state["history"] and run.validate_first:
        finish_epoch(0, {})
    last_epoch = run.epochs if stop_after is None else min(run.epochs, stop_after)
    for epoch in range(state["epoch"] + 1, last_epoch + 1):
        dataset = TileDataset(
            config.data,
            split="train",
            length=run.steps_per_epoch * run.batch_size,
            epoch=epoch,
            real_frames=real,
            paired_frames=paired,
        )
        loader = _loader(dataset, run.batch_size, run.num_workers, device)
        record = _train_epoch(
            model, optimizer, scheduler, loader, config, device, state, out, progress
        )
        finish_epoch(epoch, record)

    summary = {
        "epochs": state["epoch"],
        "steps": state["step"],
        "tiles_seen": state["step"] * run.batch_size,
        "wall_time_s": state["wall_time"],
        "device": device,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "parameters": count_parameters(model),
        "last": state["history"][-1] if state["history"] else None,
        "best": state["best"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# --------------------------------------------------------------------------------------------
# command line


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training.train",
        description="Train the napari-astrodenoise ResUNet (see training/README.md).",
    )
    p.add_argument("--config", type=Path, help="TOML configuration (training/configs/*.toml)")
    p.add_argument("--out", type=Path, help="run folder (default runs/<config name>)")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    p.add_argument("--device", help="override [run] device: auto, cpu, cuda, mps")
    p.add_argument(
        "--epochs", type=int, help="override [run] epochs (e.g. to extend a resumed run)"
    )
    p.add_argument(
        "--stop-after", type=int, metavar="EPOCH", help="stop after this epoch (resume later)"
    )
    p.add_argument(
        "--export", type=Path, metavar="DIR", help="after training, export the best model into DIR"
    )
    p.add_argument(
        "--ship",
        action="store_true",
        help="after training, export into the package as the default",
    )
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m training.train``."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    if args.config is None:
        if not (args.resume and args.out):
            _parser().error(
                "--config is required (or --resume with --out, to reuse the run's config)"
            )
        config = parse_config(json.loads((args.out / "config.json").read_text()))
    else:
        config = load_config(args.config)
    if args.epochs:
        config.run.epochs = args.epochs
    out = args.out or REPO_ROOT / "runs" / config.run.name
    summary = train(
        config,
        out,
        resume=args.resume,
        device=args.device,
        progress=not args.no_progress,
        stop_after=args.stop_after,
    )
    log.info(
        "done: %d epochs, %d steps in %.0f s -> %s",
        summary["epochs"],
        summary["steps"],
        summary["wall_time_s"],
        out,
    )
    if args.export or args.ship:
        from training.export import export_run

        path = export_run(out, args.export, ship=args.ship)
        log.info("exported %s", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
