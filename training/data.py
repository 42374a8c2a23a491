"""Training tiles in network space: simulated scenes, clean real FITS frames and noisy/clean pairs.

Every sample is a pair of float32 tensors, ``input`` (3, T, T) and ``target`` (4, T, T), made
the way inference sees data:

1. a clean linear tile (C, T, T), C = 1 or 3, from one of three sources, drawn per sample:

   - ``sim``: a scene from :func:`napari_astrodenoise.simulate.sky.simulate_scene`, mono or
     colour, of a random preset (the ``sky_presets`` weights);
   - ``real``: a tile cut from a clean real FITS frame (``fits_dir``), optionally binned
     ``real_bin`` x ``real_bin`` first, with a random flip / 90-degree rotation and flux scale;
   - ``paired``: the same tile of ``paired_dir/noisy/NAME.fits`` and ``paired_dir/clean/NAME
     .fits`` (real noise, no synthetic noise added), flipped / rotated / scaled alike;

2. noise from :func:`napari_astrodenoise.simulate.noise.random_noise` (``sim`` and ``real``), which
   gives the noisy input and the target (the clean tile, or the input itself for the
   identity and low-noise pairs). Real frames carry their own noise: their input noise is
   topped up with white Gaussian noise to at least ``k`` times the frame's own noise, ``k``
   drawn from ``real_noise_floor``, so that the target is always much cleaner than the input;
3. the stretch :func:`napari_astrodenoise.core.stretch.fit_stretch` fitted on the *noisy*
   tile and applied to both the input and the target, as at inference (where it is fitted on
   the whole noisy frame);
4. a soft star mask of the clean target (:func:`napari_astrodenoise.core.starmask.star_mask`);
   see :func:`target_star_mask` for the detection noise that makes it independent of how
   noiseless the target is;
5. mono tiles replicated to three channels: ``input`` is the stretched noisy tile, ``target``
   the stretched target then the mask;
6. with ``noise_map`` (for a model with a noise channel), one more input channel: the
   network-space noise map of the noisy tile
   (:func:`napari_astrodenoise.core.noiselevel.noise_map` of
   :func:`~napari_astrodenoise.core.noiselevel.prefit_noise_profile`), as at inference
   (where both are measured on the whole frame).

Randomness comes only from seeds: sample ``i`` of epoch ``e`` of a split is drawn from
``np.random.SeedSequence([seed, split, e, i])``, so it does not depend on data-loader workers,
batch size or on what was drawn before, and a run resumed at an epoch boundary sees exactly
the tiles of an uninterrupted one.

Train/validation split (``val_fraction``, 0.2 by default): simulated scenes by scene id (a
hash of the seed and the id decides, so about 20 % of the ids are validation scenes and
never appear in training); real frames and pairs by region (a corner block of about 20 % of
each frame's area is validation; the corner follows from the seed and is the same in every
file, so co-registered files such as the SDSS bands and their colour cube share their split).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from napari_astrodenoise.core.noiselevel import (
    noise_map,
    noise_sigma,
    prefit_noise_profile,
)
from napari_astrodenoise.core.starmask import star_mask
from napari_astrodenoise.core.stretch import (
    AstroStretch,
    fit_stretch,
)
from napari_astrodenoise.simulate._random import log_uniform as _log_uniform
from napari_astrodenoise.simulate.noise import NoiseConfig, random_noise, reference_level
from napari_astrodenoise.simulate.sky import SkyConfig, simulate_scene
from training.config_tables import checked_table

__all__ = [
    "REPO_ROOT",
    "DataConfig",
    "Frame",
    "RegionSplit",
    "TileDataset",
    "TileSample",
    "bin_image",
    "load_fits_folder",
    "load_frames",
    "load_paired_folder",
    "read_fits_image",
    "scene_split",
    "target_star_mask",
]

#: The repository root; relative paths in a configuration are taken from here.
REPO_ROOT = Path(__file__).resolve().parents[1]
SPLITS = ("train", "val")
SOURCES = ("sim", "real", "paired")
_SPLIT_CODE = {"train": 0, "val": 1}
_SCENE_TAG = 0x5CE7E  # seed-sequence tags keep the scene and split streams apart
_SPLIT_TAG = 0x5B117
_FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz", ".fz")


# --------------------------------------------------------------------------------------------
# configuration


@dataclass
class DataConfig:
    """Where tiles come from and how they are made (the ``[data]`` table of a config file).

    Attributes
    ----------
    tile : int
        Tile edge in pixels (a multiple of 8, at least 16). 256 on a GPU; the quick CPU
        configuration uses 128, where a step costs four times less and stars and noise
        look the same (the model is fully convolutional and infers on any tile size).
    softening : float
        The asinh softening of the stretch (noise sigmas); stored with the exported model.
    seed : int
        Seed of every draw and of the split.
    train_stream : int
        Extra seed for the training tiles alone (0: none). The split and the validation
        tiles stay those of ``seed``, so a fine-tune with another stream keeps its
        predecessor's validation set and sees training tiles the predecessor never drew.
    val_fraction : float
        Share of scene ids and of each frame's area kept for validation (default 0.2).
    sim_weight, real_weight, paired_weight : float
        Relative frequency of the three sources; a source without data is left out and the
        others renormalised.
    p_mono : float
        Probability that a simulated scene is mono (then replicated to three channels).
    sky_presets : dict
        Weights of :meth:`SkyConfig.preset` names for simulated scenes.
    sky : dict
        Field overrides for every ``SkyConfig`` (e.g. ``{"saturation": 65535}``).
    fits_dir : str or None
        Folder of clean real FITS frames (mono (H, W) or colour (3, H, W)); relative paths
        are taken from the repository root. Default ``../shared/data/fits/train``; a missing
        folder is skipped with a warning.
    real_bin : int
        Block-average real frames ``real_bin`` x ``real_bin`` when loaded (default 2: halves
        their own white noise, so targets are cleaner than the noise added).
    real_noise_floor : tuple of float
        Real tiles' input noise is at least ``k`` x the frame's own noise, ``k`` log-uniform
        in this range (white Gaussian noise is added on top of the drawn noise where needed).
    flux_scale_range : tuple of float
        Log-uniform flux scale applied to every clean tile (all sources).
    paired_dir : str or None
        Folder with ``noisy/`` and ``clean/`` FITS files of the same names, or None.
    paired_bin : int
        Binning of paired frames (default 1: real noise is kept as it is).
    mask : dict
        Keyword arguments of ``star_mask`` (``threshold``, ``dilation``, ``feather``, ...).
    mask_noise_fraction : float
        Detection noise of the target's star mask, in units of the noisy tile's noise
        (default 0.5): see :func:`target_star_mask`.
    mask_noise_floor : float
        Smallest detection noise, relative to the tile's reference level (default 0.003),
        for identity pairs of noiseless scenes.
    noise_map : bool
        Append the network-space noise map to the input (default False); must match the
        model's ``noise_channel``.
    stretch_jitter : float
        Training tiles only: the stretch's scale (fitted on the noisy tile) is multiplied by
        a log-uniform factor in ``[1 / stretch_jitter, stretch_jitter]`` before input and
        target enter network space, so that the network learns to remove noise whose
        network-space amplitude is not the one the fit implies, as on a frame whose noise
        the engine misestimates (default 1: none, and no random draw). The star mask keeps
        the fitted scale; validation tiles are never jittered.
    channel_gain : float
        Training colour tiles only: each channel of the clean tile is multiplied by its own
        log-uniform factor in ``[1 / channel_gain, channel_gain]``, then divided by their
        geometric mean (the tile's overall level keeps ``flux_scale_range``; a factor can
        end up at ``channel_gain ** (4 / 3)`` with three channels) before the
        noise is drawn, as an uncalibrated camera's white balance or a mix of filters
        would, so that the network cannot learn the simulator's star colours as a prior
        and pull a real star's colour towards them (default 1: none, and no random draw).
        Validation tiles are never rebalanced.
    noise : dict
        Fields of :class:`~napari_astrodenoise.simulate.noise.NoiseConfig` (the noise mixture).
    """

    tile: int = 128
    softening: float = 3.0
    seed: int = 0
    train_stream: int = 0
    val_fraction: float = 0.2
    sim_weight: float = 0.8
    real_weight: float = 0.2
    paired_weight: float = 0.0
    p_mono: float = 0.4
    sky_presets: dict = field(
        default_factory=lambda: {
            "mixed": 0.5,
            "nebula": 0.15,
            "cluster": 0.1,
            "galaxies": 0.1,
            "sparse": 0.1,
            "stars_only": 0.05,
        }
    )
    sky: dict = field(default_factory=dict)
    fits_dir: str | None = "../shared/data/fits/train"
    real_bin: int = 2
    real_noise_floor: tuple[float, float] = (3.0, 10.0)
    flux_scale_range: tuple[float, float] = (0.1, 10.0)
    paired_dir: str | None = None
    paired_bin: int = 1
    mask: dict = field(default_factory=dict)
    mask_noise_fraction: float = 0.5
    mask_noise_floor: float = 0.003
    noise_map: bool = False
    stretch_jitter: float = 1.0
    channel_gain: float = 1.0
    noise: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if int(self.tile) != self.tile or self.tile < 16 or self.tile % 8:
            msg = f"tile must be a multiple of 8 and at least 16, got {self.tile}"
            raise ValueError(msg)
        if not 0.0 < self.val_fraction < 1.0:
            msg = f"val_fraction must be in (0, 1), got {self.val_fraction}"
            raise ValueError(msg)
        for name in ("sim_weight", "real_weight", "paired_weight", "p_mono"):
            if not getattr(self, name) >= 0:
                msg = f"{name} must be >= 0, got {getattr(self, name)}"
                raise ValueError(msg)
        if self.p_mono > 1:
            msg = f"p_mono must be a probability, got {self.p_mono}"
            raise ValueError(msg)
        for name in ("real_bin", "paired_bin"):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 1:
                msg = f"{name} must be an integer >= 1, got {getattr(self, name)}"
                raise ValueError(msg)
        for name in ("real_noise_floor", "flux_scale_range"):
            lo, hi = (float(v) for v in getattr(self, name))
            if not 0 < lo <= hi:
                msg = f"{name} must be (low, high) with 0 < low <= high, got {(lo, hi)}"
                raise ValueError(msg)
            setattr(self, name, (lo, hi))
        for name in ("stretch_jitter", "channel_gain"):
            if not 1.0 <= getattr(self, name) < math.inf:
                msg = f"{name} must be finite and >= 1 (1: none), got {getattr(self, name)}"
                raise ValueError(msg)
        if not self.sky_presets or any(w < 0 for w in self.sky_presets.values()):
            msg = f"sky_presets must map preset names to weights >= 0, got {self.sky_presets}"
            raise ValueError(msg)
        for name in self.sky_presets:
            SkyConfig.preset(name, **self.sky)  # fails early on an unknown name or field
        NoiseConfig(**self.noise)

    @classmethod
    def from_dict(cls, table: Mapping[str, Any]) -> DataConfig:
        """Build from a config-file table; unknown keys are an error naming them."""
        return cls(**checked_table(table, "data", cls))

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def noise_config(self) -> NoiseConfig:
        return NoiseConfig(**self.noise)


def resolve_path(path: str | Path | None) -> Path | None:
    """A config path: absolute as given, relative ones from the repository root."""
    if path is None or str(path) == "":
        return None
    p = Path(path).expanduser()
    return p if p.is_absolute() else (REPO_ROOT / p).resolve()


# --------------------------------------------------------------------------------------------
# real frames


def read_fits_image(path: str | Path) -> np.ndarray | None:
    """The first mono or colour image of a FITS file as (C, H, W) float32, or None.

    Read with the package's own reader (``fits_io.read_fits``: BSCALE/BZERO applied, a
    1-plane cube is mono, NAXIS3 = 3 is colour; other stacks are skipped). Non-finite pixels
    are replaced by their channel's median, so that they look like sky (no pixel is NaN in a
    training tile). The FITS row order (row 1 at the bottom) is kept; tiles are flipped at
    random anyway.
    """
    from napari_astrodenoise.fits_io import read_fits

    for image in read_fits(path):
        if image.kind in ("mono", "rgb"):
            arr = np.array(image.data, dtype=np.float32).reshape(-1, *image.data.shape[-2:])
            for channel in arr:
                bad = ~np.isfinite(channel)
                if bad.all():
                    channel[...] = 0.0
                elif bad.any():
                    channel[bad] = np.median(channel[~bad])
            return np.ascontiguousarray(arr)
    return None


def bin_image(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean of ``factor`` x ``factor`` blocks of a (C, H, W) image (edge remainder dropped).

    Averaging keeps the flux per pixel's units (a mean, not a sum) and divides white noise by
    ``factor``; stars become ``factor`` times narrower in pixels.
    """
    if factor == 1:
        return image
    c, h, w = image.shape
    h2, w2 = h // factor * factor, w // factor * factor
    blocks = image[:, :h2, :w2].reshape(c, h2 // factor, factor, w2 // factor, factor)
    return blocks.mean(axis=(2, 4), dtype=np.float64).astype(np.float32)


@dataclass(frozen=True)
class RegionSplit:
    """Where tiles of one frame may be cut, per split: a corner block is for validation.

    Attributes
    ----------
    height, width, tile : int
        Frame and tile sizes.
    val_box : tuple of int or None
        ``(y0, y1, x0, x1)`` of the validation block, or None when the frame is too small to
        hold a validation tile and training tiles besides: then all of it is training data.
    """

    height: int
    width: int
    tile: int
    val_box: tuple[int, int, int, int] | None

    @classmethod
    def build(
        cls, height: int, width: int, tile: int, fraction: float, corner: int
    ) -> RegionSplit:
        """Validation block of about ``fraction`` of the area in corner ``corner`` (0-3).

        The block is near-square, grown where needed to hold one tile (its area can then
        exceed ``fraction``). Training tiles must lie wholly outside the block.
        """
        box = None
        if fraction > 0:
            area = fraction * height * width
            for first in ("h", "w"):
                if first == "h":
                    hv = max(tile, round(math.sqrt(fraction) * height))
                    wv = max(tile, math.ceil(area / hv))
                else:
                    wv = max(tile, round(math.sqrt(fraction) * width))
                    hv = max(tile, math.ceil(area / wv))
                fits_frame = hv <= height and wv <= width
                train_room = height - tile >= hv or width - tile >= wv
                if fits_frame and train_room:
                    y0 = height - hv if corner & 1 else 0
                    x0 = width - wv if corner & 2 else 0
                    box = (y0, y0 + hv, x0, x0 + wv)
                    break
        return cls(height, width, tile, box)

    def has(self, split: str) -> bool:
        """Whether tiles of ``split`` can be cut from this frame."""
        if self.height < self.tile or self.width < self.tile:
            return False
        return split == "train" or self.val_box is not None

    def _outside(self, y: int, x: int) -> bool:
        y0, y1, x0, x1 = self.val_box
        t = self.tile
        return y + t <= y0 or y >= y1 or x + t <= x0 or x >= x1

    def sample(self, rng: np.random.Generator, split: str) -> tuple[int, int]:
        """Top-left corner (y, x) of a random tile of ``split``."""
        if not self.has(split):
            msg = (
                f"no {split} tile of {self.tile} px fits in this {self.height}x{self.width} frame"
            )
            raise ValueError(msg)
        t = self.tile
        if split == "val":
            y0, y1, x0, x1 = self.val_box
            return int(rng.integers(y0, y1 - t + 1)), int(rng.integers(x0, x1 - t + 1))
        for _ in range(10_000):
            y = int(rng.integers(0, self.height - t + 1))
            x = int(rng.integers(0, self.width - t + 1))
            if self.val_box is None or self._outside(y, x):
                return y, x
        msg = "could not place a training tile outside the validation block"  # pragma: no cover
        raise RuntimeError(msg)  # pragma: no cover


@dataclass
class Frame:
    """One real frame (or noisy/clean pair) held in memory, with its split.

    Attributes
    ----------
    name : str
    clean : ndarray
        (C, H, W) float32, linear, finite.
    noisy : ndarray or None
        (C, H, W) float32 noisy counterpart (paired data), or None.
    region : RegionSplit
    own_noise : ndarray
        (C,) white-noise sigma of ``clean`` (the real frame's own noise).
    """

    name: str
    clean: np.ndarray
    noisy: np.ndarray | None
    region: RegionSplit
    own_noise: np.ndarray


def _split_corner(seed: int) -> int:
    return int(np.random.SeedSequence([seed, _SPLIT_TAG]).generate_state(1)[0] % 4)


def _fits_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.lower().endswith(_FITS_SUFFIXES))


def load_fits_folder(
    folder: str | Path | None, *, tile: int, binning: int, fraction: float, seed: int
) -> list[Frame]:
    """Clean real frames of a folder of FITS files, binned, with their region split.

    Parameters
    ----------
    folder : path or None
        Folder of FITS files (mono (H, W) or colour (3, H, W)); None or a missing folder
        gives no frame (a warning says so).
    tile : int
        Tile size; frames smaller than a tile after binning are skipped with a warning.
    binning : int
        Block-average factor (see :func:`bin_image`).
    fraction, seed : float, int
        Validation share and the seed that picks the validation corner.

    Returns
    -------
    list of Frame
    """
    path = resolve_path(folder)
    if path is None:
        return []
    if not path.is_dir():
        warnings.warn(
            f"real FITS folder {path} not found: training without real frames", stacklevel=2
        )
        return []
    corner = _split_corner(seed)
    frames = []
    for file in _fits_files(path):
        image = read_fits_image(file)
        if image is None:
            warnings.warn(f"{file.name}: no 2-D image or 3-plane cube, skipped", stacklevel=2)
            continue
        frame = _frame(file.stem, bin_image(image, binning), None, tile, fraction, corner)
        if frame is not None:
            frames.append(frame)
    return frames


def load_paired_folder(
    folder: str | Path | None, *, tile: int, binning: int, fraction: float, seed: int
) -> list[Frame]:
    """Noisy/clean pairs: ``folder/noisy/NAME.fits`` with ``folder/clean/NAME.fits``.

    Files in ``noisy/`` without a clean counterpart are skipped with a warning; a pair of
    different shapes is an error. Arguments are those of :func:`load_fits_folder`.
    """
    path = resolve_path(folder)
    if path is None:
        return []
    noisy_dir, clean_dir = path / "noisy", path / "clean"
    if not (noisy_dir.is_dir() and clean_dir.is_dir()):
        warnings.warn(
            f"paired folder {path} needs noisy/ and clean/ subfolders: skipped", stacklevel=2
        )
        return []
    corner = _split_corner(seed)
    clean_files = {p.name: p for p in _fits_files(clean_dir)}
    frames = []
    for noisy_file in _fits_files(noisy_dir):
        clean_file = clean_files.get(noisy_file.name)
        if clean_file is None:
            warnings.warn(f"{noisy_file.name}: no clean/{noisy_file.name}, skipped", stacklevel=2)
            continue
        noisy, clean = read_fits_image(noisy_file), read_fits_image(clean_file)
        if noisy is None or clean is None:
            warnings.warn(f"{noisy_file.name}: no image in the pair, skipped", stacklevel=2)
            continue
        if noisy.shape != clean.shape:
            msg = f"pair {noisy_file.name}: noisy {noisy.shape} and clean {clean.shape} differ"
            raise ValueError(msg)
        noisy, clean = bin_image(noisy, binning), bin_image(clean, binning)
        frame = _frame(noisy_file.name.split(".")[0], clean, noisy, tile, fraction, corner)
        if frame is not None:
            frames.append(frame)
    return frames


def load_frames(config: DataConfig) -> tuple[list[Frame], list[Frame]]:
    """The real frames of ``config.fits_dir`` and the pairs of ``config.paired_dir``.

    One load serves a run's training and validation datasets (see :class:`TileDataset`).
    """
    split = {"tile": config.tile, "fraction": config.val_fraction, "seed": config.seed}
    real = load_fits_folder(config.fits_dir, binning=config.real_bin, **split)
    paired = load_paired_folder(config.paired_dir, binning=config.paired_bin, **split)
    return real, paired


def _frame(
    name: str,
    clean: np.ndarray,
    noisy: np.ndarray | None,
    tile: int,
    fraction: float,
    corner: int,
) -> Frame | None:
    _, h, w = clean.shape
    if h < tile or w < tile:
        warnings.warn(
            f"{name}: {h}x{w} px is smaller than a {tile} px tile, skipped", stacklevel=3
        )
        return None
    region = RegionSplit.build(h, w, tile, fraction, corner)
    return Frame(name, clean, noisy, region, noise_sigma(clean))


# --------------------------------------------------------------------------------------------
# simulated scenes


def _scene_u(seed: int, scene_id: int) -> float:
    state = np.random.SeedSequence([seed, _SCENE_TAG, scene_id]).generate_state(1)[0]
    return float(state) / 2.0**32


def scene_split(seed: int, scene_id: int, val_fraction: float = 0.2) -> str:
    """``"val"`` or ``"train"``: the split a simulated scene id belongs to (a hash decides)."""
    return "val" if _scene_u(seed, scene_id) < val_fraction else "train"


def _draw_scene_id(rng: np.random.Generator, seed: int, split: str, fraction: float) -> int:
    while True:  # rejection: about 1 / fraction draws for val, 1 / (1 - fraction) for train
        scene_id = int(rng.integers(2**62))
        if scene_split(seed, scene_id, fraction) == split:
            return scene_id


# --------------------------------------------------------------------------------------------
# one sample


@dataclass
class TileSample:
    """One training sample with what made it (for tests, previews and logs).

    Attributes
    ----------
    input : ndarray
        (3, T, T) float32 stretched noisy tile; (4, T, T) with ``noise_map``, the noise map
        last.
    target : ndarray
        (4, T, T) float32: stretched target (3) then the soft star mask in [0, 1].
    source : str
        ``"sim"``, ``"real"`` or ``"paired"``.
    name : str
        Sky preset, or file name.
    channels : int
        1 (mono, replicated) or 3.
    kind : str
        The noise draw (``random_noise``'s kind, ``"+floor"`` when real noise was topped up,
        or ``"paired"``).
    scene_id : int or None
        Simulated scene id (its split is ``scene_split(seed, scene_id)``).
    position : tuple of int or None
        (y, x) of the tile in the (binned) frame.
    stretch : AstroStretch
        The stretch that took the tile to network space: the one fitted on the noisy tile,
        its scale jittered when ``stretch_jitter`` is on.
    """

    input: np.ndarray
    target: np.ndarray
    source: str
    name: str
    channels: int
    kind: str
    scene_id: int | None
    position: tuple[int, int] | None
    stretch: AstroStretch


def target_star_mask(
    target: np.ndarray,
    noise_level: float,
    rng: np.random.Generator,
    *,
    noise_fraction: float = 0.5,
    noise_floor: float = 0.003,
    **mask_options: Any,
) -> np.ndarray:
    """Soft star mask of a clean (C, T, T) target, as the mask head's training target.

    ``star_mask`` thresholds at ``threshold`` x the image's own noise; on a noiseless
    simulated target that noise is ~0 and every faint wing and nebula knot would count as a
    star. So the mask is measured on the target's luminance plus fresh Gaussian "detection
    noise" of ``noise_fraction`` x ``noise_level`` (the noisy input's sigma): with the
    default 5 sigma threshold the mask holds the stars that peak above 2.5 sigma of the
    input noise - the stars one can see in the input - and no noise peaks of the input.
    The detection noise is at least ``noise_floor`` x the tile's reference level.
    """
    lum = target.mean(axis=0) if target.shape[0] > 1 else target[0]
    sigma = max(noise_fraction * noise_level, noise_floor * reference_level(lum))
    noisy_lum = lum + rng.standard_normal(lum.shape).astype(np.float32) * np.float32(sigma)
    return star_mask(noisy_lum, **mask_options)


def _augment(rng: np.random.Generator, *arrays: np.ndarray) -> list[np.ndarray]:
    """The same random flip and 90-degree rotation of each (C, T, T) array."""
    k = int(rng.integers(4))
    flip = bool(rng.integers(2))
    out = []
    for a in arrays:
        a = np.rot90(a, k, axes=(1, 2))
        if flip:
            a = a[:, :, ::-1]
        out.append(np.ascontiguousarray(a))
    return out


def _channel_gains(rng: np.random.Generator, channels: int, spread: float) -> np.ndarray:
    """(C, 1, 1) float32 factors drawn log-uniform in ``[1 / spread, spread]``, then
    divided by their geometric mean."""
    log_gain = rng.uniform(-np.log(spread), np.log(spread), size=channels)
    log_gain -= log_gain.mean()
    return np.exp(log_gain).astype(np.float32).reshape(-1, 1, 1)


def _noise_floor(
    rng: np.random.Generator,
    noisy: np.ndarray,
    own_noise: np.ndarray,
    floor_range: tuple[float, float],
) -> tuple[np.ndarray, bool]:
    """Top up ``noisy``'s white noise to ``k`` x the frame's own noise, per channel."""
    k = _log_uniform(rng, *floor_range)
    have = noise_sigma(noisy)
    extra = np.sqrt(np.clip((k * own_noise) ** 2 - have**2, 0.0, None))
    if not np.any(extra > 0):
        return noisy, False
    gauss = rng.standard_normal(noisy.shape) * extra[:, None, None]
    return (noisy + gauss).astype(np.float32), True


class TileDataset(Dataset):
    """Map-style dataset of ``length`` network-space tiles of one split and epoch.

    Parameters
    ----------
    config : DataConfig
    split : {"train", "val"}
    length : int
        Samples per epoch (each index is an independent random draw).
    epoch : int, optional
        Epoch number: train tiles differ from epoch to epoch; use 0 for a fixed validation set.
    real_frames, paired_frames : list of Frame, optional
        Pre-loaded frames (loaded from ``config.fits_dir`` / ``config.paired_dir`` when None),
        so that one load serves the train and validation datasets.

    Notes
    -----
    ``dataset[i]`` returns ``(input, target)``: float32 tensors (3, T, T) and (4, T, T).
    :meth:`sample` returns the full :class:`TileSample`.
    """

    def __init__(
        self,
        config: DataConfig,
        *,
        split: str,
        length: int,
        epoch: int = 0,
        real_frames: list[Frame] | None = None,
        paired_frames: list[Frame] | None = None,
    ) -> None:
        if split not in SPLITS:
            msg = f"split must be 'train' or 'val', got {split!r}"
            raise ValueError(msg)
        if length < 1:
            msg = f"length must be >= 1, got {length}"
            raise ValueError(msg)
        self.config = config
        self.split = split
        self.length = int(length)
        self.epoch = int(epoch)
        cfg = config
        if real_frames is None or paired_frames is None:
            real, paired = load_frames(cfg)
            real_frames = real if real_frames is None else real_frames
            paired_frames = paired if paired_frames is None else paired_frames
        self.frames = {
            "real": [f for f in real_frames if f.region.has(split)],
            "paired": [f for f in paired_frames if f.region.has(split)],
        }
        weights = {
            "sim": cfg.sim_weight,
            "real": cfg.real_weight if self.frames["real"] else 0.0,
            "paired": cfg.paired_weight if self.frames["paired"] else 0.0,
        }
        total = sum(weights.values())
        if total <= 0:
            msg = f"no data for the {split} split: all available sources have weight 0 ({weights})"
            raise ValueError(msg)
        self.source_p = {k: v / total for k, v in weights.items()}
        names = sorted(cfg.sky_presets)
        w = np.array([cfg.sky_presets[n] for n in names], dtype=np.float64)
        self._presets = names
        self._preset_p = w / w.sum()
        self._sky = {n: SkyConfig.preset(n, **cfg.sky) for n in names}
        self._noise = cfg.noise_config()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.sample(index)
        return torch.from_numpy(s.input), torch.from_numpy(s.target)

    def describe(self) -> dict:
        """What this dataset draws from (for logs and the exported model's JSON)."""
        return {
            "split": self.split,
            "length": self.length,
            "source_p": self.source_p,
            "real_frames": [
                {
                    "name": f.name,
                    "shape": list(f.clean.shape),
                    "val_box": list(f.region.val_box) if f.region.val_box else None,
                }
                for f in self.frames["real"]
            ],
            "paired_frames": [f.name for f in self.frames["paired"]],
        }

    def sample(self, index: int) -> TileSample:
        """The ``index``-th sample of this split and epoch, with its provenance."""
        if not 0 <= index < self.length:
            raise IndexError(index)
        cfg = self.config
        key = [cfg.seed, _SPLIT_CODE[self.split], self.epoch, int(index)]
        if self.split == "train" and cfg.train_stream:
            key.append(cfg.train_stream)
        rng = np.random.default_rng(np.random.SeedSequence(key))
        sources = list(self.source_p)
        source = sources[int(rng.choice(len(sources), p=list(self.source_p.values())))]
        scene_id = position = None
        if source == "sim":
            name = self._presets[int(rng.choice(len(self._presets), p=self._preset_p))]
            scene_id = _draw_scene_id(rng, cfg.seed, self.split, cfg.val_fraction)
            channels = 1 if rng.uniform() < cfg.p_mono else 3
            scene_rng = np.random.default_rng(
                np.random.SeedSequence([cfg.seed, _SCENE_TAG, scene_id])
            )
            clean = simulate_scene(
                (cfg.tile, cfg.tile), channels=channels, seed=scene_rng, config=self._sky[name]
            ).image
            noisy_real = None
        else:
            frames = self.frames[source]
            frame = frames[int(rng.integers(len(frames)))]
            name = frame.name
            position = frame.region.sample(rng, self.split)
            y, x = position
            t = cfg.tile
            crops = [frame.clean[:, y : y + t, x : x + t]]
            if frame.noisy is not None:
                crops.append(frame.noisy[:, y : y + t, x : x + t])
            crops = _augment(rng, *crops)
            clean = crops[0]
            noisy_real = crops[1] if frame.noisy is not None else None
            channels = clean.shape[0]
        scale = np.float32(_log_uniform(rng, *cfg.flux_scale_range))
        if cfg.channel_gain > 1.0 and self.split == "train" and channels > 1:
            scale = scale * _channel_gains(rng, channels, cfg.channel_gain)
        clean = clean * scale
        if source == "paired":
            noisy, target, kind = noisy_real * scale, clean, "paired"
        else:
            drawn = random_noise(clean, seed=rng, config=self._noise)
            noisy, target, kind = drawn.noisy, drawn.target, drawn.kind
            if source == "real" and kind not in ("identity", "low_noise"):
                noisy, topped = _noise_floor(
                    rng, noisy, frame.own_noise * np.ravel(scale), cfg.real_noise_floor
                )
                kind += "+floor" if topped else ""
        return self._finish(rng, noisy, target, source, name, channels, kind, scene_id, position)

    def _finish(
        self,
        rng: np.random.Generator,
        noisy: np.ndarray,
        target: np.ndarray,
        source: str,
        name: str,
        channels: int,
        kind: str,
        scene_id: int | None,
        position: tuple[int, int] | None,
    ) -> TileSample:
        cfg = self.config
        fitted = fit_stretch(noisy, softening=cfg.softening)
        stretch = fitted
        if cfg.stretch_jitter > 1.0 and self.split == "train":
            # the engine's noise estimate can be off on a frame unlike the training ones
            # (crowded, undersampled stars inflate it): train on a misestimated scale too
            half = np.log(cfg.stretch_jitter)
            factor = float(np.exp(rng.uniform(-half, half)))
            stretch = replace(fitted, scale=fitted.scale * factor)
        x = stretch.forward(noisy)
        y = stretch.forward(target)
        mask = target_star_mask(  # the mask follows the tile's true noise, not the jitter
            target,
            fitted.scale / cfg.softening,
            rng,
            noise_fraction=cfg.mask_noise_fraction,
            noise_floor=cfg.mask_noise_floor,
            **cfg.mask,
        )
        if channels == 1:
            x = np.repeat(x, 3, axis=0)
            y = np.repeat(y, 3, axis=0)
        if cfg.noise_map:
            profile = prefit_noise_profile(noisy)
            sigma = noise_map(noisy, stretch, profile, cfg.softening)
            x = np.concatenate([x, sigma[np.newaxis]], axis=0)
        target4 = np.concatenate([y, mask[np.newaxis].astype(np.float32)], axis=0)
        return TileSample(
            input=np.ascontiguousarray(x, dtype=np.float32),
            target=np.ascontiguousarray(target4, dtype=np.float32),
            source=source,
            name=name,
            channels=channels,
            kind=kind,
            scene_id=scene_id,
            position=position,
            stretch=stretch,
        )
