"""The astro stretch of linear data for the network, and its exact inverse.

The network never sees raw counts. Each image is mapped, with statistics measured once on the
whole frame (never per tile, so tiles agree), to

    y = asinh((x - background) / scale),    scale = softening * noise_sigma

where ``background`` is the per-channel median and ``noise_sigma`` the robust white-noise
level (:mod:`~napari_astrodenoise.core.noiselevel`). Near the sky the map is linear and the
noise has a standard deviation of about ``1 / softening`` whatever the camera, gain or
exposure; bright stars and cores are compressed logarithmically. The same ``scale`` is used
for every channel, so colour ratios survive the stretch. The inverse
``x = background + scale * sinh(y)`` is computed in float64, so a round trip is exact to
float32 precision, and nothing is ever clipped or rescaled to [0, 1].

Non-finite pixels are ignored by the statistics, replaced by the channel background for the
network, and put back in the output by the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_astrodenoise.core.noiselevel import (
    as_chw,
    background_level,
    finite_sample,
    noise_sigma,
)

#: below this |half-difference| ``AstroStretch.change`` takes sinh from its Taylor series to
#: the 5th power (relative error (0.25)^6 / 5040 < 1e-7, under float32's rounding)
_TAYLOR_MAX = np.float32(0.25)


@dataclass(frozen=True)
class AstroStretch:
    """The per-image map between linear data and network space.

    Attributes
    ----------
    background : ndarray
        (C,) float64 per-channel offset, in the data's units.
    scale : float
        Shared softening scale, in the data's units (> 0).
    """

    background: np.ndarray
    scale: float

    def forward(self, image: np.ndarray) -> np.ndarray:
        """Linear (..., C, H, W) data to network space, float32; non-finite pixels become 0.

        0 in network space is the channel background, so filled pixels look like sky.
        A batch of tiles (B, C, T, T) works as well as a whole frame.
        """
        image = as_chw(image) if np.ndim(image) == 2 else np.asarray(image)
        # float32 input is computed in float32 (the difference to the background is exact
        # to the input's own precision), any other dtype in float64. asinh is taken as
        # sign(z) log(|z| + sqrt(z^2 + 1)): numpy vectorises log and sqrt but not arcsinh,
        # so this is ~3x faster, within 1e-6 of arcsinh (far below the sky noise, 1 /
        # softening) and exact in relative terms where |z| is large.
        wide = image.dtype != np.float32
        bg = self.background.reshape(-1, 1, 1).astype(np.float64 if wide else np.float32)
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf, huge z * z
            z = np.subtract(image, bg, dtype=bg.dtype)
            z *= 1.0 / self.scale
            a = np.abs(z)
            y = np.square(a)
            y += 1.0
            np.sqrt(y, out=y)
            # beyond ~1e19 z * z overflows: there asinh(z) = log(2 |z|) to float precision
            huge = a > 1e18
            y[huge] = a[huge]
            y += a
            np.log(y, out=y)
            np.copysign(y, z, out=y)
        y[~np.isfinite(y)] = 0.0
        return y.astype(np.float32, copy=False)

    def inverse(self, y: np.ndarray) -> np.ndarray:
        """Network space (..., C, H, W) back to linear data, computed and returned in float64."""
        y = (as_chw(y) if np.ndim(y) == 2 else np.asarray(y)).astype(np.float64)
        return self.background.reshape(-1, 1, 1) + self.scale * np.sinh(y)

    def change(self, new: np.ndarray, old: np.ndarray) -> np.ndarray:
        """``inverse(new) - inverse(old)``, float32, without the cancellation.

        Computed as ``2 scale cosh((new + old) / 2) sinh((new - old) / 2)``: no difference of
        two large numbers is taken, so float32 keeps the change to its own relative
        precision even at bright cores (``sinh`` of a star is ~1e6 times the change a
        denoiser makes there) and equal inputs give exactly 0. ``cosh`` comes from one
        vectorised ``exp``, ``sinh`` of the (usually small) half-difference from its Taylor
        series: about half the time of numpy's float32 ``cosh`` and ``sinh``. Where float32 would
        overflow (``|new + old| / 2`` above ~88, a dynamic range beyond 1e38), those pixels
        are computed in float64.
        """
        new = np.asarray(new, dtype=np.float32)
        old = np.asarray(old, dtype=np.float32)
        half = np.float32(0.5)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            # cosh from one vectorised exp (no cancellation: a sum of positives)
            out = np.exp((new + old) * half)
            out += np.reciprocal(out)
            # sinh of the half-difference: a Taylor series where it is small (the usual
            # denoising change; exact 0 stays 0), numpy's sinh where it is not
            d = (new - old) * half
            d2 = d * d
            s = d2 * np.float32(1.0 / 120.0)
            s += np.float32(1.0 / 6.0)
            s *= d2
            s += np.float32(1.0)
            s *= d
            big = np.abs(d) > _TAYLOR_MAX
            if big.any():
                s[big] = np.sinh(d[big])
            out *= s
            out *= np.float32(self.scale)
        bad = ~np.isfinite(out)
        if bad.any():
            a, b = new[bad].astype(np.float64), old[bad].astype(np.float64)
            with np.errstate(over="ignore", invalid="ignore"):
                wide = 2.0 * self.scale * np.cosh((a + b) / 2) * np.sinh((a - b) / 2)
            out[bad] = wide  # inf only where float32 cannot hold the change itself
        return out

    def to_dict(self) -> dict:
        """JSON-ready description (for provenance)."""
        return {"background": [float(b) for b in self.background], "scale": float(self.scale)}


def fit_stretch(image: np.ndarray, *, softening: float = 3.0) -> AstroStretch:
    """Measure the stretch of one whole image.

    Parameters
    ----------
    image : ndarray
        (C, H, W) or (H, W) linear data of any offset, scale and sign; NaN/inf ignored.
    softening : float, optional
        Linear range of the asinh in units of the noise sigma (default 3): the sky noise then
        has a standard deviation of about ``1 / softening`` in network space. It is part of a
        model's contract and is stored in its config.

    Returns
    -------
    AstroStretch
    """
    if not softening > 0:
        msg = f"softening must be > 0, got {softening}"
        raise ValueError(msg)
    image = as_chw(image)
    background = background_level(image)
    sigma = float(np.median(noise_sigma(image)))
    scale = softening * sigma
    # A noiseless or constant frame has sigma 0: fall back to a small fraction of the
    # data's own spread, then of its level, so that the map stays finite and invertible.
    if not scale > 0:
        spread = []
        for channel, bg in zip(image, background, strict=True):
            sample = finite_sample(channel)
            if sample.size:
                spread.append(float(np.percentile(np.abs(sample - bg), 99.5)))
        scale = 1e-3 * max(spread, default=0.0)
    if not scale > 0:
        scale = 1e-6 * max(1.0, float(np.max(np.abs(background))))
    return AstroStretch(background=background, scale=float(scale))
