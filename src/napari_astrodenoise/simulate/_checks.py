"""Argument checks and array helpers shared by the simulators: images, numbers, configs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import fields
from typing import TypeVar

import numpy as np

Config = TypeVar("Config")


def as_image(clean: np.ndarray, name: str = "clean") -> np.ndarray:
    """Return ``clean`` as a floating array of ndim 2 or 3, without copying when possible."""
    arr = np.asarray(clean)
    if arr.ndim not in (2, 3):
        msg = f"{name} must be a (C, H, W) or (H, W) image, got an array of shape {arr.shape}"
        raise ValueError(msg)
    if arr.size == 0:
        msg = f"{name} must not be empty, got shape {arr.shape}"
        raise ValueError(msg)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        msg = f"{name} must hold real numbers, got dtype {arr.dtype}"
        raise TypeError(msg)
    return arr.astype(np.result_type(arr.dtype, np.float32), copy=False)


def chw(arr: np.ndarray) -> np.ndarray:
    """A (C, H, W) view of a (C, H, W) or (H, W) array."""
    return arr[np.newaxis] if arr.ndim == 2 else arr


def check_positive(value: float, name: str, *, allow_zero: bool = False) -> float:
    value = float(value)
    ok = value >= 0 if allow_zero else value > 0
    if not (math.isfinite(value) and ok):
        bound = ">= 0" if allow_zero else "> 0"
        msg = f"{name} must be a finite number {bound}, got {value}"
        raise ValueError(msg)
    return value


def check_range(values: Sequence[float], name: str, *, lower: float = 0.0) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in values)
    except (TypeError, ValueError):
        msg = f"{name} must be a pair (low, high) of numbers, got {values!r}"
        raise ValueError(msg) from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lower <= lo <= hi):
        msg = f"{name} must satisfy {lower} <= low <= high (finite), got ({lo}, {hi})"
        raise ValueError(msg)
    return lo, hi


def check_probability(value: float, name: str) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        msg = f"{name} must be a probability in [0, 1], got {value}"
        raise ValueError(msg)
    return value


def keep_nans(noisy: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """Put NaN back wherever ``clean`` was NaN (in place) and return ``noisy``."""
    nan = np.isnan(clean)
    if nan.any():
        noisy[nan] = np.nan
    return noisy


def check_config_fields(config: object) -> None:
    """Check a config dataclass's ``p_*`` probabilities and ``*_range`` pairs, in place.

    Probabilities become floats in [0, 1] and ranges ``(low, high)`` tuples of floats with
    ``0 <= low <= high``; a bad value raises ValueError naming the field.
    """
    for f in fields(config):  # type: ignore[arg-type]
        if f.name.startswith("p_"):
            setattr(config, f.name, check_probability(getattr(config, f.name), f.name))
        elif f.name.endswith("_range"):
            setattr(config, f.name, check_range(getattr(config, f.name), f.name))


def config_or_default(config: Config | None, kind: type[Config]) -> Config:
    """``config``, or ``kind()`` for None; anything else raises TypeError."""
    config = kind() if config is None else config
    if not isinstance(config, kind):
        msg = f"config must be a {kind.__name__} or None, got {type(config).__name__}"
        raise TypeError(msg)
    return config
