"""The iterated noise-and-denoise loop: a subject (an original, its fixed measures) and the loop.

At every cycle fresh noise (a new seed, the noise model fixed from the original ``x0``) is
added to the previous output, which is denoised again and measured against ``x0``
(``Subject.measure``: PSNR, star recall, spurious and invented stars, flux error and bias,
nebula and star chroma, peak ratio). ``faithfulness.py`` tables and plots it;
``peak_cap.py`` runs it for each peak cap.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

import _cases as cs
import _metrics as m

#: noise seeds of the loop: FAITH_SEED_BASE + 1000 * subject + cycle
FAITH_SEED_BASE = 12_000_000
#: star-mask level below which a pixel counts as star-free (chroma mask)
STAR_FREE = 0.01
#: nebulosity: star-free pixels whose smoothed luminance is this many sky sigmas above sky
NEBULA_SIGMA = 1.0
#: fewer nebulosity pixels than this: no nebula chroma (n/a)
NEBULA_MIN_PIXELS = 200


@dataclass
class Subject:
    """An original image and the fixed quantities its loop is measured with."""

    ref: cs.Reference
    nm: cs.NoiseModel
    threshold: float
    clean_xy: np.ndarray
    phot: np.ndarray
    deep_xy: np.ndarray
    data_range: float
    sky: np.ndarray
    nebula: np.ndarray | None
    chroma0: float
    star_chroma0: float

    @classmethod
    def make(cls, ref: cs.Reference, level: cs.Level) -> Subject:
        """Fix the noise model, star list and colour references of an original."""
        from napari_astrodenoise.core.starmask import star_mask

        x0 = ref.image
        nm = cs.NoiseModel.for_level(ref, level)
        _chan, lum = nm.sky_sigma(ref.sky)
        threshold = cs.DETECT_SIGMA * lum
        clean_xy = m.find_stars(x0, threshold=threshold, fwhm=ref.fwhm)
        phot = m.photometry_sample(clean_xy, x0.shape[-2:], fwhm=ref.fwhm, saturated=ref.saturated)
        deep_xy = m.find_stars(x0, threshold=cs.DEEP_SIGMA * lum, fwhm=ref.fwhm)
        sky = ref.sky
        nebula, chroma0, star_chroma0 = None, float("nan"), float("nan")
        if x0.ndim == 3:
            free = (star_mask(x0, channel_axis=0) < STAR_FREE) & ~ref.saturated
            smooth = ndimage.gaussian_filter(m.luminance(x0), m.CHROMA_SMOOTH)
            mask = free & (smooth - float(sky.mean()) > NEBULA_SIGMA * lum)
            if mask.sum() >= NEBULA_MIN_PIXELS:
                nebula, chroma0 = mask, m.chroma(x0, sky=sky, mask=mask)
            star_chroma0 = m.star_chroma(x0, clean_xy[phot], fwhm=ref.fwhm)
        return cls(
            ref, nm, threshold, clean_xy, phot, deep_xy, m.robust_range(x0), sky, nebula,
            chroma0, star_chroma0,
        )  # fmt: skip

    def measure(self, image: np.ndarray) -> dict:
        """Metrics of one loop output against the original."""
        x0, fwhm = self.ref.image, self.ref.fwhm
        out_xy = m.find_stars(image, threshold=self.threshold, fwhm=fwhm)
        err, bias = float("nan"), float("nan")
        if len(self.phot) >= cs.PHOT_MIN:
            err, bias = m.flux_error(x0, image, self.clean_xy[self.phot], fwhm=fwhm)
        chroma = star_chroma = float("nan")
        if self.nebula is not None and self.chroma0 > 0:
            chroma = m.chroma(image, sky=self.sky, mask=self.nebula) / self.chroma0
        if self.star_chroma0 > 0 and len(self.phot) >= cs.PHOT_MIN:
            xy = self.clean_xy[self.phot]
            star_chroma = m.star_chroma(image, xy, fwhm=fwhm) / self.star_chroma0
        return {
            "psnr": m.psnr(x0, image, self.data_range),
            "recall": m.star_recall(self.clean_xy, out_xy),
            "spurious": m.spurious_stars(self.clean_xy, out_xy),
            "invented": m.spurious_stars(self.deep_xy, out_xy),
            "chroma": chroma,
            "star_chroma": star_chroma,
            "flux_err": err,
            "flux_bias": bias,
            "peak": m.peak_ratio(x0, image, sky=self.sky),
        }


def iterate(
    subject: Subject,
    denoiser: Callable[[np.ndarray], np.ndarray],
    cycles: int,
    seed_base: int,
    label: str,
) -> tuple[list[dict], float]:
    """Run the loop; ``(metrics per cycle, PSNR of the first noisy input)``."""
    x = subject.ref.image
    history: list[dict] = []
    first_noisy = float("nan")
    start = time.perf_counter()
    for cycle in range(1, cycles + 1):
        noisy = subject.nm.apply(x, seed_base + cycle)
        if cycle == 1:
            first_noisy = m.psnr(subject.ref.image, noisy, subject.data_range)
        x = denoiser(noisy)
        row = subject.measure(x)
        row["cycle"] = cycle
        history.append(row)
        if cycle == 1 or cycle % 10 == 0 or cycle == cycles:
            print(
                f"[{subject.ref.name} {label}] cycle {cycle}: PSNR {row['psnr']:.2f} dB, "
                f"recall {row['recall']:.3f}, spurious {row['spurious']}, "
                f"{time.perf_counter() - start:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    return history, first_noisy
