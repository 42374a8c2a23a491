"""Side by side: five layers in napari's grid, linked contrast, back to overlays; a screenshot."""

from __future__ import annotations

import numpy as np
import pytest

from napari_astrodenoise._widgets._common import astro_stretch
from napari_astrodenoise._widgets._side_by_side import SideBySideWidget, canvas_grid

NAMES = ("field", "field denoised", "field residual", "field star mask", "field seam diff")


def _fill(viewer, star_field, flip):
    noisy = star_field((96, 96), seed=1)
    smooth = star_field((96, 96), seed=1, noise=0.3)
    yy, xx = np.mgrid[0:96, 0:96]
    mask = np.clip((20 - np.hypot(yy - 48, xx - 48)) / 3, 0, 1).astype(np.float32)
    seams = np.sin(xx / 4.0).astype(np.float32) * 0.1
    viewer.add_image(np.ones((96, 96), np.float32), name="other")
    layers = (noisy, smooth, noisy - smooth, mask, seams)
    for name, data in zip(NAMES, layers, strict=True):
        viewer.add_image(data, name=name, **flip(data.shape))
    return viewer


@pytest.fixture
def viewer(make_napari_viewer, star_field, flip):
    """A viewer holding the five layers the other widgets make, plus an unrelated one."""
    return _fill(make_napari_viewer(), star_field, flip)


def test_grid_shows_the_five_layers_one_per_cell(viewer, dock):
    w = dock(viewer, "Side by side")
    w.noisy.value = viewer.layers["field"]
    assert isinstance(w, SideBySideWidget)
    assert [x.name for x in w.layers()] == list(NAMES)  # the others filled from the names
    w.show_grid()
    grid = canvas_grid(viewer)
    assert grid.enabled and grid.shape == (2, 3)
    layers = list(viewer.layers)
    assert not viewer.layers["other"].visible
    cells = {grid.position(layers.index(viewer.layers[n]), layers) for n in NAMES}
    assert cells == {(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)}
    assert grid.position(layers.index(viewer.layers[NAMES[0]]), layers) == (0, 0)


def test_noisy_and_denoised_share_contrast_in_the_grid(viewer, dock):
    w = dock(viewer, "Side by side")
    w.noisy.value = viewer.layers["field"]
    w.show_grid()
    noisy, denoised = viewer.layers["field"], viewer.layers["field denoised"]
    assert denoised.contrast_limits == pytest.approx(noisy.contrast_limits)
    assert noisy.gamma == denoised.gamma < 1
    noisy.contrast_limits = (90.0, 150.0)
    assert denoised.contrast_limits == pytest.approx((90.0, 150.0))
    w.show_overlay()
    noisy.contrast_limits = (95.0, 140.0)  # unlinked again
    assert denoised.contrast_limits == pytest.approx((90.0, 150.0))


def test_overlay_turns_the_grid_off_and_restores_visibility(viewer, dock):
    w = dock(viewer, "Side by side")
    w.noisy.value = viewer.layers["field"]
    w.show_grid()
    w.show_overlay()
    assert not canvas_grid(viewer).enabled
    assert not viewer.layers["field residual"].visible
    assert all(layer.visible for layer in viewer.layers if layer.name != "field residual")
    mask = viewer.layers["field star mask"]
    assert mask.blending == "additive" and mask.opacity < 1


def test_astro_stretch_lifts_the_sky_and_keeps_the_data(star_field):
    from napari.layers import Image

    data = star_field((96, 96))
    layer = Image(data.copy())
    assert astro_stretch(layer)
    low, high = layer.contrast_limits
    assert data.min() < low < np.median(data) < high < data.max()
    assert layer.gamma < 1
    np.testing.assert_array_equal(layer.data, data)


def test_side_by_side_screenshot_is_not_blank(
    make_napari_viewer, star_field, flip, dock, qtbot, tmp_path
):
    import imageio.v3 as iio

    viewer = _fill(make_napari_viewer(show=True), star_field, flip)
    w = dock(viewer, "Side by side")
    w.noisy.value = viewer.layers["field"]
    w.show_grid()
    qtbot.wait(200)  # let the canvas lay out its viewboxes
    shot = viewer.screenshot(canvas_only=True, flash=False)
    path = tmp_path / "side_by_side.png"
    iio.imwrite(path, shot)
    print(f"side-by-side screenshot: {path}")
    rgb = shot[..., :3].astype(float)
    assert rgb.std() > 20
    h, w_ = rgb.shape[:2]
    for i, j in ((0, 0), (0, 1), (0, 2), (1, 0), (1, 1)):
        cell = shot[i * h // 2 : (i + 1) * h // 2, j * w_ // 3 : (j + 1) * w_ // 3, :3]
        assert len(np.unique(cell.reshape(-1, 3), axis=0)) > 1, (i, j)
