"""A run's checkpoints: their names, writing and reading them, and which one to export.

``checkpoint_last.pt`` is written after every epoch and ``checkpoint_best.pt`` after each
epoch that lowered the validation loss; both are ``torch.save`` of plain state dicts and
Python values (model, optimizer, scheduler, the loop's counters and the configuration as a
dict), read back with ``weights_only=True``. Both ``training.train`` and ``training.export``
use this module; it imports neither.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = [
    "CHECKPOINT_BEST",
    "CHECKPOINT_LAST",
    "find_checkpoint",
    "history_of",
    "improves",
    "load_checkpoint",
    "save_checkpoint",
]

CHECKPOINT_LAST = "checkpoint_last.pt"
CHECKPOINT_BEST = "checkpoint_best.pt"


def save_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: dict,
    config: dict,
) -> None:
    """Write a checkpoint atomically (a temporary file, then renamed).

    Parameters
    ----------
    path : Path
        The checkpoint file.
    model, optimizer, scheduler
        Their state dicts are saved.
    state : dict
        The loop's counters: ``epoch``, ``step``, ``wall_time``, ``best``, ``history``.
    config : dict
        The run's configuration as ``Config.to_dict()`` gives it.
    """
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "state": state,
        "config": config,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint written by :func:`save_checkpoint` (tensors and plain Python values)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def improves(record: dict, best: dict | None) -> bool:
    """Whether an epoch's ``record`` beats the ``best`` so far (lower ``val_total``).

    Epoch 0 (the validation before any step) is never the best.
    """
    return record["epoch"] > 0 and (best is None or record["val_total"] < best["val_total"])


def find_checkpoint(run_dir: Path, which: str) -> Path:
    """The checkpoint file of a run folder: ``which`` is ``"best"`` or ``"last"``.

    ``"best"`` falls back to the last checkpoint when no epoch improved (a run stopped
    before its first epoch ended with a better validation loss).

    Raises
    ------
    ValueError
        ``which`` is neither.
    FileNotFoundError
        The run folder holds no such checkpoint.
    """
    names = {"best": CHECKPOINT_BEST, "last": CHECKPOINT_LAST}
    if which not in names:
        msg = f"checkpoint must be 'best' or 'last', got {which!r}"
        raise ValueError(msg)
    path = run_dir / names[which]
    if which == "best" and not path.is_file():
        path = run_dir / CHECKPOINT_LAST  # a run stopped before any epoch improved
    if not path.is_file():
        msg = f"no checkpoint in {run_dir} (looked for {names[which]})"
        raise FileNotFoundError(msg)
    return path


def history_of(checkpoint: dict) -> dict:
    """The training a checkpoint's weights have had: epochs, steps, tiles seen, wall time."""
    state = checkpoint["state"]
    return {
        "epochs": state["epoch"],
        "steps": state["step"],
        "tiles_seen": state["step"] * checkpoint["config"]["run"]["batch_size"],
        "wall_time_s": round(state["wall_time"], 1),
    }
