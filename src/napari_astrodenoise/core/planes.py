"""Mono, colour and Bayer data to the engine's (C, H, W) float32 planes, and back."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PlaneMap:
    """How the caller's array maps to the engine's (C, H, W) planes, and back.

    - mono ``(H, W)``: one plane;
    - ``channel_axis`` given: that axis becomes C (colour when C is 3, otherwise a stack of
      frames denoised one by one);
    - ``bayer=True``: a raw one-shot-colour mosaic ``(H, W)`` is split into its four
      colour sub-planes (half size, padded by mirroring the row or column of the same colour
      when H or W is odd), so the network never mixes pixels of different filters.
    """

    shape: tuple[int, ...]
    channel_axis: int | None = None
    bayer: bool = False

    @classmethod
    def of(cls, image: np.ndarray, channel_axis: int | None, bayer: bool) -> PlaneMap:
        """Check the image against the options and describe it."""
        shape = np.shape(image)
        check_real(image)
        if channel_axis is not None and (
            not isinstance(channel_axis, int | np.integer) or isinstance(channel_axis, bool)
        ):
            msg = f"channel_axis must be a whole number or None, got {channel_axis!r}"
            raise ValueError(msg)
        if bayer and (channel_axis is not None or len(shape) != 2 or min(shape) < 2):
            msg = f"bayer=True needs a 2-D raw mosaic of at least 2x2, got shape {shape}"
            raise ValueError(msg)
        if channel_axis is None and len(shape) != 2:
            msg = (
                f"a mono image must be 2-D (H, W), got shape {shape}; "
                "for colour or a stack pass channel_axis "
                "(FITS cubes are (3, H, W): channel_axis=0)"
            )
            raise ValueError(msg)
        if channel_axis is not None and len(shape) != 3:
            msg = f"with channel_axis the image must be 3-D, got shape {shape}"
            raise ValueError(msg)
        if channel_axis is not None and not -3 <= channel_axis <= 2:
            msg = f"channel_axis must be -3..2 for a 3-D image, got {channel_axis}"
            raise ValueError(msg)
        if min(shape) < 1:
            msg = f"image has no pixels (shape {shape})"
            raise ValueError(msg)
        if channel_axis is not None:
            _check_channel_axis(shape, int(channel_axis))
        return cls(tuple(shape), None if channel_axis is None else int(channel_axis), bool(bayer))

    @property
    def plane_shape(self) -> tuple[int, int]:
        """(H, W) of one image plane in the caller's array."""
        if self.channel_axis is None:
            return self.shape
        return tuple(n for i, n in enumerate(self.shape) if i != self.channel_axis % 3)

    def to_planes(self, image: np.ndarray) -> np.ndarray:
        """Caller's array -> (C, H', W') float32 (a view where possible)."""
        image = np.asarray(image)
        if self.bayer:
            h, w = image.shape
            even = np.pad(image, ((0, h % 2), (0, w % 2)), mode="reflect")
            h2, w2 = even.shape[0] // 2, even.shape[1] // 2
            chw = even.reshape(h2, 2, w2, 2).transpose(1, 3, 0, 2).reshape(4, h2, w2)
        elif self.channel_axis is None:
            chw = image[np.newaxis]
        else:
            chw = np.moveaxis(image, self.channel_axis, 0)
        return chw.astype(np.float32, copy=False)

    def from_planes(self, chw: np.ndarray) -> np.ndarray:
        """(C, H', W') planes -> the caller's layout."""
        if self.bayer:
            _, h2, w2 = chw.shape
            h, w = self.shape
            return chw.reshape(2, 2, h2, w2).transpose(2, 0, 3, 1).reshape(2 * h2, 2 * w2)[:h, :w]
        if self.channel_axis is None:
            return chw[0]
        return np.moveaxis(chw, 0, self.channel_axis)

    def mask_to_planes(self, mask: np.ndarray) -> np.ndarray:
        """An (H, W) mask of the caller's image -> broadcastable against the planes."""
        return self.to_planes(mask) if self.bayer else np.asarray(mask, np.float32)[np.newaxis]

    def measure_star_mask(self, planes: np.ndarray) -> np.ndarray:
        """Default soft star mask of the caller's image, (H, W)."""
        from napari_astrodenoise.core.starmask import star_mask

        axis = None if self.channel_axis is None else self.channel_axis % 3
        return star_mask(self.from_planes(planes), channel_axis=axis)


def is_dask_array(image: object) -> bool:
    """Whether ``image`` is a dask array (dask is not imported when it is not loaded)."""
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(image, da.Array)


def check_real(image: np.ndarray) -> None:
    """Refuse data that are not real numbers (complex, boolean, text, objects)."""
    dtype = np.asarray(image).dtype if not hasattr(image, "dtype") else image.dtype
    if dtype.kind == "c":
        msg = (
            f"complex data ({dtype}) cannot be denoised: pass the real part (image.real) "
            "or the magnitude (np.abs(image))"
        )
        raise ValueError(msg)
    if dtype.kind not in "iuf":
        msg = f"image must hold real numbers, got dtype {dtype}"
        raise ValueError(msg)


def _check_channel_axis(shape: tuple[int, ...], channel_axis: int) -> None:
    """Refuse a channel axis longer than a side of the picture: it is not the data's."""
    axis = channel_axis % 3
    n = shape[axis]
    sides = [m for i, m in enumerate(shape) if i != axis]
    if n > min(sides):
        msg = (
            f"channel_axis={channel_axis} does not match an image of shape {shape}: it would "
            f"make {n} planes of {sides[0]} x {sides[1]} pixels; the channel axis is the "
            "short one (FITS cubes are (3, H, W): channel_axis=0; napari rgb (H, W, 3): -1)"
        )
        raise ValueError(msg)
