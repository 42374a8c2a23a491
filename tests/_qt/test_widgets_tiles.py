"""The Tile overlap widget: the grid as lines over the image, the seam map and its numbers."""

from __future__ import annotations

import napari.layers
import numpy as np
import pytest

from napari_astrodenoise._widgets._common import world_matrix
from napari_astrodenoise._widgets._tiles import TileOverlapWidget, grid_lines
from napari_astrodenoise.core.tiling import tile_grid


@pytest.fixture
def widget(viewer, dock_with_model, star_field, flip):
    image = star_field((80, 112))
    viewer.add_image(image, name="field", **flip(image.shape))
    return dock_with_model(viewer, "Tile overlap", 32)


def test_grid_lines_sit_on_the_tile_edges():
    lines, kinds = grid_lines((80, 112), tile_size=32, overlap=0.25, blend="gaussian")
    boxes = tile_grid((80, 112), tile_size=32, overlap=0.25, blend="gaussian")
    rows = {b[0] for b in boxes} | {b[2] for b in boxes}
    cols = {b[1] for b in boxes} | {b[3] for b in boxes}
    assert len(lines) == len(rows) + len(cols)
    horizontal = sorted(line[0, 0] + 0.5 for line in lines if line[0, 0] == line[1, 0])
    assert horizontal == sorted(rows)
    assert {0, 80} <= rows and "start" in kinds and "end" in kinds
    naive, naive_kinds = grid_lines((64, 64), tile_size=32, overlap=0.25, blend="none")
    assert len(naive) == 6 and naive_kinds.count("both") == 2  # tiles abut at 32


def test_grid_is_a_shapes_layer_over_the_image(viewer, widget, qtbot):
    assert isinstance(widget, TileOverlapWidget)
    widget.draw_grid()
    grid = viewer.layers["field tiles"]
    assert isinstance(grid, napari.layers.Shapes) and set(grid.shape_type) == {"line"}
    np.testing.assert_array_equal(world_matrix(grid), world_matrix(viewer.layers["field"]))
    n_before = len(grid.data)
    assert widget.tiles.value.endswith("tiles")
    widget.tile_size.value = 64  # the grid follows the settings (debounced)
    qtbot.waitUntil(lambda: len(viewer.layers["field tiles"].data) != n_before, timeout=3000)
    assert [x.name for x in viewer.layers].count("field tiles") == 1


def test_seam_measurement_adds_the_diff_layer_and_both_numbers(viewer, widget, wait_idle):
    widget.measure()
    assert widget.task.running
    assert widget.seams.value.startswith("measuring: 4 passes of the model over")
    assert not widget.progress.native.isHidden()  # a bar with the time left
    wait_idle(widget)
    assert widget.progress.native.isHidden()
    diff = viewer.layers["field seam diff"]
    assert diff.data.shape == (80, 112)
    np.testing.assert_array_equal(world_matrix(diff), world_matrix(viewer.layers["field"]))
    seams = diff.metadata["astrodenoise_seams"]
    assert 0 <= seams["seam_sigma"] < seams["naive_seam_sigma"]  # blending hides seams
    assert "σ" in widget.seams.value and "naive tiling" in widget.seams.value
    assert widget.seams.value.startswith("Seams ") and "the noise" in widget.seams.value
    lo, hi = diff.contrast_limits
    assert lo == pytest.approx(-hi) and hi > 0


def test_colour_seam_map_is_one_plane(viewer, dock_with_model, wait_idle):
    rng = np.random.default_rng(1)
    viewer.add_image(rng.normal(100, 5, (64, 64, 3)).astype(np.float32), name="rgb", rgb=True)
    w = dock_with_model(viewer, "Tile overlap", 32)
    w.blend.value = "none"
    w.measure()
    wait_idle(w)
    diff = viewer.layers["rgb seam diff"]
    assert diff.data.shape == (64, 64) and not diff.rgb
    seams = diff.metadata["astrodenoise_seams"]
    assert seams["seam_sigma"] == seams["naive_seam_sigma"]  # naive is the current tiling
