"""The flux lock's scale fitted to the user's own frames, on the strip training never saw.

The flux lock (:func:`~napari_astrodenoise.core.fluxlock.lock_flux`) keeps the input's
level, flux and colour beyond a scale. Its default, 8 px, was fitted on simulated noise
for the shipped model, whose noise model it guards. A model fine-tuned on a camera's real
noise has learnt that noise, and near stars and signal the strict lock gives back the
input's noise at its scale: on real sequences a lock of 8 px can cost more fidelity than
it saves.

So each fine-tuned model gets its own scale, measured on its own data. Frame 1 is
denoised whole, as a user would (same model, defaults otherwise), once per candidate scale
(:data:`LOCK_SCALES`), and each output is compared on the held-out validation strip with
an independent target: the mean of the other registered frames (pairs), or the other half
stack. Their noise is independent of frame 1's, so the expected squared error against the
target is the error against the true sky plus a constant, the same for every candidate
(Noise2Noise's argument, applied to the whole pipeline):

    loss(s) = mean(rho((out_s - target) / sigma(level)))

with ``sigma`` frame 1's noise level function at its local level (star cores count by
their own noise) and ``rho`` the training loss's Huber function (a cosmic ray in the target
does not decide). The smallest scale (the strongest lock) whose loss is within two standard
errors of the best is kept; the lock is never turned off, so levels and the flux of
anything larger than the scale stay the input's. A single frame has no independent target:
its model keeps the default.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Generator
from typing import Any

import numpy as np
from scipy.ndimage import uniform_filter

from napari_astrodenoise.finetune.frames import SubExposure, split_planes
from napari_astrodenoise.finetune.loop import HUBER_SIGMAS

#: candidate flux-lock scales (px of the frame, as the option), strongest first
LOCK_SCALES = (8.0, 16.0, 32.0, 64.0)
#: a weaker lock is kept only when it is better by more than this many standard errors
SIGNIFICANCE = 2.0
#: seconds per megapixel of frame 1 set aside for each candidate's denoising, plus one
SECONDS_PER_MPIX = 1.0


def reserve_s(frame: SubExposure, budget_s: float) -> float:
    """Seconds of the time budget set aside for the calibration (at most a quarter)."""
    per_run = 1.0 + SECONDS_PER_MPIX * frame.data.size / 1e6
    return min(0.25 * budget_s, len(LOCK_SCALES) * per_run)


def held_out_target(sources: list[Any], mode: str, rows: slice) -> np.ndarray | None:
    """(P, n, w) target on ``rows``, independent of frame 1's noise; None for a single frame.

    The mean of the other frames (pairs, NaN ignored) or the other half stack, summed a
    frame at a time: the validation rows alone, one frame's rows in memory at a time.
    """
    if mode == "single":
        return None
    if mode == "half-stacks":
        return np.array(sources[1].planes[:, rows], dtype=np.float32)
    total = count = None
    for source in sources[1:]:
        part = source.planes[:, rows]
        ok = np.isfinite(part)
        value = np.where(ok, part, 0.0).astype(np.float64)
        total = value if total is None else total + value
        count = ok.astype(np.int32) if count is None else count + ok
    with np.errstate(invalid="ignore", divide="ignore"):
        return (total / count).astype(np.float32)  # NaN where no frame has the pixel


def iter_calibrate(
    loaded: Any,
    frame: SubExposure,
    box: tuple[int, int, int, int],
    target: np.ndarray,
    rows: slice,
) -> Generator[str, None, dict]:
    """Fit the flux lock's scale; yields a message per candidate, returns the record.

    Parameters
    ----------
    loaded : LoadedModel
        The fine-tuned model (its config's own ``options`` are ignored here).
    frame : SubExposure
        Frame 1, raw and whole.
    box : tuple of int
        Frame 1's crop to the common area ``(y0, y1, x0, x1)``.
    target : ndarray
        (P, n, w) independent target on the validation rows of the common area's planes
        (:func:`held_out_target`), at frame 1's level.
    rows : slice
        The validation rows of the planes.

    Returns
    -------
    dict
        ``{"option": "flux_lock", "chosen": s, "scales_px": [...], "loss": [...],
        "loss_minus_best_se": [...], "pixels": n, ...}``: the record for the model's JSON.
    """
    from napari_astrodenoise.core.noiselevel import prefit_noise_profile
    from napari_astrodenoise.core.pipeline import denoise

    bayer = frame.bayer_pattern is not None
    model = dataclasses.replace(
        loaded, config={k: v for k, v in loaded.config.items() if k != "options"}
    )
    y0, y1, x0, x1 = box
    planes = split_planes(frame.data[y0:y1, x0:x1], bayer=bayer)
    profile = prefit_noise_profile(planes)
    scale = _noise_scale(planes, profile)[:, rows]
    started = time.perf_counter()
    rhos = []
    for s in LOCK_SCALES:
        yield f"fitting the flux lock: {s:g} px"
        with warnings.catch_warnings():  # said when the user denoises, not here
            warnings.simplefilter("ignore")
            out = denoise(frame.data, model=model, bayer=bayer, flux_lock=s)
        mine = split_planes(out[y0:y1, x0:x1], bayer=bayer)[:, rows]
        rhos.append(_rho((mine - target) / scale))
    valid = np.logical_and.reduce([np.isfinite(r) for r in rhos])
    rhos = [r[valid] for r in rhos]
    losses = [float(r.mean()) for r in rhos]
    best = int(np.argmin(losses))
    se = [_paired_se(r, rhos[best]) for r in rhos]
    excess = [
        (loss - losses[best]) / e if e > 0 else 0.0 for loss, e in zip(losses, se, strict=True)
    ]
    chosen = next(s for s, x in zip(LOCK_SCALES, excess, strict=True) if x <= SIGNIFICANCE)
    return {
        "option": "flux_lock",
        "chosen": chosen,
        "scales_px": list(LOCK_SCALES),
        "loss": [round(v, 6) for v in losses],
        "loss_minus_best_se": [round(v, 2) for v in excess],
        "pixels": int(valid.sum()),
        "rule": (
            f"the smallest scale within {SIGNIFICANCE:g} standard errors of the lowest loss "
            "on the validation strip: frame 1 denoised whole, against the mean of the other "
            "frames (or the other half stack), in frame 1's noise sigmas"
        ),
        "seconds": round(time.perf_counter() - started, 2),
    }


def _noise_scale(planes: np.ndarray, profile: Any) -> np.ndarray:
    """(P, h, w) frame 1's noise sigma at its 3 x 3 local level (floored at half the sky's)."""
    out = np.empty_like(planes)
    for p, plane in enumerate(planes):
        sky = np.float32(profile.sky[p])
        level = uniform_filter(np.where(np.isfinite(plane), plane, sky), 3, mode="nearest")
        floor = np.float32(0.5 * np.sqrt(max(profile.floor[p], 0.0)))
        out[p] = np.maximum(profile.sigma(p, level), floor)
    return out


def _rho(e: np.ndarray) -> np.ndarray:
    """The training loss's Huber function of errors in noise sigmas."""
    a = np.abs(e.astype(np.float64))
    d = HUBER_SIGMAS
    return np.where(a <= d, a * a, 2.0 * d * a - d * d)


def _paired_se(a: np.ndarray, b: np.ndarray) -> float:
    """Standard error of ``mean(a - b)`` (0 for the same array)."""
    diff = a - b
    return float(diff.std() / np.sqrt(diff.size)) if diff.size > 1 else 0.0
