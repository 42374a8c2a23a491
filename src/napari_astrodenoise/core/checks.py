"""Warnings about images that will not denoise well: tiny, constant or mostly NaN."""

from __future__ import annotations

import numpy as np

#: below this edge (px) the network sees too little around each pixel to tell noise from signal
SMALL_EDGE = 64
#: above this fraction of non-finite pixels the noise statistics rest on few pixels
MOSTLY_NAN = 0.5


def image_warnings(image: np.ndarray, *, channel_axis: int | None = None) -> list[str]:
    """What a user should know before denoising ``image``, one sentence each; [] if nothing.

    Parameters
    ----------
    image : ndarray
        (H, W), (N, H, W), or colour with its channels on ``channel_axis``.
    channel_axis : int, optional
        Axis of the colour channels; None when there is none.

    Returns
    -------
    list of str
        Warnings (not errors: the engine still runs) for an image under ``SMALL_EDGE``
        pixels on a side, with no finite pixel, with more than half its pixels NaN or
        inf, or with one value everywhere.
    """
    data = np.asarray(image)
    if channel_axis is not None:
        data = np.moveaxis(data, channel_axis, 0)
    h, w = data.shape[-2:]
    out = []
    if min(h, w) < SMALL_EDGE:
        out.append(
            f"the image is only {h} x {w} px: the model needs at least {SMALL_EDGE} px on a "
            "side to tell noise from signal, so expect little change"
        )
    finite = np.isfinite(data)
    share = 1.0 - float(finite.mean()) if data.size else 1.0
    if share >= 1.0:
        out.append("every pixel is NaN or inf: there is nothing to denoise")
        return out
    if share > MOSTLY_NAN:
        out.append(
            f"{100 * share:.0f} % of the pixels are NaN or inf: they are kept as they are, "
            "and the noise is measured on the rest"
        )
    values = data[finite]
    if values.min() == values.max():
        out.append(f"the image is constant ({values.min():g} everywhere): nothing to denoise")
    return out
