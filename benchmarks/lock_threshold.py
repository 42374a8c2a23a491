"""Choose the flux lock's noise threshold on a tuning set that is not the evaluation set.

The strict flux lock (``fluxlock.lock_flux``, threshold 0) takes every scale beyond 8 px out
of the network's change, which gives back the noise the network removed at those scales:
on an empty sky that mottle is most of what is left. The noise-aware lock holds the band
between 8 and 32 px only where the change exceeds ``t`` sigmas of that band's noise, and
stays strict beyond 32 px and near any signal. Small ``t`` is the strict lock; large ``t``
lets a network's real low-frequency errors through where they are faint. This script
measures it on the tuning set of ``_harness.py`` (simulated scenes with seeds
20_000_000 + i, the real frames of ``../shared/data/fits/train/``; never ``fits/eval/``),
each at the three noise levels of ``evaluate.py``. The network runs once per case with
every safeguard off; its change then gets the engine's default lock scale, change limit
and peak cap with each ``t`` (``safeguards.guard_change``), which is what
``denoise(..., lock_threshold=t, star_refit=0)`` returns for non-Bayer input (the star
refit came later: ``star_refit.py``).

Prints a markdown table (mean PSNR gain on simulated and real cases, the worst case's
gain over the strict lock, median star-flux error and bias, spurious and invented stars,
star recall) and writes it to ``benchmarks/results/lock_threshold_<model>.md``.

    .venv/bin/python benchmarks/lock_threshold.py [--model default|PATH] [--n-sim 12]
"""

from __future__ import annotations

from _harness import run_sweep
from _sweeps import SWEEPS

if __name__ == "__main__":
    raise SystemExit(run_sweep(SWEEPS["lock_threshold"], __doc__.split("\n")[0], None))
