"""Fine-tuning on real sub-exposures, measured against a deep reference of the same sky.

For each real sequence in ``../shared/data/sequences/`` (raw sub-exposures of one field, one
camera):

1. every frame is registered to the first by whole-pixel shifts (whole 2 x 2 cells for a
   Bayer mosaic), cropped to the common area and brought to the first frame's level
   (``napari_astrodenoise.finetune``'s own registration);
2. the shipped model is fine-tuned on frames 1 and 2 only (``finetune``, ``--minutes``);
3. frame 1 is denoised by each method, on the whole frame, as a user would;
4. the **reference** is the mean of frames 3..N (never seen by the fine-tuning), aligned and
   level-matched to frame 1, its smooth sky background (Gaussian sigma 64 px) matched to
   frame 1's, since the sky changes between exposures. There is no truth for real data,
   so the reference's own noise
   variance (the per-pixel sample variance of those frames over their number) is taken out
   of each squared error: ``MSE = mean((out - ref)^2) - mean(var_ref)``, an unbiased estimate
   of the error against the true sky;
5. the error is scored where seeing differences do not dominate: the faint sky and extended
   signal, away from stars (the reference's star mask, grown) and from defects (hot pixels
   and cosmic rays, in frame 1 or any reference frame). ``gain`` is
   ``10 log10(MSE_noisy / MSE_method)`` in dB; "extended" is the part of that area with
   signal above the sky. Star photometry (median relative aperture-flux error on the
   reference's stars) and spurious stars (detections with no reference star near) are
   reported apart.

Rows: noisy, BM3D at frame 1's measured sky sigma (per colour plane of a mosaic), the shipped
model, the fine-tuned model, with the time each takes; then each safeguard turned off, for
the shipped and the fine-tuned model. Usage::

    .venv/bin/python benchmarks/finetune_real.py                 # 10-minute fine-tunes
    .venv/bin/python benchmarks/finetune_real.py --minutes 2 --no-bm3d   # a quicker look

It prints markdown tables and writes them to ``benchmarks/results/finetune_real.md`` with a
figure of the same crop by each method (``finetune_real.png``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

import _metrics as m
from napari_astrodenoise.core.noiselevel import noise_sigma
from napari_astrodenoise.core.options import option, turned_off
from napari_astrodenoise.core.pipeline import denoise
from napari_astrodenoise.core.planes import PlaneMap
from napari_astrodenoise.core.starmask import star_mask
from napari_astrodenoise.core.weights import own_options
from napari_astrodenoise.finetune.frames import load_frames, split_planes
from napari_astrodenoise.finetune.lockcheck import background_offset, verdict
from napari_astrodenoise.finetune.prepare import registered_planes
from napari_astrodenoise.fits_io import is_fits_path

ROOT = Path(__file__).resolve().parent.parent
SEQUENCES = ROOT.parent / "shared" / "data" / "sequences"
#: why a fine-tune stopped, in words (``FinetuneResult.stopped``)
STOPPED = {
    "time": "stopped by the time budget",
    "early": "stopped early: the validation loss no longer fell",
    "steps": "stopped at the step limit",
}
RESULTS = ROOT / "benchmarks" / "results"
#: a pixel further than this many noise sigmas from its 3 x 3 median is a defect
DEFECT_SIGMA = 6.0
#: pixels of the star mask's growth: seeing changes the wings of stars between frames
STAR_GROW = 4
#: signal this many reference-noise sigmas above the sky (3 px smoothed) is "extended"
EXTENDED_SIGMA = 3.0


@dataclass
class RealCase:
    """One sequence, ready to score: frame 1, its reference, where to score.

    Planes are (P, h, w): one for mono, four colour sub-planes of a mosaic.
    """

    name: str
    paths: list[Path]
    bayer: bool
    frame1: np.ndarray  # (H, W) whole raw frame 1, float32
    box: tuple[int, int, int, int]  # frame 1's crop to the common area
    reference: np.ndarray  # (P, h, w) mean of frames 3..N at frame 1's level
    ref_var: np.ndarray  # (P, h, w) variance of that mean
    score: np.ndarray  # (P, h, w) bool: faint sky and extended signal, no stars, no defects
    extended: np.ndarray  # (P, h, w) bool: the part of ``score`` with signal
    stars: np.ndarray  # (N, 2) reference stars (x, y) on the planes' grid
    fwhm: float
    sigma: np.ndarray  # (P,) frame 1's sky sigma

    def planes(self, image: np.ndarray) -> np.ndarray:
        """A whole (H, W) frame -> its (P, h, w) planes on the common area."""
        y0, y1, x0, x1 = self.box
        return split_planes(image[y0:y1, x0:x1], bayer=self.bayer)


def _defects(planes: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """(P, h, w) bool: pixels far from their 3 x 3 median (hot pixels, cosmic rays)."""
    med = ndimage.median_filter(planes, size=(1, 3, 3), mode="nearest")
    return np.abs(planes - med) > DEFECT_SIGMA * sigma.reshape(-1, 1, 1)


def sequence_folders() -> list[Path]:
    """The real sequences' folders, sorted; none where the shared data is absent."""
    return sorted(p for p in SEQUENCES.iterdir() if p.is_dir()) if SEQUENCES.is_dir() else []


def frame_paths(folder: Path) -> list[Path]:
    """A sequence's FITS frames, in their order."""
    return sorted(p for p in folder.iterdir() if is_fits_path(p))


def build_case(folder: Path) -> RealCase:
    """Register a sequence, build frame 1's reference and the scoring masks."""
    paths = frame_paths(folder)
    subs = load_frames([str(p) for p in paths])
    planes, reg, _record = registered_planes(subs, "all")
    bayer = reg.cell == 2
    stack = np.stack(planes[2:]).astype(np.float64)
    reference = stack.mean(axis=0)
    ref_var = stack.var(axis=0, ddof=1) / len(stack)
    sigma = noise_sigma(planes[0])
    bad = _defects(planes[0], sigma)
    for p in planes[2:]:
        bad |= _defects(p, sigma)
    bad = ndimage.binary_dilation(bad, structure=np.ones((1, 3, 3), bool))
    lum = reference.sum(axis=0)
    stars_near = star_mask(lum) > 0
    stars_near = ndimage.binary_dilation(stars_near, iterations=STAR_GROW)
    score = ~bad & ~stars_near[np.newaxis]
    reference += background_offset(planes[0] - reference, score)
    sky = np.median(reference.reshape(len(reference), -1), axis=1).reshape(-1, 1, 1)
    smooth = ndimage.uniform_filter(reference, size=(1, 3, 3))
    ref_sigma = np.sqrt(np.median(ref_var.reshape(len(ref_var), -1), axis=1)).reshape(-1, 1, 1)
    extended = score & (
        smooth - sky > EXTENDED_SIGMA * np.maximum(ref_sigma, sigma.reshape(-1, 1, 1) / 3)
    )
    lum_sigma = float(noise_sigma(lum)[0])
    fwhm = m.estimate_fwhm(lum, threshold=20 * lum_sigma)
    stars = m.find_stars(lum, threshold=10 * lum_sigma, fwhm=fwhm)
    return RealCase(
        name=folder.name,
        paths=paths,
        bayer=bayer,
        frame1=np.asarray(subs[0].data, dtype=np.float32),
        box=reg.boxes[0],
        reference=reference,
        ref_var=ref_var,
        score=score,
        extended=extended,
        stars=stars,
        fwhm=fwhm,
        sigma=sigma,
    )


def mse(case: RealCase, planes: np.ndarray, where: np.ndarray) -> float:
    """Squared error against the true sky on ``where``, the reference's noise taken out."""
    err = (planes.astype(np.float64) - case.reference)[where]
    return float(np.mean(err**2) - np.mean(case.ref_var[where]))


def score(case: RealCase, out: np.ndarray, seconds: float) -> dict:
    """Errors, star photometry and spurious stars of one whole-frame output."""
    planes = case.planes(out)
    lum, ref_lum = planes.sum(axis=0), case.reference.sum(axis=0)
    flux, _bias = m.flux_error(ref_lum, lum, case.stars, fwhm=case.fwhm)
    lum_sigma = float(noise_sigma(ref_lum)[0]) * np.sqrt(len(case.paths) - 2)
    found = m.find_stars(lum, threshold=5 * lum_sigma, fwhm=case.fwhm)
    return {
        "mse": mse(case, planes, case.score),
        "mse_ext": mse(case, planes, case.extended) if case.extended.any() else float("nan"),
        "flux": flux,
        "spurious": m.spurious_stars(case.stars, found),
        "seconds": seconds,
    }


def bm3d_frame(case: RealCase) -> np.ndarray:
    """BM3D of frame 1, plane by plane (each colour sub-plane of a mosaic apart)."""
    import bm3d

    plane_map = PlaneMap.of(case.frame1, None, case.bayer)
    planes = plane_map.to_planes(case.frame1)
    sigmas = noise_sigma(planes)
    out = np.stack(
        [
            bm3d.bm3d(p, sigma_psd=float(s)).astype(np.float32)
            for p, s in zip(planes, sigmas, strict=True)
        ]
    )
    return plane_map.from_planes(out)


def timed(run: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = run()
    return out, time.perf_counter() - start


def run_case(case: RealCase, args: argparse.Namespace) -> tuple[list, list, dict]:
    """(method rows, safeguard rows, outputs) of one sequence."""
    from napari_astrodenoise.finetune import finetune

    outputs, results = {}, {}
    outputs["noisy"], t = case.frame1, 0.0
    results["noisy"] = score(case, case.frame1, t)
    if args.bm3d:
        out, t = timed(lambda: bm3d_frame(case))
        outputs["BM3D"], results["BM3D"] = out, score(case, out, t)
    opts = {"bayer": case.bayer}
    out, t = timed(lambda: denoise(case.frame1, model="default", **opts))
    outputs["shipped"], results["shipped"] = out, score(case, out, t)
    tuned, t_tune = timed(
        lambda: finetune(
            [str(p) for p in case.paths[:2]],
            name=f"bench-{case.name}",
            minutes=args.minutes,
            overwrite=True,
            seed=args.seed,
        )
    )
    out, t = timed(lambda: denoise(case.frame1, model=tuned.model, **opts))
    outputs["fine-tuned"], results["fine-tuned"] = out, score(case, out, t)
    results["fine-tuned"]["train_seconds"] = t_tune
    results["fine-tuned"]["val"] = (tuned.val_loss_before, tuned.val_loss_after)
    results["fine-tuned"]["steps"] = (tuned.steps, tuned.stopped)
    results["fine-tuned"]["precision"] = tuned.provenance["precision"]
    results["fine-tuned"]["lock_check"] = tuned.provenance.get("flux_lock_check")
    guards = []
    for label, model in (("shipped", "default"), ("fine-tuned", tuned.model)):
        for name, off in [*turned_off().items(), ("all", None)]:
            off_opts = turned_off() if name == "all" else {name: off}
            out = denoise(case.frame1, model=model, **opts, **off_opts)
            guards.append((label, f"{name} off", score(case, out, 0.0)))
        lock = option("flux_lock").default
        own = own_options(model.config) if label == "fine-tuned" else {}
        if own.get("flux_lock", lock) != lock:
            # the model runs without the lock: what the lock would cost it
            out = denoise(case.frame1, model=model, **opts, flux_lock=lock)
            guards.append((label, f"flux_lock on ({lock:g} px)", score(case, out, 0.0)))
    return results, guards, outputs


def db(a: float, b: float) -> float:
    """How much lower ``b`` is than ``a``, in dB: ``10 log10(a / b)``; NaN unless both > 0."""
    return 10 * np.log10(a / b) if a > 0 and b > 0 else float("nan")


def tables(case: RealCase, results: dict, guards: list) -> list[str]:
    noisy = results["noisy"]
    lines = [
        f"## {case.name}",
        "",
        f"{len(case.paths)} frames, {'Bayer mosaic' if case.bayer else 'mono'}, common area "
        f"{case.reference.shape[1:]} per plane; scored {case.score.mean():.0%} of it "
        f"({case.extended.mean():.1%} extended signal); {len(case.stars)} reference stars, "
        f"FWHM {case.fwhm:.2f} px. Reference: mean of {len(case.paths) - 2} frames.",
        "",
        "| method | gain dB | extended dB | vs BM3D dB | vs shipped dB | star flux err | "
        "spurious | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        gain = db(noisy["mse"], r["mse"])
        ext = db(noisy["mse_ext"], r["mse_ext"])
        vs_bm3d = db(results["BM3D"]["mse"], r["mse"]) if "BM3D" in results else float("nan")
        vs_ship = db(results["shipped"]["mse"], r["mse"])
        secs = f"{r['seconds']:.1f}"
        if "train_seconds" in r:
            secs += f" (+{r['train_seconds']:.0f} training)"
        lines.append(
            f"| {name} | {gain:+.2f} | {ext:+.2f} | {vs_bm3d:+.2f} | {vs_ship:+.2f} | "
            f"{100 * r['flux']:.2f} % | {r['spurious']} | {secs} |"
        )
    before, after = results["fine-tuned"]["val"]
    steps, stopped = results["fine-tuned"]["steps"]
    precision = results["fine-tuned"]["precision"]
    lines += [
        "",
        f"Fine-tuning: {steps} steps in {precision} ({STOPPED[stopped]}), validation loss "
        f"{before:.4f} -> {after:.4f} (1 is a perfect denoiser, 2 the identity).",
        "",
    ]
    check = results["fine-tuned"].get("lock_check")
    if check:
        sky, flux = check["held_out_faint_sky"], check["star_flux_change_without_lock"]
        lines += [
            f"Flux lock measured on frame 1 (`finetune.lockcheck`): {verdict(check)}; "
            f"the faint-sky difference +- {sky['error']}, the flux change +- "
            f"{flux['error']:.2%}, aperture {flux['radius_px']:g} px of the planes.",
            "",
        ]
    lines += [
        "Each safeguard off (gain dB against the noisy frame; the change against the model's "
        "default settings):",
        "",
        "| model | safeguards | gain dB | change dB | star flux err | spurious |",
        "|---|---|---|---|---|---|",
    ]
    for label, name, r in guards:
        base = results[label]["mse"]
        lines.append(
            f"| {label} | {name} | {db(noisy['mse'], r['mse']):+.2f} | "
            f"{db(base, r['mse']):+.2f} | {100 * r['flux']:.2f} % | {r['spurious']} |"
        )
    return [*lines, ""]


def figure(cases: list[tuple[RealCase, dict]], path: Path) -> None:
    """The same 160 px crop of frame 1 by each method and of the reference, one row a sequence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["noisy", "BM3D", "shipped", "fine-tuned", "reference"]
    fig, axes = plt.subplots(len(cases), len(names), figsize=(2.2 * len(names), 2.3 * len(cases)))
    axes = np.atleast_2d(axes)
    for row, (case, outputs) in enumerate(cases):
        lum = case.reference.sum(axis=0)
        y, x = np.unravel_index(
            np.argmax(ndimage.uniform_filter(lum * case.extended[0], 80)), lum.shape
        )
        y0, x0 = max(0, min(y - 80, lum.shape[0] - 160)), max(0, min(x - 80, lum.shape[1] - 160))
        sky, soft = float(np.median(lum)), float(noise_sigma(lum)[0]) * 3
        top = np.arcsinh((np.percentile(lum, 99.5) - sky) / soft)
        for col, name in enumerate(names):
            ax = axes[row, col]
            ax.set_axis_off()
            if name == "reference":
                img = lum
            elif name in outputs:
                img = case.planes(outputs[name]).sum(axis=0)
            else:
                continue
            crop = img[y0 : y0 + 160, x0 : x0 + 160]
            ax.imshow(np.arcsinh((crop - sky) / soft) / top, cmap="gray", vmin=-0.05, vmax=1.0)
            ax.set_title(f"{name}" if row else name, fontsize=9)
        axes[row, 0].text(
            -0.1,
            0.5,
            case.name,
            transform=axes[row, 0].transAxes,
            rotation=90,
            va="center",
            ha="right",
            fontsize=8,
        )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="fine-tuning budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-bm3d", dest="bm3d", action="store_false", help="skip BM3D")
    parser.add_argument("--only", help="one sequence folder name")
    parser.add_argument("--tag", default="", help="suffix of the result files")
    args = parser.parse_args(argv)
    if not SEQUENCES.is_dir():
        print(f"no sequences at {SEQUENCES}; nothing to measure", file=sys.stderr)
        return 0
    folders = sequence_folders()
    if args.only:
        folders = [f for f in folders if f.name == args.only]
    lines = [
        "# Fine-tuning on real sub-exposures",
        "",
        f"Command: `.venv/bin/python benchmarks/finetune_real.py --minutes {args.minutes:g}"
        f"{'' if args.bm3d else ' --no-bm3d'}`; {os.cpu_count()} CPU cores, torch threads "
        f"{_torch_threads()}. Protocol in "
        "the script's docstring: fine-tuned on frames 1-2, frame 1 scored against the mean "
        "of frames 3..N with the reference's own noise taken out.",
        "",
    ]
    shown = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ASTRODENOISE_MODELS_DIR"] = tmp  # the benchmark's models stay out of yours
        for folder in folders:
            print(f"{folder.name}: registering", file=sys.stderr, flush=True)
            case = build_case(folder)
            results, guards, outputs = run_case(case, args)
            table = tables(case, results, guards)
            print("\n".join(table), flush=True)
            lines += table
            shown.append((case, outputs))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "finetune_real" + (f"_{args.tag}" if args.tag else "")
    figure(shown, RESULTS / f"{stem}.png")
    lines += [f"![the same crop of frame 1 by each method]({stem}.png)", ""]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
