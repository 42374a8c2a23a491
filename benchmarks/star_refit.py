"""Choose the star refit's prior on a tuning set that is not the evaluation set.

The engine's star refit (``starrefit.refit_stars``) rescales the compact structure of the
prediction by the locally fitted gain that best explains the residual, under a Gaussian
prior of width ``p`` on the relative correction: small ``p`` changes only stars whose
profile carries much information (bright ones), large ``p`` fits faint ones too and brings
the fit's noise back with it. This script measures it on the tuning set of
``_harness.py`` (simulated scenes with seeds 20_000_000 + i, the real frames of
``../shared/data/fits/train/``; never ``fits/eval/``), each at the three noise levels of
``evaluate.py``. The network runs once per case with every safeguard off; its change then
gets the engine's default lock, limit and cap with each ``p`` (``safeguards.guard_change``),
which is what ``denoise(..., star_refit=p)`` returns for non-Bayer input.

Prints a markdown table (mean PSNR gain on simulated and real cases, the worst case's gain
over no refit, median star-flux error and bias, also over the real cases alone, spurious
and invented stars, star recall) and writes it to
``benchmarks/results/star_refit_<model>.md``.

    .venv/bin/python benchmarks/star_refit.py [--model default|PATH] [--n-sim 12]
"""

from __future__ import annotations

from _harness import run_sweep
from _sweeps import SWEEPS

if __name__ == "__main__":
    raise SystemExit(run_sweep(SWEEPS["star_refit"], __doc__.split("\n")[0], None))
