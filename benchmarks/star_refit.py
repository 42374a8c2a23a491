"""Choose the star refit's prior on a tuning set that is not the evaluation set.

The engine's star refit (``pipeline.refit_stars``) rescales the compact structure of the
prediction by the locally fitted gain that best explains the residual, under a Gaussian
prior of width ``p`` on the relative correction: small ``p`` changes only stars whose
profile carries much information (bright ones), large ``p`` fits faint ones too and brings
the fit's noise back with it. This script measures it on the tuning set of
``flux_lock_scale.py`` (simulated scenes with seeds 20_000_000 + i, the real frames of
``../shared/data/fits/train/``; never ``fits/eval/``), each at the three noise levels of
``evaluate.py``. The network runs once per case with every safeguard off; its change then
gets the engine's default lock, limit and cap with each ``p`` (``pipeline.guard_change``),
which is what ``denoise(..., star_refit=p)`` returns for non-Bayer input.

Prints a markdown table (mean PSNR gain on simulated and real cases, the worst case's gain
over no refit, median star-flux error and bias, also over the real cases alone, spurious
and invented stars, star recall) and writes it to
``benchmarks/results/star_refit_<model>.md``.

    .venv/bin/python benchmarks/star_refit.py [--model default|PATH] [--n-sim 12]
"""

from __future__ import annotations

import numpy as np

from flux_lock_scale import (
    finite_mean,
    finite_median,
    gain_cells,
    sweep,
    tuning_set_text,
    tuning_setup,
    write_results,
)
from napari_astrodenoise.core.options import defaults

#: the engine's option defaults
DEFAULT = defaults()

PRIORS = (0.0, 0.02, 0.03, 0.04, 0.06, 0.1)


def main(argv: list[str] | None = None) -> int:
    args, loaded, refs = tuning_setup(__doc__.split("\n")[0], argv)
    per = sweep(
        refs,
        loaded,
        PRIORS,
        lambda p: {
            "flux_lock": DEFAULT["flux_lock"],
            "change_limit": DEFAULT["change_limit"],
            "peak_cap": DEFAULT["peak_cap"],
            "lock_threshold": DEFAULT["lock_threshold"],
            "star_refit": p,
        },
    )
    off = np.asarray(per[0.0]["psnr"])
    n_sim_cases = len(per[0.0]["sim"])  # sweep() scores the simulated cases first
    lines = [
        f"# Star refit prior on the tuning set: {loaded.name}",
        "",
        f"Model: {loaded.name} (sha256 {loaded.sha256[:12]}), "
        f"flux lock {DEFAULT['flux_lock']:g} px "
        f"(threshold {DEFAULT['lock_threshold']:g} sigma), "
        f"change limit {DEFAULT['change_limit']:g} sigma, peak cap {DEFAULT['peak_cap']} px. "
        f"{tuning_set_text(per[0.0], args.crop)} Prior 0 is no refit; "
        f"engine default: {DEFAULT['star_refit']:g}.",
        "",
        f"Command: `.venv/bin/python benchmarks/star_refit.py --model {args.model}`",
        "",
        "| prior | mean gain dB, simulated | mean gain dB, real | mean gain dB, all "
        "| worst case vs off dB | median flux err | median flux bias | median flux err, real "
        "| spurious (total) | invented (total) | mean recall |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in PRIORS:
        d = per[p]
        worst = float(np.min(np.asarray(d["psnr"]) - off))
        real_err = d["flux_err"][n_sim_cases:]
        lines.append(
            f"| {'off' if p == 0 else f'{p:g}'} | {gain_cells(d)} | {worst:+.2f} | "
            f"{100 * finite_median(d['flux_err']):.2f} % | "
            f"{100 * finite_median(d['flux_bias']):+.2f} % | "
            f"{100 * finite_median(real_err):.2f} % | {int(np.sum(d['spurious']))} | "
            f"{int(np.sum(d['invented']))} | {finite_mean(d['recall']):.3f} |"
        )
    write_results(f"star_refit_{loaded.name}", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
