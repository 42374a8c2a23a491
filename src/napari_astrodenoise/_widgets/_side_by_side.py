"""Side by side: noisy, denoised, mask and seam diff in napari's grid mode, or as overlays."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import napari
import napari.layers
import napari.viewer
from magicgui.widgets import CheckBox, PushButton
from napari.experimental import link_layers, unlink_layers

from napari_astrodenoise._widgets._common import (
    Panel,
    astro_stretch,
    find_layer,
    share_display,
    shows_value_errors,
    unwrap,
)

#: the suffixes the other widgets give their layers, in grid order after the input
ROLES = ("denoised", "residual", "star mask", "seam diff")
LINKED = ("contrast_limits", "gamma")
#: how the star mask and the seam map lie over the image in `overlay`: both add light where
#: they are non-zero (the seam map's colormap is black at zero)
OVERLAY_BLENDING = ("additive", "additive")


def canvas_grid(viewer: Any) -> Any:
    """The viewer's grid model (``viewer.canvas.grid`` since napari 0.9, else ``viewer.grid``)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def grid_shape(n: int) -> tuple[int, int]:
    """Rows and columns for ``n`` cells: one row up to 2, then two rows."""
    return (1, max(n, 1)) if n <= 2 else (2, math.ceil(n / 2))


def _contrast_pair(layers: Sequence[Any]) -> list[Any]:
    """The first two layers when they can share contrast (images, both rgb or both not)."""
    pair = [unwrap(x) for x in layers[:2] if isinstance(x, napari.layers.Image)]
    if len(pair) == 2 and pair[0].rgb == pair[1].rgb:
        return pair
    return []


def side_by_side(viewer: Any, layers: Sequence[Any], *, astro: bool = True) -> dict[int, bool]:
    """Show ``layers`` one per grid cell, in order, with one camera; hide every other layer.

    ``layers`` are in grid order, typically (noisy, denoised, residual, star mask, seam diff); None
    entries are left out. The first two (noisy and denoised) share contrast limits and
    gamma: the second takes the first's (after the astro stretch of the first when
    ``astro``) and they stay linked until `overlay`.

    Returns
    -------
    dict
        ``id(layer) -> visible`` of every layer before, for `overlay` to restore.
    """
    chosen = [unwrap(x) for x in layers if x is not None]
    if not chosen:
        msg = "choose at least the noisy image"
        raise ValueError(msg)
    pair = _contrast_pair(layers[:2]) if None not in layers[:2] else []
    before = {id(unwrap(x)): bool(x.visible) for x in viewer.layers}
    for layer in chosen:  # grid cells follow the layer list: put them last, in order
        viewer.layers.move(list(viewer.layers).index(layer), len(viewer.layers))
    for layer in viewer.layers:
        layer.visible = any(layer is x for x in chosen)
    if pair:
        if astro:
            astro_stretch(pair[0])
        share_display(pair[0], pair[1])
        link_layers(pair, LINKED)
    grid = canvas_grid(viewer)
    grid.stride = 1
    grid.shape = grid_shape(len(chosen))
    grid.enabled = True
    viewer.reset_view()
    return before


def overlay(viewer: Any, layers: Sequence[Any], before: dict[int, bool] | None = None) -> None:
    """Back to one view: grid off, the layers stacked, the mask and seam map see-through.

    ``layers`` are (noisy, denoised, residual, star mask, seam diff), any of them None. The
    residual is hidden again; the mask and the seam map are blended additively at half
    opacity. Other layers get the visibility
    they had before `side_by_side`.
    """
    slots = [None if x is None else unwrap(x) for x in layers]
    chosen = [x for x in slots if x is not None]
    canvas_grid(viewer).enabled = False
    pair = _contrast_pair(slots[:2]) if None not in slots[:2] else []
    if pair:
        unlink_layers(pair, LINKED)
    before = before or {}
    for layer in viewer.layers:
        layer.visible = before.get(id(unwrap(layer)), bool(layer.visible))
    for layer in chosen:
        layer.visible = layer is not slots[2]
    for layer, blending in zip(slots[3:], OVERLAY_BLENDING, strict=False):
        if layer is not None:
            layer.opacity = 0.5
            layer.blending = blending
    viewer.reset_view()


class SideBySideWidget(Panel):
    """Lay out noisy, denoised, star mask and seam diff side by side, or back as overlays.

    Choosing the noisy image fills the other three from the layers the Denoise, Star mask
    and Tile overlap widgets made for it (``<name> denoised``, ``<name> star mask``,
    ``<name> seam diff``); any may be left empty.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._viewer = viewer
        super().__init__()
        self.noisy = self.add_layer_choice("Noisy")
        self.denoised = self.add_layer_choice("Denoised", optional=True)
        self.residual = self.add_layer_choice("Residual", optional=True)
        self.mask = self.add_layer_choice("Star mask", optional=True)
        self.seams = self.add_layer_choice("Seam diff", optional=True)
        self.astro = self.add(CheckBox(label="Astro stretch", value=True))
        self.grid_button = self.add(PushButton(text="Side by side"))
        self.overlay_button = self.add(PushButton(text="Overlay"))
        self._before: dict[int, bool] = {}
        self.noisy.changed.connect(self.fill_from_names)
        self.grid_button.changed.connect(self.show_grid)
        self.overlay_button.changed.connect(self.show_overlay)
        self.fill_from_names()

    def layers(self) -> list[Any]:
        """(noisy, denoised, residual, star mask, seam diff); None where nothing is chosen."""
        chosen = [self.noisy.value, self.denoised.value, self.residual.value]
        chosen += [self.mask.value, self.seams.value]
        return [None if x is None else unwrap(x) for x in chosen]

    def fill_from_names(self, *_: Any, only_empty: bool = False) -> None:
        """Pick ``<noisy> denoised``, ``residual``, ``star mask`` and ``seam diff``."""
        noisy = self.noisy.value
        if noisy is None:
            return
        for widget, role in zip(self._roles(), ROLES, strict=True):
            if only_empty and widget.value is not None:
                continue
            layer = find_layer(self._viewer, f"{noisy.name} {role}")
            if layer is not None and any(layer is unwrap(c) for c in widget.choices):
                widget.value = layer

    def _roles(self) -> tuple[Any, ...]:
        return (self.denoised, self.residual, self.mask, self.seams)

    def reset_choices(self, *args: Any) -> None:
        """Refresh the layer lists (napari calls this on layer changes); fill empty roles."""
        super().reset_choices(*args)
        self.fill_from_names(only_empty=True)

    @shows_value_errors
    def show_grid(self, *_: Any) -> None:
        """Grid mode with the chosen layers."""
        before = side_by_side(self._viewer, self.layers(), astro=bool(self.astro.value))
        if not self._before:  # keep the state from before the first of repeated grids
            self._before = before

    def show_overlay(self, *_: Any) -> None:
        """Overlays in one view, other layers as they were before the grid."""
        overlay(self._viewer, self.layers(), self._before)
        self._before = {}
