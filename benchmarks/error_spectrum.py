"""Where in spatial frequency the model's error exceeds BM3D's, on the tuning set.

The simulated scenes of the tuning set (seeds 20_000_000 + i, as in ``_harness.py``;
never the evaluation set) get the ``moderate`` noise of ``evaluate.py``; the shipped model
(engine defaults) and BM3D (given the true noise model, as in ``evaluate.py``) denoise
them. For each output the error against the truth is split into wavelength bands by its
power spectrum (summed over channels, radial bands of the 2-D FFT). A model short of
capacity or training loses at the shortest wavelengths, where the noise and the finest
detail are; the flux lock's price (the noise it gives back) shows at tens of pixels. A
second split is by pixel: the squared error summed over the pixels whose clean level lies
in each band of sky sigmas above the sky (where the stretch into network space squeezes
the noise, a model can leave it in place). A second, independent noise draw of each scene
splits that error into the part that changes with the noise (noise left in place, and any
error the noise drives) and the part that does not (bias: a profile flattened, a level
shifted), per signal level.

Prints two markdown tables (error power of model and BM3D per wavelength band and per
signal level, summed over the scenes of a preset, relative to the noisy input's) and
writes them to
``benchmarks/results/error_spectrum_<model>.md``.

    .venv/bin/python benchmarks/error_spectrum.py [--model default|PATH] [--n-sim 12]
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

import _cases as cs
from _harness import TUNE_NOISE_SEED_BASE, TUNE_SIM_SEED_BASE, tuning_args, write_results
from _methods import CLASSICAL
from napari_astrodenoise.core.pipeline import denoise
from napari_astrodenoise.core.weights import load_model

#: wavelength bands in pixels (short, long); the shortest wavelength is sqrt(2) px
BANDS = ((0.0, 4.0), (4.0, 8.0), (8.0, 16.0), (16.0, 32.0), (32.0, 64.0), (64.0, np.inf))
#: clean signal above the sky in sky sigmas (lower edges; the last is open)
LEVEL_EDGES = (-np.inf, 1.0, 3.0, 10.0, 30.0, 100.0)


def band_powers(error: np.ndarray) -> np.ndarray:
    """Power of a (C, H, W) or (H, W) error in each of ``BANDS`` (sum over channels).

    Normalised so that the bands add up to the error's sum of squares (Parseval).
    """
    planes = error.reshape(-1, *error.shape[-2:]).astype(np.float64)
    fy = np.fft.fftfreq(planes.shape[-2])[:, None]
    fx = np.fft.fftfreq(planes.shape[-1])[None, :]
    freq = np.hypot(fy, fx)
    with np.errstate(divide="ignore"):
        wavelength = np.where(freq > 0, 1.0 / freq, np.inf)
    power = sum(np.abs(np.fft.fft2(p)) ** 2 for p in planes) / planes[0].size
    # the last band is open: it holds the mean (the error's level, wavelength infinite) too
    inside = [(wavelength >= lo) & ((wavelength < hi) | np.isinf(hi)) for lo, hi in BANDS]
    return np.array([power[band].sum() for band in inside])


def level_powers(error: np.ndarray, snr: np.ndarray) -> np.ndarray:
    """Sum of squares of ``error`` over the pixels in each ``LEVEL_EDGES`` band of ``snr``.

    ``snr`` (same shape) is the clean signal above the sky in sky sigmas; the bands add up
    to the error's sum of squares.
    """
    which = np.searchsorted(np.asarray(LEVEL_EDGES[1:]), snr, side="right")
    sq = np.square(error, dtype=np.float64)
    return np.bincount(which.ravel(), weights=sq.ravel(), minlength=len(LEVEL_EDGES))


#: the second noise draw of scene i has seed TUNE_NOISE_SEED_BASE + 100 i + this (the
#: tuning set's own draws use + 0, 1, 2)
SECOND_DRAW = 50


def bias_variance(
    first: np.ndarray, second: np.ndarray, snr: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Split two errors of one scene (independent noise draws) into bias and variance.

    With ``e = b + n`` (``b`` the same in both draws, ``n`` independent, zero mean), per
    ``LEVEL_EDGES`` band of ``snr``: ``D = sum(((e1 - e2) / 2)^2)`` has expectation
    ``sum(var) / 2`` and ``M = sum(((e1 + e2) / 2)^2)`` has ``sum(b^2) + sum(var) / 2``.
    Returns ``(M - D, 2 D)``: the summed squared bias and the summed variance, the two
    adding up (in expectation) to one draw's sum of squares.
    """
    d = level_powers((first - second) / 2.0, snr)
    m = level_powers((first + second) / 2.0, snr)
    return m - d, 2.0 * d


def _cells(t: dict[str, np.ndarray]) -> str:
    return " | ".join(
        f"{100 * m / n:.2f} / {100 * b / n:.2f}" if n > 0 else "n/a"
        for m, b, n in zip(t["model"], t["bm3d"], t["noisy"], strict=True)
    )


def main(argv: list[str] | None = None) -> int:
    args = tuning_args(__doc__.split("\n")[0], argv)
    loaded = load_model(args.model, device=args.device)
    level = cs.LEVELS["moderate"]
    methods = ("noisy", "model", "bm3d")
    totals: dict[str, dict[str, np.ndarray]] = defaultdict(
        lambda: {m: np.zeros(len(BANDS)) for m in methods}
    )
    by_level: dict[str, dict[str, np.ndarray]] = defaultdict(
        lambda: {m: np.zeros(len(LEVEL_EDGES)) for m in (*methods, "pixels")}
    )
    # squared bias and variance per level, from the two noise draws (bias_variance)
    bias, variance = (
        defaultdict(lambda: {m: np.zeros(len(LEVEL_EDGES)) for m in methods}) for _ in range(2)
    )
    for i in range(args.n_sim):
        ref = cs.prepare(cs.simulated_reference(i, args.crop, seed_base=TUNE_SIM_SEED_BASE))
        case = cs.make_case(ref, level, seed=TUNE_NOISE_SEED_BASE + 100 * i + 1)
        axis = 0 if case.noisy.ndim == 3 else None
        again = cs.make_case(ref, level, seed=TUNE_NOISE_SEED_BASE + 100 * i + SECOND_DRAW)
        outputs, repeats = {}, {}
        for draw, into in ((case, outputs), (again, repeats)):
            into["noisy"] = draw.noisy
            into["model"] = denoise(draw.noisy, model=loaded, channel_axis=axis)
            into["bm3d"] = CLASSICAL["bm3d"](draw.noisy, draw.nm)
        preset = cs.SIM_PRESETS[i % len(cs.SIM_PRESETS)]  # as simulated_reference picks it
        sky = np.asarray(ref.sky, dtype=np.float64).reshape(-1, 1, 1)
        snr = (ref.image.reshape(-1, *ref.image.shape[-2:]) - sky) / case.sigma_chan
        for method, out in outputs.items():
            error = out - ref.image
            totals[preset][method] += band_powers(error)
            by_level[preset][method] += level_powers(error.reshape(snr.shape), snr)
            repeat = (repeats[method] - ref.image).reshape(snr.shape)
            b2, var = bias_variance(error.reshape(snr.shape), repeat, snr)
            bias[preset][method] += b2
            variance[preset][method] += var  # for "noisy": the noise's own power, the scale
        by_level[preset]["pixels"] += level_powers(np.ones_like(snr), snr)
        print(f"[{ref.name}] done", flush=True)
    header = " | ".join(
        f"< {hi:g} px" if lo == 0 else f"{lo:g}-{hi:g} px" if np.isfinite(hi) else f"> {lo:g} px"
        for lo, hi in BANDS
    )
    lines = [
        f"# Error spectrum on the tuning set: {loaded.name}",
        "",
        f"Model: {loaded.name} (sha256 {loaded.sha256[:12]}), engine defaults; BM3D given "
        f"the true noise model. {args.n_sim} simulated tuning scenes (seeds "
        f"{TUNE_SIM_SEED_BASE} + i), {args.crop} px, moderate noise. Each cell: error power "
        "in the wavelength band, model / BM3D, as a percentage of the noisy input's error "
        "power in that band (the noise's); the last column is the model's total error "
        "power over BM3D's.",
        "",
        f"Command: `.venv/bin/python benchmarks/error_spectrum.py --model {args.model}`",
        "",
        f"| preset | {header} | total, model / BM3D |",
        "|---|" + "---|" * (len(BANDS) + 1),
    ]
    for preset, t in sorted(totals.items()):
        lines.append(f"| {preset} | {_cells(t)} | {t['model'].sum() / t['bm3d'].sum():.2f} |")
    edges = [*LEVEL_EDGES[1:], np.inf]
    level_header = " | ".join(
        f"< {hi:g}"
        if not np.isfinite(lo)
        else (f"> {lo:g}" if not np.isfinite(hi) else f"{lo:g}-{hi:g}")
        for lo, hi in zip(LEVEL_EDGES, edges, strict=True)
    )
    lines += [
        "",
        "By clean signal level (sky sigmas above the sky): each cell is the squared error "
        "summed over those pixels, model / BM3D, as a percentage of the noisy input's there; "
        "the last column is the share of pixels in each band.",
        "",
        f"| preset | {level_header} | pixels, % per band |",
        "|---|" + "---|" * (len(LEVEL_EDGES) + 1),
    ]
    for preset, t in sorted(by_level.items()):
        share = " / ".join(f"{100 * p / t['pixels'].sum():.1f}" for p in t["pixels"])
        lines.append(f"| {preset} | {_cells(t)} | {share} |")
    lines += [
        "",
        "The same by level, split with a second noise draw of each scene "
        "(`bias_variance`): each cell is variance (the error that changes with the noise: "
        "noise left in place) and squared bias (the error that does not), model / BM3D, as "
        "percentages of the noise's own power there. Estimates from two draws: a bias near "
        "0 may come out slightly negative.",
        "",
        f"| preset | {level_header} |",
        "|---|" + "---|" * len(LEVEL_EDGES),
    ]
    for preset in sorted(variance):
        v, b = variance[preset], bias[preset]
        cells = " | ".join(
            f"{100 * mv / n:.1f} + {100 * mb / n:.1f} / {100 * bv / n:.1f} + {100 * bb / n:.1f}"
            if n > 0
            else "n/a"
            for mv, mb, bv, bb, n in zip(
                v["model"], b["model"], v["bm3d"], b["bm3d"], v["noisy"], strict=True
            )
        )
        lines.append(f"| {preset} | {cells} |")
    write_results(f"error_spectrum_{loaded.name}", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
