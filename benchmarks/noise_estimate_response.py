"""How a model answers a wrong noise estimate, on the tuning set (never the evaluation set).

The engine measures the noise of every frame before the network sees it, and a real frame
can fool the estimate: crowded, undersampled stars inflate the neighbour-difference sigma
that sets the stretch (``noiselevel.noise_sigma``), so the network sees less noise than it was
trained to expect. A robust model still removes most of it. This script multiplies, one at a
time, what the engine computes and measures the effect with every safeguard off:

- ``stretch``: the stretch's noise scale (``stretch.fit_stretch``), for every model;
- ``map``: the noise map (``noiselevel.noise_map``), for a model with a noise channel. A
  network that reads the map as a noise level removes more noise where it is told of more;
  one that has learnt it as a detector of signal (in training the map departs from 1 only on
  stars and galaxies) keeps the pixels wherever the map is off its training values.

Each cell is the rms error over the faint half of the clean image (its luminance at or below
the median) relative to the noisy input's: 0 is all the noise removed, 1 none. Cases: the
tuning references of ``_harness.py`` at the moderate noise level of ``evaluate.py``.
The engine's functions are replaced for the run (``pipeline.fit_stretch`` and
``pipeline.noise_map``) and restored afterwards.

Prints markdown tables and writes ``benchmarks/results/noise_estimate_response_<model>.md``.

    .venv/bin/python benchmarks/noise_estimate_response.py [--model default|PATH]
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace

import numpy as np

import _cases as cs
from _harness import TUNE_NOISE_SEED_BASE, tuning_setup, unguarded, write_results
from napari_astrodenoise.core import pipeline
from napari_astrodenoise.core.stretch import AstroStretch

FACTORS = (1.0, 0.5, 0.7, 1.4, 2.0)


@contextlib.contextmanager
def scaled_estimate(what: str, factor: float) -> Iterator[None]:
    """Within the block the engine's ``what`` ("stretch" or "map") is ``factor`` times its own."""
    name = {"stretch": "fit_stretch", "map": "noise_map"}[what]
    original = getattr(pipeline, name)

    def scaled(*args, **kwargs) -> AstroStretch | np.ndarray:
        own = original(*args, **kwargs)
        if what == "stretch":  # as training's stretch_jitter rescales it
            return replace(own, scale=factor * own.scale)
        return np.float32(factor) * own

    setattr(pipeline, name, scaled)
    try:
        yield
    finally:
        setattr(pipeline, name, original)


def faint_error_ratio(clean: np.ndarray, noisy: np.ndarray, out: np.ndarray) -> float:
    """rms(out - clean) / rms(noisy - clean) over the pixels of the clean image's faint half."""
    lum = clean.mean(axis=0) if clean.ndim == 3 else clean
    faint = np.broadcast_to(lum <= np.median(lum), clean.shape)
    return float(
        np.sqrt(np.mean((out - clean)[faint] ** 2) / np.mean((noisy - clean)[faint] ** 2))
    )


def response_table(refs: list[cs.Reference], loaded, what: str) -> list[str]:
    """Markdown rows: one per tuning reference, one cell per factor."""
    lines = [
        "| reference | " + " | ".join(f"{what} x {f:g}" for f in FACTORS) + " |",
        "|---|" + "---|" * len(FACTORS),
    ]
    for i, ref in enumerate(refs):
        case = cs.make_case(ref, cs.LEVELS["moderate"], seed=TUNE_NOISE_SEED_BASE + 100 * i + 1)
        cells = []
        for factor in FACTORS:
            with scaled_estimate(what, factor):
                out = unguarded(case, loaded)
            cells.append(f"{faint_error_ratio(ref.image, case.noisy, out):.2f}")
        lines.append(f"| {ref.name} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    args, loaded, refs = tuning_setup(__doc__.split("\n")[0], argv)
    lines = [
        f"# Response to a wrong noise estimate on the tuning set: {loaded.name}",
        "",
        f"Model: {loaded.name} (sha256 {loaded.sha256[:12]}), every safeguard off. Each cell: "
        "rms error over the faint half of the clean image, output over noisy input (0: all "
        "noise removed, 1: none), with the engine's estimate times the factor. Tuning set "
        f"(never the evaluation set), {args.crop} px crops, moderate noise.",
        "",
        f"Command: `.venv/bin/python benchmarks/noise_estimate_response.py --model {args.model}`",
        "",
        "## The stretch's noise scale",
        "",
        *response_table(refs, loaded, "stretch"),
    ]
    if loaded.module.config.noise_channel:
        lines += ["", "## The noise map", "", *response_table(refs, loaded, "map")]
    write_results(f"noise_estimate_response_{loaded.name}", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
