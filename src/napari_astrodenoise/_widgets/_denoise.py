"""The Denoise widget: a short panel over iter_denoise; the denoised layer shown first."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import napari
import napari.layers
import napari.viewer
import numpy as np
from magicgui.widgets import CheckBox, Container, Label, PushButton, create_widget

from napari_astrodenoise._widgets._common import (
    ROLE,
    LatestRunner,
    Panel,
    ProgressLine,
    Task,
    astro_stretch,
    channel_axis,
    engine_planes,
    find_layer,
    image_hw,
    in_viewer,
    notify_info,
    notify_warning,
    placement,
    set_signed_contrast,
    share_display,
    shows_value_errors,
    signed_colormap,
    unwrap,
    upsert_image,
)
from napari_astrodenoise._widgets._models import ModelPicker
from napari_astrodenoise._widgets._options import option_controls, option_values
from napari_astrodenoise.core.checks import image_warnings
from napari_astrodenoise.core.options import DENOISE, OUTPUT, option
from napari_astrodenoise.core.provenance import phrase
from napari_astrodenoise.core.weights import model_options
from napari_astrodenoise.settings import auto_stretch as auto_stretch_setting
from napari_astrodenoise.settings import set_auto_stretch

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


ADVANCED_NOTE = "The defaults are safe for most images: change these only to experiment."
IMAGE_TIP = "The image layer to denoise: a linear (unstretched) frame or stack, mono or colour"
MASK_TIP = (
    "Optional: a star mask layer (from the Star mask widget) for Star protection; "
    "none lets the engine find the stars itself"
)
SHOWN = ("strength", "star_protection")


#: how the status line starts when the chosen model brings its own options
MODEL_OWN = "this model runs with"


class DenoiseWidget(Panel):
    """Denoise an image layer with the ResUNet, tile by tile, in a background thread.

    Shown: the image, the model, strength and star protection, Run and Cancel, a progress
    bar; every other option sits in a collapsed "Advanced" section. Results are the layers
    ``<name> denoised`` (on top, selected, shown through the input's display) and
    ``<name> residual`` (input minus output, hidden, diverging colours centred on 0), placed
    over the input and carrying its metadata plus ``"astrodenoise"`` provenance; a new run
    updates them in place. Strength and star protection re-blend the kept result of the
    image that was run, at once, without the network.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._viewer = viewer
        super().__init__()
        self.image = self.add_layer_choice("Image")
        self.image.tooltip = IMAGE_TIP
        self.picker = self.add(ModelPicker(show_device=False))
        self.controls = option_controls(DENOISE)
        for name in SHOWN:
            self.add(self.controls[name])
        self.run_button = self.add(PushButton(text="Run", tooltip="Denoise the chosen image"))
        self.cancel_button = self.add(
            PushButton(text="Cancel", enabled=False, tooltip="Stop the run; nothing changes")
        )
        self.progress = self.add(ProgressLine("tiles"))
        self.status = self.add(Label(value=""))
        self.compare_button = self.add(
            PushButton(
                text="Before / after",
                enabled=False,
                tooltip="Flip between your image and the denoised one (the same display)",
            )
        )
        self.advanced_button = self.add(
            PushButton(text="▸ Advanced", tooltip="Tiling, safeguards, device and display")
        )
        self.advanced = self.add(self._advanced_section())
        self.task = Task(
            "Denoising", returned=self._finished, state=self._running, line=self.progress
        )
        self._reblender = LatestRunner(reblend, self._show)
        self._run: _Run | None = None
        self._shown: tuple[float, float] | None = None
        self._model_set: set[str] = set()  # options the chosen model set in the controls
        self._connect()

    def _advanced_section(self) -> Container:
        """The collapsed section: every option but strength and star protection, and more."""
        self.star_mask = create_widget(
            label="Star mask", annotation=napari.layers.Image | None, value=None
        )
        self.star_mask.tooltip = MASK_TIP
        self.auto_stretch = CheckBox(
            label="Astro display for new images",
            value=auto_stretch_setting(),
            tooltip="Show every image opened or made with the astro auto-stretch (display "
            "only, the data are never changed); saved for the next session",
        )
        self.stretch_button = PushButton(
            text="Astro stretch again",
            tooltip="Re-apply the astro display to the chosen image and its denoised layer",
        )
        widgets = [Label(value=ADVANCED_NOTE), self.star_mask]
        widgets += [self.controls[o.name] for o in DENOISE if o.name not in SHOWN]
        widgets += [self.picker.device, self.auto_stretch, self.stretch_button]
        for name, control in self.controls.items():
            if name not in SHOWN:  # widget.tile_size etc., as for the controls shown
                setattr(self, name, control)
        section = Container(widgets=widgets, labels=True)
        section.margins = (0, 0, 0, 0)
        section.visible = False
        return section

    def _connect(self) -> None:
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.task.cancel)
        self.compare_button.changed.connect(self.toggle_before_after)
        self.advanced_button.changed.connect(self.toggle_advanced)
        self.auto_stretch.changed.connect(set_auto_stretch)
        self.stretch_button.changed.connect(self.stretch_again)
        for o in OUTPUT:  # strength and star protection re-blend without the network
            self.controls[o.name].changed.connect(self._reblend)
        self.star_mask.changed.connect(self._mask_changed)
        self.picker.model.changed.connect(self._model_changed)
        self.picker.model_file.changed.connect(self._model_changed)
        self._model_changed()

    def _model_changed(self, *_: Any) -> None:
        """The chosen model's own options (a fine-tuned model's flux lock) fill the controls.

        Options the previous model carried go back to their defaults; the status line says
        which of the model's options differ from the defaults.
        """
        try:
            own = model_options(self.picker.spec()[0])
        except ValueError:  # no model file chosen yet
            own = {}
        for name in self._model_set | set(own):
            self.controls[name].value = own.get(name, option(name).default)
        self._model_set = set(own)
        changed = {k: v for k, v in own.items() if v != option(k).default}
        if changed:
            said = ", ".join(
                f"{option(k).history} off" if v == option(k).off else phrase(option(k), v)
                for k, v in changed.items()
            )
            self.status.value = f"{MODEL_OWN} {said} (measured when it was fine-tuned)"
        elif self.status.value.startswith(MODEL_OWN):
            self.status.value = ""

    def reset_choices(self, *args: Any) -> None:
        """Refresh the layer lists, the Advanced section's star mask chooser included."""
        super().reset_choices(*args)
        self.star_mask.reset_choices(*args)

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
        self.status.value = ""  # nothing of an earlier run stays on screen
        job, name, warnings = self._prepare()
        for warning in warnings:
            notify_warning(f"'{name}': {warning}")
        self.status.value = f"denoising {name}..."
        self.task.start(job, description=f"Denoising {name}")

    def _prepare(self) -> tuple[Any, str, list[str]]:
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
        warnings = image_warnings(np.asarray(layer.data), channel_axis=layout["channel_axis"])

        def job():
            return _denoise_job(run, picker=self.picker, spec=spec, options=options, mask=mask)

        return job, run.base, warnings

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
        self._present(run)
        s = run.result.settings
        self.status.value = f"{run.base}: model {s['model']}, {s['tile_size']} px, {s['device']}"
        self._reblend()  # the sliders may have moved during the run

    def _present(self, run: _Run) -> None:
        """The result first: denoised on top and selected, the residual hidden under it."""
        layers = self._viewer.layers
        denoised = find_layer(self._viewer, f"{run.base} denoised")
        residual = find_layer(self._viewer, f"{run.base} residual")
        if denoised is None:
            return
        if residual is not None:
            residual.visible = False
            layers.move(list(layers).index(residual), len(layers))
        layers.move(list(layers).index(denoised), len(layers))
        denoised.visible = True
        source = run.source()
        if source is not None:
            share_display(source, denoised)
        layers.selection.active = denoised
        self.compare_button.enabled = True

    # ------------------------------------------------------------------ view

    def toggle_before_after(self, *_: Any) -> bool:
        """Show the input (before) or the denoised layer (after) of the last run.

        Returns
        -------
        bool
            True when the denoised layer is now shown.
        """
        run = self._run
        denoised = None if run is None else find_layer(self._viewer, f"{run.base} denoised")
        source = None if run is None else run.source()
        if denoised is None or source is None or not in_viewer(self._viewer, source):
            notify_info("run the denoiser first: there is no before and after yet")
            return False
        source.visible = True
        denoised.visible = not denoised.visible
        shown = "after (denoised)" if denoised.visible else "before (your image)"
        self.status.value = f"{run.base}: showing {shown}"
        return bool(denoised.visible)

    @property
    def advanced_open(self) -> bool:
        """Whether the Advanced section is open (it starts collapsed)."""
        return not self.advanced.native.isHidden()

    def toggle_advanced(self, *_: Any) -> None:
        """Open or close the Advanced section."""
        opened = not self.advanced_open
        self.advanced.visible = opened
        self.advanced_button.text = ("▾" if opened else "▸") + " Advanced"

    @shows_value_errors
    def stretch_again(self, *_: Any) -> None:
        """Astro-stretch the chosen image; its denoised layer shares the same display."""
        layer = unwrap(self.image.value)
        channel_axis(layer)
        astro_stretch(layer)
        denoised = find_layer(self._viewer, f"{layer.name} denoised")
        if isinstance(denoised, napari.layers.Image):
            share_display(layer, denoised)

    # ------------------------------------------------------------------ re-blend

    def _reblend(self, *_: Any) -> None:
        """Re-blend the kept result for the current strength and star protection.

        It always acts on the image that was run, whatever the Image choice is now; the
        status line says so when the choice has moved to another image.
        """
        if self._run is None or not in_viewer(self._viewer, self._run.source):
            return
        chosen = unwrap(self.image.value)
        if chosen is not None and chosen is not self._run.source():
            self.status.value = (
                f"Strength acts on '{self._run.base}', the image that was run; "
                f"press Run to denoise '{chosen.name}'"
            )
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
        display = run.display if role == "denoised" else _residual_display(run.rgb)
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


def _residual_display(rgb: bool) -> dict[str, Any]:
    """A new residual layer: hidden, in diverging colours (mono) centred on 0."""
    return {"visible": False} if rgb else {"visible": False, "colormap": signed_colormap()}


def _display_of(layer: Any) -> dict[str, Any]:
    """Contrast, gamma and colormap of the input: the denoised layer is shown the same way."""
    display = {"contrast_limits": tuple(layer.contrast_limits), "gamma": float(layer.gamma)}
    if not layer.rgb:
        display["colormap"] = layer.colormap
    return display
