"""The Denoise widget: iter_denoise in a thread; `<name> denoised` and `<name> residual`."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import napari
import napari.layers
import napari.viewer
import numpy as np
from magicgui.widgets import (
    Label,
    PushButton,
)

from napari_astrodenoise._widgets._common import (
    ROLE,
    LatestRunner,
    Panel,
    Task,
    engine_planes,
    image_hw,
    in_viewer,
    notify_info,
    placement,
    set_signed_contrast,
    shows_value_errors,
    unwrap,
    upsert_image,
)
from napari_astrodenoise._widgets._models import ModelPicker
from napari_astrodenoise._widgets._options import option_controls, option_values
from napari_astrodenoise.core.options import DENOISE, OUTPUT

RESIDUAL_NOTE = "residual: input minus the denoised output, in the input's units"


@dataclass
class _Run:
    """What a run's layers need: the input as it was and, once finished, the engine's result."""

    base: str
    source: weakref.ref
    image: Any  # the layer's data; an ndarray once the worker has read it
    rgb: bool
    place: dict[str, Any]
    metadata: dict
    display: dict[str, Any]
    mask_name: str | None = None
    result: Any = None


@dataclass
class _Blend:
    """One blend of a result: denoised output and residual, in the input's layout."""

    result: Any
    output: np.ndarray
    residual: np.ndarray
    strength: float
    star_protection: float


def _mask_data(layer: Any, hw: tuple[int, int]) -> np.ndarray | None:
    """(H, W) float32 star mask from an image layer, checked against the input's (H, W)."""
    if layer is None:
        return None
    data = np.asarray(layer.data, dtype=np.float32)
    if data.shape != tuple(hw):
        msg = f"star mask '{layer.name}' has shape {data.shape}, the image is {tuple(hw)}"
        raise ValueError(msg)
    return data


def _denoise_job(run: _Run, *, picker: ModelPicker, spec: tuple, options: dict, mask):
    """Worker body: load the model, denoise batch by batch, blend the first output."""
    from napari_astrodenoise.core.pipeline import iter_denoise

    run.image = np.asarray(run.image)  # here, not in the UI thread: the data may be lazy
    loaded = picker.load(spec)
    run.result = yield from iter_denoise(run.image, model=loaded, star_mask=mask, **options)
    return run, reblend(run.result, run.image, options["strength"], options["star_protection"])


def reblend(result: Any, image: np.ndarray, strength: float, star_protection: float) -> _Blend:
    """Denoised output and residual for a strength and star protection; no network pass."""
    out = result.output(strength=strength, star_protection=star_protection)
    with np.errstate(invalid="ignore"):
        residual = np.asarray(image, dtype=np.float32) - out
    return _Blend(result, out, residual.astype(np.float32, copy=False), strength, star_protection)


class DenoiseWidget(Panel):
    """Denoise an image layer with the ResUNet, tile by tile, in a background thread.

    Results are the layers ``<name> denoised`` and ``<name> residual`` (input minus
    output), placed over the input and carrying its metadata plus ``"astrodenoise"``
    provenance; a new run updates them in place. Strength and star protection re-blend
    the kept result at once, without the network.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._viewer = viewer
        super().__init__()
        self.image = self.add_layer_choice("Image")
        self.picker = self.add(ModelPicker())
        self.controls = option_controls(DENOISE)
        for o in OUTPUT:
            self.add(self.controls[o.name])
        self.star_mask = self.add_layer_choice("Star mask", optional=True)
        for o in DENOISE:
            if o not in OUTPUT:
                self.add(self.controls[o.name])
        self.run_button = self.add(PushButton(text="Run"))
        self.cancel_button = self.add(PushButton(text="Cancel", enabled=False))
        self.status = self.add(Label(value=""))
        self.task = Task("Denoising", returned=self._finished, state=self._running)
        self._reblender = LatestRunner(reblend, self._show)
        self._run: _Run | None = None
        self._shown: tuple[float, float] | None = None
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.task.cancel)
        for o in OUTPUT:  # strength and star protection re-blend without the network
            self.controls[o.name].changed.connect(self._reblend)
        self.star_mask.changed.connect(self._mask_changed)

    # ------------------------------------------------------------------ run

    @property
    def result(self) -> Any:
        """The `DenoiseResult` of the last finished run, or None."""
        return None if self._run is None else self._run.result

    @property
    def busy(self) -> bool:
        """True while a run or a re-blend is in flight."""
        return self.task.running or self._reblender.busy

    @shows_value_errors
    def run(self, *_: Any) -> None:
        """Start denoising the chosen layer (no-op while a run is going)."""
        if self.task.running:
            return
        job, name = self._prepare()
        self.status.value = f"denoising {name}..."
        self.task.start(job, description=f"Denoising {name}")

    def _prepare(self) -> tuple[Any, str]:
        """Check the choices and build the worker's job; raises ValueError for the user."""
        layer = unwrap(self.image.value)
        layout = engine_planes(layer)
        run = _Run(
            base=layer.name,
            source=weakref.ref(layer),
            image=layer.data,
            rgb=bool(layer.rgb),
            place=placement(layer),
            metadata=dict(layer.metadata),
            display=_display_of(layer),
        )
        mask_layer = unwrap(self.star_mask.value)
        mask = _mask_data(mask_layer, image_hw(layer))
        run.mask_name = None if mask_layer is None else mask_layer.name
        spec = self.picker.spec()
        options = {**option_values(self.controls, DENOISE), "device": spec[1], **layout}

        def job():
            return _denoise_job(run, picker=self.picker, spec=spec, options=options, mask=mask)

        return job, run.base

    def _running(self, running: bool) -> None:
        self.run_button.enabled = not running
        self.cancel_button.enabled = running
        if not running and self.status.value.startswith("denoising"):
            self.status.value = ""

    def _finished(self, value: tuple[_Run, _Blend]) -> None:
        run, first = value
        if not in_viewer(self._viewer, run.source):
            notify_info(f"'{run.base}' was removed during the run; its result is dropped")
            return
        self._run = run
        self._show(first)
        s = run.result.settings
        self.status.value = f"{run.base}: model {s['model']}, {s['tile_size']} px, {s['device']}"
        self._reblend()  # the sliders may have moved during the run

    # ------------------------------------------------------------------ re-blend

    def _reblend(self, *_: Any) -> None:
        """Re-blend the kept result for the current strength and star protection."""
        if self._run is None or not in_viewer(self._viewer, self._run.source):
            return
        wanted = tuple(option_values(self.controls, OUTPUT).values())
        if wanted != self._shown:
            self._reblender.request(self._run.result, self._run.image, *wanted)

    @shows_value_errors
    def _mask_changed(self, *_: Any) -> None:
        """Use the newly chosen mask layer for the kept result (None: the engine's mask)."""
        if self._run is None or self.task.running:
            return
        mask_layer = unwrap(self.star_mask.value)
        mask = _mask_data(mask_layer, self._run.result.plane_map.plane_shape)
        self._run.result.star_mask = mask
        self._run.mask_name = None if mask_layer is None else mask_layer.name
        self._shown = None
        self._reblend()

    def _show(self, blended: _Blend) -> None:
        """Write the denoised and residual layers for one blend of the current run."""
        run = self._run
        if run is None or blended.result is not run.result:
            return  # a re-blend of an earlier run
        if not in_viewer(self._viewer, run.source):
            return  # the input was removed (or the viewer is closing)
        prov = run.result.provenance(
            strength=blended.strength, star_protection=blended.star_protection
        )
        if run.mask_name is not None and blended.star_protection > 0:
            prov["history"].append(f"star protection mask: napari layer '{run.mask_name}'")
        self._write(run, blended.output, prov, "denoised")
        residual_prov = {**prov, "history": [*prov["history"], RESIDUAL_NOTE]}
        self._write(run, blended.residual, residual_prov, "residual")
        self._shown = (blended.strength, blended.star_protection)

    def _write(self, run: _Run, data: np.ndarray, provenance: dict, role: str) -> None:
        metadata = {**run.metadata, "astrodenoise": provenance, ROLE: role}
        display = run.display if role == "denoised" else ({} if run.rgb else {"colormap": "gray"})
        layer, created = upsert_image(
            self._viewer,
            f"{run.base} {role}",
            data,
            place=run.place,
            metadata=metadata,
            rgb=run.rgb,
            **display,
        )
        if created and role == "residual":
            set_signed_contrast(layer)


def _display_of(layer: Any) -> dict[str, Any]:
    """Contrast, gamma and colormap of the input: the denoised layer is shown the same way."""
    display = {"contrast_limits": tuple(layer.contrast_limits), "gamma": float(layer.gamma)}
    if not layer.rgb:
        display["colormap"] = layer.colormap
    return display
