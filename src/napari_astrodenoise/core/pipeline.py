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
import warnings
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_astrodenoise.core import tiling
from napari_astrodenoise.core.noiselevel import (
    NoiseProfile,
    SampledPlanes,
    noise_map,
    noise_sigma,
    prefit_noise_profile,
)
from napari_astrodenoise.core.options import (
    DENOISE,
    TILING,
    option,
    resolve,
    with_options,
)
from napari_astrodenoise.core.planes import PlaneMap, check_real, is_dask_array
from napari_astrodenoise.core.predictor import AUTO_BATCH, TilePredictor, as_loaded
from napari_astrodenoise.core.progress import drain
from napari_astrodenoise.core.provenance import provenance
from napari_astrodenoise.core.safeguards import guard_change
from napari_astrodenoise.core.starrefit import REFIT_WINDOW
from napari_astrodenoise.core.stretch import AstroStretch, fit_stretch
from napari_astrodenoise.core.strips import row_strips, strip_rows
from napari_astrodenoise.core.weights import with_model_options

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
    input_mask : ndarray or None
        The mask of a numpy masked array given as input (its pixels were NaN to the
        engine); the output is a masked array with this mask and the input's values there.
    masked_data : ndarray or None
        The masked input's data, whose values come back under ``input_mask``.
    """

    original: np.ndarray
    prediction: np.ndarray
    model_mask: np.ndarray | None
    plane_map: PlaneMap
    settings: dict
    star_mask: np.ndarray | None = None
    input_mask: np.ndarray | None = field(default=None, repr=False)
    masked_data: np.ndarray | None = field(default=None, repr=False)

    @property
    def channel_axis(self) -> int | None:
        """Where the channel axis is in the caller's layout (None: a 2-D frame)."""
        return self.plane_map.channel_axis

    def output(
        self, strength: float | None = None, star_protection: float | None = None
    ) -> np.ndarray:
        """The denoised image in the caller's layout, float32.

        ``out = input + strength * (1 - star_protection * mask) * (prediction - input)``;
        no network pass. Defaults are the run's own settings. Computed in row strips: one
        new frame, no whole-frame temporary. A masked array as input gives a masked array.
        """
        if self.prediction is None:
            msg = "this result's prediction was given away by take_output(); run it again"
            raise ValueError(msg)
        out = np.empty(self.prediction.shape, dtype=np.float32)
        self._blend_into(out, strength, star_protection)
        return self._to_caller(out)

    def take_output(
        self, strength: float | None = None, star_protection: float | None = None
    ) -> np.ndarray:
        """:meth:`output`, written over the kept prediction: no new frame at all.

        For a caller that needs nothing more of this result (the command line): it cannot
        re-blend afterwards (``prediction`` becomes None).
        """
        if self.prediction is None:
            msg = "this result's prediction was given away by take_output(); run it again"
            raise ValueError(msg)
        out = self.prediction
        self._blend_into(out, strength, star_protection)
        self.prediction = None
        return self._to_caller(out)

    def _blend_into(
        self, out: np.ndarray, strength: float | None, star_protection: float | None
    ) -> None:
        """``out = input + weight * (prediction - input)``, (C, H, W) planes, row strips."""
        strength = self.settings["strength"] if strength is None else strength
        protection = (
            self.settings["star_protection"] if star_protection is None else star_protection
        )
        option("strength").check(strength)
        option("star_protection").check(protection)
        mask = None
        if protection > 0:
            if self.star_mask is None:
                self.star_mask = self.plane_map.measure_star_mask(self.original)
            mask = self.plane_map.mask_to_planes(self.star_mask)
        height, width = self.original.shape[1:]
        for rows in row_strips(height, strip_rows(width)):
            original = self.original[:, rows]
            with np.errstate(invalid="ignore"):
                delta = self.prediction[:, rows] - original
            delta[~np.isfinite(delta)] = 0.0
            weight = np.float32(strength)
            if mask is not None:
                weight = weight * (1.0 - np.float32(protection) * mask[:, rows])
            out[:, rows] = original + weight * delta

    def _to_caller(self, planes: np.ndarray) -> np.ndarray:
        """Planes to the caller's layout; a masked input's mask and values restored."""
        out = self.plane_map.from_planes(planes)
        if self.input_mask is None:
            return out
        out[self.input_mask] = self.masked_data[self.input_mask]
        return np.ma.MaskedArray(out, mask=self.input_mask.copy())

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
    check_batch_size(batch_size)
    plane_map = PlaneMap.of(image, channel_axis, bayer)
    chw = plane_map.to_planes(image)
    loaded = as_loaded(model, device)
    stretch, unit, work, prefit = frame_statistics(chw, loaded)
    network_in = work
    if prefit is not None:
        # the network's extra input: the noise map, tiled along with the image
        sigma_map = noise_map(work, stretch, prefit, loaded.softening)
        network_in = np.concatenate([work, sigma_map[np.newaxis]], axis=0)
    predictor = make_predictor(loaded, stretch, chw.shape[0], batch_size, ensemble, precision)
    settings = run_settings(loaded, stretch, unit, prefit, bayer=bayer)
    return plane_map, chw, work, network_in, predictor, settings


def frame_statistics(
    chw: np.ndarray | SampledPlanes, loaded: LoadedModel
) -> tuple[AstroStretch, float, np.ndarray | SampledPlanes, NoiseProfile | None]:
    """The whole frame's stretch, data unit, planes in that unit and noise prefit.

    Returns ``(stretch, unit, work, prefit)``: the stretch in units of ``work``, which is
    ``chw`` divided by ``unit`` (a power of two, see :func:`data_unit`), and the noise
    profile prefitted to ``work`` for a model with a noise channel (else None). ``chw`` may
    be :class:`~.noiselevel.SampledPlanes` of a frame larger than memory: the same numbers.
    """
    stretch = fit_stretch(chw, softening=loaded.softening)
    unit = data_unit(stretch.scale)
    work = chw
    if unit != 1.0:
        # far from the float32 range the safeguards' variances live in: the engine runs on
        # the data divided by a power of two (exact), and its result is multiplied back
        factor = np.float32(1.0 / unit)
        work = chw.scaled(factor) if isinstance(chw, SampledPlanes) else chw * factor
        stretch = AstroStretch(stretch.background / unit, stretch.scale / unit)
    prefit = prefit_noise_profile(work) if loaded.module.config.noise_channel else None
    return stretch, unit, work, prefit


def make_predictor(
    loaded: LoadedModel,
    stretch: AstroStretch,
    channels: int,
    batch_size: int | None,
    ensemble: int,
    precision: str,
) -> TilePredictor:
    """The tile predictor of a run: the device's batch size unless one is given."""
    kind = loaded.device.split(":")[0]
    return TilePredictor(
        loaded, stretch, channels, batch_size or AUTO_BATCH[kind], ensemble, precision
    )


def run_settings(
    loaded: LoadedModel,
    stretch: AstroStretch,
    unit: float,
    prefit: NoiseProfile | None,
    *,
    bayer: bool,
) -> dict:
    """The settings a run records before its options: model, device, stretch, unit, prefit."""
    settings = {
        "model": loaded.name,
        "sha256": loaded.sha256,
        "device": loaded.device,
        "softening": loaded.softening,
        "stretch": _in_units(stretch, unit).to_dict(),
        "bayer": bool(bayer),
    }
    if unit != 1.0:
        settings["data_unit"] = unit
    if prefit is not None:
        settings["noise_prefit"] = prefit.scaled(unit).to_dict()
    return settings


def check_batch_size(batch_size: object) -> None:
    """Refuse a ``batch_size`` that is neither None nor a whole number >= 1."""
    if batch_size is not None and (
        not isinstance(batch_size, int | np.integer)
        or isinstance(batch_size, bool)
        or batch_size < 1
    ):
        msg = f"batch_size must be a whole number >= 1, got {batch_size!r}"
        raise ValueError(msg)


#: the stretch scales (data units) within which the engine runs on the data as they are
_UNIT_RANGE = (2.0**-24, 2.0**24)


def data_unit(scale: float) -> float:
    """1, or the power of two the engine divides the data by, for a stretch ``scale``.

    Within :data:`_UNIT_RANGE` the data are used as they are (the noise variances the
    safeguards compute in float32 are then far from its underflow and overflow); outside
    it, the power of two nearest the scale, so that ``denoise(k * x) == k * denoise(x)``
    to float32 precision for any ``k``.
    """
    low, high = _UNIT_RANGE
    if not np.isfinite(scale) or low <= scale <= high:
        return 1.0
    return float(2.0 ** np.clip(np.round(np.log2(scale)), -120, 120))


def _in_units(stretch: AstroStretch, unit: float) -> AstroStretch:
    """A stretch measured on data divided by ``unit``, back in the data's units."""
    if unit == 1.0:
        return stretch
    return AstroStretch(stretch.background * unit, stretch.scale * unit)


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
    model_mask: bool = True,
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
    model_mask : bool, optional
        Keep the network's own star-mask head as ``DenoiseResult.model_mask`` (a display
        layer). False stitches the image channels alone: one plane less in memory, the
        output the same bit for bit; :func:`denoise` and the command line do so.

    Returns
    -------
    DenoiseResult
        ``.output()`` is float32, the input's shape, in the input's own units, never clipped
        or rescaled.
    """
    if is_dask_array(image):
        msg = "iter_denoise takes an array in memory; denoise() takes a dask array out of core"
        raise ValueError(msg)
    model = as_loaded(model, device)
    o = resolve(with_model_options(options, model), DENOISE, caller="iter_denoise")
    image, input_mask, masked_data = _unmask(image)
    plane_map, chw, work, network_in, predictor, settings = _prepare(
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
    channels = chw.shape[0]
    stitched = yield from tiling.iter_tiled(
        network_in,
        predictor if model_mask else _image_channels(predictor, channels),
        **{t.name: o[t.name] for t in TILING},
        batch_size=predictor.batch_size,
        out_channels=channels + 1 if model_mask else channels,
        fill=_fill_values(predictor.stretch.background, network_in.shape[0]),
    )
    del network_in
    # stitched[:channels] is the network's change, in the input's units; a Bayer sub-plane has
    # half the caller's pixel scale
    half = 2 if plane_map.bayer else 1
    if not _any_nonzero(stitched[:channels]):
        settings["network_changed_nothing"] = True
    prediction, profile = guard_change(
        stitched[:channels],
        work,
        refit_window=REFIT_WINDOW / half,
        flux_lock=o["flux_lock"] / half,
        lock_threshold=o["lock_threshold"],
        change_limit=o["change_limit"],
        peak_cap=o["peak_cap"],
        star_refit=o["star_refit"],
    )
    unit = settings.get("data_unit", 1.0)
    if unit != 1.0:
        del work
        prediction *= np.float32(unit)
    settings.update(o)
    settings["precision"] = predictor.precision  # what ran, not "auto"
    if profile is not None:
        settings["noise_profile"] = profile.scaled(unit).to_dict()
    _say_if_unchanged(prediction, chw, settings)
    mask = None if star_mask is None else np.asarray(star_mask, dtype=np.float32)
    return DenoiseResult(
        original=chw,
        prediction=prediction,
        model_mask=stitched[channels] if model_mask else None,
        plane_map=plane_map,
        settings=settings,
        star_mask=mask,
        input_mask=input_mask,
        masked_data=masked_data,
    )


def _image_channels(predictor: TilePredictor, channels: int) -> Callable[[np.ndarray], np.ndarray]:
    """The predictor's image channels alone (its last, the star-mask head, left out)."""

    def predict(tiles: np.ndarray) -> np.ndarray:
        return predictor(tiles)[:, :channels]

    return predict


def _unmask(image: Any) -> tuple[Any, np.ndarray | None, np.ndarray | None]:
    """(data for the engine, mask, the masked array's data) of an input.

    A numpy masked array becomes float32 with NaN under its mask (left out of every
    statistic and of the network's view, like any NaN); other inputs pass as they are.
    """
    if not isinstance(image, np.ma.MaskedArray):
        return image, None, None
    data = np.ma.getdata(image)
    check_real(data)
    mask = np.ma.getmaskarray(image)
    filled = data.astype(np.float32)
    filled[mask] = np.nan
    return filled, mask, data


def _fill_values(background: np.ndarray, channels: int) -> np.ndarray:
    """What stands in for NaN and inf in the network's tiles: the channel's sky level.

    A noise-map channel after the image channels has no bad pixels; it gets 0.
    """
    values = np.zeros(channels, dtype=np.float32)
    values[: len(background)] = np.asarray(background, dtype=np.float32)
    return values


def _any_nonzero(planes: np.ndarray) -> bool:
    """Whether any pixel of (C, H, W) planes is other than 0, looked at in row strips."""
    height, width = planes.shape[1:]
    return any(np.any(planes[:, rows]) for rows in row_strips(height, strip_rows(width)))


def _say_if_unchanged(prediction: np.ndarray, original: np.ndarray, settings: dict) -> None:
    """Warn, and record in ``settings["unchanged"]``, when the output is the input itself."""
    height, width = original.shape[1:]
    for rows in row_strips(height, strip_rows(width)):
        if not np.array_equal(prediction[:, rows], original[:, rows], equal_nan=True):
            settings.pop("network_changed_nothing", None)
            return
    reason = _why_unchanged(original, settings)
    settings.pop("network_changed_nothing", None)
    settings["unchanged"] = reason
    msg = f"the output equals the input: {reason}"
    warnings.warn(msg, UserWarning, stacklevel=3)


def _why_unchanged(original: np.ndarray, settings: dict) -> str:
    """The reason a run changed nothing, in words."""
    from napari_astrodenoise.core.noiselevel import finite_sample, noise_sigma

    samples = [finite_sample(channel) for channel in original]
    if not any(sample.size for sample in samples):
        return "the image has no finite pixel"
    if all(sample.size == 0 or sample.min() == sample.max() for sample in samples):
        return "the image is constant"
    if not np.any(noise_sigma(original) > 0):
        return "no noise could be measured (neighbouring pixels are equal in most of the image)"
    if settings.get("network_changed_nothing"):
        return "the network changed nothing"
    return "the safeguards held back every change the network made"


@with_options(DENOISE, like=iter_denoise, returns="np.ndarray")
def denoise(image: np.ndarray, **kwargs: Any) -> np.ndarray:
    """Denoise a linear astronomical image: :func:`iter_denoise` run to the end.

    Takes the same arguments as :func:`iter_denoise` (``model``, ``device``,
    ``channel_axis``, ``bayer``, ``batch_size``, ``star_mask``) and the options below.

    A dask array (a mosaic larger than memory, read with ``read_fits(path, lazy=True)``)
    gives a lazy dask array of the same values within 0.01 noise sigma, computed a row
    block at a time (:func:`~.outofcore.denoise_lazy`, which also takes ``block_rows``,
    ``memory`` and ``spill_dir``).

    Parameters
    ----------
    image : ndarray or dask.array.Array
        Linear mono (H, W) data, or colour / a stack with ``channel_axis``.

    Returns
    -------
    ndarray or dask.array.Array
        float32, the input's shape; values in the input's own units, never clipped or rescaled.
    """
    if is_dask_array(image):
        from napari_astrodenoise.core.outofcore import denoise_lazy

        return denoise_lazy(image, **kwargs)
    kwargs.setdefault("model_mask", False)  # only the output is returned
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
    plane_map, chw, work, network_in, predictor, settings = _prepare(
        image,
        ensemble=option("ensemble").default,
        precision=option("precision").default,
        **run,
    )
    channels = chw.shape[0]
    bad = ~np.isfinite(network_in)
    if bad.any():  # the seam runs take the network's input as it is: NaNs filled here
        fill = _fill_values(predictor.stretch.background, network_in.shape[0])
        network_in = np.where(bad, fill.reshape(-1, 1, 1), network_in)
    del bad

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
        noise_sigma=noise_sigma(work) if predictor.noise_channel else None,
    )
    unit = settings.get("data_unit", 1.0)
    diff = report.diff if unit == 1.0 else report.diff * np.float32(unit)
    return dataclasses.replace(report, diff=plane_map.from_planes(diff))


@with_options(TILING, like=iter_seam_map, returns="SeamReport")
def seam_map(image: np.ndarray, **kwargs: Any) -> SeamReport:
    """Tile-seam report: :func:`iter_seam_map` run to the end; same arguments, its report."""
    return drain(iter_seam_map(image, **kwargs))
