"""Choose the flux lock's noise threshold on a tuning set that is not the evaluation set.

The strict flux lock (``pipeline.lock_flux``, threshold 0) takes every scale beyond 8 px out
of the network's change, which gives back the noise the network removed at those scales:
on an empty sky that mottle is most of what is left. The noise-aware lock holds the band
between 8 and 32 px only where the change exceeds ``t`` sigmas of that band's noise, and
stays strict beyond 32 px and near any signal. Small ``t`` is the strict lock; large ``t``
lets a network's real low-frequency errors through where they are faint. This script
measures it on the tuning set of ``flux_lock_scale.py`` (simulated scenes with seeds
20_000_000 + i, the real frames of ``../shared/data/fits/train/``; never ``fits/eval/``),
each at the three noise levels of ``evaluate.py``. The network runs once per case with
every safeguard off; its change then gets the engine's default lock scale, change limit
and peak cap with each ``t`` (``pipeline.guard_change``), which is what
``denoise(..., lock_threshold=t, star_refit=0)`` returns for non-Bayer input (the star
refit came later: ``star_refit.py``).

Prints a markdown table (mean PSNR gain on simulated and real cases, the worst case's
gain over the strict lock, median star-flux error and bias, spurious and invented stars,
star recall) and writes it to ``benchmarks/results/lock_threshold_<model>.md``.

    .venv/bin/python benchmarks/lock_threshold.py [--model default|PATH] [--n-sim 12]
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

THRESHOLDS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)


def main(argv: list[str] | None = None) -> int:
    args, loaded, refs = tuning_setup(__doc__.split("\n")[0], argv)
    per = sweep(
        refs,
        loaded,
        THRESHOLDS,
        lambda t: {
            "flux_lock": DEFAULT["flux_lock"],
            "change_limit": DEFAULT["change_limit"],
            "peak_cap": DEFAULT["peak_cap"],
            "lock_threshold": t,
        },
    )
    strict = np.asarray(per[0.0]["psnr"])
    lines = [
        f"# Flux-lock threshold on the tuning set: {loaded.name}",
        "",
        f"Model: {loaded.name} (sha256 {loaded.sha256[:12]}), "
        f"flux lock {DEFAULT['flux_lock']:g} px, "
        f"change limit {DEFAULT['change_limit']:g} sigma, peak cap {DEFAULT['peak_cap']} px. "
        f"{tuning_set_text(per[0.0], args.crop)} Threshold 0 is the strict lock; engine "
        f"default: {DEFAULT['lock_threshold']:g} sigma.",
        "",
        f"Command: `.venv/bin/python benchmarks/lock_threshold.py --model {args.model}`",
        "",
        "| threshold sigma | mean gain dB, simulated | mean gain dB, real | mean gain dB, all "
        "| worst case vs strict dB | median flux err | median flux bias | spurious (total) "
        "| invented (total) | mean recall |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in THRESHOLDS:
        d = per[t]
        worst = float(np.min(np.asarray(d["psnr"]) - strict))
        lines.append(
            f"| {'strict' if t == 0 else f'{t:g}'} | {gain_cells(d)} | {worst:+.2f} | "
            f"{100 * finite_median(d['flux_err']):.2f} % | "
            f"{100 * finite_median(d['flux_bias']):+.2f} % | {int(np.sum(d['spurious']))} | "
            f"{int(np.sum(d['invented']))} | "
            f"{finite_mean(d['recall']):.3f} |"
        )
    write_results(f"lock_threshold_{loaded.name}", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
