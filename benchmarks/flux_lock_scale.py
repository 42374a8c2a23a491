"""Choose the flux-lock scale on a tuning set that is not the evaluation set.

The engine's flux lock (``fluxlock.lock_flux``) takes the Gaussian low-pass of scale ``s``
out of the network's change. Small ``s`` holds flux and colour on small scales but gives
back more of the noise's own large-scale part (about 1 / (2 sqrt(pi) s) of its amplitude);
large ``s`` the reverse. This script measures the trade-off so that the default is chosen on
data the evaluation never uses:

- simulated scenes with seeds 20_000_000 + i (the evaluation uses 10_000_000 + i, training
  draws far below both), presets in turn, colour and mono alternating;
- the real frames of ``../shared/data/fits/train/`` (the training frames: their own noise
  is in the reference, so the gain is capped as in ``evaluate.py``), prepared by
  ``_cases.real_reference`` (defects, 2x2 bin, star-rich crop);

each at the three noise levels of ``evaluate.py``. The network runs once per case with the
lock off; each scale is then ``guarded`` (``safeguards.guard_change``): the lock of
``prediction - input`` at ``s``, added to the input, which is what
``denoise(..., flux_lock=s, change_limit=0, peak_cap=0, star_refit=0)`` returns for finite,
non-Bayer input (the change limit, the star refit and the peak cap, applied after the lock,
are chosen by ``change_limit.py``, ``star_refit.py`` and ``peak_cap.py``). Prints a markdown table
(mean PSNR gain on simulated and real cases, median star-flux error, mean |flux bias|) and
writes it to ``benchmarks/results/flux_lock_scale_<model>.md``.

    .venv/bin/python benchmarks/flux_lock_scale.py [--model default|PATH] [--n-sim 12]
"""

from __future__ import annotations

from _harness import run_sweep
from _sweeps import SWEEPS

if __name__ == "__main__":
    raise SystemExit(run_sweep(SWEEPS["flux_lock"], __doc__.split("\n")[0], None))
