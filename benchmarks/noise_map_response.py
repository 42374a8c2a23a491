"""How a noise-channel model answers its noise map, on the tuning set (never the evaluation set).

A model trained with ``noise_channel`` is given ``normalize.noise_map``: the noise sigma at
each pixel in network space, in units of the sky's. A network that reads the map as a noise
level removes more noise where it is told of more; one that has learnt the map as a
detector of signal (in training the map departs from 1 only on stars and galaxies) keeps
the pixels wherever the map is off its training values, in either direction. This script
multiplies the map the engine computes by a factor (``pipeline.noise_map`` is replaced for
the run) and measures, with every safeguard off, the rms error over the faint half of the
clean image (its luminance at or below the median) relative to the noisy input's: 0 is all the
noise removed, 1 none. Cases: the tuning references of ``flux_lock_scale.py`` at the
moderate noise level of ``evaluate.py``.

Prints a markdown table and writes ``benchmarks/results/noise_map_response_<model>.md``.

    .venv/bin/python benchmarks/noise_map_response.py --model PATH   # a noise-channel model
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

import evaluate as ev
from flux_lock_scale import TUNE_NOISE_SEED_BASE, tuning_setup, write_results
from napari_astrodenoise.core import pipeline

FACTORS = (1.0, 0.5, 0.7, 1.4, 2.0)


@contextlib.contextmanager
def scaled_noise_map(factor: float) -> Iterator[None]:
    """Within the block, the engine gives the network ``factor`` times its noise map."""
    original = pipeline.noise_map
    pipeline.noise_map = lambda *args, **kwargs: np.float32(factor) * original(*args, **kwargs)
    try:
        yield
    finally:
        pipeline.noise_map = original


def faint_error_ratio(clean: np.ndarray, noisy: np.ndarray, out: np.ndarray) -> float:
    """rms(out - clean) / rms(noisy - clean) over the pixels of the clean image's faint half."""
    lum = clean.mean(axis=0) if clean.ndim == 3 else clean
    faint = np.broadcast_to(lum <= np.median(lum), clean.shape)
    return float(
        np.sqrt(np.mean((out - clean)[faint] ** 2) / np.mean((noisy - clean)[faint] ** 2))
    )


def main(argv: list[str] | None = None) -> int:
    args, loaded, refs = tuning_setup(__doc__.split("\n")[0], argv)
    if not loaded.module.config.noise_channel:
        msg = f"{loaded.name} has no noise channel: nothing to measure"
        raise SystemExit(msg)
    level = ev.LEVELS["moderate"]
    lines = [
        f"# Response to the noise map on the tuning set: {loaded.name}",
        "",
        f"Model: {loaded.name} (sha256 {loaded.sha256[:12]}), every safeguard off. Each cell: "
        "rms error over the faint half of the clean image, output over noisy input (0: all "
        f"noise removed, 1: none), with the network's noise map times the factor. Tuning set "
        f"(never the evaluation set), {args.crop} px crops, {level.name} noise.",
        "",
        f"Command: `.venv/bin/python benchmarks/noise_map_response.py --model {args.model}`",
        "",
        "| reference | " + " | ".join(f"map x {f:g}" for f in FACTORS) + " |",
        "|---|" + "---|" * len(FACTORS),
    ]
    for i, ref in enumerate(refs):
        case = ev.make_case(ref, level, seed=TUNE_NOISE_SEED_BASE + 100 * i + 1)
        axis = 0 if case.noisy.ndim == 3 else None
        cells = []
        for factor in FACTORS:
            with scaled_noise_map(factor):
                out = pipeline.denoise(
                    case.noisy,
                    model=loaded,
                    channel_axis=axis,
                    flux_lock=0.0,
                    change_limit=0.0,
                    peak_cap=0,
                )
            cells.append(f"{faint_error_ratio(ref.image, case.noisy, out):.2f}")
        lines.append(f"| {ref.name} | " + " | ".join(cells) + " |")
    write_results(f"noise_map_response_{loaded.name}", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
