"""The denoisers the benchmarks compare: the model, and BM3D, non-local means and wavelets.

The classical methods are given the true noise model (``_cases.NoiseModel``): they run on its
generalized Anscombe transform, rescaled to about [0, 1], and are mapped back by the
closed-form unbiased inverse (see ``evaluate.py``). The model runs through the engine's
``denoise`` with the safeguards the command line asks for (:func:`add_model_options`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

import _metrics as m
from _cases import NoiseModel


def _classical(
    run: Callable[[np.ndarray, float, bool], np.ndarray],
) -> Callable[[np.ndarray, NoiseModel], np.ndarray]:
    """Wrap a Gaussian denoiser ``run(hwc_or_hw, sigma, colour)`` in GAT + [0, 1] scaling."""

    def method(noisy: np.ndarray, nm: NoiseModel) -> np.ndarray:
        f = nm.gat(noisy)
        lo, hi = np.percentile(f, m.RANGE_PERCENTILES)
        span = max(float(hi - lo), 1e-6)
        u = (f - lo) / span
        colour = u.ndim == 3
        z = np.moveaxis(u, 0, -1) if colour else u
        out = np.asarray(run(z, 1.0 / span, colour), dtype=np.float64)
        out = np.moveaxis(out, -1, 0) if colour else out
        return nm.inverse_gat(out * span + lo, noisy)

    return method


def _bm3d(z: np.ndarray, sigma: float, colour: bool) -> np.ndarray:
    import bm3d

    if colour:
        return bm3d.bm3d_rgb(z, sigma)
    return bm3d.bm3d(z, sigma)


def _nlm(z: np.ndarray, sigma: float, colour: bool) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    return denoise_nl_means(
        z,
        patch_size=5,
        patch_distance=6,
        h=0.6 * sigma,
        sigma=sigma,
        fast_mode=True,
        channel_axis=-1 if colour else None,
    )


def _wavelet(z: np.ndarray, sigma: float, colour: bool) -> np.ndarray:
    from skimage.restoration import denoise_wavelet

    return denoise_wavelet(
        z,
        sigma=sigma,
        method="BayesShrink",
        mode="soft",
        rescale_sigma=True,
        channel_axis=-1 if colour else None,
    )


CLASSICAL = {"bm3d": _classical(_bm3d), "nlm": _classical(_nlm), "wavelet": _classical(_wavelet)}
METHODS = ("noisy", "model", "bm3d", "nlm", "wavelet")


#: the safeguards a ``--model`` run takes from the command line, and the name suffix each
#: adds to the results' name when it is not the engine's default
_SUFFIXES = {
    "flux_lock": "lock",
    "change_limit": "limit",
    "lock_threshold": "lockth",
    "peak_cap": "cap",
    "star_refit": "refit",
}


def load_denoiser(
    spec: str,
    device: str = "auto",
    flux_lock: float | None = None,
    ensemble: int = 1,
    change_limit: float | None = None,
    peak_cap: int | None = None,
    lock_threshold: float | None = None,
    star_refit: float | None = None,
):
    """``(callable(noisy) -> output, label, name)`` for ``--model``: default, untrained or a
    path, run with ``flux_lock``, ``change_limit``, ``peak_cap``, ``lock_threshold`` and
    ``star_refit`` (None: the engine's defaults) and ``ensemble``."""
    from napari_astrodenoise.core.options import SAFEGUARDS, defaults
    from napari_astrodenoise.core.pipeline import denoise

    default = defaults(SAFEGUARDS)
    given = {
        "flux_lock": flux_lock,
        "change_limit": change_limit,
        "peak_cap": peak_cap,
        "lock_threshold": lock_threshold,
        "star_refit": star_refit,
    }
    guards = {k: default[k] if v is None else v for k, v in given.items()}
    loaded, label = _load_model(spec, device)
    label += (
        f", flux lock {guards['flux_lock']:g} px (threshold {guards['lock_threshold']:g} "
        f"sigma), change limit {guards['change_limit']:g} sigma, peak cap "
        f"{guards['peak_cap']} px, star refit {guards['star_refit']:g}, self-ensemble {ensemble}"
    )
    name = loaded.name + "".join(
        f"_{suffix}{guards[k]:g}" for k, suffix in _SUFFIXES.items() if guards[k] != default[k]
    )
    name += "" if ensemble == 1 else f"_ens{ensemble}"

    def run(noisy: np.ndarray) -> np.ndarray:
        axis = 0 if noisy.ndim == 3 else None
        return denoise(noisy, model=loaded, channel_axis=axis, ensemble=ensemble, **guards)

    return run, label, name


def _load_model(spec: str, device: str):
    """``(LoadedModel, label)`` of ``--model``: ``default``, ``untrained`` or a path."""
    from napari_astrodenoise.core.weights import ModelNotFoundError, load_model

    if spec == "untrained":
        return _untrained_model(device), "untrained ResUNet (identity; smoke test only)"
    try:
        loaded = load_model(spec, device=device)
    except ModelNotFoundError as err:
        sys.exit(f"{err}\n(use --model PATH, or --model untrained for a smoke test)")
    return loaded, f"{loaded.name} (sha256 {loaded.sha256[:12]})"


def add_model_options(p: argparse.ArgumentParser) -> None:
    """The options that choose and run the model (for ``denoiser_from_args``)."""
    p.add_argument("--model", default="default", help="default | untrained | PATH")
    p.add_argument("--device", default="auto")
    p.add_argument("--flux-lock", type=float, default=None, help="px (default: the engine's)")
    p.add_argument(
        "--change-limit", type=float, default=None, help="noise sigmas (default: the engine's)"
    )
    p.add_argument("--peak-cap", type=int, default=None, help="px (default: the engine's)")
    p.add_argument(
        "--lock-threshold", type=float, default=None, help="sigmas (default: the engine's)"
    )
    p.add_argument(
        "--star-refit", type=float, default=None, help="prior width (default: the engine's)"
    )
    p.add_argument("--ensemble", type=int, choices=(1, 2, 4, 8), default=1)


def denoiser_from_args(args: argparse.Namespace):
    """``load_denoiser`` with the options of ``add_model_options``."""
    return load_denoiser(
        args.model,
        args.device,
        args.flux_lock,
        args.ensemble,
        args.change_limit,
        args.peak_cap,
        args.lock_threshold,
        args.star_refit,
    )


def _untrained_model(device: str):
    """A small fresh ResUNet (its zeroed tail makes it the identity), saved to a temp dir."""
    import tempfile

    import torch

    from napari_astrodenoise.core.model import ResUNet, ResUNetConfig
    from napari_astrodenoise.core.weights import load_model, save_model

    torch.manual_seed(0)
    module = ResUNet(ResUNetConfig(width=8, depth=2))
    with tempfile.TemporaryDirectory(prefix="astrodenoise-eval-") as folder:
        path = Path(folder) / "untrained.safetensors"
        save_model(module, path, name="untrained")
        return load_model(path, device=device)  # weights are in memory once loaded
