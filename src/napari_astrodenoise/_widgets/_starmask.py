"""The Star mask widget: threshold, dilation, feather; an overlay made when asked, in a thread."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import napari
import napari.layers
import napari.viewer
import numpy as np
from magicgui.widgets import (
    CheckBox,
    FloatSlider,
    Label,
    PushButton,
    SpinBox,
)

from napari_astrodenoise._widgets._common import (
    ROLE,
    Debouncer,
    LatestRunner,
    Panel,
    channel_axis,
    in_viewer,
    placement,
    shows_value_errors,
    unwrap,
    upsert_image,
)

#: delay after the last slider move before the preview is recomputed
PREVIEW_DELAY_MS = 250
OVERLAY = {"colormap": "magenta", "blending": "additive", "opacity": 0.5}


@dataclass
class _Request:
    """One mask to compute: the input as it was when asked, and the parameters."""

    base: str
    source: weakref.ref
    image: Any  # the layer's data, read in the worker
    channel_axis: int | None
    place: dict[str, Any]
    metadata: dict
    threshold: float
    dilation: int
    feather: float


@dataclass
class _Mask:
    request: _Request
    mask: np.ndarray
    count: int


def compute_mask(request: _Request) -> _Mask:
    """Worker body: the soft mask and the number of stars detected (core.starmask)."""
    from napari_astrodenoise.core.starmask import detect_stars, mask_from_detections

    image = np.asarray(request.image)  # in the worker: the layer's data may be lazy
    found = detect_stars(image, channel_axis=request.channel_axis, threshold=request.threshold)
    mask = mask_from_detections(found, dilation=request.dilation, feather=request.feather)
    return _Mask(request, mask, int(found.count))


def mask_provenance(request: _Request, count: int) -> dict:
    """FITS cards and HISTORY of a star mask, for the FITS writer."""
    return {
        "provenance": {
            "ADSMTHR": (request.threshold, "star mask threshold, noise sigmas"),
            "ADSMDIL": (request.dilation, "star mask dilation, px"),
            "ADSMFTH": (request.feather, "star mask feather sigma, px"),
            "ADNSTARS": (count, "stars detected"),
        },
        "history": [
            f"napari-astrodenoise star mask of '{request.base}': {count} stars above "
            f"{request.threshold:g} sigma, dilation {request.dilation} px, "
            f"feather {request.feather:g} px"
        ],
    }


class StarMaskWidget(Panel):
    """Soft star mask of an image layer, shown as ``<name> star mask`` when asked.

    Nothing is drawn until the user presses "Make mask layer" or turns "Live preview" on.
    The mask is computed in a worker thread, a moment after the last parameter change, so
    the viewer stays responsive on large images; the newest settings always win. The mask
    layer is what the Denoise widget's "Star mask" choice takes.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._viewer = viewer
        super().__init__()
        self.image = self.add_layer_choice("Image")
        self.image.tooltip = "The image whose stars the mask covers"
        self.threshold = self.add(
            FloatSlider(
                label="Threshold (σ)",
                min=1.0,
                max=30.0,
                step=0.5,
                value=5.0,
                tooltip="How bright a star must be to be masked, in noise sigmas: lower "
                "masks fainter stars",
            )
        )
        self.dilation = self.add(
            SpinBox(
                label="Dilation (px)",
                min=0,
                max=20,
                value=2,
                tooltip="Grow each star's mask by this many pixels, to cover its halo",
            )
        )
        self.feather = self.add(
            FloatSlider(
                label="Feather (px)",
                min=0.0,
                max=10.0,
                step=0.25,
                value=1.5,
                tooltip="Soften the mask's edge over this many pixels, so no ring shows",
            )
        )
        self.preview = self.add(
            CheckBox(
                label="Live preview",
                value=False,
                tooltip="Redraw the mask over the image after every change (off: only when "
                "you press Make mask layer)",
            )
        )
        self.make_button = self.add(
            PushButton(text="Make mask layer", tooltip="Compute the mask and show it as a layer")
        )
        self.count = self.add(Label(value=""))
        self._runner = LatestRunner(compute_mask, self._show)
        self._debounce = Debouncer(PREVIEW_DELAY_MS, self._live, parent=self.native)
        for widget in (self.image, self.threshold, self.dilation, self.feather, self.preview):
            widget.changed.connect(self._debounce)
        self.make_button.changed.connect(self.update_mask)

    @property
    def busy(self) -> bool:
        """True while a mask is being computed or waits to be."""
        return self._runner.busy or self._debounce.pending

    def _live(self) -> None:
        if self.preview.value:
            self.update_mask()

    @shows_value_errors
    def update_mask(self, *_: Any) -> None:
        """Compute the mask for the current settings in a thread; the layer follows."""
        request = self._request()
        self.count.value = "measuring..."
        self._runner.request(request)

    def _request(self) -> _Request:
        layer = unwrap(self.image.value)
        axis = channel_axis(layer)
        return _Request(
            base=layer.name,
            source=weakref.ref(layer),
            image=layer.data,
            channel_axis=axis,
            place=placement(layer, 2),
            metadata=dict(layer.metadata),
            threshold=float(self.threshold.value),
            dilation=int(self.dilation.value),
            feather=float(self.feather.value),
        )

    def _show(self, result: _Mask) -> None:
        request = result.request
        if not in_viewer(self._viewer, request.source):
            return  # the image was removed (or the viewer is closing)
        metadata = {
            **request.metadata,
            "astrodenoise": mask_provenance(request, result.count),
            ROLE: "star mask",
        }
        layer, _ = upsert_image(
            self._viewer,
            f"{request.base} star mask",
            result.mask,
            place=request.place,
            metadata=metadata,
            **OVERLAY,
        )
        layer.contrast_limits = (0.0, 1.0)
        self.count.value = f"{result.count} stars found ({request.threshold:g} σ)"
