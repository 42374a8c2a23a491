"""bf16 against fp32 on the evaluation set: does the faster number format change the result?

The cases are ``evaluate.py``'s (same references, crops, levels and noise seeds). Each is
denoised twice with the engine's defaults, once with ``precision="fp32"`` and once with
``precision="bf16"`` (only the network runs in bfloat16; stretch, blending and safeguards
stay float32), and both outputs are scored against the clean reference.

The rule ``precision="auto"`` has to pass before it may pick bf16: on every case the PSNR
differs by at most 0.03 dB; over the whole set, the mean star-flux error and the total of
spurious stars are unchanged within 1 % of their fp32 values. The star metrics are judged on
the set because one case's median flux error over a few stars moves by more than 1 % when a
single star's flux moves by a fraction of its noise (the per-case values are in the table).

Also reported: the largest output difference in units of the case's sky noise sigma.
Prints a markdown table and writes ``benchmarks/results/precision_<model>.md``::

    .venv/bin/python benchmarks/precision.py
    .venv/bin/python benchmarks/precision.py --quick     # 2 scenes, 128 px, one level
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time

import numpy as np

import _harness as hs
from _cases import (
    EVAL_DIR,
    LEVELS,
    NOISE_SEED_BASE,
    make_case,
    references,
    score,
)
from napari_astrodenoise.core.pipeline import denoise
from napari_astrodenoise.core.predictor import bf16_native
from napari_astrodenoise.core.weights import load_model

#: the largest PSNR difference bf16 may make on any case, dB
MAX_PSNR_DB = 0.03
#: the largest relative change of star-flux error and spurious-star count
MAX_RELATIVE = 0.01


def _within(a: float, b: float) -> bool:
    """``b`` within :data:`MAX_RELATIVE` of ``a`` (both NaN: no stars to measure, passes)."""
    if math.isnan(a) and math.isnan(b):
        return True
    return abs(b - a) <= MAX_RELATIVE * abs(a) + 1e-12


def _change(a: float, b: float) -> str:
    return f"{(b - a) / a:+.2%}" if a else ("unchanged" if a == b else "changed")


def run(args: argparse.Namespace) -> tuple[list[str], bool]:
    """The table's lines and whether every case passed."""
    loaded = load_model(args.model, device=args.device)
    refs = references(
        n_sim=args.n_sim, crop=args.crop, data_dir=None if args.no_real else EVAL_DIR
    )
    lines = [
        "| case | PSNR fp32 | PSNR bf16 | dB | flux err fp32 | bf16 | spurious fp32 | bf16 "
        "| max diff (sigma) | s fp32 | s bf16 | PSNR rule |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    all_pass, worst_db, seconds = True, 0.0, {"fp32": 0.0, "bf16": 0.0}
    totals = {"flux_err": [0.0, 0.0], "spurious": [0.0, 0.0], "cases": 0}
    for i, ref in enumerate(refs):
        for j, name in enumerate(args.levels):
            case = make_case(ref, LEVELS[name], seed=NOISE_SEED_BASE + 100 * i + j)
            axis = 0 if case.noisy.ndim == 3 else None
            out, s = {}, {}
            for precision in ("fp32", "bf16"):
                start = time.perf_counter()
                out[precision] = denoise(
                    case.noisy, model=loaded, channel_axis=axis, precision=precision
                )
                s[precision] = time.perf_counter() - start
                seconds[precision] += s[precision]
            a, b = score(case, out["fp32"]), score(case, out["bf16"])
            db = b["psnr"] - a["psnr"]
            diff = float(np.nanmax(np.abs(out["bf16"] - out["fp32"]))) / case.sigma_chan
            ok = abs(db) <= MAX_PSNR_DB
            all_pass &= ok
            for key in ("flux_err", "spurious"):
                if math.isfinite(a[key]) and math.isfinite(b[key]):
                    totals[key][0] += a[key]
                    totals[key][1] += b[key]
            totals["cases"] += math.isfinite(a["flux_err"]) and math.isfinite(b["flux_err"])
            worst_db = max(worst_db, abs(db))
            lines.append(
                f"| {case.name} | {a['psnr']:.3f} | {b['psnr']:.3f} | {db:+.3f} "
                f"| {hs.cell(a['flux_err'], '.4f')} | {hs.cell(b['flux_err'], '.4f')} "
                f"| {a['spurious']:.0f} | {b['spurious']:.0f} | {diff:.3f} "
                f"| {s['fp32']:.2f} | {s['bf16']:.2f} | {'yes' if ok else 'NO'} |"
            )
            print(lines[-1], file=sys.stderr, flush=True)
    flux = [t / max(totals["cases"], 1) for t in totals["flux_err"]]
    spurious = totals["spurious"]
    stars_ok = _within(*flux) and _within(*spurious)
    header = [
        f"# bf16 against fp32: {loaded.name} (sha256 {loaded.sha256[:12]})",
        "",
        f"Command: `{' '.join(['.venv/bin/python', 'benchmarks/precision.py', *args.argv])}`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, "
        f"native bf16 on this CPU: {'yes' if bf16_native('cpu') else 'no'}. "
        f"Cases: evaluate.py's ({args.n_sim} simulated scenes"
        f"{'' if args.no_real else ' and the real evaluation frames'}, {args.crop} px crops, "
        f"levels {', '.join(args.levels)}). Rule: |dB| <= {MAX_PSNR_DB} on every case; the "
        f"set's mean flux error and total spurious stars within {MAX_RELATIVE:.0%}.",
        "",
        f"**PSNR: {'every case passes' if all_pass else 'some case fails'}**: the largest "
        f"difference is {worst_db:.3f} dB.",
        f"**Stars: {'pass' if stars_ok else 'fail'}**: mean flux error {flux[0]:.5f} (fp32) "
        f"and {flux[1]:.5f} (bf16) over {totals['cases']} cases with stars to measure, "
        f"{_change(*flux)}; spurious stars {spurious[0]:.0f} and {spurious[1]:.0f} in all, "
        f"{_change(*spurious)}.",
        "",
        f"Denoising took {seconds['fp32']:.1f} s in fp32 and {seconds['bf16']:.1f} s in bf16 "
        "(small crops one after another: not a speed figure; see bench_tiling.py).",
        "",
    ]
    return header + lines, all_pass and stars_ok


def main(argv: list[str] | None = None) -> int:
    args = hs.eval_set_args(__doc__.splitlines()[0], argv, "2 scenes, 128 px, one level, no real")
    lines, ok = run(args)
    name = load_model(args.model, device=args.device).name
    hs.write_results(f"precision_{name}" + ("_quick" if args.quick else ""), lines)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
