"""The Annotate artifacts widget: a points layer with a category and a note per point."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import napari
import napari.layers
import napari.viewer
import numpy as np
import pandas as pd
from magicgui.widgets import ComboBox, FileEdit, LineEdit, PushButton

from napari_astrodenoise._widgets._annotation_io import (
    CATEGORIES,
    COLORS,
    Annotations,
    export_annotations,
    import_annotations,
)
from napari_astrodenoise._widgets._common import (
    ROLE,
    Panel,
    find_layer,
    image_hw,
    notify_error,
    notify_info,
    placement,
    shows_value_errors,
    unwrap,
)


def features_table(category: list[str], note: list[str]) -> pd.DataFrame:
    """Points features: ``category`` (categorical over `CATEGORIES`) and ``note`` (text)."""
    return pd.DataFrame(
        {
            "category": pd.Categorical(category, categories=list(CATEGORIES)),
            "note": pd.Series(note, dtype=object),
        }
    )


def add_annotation_layer(viewer: Any, image: Any, *, category: str = "other") -> Any:
    """Add (or return the existing) ``<image> artifacts`` points layer over ``image``.

    The layer carries the image's WCS in its metadata for sky-coordinate export.
    """
    name = f"{image.name} artifacts"
    existing = find_layer(viewer, name)
    if isinstance(existing, napari.layers.Points):
        return existing
    size = max(6.0, min(image_hw(image)) / 50)
    layer = viewer.add_points(
        np.empty((0, 2)),
        ndim=2,
        name=name,
        features=features_table([], []),
        feature_defaults={"category": category, "note": ""},
        face_color="category",
        face_color_cycle=COLORS,
        symbol="ring",
        size=size,
        metadata={
            ROLE: "annotations",
            "image": image.name,
            "wcs": image.metadata.get("wcs"),
            "source_path": image.metadata.get("source_path"),
        },
        **placement(image, 2),
    )
    return unwrap(layer)


def layer_annotations(points: Any) -> Annotations:
    """The annotations of a points layer (positions in its data coordinates)."""
    features = points.features
    n = len(points.data)
    category = list(features["category"].astype(str)) if "category" in features else ["other"] * n
    note = [str(x) for x in features["note"]] if "note" in features else [""] * n
    return Annotations(np.asarray(points.data, dtype=np.float64)[:, -2:], category, note)


def set_layer_annotations(points: Any, annotations: Annotations) -> None:
    """Replace a points layer's points and features with ``annotations``."""
    defaults = dict(points.feature_defaults.iloc[0]) if len(points.feature_defaults) else {}
    points.selected_data = set()
    points.data = annotations.positions
    points.features = features_table(annotations.category, annotations.note)
    if defaults:
        points.feature_defaults = defaults
    points.refresh_colors(update_color_mapping=False)


class AnnotationWidget(Panel):
    """Mark artifacts with a category and a note; export and import CSV or DS9 regions.

    "New annotation layer" adds ``<image> artifacts`` (napari's points layer, in add mode);
    each new point takes the category and note set here. Export writes napari (row, col),
    DS9/FITS 1-based (x, y) and, when the image has a WCS, RA/Dec.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self._viewer = viewer
        super().__init__()
        self.image = self.add_layer_choice("Image")
        self.points = self.add_layer_choice("Annotations", napari.layers.Points, optional=True)
        self.category = self.add(ComboBox(label="Category", choices=CATEGORIES, value="other"))
        self.note = self.add(LineEdit(label="Note", value=""))
        self.new_button = self.add(PushButton(text="New annotation layer"))
        self.apply_button = self.add(PushButton(text="Apply to selected points"))
        self.file = self.add(
            FileEdit(label="File", mode="w", filter="CSV or DS9 regions (*.csv *.reg *.ds9)")
        )
        self.export_button = self.add(PushButton(text="Export"))
        self.import_button = self.add(PushButton(text="Import"))
        self.category.changed.connect(self._set_defaults)
        self.note.changed.connect(self._set_defaults)
        self.points.changed.connect(self._set_defaults)
        self.new_button.changed.connect(self.new_layer)
        self.apply_button.changed.connect(self.apply_to_selected)
        self.export_button.changed.connect(lambda: self.export(self.file.value))
        self.import_button.changed.connect(lambda: self.import_(self.file.value))

    def _layer(self) -> Any:
        layer = unwrap(self.points.value)
        if layer is None:
            msg = "choose an annotation layer, or make one with 'New annotation layer'"
            raise ValueError(msg)
        return layer

    def _wcs(self, points: Any) -> Any:
        wcs = points.metadata.get("wcs")
        if wcs is None and self.image.value is not None:
            wcs = self.image.value.metadata.get("wcs")
        return wcs

    def _set_defaults(self, *_: Any) -> None:
        layer = unwrap(self.points.value)
        if layer is not None and {"category", "note"} <= set(layer.features.columns):
            layer.feature_defaults = {"category": self.category.value, "note": self.note.value}

    def new_layer(self, *_: Any) -> Any:
        """Add ``<image> artifacts`` for the chosen image and start adding points."""
        image = unwrap(self.image.value)
        if image is None:
            notify_error("choose an image layer first")
            return None
        layer = add_annotation_layer(self._viewer, image, category=self.category.value)
        self.reset_choices()
        self.points.value = layer
        self._set_defaults()
        self._viewer.layers.selection.active = layer
        layer.mode = "add"
        return layer

    @shows_value_errors
    def apply_to_selected(self, *_: Any) -> None:
        """Give the selected points the current category and note."""
        layer = self._layer()
        chosen = sorted(layer.selected_data)
        if not chosen:
            notify_info("select points first (select mode, click or drag)")
            return
        features = layer.features.copy()
        features.loc[chosen, "category"] = self.category.value
        features.loc[chosen, "note"] = self.note.value
        layer.features = features
        self._set_defaults()
        layer.refresh_colors(update_color_mapping=False)

    def export(self, path: str | Path) -> Path | None:
        """Write the chosen layer's annotations (CSV or DS9 by the suffix)."""
        try:
            layer = self._layer()
            written = export_annotations(path, layer_annotations(layer), self._wcs(layer))
        except (ValueError, OSError) as err:
            notify_error(f"export failed: {err}")
            return None
        notify_info(f"{len(layer.data)} annotations written to {written}")
        return written

    def import_(self, path: str | Path) -> Any:
        """Add the annotations of a CSV or DS9 file to the chosen layer (or a new one)."""
        layer = unwrap(self.points.value)
        if layer is None:
            layer = self.new_layer()
        if layer is None:
            return None
        try:
            found = import_annotations(path, self._wcs(layer))
        except Exception as err:  # a user's file: any parse failure becomes a message
            notify_error(f"import failed: {err}")
            return None
        have = layer_annotations(layer)
        set_layer_annotations(
            layer,
            Annotations(
                np.concatenate([have.positions, found.positions]),
                have.category + found.category,
                have.note + found.note,
            ),
        )
        notify_info(f"{len(found)} annotations read from {Path(path).name}")
        return layer
