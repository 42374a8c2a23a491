"""Orchestration of a denoising run: planes -> stretch -> tiles -> network -> safeguards.

Everything a script, a notebook, the CLI and the napari widgets need, with no Qt in it. The
stages, in order, each in its own module:

1. :mod:`.planes`: the caller's mono, colour or Bayer array as (C, H, W) float32 planes;
2. :mod:`.stretch` and :mod:`.noiselevel`: the frame's stretch (and, for a model with a
   noise channel, its noise map), measured once on the whole frame so that tiles agree;
3. :mod:`.tiling` with :mod:`.predictor`: overlapping tiles through the network, the
   change it makes (prediction minus input, in the input's units) blended across tiles, so
   an identity network returns the input bit for bit and Gaussian blending averages flux
   changes, not stretched values;
4. :mod:`.safeguards`: flux lock, change limit, star refit and peak cap on the stitched
   change;
5. :class:`DenoiseResult`: strength and star protection blend the kept prediction with
   the input, without a network pass; :mod:`.provenance` records the run.

Every option is declared once in :mod:`.options`; :func:`iter_denoise` and :func:`denoise`
take them as keywords.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_astrodenoise.core import tiling
from napari_astrodenoise.core.noiselevel import noise_map, noise_sigma, prefit_noise_profile
from napari_astrodenoise.core.options import (
    DENOISE,
    TILING,
    option,
    resolve,
    with_options,
)
from napari_astrodenoise.core.planes import PlaneMap
from napari_astrodenoise.core.predictor import AUTO_BATCH, TilePredictor, as_loaded
from napari_astrodenoise.core.progress import drain
from napari_astrodenoise.core.provenance import provenance
from napari_astrodenoise.core.safeguards import guard_change
from napari_astrodenoise.core.starrefit import REFIT_WINDOW
from napari_astrodenoise.core.stretch import fit_stretch

if TYPE_CHECKING:
    from napari_astrodenoise.core.diagnostics import SeamReport
    from napari_astrodenoise.core.weights import LoadedModel


@dataclass
class DenoiseResult:
    """A finished run: the raw prediction is kept so that re-blending costs no network pass.

    Attributes
    ----------
    original : ndarray
        (C, H, W) float32 input, channel first, non-finite pixels as given.
    prediction : ndarray
        (C, H, W) float32 full-strength network output in the input's units, flux-locked,
        change-limited, star-refitted and peak-capped; non-finite input pixels are restored.
    model_mask : ndarray or None
        (C', H', W') float32 star-mask probability from the network's mask head, in the
        engine's planes (one plane; four for a Bayer mosaic).
    plane_map : PlaneMap
        How the caller's array maps to the engine's (C, H, W) planes.
    settings : dict
        Model name and hash and every option of the run (``flux_lock``, ``change_limit`` and
        ``peak_cap`` included: the prediction already has them), and the fitted
        ``noise_profile``, for provenance.
    star_mask : ndarray or None
        Soft mask in [0, 1] used by ``star_protection``, shaped like one image plane of the
        caller's array ((H, W)); measured with :func:`star_mask` defaults on first need.
    """

    original: np.ndarray
    prediction: np.ndarray
    model_mask: np.ndarray | None
    plane_map: PlaneMap
    settings: dict
    star_mask: np.ndarray | None = None
    _delta: np.ndarray | None = field(default=None, repr=False)

    @property
    def channel_axis(self) -> int | None:
        """Where the channel axis is in the caller's layout (None: a 2-D frame)."""
        return self.plane_map.channel_axis

    def output(
        self, strength: float | None = None, star_protection: float | None = None
    ) -> np.ndarray:
        """The denoised image in the caller's layout, float32.

        ``out = input + strength * (1 - star_protection * mask) * (prediction - input)``;
        no network pass. Defaults are the run's own settings.
        """
        strength = self.settings["strength"] if strength is None else strength
        protection = (
            self.settings["star_protection"] if star_protection is None else star_protection
        )
        option("strength").check(strength)
        option("star_protection").check(protection)
        if self._delta is None:
            with np.errstate(invalid="ignore"):
                delta = self.prediction - self.original
            delta[~np.isfinite(delta)] = 0.0
            self._delta = delta
        weight = np.float32(strength)
        if protection > 0:
            if self.star_mask is None:
                self.star_mask = self.plane_map.measure_star_mask(self.original)
            mask = self.plane_map.mask_to_planes(self.star_mask)
            weight = weight * (1.0 - np.float32(protection) * mask)
        out = self.original + weight * self._delta
        return self.plane_map.from_planes(out.astype(np.float32, copy=False))

    def provenance(
        self, strength: float | None = None, star_protection: float | None = None
    ) -> dict:
        """FITS keywords and HISTORY lines of this run (layer metadata ``astrodenoise``)."""
        s = dict(self.settings)
        if strength is not None:
            s["strength"] = strength
        if star_protection is not None:
            s["star_protection"] = star_protection
        return provenance(s)


def _prepare(
    image: np.ndarray,
    *,
    channel_axis: int | None,
    bayer: bool,
    model: str | os.PathLike | LoadedModel,
    device: str,
    batch_size: int | None,
    ensemble: int,
    precision: str,
) -> tuple[PlaneMap, np.ndarray, np.ndarray, np.ndarray, TilePredictor, dict]:
    """Planes, the network's input (filled, plus a noise map), the predictor, the settings."""
    if batch_size is not None and batch_size < 1:
        msg = f"batch_size must be >= 1, got {batch_size}"
        raise ValueError(msg)
    plane_map = PlaneMap.of(image, channel_axis, bayer)
    chw = plane_map.to_planes(image)
    loaded = as_loaded(model, device)
    stretch = fit_stretch(chw, softening=loaded.softening)
    filled = chw
    bad = ~np.isfinite(chw)
    if bad.any():
        filled = np.where(bad, stretch.background.reshape(-1, 1, 1).astype(np.float32), chw)
    prefit = None
    if loaded.module.config.noise_channel:
        # the network's extra input: the noise map, tiled along with the image
        prefit = prefit_noise_profile(chw)
        sigma_map = noise_map(chw, stretch, prefit, loaded.softening)
        filled = np.concatenate([filled, sigma_map[np.newaxis]], axis=0)
    kind = loaded.device.split(":")[0]
    predictor = TilePredictor(
        loaded, stretch, chw.shape[0], batch_size or AUTO_BATCH[kind], ensemble, precision
    )
    settings = {
        "model": loaded.name,
        "sha256": loaded.sha256,
        "device": loaded.device,
        "softening": loaded.softening,
        "stretch": stretch.to_dict(),
        "bayer": bool(bayer),
    }
    if prefit is not None:
        settings["noise_prefit"] = prefit.to_dict()
    return plane_map, chw, filled, bad, predictor, settings


@with_options(DENOISE)
def iter_denoise(
    image: np.ndarray,
    *,
    model: str | os.PathLike | LoadedModel = "default",
    device: str = "auto",
    channel_axis: int | None = None,
    bayer: bool = False,
    batch_size: int | None = None,
    star_mask: np.ndarray | None = None,
    **options: Any,
) -> Generator[tuple[int, int], None, DenoiseResult]:
    """Denoise a linear astronomical image, step by step.

    Yields ``(tiles_done, tiles_total)`` and returns a :class:`DenoiseResult` (the
    generator's ``StopIteration.value``, or napari's ``worker.returned``). Stop it between
    batches by no longer iterating (or ``.close()``). :func:`denoise` runs it to the end and
    returns the output array.

    Parameters
    ----------
    image : ndarray
        Linear data of any offset, scale and sign: mono (H, W), or colour / a stack with
        ``channel_axis`` naming the channel axis (FITS cubes are (3, H, W): ``channel_axis=0``).
        NaN and inf pixels are ignored, filled for the network and restored in the output.
    model : str, path-like or LoadedModel, optional
        ``"default"`` (the shipped model), a registry name, a model file, or a model already
        loaded with :func:`load_model` (reuse it across many images).
    device : str, optional
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"`` or ``"mps"``.
    channel_axis : int, optional
        Axis of the channels; None for a 2-D mono image.
    bayer : bool, optional
        The image is a raw one-shot-colour mosaic (H, W) (FITS ``BAYERPAT``): its four
        colour sub-planes are denoised separately and re-interleaved, so pixels behind
        different filters never mix. The output is the same mosaic, ready for debayering.
    batch_size : int, optional
        Tiles per network call; automatic by device when None, halved on out-of-memory.
    star_mask : ndarray, optional
        (H, W) soft mask in [0, 1] for ``star_protection``; measured with :func:`star_mask`
        defaults when None.

    Returns
    -------
    DenoiseResult
        ``.output()`` is float32, the input's shape, in the input's own units, never clipped
        or rescaled.
    """
    o = resolve(options, DENOISE, caller="iter_denoise")
    plane_map, chw, network_in, bad, predictor, settings = _prepare(
        image,
        channel_axis=channel_axis,
        bayer=bayer,
        model=model,
        device=device,
        batch_size=batch_size,
        ensemble=o["ensemble"],
        precision=o["precision"],
    )
    if star_mask is not None and np.shape(star_mask) != plane_map.plane_shape:
        msg = f"star_mask must have shape {plane_map.plane_shape}, got {np.shape(star_mask)}"
        raise ValueError(msg)
    stitched = yield from tiling.iter_tiled(
        network_in,
        predictor,
        **{t.name: o[t.name] for t in TILING},
        batch_size=predictor.batch_size,
        out_channels=chw.shape[0] + 1,
    )
    # stitched[:-1] is the network's change, in the input's units; a Bayer sub-plane has
    # half the caller's pixel scale
    half = 2 if plane_map.bayer else 1
    prediction, profile = guard_change(
        stitched[:-1],
        chw,
        bad=bad,
        refit_window=REFIT_WINDOW / half,
        flux_lock=o["flux_lock"] / half,
        lock_threshold=o["lock_threshold"],
        change_limit=o["change_limit"],
        peak_cap=o["peak_cap"],
        star_refit=o["star_refit"],
    )
    settings.update(o)
    settings["precision"] = predictor.precision  # what ran, not "auto"
    if profile is not None:
        settings["noise_profile"] = profile.to_dict()
    mask = None if star_mask is None else np.asarray(star_mask, dtype=np.float32)
    return DenoiseResult(
        original=chw,
        prediction=prediction,
        model_mask=stitched[-1],
        plane_map=plane_map,
        settings=settings,
        star_mask=mask,
    )


@with_options(DENOISE, like=iter_denoise, returns="np.ndarray")
def denoise(image: np.ndarray, **kwargs: Any) -> np.ndarray:
    """Denoise a linear astronomical image: :func:`iter_denoise` run to the end.

    Takes the same arguments as :func:`iter_denoise` (``model``, ``device``,
    ``channel_axis``, ``bayer``, ``batch_size``, ``star_mask``) and the options below.

    Parameters
    ----------
    image : ndarray
        Linear mono (H, W) data, or colour / a stack with ``channel_axis``.

    Returns
    -------
    ndarray
        float32, the input's shape; values in the input's own units, never clipped or rescaled.
    """
    return drain(iter_denoise(image, **kwargs)).output()


#: The arguments of `iter_denoise` that say which model runs where on what layout; the other
#: runs of the network (`iter_seam_map`) take them too, forwarded.
_RUN_ARGUMENTS = ("model", "device", "channel_axis", "bayer", "batch_size")


def _run_arguments(given: dict[str, Any]) -> dict[str, Any]:
    """The run arguments taken out of ``given``, with `iter_denoise`'s defaults for the rest."""
    params = inspect.signature(iter_denoise).parameters
    return {name: given.pop(name, params[name].default) for name in _RUN_ARGUMENTS}


@with_options(TILING, like=iter_denoise, omit=("star_mask",))
def iter_seam_map(
    image: np.ndarray, *, reference: str = "shifted", **kwargs: Any
) -> Generator[tuple[int, int], None, SeamReport]:
    """Tile-seam difference map of a denoising run and its visibility in noise sigmas.

    The image is denoised on the requested tile grid and on a reference (the same grid
    shifted by half a stride, or whole-image inference with ``reference="whole"``); the
    difference shows exactly what the tiling adds. See
    :func:`napari_astrodenoise.core.diagnostics.measure_seams` for the metric. Arguments
    are those of :func:`iter_denoise` (``model``, ``device``, ``channel_axis``, ``bayer``,
    ``batch_size``), with the tiling options only.

    Yields ``(steps_done, steps_total)`` (a step is one batch of tiles of either run) and
    returns the report; :func:`seam_map` runs it to the end.

    Returns
    -------
    SeamReport
        ``.diff`` in the image's units and the caller's layout (the input's shape),
        ``.seam_sigma`` one number.
    """
    from napari_astrodenoise.core import diagnostics

    run = _run_arguments(kwargs)
    tiles = resolve(kwargs, TILING, caller="iter_seam_map")
    plane_map, chw, network_in, _bad, predictor, _settings = _prepare(
        image,
        ensemble=option("ensemble").default,
        precision=option("precision").default,
        **run,
    )
    channels = chw.shape[0]

    def change_only(tiles: np.ndarray) -> np.ndarray:
        # the image term cancels in the difference of two tilings, so the change suffices
        return predictor(tiles)[:, :channels]

    report = yield from diagnostics.iter_measure_seams(
        network_in,
        change_only,
        **tiles,
        batch_size=predictor.batch_size,
        reference=reference,
        # the input's own noise: network_in has the noise map as one more channel
        noise_sigma=noise_sigma(chw) if predictor.noise_channel else None,
    )
    return dataclasses.replace(report, diff=plane_map.from_planes(report.diff))


@with_options(TILING, like=iter_seam_map, returns="SeamReport")
def seam_map(image: np.ndarray, **kwargs: Any) -> SeamReport:
    """Tile-seam report: :func:`iter_seam_map` run to the end; same arguments, its report."""
    return drain(iter_seam_map(image, **kwargs))
