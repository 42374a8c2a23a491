"""Choose the change limit on a tuning set that is not the evaluation set.

The engine's change limit (``pipeline.limit_change``) keeps every output pixel within ``k``
noise sigmas of the input, with the noise level function fitted to the image's own
residual. Small ``k`` is a stronger guarantee that nothing is made up or erased, but cuts
into noise removal (white noise passes 2 sigma in 4.6 % of pixels); large ``k`` the
reverse. This script measures the trade-off on the tuning set of ``flux_lock_scale.py``
(simulated scenes with seeds 20_000_000 + i, the real frames of
``../shared/data/fits/train/``; never ``fits/eval/``), each at the three noise levels of
``evaluate.py``. The network runs once per case with every safeguard off; its change then
gets the default flux lock and each ``k`` (``pipeline.guard_change``), which is what
``denoise(..., change_limit=k, peak_cap=0, star_refit=0)`` returns for non-Bayer input
(the peak cap, applied last, is ``peak_cap.py``'s; the star refit ``star_refit.py``'s).
Prints a markdown table (mean PSNR gain on simulated and real cases, median star-flux
error, spurious stars and star recall) and writes it to
``benchmarks/results/change_limit_<model>.md``.

    .venv/bin/python benchmarks/change_limit.py [--model default|PATH] [--n-sim 12]
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

LIMITS = (0.0, 2.0, 2.5, 3.0, 4.0, 5.0)


def main(argv: list[str] | None = None) -> int:
    args, loaded, refs = tuning_setup(__doc__.split("\n")[0], argv)
    per_limit = sweep(
        refs,
        loaded,
        LIMITS,
        lambda k: {"flux_lock": DEFAULT["flux_lock"], "change_limit": k, "peak_cap": 0},
    )
    lines = [
        f"# Change limit on the tuning set: {loaded.name}",
        "",
        f"Model: {loaded.name} (sha256 {loaded.sha256[:12]}), default flux lock. "
        f"{tuning_set_text(per_limit[0.0], args.crop)} "
        f"Engine default: {DEFAULT['change_limit']:g} sigma.",
        "",
        f"Command: `.venv/bin/python benchmarks/change_limit.py --model {args.model}`",
        "",
        "| change limit sigma | mean gain dB, simulated | mean gain dB, real | mean gain dB, all "
        "| median flux err | spurious (total) | mean recall |",
        "|---|---|---|---|---|---|---|",
    ]
    for k in LIMITS:
        d = per_limit[k]
        lines.append(
            f"| {'off' if k == 0 else f'{k:g}'} | {gain_cells(d)} | "
            f"{100 * finite_median(d['flux_err']):.2f} % | {int(np.sum(d['spurious']))} | "
            f"{finite_mean(d['recall']):.3f} |"
        )
    write_results(f"change_limit_{loaded.name}", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
