"""The flux lock's scale on raw Bayer mosaics: in pixels of the colour planes or of the mosaic?

The network denoises a raw one-shot-colour mosaic as its four colour planes, each half the
mosaic's size. The lock's 8 px was chosen on the tuning set (``flux_lock_scale.py``) in the
pixels the network works on, with mono and colour images only. On a mosaic, 8 px of the
mosaic are 4 px of each plane: there the lock hands back four times the large-scale noise
per pixel that it does on a mono frame (``1 / (4 pi s^2)`` of the noise's power).

This script measures the lock at 0, 4 and 8 px of the planes (0, 8 and 16 px of the mosaic)
on:

1. the tuning set's analogue for mosaics: its simulated colour scenes (seeds 20_000_000 + i,
   never the evaluation's), each sampled through an RGGB mosaic so that the truth is known,
   with ``evaluate.py``'s three noise levels. The network runs once per case with every
   safeguard off; its change then gets the engine's other defaults and each lock
   (``safeguards.guard_change`` on the planes, as ``denoise(..., bayer=True)`` does). Metrics
   as on the tuning set (``_cases.score``: PSNR gain over the noisy mosaic, median
   star-flux error and bias, spurious and invented stars);
2. the real ZWO Bayer sequence of ``../shared/data/sequences/`` where present, with the
   shipped model, scored as ``finetune_real.py`` scores it (faint sky and extended signal
   against the mean of frames 3..N).

Prints markdown tables and writes ``benchmarks/results/bayer_flux_lock.md``::

    .venv/bin/python benchmarks/bayer_flux_lock.py [--n-sim 24] [--size 512]
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

import _cases as cs
import _harness as hs
from napari_astrodenoise.core.options import SAFEGUARDS, defaults
from napari_astrodenoise.finetune.frames import load_frames
from safeguards import free_prediction, guard_planes

#: the lock's Gaussian sigma in pixels of the colour planes (0: off)
SCALES = (0.0, 4.0, 8.0)


def mosaic(rgb: np.ndarray) -> np.ndarray:
    """(3, H, W) -> (H, W): each pixel keeps the channel of its RGGB filter."""
    out = np.empty(rgb.shape[1:], dtype=rgb.dtype)
    out[0::2, 0::2] = rgb[0, 0::2, 0::2]
    out[0::2, 1::2] = rgb[1, 0::2, 1::2]
    out[1::2, 0::2] = rgb[1, 1::2, 0::2]
    out[1::2, 1::2] = rgb[2, 1::2, 1::2]
    return out


def mosaic_reference(index: int, size: int) -> cs.Reference:
    """Tuning-set colour scene ``index`` (even: the colour ones), sampled through RGGB."""
    ref = cs.simulated_reference(index, size, seed_base=hs.TUNE_SIM_SEED_BASE)
    sky = np.asarray([float(np.mean(ref.sky))])
    return cs.prepare(
        cs.Reference(
            f"{ref.name}_rggb",
            mosaic(ref.image),
            ref.saturated,
            0.0,
            sky,
            "sim",
            ref.note + ", sampled through an RGGB mosaic",
        )
    )


def locked(free, scale: float) -> np.ndarray:
    """The engine's defaults on a free Bayer prediction, the lock at ``scale`` plane px."""
    return guard_planes(free, **{**defaults(SAFEGUARDS), "flux_lock": scale})


def simulated_table(model, n_sim: int, size: int) -> list[str]:
    per = {s: {k: [] for k in ("gain", "flux", "bias", "spurious", "invented")} for s in SCALES}
    for i in range(0, 2 * n_sim, 2):
        ref = mosaic_reference(i, size)
        for j, level in enumerate(cs.LEVELS.values()):
            case = cs.make_case(ref, level, cs.NOISE_SEED_BASE + 3 * i + j)
            noisy_psnr = cs.score(case, case.noisy)["psnr"]
            free = free_prediction(case.noisy, model, bayer=True)
            for s in SCALES:
                metrics = cs.score(case, locked(free, s))
                d = per[s]
                d["gain"].append(metrics["psnr"] - noisy_psnr)
                d["flux"].append(metrics["flux_err"])
                d["bias"].append(metrics["flux_bias"])
                d["spurious"].append(metrics["spurious"])
                d["invented"].append(metrics["invented"])
        print(f"{ref.name}: done", file=sys.stderr, flush=True)
    base = np.asarray(per[4.0]["gain"])
    lines = [
        f"## Simulated colour scenes through an RGGB mosaic ({n_sim} scenes, {size} px, "
        f"levels {', '.join(cs.LEVELS)})",
        "",
        "| lock, px of the planes (of the mosaic) | mean gain dB | worst case vs 4 px dB "
        "| median flux err | median flux bias | spurious (total) | invented (total) |",
        "|---|---|---|---|---|---|---|",
    ]
    for s, d in per.items():
        label = "off" if s == 0 else f"{s:g} ({2 * s:g})"
        lines.append(
            f"| {label} | {hs.finite_mean(d['gain']):+.2f} "
            f"| {float(np.min(np.asarray(d['gain']) - base)):+.2f} "
            f"| {100 * hs.finite_median(d['flux']):.2f} % "
            f"| {100 * hs.finite_median(d['bias']):+.2f} % "
            f"| {int(np.sum(d['spurious']))} | {int(np.sum(d['invented']))} |"
        )
    return [*lines, ""]


def real_table(model) -> list[str]:
    import finetune_real as fr

    # a raw mosaic says so in its header: only those sequences are registered
    folders = [
        f
        for f in fr.sequence_folders()
        if load_frames([str(fr.frame_paths(f)[0])])[0].bayer_pattern is not None
    ]
    if not folders:
        return [f"No Bayer sequence at {fr.SEQUENCES}: nothing measured on real noise.", ""]
    lines = []
    for folder in folders:
        case = fr.build_case(folder)
        noisy = fr.score(case, case.frame1, 0.0)
        free = free_prediction(case.frame1, model, bayer=True)
        lines += [
            f"## {folder.name} (real, shipped model; frame 1 against the mean of frames 3..N)",
            "",
            "| lock, px of the planes (of the mosaic) | faint sky and extended dB "
            "| extended dB | star flux err | spurious |",
            "|---|---|---|---|---|",
        ]
        for s in SCALES:
            r = fr.score(case, locked(free, s), 0.0)
            label = "off" if s == 0 else f"{s:g} ({2 * s:g})"
            lines.append(
                f"| {label} | {10 * math.log10(noisy['mse'] / r['mse']):+.2f} "
                f"| {10 * math.log10(noisy['mse_ext'] / r['mse_ext']):+.2f} "
                f"| {100 * r['flux']:.2f} % | {r['spurious']} |"
            )
        lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    from napari_astrodenoise.core.weights import load_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--n-sim", type=int, default=12, help="simulated colour scenes")
    parser.add_argument("--size", type=int, default=512, help="mosaic side in px")
    args = parser.parse_args(argv)
    model = load_model(args.model)
    lines = [
        "# Flux-lock scale on raw Bayer mosaics",
        "",
        f"Model: {model.name} (sha256 {model.sha256[:12]}); the other safeguards at the "
        "engine's defaults. Command: `.venv/bin/python benchmarks/bayer_flux_lock.py"
        f"{'' if args.n_sim == 12 else f' --n-sim {args.n_sim}'}"
        f"{'' if args.size == 512 else f' --size {args.size}'}`.",
        "",
        *simulated_table(model, args.n_sim, args.size),
        *real_table(model),
    ]
    hs.write_results("bayer_flux_lock", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
