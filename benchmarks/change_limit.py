"""Choose the change limit on a tuning set that is not the evaluation set.

The engine's change limit (``safeguards.limit_change``) keeps every output pixel within ``k``
noise sigmas of the input, with the noise level function fitted to the image's own
residual. Small ``k`` is a stronger guarantee that nothing is made up or erased, but cuts
into noise removal (white noise passes 2 sigma in 4.6 % of pixels); large ``k`` the
reverse. This script measures the trade-off on the tuning set of ``_harness.py``
(simulated scenes with seeds 20_000_000 + i, the real frames of
``../shared/data/fits/train/``; never ``fits/eval/``), each at the three noise levels of
``evaluate.py``. The network runs once per case with every safeguard off; its change then
gets the default flux lock and each ``k`` (``safeguards.guard_change``), which is what
``denoise(..., change_limit=k, peak_cap=0, star_refit=0)`` returns for non-Bayer input
(the peak cap, applied last, is ``peak_cap.py``'s; the star refit ``star_refit.py``'s).
Prints a markdown table (mean PSNR gain on simulated and real cases, median star-flux
error, spurious stars and star recall) and writes it to
``benchmarks/results/change_limit_<model>.md``.

    .venv/bin/python benchmarks/change_limit.py [--model default|PATH] [--n-sim 12]
"""

from __future__ import annotations

from _harness import run_sweep
from _sweeps import SWEEPS

if __name__ == "__main__":
    raise SystemExit(run_sweep(SWEEPS["change_limit"], __doc__.split("\n")[0], None))
