"""The Tile overlap widget: the tile grid as a shapes layer and the tile-seam diagnostic."""

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
    Debouncer,
    Panel,
    ProgressLine,
    Task,
    channel_axis,
    engine_planes,
    find_layer,
    image_hw,
    in_viewer,
    placement,
    set_signed_contrast,
    shows_value_errors,
    signed_colormap,
    unwrap,
    upsert_image,
)
from napari_astrodenoise._widgets._models import ModelPicker
from napari_astrodenoise._widgets._options import option_controls, option_values
from napari_astrodenoise.core.options import option

#: the tiling options that place tiles (the blend sigma only weighs them)
_GEOMETRY = tuple(option(name) for name in ("tile_size", "overlap", "blend"))

#: line colours: where tiles start, where they end, where one ends and the next starts
EDGE_COLORS = {"start": "cyan", "end": "yellow", "both": "white"}


def grid_lines(
    hw: tuple[int, int], *, tile_size: int, overlap: float, blend: str
) -> tuple[list[np.ndarray], list[str]]:
    """Every tile edge of a tiled run as a line across the image.

    Parameters
    ----------
    hw : tuple of int
        (H, W) of the image.
    tile_size, overlap, blend
        As for ``core.tiling.tile_grid``.

    Returns
    -------
    lines : list of ndarray
        (2, 2) (row, col) end points in data coordinates, on pixel edges (pixel centres are
        integers, so a tile over rows y0..y1-1 spans y0 - 0.5 .. y1 - 0.5).
    kinds : list of str
        ``"start"``, ``"end"`` or ``"both"`` per line: overlaps lie between an ``"end"``
        line and the ``"start"`` line before it.
    """
    from napari_astrodenoise.core.tiling import tile_grid

    h, w = hw
    boxes = tile_grid(hw, tile_size=tile_size, overlap=overlap, blend=blend)
    rows, cols = _edges(boxes, 0), _edges(boxes, 1)
    lines = [np.array([[y - 0.5, -0.5], [y - 0.5, w - 0.5]]) for y, _ in rows]
    lines += [np.array([[-0.5, x - 0.5], [h - 0.5, x - 0.5]]) for x, _ in cols]
    return lines, [kind for _, kind in rows + cols]


def _edges(boxes: list[tuple[int, int, int, int]], axis: int) -> list[tuple[int, str]]:
    """Distinct tile edges along an axis (0: rows, 1: columns) and their kinds."""
    starts = {box[axis] for box in boxes}
    ends = {box[axis + 2] for box in boxes}
    kinds = {p: "start" for p in starts} | {p: "end" for p in ends - starts}
    kinds |= {p: "both" for p in starts & ends}
    return sorted(kinds.items())


@dataclass
class _SeamRequest:
    base: str
    source: weakref.ref
    image: Any  # the layer's data, read in the worker
    channel_axis: int | None
    bayer: bool
    place: dict[str, Any]
    metadata: dict
    tile_size: int
    overlap: float
    blend: str


def seam_job(request: _SeamRequest, *, picker: ModelPicker, spec: tuple[str, str]):
    """Worker body: seam maps for the chosen tiling and for naive tiling (blend "none")."""
    from napari_astrodenoise.core.pipeline import iter_seam_map
    from napari_astrodenoise.core.progress import relay

    loaded = picker.load(spec)
    common = {
        "model": loaded,
        "tile_size": request.tile_size,
        "overlap": request.overlap,
        "device": spec[1],
        "channel_axis": request.channel_axis,
        "bayer": request.bayer,
    }
    image = np.asarray(request.image)  # in the worker: the layer's data may be lazy
    blends = [request.blend] if request.blend == "none" else [request.blend, "none"]
    reports = []
    for i, blend in enumerate(blends):
        # progress per batch of tiles, both runs on one 0..1000 scale
        report = yield from relay(
            iter_seam_map(image, blend=blend, **common),
            lambda item, i=i: (round(1000 * (i + item[0] / item[1]) / len(blends)), 1000),
        )
        reports.append(report)
    current, naive = reports[0], reports[-1]
    return request, current, naive


def seam_layer_data(diff: np.ndarray, axis: int | None) -> np.ndarray:
    """The seam map (the input's layout) as a layer: colour (H, W, 3) averaged to (H, W)."""
    return diff.mean(axis=-1) if axis == -1 else diff


def seam_text(current: Any, naive: Any) -> str:
    """The verdict in words, then the seam numbers in units of the noise sigma."""
    from napari_astrodenoise.core.diagnostics import seam_verdict

    return (
        f"Seams {seam_verdict(current.seam_sigma)} ({current.blend}, {current.tile_size} px, "
        f"overlap {current.overlap:.2f}); naive tiling {naive.seam_sigma:.3f} σ"
    )


def seam_estimate(hw: tuple[int, int], tiling: dict[str, Any]) -> str:
    """What a measurement costs, said before it starts: network passes over how many tiles."""
    tiles = _count(hw, tiling)
    passes = 2 if tiling["blend"] == "none" else 4  # each tiling and its reference
    return (
        f"measuring: {passes} passes of the model over {tiles} tiles of "
        f"{tiling['tile_size']} px (about {passes} times a denoising run)..."
    )


def _seam_metadata(request: _SeamRequest, current: Any, naive: Any) -> dict:
    cards = {
        "ADSEAM": (float(current.seam_sigma), "tile seam RMS, noise sigmas"),
        "ADSEAMNV": (float(naive.seam_sigma), "naive tiling seam RMS, noise sigmas"),
        "ADTILE": (request.tile_size, "tile size, px"),
        "ADOVERLP": (request.overlap, "tile overlap fraction"),
        "ADBLEND": (request.blend, "tile blending"),
    }
    history = [
        f"napari-astrodenoise tile-seam map of '{request.base}': {seam_text(current, naive)}"
    ]
    return {
        **request.metadata,
        "astrodenoise": {"provenance": cards, "history": history},
        ROLE: "seam diff",
        "astrodenoise_seams": {
            "seam_sigma": float(current.seam_sigma),
            "naive_seam_sigma": float(naive.seam_sigma),
            "peak_sigma": float(current.peak_sigma),
            "noise_sigma": float(current.noise_sigma),
            "reference": current.reference,
        },
    }


class TileOverlapWidget(Panel):
    """Tile size, overlap and blend: the grid over the image and how visible its seams are.

    "Draw tile grid" adds ``<name> tiles`` (a shapes layer over the image, redrawn when the
    settings change); "Measure seams" runs the engine's seam diagnostic in a thread, adds
    ``<name> seam diff`` and shows the seam strength in noise sigmas for these settings and
    for naive tiling.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._viewer = viewer
        super().__init__()
        self.image = self.add_layer_choice("Image")
        self.picker = self.add(ModelPicker())
        self.controls = {name: self.add(w) for name, w in option_controls(_GEOMETRY).items()}
        self.grid_button = self.add(
            PushButton(text="Draw tile grid", tooltip="Draw where the tiles and overlaps fall")
        )
        self.tiles = self.add(Label(value=""))
        self.measure_button = self.add(
            PushButton(
                text="Measure seams",
                tooltip="Run the model several times to see how visible tile edges are (slow: "
                "about four denoising runs; the bar shows the time left)",
            )
        )
        self.cancel_button = self.add(PushButton(text="Cancel", enabled=False))
        self.progress = self.add(ProgressLine(""))
        self.seams = self.add(Label(value=""))
        self.task = Task(
            "Seam measurement", returned=self._measured, state=self._running, line=self.progress
        )
        self._redraw = Debouncer(100, self._refresh_grid, parent=self.native)
        for widget in (*self.controls.values(), self.image):
            widget.changed.connect(self._redraw)
        self.grid_button.changed.connect(self.draw_grid)
        self.measure_button.changed.connect(self.measure)
        self.cancel_button.changed.connect(self.task.cancel)

    @property
    def busy(self) -> bool:
        """True while seams are being measured."""
        return self.task.running

    def _tiling(self) -> dict[str, Any]:
        return option_values(self.controls, _GEOMETRY)

    # ------------------------------------------------------------------ grid

    @shows_value_errors
    def draw_grid(self, *_: Any) -> None:
        """Add or redraw ``<name> tiles`` for the current settings."""
        layer = unwrap(self.image.value)
        channel_axis(layer)
        hw = image_hw(layer)
        lines, kinds = grid_lines(hw, **self._tiling())
        self._replace_grid(layer, lines, kinds, max(1.0, min(hw) / 400))
        self.tiles.value = f"{_count(hw, self._tiling())} tiles"

    def _refresh_grid(self) -> None:
        layer = unwrap(self.image.value)
        if layer is not None and find_layer(self._viewer, f"{layer.name} tiles") is not None:
            self.draw_grid()

    def _replace_grid(self, layer: Any, lines: list, kinds: list, width: float) -> None:
        name = f"{layer.name} tiles"
        old = find_layer(self._viewer, name)
        index = None if old is None else list(self._viewer.layers).index(old)
        if old is not None:
            self._viewer.layers.remove(old)
        shapes = self._viewer.add_shapes(
            lines,
            shape_type="line",
            name=name,
            edge_color=[EDGE_COLORS[k] for k in kinds],
            edge_width=width,
            features={"edge": kinds},
            metadata={ROLE: "tile grid", **self._tiling()},
            **placement(layer, 2),
        )
        if index is not None:
            self._viewer.layers.move(list(self._viewer.layers).index(unwrap(shapes)), index)

    # ------------------------------------------------------------------ seams

    @shows_value_errors
    def measure(self, *_: Any) -> None:
        """Measure the tile seams of the current settings in a thread."""
        if self.task.running:
            return
        layer = unwrap(self.image.value)
        layout = engine_planes(layer)
        spec = self.picker.spec()
        request = _SeamRequest(
            base=layer.name,
            source=weakref.ref(layer),
            image=layer.data,
            **layout,
            place=placement(layer, None if layout["channel_axis"] == 0 else 2),
            metadata=dict(layer.metadata),
            **self._tiling(),
        )
        self.seams.value = seam_estimate(image_hw(layer), self._tiling())
        self.task.start(
            lambda: seam_job(request, picker=self.picker, spec=spec),
            description=f"Measuring tile seams of {layer.name}",
        )

    def _running(self, running: bool) -> None:
        self.measure_button.enabled = not running
        self.cancel_button.enabled = running
        if not running and self.seams.value.startswith("measuring"):
            self.seams.value = ""

    def _measured(self, value: tuple) -> None:
        request, current, naive = value
        if not in_viewer(self._viewer, request.source):
            self.seams.value = ""
            return  # the image was removed (or the viewer is closing)
        layer, _ = upsert_image(
            self._viewer,
            f"{request.base} seam diff",
            seam_layer_data(current.diff, request.channel_axis),
            place=request.place,
            metadata=_seam_metadata(request, current, naive),
            colormap=signed_colormap(),
        )
        set_signed_contrast(layer)
        self.seams.value = seam_text(current, naive)


def _count(hw: tuple[int, int], tiling: dict[str, Any]) -> int:
    from napari_astrodenoise.core.tiling import count_tiles

    return count_tiles(hw, **tiling)
