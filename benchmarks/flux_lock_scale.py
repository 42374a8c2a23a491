"""Choose the flux-lock scale on a tuning set that is not the evaluation set.

The engine's flux lock (``pipeline.lock_flux``) takes the Gaussian low-pass of scale ``s``
out of the network's change. Small ``s`` holds flux and colour on small scales but gives
back more of the noise's own large-scale part (about 1 / (2 sqrt(pi) s) of its amplitude);
large ``s`` the reverse. This script measures the trade-off so that the default is chosen on
data the evaluation never uses:

- simulated scenes with seeds 20_000_000 + i (the evaluation uses 10_000_000 + i, training
  draws far below both), presets in turn, colour and mono alternating;
- the real frames of ``../shared/data/fits/train/`` (the training frames: their own noise
  is in the reference, so the gain is capped as in ``evaluate.py``), prepared by
  ``evaluate.real_reference`` (defects, 2x2 bin, star-rich crop);

each at the three noise levels of ``evaluate.py``. The network runs once per case with the
lock off; each scale is then ``guarded`` (``pipeline.guard_change``): the lock of
``prediction - input`` at ``s``, added to the input, which is what
``denoise(..., flux_lock=s, change_limit=0, peak_cap=0, star_refit=0)`` returns for finite,
non-Bayer input (the change limit, the star refit and the peak cap, applied after the lock,
are chosen by ``change_limit.py``, ``star_refit.py`` and ``peak_cap.py``). Prints a markdown table
(mean PSNR gain on simulated and real cases, median star-flux error, mean |flux bias|) and
writes it to ``benchmarks/results/flux_lock_scale_<model>.md``.

    .venv/bin/python benchmarks/flux_lock_scale.py [--model default|PATH] [--n-sim 12]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator

import numpy as np

import evaluate as ev
from napari_astrodenoise.core.options import defaults
from napari_astrodenoise.core.pipeline import denoise
from napari_astrodenoise.core.safeguards import guard_change
from napari_astrodenoise.core.weights import LoadedModel, load_model

#: the engine's option defaults
DEFAULT = defaults()

TUNE_SIM_SEED_BASE = 20_000_000
TUNE_NOISE_SEED_BASE = 21_000_000
TRAIN_DIR = ev.ROOT.parent / "shared" / "data" / "fits" / "train"
# the SDSS bands are the planes of the colour cube: measured once, as the cube
TRAIN_IMAGES = ("m51_kpno_b600s.fits", "m67_dss_poss1.fits", "ngc6976_sdss_irg_rgbcube.fits")
SCALES = (0.0, 2.0, 4.0, 8.0, 16.0, 32.0)


def tuning_references(n_sim: int, crop: int) -> list[ev.Reference]:
    refs = [ev.simulated_reference(i, crop, seed_base=TUNE_SIM_SEED_BASE) for i in range(n_sim)]
    if TRAIN_DIR.is_dir():
        refs += [ev.real_reference(TRAIN_DIR / name, crop) for name in TRAIN_IMAGES]
    else:
        print(f"training frames not found at {TRAIN_DIR}: simulated cases only", file=sys.stderr)
    return [ev.prepare(r) for r in refs]


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if np.isfinite(v)]


def finite_mean(values: list[float]) -> float:
    """Mean of the finite values (NaN: none)."""
    finite = _finite(values)
    return float(np.mean(finite)) if finite else float("nan")


def finite_median(values: list[float]) -> float:
    """Median of the finite values (NaN: none)."""
    finite = _finite(values)
    return float(np.median(finite)) if finite else float("nan")


def tuning_set_text(d: dict[str, list[float]], crop: int) -> str:
    """The tables' sentence on the tuning set, counting the cases of one sweep row ``d``."""
    return (
        f"Tuning set (never the evaluation set): {len(d['sim'])} simulated cases (seeds "
        f"{TUNE_SIM_SEED_BASE} + i) and {len(d['real'])} cases from the training frames "
        f"({', '.join(TRAIN_IMAGES)}), {crop} px crops, the three noise levels of evaluate.py."
    )


def unguarded(case: ev.Case, loaded: LoadedModel) -> np.ndarray:
    """The engine's output for the case's noisy frame, every safeguard off."""
    return denoise(
        case.noisy,
        model=loaded,
        channel_axis=0 if case.noisy.ndim == 3 else None,
        flux_lock=0.0,
        change_limit=0.0,
        peak_cap=0,
        star_refit=0.0,
    )


def tuning_cases(
    refs: list[ev.Reference], loaded: LoadedModel
) -> Iterator[tuple[ev.Reference, ev.Case, np.ndarray, float]]:
    """``(reference, case, free output, noisy PSNR)`` for every reference and noise level.

    The free output is the network's with the flux lock, the change limit and the peak cap
    off; the noise seeds are the tuning set's own. A line on stderr after each reference.
    """
    start = time.perf_counter()
    for i, ref in enumerate(refs):
        for j, level in enumerate(ev.LEVELS.values()):
            case = ev.make_case(ref, level, seed=TUNE_NOISE_SEED_BASE + 100 * i + j)
            yield ref, case, unguarded(case, loaded), ev.score(case, case.noisy)["psnr"]
        print(f"[{ref.name}] done, {time.perf_counter() - start:.0f} s", file=sys.stderr)


def guarded(
    noisy: np.ndarray,
    free: np.ndarray,
    *,
    flux_lock: float,
    change_limit: float,
    peak_cap: int,
    lock_threshold: float = 0.0,
    star_refit: float = 0.0,
) -> np.ndarray:
    """``free`` with the engine's safeguards at these settings (``pipeline.guard_change``).

    ``lock_threshold`` 0 is the strict flux lock and ``star_refit`` 0 no refit, under
    which this script, ``change_limit.py`` and ``peak_cap.py`` made their tables;
    ``lock_threshold.py`` and ``star_refit.py`` vary them.
    """
    planes = noisy.reshape(-1, *noisy.shape[-2:])
    out, _profile = guard_change(
        free.reshape(planes.shape) - planes,
        planes,
        flux_lock=flux_lock,
        change_limit=change_limit,
        peak_cap=peak_cap,
        lock_threshold=lock_threshold,
        star_refit=star_refit,
    )
    return out.reshape(noisy.shape)


def sweep(
    refs: list[ev.Reference],
    loaded: LoadedModel,
    values: tuple,
    settings: Callable[[object], dict],
) -> dict[object, dict[str, list[float]]]:
    """Score every tuning case under the safeguards ``settings(v)`` for each ``v``.

    ``settings(v)`` gives :func:`guarded`'s keywords. Per value: the PSNR gains over the
    noisy input of the ``"sim"`` and ``"real"`` cases, and per case ``"psnr"`` and the
    metrics of :func:`evaluate.score` (``flux_err``, ``flux_bias``, ``spurious``,
    ``invented``, ``recall``).
    The network runs once per case (:func:`tuning_cases`).
    """
    keys = ("sim", "real", "psnr", "flux_err", "flux_bias", "spurious", "invented", "recall")
    per: dict[object, dict[str, list[float]]] = {v: {k: [] for k in keys} for v in values}
    for ref, case, free, noisy_psnr in tuning_cases(refs, loaded):
        for v in values:
            metrics = ev.score(case, guarded(case.noisy, free, **settings(v)))
            d = per[v]
            d["sim" if ref.kind == "sim" else "real"].append(metrics["psnr"] - noisy_psnr)
            for k in keys[2:]:
                d[k].append(metrics[k])
    return per


def tuning_args(
    description: str,
    argv: list[str] | None,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """The options every tuning-set script takes (model, device, scenes, crop).

    ``extra(parser)`` adds a script's own options.
    """
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", default="default")
    p.add_argument("--device", default="auto")
    p.add_argument("--n-sim", type=int, default=12)
    p.add_argument("--crop", type=int, default=256)
    if extra is not None:
        extra(p)
    return p.parse_args(argv)


def gain_cells(d: dict[str, list[float]]) -> str:
    """The mean-gain cells (simulated, real, all) of a results row."""
    return (
        f"{finite_mean(d['sim']):+.2f} | {finite_mean(d['real']):+.2f} | "
        f"{finite_mean(d['sim'] + d['real']):+.2f}"
    )


def tuning_setup(
    description: str, argv: list[str] | None
) -> tuple[argparse.Namespace, LoadedModel, list[ev.Reference]]:
    """``(args, model, references)`` of a tuning-set script with the common options."""
    args = tuning_args(description, argv)
    return (
        args,
        load_model(args.model, device=args.device),
        tuning_references(args.n_sim, args.crop),
    )


def write_results(stem: str, lines: list[str]) -> None:
    """Print a markdown table and write it to ``benchmarks/results/<stem>.md``."""
    text = "\n".join(lines) + "\n"
    print(text)
    ev.RESULTS.mkdir(parents=True, exist_ok=True)
    out = ev.RESULTS / f"{stem}.md"
    out.write_text(text)
    print(f"written {out.relative_to(ev.ROOT)}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args, loaded, refs = tuning_setup(__doc__.split("\n")[0], argv)
    per_scale = sweep(
        refs, loaded, SCALES, lambda s: {"flux_lock": s, "change_limit": 0.0, "peak_cap": 0}
    )
    lines = [
        f"# Flux-lock scale on the tuning set: {loaded.name}",
        "",
        f"Model: {loaded.name} (sha256 {loaded.sha256[:12]}). "
        f"{tuning_set_text(per_scale[0.0], args.crop)} "
        f"Engine default: {DEFAULT['flux_lock']:g} px.",
        "",
        "Command: `.venv/bin/python benchmarks/flux_lock_scale.py`",
        "",
        "| flux lock px | mean gain dB, simulated | mean gain dB, real | mean gain dB, all "
        "| median flux err | median abs flux bias |",
        "|---|---|---|---|---|---|",
    ]
    for s in SCALES:
        d = per_scale[s]
        lines.append(
            f"| {'off' if s == 0 else f'{s:g}'} | {gain_cells(d)} | "
            f"{100 * finite_median(d['flux_err']):.2f} % | "
            f"{100 * finite_median(np.abs(d['flux_bias'])):.2f} % |"
        )
    write_results(f"flux_lock_scale_{loaded.name}", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
