"""Make docs/images/before_after.png: a real raw frame beside its denoised result.

The frame is one raw 60 s sub-exposure of the SN 2022yid field (SBIG CCD, L filter) from
``../shared/data/sequences/``: real camera noise, nothing added. The whole frame is denoised
with the shipped default model at default settings; a crop around the galaxy is shown, both
halves through one display stretch (measured on the noisy crop), FITS row 1 at the bottom.

    .venv/bin/python scripts/readme_before_after.py [--out docs/images/before_after.png]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FRAME = ROOT.parent / "shared/data/sequences/bsu_sn2022yid_L60s/SN2022yid_10292022-0002_L_60s.fit"
#: rows and columns of the crop (array order; FITS row 1 is row 0), around the galaxy
CROP = (slice(376, 696), slice(690, 1010))
GAP = 8  # px of white between the halves
ZOOM = 2  # nearest-neighbour, so single pixels stay visible


def make(frame: Path, out: Path) -> None:
    """Denoise ``frame``, render the crop before and after, write a PNG to ``out``."""
    import imageio.v3 as iio

    from napari_astrodenoise import denoise, read_image
    from napari_astrodenoise.core.display import display_stretch

    image = read_image(frame)[0]
    start = time.perf_counter()
    result = denoise(image.data, model="default", device="cpu")
    seconds = time.perf_counter() - start
    noisy, clean = image.data[CROP], result[CROP]
    stretch = display_stretch(noisy)
    halves = [_picture(stretch.render(x)) for x in (noisy, clean)]
    gap = np.full((halves[0].shape[0], GAP), 255, np.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(out, np.hstack([halves[0], gap, halves[1]]))
    print(f"{frame.name} {image.data.shape}: denoised in {seconds:.1f} s -> {out}")


def _picture(shown: np.ndarray) -> np.ndarray:
    """0..1 brightness to 8-bit grey, FITS row 1 at the bottom, zoomed."""
    grey = np.round(255 * np.nan_to_num(shown[::-1])).astype(np.uint8)
    return grey.repeat(ZOOM, axis=0).repeat(ZOOM, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frame", type=Path, default=FRAME, help="raw FITS frame")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "docs/images/before_after.png", help="PNG to write"
    )
    args = parser.parse_args()
    make(args.frame, args.out)


if __name__ == "__main__":
    main()
