"""Synthetic star fields with known stars, for the fine-tuning tests."""

from __future__ import annotations

import numpy as np

from napari_astrodenoise.simulate.noise import poisson_gaussian

GAIN = 1.0  # electrons per ADU
READ_NOISE = 5.0  # electrons
SKY = 100.0  # ADU


def star_field(
    shape: tuple[int, int],
    *,
    seed: int,
    n_bright: int = 40,
    n_faint: int = 0,
    faint_flux: float = 600.0,
    fwhm: float = 2.5,
    sky: float = SKY,
    keep_clear: tuple[slice, slice] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A clean (H, W) float32 field: flat sky plus Gaussian stars.

    Returns the image and the faint stars as an (n, 3) array of (y, x, flux). Bright stars
    (flux 3e3 to 3e4) make registration easy; faint ones sit on a grid away from them.
    ``keep_clear`` is a region left without stars (a flat patch).
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    image = np.full(shape, sky, dtype=np.float64)
    yy, xx = np.mgrid[0:h, 0:w]
    sigma = fwhm / 2.3548

    def add(y: float, x: float, flux: float) -> None:
        r = int(np.ceil(5 * sigma))
        y0, y1 = max(int(y) - r, 0), min(int(y) + r + 2, h)
        x0, x1 = max(int(x) - r, 0), min(int(x) + r + 2, w)
        g = np.exp(-((yy[y0:y1, x0:x1] - y) ** 2 + (xx[y0:y1, x0:x1] - x) ** 2) / (2 * sigma**2))
        image[y0:y1, x0:x1] += flux * g / (2 * np.pi * sigma**2)

    def clear(y: float, x: float) -> bool:
        if keep_clear is None:
            return True
        ys, xs = keep_clear
        return not (ys.start - 8 <= y < ys.stop + 8 and xs.start - 8 <= x < xs.stop + 8)

    placed = 0
    while placed < n_bright:
        y, x = rng.uniform(0, h), rng.uniform(0, w)
        if clear(y, x):
            add(y, x, float(10 ** rng.uniform(3.5, 4.5)))
            placed += 1
    faint = []
    for y in np.linspace(10, h - 10, int(np.ceil(np.sqrt(n_faint))) + 2)[1:-1]:
        for x in np.linspace(10, w - 10, int(np.ceil(np.sqrt(n_faint))) + 2)[1:-1]:
            if len(faint) < n_faint and clear(y, x):
                fy, fx = y + rng.uniform(-0.5, 0.5), x + rng.uniform(-0.5, 0.5)
                add(fy, fx, faint_flux)
                faint.append((fy, fx, faint_flux))
    return image.astype(np.float32), np.array(faint).reshape(-1, 3)


def noisy(clean: np.ndarray, seed: int) -> np.ndarray:
    """A Poisson-Gaussian exposure of ``clean`` (gain 1 e-/ADU, read noise 5 e-)."""
    return poisson_gaussian(clean, gain=GAIN, read_noise=READ_NOISE, seed=seed).astype(np.float32)


def shifted_pair(
    clean: np.ndarray, shift: tuple[int, int], size: tuple[int, int], seeds=(1, 2)
) -> tuple[np.ndarray, np.ndarray]:
    """Two noisy frames cut from ``clean``: the second's view moved by ``-shift``.

    A star at (y, x) in the first frame is at (y + dy, x + dx) in the second.
    """
    dy, dx = shift
    h, w = size
    oy, ox = max(dy, 0), max(dx, 0)  # first frame's origin, so both cuts fit
    a = clean[oy : oy + h, ox : ox + w]
    b = clean[oy - dy : oy - dy + h, ox - dx : ox - dx + w]
    return noisy(a, seeds[0]), noisy(b, seeds[1])
