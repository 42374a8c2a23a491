"""How small a star-flux error any denoiser can reach on the evaluation cases: a lower bound.

``evaluate.py`` scores photometry as the median, over isolated unsaturated clean stars, of
``|f_out / f_clean - 1|`` with ``f`` a background-subtracted aperture sum (``_metrics``).
Issue 4 asks for under 2 % on every star field. This script measures how far below the
noise that is, with no model involved.

The bound: give an estimator everything but the noise (the clean star's own profile in
every channel, its position, the sky, the per-pixel noise variance of the case's
Poisson-Gaussian model) and let it estimate one number, the star's brightness ``a`` times
that profile. Its best unbiased estimate (weighted least squares) has variance
``1 / sum(T**2 / var)`` (the Cramer-Rao bound, ``T`` the profile within ``1.5`` aperture
radii, all channels sharing ``a``), and ``f_out / f_clean - 1 = a - 1``. The median over
stars of ``|a - 1|`` is drawn many times from those normal laws; its mean is the
"floor" column. Every simplification (known position, known shape, known sky, light of a
neighbour inside the profile) gives the estimator more than it has, so the true floor is
higher. A denoiser's output measured by apertures cannot beat it except by bias that
happens to help, which would be a different failure.

Beside it, the same aperture measure on the noisy input (the "noisy" row of
``evaluate.py``) and, from an evaluation record, the model's and BM3D's.

    .venv/bin/python benchmarks/flux_floor.py [--record benchmarks/results/eval_<tag>.md]

Prints a markdown table and writes ``benchmarks/results/flux_floor.md``. No model runs; the
cases are ``evaluate.py``'s (same references, crops, levels and noise seeds).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

import _cases as cs
import _metrics as m
from _harness import RESULTS, shown, write_results
from _methods import METHODS

#: Monte Carlo draws of the per-star errors for the median's expectation
DRAWS = 2000
#: the profile used by the bound reaches this many aperture radii from the star
PROFILE_RADII = 1.5
FLUX_TARGET = 0.02


def pixel_variance(case: cs.Case) -> np.ndarray:
    """``(C, H, W)`` variance of the noise added to ``case``'s clean image, per pixel."""
    clean = np.asarray(case.ref.image, dtype=np.float64)
    planes = clean if clean.ndim == 3 else clean[None]
    nm = case.nm
    electrons = np.maximum(nm.gain * (planes - nm.offset.reshape(-1, 1, 1)), 0.0)
    return (electrons + nm.read_noise**2) / nm.gain**2


def relative_sigmas(
    clean: np.ndarray, variance: np.ndarray, xy: np.ndarray, *, fwhm: float
) -> np.ndarray:
    """Cramer-Rao sigma of each star's relative flux, its profile known up to a scale.

    Parameters
    ----------
    clean : ndarray
        ``(H, W)`` or ``(C, H, W)`` clean image.
    variance : ndarray
        ``(C, H, W)`` (or ``(H, W)`` for mono) noise variance per pixel, > 0.
    xy : ndarray
        ``(N, 2)`` star positions (column, row), their annuli inside the frame.
    fwhm : float
        The case's FWHM: sets the profile's radius and the sky annulus.

    Returns
    -------
    ndarray
        ``(N,)`` ``1 / sqrt(sum over channels and pixels of T**2 / var)``, ``T`` the clean
        profile above the sky (the annulus's sigma-clipped median, per channel) within
        ``PROFILE_RADII`` aperture radii; inf where the profile is empty.
    """
    from astropy.stats import sigma_clipped_stats

    planes = np.asarray(clean, dtype=np.float64)
    planes = planes if planes.ndim == 3 else planes[None]
    var = np.asarray(variance, dtype=np.float64)
    var = var if var.ndim == 3 else var[None]
    r, r_in, r_out = m.aperture_radii(fwhm)
    reach = int(np.ceil(r_out)) + 1
    d = np.arange(-reach, reach + 1)
    # padded by the window's reach so that every window is whole (the pad is never read)
    pad = ((0, 0), (reach, reach), (reach, reach))
    planes, var = np.pad(planes, pad, mode="edge"), np.pad(var, pad, mode="edge")
    out = np.empty(len(xy))
    for i, (x, y) in enumerate(np.asarray(xy, dtype=np.float64).reshape(-1, 2)):
        ix, iy = round(x) + reach, round(y) + reach
        x, y = x + reach, y + reach
        win = (slice(iy - reach, iy + reach + 1), slice(ix - reach, ix + reach + 1))
        # distances from the sub-pixel position, on the window's pixel grid
        rr = np.hypot(d[:, None] + iy - y, d[None, :] + ix - x)
        ring = (rr >= r_in) & (rr <= r_out)
        core = rr <= PROFILE_RADII * r
        info = 0.0
        for plane, v in zip(planes, var, strict=True):
            cut, vcut = plane[win], v[win]
            sky = sigma_clipped_stats(cut[ring], sigma=3.0, maxiters=5)[1]
            info += float(np.sum((cut[core] - sky) ** 2 / vcut[core]))
        out[i] = 1.0 / np.sqrt(info) if info > 0 else np.inf
    return out


def median_abs_floor(sigmas: np.ndarray, *, draws: int = DRAWS, seed: int = 0) -> float:
    """Expected median over stars of ``|N(0, sigma_i)|`` (Monte Carlo)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((draws, len(sigmas))) * sigmas[None, :]
    return float(np.mean(np.median(np.abs(z), axis=1)))


def record_flux(path: Path) -> dict[tuple[str, str], str]:
    """``{(case, method): flux err cell}`` from an ``evaluate.py`` record's results table."""
    cells: dict[tuple[str, str], str] = {}
    for line in path.read_text().splitlines():
        parts = [p.strip() for p in line.strip().strip("|").split("|")]
        if len(parts) >= 7 and "/" in parts[0] and parts[1] in METHODS:
            cells[(parts[0], parts[1])] = parts[6]
    return cells


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--record",
        type=Path,
        default=RESULTS / "eval_astrodenoise-quick.md",
        help="an evaluate.py record for the model and BM3D columns ('' for none)",
    )
    p.add_argument("--data-dir", type=Path, default=cs.EVAL_DIR)
    p.add_argument("--no-real", action="store_true")
    args = p.parse_args(argv)
    # evaluate.py's defaults, so that the cases are the same
    args.crop, args.n_sim, args.levels = cs.EVAL_CROP, cs.EVAL_N_SIM, list(cs.LEVELS)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["benchmarks/flux_floor.py", *(sys.argv[1:] if argv is None else argv)])
    record = {}
    if str(args.record) and Path(args.record).is_file():
        record = record_flux(Path(args.record))
    rows = []
    refs = cs.references(
        n_sim=args.n_sim, crop=args.crop, data_dir=None if args.no_real else args.data_dir
    )
    for i, ref in enumerate(refs):
        for j, name in enumerate(args.levels):
            case = cs.make_case(ref, cs.LEVELS[name], seed=cs.NOISE_SEED_BASE + 100 * i + j)
            if len(case.phot) < cs.PHOT_MIN:
                continue
            xy = case.clean_xy[case.phot]
            sig = relative_sigmas(ref.image, pixel_variance(case), xy, fwhm=ref.fwhm)
            noisy, _ = m.flux_error(ref.image, case.noisy, xy, fwhm=ref.fwhm)
            rows.append((case.name, len(xy), median_abs_floor(sig), noisy))
            print(f"[{case.name}] floor {100 * rows[-1][2]:.2f} %", file=sys.stderr, flush=True)
    lines = [
        "# Star-flux error: the floor any denoiser faces on the evaluation cases",
        "",
        f"Command: `.venv/bin/python {command}`. Cases: those of `evaluate.py` with at least "
        f"{cs.PHOT_MIN} photometry stars (a star field: at least {cs.STAR_FIELD_MIN}). "
        "Floor: expected median |relative flux error| of the best unbiased estimate of each "
        "star's brightness given its clean profile, position, sky and noise variance (a "
        "lower bound; see the script's docstring). Noisy: the aperture measure on the noisy "
        "input. Model and BM3D: "
        + (f"from `{shown(Path(args.record))}`." if record else "no record read."),
        "",
        "| case | phot stars | floor | noisy | model | BM3D |",
        "|---|---|---|---|---|---|",
    ]
    for name, n, floor, noisy in rows:
        lines.append(
            f"| {name} | {n} | {100 * floor:.2f} % | {100 * noisy:.2f} % | "
            f"{record.get((name, 'model'), 'n/a')} | {record.get((name, 'bm3d'), 'n/a')} |"
        )
    fields = [r for r in rows if r[1] >= cs.STAR_FIELD_MIN]
    above = sum(r[2] >= FLUX_TARGET for r in fields)
    lines += [
        "",
        f"Star fields whose floor is at or above {100 * FLUX_TARGET:g} %: {above}/{len(fields)}.",
    ]
    write_results("flux_floor", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
