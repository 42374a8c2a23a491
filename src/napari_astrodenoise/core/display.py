"""The display stretch of linear data: a black point, a white point and a gamma; data untouched.

An auto-stretch of the screen-transfer-function kind (PixInsight's STF, Siril's autostretch),
reduced to what an image viewer applies to a layer without copying it: values below the
black point are black, above the white point white, and in between ``t ** gamma`` with
``t`` the position between the two. The rule:

- the black point lies ``shadows`` robust sigmas below the sky (the median);
- the white point is a high percentile of the finite pixels, so a few saturated cores do
  not squash the rest;
- the gamma takes the sky to ``target`` grey, so faint structure above it is lifted.

Colour is linked: one black point, white point and gamma for all channels, so every channel
goes through the same curve and no channel is boosted against another. The black point sits
under the brightest channel's sky, so a sky that is brighter in one channel (light pollution, a
camera's colour balance) is taken down to near black instead of filling the frame with that
channel's colour. A viewer that draws a colour image with one range per layer (napari)
cannot subtract a different sky from each channel without changing the data, so that is as
neutral as a display-only stretch can make it.

No viewer is imported here: :class:`DisplayStretch` holds the numbers, and `render` applies
them the way a viewer does, for pictures and tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: largest number of pixels the statistics read (a regular subsample)
_MAX_SAMPLES = 1 << 20
_MAD_TO_SIGMA = 1.482602218505602
#: the gamma range a viewer's control offers (napari's slider: 0.2 to 2)
GAMMA_RANGE = (0.2, 2.0)


@dataclass(frozen=True)
class DisplayStretch:
    """How to show one image: ``contrast_limits`` (black, white) and ``gamma``.

    Attributes
    ----------
    contrast_limits : tuple of float
        Black and white points, in the data's units (black < white).
    gamma : float
        Exponent applied between them; below 1 lifts the faint end.
    """

    contrast_limits: tuple[float, float]
    gamma: float

    def render(self, data: np.ndarray) -> np.ndarray:
        """What a viewer shows: float32 brightness in 0..1, NaN shown as 0; same shape.

        ``clip((data - black) / (white - black), 0, 1) ** gamma``, as napari draws an image
        layer with these contrast limits and gamma.
        """
        black, white = self.contrast_limits
        with np.errstate(invalid="ignore"):
            t = (np.asarray(data, dtype=np.float32) - black) / np.float32(white - black)
        t = np.nan_to_num(np.clip(t, 0.0, 1.0), nan=0.0)
        return np.power(t, np.float32(self.gamma), dtype=np.float32)

    def layer_kwargs(self) -> dict[str, object]:
        """``{"contrast_limits": ..., "gamma": ...}`` for an image layer."""
        return {"contrast_limits": self.contrast_limits, "gamma": self.gamma}


def display_stretch(
    data: np.ndarray,
    *,
    channel_axis: int | None = None,
    shadows: float = 2.8,
    target: float = 0.2,
    white_percentile: float = 99.9,
) -> DisplayStretch | None:
    """Measure the auto-stretch of one image (linked colour channels).

    Parameters
    ----------
    data : ndarray
        Linear data, any offset and scale: (H, W), (N, H, W) stacks, or colour with its
        channels on ``channel_axis``; NaN and inf ignored.
    channel_axis : int, optional
        Axis of the colour channels (e.g. -1 for (H, W, 3)); None: one channel.
    shadows : float, optional
        Black point, in robust sigmas below the (brightest channel's) sky.
    target : float, optional
        Brightness of the sky on screen, 0..1.
    white_percentile : float, optional
        White point, as a percentile of the finite pixels.

    Returns
    -------
    DisplayStretch or None
        None when the image has fewer than two distinct finite values (nothing to show).
    """
    if not 0 < target < 1:
        msg = f"target must be between 0 and 1, got {target}"
        raise ValueError(msg)
    channels = _channel_samples(np.asarray(data), channel_axis)
    pooled = np.concatenate(channels) if channels else np.empty(0)
    if pooled.size < 2 or not pooled.min() < pooled.max():
        return None
    sky = np.array([np.median(c) for c in channels])
    sigma = np.array(
        [_MAD_TO_SIGMA * np.median(np.abs(c - m)) for c, m in zip(channels, sky, strict=True)]
    )
    top = float(sky.max())
    white = float(np.percentile(pooled, white_percentile))
    if not white > top:  # a frame that is nearly all sky: the brightest pixel instead
        white = float(pooled.max())
    margin = shadows * float(np.median(sigma))
    if not margin > 0:  # a noiseless frame (a simulation's truth): just under the sky
        margin = 0.01 * (white - top)
    black = max(top - margin, float(pooled.min()))  # no range spent below the data
    if not black < top:
        black = top - margin
    if not black < white:
        return None
    return DisplayStretch((black, white), _gamma(black, white, top, target))


def _gamma(black: float, white: float, sky: float, target: float) -> float:
    """The gamma that shows ``sky`` at ``target`` brightness, within `GAMMA_RANGE`."""
    t = (sky - black) / (white - black)
    gamma = np.log(target) / np.log(t) if 0 < t < 1 else 1.0
    return float(np.clip(gamma, *GAMMA_RANGE))


def _channel_samples(data: np.ndarray, channel_axis: int | None) -> list[np.ndarray]:
    """The finite pixels of each channel, each a regular subsample of its image."""
    planes = [data] if channel_axis is None else list(np.moveaxis(data, channel_axis, 0))
    out = []
    for plane in planes:
        step = max(1, int(np.ceil(np.sqrt(plane.size / _MAX_SAMPLES))))
        sample = plane[..., ::step, ::step].ravel()
        out.append(sample[np.isfinite(sample)].astype(np.float64, copy=False))
    return [c for c in out if c.size]
