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

The configuration is ``training.config``'s, the checkpoints ``training.checkpoints``'s and
the validation metrics and previews ``training.validation``'s.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from napari_astrodenoise.core.model import ResUNet, ResUNetConfig, count_parameters
from napari_astrodenoise.core.weights import resolve_device
from training.checkpoints import (
    CHECKPOINT_BEST,
    CHECKPOINT_LAST,
    history_of,
    improves,
    load_checkpoint,
    save_checkpoint,
)
from training.config import Config, RunConfig, load_config, parse_config
from training.data import REPO_ROOT, Frame, TileDataset, load_frames
from training.losses import total_loss
from training.validation import ValidationSet, save_preview, validate

__all__ = ["Config", "RunConfig", "load_config", "main", "parse_config", "train"]

log = logging.getLogger("training")


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


def _append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


@dataclass
class _Run:
    """What the steps of one training run share: the network, its optimiser, data and clock.

    Attributes
    ----------
    config : Config
    out : Path
        The run folder.
    device : str
    model, optimizer, scheduler
        Built by :func:`_build`, restored by :func:`_resume_or_start`.
    state : dict
        The loop's counters, saved in every checkpoint: ``epoch``, ``step``, ``wall_time``
        (seconds, summed over every resumed part of the run), ``best`` and ``history``
        (epoch records), ``data`` (the tiles' description) and, for a fine-tune, ``init``.
    real, paired : list of Frame
        The real frames and the noisy / clean pairs the tiles are cut from.
    val : ValidationSet
    preview : list of int
        The validation tiles shown in each epoch's preview.
    started : float
        ``time.perf_counter()`` when this run's data step began.
    wall_before : float
        ``state["wall_time"]`` when this run (re)started (a resumed run's time so far).
    """

    config: Config
    out: Path
    device: str
    model: ResUNet
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    state: dict
    real: list[Frame] = field(default_factory=list)
    paired: list[Frame] = field(default_factory=list)
    val: ValidationSet | None = None
    preview: list[int] = field(default_factory=list)
    started: float = 0.0
    wall_before: float = 0.0


def _optimizer_step(run: _Run, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """One forward and backward pass on a batch, then the optimizer's and scheduler's step."""
    cfg = run.config.run
    amp = cfg.amp and run.device.startswith("cuda")
    x = x.to(run.device, non_blocking=True)
    y = y.to(run.device, non_blocking=True)
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=amp):
        out = run.model(x)
    loss, parts = total_loss(out, y, run.config.loss, noisy=x[:, :3])
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    run.state["step"] += 1
    return parts


def _log_step(run: _Run, parts: dict[str, torch.Tensor]) -> None:
    """A line of ``steps.jsonl`` every ``log_every`` steps."""
    if run.state["step"] % run.config.run.log_every == 0:
        record = {"step": run.state["step"], "lr": run.scheduler.get_last_lr()[0]}
        record.update({k: float(v) for k, v in parts.items()})
        _append_jsonl(run.out / "steps.jsonl", record)


def _train_epoch(run: _Run, loader: DataLoader, progress: bool) -> dict[str, float]:
    """One epoch of optimizer steps; returns the mean of each loss part and timings."""
    from tqdm import tqdm

    cfg = run.config.run
    sums: dict[str, float] = {}
    n = 0
    data_time = 0.0
    start = time.perf_counter()
    tick = start
    bar = tqdm(
        total=cfg.steps_per_epoch,
        desc=f"epoch {run.state['epoch'] + 1}/{cfg.epochs}",
        disable=not progress,
        mininterval=0.5 if sys.stderr.isatty() else 30.0,
        dynamic_ncols=True,
    )
    for x, y in loader:
        data_time += time.perf_counter() - tick
        parts = _optimizer_step(run, x, y)
        n += 1
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        bar.update(1)
        bar.set_postfix(loss=f"{sums['total'] / n:.4f}", refresh=False)
        _log_step(run, parts)
        tick = time.perf_counter()
    bar.close()
    elapsed = time.perf_counter() - start
    means = {f"train_{k}": v / max(n, 1) for k, v in sums.items()}
    means.update(
        steps=n,
        epoch_seconds=elapsed,
        data_wait_seconds=data_time,
        tiles_per_second=n * cfg.batch_size / max(elapsed, 1e-9),
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
        weights, record = ckpt["model"], {"source": source, **history_of(ckpt)}
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
# the steps of a run


def _set_up_torch(run: RunConfig, device: str | None) -> str:
    """Apply ``[run] threads``; the device to train on (``device`` overrides the config)."""
    if run.threads:
        torch.set_num_threads(run.threads)
    device = resolve_device(device or run.device)
    if device == "cpu":
        torch.set_flush_denormal(True)  # denormal floats can slow CPU convolutions 10x
    return device


def _resume_or_start(config: Config, out: Path, device: str, *, resume: bool) -> _Run:
    """The resume step: a fresh network (or ``[run] init``'s weights), or the last checkpoint.

    Raises
    ------
    FileNotFoundError
        ``resume`` and the run folder holds no checkpoint.
    FileExistsError
        Not ``resume`` and the run folder holds a checkpoint already.
    """
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
    elif config.run.init:
        weights, state["init"] = initial_weights(config.run.init, config.model)
        model.load_state_dict(weights)
        log.info("weights from %s (%s)", config.run.init, state["init"])
    return _Run(config, out, device, model, optimizer, scheduler, state)


def _load_data(run: _Run) -> None:
    """The data step: the frames, the validation tiles and their description in the state."""
    config = run.config
    run.started = time.perf_counter()
    run.wall_before = run.state["wall_time"]
    run.real, run.paired = load_frames(config.data)
    run.val = ValidationSet.build(config, run.real, run.paired)
    train_desc = TileDataset(
        config.data, split="train", length=1, real_frames=run.real, paired_frames=run.paired
    ).describe()
    run.state["data"] = {"train": train_desc, "val": run.val.description}
    log.info(
        "device %s, %d threads, %d parameters; sources %s; %d real frames, %d pairs",
        run.device,
        torch.get_num_threads(),
        count_parameters(run.model),
        train_desc["source_p"],
        len(run.real),
        len(run.paired),
    )
    run.preview = run.val.preview_indices(min(config.run.preview_samples, config.run.val_samples))


def _epoch_loader(run: _Run, epoch: int) -> DataLoader:
    """The training tiles of one epoch (a pure function of the seed, split and epoch)."""
    cfg = run.config.run
    dataset = TileDataset(
        run.config.data,
        split="train",
        length=cfg.steps_per_epoch * cfg.batch_size,
        epoch=epoch,
        real_frames=run.real,
        paired_frames=run.paired,
    )
    return _loader(dataset, cfg.batch_size, cfg.num_workers, run.device)


def _finish_epoch(run: _Run, epoch: int, record: dict) -> None:
    """The epoch step's end: validate, preview, record, checkpoint and log epoch ``epoch``.

    ``record`` holds the epoch's training means (empty for epoch 0, before any step).
    """
    state = run.state
    metrics, outputs = validate(run.model, run.val, run.config, run.device)
    record.update(metrics)
    record.update(epoch=epoch, step=state["step"], lr=run.scheduler.get_last_lr()[0])
    state["wall_time"] = run.wall_before + time.perf_counter() - run.started
    record["wall_time"] = state["wall_time"]
    if run.preview:
        save_preview(
            run.out / "previews" / f"epoch_{epoch:03d}.png",
            run.val.inputs[run.preview, :3],
            outputs[run.preview],
            run.val.targets[run.preview],
            softening=run.config.data.softening,
        )
    state["epoch"] = epoch
    state["history"].append(record)
    is_best = improves(record, state["best"])
    if is_best:
        state["best"] = dict(record)
    _append_jsonl(run.out / "metrics.jsonl", record)
    config = run.config.to_dict()
    for name in (CHECKPOINT_LAST, CHECKPOINT_BEST) if is_best else (CHECKPOINT_LAST,):
        save_checkpoint(run.out / name, run.model, run.optimizer, run.scheduler, state, config)
    _log_epoch(run, record)


def _log_epoch(run: _Run, record: dict) -> None:
    """One log line of an epoch's scores."""
    nan = float("nan")
    log.info(
        "epoch %d/%d step %d: train %.4f val %.4f | PSNR %.2f dB (input %.2f) SSIM %.4f "
        "(input %.4f) identity change %.4f mask IoU %.3f | %.1f tiles/s | %.0f s",
        record["epoch"],
        run.config.run.epochs,
        run.state["step"],
        record.get("train_total", nan),
        record["val_total"],
        record.get("psnr", nan),
        record.get("psnr_input", nan),
        record.get("ssim", nan),
        record.get("ssim_input", nan),
        record.get("identity_change", nan),
        record["mask_iou"],
        record.get("tiles_per_second", nan),
        run.state["wall_time"],
    )


def _train_epochs(run: _Run, *, progress: bool, stop_after: int | None) -> None:
    """The epoch steps: epoch 0's validation if due, then every epoch still to train."""
    cfg, state = run.config.run, run.state
    if state["epoch"] == 0 and not state["history"] and cfg.validate_first:
        _finish_epoch(run, 0, {})
    last_epoch = cfg.epochs if stop_after is None else min(cfg.epochs, stop_after)
    for epoch in range(state["epoch"] + 1, last_epoch + 1):
        record = _train_epoch(run, _epoch_loader(run, epoch), progress)
        _finish_epoch(run, epoch, record)


def _write_summary(run: _Run) -> dict:
    """The summary step: what the run did and its last and best scores, in ``summary.json``."""
    state = run.state
    summary = {
        "epochs": state["epoch"],
        "steps": state["step"],
        "tiles_seen": state["step"] * run.config.run.batch_size,
        "wall_time_s": state["wall_time"],
        "device": run.device,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "parameters": count_parameters(run.model),
        "last": state["history"][-1] if state["history"] else None,
        "best": state["best"],
    }
    (run.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


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
    device = _set_up_torch(config.run, device)
    run = _resume_or_start(config, out, device, resume=resume)
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    _load_data(run)
    _train_epochs(run, progress=progress, stop_after=stop_after)
    return _write_summary(run)


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
