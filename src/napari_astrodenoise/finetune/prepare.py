"""From checked sub-exposures to a tile sampler, and the provenance records of both.

Registration (or, for one frame, the noise-correlation check), crop, level matching, the
pairs or half-stacks, each source's stretch and noise level function: everything training
needs, measured once before the first step.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from itertools import permutations
from typing import Any

import numpy as np

from napari_astrodenoise.finetune.data import Source, TileSampler, half_stacks, tile_layout
from napari_astrodenoise.finetune.frames import SubExposure, check_white_noise, split_planes
from napari_astrodenoise.finetune.register import Registration, match_levels, register


def measure_single(frame: SubExposure) -> tuple[list[np.ndarray], None, dict]:
    """One frame's planes after the white-noise check, no registration, and its record."""
    rho = check_white_noise(frame)
    planes = split_planes(frame.data, bayer=bool(frame.bayer_pattern))
    return [planes], None, {"mode": "single", "noise_correlation": round(rho, 4)}


def registered_planes(
    frames: list[SubExposure], pairs: str
) -> tuple[list[np.ndarray], Registration, dict]:
    """Each frame registered, cropped, split into planes and brought to the first's level.

    Returns
    -------
    list of ndarray
        (P, h, w) float32 per frame, all on one grid.
    Registration
    dict
        ``mode``, ``registration`` and ``levels`` records.
    """
    reg = register(frames)
    cell = reg.cell
    raw = [split_planes(reg.crop(k, f.data), bayer=cell == 2) for k, f in enumerate(frames)]
    y0, y1, x0, x1 = (v // cell for v in reg.boxes[0])
    labels = reg.detections[0].labels[y0:y1, x0:x1]
    levels = [match_levels(raw[0], planes, labels, cell=cell) for planes in raw]
    planes = [lv.apply(p) for lv, p in zip(levels, raw, strict=True)]
    record = {
        "mode": pairs,
        "registration": reg.record(),
        "levels": [lv.record() for lv in levels],
    }
    return planes, reg, record


def build_sampler(
    planes: list[np.ndarray],
    frames: list[SubExposure],
    registration: Registration | None,
    record: dict,
    *,
    softening: float,
    tile_size: int,
    validation_fraction: float,
) -> TileSampler:
    """The sampler for the mode in ``record``; adds the ``pairs`` and ``regions`` records."""
    tile, split = tile_layout(
        planes[0].shape[1:], tile_size=tile_size, validation_fraction=validation_fraction
    )
    names = [f.name for f in frames]
    mode = record["mode"]
    if mode == "single":
        sources = [Source.of(planes[0], names[0], softening=softening)]
        sampler = TileSampler(sources, [(0, 0)], tile, split, single=True)
        record["pairs"] = "Neighbor2Neighbor sub-samples of one frame"
    elif mode == "half-stacks":
        even, odd = half_stacks(planes)
        sources = [
            Source.of(even, "even frames", softening=softening),
            Source.of(odd, "odd frames", softening=softening),
        ]
        sampler = TileSampler(sources, [(0, 1), (1, 0)], tile, split)
        record["pairs"] = {"input_even": names[0::2], "target_odd": names[1::2]}
        record["both_directions"] = True
    else:
        sources = [
            Source.of(p, n, softening=softening) for p, n in zip(planes, names, strict=True)
        ]
        sampler = TileSampler(sources, list(permutations(range(len(sources)), 2)), tile, split)
        unordered = sorted({tuple(sorted(p)) for p in sampler.pairs})
        record["pairs"] = [[names[i], names[j]] for i, j in unordered]
        record["both_directions"] = True
    record["regions"] = _regions(sampler, registration, cell=2 if frames[0].bayer_pattern else 1)
    return sampler


def _regions(sampler: TileSampler, registration: Registration | None, *, cell: int) -> dict:
    h, w = sampler.plane_shape
    boxes = [list(b) for b in registration.boxes] if registration else [[0, h * cell, 0, w * cell]]
    return {
        "units": "pixels of the frames" if cell == 1 else "pixels of the mosaics",
        "plane_shape": [h, w],
        "crop_boxes_y0_y1_x0_x1": boxes,
        "train_rows": [0, sampler.split * cell],
        "validation_rows": [sampler.split * cell, h * cell],
        "tile": sampler.tile * cell,
        "note": "rows within each frame's crop box; the validation strip is never trained on",
    }


def training_record(
    outcome: Any,
    loaded: Any,
    frames: list[SubExposure],
    settings: Any,
    *,
    seed: int,
    started: float,
) -> dict:
    """Base model, inputs, steps, time, device and validation losses of a finished run."""
    import torch

    return {
        "base": {"name": loaded.name, "sha256": loaded.sha256},
        "inputs": [f.record() for f in frames],
        "steps": outcome.steps,
        "best_step": outcome.best_step,
        "tiles_seen": outcome.tiles_seen,
        "stopped": outcome.stopped,
        "wall_time_s": round(time.perf_counter() - started, 2),
        "train_time_s": round(outcome.train_s, 2),
        "device": loaded.device,
        "precision": settings.precision,
        "torch": torch.__version__,
        "seed": int(seed),
        "batch_size": settings.batch_size,
        "learning_rate": settings.learning_rate,
        "learning_rate_decays": outcome.lr_decays,
        "weight_average_decay": outcome.average_decay,
        "budget_s": settings.budget_s,
        "max_steps": settings.max_steps,
        "validation": {
            "loss_before": round(outcome.val_before, 6),
            "loss_after": round(outcome.val_after, 6),
            "tiles": settings.validation_tiles,
            "loss": "weighted squared error in linear units, 1/variance at the input's level",
        },
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def model_extra(record: dict, base_name: str, options: dict | None = None) -> dict:
    """The JSON fields a fine-tuned model carries beside its architecture.

    ``options`` are engine options the model runs with unless the caller sets them (the
    flux lock measured on its frames, :mod:`~napari_astrodenoise.finetune.lockcheck`).
    """
    inputs = record["inputs"]
    listed = ", ".join(i["name"] for i in inputs[:4]) + (" ..." if len(inputs) > 4 else "")
    return {
        **({"options": dict(options)} if options else {}),
        "description": (
            f"{base_name} fine-tuned ({record['mode']}) on {len(inputs)} sub-exposure(s): {listed}"
        ),
        "origin": "user",
        "finetune": record,
    }
