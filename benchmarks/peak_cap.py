"""Choose the peak cap on a tuning set that is not the evaluation set.

The engine's peak cap (``pipeline.cap_peaks``) keeps every output pixel at or below the
brightest input pixel within ``r`` pixels. It was added for a failure of the repeated
noise-and-denoise loop (``faithfulness.py``): bright, undersampled or saturated cores that
the model sharpens a little on every pass until they are several times brighter than they
ever were. This script measures, for each radius (off, 1, 2):

- **one pass** on the tuning set of ``flux_lock_scale.py`` (simulated scenes with seeds
  20_000_000 + i, the real frames of ``../shared/data/fits/train/``; never ``fits/eval/``),
  each at the three noise levels of ``evaluate.py``. The network runs once per case with
  every safeguard off; its change then gets the default flux lock and change limit and the
  cap (``pipeline.guard_change``): what ``denoise(..., peak_cap=r, star_refit=0)`` returns
  for non-Bayer input (the star refit came later: ``star_refit.py``). Mean PSNR gain on
  simulated and real cases, median star-flux error, spurious stars, star recall.
- **the loop** of ``faithfulness.py`` (moderate noise, fresh noise every cycle, ``--cycles``
  cycles) on the training frames (256 px crops) and two colour tuning scenes: PSNR against
  the original and the peak ratio (``_metrics.peak_ratio``) at cycles 10 and the last.

Prints markdown tables and writes them to ``benchmarks/results/peak_cap_<model>.md``.

    .venv/bin/python benchmarks/peak_cap.py [--model default|PATH] [--n-sim 12] [--cycles 30]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys

import numpy as np

import evaluate as ev
import faithfulness as fa
from flux_lock_scale import (
    TRAIN_DIR,
    TRAIN_IMAGES,
    TUNE_SIM_SEED_BASE,
    finite_mean,
    finite_median,
    gain_cells,
    sweep,
    tuning_args,
    tuning_references,
    tuning_set_text,
    write_results,
)
from napari_astrodenoise.core.options import defaults
from napari_astrodenoise.core.pipeline import denoise
from napari_astrodenoise.core.weights import LoadedModel, load_model

#: the engine's option defaults
DEFAULT = defaults()

RADII = (0, 1, 2)
#: colour scenes of the tuning set looped besides the training frames
LOOP_SIM_INDICES = (0, 6)


def one_pass(refs: list[ev.Reference], loaded: LoadedModel) -> dict[int, dict[str, list]]:
    return sweep(
        refs,
        loaded,
        RADII,
        lambda r: {
            "flux_lock": DEFAULT["flux_lock"],
            "change_limit": DEFAULT["change_limit"],
            "peak_cap": r,
        },
    )


def loop_subjects(crop: int) -> list[fa.Subject]:
    refs = []
    if TRAIN_DIR.is_dir():
        refs += [ev.real_reference(TRAIN_DIR / name, crop) for name in TRAIN_IMAGES]
    refs += [
        ev.simulated_reference(i, crop, seed_base=TUNE_SIM_SEED_BASE) for i in LOOP_SIM_INDICES
    ]
    return [fa.Subject.make(ev.prepare(r), ev.LEVELS["moderate"]) for r in refs]


def loop(subjects: list[fa.Subject], loaded: LoadedModel, cycles: int) -> list[str]:
    rows = []
    for i, subject in enumerate(subjects):
        for r in RADII:

            def run(z: np.ndarray, r: int = r) -> np.ndarray:
                axis = 0 if z.ndim == 3 else None
                return denoise(z, model=loaded, channel_axis=axis, peak_cap=r, star_refit=0.0)

            with contextlib.redirect_stderr(io.StringIO()):  # the loop's progress lines
                hist, _first = fa.iterate(subject, run, cycles, fa.FAITH_SEED_BASE + 1000 * i, "")
            picked = (hist[min(9, cycles - 1)], hist[-1])
            cells = [f"{h['psnr']:.2f} | {h['peak']:.3f}" for h in picked]
            rows.append(f"| {subject.ref.name} | {'off' if r == 0 else r} | {' | '.join(cells)} |")
        print(f"[{subject.ref.name}] loop done", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    def cycles_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--cycles", type=int, default=30, help="loop cycles (default 30)")

    args = tuning_args(__doc__.split("\n")[0], argv, cycles_option)
    cycles = args.cycles
    loaded = load_model(args.model, device=args.device)
    per_radius = one_pass(tuning_references(args.n_sim, args.crop), loaded)
    loop_rows = loop(loop_subjects(args.crop), loaded, cycles)
    at10 = min(10, cycles)
    lines = [
        f"# Peak cap on the tuning set: {loaded.name}",
        "",
        f"Model: {loaded.name} (sha256 {loaded.sha256[:12]}), default flux lock and change "
        f"limit. {tuning_set_text(per_radius[0], args.crop)} "
        f"Engine default: {DEFAULT['peak_cap']} px.",
        "",
        f"Command: `.venv/bin/python benchmarks/peak_cap.py --model {args.model} "
        f"--cycles {cycles}`",
        "",
        "## One pass",
        "",
        "| peak cap px | mean gain dB, simulated | mean gain dB, real | mean gain dB, all "
        "| median flux err | spurious (total) | mean recall |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in RADII:
        d = per_radius[r]
        lines.append(
            f"| {'off' if r == 0 else r} | {gain_cells(d)} | "
            f"{100 * finite_median(d['flux_err']):.2f} % | {int(np.sum(d['spurious']))} | "
            f"{finite_mean(d['recall']):.3f} |"
        )
    lines += [
        "",
        f"## Repeated noise and denoising (moderate noise, {cycles} cycles)",
        "",
        "PSNR against the original and the peak ratio (brightest pixel above the sky, "
        "relative to the original's; far above 1: a core that grows pass after pass).",
        "",
        f"| subject | peak cap px | PSNR dB, cycle {at10} | peak, cycle {at10} "
        f"| PSNR dB, cycle {cycles} | peak, cycle {cycles} |",
        "|---|---|---|---|---|---|",
        *loop_rows,
    ]
    write_results(f"peak_cap_{loaded.name}", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
