"""Artifact annotations: categories and notes on points, CSV and DS9 round trips, 1-based DS9."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.wcs import WCS

from napari_astrodenoise._widgets._annotation_io import (
    CATEGORIES,
    Annotations,
    read_csv,
    read_ds9,
    write_csv,
    write_ds9,
)
from napari_astrodenoise._widgets._annotations import AnnotationWidget, layer_annotations


def _wcs() -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crpix = [40.0, 30.0]
    wcs.wcs.crval = [250.42, 36.46]
    wcs.wcs.cdelt = [-2.8e-4, 2.8e-4]
    return wcs


def _sample() -> Annotations:
    return Annotations(
        positions=[[20.0, 10.0], [3.5, 70.25], [59.0, 0.0]],
        category=["hot pixel", "tile seam", "invented structure"],
        note=["", 'bright, "odd" pixel', "arc near the {core}"],
    )


@pytest.mark.parametrize("wcs", [None, _wcs()], ids=["pixels", "wcs"])
def test_csv_round_trip(tmp_path, wcs):
    original = _sample()
    path = write_csv(tmp_path / "a.csv", original, wcs)
    back = read_csv(path, wcs)
    np.testing.assert_allclose(back.positions, original.positions)
    assert back.category == original.category and back.note == original.note
    header = path.read_text().splitlines()[0].split(",")
    assert header[:4] == ["row", "col", "x_image", "y_image"]
    assert ("ra_deg" in header) == (wcs is not None)


def test_csv_image_columns_are_one_based(tmp_path):
    path = write_csv(tmp_path / "a.csv", _sample())
    first = path.read_text().splitlines()[1].split(",")
    assert first[:4] == ["20.0", "10.0", "11.0", "21.0"]  # x = col + 1, y = row + 1


def test_csv_with_only_sky_columns_needs_the_wcs(tmp_path):
    import pandas as pd

    wcs = _wcs()
    table = pd.read_csv(write_csv(tmp_path / "a.csv", _sample(), wcs))
    table[["ra_deg", "dec_deg", "category", "note"]].to_csv(tmp_path / "sky.csv", index=False)
    back = read_csv(tmp_path / "sky.csv", wcs)
    np.testing.assert_allclose(back.positions, _sample().positions, atol=1e-6)
    with pytest.raises(ValueError, match="no WCS"):
        read_csv(tmp_path / "sky.csv", None)


@pytest.mark.parametrize("wcs", [None, _wcs()], ids=["pixels", "wcs"])
def test_ds9_round_trip(tmp_path, wcs):
    original = _sample()
    path = write_ds9(tmp_path / "a.reg", original, wcs)
    text = path.read_text()
    assert ("icrs" in text) == (wcs is not None) and ("image" in text) == (wcs is None)
    back = read_ds9(path, wcs)
    # regions writes 8 decimals of a degree: 4e-5 arcsec, 1e-4 px at 1 arcsec/px
    np.testing.assert_allclose(back.positions, original.positions, atol=1e-4)
    assert back.category == original.category
    assert back.note == ["", 'bright, "odd" pixel', "arc near the (core)"]  # DS9 has no {}


def test_ds9_image_coordinates_are_one_based(tmp_path):
    path = write_ds9(tmp_path / "a.reg", _sample())
    assert "point(11.00000000,21.00000000)" in path.read_text()
    (tmp_path / "ds9.reg").write_text(
        "# Region file format: DS9 version 4.1\n"
        "image\n"
        "point(11,21) # point=x text={hand made} tag={satellite trail}\n"
        "circle(5,6,3) # tag={Ringing or halo}\n"
        "polygon(1,1,5,1,5,5)\n"
    )
    back = read_ds9(tmp_path / "ds9.reg")
    np.testing.assert_allclose(back.positions, [[20.0, 10.0], [5.0, 4.0]])
    assert back.category == ["satellite trail", "ringing or halo"]
    assert back.note == ["hand made", ""]


def test_sky_regions_without_a_wcs_are_refused(tmp_path):
    path = write_ds9(tmp_path / "a.reg", _sample(), _wcs())
    with pytest.raises(ValueError, match="no WCS"):
        read_ds9(path, None)


@pytest.fixture
def viewer(make_napari_viewer, star_field, flip):
    viewer = make_napari_viewer()
    image = star_field((60, 80))
    viewer.add_image(image, name="field", metadata={"wcs": _wcs()}, **flip(image.shape))
    return viewer


def test_new_points_take_the_chosen_category_and_note(viewer, dock):
    w = dock(viewer, "Annotate artifacts")
    assert isinstance(w, AnnotationWidget)
    layer = w.new_layer()
    assert layer.name == "field artifacts"
    np.testing.assert_array_equal(layer.scale, viewer.layers["field"].scale)
    assert list(layer.features["category"].cat.categories) == list(CATEGORIES)
    w.category.value = "satellite trail"
    w.note.value = "streak"
    layer.add([[10.0, 12.0]])
    w.category.value = "hot pixel"
    w.note.value = ""
    layer.add([[30.0, 40.0]])
    found = layer_annotations(layer)
    assert found.category == ["satellite trail", "hot pixel"]
    assert found.note == ["streak", ""]
    layer.selected_data = {0}
    w.category.value = "other"
    w.apply_to_selected()
    assert layer_annotations(layer).category == ["other", "hot pixel"]


@pytest.mark.parametrize("suffix", [".csv", ".reg"])
def test_widget_export_then_import_round_trips(viewer, dock, tmp_path, suffix):
    w = dock(viewer, "Annotate artifacts")
    layer = w.new_layer()
    for category, note, point in (
        ("tile seam", "vertical seam", [5.0, 64.0]),
        ("ringing or halo", "", [33.25, 17.5]),
    ):
        w.category.value, w.note.value = category, note
        layer.add([point])
    path = w.export(tmp_path / f"marks{suffix}")
    assert path is not None and path.exists()
    viewer.layers.remove(layer)
    w.reset_choices()
    back = w.import_(path)
    assert back is not layer and back.name == "field artifacts"
    got, want = layer_annotations(back), layer_annotations(layer)
    np.testing.assert_allclose(got.positions, want.positions, atol=1e-4)
    assert got.category == want.category and got.note == want.note


def test_a_bad_file_is_an_error_notification(viewer, dock, tmp_path, notifications):
    w = dock(viewer, "Annotate artifacts")
    w.new_layer()
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    assert w.import_(tmp_path / "bad.csv") is None
    assert notifications[-1][0] == "error" and "no position columns" in notifications[-1][1]
    assert w.export(tmp_path / "marks.txt") is None
    assert "use a .csv file" in notifications[-1][1]
