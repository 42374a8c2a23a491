"""The safeguard sweeps of the tuning set: each option's values, title, metrics and notes.

One table for ``change_limit.py``, ``flux_lock_scale.py``, ``lock_threshold.py``,
``peak_cap.py`` and ``star_refit.py``, which run them with :func:`_harness.run_sweep`.
"""

from __future__ import annotations

from _harness import Sweep, defaults_text
from napari_astrodenoise.core.options import defaults

#: the engine's option defaults
DEFAULT = defaults()

SWEEPS = {
    "change_limit": Sweep(
        "change_limit",
        (0.0, 2.0, 2.5, 3.0, 4.0, 5.0),
        "Change limit",
        "gain flux_err spurious recall",
        settings=", default flux lock",
    ),
    "flux_lock": Sweep(
        "flux_lock",
        (0.0, 2.0, 4.0, 8.0, 16.0, 32.0),
        "Flux-lock scale",
        "gain flux_err abs_flux_bias",
        script="flux_lock_scale",
        command="benchmarks/{script}.py",
    ),
    "lock_threshold": Sweep(
        "lock_threshold",
        (0.0, 0.5, 1.0, 1.5, 2.0, 3.0),
        "Flux-lock threshold",
        "gain worst flux_err flux_bias spurious invented recall",
        header="threshold sigma",
        settings=", " + defaults_text("flux_lock", "change_limit", "peak_cap"),
        note="Threshold 0 is the strict lock; engine default",
        off_label="strict",
    ),
    "star_refit": Sweep(
        "star_refit",
        (0.0, 0.02, 0.03, 0.04, 0.06, 0.1),
        "Star refit prior",
        "gain worst flux_err flux_bias flux_err_real spurious invented recall",
        header="prior",
        settings=f", {defaults_text('flux_lock')} "
        f"(threshold {DEFAULT['lock_threshold']:g} sigma), "
        + defaults_text("change_limit", "peak_cap"),
        note="Prior 0 is no refit; engine default",
    ),
    "peak_cap": Sweep(
        "peak_cap",
        (0, 1, 2),
        "Peak cap",
        "gain flux_err spurious recall",
        settings=", default flux lock and change limit",
        command="benchmarks/{script}.py --model {model} --cycles {cycles}",
    ),
}
