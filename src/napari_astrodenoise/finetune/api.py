"""``finetune`` / ``iter_finetune``: a shipped model fine-tuned on the user's own sub-exposures.

Two exposures of the same sky are a Noise2Noise pair carrying the camera's real noise. The
frames are registered by whole-pixel shifts (no pixel resampled), cropped to their common
area and matched in level; the base model then learns each frame from another (or one
half-stack from the other, or for one frame of white noise, one Neighbor2Neighbor sub-sample
from the other), and the result is written to the user model directory as a model that
:func:`~napari_astrodenoise.core.weights.load_model` finds by name.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from napari_astrodenoise.core.options import option
from napari_astrodenoise.core.predictor import resolve_precision
from napari_astrodenoise.core.progress import drain, relay
from napari_astrodenoise.core.weights import LoadedModel
from napari_astrodenoise.finetune.frames import check_frames, load_frames
from napari_astrodenoise.finetune.lockcheck import check_flux_lock, checked_model
from napari_astrodenoise.finetune.loop import TrainEvent, TrainOutcome, TrainSettings, train
from napari_astrodenoise.finetune.prepare import (
    build_sampler,
    measure_single,
    model_extra,
    registered_planes,
    training_record,
)

PAIRS = ("all", "half-stacks")


@dataclass(frozen=True)
class FinetuneProgress:
    """One progress record of :func:`iter_finetune`.

    Attributes
    ----------
    stage : str
        Setup: ``"read"``, ``"register"`` (or the noise check of a single frame),
        ``"prepare"``; then ``"validate"`` (the base model at step 0, then a step followed by
        a validation), ``"train"`` (one optimisation step), ``"check"`` (frame 1 denoised
        with the flux lock and without it, frames only, not half-stacks or a single frame;
        see :mod:`~napari_astrodenoise.finetune.lockcheck`), and last ``"save"``.
    message : str
        One line for a status bar or a log.
    fraction : float
        0 to 1, never decreasing: the share of the time budget (or of ``max_steps``) used.
    step : int
        Optimisation steps done.
    max_steps : int or None
    loss : float or None
        Training loss, the mean of the last 20 steps (about 1 for a perfect denoiser, 2 for
        the identity: see :mod:`~napari_astrodenoise.finetune.loop`).
    val_loss : float or None
        The validation loss just measured (``"validate"`` records only).
    best_val_loss : float or None
        The best validation loss so far (the base model's before any improvement).
    val_loss_before : float or None
        The base model's validation loss.
    elapsed_s : float
        Seconds since the call started.
    eta_s : float or None
        Seconds left, estimated (None during setup).
    """

    stage: str
    message: str
    fraction: float = 0.0
    step: int = 0
    max_steps: int | None = None
    loss: float | None = None
    val_loss: float | None = None
    best_val_loss: float | None = None
    val_loss_before: float | None = None
    elapsed_s: float = 0.0
    eta_s: float | None = None


@dataclass(frozen=True)
class FinetuneResult:
    """What :func:`finetune` returns.

    Attributes
    ----------
    model : LoadedModel
        The fine-tuned model, loaded back from its files (in eval mode, on the device).
    name : str
        Its name in the registry.
    path : Path
        Its JSON config in the user model directory (the weights beside it).
    val_loss_before, val_loss_after : float
        The base model's and the fine-tuned model's validation loss.
    steps : int
    wall_time_s : float
    stopped : str
        ``"time"`` (budget spent), ``"steps"`` (``max_steps``) or ``"early"`` (no more
        improvement).
    provenance : dict
        The ``"finetune"`` record written in the JSON config.
    """

    model: LoadedModel
    name: str
    path: Path
    val_loss_before: float
    val_loss_after: float
    steps: int
    wall_time_s: float
    stopped: str
    provenance: dict

    @property
    def improved(self) -> bool:
        """Whether the fine-tuned model beats the base on the held-out strip."""
        return self.val_loss_after < self.val_loss_before


def finetune(frames: Sequence[str | os.PathLike | np.ndarray], **kwargs: Any) -> FinetuneResult:
    """Fine-tune a model on sub-exposures and save it; see :func:`iter_finetune`.

    Returns
    -------
    FinetuneResult
    """
    return drain(iter_finetune(frames, **kwargs))


def iter_finetune(
    frames: Sequence[str | os.PathLike | np.ndarray],
    *,
    base: str | os.PathLike | LoadedModel = "default",
    name: str | None = None,
    minutes: float = 10.0,
    pairs: str = "all",
    single: bool = False,
    overwrite: bool = False,
    device: str = "auto",
    precision: str = "auto",
    seed: int = 0,
    bayer: bool | str | None = None,
    tile_size: int = 96,
    batch_size: int = 8,
    learning_rate: float = 1e-4,
    max_steps: int | None = None,
    validation_fraction: float = 0.15,
    validation_tiles: int = 32,
    validate_every: int = 50,
    patience: int = 10,
) -> Generator[FinetuneProgress, None, FinetuneResult]:
    """Fine-tune ``base`` on sub-exposures of one target, yielding progress records.

    Closing the generator before it returns cancels: nothing is written.

    Parameters
    ----------
    frames : sequence of path-like or ndarray
        Two or more raw sub-exposures of one target, same camera and exposure (FITS paths or
        (H, W) arrays, linear, NaN allowed); one with ``single=True``. They may drift: they
        are registered by whole-pixel shifts (whole 2 x 2 cells for Bayer mosaics).
    base : str, path-like or LoadedModel, optional
        The model to start from (default: the shipped default); it is not modified.
    name : str or None, optional
        The new model's name (and file stem); default ``"<base>-ft-<date-time>"``. A shipped
        model's name is refused.
    minutes : float, optional
        Time budget of the whole call, setup included (default 10). The flux-lock check
        after training (frames only) comes on top: two denoising runs of frame 1 and their
        comparison, a few seconds for a few megapixels, about a minute for a 24-megapixel
        mosaic on 2 CPU cores.
    pairs : {"all", "half-stacks"}, optional
        ``"all"``: every ordered pair of frames (input, target); ``"half-stacks"``: the mean
        of the even-numbered frames against the mean of the odd-numbered ones, both ways.
    single : bool, optional
        One frame, learnt by Neighbor2Neighbor sub-sampling; refused when its noise is
        measured to be spatially correlated (debayered, resampled or stacked data).
    overwrite : bool, optional
        Replace a user model of the same name (otherwise refused before any work).
    device : str, optional
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda[:N]"``, ``"mps"``.
    precision : {"auto", "fp32", "bf16"}, optional
        The number format the network trains in, as for :func:`denoise`: ``"auto"`` is bf16
        where the device does bfloat16 in hardware (a CPU with AVX512-BF16 or AMX, most CUDA
        devices), fp32 elsewhere. Only the levels between the first and last convolutions
        run in bf16; the weights, the image's sum and the loss stay float32. On this
        project's CPU a step takes about 0.8 of the fp32 one.
    seed : int, optional
        Seeds the tiles drawn (numpy) and torch: the same inputs, seed and settings give the
        same model on the same machine (when stopped by ``max_steps``, not by the clock).
    bayer : bool, str or None, optional
        None: FITS files with ``BAYERPAT`` are mosaics, arrays mono. True or a pattern name:
        every frame is a raw mosaic. False: every frame is mono.
    tile_size : int, optional
        Tile side in pixels of a plane (multiple of 16, 32-512; shrunk to fit small frames).
        A mosaic's planes are its four colour sub-planes, half its size.
    batch_size, learning_rate : optional
        Tiles per step (default 8), Adam's learning rate (default 1e-4).
    max_steps : int or None, optional
        Stop after this many steps even with time left.
    validation_fraction : float, optional
        Height of the held-out strip at the bottom of the frames (default 0.15).
    validation_tiles : int, optional
        Fixed tiles the validation loss is measured on (default 32).
    validate_every, patience : int, optional
        Validate every this many steps (default 50). After ``patience`` validations
        without improvement (default 10) the learning rate drops to 0.3 times, from the
        best weights, twice; the third such plateau stops training. The weights
        validated and kept are a moving average of the trained ones (``loop.EMA_DECAY``).

    Yields
    ------
    FinetuneProgress

    Returns
    -------
    FinetuneResult
        (the generator's return value; :func:`finetune` gives it directly)

    Raises
    ------
    ValueError
        Bad options, a name taken, or frames that cannot be used (different shapes,
        cameras or exposures, too few stars, unrelated or non-overlapping frames, constant
        or mostly-NaN frames, correlated noise for ``single``); all before any training.
    ModelNotFoundError
        No such base model.
    """
    started = time.perf_counter()
    _check_options(locals())
    from napari_astrodenoise.core import weights

    loaded = _load_base(base, device)
    name = name or f"{loaded.name}-ft-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    target = weights.user_model_path(name, overwrite=overwrite)
    report = _Reporter(started, 60.0 * minutes, max_steps)

    yield report.setup("read", f"reading {len(frames)} frame(s)")
    subs = load_frames(frames, bayer=bayer)
    check_frames(subs, single=single)
    if single:
        yield report.setup("register", "measuring the noise correlation")
        planes, registration, record = measure_single(subs[0])
    else:
        yield report.setup("register", f"registering {len(subs)} frames on their stars")
        planes, registration, record = registered_planes(subs, pairs)
    yield report.setup("prepare", "measuring stretch and noise, drawing validation tiles")
    sampler = build_sampler(
        planes,
        subs,
        registration,
        record,
        softening=loaded.softening,
        tile_size=tile_size,
        validation_fraction=validation_fraction,
    )
    del planes  # the sources hold what training needs

    import torch

    torch.manual_seed(seed)
    module = _trainable_copy(loaded)
    settings = TrainSettings(
        batch_size=batch_size,
        learning_rate=learning_rate,
        budget_s=60.0 * minutes,
        max_steps=max_steps,
        validate_every=validate_every,
        patience=patience,
        validation_tiles=validation_tiles,
        precision=resolve_precision(precision, loaded.device),
    )
    loop = train(
        module,
        sampler,
        settings,
        rng=np.random.default_rng(seed),
        device=loaded.device,
        started=started,
    )
    outcome = yield from report.training(loop)
    extra_options = {}
    if record["mode"] not in ("single", "half-stacks"):
        yield report.setup("check", "measuring on frame 1 whether the model needs the flux lock")
        check = check_flux_lock(
            checked_model(loaded, module, name),
            subs,
            registration,
            [source.planes for source in sampler.sources[1:]],
            sampler.split,
        )
        record["flux_lock_check"] = check
        extra_options["flux_lock"] = check["flux_lock"]
    yield report.done(f"saving model {name!r} to {target.parent}", outcome)
    record.update(training_record(outcome, loaded, subs, settings, seed=seed, started=started))
    weights.user_model_path(name, overwrite=overwrite)  # again: another run may have saved it
    path = weights.save_model(
        module,
        target,
        name=name,
        softening=loaded.softening,
        extra=model_extra(record, loaded.name, extra_options),
    )
    return FinetuneResult(
        weights.load_model(path, device=loaded.device),
        name,
        path,
        outcome.val_before,
        outcome.val_after,
        outcome.steps,
        time.perf_counter() - started,
        outcome.stopped,
        record,
    )


class _Reporter:
    """Builds the progress records of one call; the fraction never goes back."""

    def __init__(self, started: float, budget_s: float, max_steps: int | None) -> None:
        self.started, self.budget_s, self.max_steps = started, budget_s, max_steps
        self.fraction = 0.0
        self.before: float | None = None

    def _fraction(self, elapsed: float, step: int) -> float:
        value = elapsed / self.budget_s
        if self.max_steps:
            value = max(value, step / self.max_steps)
        self.fraction = max(self.fraction, min(value, 1.0))
        return self.fraction

    def setup(self, stage: str, message: str) -> FinetuneProgress:
        elapsed = time.perf_counter() - self.started
        return FinetuneProgress(
            stage,
            message,
            self._fraction(elapsed, 0),
            max_steps=self.max_steps,
            elapsed_s=elapsed,
        )

    def training(
        self, loop: Generator[TrainEvent, None, TrainOutcome]
    ) -> Generator[FinetuneProgress, None, TrainOutcome]:
        """Relays the loop's events as records; returns its outcome."""
        return relay(loop, self._record)

    def _record(self, event: TrainEvent) -> FinetuneProgress:
        if event.kind == "baseline":
            self.before = event.val_loss
            message = f"base model: validation loss {event.val_loss:.4f}"
        else:
            message = _step_message(event, self.max_steps)
        return FinetuneProgress(
            "train" if event.kind == "step" else "validate",
            message,
            self._fraction(event.elapsed_s, event.step),
            event.step,
            self.max_steps,
            event.loss,
            event.val_loss,
            event.best_val_loss,
            self.before,
            event.elapsed_s,
            event.eta_s,
        )

    def done(self, message: str, outcome: TrainOutcome) -> FinetuneProgress:
        self.fraction = 1.0
        return FinetuneProgress(
            "save",
            message,
            1.0,
            outcome.steps,
            self.max_steps,
            None,
            None,
            outcome.val_after,
            outcome.val_before,
            time.perf_counter() - self.started,
            0.0,
        )


def _step_message(event: TrainEvent, max_steps: int | None) -> str:
    of = f"/{max_steps}" if max_steps else ""
    text = f"step {event.step}{of}: loss {event.loss:.4f}"
    if event.val_loss is not None:
        text += f", validation {event.val_loss:.4f} (best {event.best_val_loss:.4f})"
    return text


def _check_options(opts: dict) -> None:
    """One-line ValueErrors for options, before any work."""
    frames = opts["frames"]
    if isinstance(frames, (str, os.PathLike, np.ndarray)) or not len(frames):
        msg = "frames must be a list of FITS paths or 2-D arrays"
        raise ValueError(msg)
    minutes = opts["minutes"]
    if not (isinstance(minutes, (int, float)) and math.isfinite(minutes) and minutes > 0):
        msg = f"minutes must be a positive number, got {minutes!r}"
        raise ValueError(msg)
    if opts["pairs"] not in PAIRS:
        msg = f"pairs must be one of {PAIRS}, got {opts['pairs']!r}"
        raise ValueError(msg)
    if opts["single"] and opts["pairs"] != "all":
        msg = "single=True learns from one frame: it takes no pairs (leave pairs='all')"
        raise ValueError(msg)
    tile = opts["tile_size"]
    if not (isinstance(tile, int) and 32 <= tile <= 512 and tile % 16 == 0):
        msg = f"tile_size must be a multiple of 16 between 32 and 512, got {tile!r}"
        raise ValueError(msg)
    for key in ("batch_size", "validation_tiles", "validate_every", "patience"):
        if not (isinstance(opts[key], int) and opts[key] >= 1):
            msg = f"{key} must be an integer >= 1, got {opts[key]!r}"
            raise ValueError(msg)
    steps = opts["max_steps"]
    if steps is not None and not (isinstance(steps, int) and steps >= 1):
        msg = f"max_steps must be None or an integer >= 1, got {steps!r}"
        raise ValueError(msg)
    if not opts["learning_rate"] > 0:
        msg = f"learning_rate must be > 0, got {opts['learning_rate']!r}"
        raise ValueError(msg)
    if not 0 < opts["validation_fraction"] <= 0.5:
        msg = f"validation_fraction must be in (0, 0.5], got {opts['validation_fraction']!r}"
        raise ValueError(msg)
    option("precision").check(opts["precision"])
    if not isinstance(opts["seed"], (int, np.integer)):
        msg = f"seed must be an integer, got {opts['seed']!r}"
        raise ValueError(msg)


def _load_base(base: str | os.PathLike | LoadedModel, device: str) -> LoadedModel:
    """The base model on the device asked for (a LoadedModel is not moved: copied later)."""
    from napari_astrodenoise.core.weights import load_model, resolve_device

    if isinstance(base, LoadedModel):
        loaded = LoadedModel(**{**base.__dict__, "device": resolve_device(device)})
    else:
        loaded = load_model(base, device=device)
    cfg = loaded.module.config
    if cfg.noise_channel:
        msg = f"base model {loaded.name!r} takes a noise channel: fine-tuning does not support it"
        raise ValueError(msg)
    if cfg.in_channels not in (1, 3):
        msg = f"base model {loaded.name!r} takes {cfg.in_channels} channels: need 1 or 3"
        raise ValueError(msg)
    return loaded


def _trainable_copy(loaded: LoadedModel) -> Any:
    """A copy of the base network on its device, every parameter trainable."""
    import copy

    module = copy.deepcopy(loaded.module).to(loaded.device)
    for p in module.parameters():
        p.requires_grad_(True)
    return module
