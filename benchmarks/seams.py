"""Tile-seam visibility of the shipped model: Gaussian blending against naive tiles.

For each image the engine's ``seam_map`` denoises it on the tile grid and on the same grid
shifted by half a stride; the RMS of the difference, in units of the image's noise sigma, is
how visible the seams are (see ``napari_astrodenoise.core.diagnostics``). Images: the bundled
synthetic scene and M13 frame, and the real frames in ``../shared/data/fits/`` when present.

    .venv/bin/python benchmarks/seams.py [--model default|PATH] [--tile-size 256]

Prints a markdown table and writes it to ``benchmarks/results/seams_<model>.md``.
"""

from __future__ import annotations

import argparse
import time

from _cases import ROOT
from _harness import RESULTS
from napari_astrodenoise._sample_data import sample_image
from napari_astrodenoise.core.pipeline import seam_map
from napari_astrodenoise.core.weights import load_model
from napari_astrodenoise.fits_io import read_fits

SHARED = ROOT.parent / "shared" / "data" / "fits"
OVERLAPS = (("gaussian", 0.25), ("gaussian", 0.5), ("none", 0.0))


def _images() -> list[tuple[str, object]]:
    images = [("synthetic sample (3x512x512)", sample_image("synthetic"))]
    images.append(("m13 sample (300x300)", sample_image("m13")))
    for path in sorted(SHARED.glob("*/*.fits")) if SHARED.is_dir() else []:
        if "sdss_g" in path.name or "sdss_r_" in path.name or "sdss_i_" in path.name:
            continue  # the three bands are the planes of the colour cube, measured once
        image = read_fits(path)[0]
        images.append((f"{path.parent.name}/{path.name}", image))
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--tile-size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    loaded = load_model(args.model, device=args.device)
    header = "| image | " + " | ".join(f"{b} {o:g}" for b, o in OVERLAPS) + " | seconds |"
    lines = [
        f"# Tile-seam visibility, model {loaded.name} (sha256 {loaded.sha256[:16]})",
        "",
        f"RMS of (tiled - tiled on a grid shifted by half a stride) / sqrt(2), in units of the "
        f"image's noise sigma; tile {args.tile_size} px. Lower is better; 'none' is naive "
        "non-overlapping tiles.",
        "",
        f"Command: `.venv/bin/python benchmarks/seams.py --model {args.model}`",
        "",
        header,
        "|---|" + "---:|" * (len(OVERLAPS) + 1),
    ]
    print("\n".join(lines), flush=True)
    for label, image in _images():
        t0 = time.perf_counter()
        cells = []
        for blend, overlap in OVERLAPS:
            report = seam_map(
                image.data,
                model=loaded,
                tile_size=args.tile_size,
                overlap=overlap,
                blend=blend,
                channel_axis=None if image.data.ndim == 2 else 0,
                bayer=image.bayer_pattern is not None,
            )
            cells.append(f"{report.seam_sigma:.4f}")
        row = f"| {label} | " + " | ".join(cells) + f" | {time.perf_counter() - t0:.0f} |"
        lines.append(row)
        print(row, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"seams_{loaded.name}.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
