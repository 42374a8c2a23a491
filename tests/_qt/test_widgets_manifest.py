"""Every widget of the manifest docks in a viewer and is the class the manifest names."""

from __future__ import annotations

import pytest
import yaml

from napari_astrodenoise._widgets._annotations import AnnotationWidget
from napari_astrodenoise._widgets._denoise import DenoiseWidget
from napari_astrodenoise._widgets._finetune import FinetuneWidget
from napari_astrodenoise._widgets._header import HeaderWidget
from napari_astrodenoise._widgets._side_by_side import SideBySideWidget
from napari_astrodenoise._widgets._starmask import StarMaskWidget
from napari_astrodenoise._widgets._tiles import TileOverlapWidget

WIDGETS = {
    "Denoise": DenoiseWidget,
    "Fine-tune": FinetuneWidget,
    "Star mask": StarMaskWidget,
    "Tile overlap": TileOverlapWidget,
    "Side by side": SideBySideWidget,
    "FITS header and sky position": HeaderWidget,
    "Annotate artifacts": AnnotationWidget,
}


def test_the_manifest_lists_these_widgets():
    from importlib.resources import files

    manifest = yaml.safe_load((files("napari_astrodenoise") / "napari.yaml").read_text())
    names = [w["display_name"] for w in manifest["contributions"]["widgets"]]
    assert names == list(WIDGETS)


@pytest.mark.parametrize("name", list(WIDGETS))
def test_widget_docks_from_the_manifest(make_napari_viewer, dock, star_field, name):
    viewer = make_napari_viewer()
    viewer.add_image(star_field((48, 48)), name="field")
    widget = dock(viewer, name)
    assert isinstance(widget, WIDGETS[name])
    assert viewer.window.add_plugin_dock_widget("napari-astrodenoise", name)[1] is widget
    first = getattr(widget, "image", None) or getattr(widget, "noisy", None) or widget.layers
    assert first.value is not None
