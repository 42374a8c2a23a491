"""Choose the peak cap on a tuning set that is not the evaluation set.

The engine's peak cap (``safeguards.cap_peaks``) keeps every output pixel at or below the
brightest input pixel within ``r`` pixels. It was added for a failure of the repeated
noise-and-denoise loop (``faithfulness.py``): bright, undersampled or saturated cores that
the model sharpens a little on every pass until they are several times brighter than they
ever were. This script measures, for each radius (off, 1, 2):

- **one pass** on the tuning set of ``_harness.py`` (simulated scenes with seeds
  20_000_000 + i, the real frames of ``../shared/data/fits/train/``; never ``fits/eval/``),
  each at the three noise levels of ``evaluate.py``. The network runs once per case with
  every safeguard off; its change then gets the default flux lock and change limit and the
  cap (``safeguards.guard_change``): what ``denoise(..., peak_cap=r, star_refit=0)`` returns
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

import _cases as cs
from _harness import (
    TRAIN_DIR,
    TRAIN_IMAGES,
    TUNE_SIM_SEED_BASE,
    sweep,
    tuning_setup,
    write_results,
)
from _loop import FAITH_SEED_BASE, Subject, iterate
from _sweeps import SWEEPS
from napari_astrodenoise.core.pipeline import denoise

SWEEP = SWEEPS["peak_cap"]
#: colour scenes of the tuning set looped besides the training frames
LOOP_SIM_INDICES = (0, 6)


def loop_subjects(crop: int) -> list[Subject]:
    refs = []
    if TRAIN_DIR.is_dir():
        refs += [cs.real_reference(TRAIN_DIR / name, crop) for name in TRAIN_IMAGES]
    refs += [
        cs.simulated_reference(i, crop, seed_base=TUNE_SIM_SEED_BASE) for i in LOOP_SIM_INDICES
    ]
    return [Subject.make(cs.prepare(r), cs.LEVELS["moderate"]) for r in refs]


def loop(subjects: list[Subject], loaded, cycles: int) -> list[str]:
    rows = []
    for i, subject in enumerate(subjects):
        for r in SWEEP.values:

            def run(z: np.ndarray, r: int = r) -> np.ndarray:
                axis = 0 if z.ndim == 3 else None
                return denoise(z, model=loaded, channel_axis=axis, peak_cap=r, star_refit=0.0)

            with contextlib.redirect_stderr(io.StringIO()):  # the loop's progress lines
                hist, _first = iterate(subject, run, cycles, FAITH_SEED_BASE + 1000 * i, "")
            picked = (hist[min(9, cycles - 1)], hist[-1])
            cells = [f"{h['psnr']:.2f} | {h['peak']:.3f}" for h in picked]
            rows.append(f"| {subject.ref.name} | {'off' if r == 0 else r} | {' | '.join(cells)} |")
        print(f"[{subject.ref.name}] loop done", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    def cycles_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--cycles", type=int, default=30, help="loop cycles (default 30)")

    args, loaded, refs = tuning_setup(__doc__.split("\n")[0], argv, cycles_option)
    cycles = args.cycles
    per_radius = sweep(refs, loaded, SWEEP.option, SWEEP.values)
    loop_rows = loop(loop_subjects(args.crop), loaded, cycles)
    at10 = min(10, cycles)
    command = SWEEP.command.format(script=SWEEP.name, model=args.model, cycles=cycles)
    lines = [
        *SWEEP.intro(per_radius, loaded, args.crop, command),
        "## One pass",
        "",
        *SWEEP.table(per_radius),
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
