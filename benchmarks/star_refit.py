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

from _harness import Sweep, defaults_text, run_sweep
from napari_astrodenoise.core.options import defaults

#: the engine's option defaults
DEFAULT = defaults()

SWEEP = Sweep(
    "star_refit",
    (0.0, 0.02, 0.03, 0.04, 0.06, 0.1),
    "Star refit prior",
    "gain worst flux_err flux_bias flux_err_real spurious invented recall",
    header="prior",
    settings=f", {defaults_text('flux_lock')} (threshold {DEFAULT['lock_threshold']:g} sigma), "
    + defaults_text("change_limit", "peak_cap"),
    note="Prior 0 is no refit; engine default",
)


def main(argv: list[str] | None = None) -> int:
    return run_sweep(SWEEP, __doc__.split("\n")[0], argv)


if __name__ == "__main__":
    raise SystemExit(main())
