"""The torch tile predictor: linear tiles in, the network's change and star mask out.

The only torch code of the inference path. Tiles are stretched with the frame's
:class:`~napari_astrodenoise.core.stretch.AstroStretch`, run through the network (optionally
as a self-ensemble of flips and transposes), and mapped back to the data's units as a
change, so an identity network changes nothing.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_astrodenoise.core.stretch import AstroStretch

if TYPE_CHECKING:
    from napari_astrodenoise.core.weights import LoadedModel

# (transpose, flip y, flip x) of each member, the tile as it is first: 2 adds the mirror
# image, 4 all flips, 8 the flips of the transposed tile as well
_VIEWS = tuple((t, fy, fx) for t in (False, True) for fy in (False, True) for fx in (False, True))
#: tiles per batch when batch_size is None, by device kind
AUTO_BATCH = {"cpu": 4, "mps": 8, "cuda": 16}
#: CPU flags (Linux /proc/cpuinfo) of native bfloat16 arithmetic: AVX512-BF16 and AMX
_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> frozenset[str]:
    """The processor's feature flags as the OS reports them (empty where it does not)."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def bf16_native(device: str, *, flags: frozenset[str] | None = None) -> bool:
    """Whether ``device`` does bfloat16 arithmetic in hardware, as the system reports it.

    A CPU counts when it reports AVX512-BF16 or AMX (elsewhere torch emulates bfloat16, more
    slowly than float32); a CUDA device when torch says it supports bfloat16. MPS and
    anything unknown: no.
    """
    kind = device.split(":")[0]
    if kind == "cpu":
        return bool(_BF16_CPU_FLAGS & (cpu_flags() if flags is None else flags))
    if kind == "cuda":
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return False


def resolve_precision(precision: str, device: str) -> str:
    """The number format the network runs in: ``"fp32"`` or ``"bf16"``.

    ``"auto"`` is ``"bf16"`` where the device does bfloat16 in hardware
    (:func:`bf16_native`), ``"fp32"`` elsewhere; ``"fp32"`` and ``"bf16"`` are taken as
    given. Only the network runs in it: the stretch, its inverse, the blending of tiles and
    every safeguard stay float32.
    """
    if precision == "auto":
        return "bf16" if bf16_native(device) else "fp32"
    if precision not in ("fp32", "bf16"):
        msg = f"precision must be one of 'auto', 'fp32', 'bf16', got {precision!r}"
        raise ValueError(msg)
    return precision


def as_loaded(model: str | os.PathLike | LoadedModel, device: str) -> LoadedModel:
    """A model ready on ``device``: loaded by name or path, or a loaded one moved there."""
    from napari_astrodenoise.core.weights import LoadedModel, load_model, resolve_device

    if isinstance(model, LoadedModel):
        wanted = resolve_device(device)
        if device != "auto" and wanted != model.device:
            model.module.to(wanted)
            model.device = wanted
        return model
    return load_model(model, device=device)


class TilePredictor:
    """Linear tiles (B, C, Ht, Wt) -> the network's change plus mask (B, C + 1, Ht, Wt).

    The change is ``inverse(network(y)) - inverse(y)`` in the data's units (zero for an
    identity network); the last channel is the star-mask probability.

    With ``ensemble`` > 1 the network also runs on flipped (and, for 8, transposed) copies
    of each tile and the outputs, mapped back, are averaged: the model's own directional
    errors average out, at ``ensemble`` times the cost.

    With ``precision`` ``"bf16"`` the network between its first and last convolutions runs in
    bfloat16 (:meth:`~napari_astrodenoise.core.model.ResUNet.forward`'s ``inner_dtype``);
    its output is float32. ``"auto"`` is
    resolved once, by :func:`resolve_precision`, and kept in ``self.precision``.

    Channels are served in groups the model takes: all of them when C equals the model's
    input channels, otherwise one at a time (a mono channel is repeated to the model's width
    and its outputs averaged). The batch is halved and retried on out-of-memory.

    For a model with a noise channel the tiles carry one more channel, the network-space
    noise map (:func:`~napari_astrodenoise.core.noiselevel.noise_map`), which is passed to
    the network with every group and is not part of the output.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        stretch: AstroStretch,
        channels: int,
        batch_size: int,
        ensemble: int = 1,
        precision: str = "fp32",
    ):
        self.loaded = loaded
        self.views = _VIEWS[:ensemble]
        self.precision = resolve_precision(precision, loaded.device)
        self.stretch = stretch
        self.model_channels = loaded.module.config.in_channels
        self.mask_head = loaded.module.config.mask_head
        self.noise_channel = loaded.module.config.noise_channel
        same = channels == self.model_channels
        self.groups = [list(range(channels))] if same else [[c] for c in range(channels)]
        self.batch_size = batch_size

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        noise = None
        if self.noise_channel:
            tiles, noise = tiles[:, :-1], tiles[:, -1:]
        b, c, t, u = tiles.shape
        out = np.empty((b, c + 1, t, u), dtype=np.float32)
        mask = np.zeros((b, t, u), dtype=np.float64)
        for group in self.groups:
            x = tiles[:, group]
            stretch = AstroStretch(self.stretch.background[group], self.stretch.scale)
            y = stretch.forward(x)
            y_hat, m = self._network(y, noise)
            out[:, group] = stretch.change(y_hat, y)
            mask += m
        out[:, c] = mask / len(self.groups)
        return out

    def _network(self, y: np.ndarray, noise: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        import torch

        start = 0
        outputs, masks = [], []
        while start < len(y):
            chunk = y[start : start + self.batch_size]
            noise_chunk = None if noise is None else noise[start : start + self.batch_size]
            try:
                img, mask = self._forward(torch, chunk, noise_chunk)
            except (torch.cuda.OutOfMemoryError, RuntimeError) as err:
                if "out of memory" not in str(err).lower() or self.batch_size == 1:
                    raise
                self.batch_size //= 2
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            outputs.append(img)
            masks.append(mask)
            start += len(chunk)
        return np.concatenate(outputs), np.concatenate(masks)

    def _forward(
        self, torch: Any, chunk: np.ndarray, noise: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(chunk)).to(self.loaded.device)
        g = x.shape[1]
        n = self.model_channels
        if g != n:
            x = x.expand(-1, n, -1, -1)
        if noise is not None:
            noise = torch.from_numpy(np.ascontiguousarray(noise)).to(self.loaded.device)
        net_in = x if noise is None else torch.cat([x, noise], dim=1)
        change = mask_sum = None
        inner = torch.bfloat16 if self.precision == "bf16" else None
        with torch.inference_mode():
            for transpose, flip_y, flip_x in self.views:
                dims = [d for d, f in ((-2, flip_y), (-1, flip_x)) if f]
                v = net_in.transpose(-1, -2) if transpose else net_in
                v = v.flip(dims) if dims else v
                v = v.contiguous(memory_format=torch.channels_last)
                o = self.loaded.module(v, inner_dtype=inner).float()
                o = o.flip(dims) if dims else o
                o = o.transpose(-1, -2) if transpose else o
                # sum the changes, not the outputs: an identity network stays exact
                d, m = o[:, :n] - x, o[:, n:]
                change = d if change is None else change + d
                mask_sum = m if mask_sum is None else mask_sum + m
        k = len(self.views)
        img = x + change / k
        if g != n:
            img = img.mean(dim=1, keepdim=True)
        if self.mask_head:
            mask = torch.sigmoid(mask_sum[:, 0] / k)
        else:
            mask = torch.zeros_like(img[:, 0])
        return img.cpu().numpy(), mask.cpu().numpy()
