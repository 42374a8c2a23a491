"""Training data for fine-tuning: registered sources, pairs, and random tiles drawn from them.

Nothing here builds tiles of a whole frame: each step cuts ``batch`` random tiles from the
registered frames, so memory grows with the tile size, not with the frames. The top rows of
every frame are for training and a strip at the bottom is held out for validation, the same
strip in every frame.

A tile is drawn from one colour plane (a mono frame's only plane, or one of a mosaic's four)
and goes to the network as a mono plane, as inference feeds it. What a tile carries:

- ``net``: the input in network space, ``asinh((x - background) / scale)`` with the input
  frame's stretch (measured on the whole frame, as inference measures it);
- ``target``: the target in LINEAR units (the other frame of the pair, or for a single frame
  its Neighbor2Neighbor sub-sample), NaN replaced by 0;
- ``weight``: ``1 / (variance * (1 + z^2))``, 0 where a pixel is not finite. ``variance``
  is the target's noise from its noise level function at the level of the INPUT (a 3 x 3
  box mean), ``z = (level - background) / scale`` the input level in stretch units, so
  ``1 / (1 + z^2)`` is the squared slope of the asinh there: the balance. With ``1 /
  variance`` alone a bright star's core, where a small change in network space is a large
  one in linear units, pulls hundreds of times harder on the network than the sky and the
  sky learns slowly; balanced, each pixel pulls on the network-space output about as it
  would in the stretched loss, while the target stays linear. Neither factor depends on the
  target's own noise, so the weighted squared error's optimum is ``E[target | input]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import uniform_filter

from napari_astrodenoise.core.noiselevel import NoiseProfile, noise_sigma, prefit_noise_profile
from napari_astrodenoise.core.stretch import AstroStretch, fit_stretch

#: Neighbor2Neighbor: the 8 ordered pairs of edge-adjacent pixels of a 2 x 2 cell
#: (cell index 2 * dy + dx)
_NEIGHBOURS = np.array([(0, 1), (1, 0), (0, 2), (2, 0), (1, 3), (3, 1), (2, 3), (3, 2)])


@dataclass
class Source:
    """One registered frame (or half-stack) that tiles are cut from.

    Attributes
    ----------
    planes : ndarray
        (P, h, w) float32 linear planes, cropped and level-matched, NaN kept.
    stretch : AstroStretch
        Measured on the whole of ``planes``, as inference does.
    profile : NoiseProfile
        Its noise level function (fitted on ``planes`` alone).
    floor : ndarray
        (P,) smallest variance a weight may use (a quarter of the white-noise variance).
    name : str
    """

    planes: np.ndarray
    stretch: AstroStretch
    profile: NoiseProfile
    floor: np.ndarray
    name: str

    @classmethod
    def of(cls, planes: np.ndarray, name: str, *, softening: float) -> Source:
        """Measure the stretch and noise of ``planes``."""
        planes = np.ascontiguousarray(planes, dtype=np.float32)
        floor = 0.25 * noise_sigma(planes) ** 2
        return cls(
            planes,
            fit_stretch(planes, softening=softening),
            prefit_noise_profile(planes),
            floor,
            name,
        )


@dataclass
class Batch:
    """Tiles of one step, numpy float32, (B, 1, T, T) unless said otherwise.

    ``background`` and ``scale`` are (B,): the input's stretch, to take the network's
    output back to linear units. ``sub1``/``sub2`` (single frame only) are (B, T/2, T/2)
    flat indices into the T x T tile of the two Neighbor2Neighbor sub-samples; ``net`` is
    then the first sub-sample and ``full`` the whole tile in network space.
    """

    net: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    background: np.ndarray
    scale: np.ndarray
    full: np.ndarray | None = None
    sub1: np.ndarray | None = None
    sub2: np.ndarray | None = None


@dataclass
class TileSampler:
    """Draws tiles of (input, target) pairs from sources.

    Attributes
    ----------
    sources : list of Source
    pairs : list of tuple of int
        Ordered (input, target) source indices; ``(k, k)`` with ``single``.
    tile : int
        Tile side in plane pixels (a multiple of 16).
    split : int
        First validation row: training tiles lie in rows ``[0, split)``, validation tiles
        in ``[split, h)``.
    single : bool
        Neighbor2Neighbor sub-sampling of one frame instead of pairs.
    """

    sources: list[Source]
    pairs: list[tuple[int, int]]
    tile: int
    split: int
    single: bool = False

    @property
    def plane_shape(self) -> tuple[int, int]:
        return self.sources[0].planes.shape[1:]

    def sample(self, rng: np.random.Generator, n: int, *, validation: bool = False) -> Batch:
        """``n`` random tiles; training tiles are flipped and transposed at random."""
        h, w = self.plane_shape
        t = self.tile
        lo, hi = (self.split, h - t) if validation else (0, self.split - t)
        draws = []
        for _ in range(n):
            i, j = self.pairs[int(rng.integers(len(self.pairs)))]
            p = int(rng.integers(self.sources[i].planes.shape[0]))
            y = int(rng.integers(lo, hi + 1))
            x = int(rng.integers(0, w - t + 1))
            view = (0, 0, 0) if validation else tuple(int(v) for v in rng.integers(0, 2, 3))
            draws.append((i, j, p, y, x, view))
        if self.single:
            return self._single_batch(rng, draws)
        return self._pair_batch(draws)

    def _cut(self, k: int, p: int, y: int, x: int, view: tuple[int, int, int]) -> np.ndarray:
        tile = self.sources[k].planes[p, y : y + self.tile, x : x + self.tile]
        transpose, flip_y, flip_x = view
        if transpose:
            tile = tile.T
        if flip_y:
            tile = tile[::-1]
        if flip_x:
            tile = tile[:, ::-1]
        return np.ascontiguousarray(tile)

    def _pair_batch(self, draws: list) -> Batch:
        parts = [[] for _ in range(5)]
        for i, j, p, y, x, view in draws:
            x_tile = self._cut(i, p, y, x, view)
            t_tile = self._cut(j, p, y, x, view)
            for store, value in zip(parts, self._prepare(i, j, p, x_tile, t_tile), strict=True):
                store.append(value)
        net, target, weight, bg, scale = (np.stack(v) for v in parts)
        return Batch(net[:, None], target[:, None], weight[:, None], bg, scale)

    def _prepare(
        self, i: int, j: int, p: int, x_tile: np.ndarray, t_tile: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.float32, np.float32]:
        """(net input, linear target, weight, background, scale) of one tile pair."""
        src, dst = self.sources[i], self.sources[j]
        bg = float(src.stretch.background[p])
        ok = np.isfinite(x_tile) & np.isfinite(t_tile)
        filled = np.where(np.isfinite(x_tile), x_tile, np.float32(bg))
        net = AstroStretch(np.array([bg]), src.stretch.scale).forward(filled[None])[0]
        level = uniform_filter(filled, size=3, mode="nearest")
        var = np.square(dst.profile.sigma(p, level))
        np.maximum(var, np.float32(dst.floor[p]), out=var)
        z = (level - np.float32(bg)) / np.float32(src.stretch.scale)
        var *= 1.0 + z * z  # the balance: the stretch's slope at the input level, squared
        weight = np.where(ok, 1.0 / var, 0.0).astype(np.float32)
        target = np.where(ok, t_tile, 0.0).astype(np.float32)
        return net, target, weight, np.float32(bg), np.float32(src.stretch.scale)

    def _single_batch(self, rng: np.random.Generator, draws: list) -> Batch:
        t2 = self.tile // 2
        cells = np.arange(t2 * t2)
        cy, cx = np.divmod(cells, t2)
        corner = (2 * cy) * self.tile + 2 * cx  # flat index of each cell's top-left pixel
        offset = np.array([0, 1, self.tile, self.tile + 1])  # cell index 2 * dy + dx
        nets, fulls, targets, weights, bgs, scales, s1s, s2s = ([] for _ in range(8))
        for i, _j, p, y, x, view in draws:
            tile = self._cut(i, p, y, x, view)
            choice = _NEIGHBOURS[rng.integers(len(_NEIGHBOURS), size=cells.size)]
            s1 = (corner + offset[choice[:, 0]]).reshape(t2, t2)
            s2 = (corner + offset[choice[:, 1]]).reshape(t2, t2)
            flat = tile.ravel()
            net, target, weight, bg, scale = self._prepare(i, i, p, flat[s1], flat[s2])
            bg_arr = np.array([bg], dtype=np.float64)
            full_tile = np.where(np.isfinite(tile), tile, np.float32(bg))
            full = AstroStretch(bg_arr, float(scale)).forward(full_tile[None])[0]
            for store, value in zip(
                (nets, fulls, targets, weights, bgs, scales, s1s, s2s),
                (net, full, target, weight, bg, scale, s1, s2),
                strict=True,
            ):
                store.append(value)
        return Batch(
            np.stack(nets)[:, None],
            np.stack(targets)[:, None],
            np.stack(weights)[:, None],
            np.stack(bgs),
            np.stack(scales),
            np.stack(fulls)[:, None],
            np.stack(s1s),
            np.stack(s2s),
        )


def tile_layout(
    plane_shape: tuple[int, int], *, tile_size: int, validation_fraction: float
) -> tuple[int, int]:
    """(tile side, first validation row) for planes of ``plane_shape``.

    The tile shrinks (in steps of 16, down to 32) to fit the planes; the validation strip
    is ``validation_fraction`` of the rows, and at least one tile high.
    """
    h, w = plane_shape
    tile = min(tile_size, (h // 2) // 16 * 16, w // 16 * 16)
    if tile < 32:
        msg = f"the registered frames' planes are {h}x{w} px: too small for 32-px tiles"
        raise ValueError(msg)
    held = max(tile, int(np.ceil(validation_fraction * h)))
    split = h - held
    if split < tile:
        split = h - tile
    return tile, split


def half_stacks(planes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Means of the even-numbered and of the odd-numbered frames' planes, NaN ignored."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels stay NaN
        even = np.nanmean(np.stack(planes[0::2]), axis=0).astype(np.float32)
        odd = np.nanmean(np.stack(planes[1::2]), axis=0).astype(np.float32)
    return even, odd
