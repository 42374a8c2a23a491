"""Iterated noise-and-denoise: does a denoiser lose detail gracefully or invent it?

The experiment that exposed other AI denoisers: start from a clean image ``x0``; at every
cycle add fresh noise (a new seed, the same noise model, fixed from ``x0``) to the previous
output and denoise it again. A faithful denoiser loses detail slowly and smoothly; an
inventive one drifts into stars, textures and colours that were never there.

Subjects: real crops, prepared as in ``evaluate.py`` (defects removed, 2x2 bin, the
star-richest crop; by default the deep, star-rich SDSS field of M2, mono, and the raw colour
Seestar frame of NGC 7023, whose own noise dominates: a test of what a denoiser makes of
almost pure noise), and a colour scene of the simulated validation split (seed
10_000_000 + ``--sim-index``, stars and nebulosity). Noise: ``_cases.LEVELS``
(default moderate). After each cycle, against ``x0``: PSNR (linear, as in ``evaluate.py``),
star recall and spurious stars (DAOStarFinder at 5 x the noise's sky sigma, for x0 and every
output), invented stars (output detections with no source of x0 even at 3 sigma), median
star-flux error and bias, and for colour data two colour saturations relative to x0's: nebula
chroma (``_metrics.chroma`` over star-free pixels, star mask ``core.starmask.star_mask`` of x0
below 0.01, whose 3 px-smoothed luminance is more than one sky sigma above the sky; n/a with
fewer than 200 such pixels) and star chroma (``_metrics.star_chroma`` over x0's photometry
stars), and the peak: the brightest pixel above the sky relative to x0's
(``_metrics.peak_ratio``; noise alone lifts it a few per cent, far above 1 is a core that grows
pass after pass, below 1 cores flattened). The dashed line in the plot is the PSNR of the first
noisy input: below it, many cycles have done more harm than one frame of noise.

Writes ``benchmarks/results/faithfulness_<tag>.md`` (every 10th cycle) and ``.png`` (all
cycles) and prints the table. Usage::

    .venv/bin/python benchmarks/faithfulness.py                          # 100 cycles
    .venv/bin/python benchmarks/faithfulness.py --with-bm3d              # + 20 BM3D cycles
    .venv/bin/python benchmarks/faithfulness.py --quick --model untrained   # smoke test
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import _cases as cs
from _harness import RESULTS, cell, compact_png, percent, write_results
from _loop import FAITH_SEED_BASE, Subject, iterate
from _methods import CLASSICAL, add_model_options, denoiser_from_args

# ------------------------------------------------------------------------------ output


def table(runs: list[tuple[Subject, str, list[dict], float]]) -> list[str]:
    lines = [
        "| subject | method | cycle | PSNR dB | recall | spurious | invented | nebula chroma "
        "| star chroma | flux err | flux bias | peak |",
        "|" + "---|" * 12,
    ]
    for subject, label, history, first_noisy in runs:
        lines.append(
            f"| {subject.ref.name} | noisy input | 1 | {first_noisy:.2f} | | | | | | | | |"
        )
        for row in history:
            c = row["cycle"]
            if c == 1 or c % 10 == 0 or c == len(history):
                lines.append(
                    f"| {subject.ref.name} | {label} | {c} | {row['psnr']:.2f} | "
                    f"{cell(row['recall'], '.3f')} | {row['spurious']} | {row['invented']} | "
                    f"{cell(row['chroma'], '.3f')} | {cell(row['star_chroma'], '.3f')} | "
                    f"{percent(row['flux_err'], '.2f')} | {percent(row['flux_bias'], '+.2f')} | "
                    f"{cell(row['peak'], '.3f')} |"
                )
    return lines


def plot(runs: list[tuple[Subject, str, list[dict], float]], path: Path, title: str) -> None:
    """Metrics against cycle: a row per subject, a column per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    names = list(dict.fromkeys(r[0].ref.name for r in runs))
    titles = ("PSNR vs original (dB)", "star recall", "spurious stars", "chroma / original")
    fig, axes = plt.subplots(
        len(names), 4, figsize=(10, 2.3 * len(names) + 0.4), dpi=85, squeeze=False
    )
    noisy_drawn = set()
    for subject, label, history, first_noisy in runs:
        name = subject.ref.name
        row = axes[names.index(name)]
        cycles = [h["cycle"] for h in history]
        for ax, key in zip(row[:3], ("psnr", "recall", "spurious"), strict=True):
            ax.plot(cycles, [h[key] for h in history], label=label, lw=1.2)
        for key, style, what in (("chroma", "-", "nebula"), ("star_chroma", ":", "stars")):
            values = [h[key] for h in history]
            if np.isfinite(values).any():
                row[3].plot(cycles, values, style, lw=1.2, label=f"{label} {what}")
        if name not in noisy_drawn:
            row[0].axhline(first_noisy, color="grey", ls="--", lw=0.8, label="one noisy frame")
            noisy_drawn.add(name)
    mono = {r[0].ref.name: r[0].ref.image.ndim == 2 for r in runs}
    for name, row in zip(names, axes, strict=True):
        for ax, text in zip(row, titles, strict=True):
            ax.set_title(text, fontsize=7)
            ax.tick_params(labelsize=7)
            ax.set_xlabel("cycle", fontsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        row[0].set_ylabel(name[:26], fontsize=7)
        row[0].legend(fontsize=6)
        if row[3].get_lines():
            row[3].legend(fontsize=6)
        else:
            why = "mono" if mono[name] else f"no nebulosity,\n< {cs.PHOT_MIN} photometry stars"
            row[3].text(
                0.5, 0.5, f"n/a ({why})", ha="center", va="center", fontsize=7,
                transform=row[3].transAxes,
            )  # fmt: skip
            row[3].set_xticks([])
            row[3].set_yticks([])
    fig.suptitle(title, fontsize=8)
    fig.tight_layout(pad=0.4, rect=(0, 0, 1, 1 - 0.25 / fig.get_figheight()))
    fig.savefig(path)
    plt.close(fig)
    compact_png(path)


# ------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_options(p)
    p.add_argument("--cycles", type=int, default=None, help="model cycles (default 100)")
    p.add_argument("--with-bm3d", action="store_true", help="also loop BM3D (slow)")
    p.add_argument("--bm3d-cycles", type=int, default=None, help="BM3D cycles (default 20)")
    p.add_argument("--level", choices=list(cs.LEVELS), default="moderate")
    p.add_argument("--crop", type=int, default=None, help="crop size in px (default 256)")
    p.add_argument(
        "--images",
        nargs="*",
        default=["m2field_sdss_frame_r_2048x1489.fits", "ngc7023_seestar_raw_bayer_10s.fits"],
        help="real frames in --data-dir (none: simulated scene only)",
    )
    p.add_argument("--data-dir", type=Path, default=cs.EVAL_DIR)
    p.add_argument("--sim-index", type=int, default=0, help="scene of the validation split")
    p.add_argument("--quick", action="store_true", help="96 px crops, 5 cycles (3 for BM3D)")
    p.add_argument("--tag", default=None, help="results name (default: model name)")
    args = p.parse_args(argv)
    args.cycles = args.cycles or (5 if args.quick else 100)
    args.bm3d_cycles = args.bm3d_cycles or (3 if args.quick else 20)
    args.crop = args.crop or (96 if args.quick else 256)
    return args


def subjects(args) -> list[Subject]:
    level = cs.LEVELS[args.level]
    refs = []
    for name in args.images:
        path = args.data_dir / name
        if path.is_file():
            refs.append(cs.real_reference(path, args.crop))
        else:
            print(f"real frame {path} not found: skipped", file=sys.stderr)
    refs.append(cs.simulated_reference(args.sim_index, args.crop))
    return [Subject.make(cs.prepare(r), level) for r in refs]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model, model_label, model_name = denoiser_from_args(args)
    args.tag = args.tag or (model_name + ("_quick" if args.quick else ""))
    runs = []
    subs = subjects(args)
    for i, subject in enumerate(subs):
        seeds = FAITH_SEED_BASE + 1000 * i  # the same noise for every method
        hist, first = iterate(subject, model, args.cycles, seeds, "model")
        runs.append((subject, "model", hist, first))
        if args.with_bm3d:

            def bm3d(z: np.ndarray, nm: cs.NoiseModel = subject.nm) -> np.ndarray:
                return CLASSICAL["bm3d"](z, nm)

            hist, first = iterate(subject, bm3d, args.bm3d_cycles, seeds, "bm3d")
            runs.append((subject, "bm3d", hist, first))
    lv = cs.LEVELS[args.level]
    lines = [
        f"# Faithfulness under iterated noise and denoising: {args.tag}",
        "",
        f"Model: {model_label}. Noise level {lv.name} ({lv.sky_e:g} e- sky for the simulated "
        f"scene, {lv.k:g} x sigma_ref for the real crop; read noise {cs.READ_NOISE_E:g} e-), "
        f"fresh noise every cycle, crop {args.crop} px. Metrics against the original after "
        "each cycle (see benchmarks/faithfulness.py); the 'noisy input' row is one noisy "
        "frame, for scale. Chroma: colour saturation relative to the original (n/a: mono, or "
        "no nebulosity).",
        "",
        "Subjects:",
        "",
        *[
            f"- {s.ref.name}: {s.ref.note}; {len(s.clean_xy)} stars, FWHM {s.ref.fwhm:.2f} px"
            for s in subs
        ],
        "",
        *table(runs),
        "",
    ]
    write_results(f"faithfulness_{args.tag}", lines[:-1])
    plot(runs, RESULTS / f"faithfulness_{args.tag}.png", f"{args.tag}: {model_label}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
