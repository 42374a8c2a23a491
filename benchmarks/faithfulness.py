"""Iterated noise-and-denoise: does a denoiser lose detail gracefully or invent it?

The experiment that exposed other AI denoisers: start from a clean image ``x0``; at every
cycle add fresh noise (a new seed, the same noise model, fixed from ``x0``) to the previous
output and denoise it again. A faithful denoiser loses detail slowly and smoothly; an
inventive one drifts into stars, textures and colours that were never there.

Subjects: real crops, prepared as in ``evaluate.py`` (defects removed, 2x2 bin, the
star-richest crop; by default the deep, star-rich SDSS field of M2, mono, and the raw colour
Seestar frame of NGC 7023, whose own noise dominates: a test of what a denoiser makes of
almost pure noise), and a colour scene of the simulated validation split (seed
10_000_000 + ``--sim-index``, stars and nebulosity). Noise: ``evaluate.LEVELS``
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
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

import _metrics as m
import evaluate as ev

#: noise seeds of the loop: FAITH_SEED_BASE + 1000 * subject + cycle
FAITH_SEED_BASE = 12_000_000
#: star-mask level below which a pixel counts as star-free (chroma mask)
STAR_FREE = 0.01
#: nebulosity: star-free pixels whose smoothed luminance is this many sky sigmas above sky
NEBULA_SIGMA = 1.0
#: fewer nebulosity pixels than this: no nebula chroma (n/a)
NEBULA_MIN_PIXELS = 200


@dataclass
class Subject:
    """An original image and the fixed quantities its loop is measured with."""

    ref: ev.Reference
    nm: ev.NoiseModel
    threshold: float
    clean_xy: np.ndarray
    phot: np.ndarray
    deep_xy: np.ndarray
    data_range: float
    sky: np.ndarray
    nebula: np.ndarray | None
    chroma0: float
    star_chroma0: float

    @classmethod
    def make(cls, ref: ev.Reference, level: ev.Level) -> Subject:
        """Fix the noise model, star list and colour references of an original."""
        from napari_astrodenoise.core.starmask import star_mask

        x0 = ref.image
        nm = ev.NoiseModel.for_level(ref, level)
        _chan, lum = nm.sky_sigma(ref.sky)
        threshold = ev.DETECT_SIGMA * lum
        clean_xy = m.find_stars(x0, threshold=threshold, fwhm=ref.fwhm)
        phot = m.photometry_sample(clean_xy, x0.shape[-2:], fwhm=ref.fwhm, saturated=ref.saturated)
        deep_xy = m.find_stars(x0, threshold=ev.DEEP_SIGMA * lum, fwhm=ref.fwhm)
        sky = ref.sky
        nebula, chroma0, star_chroma0 = None, float("nan"), float("nan")
        if x0.ndim == 3:
            free = (star_mask(x0, channel_axis=0) < STAR_FREE) & ~ref.saturated
            smooth = ndimage.gaussian_filter(m.luminance(x0), m.CHROMA_SMOOTH)
            mask = free & (smooth - float(sky.mean()) > NEBULA_SIGMA * lum)
            if mask.sum() >= NEBULA_MIN_PIXELS:
                nebula, chroma0 = mask, m.chroma(x0, sky=sky, mask=mask)
            star_chroma0 = m.star_chroma(x0, clean_xy[phot], fwhm=ref.fwhm)
        return cls(
            ref, nm, threshold, clean_xy, phot, deep_xy, m.robust_range(x0), sky, nebula,
            chroma0, star_chroma0,
        )  # fmt: skip

    def measure(self, image: np.ndarray) -> dict:
        """Metrics of one loop output against the original."""
        x0, fwhm = self.ref.image, self.ref.fwhm
        out_xy = m.find_stars(image, threshold=self.threshold, fwhm=fwhm)
        err, bias = float("nan"), float("nan")
        if len(self.phot) >= ev.PHOT_MIN:
            err, bias = m.flux_error(x0, image, self.clean_xy[self.phot], fwhm=fwhm)
        chroma = star_chroma = float("nan")
        if self.nebula is not None and self.chroma0 > 0:
            chroma = m.chroma(image, sky=self.sky, mask=self.nebula) / self.chroma0
        if self.star_chroma0 > 0 and len(self.phot) >= ev.PHOT_MIN:
            xy = self.clean_xy[self.phot]
            star_chroma = m.star_chroma(image, xy, fwhm=fwhm) / self.star_chroma0
        return {
            "psnr": m.psnr(x0, image, self.data_range),
            "recall": m.star_recall(self.clean_xy, out_xy),
            "spurious": m.spurious_stars(self.clean_xy, out_xy),
            "invented": m.spurious_stars(self.deep_xy, out_xy),
            "chroma": chroma,
            "star_chroma": star_chroma,
            "flux_err": err,
            "flux_bias": bias,
            "peak": m.peak_ratio(x0, image, sky=self.sky),
        }


def iterate(
    subject: Subject,
    denoiser: Callable[[np.ndarray], np.ndarray],
    cycles: int,
    seed_base: int,
    label: str,
) -> tuple[list[dict], float]:
    """Run the loop; ``(metrics per cycle, PSNR of the first noisy input)``."""
    x = subject.ref.image
    history: list[dict] = []
    first_noisy = float("nan")
    start = time.perf_counter()
    for cycle in range(1, cycles + 1):
        noisy = subject.nm.apply(x, seed_base + cycle)
        if cycle == 1:
            first_noisy = m.psnr(subject.ref.image, noisy, subject.data_range)
        x = denoiser(noisy)
        row = subject.measure(x)
        row["cycle"] = cycle
        history.append(row)
        if cycle == 1 or cycle % 10 == 0 or cycle == cycles:
            print(
                f"[{subject.ref.name} {label}] cycle {cycle}: PSNR {row['psnr']:.2f} dB, "
                f"recall {row['recall']:.3f}, spurious {row['spurious']}, "
                f"{time.perf_counter() - start:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    return history, first_noisy


# ------------------------------------------------------------------------------ output


def _f(value: float, fmt: str) -> str:
    return "n/a" if not math.isfinite(value) else format(value, fmt)


def _pct(value: float, fmt: str) -> str:
    return "n/a" if not math.isfinite(value) else format(100 * value, fmt) + " %"


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
                    f"{_f(row['recall'], '.3f')} | {row['spurious']} | {row['invented']} | "
                    f"{_f(row['chroma'], '.3f')} | {_f(row['star_chroma'], '.3f')} | "
                    f"{_pct(row['flux_err'], '.2f')} | {_pct(row['flux_bias'], '+.2f')} | "
                    f"{_f(row['peak'], '.3f')} |"
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
            why = "mono" if mono[name] else f"no nebulosity,\n< {ev.PHOT_MIN} photometry stars"
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
    ev.compact_png(path)


# ------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ev.add_model_options(p)
    p.add_argument("--cycles", type=int, default=None, help="model cycles (default 100)")
    p.add_argument("--with-bm3d", action="store_true", help="also loop BM3D (slow)")
    p.add_argument("--bm3d-cycles", type=int, default=None, help="BM3D cycles (default 20)")
    p.add_argument("--level", choices=list(ev.LEVELS), default="moderate")
    p.add_argument("--crop", type=int, default=None, help="crop size in px (default 256)")
    p.add_argument(
        "--images",
        nargs="*",
        default=["m2field_sdss_frame_r_2048x1489.fits", "ngc7023_seestar_raw_bayer_10s.fits"],
        help="real frames in --data-dir (none: simulated scene only)",
    )
    p.add_argument("--data-dir", type=Path, default=ev.EVAL_DIR)
    p.add_argument("--sim-index", type=int, default=0, help="scene of the validation split")
    p.add_argument("--quick", action="store_true", help="96 px crops, 5 cycles (3 for BM3D)")
    p.add_argument("--tag", default=None, help="results name (default: model name)")
    args = p.parse_args(argv)
    args.cycles = args.cycles or (5 if args.quick else 100)
    args.bm3d_cycles = args.bm3d_cycles or (3 if args.quick else 20)
    args.crop = args.crop or (96 if args.quick else 256)
    return args


def subjects(args) -> list[Subject]:
    level = ev.LEVELS[args.level]
    refs = []
    for name in args.images:
        path = args.data_dir / name
        if path.is_file():
            refs.append(ev.real_reference(path, args.crop))
        else:
            print(f"real frame {path} not found: skipped", file=sys.stderr)
    refs.append(ev.simulated_reference(args.sim_index, args.crop))
    return [Subject.make(ev.prepare(r), level) for r in refs]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model, model_label, model_name = ev.denoiser_from_args(args)
    args.tag = args.tag or (model_name + ("_quick" if args.quick else ""))
    runs = []
    subs = subjects(args)
    for i, subject in enumerate(subs):
        seeds = FAITH_SEED_BASE + 1000 * i  # the same noise for every method
        hist, first = iterate(subject, model, args.cycles, seeds, "model")
        runs.append((subject, "model", hist, first))
        if args.with_bm3d:

            def bm3d(z: np.ndarray, nm: ev.NoiseModel = subject.nm) -> np.ndarray:
                return ev.CLASSICAL["bm3d"](z, nm)

            hist, first = iterate(subject, bm3d, args.bm3d_cycles, seeds, "bm3d")
            runs.append((subject, "bm3d", hist, first))
    lv = ev.LEVELS[args.level]
    lines = [
        f"# Faithfulness under iterated noise and denoising: {args.tag}",
        "",
        f"Model: {model_label}. Noise level {lv.name} ({lv.sky_e:g} e- sky for the simulated "
        f"scene, {lv.k:g} x sigma_ref for the real crop; read noise {ev.READ_NOISE_E:g} e-), "
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
    text = "\n".join(lines)
    print(text)
    ev.RESULTS.mkdir(parents=True, exist_ok=True)
    (ev.RESULTS / f"faithfulness_{args.tag}.md").write_text(text)
    plot(runs, ev.RESULTS / f"faithfulness_{args.tag}.png", f"{args.tag}: {model_label}")
    print(f"written benchmarks/results/faithfulness_{args.tag}.{{md,png}}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
