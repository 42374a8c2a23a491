"""The Star mask widget: no overlay until asked, a placed mask layer, a UI that never waits."""

from __future__ import annotations

import time

import numpy as np
import pytest
from qtpy.QtCore import QTimer

from napari_astrodenoise._widgets import _starmask
from napari_astrodenoise._widgets._common import world_matrix
from napari_astrodenoise._widgets._starmask import StarMaskWidget


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def test_preview_adds_a_placed_overlay_and_counts_the_stars(
    viewer, dock, star_field, flip, wait_idle
):
    image = star_field((96, 96), n_stars=5)
    viewer.add_image(image, name="field", metadata={"wcs": None}, **flip(image.shape))
    w = dock(viewer, "Star mask")
    assert isinstance(w, StarMaskWidget)
    w.update_mask()
    wait_idle(w)
    mask = viewer.layers["field star mask"]
    assert mask.data.shape == (96, 96) and mask.data.dtype == np.float32
    assert mask.data.max() == 1.0 and mask.data.min() == 0.0
    assert mask.opacity < 1 and mask.blending == "additive"
    np.testing.assert_array_equal(world_matrix(mask), world_matrix(viewer.layers["field"]))
    assert w.count.value.startswith("5 stars")
    assert mask.metadata["astrodenoise"]["provenance"]["ADNSTARS"][0] == 5
    assert mask.metadata["astrodenoise_role"] == "star mask"


def test_changing_a_parameter_updates_the_same_layer(viewer, dock, star_field, qtbot, wait_idle):
    viewer.add_image(star_field((96, 96)), name="field")
    w = dock(viewer, "Star mask")
    w.preview.value = True
    w.update_mask()
    wait_idle(w)
    layer = viewer.layers["field star mask"]
    covered = float(layer.data.sum())
    w.dilation.value = 5  # debounced live preview
    qtbot.waitUntil(lambda: float(layer.data.sum()) > covered, timeout=5000)
    wait_idle(w)
    assert viewer.layers["field star mask"] is layer
    assert [x.name for x in viewer.layers].count("field star mask") == 1


def test_preview_of_a_4096_image_runs_off_the_ui_thread(
    viewer, dock, qtbot, monkeypatch, wait_idle
):
    """The 4096x4096 preview is computed in a worker; the event loop keeps running."""

    def slow(request):  # stands in for a full-size detection, ~seconds on 2 cores
        time.sleep(1.0)
        return _starmask._Mask(request, np.zeros(request.image.shape, np.float32), 0)

    monkeypatch.setattr(_starmask, "compute_mask", slow)
    viewer.add_image(np.zeros((4096, 4096), np.float32), name="big")
    w = dock(viewer, "Star mask")
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(20)
    start = time.perf_counter()
    w.update_mask()
    assert time.perf_counter() - start < 0.5  # returns at once
    wait_idle(w)
    timer.stop()
    assert len(ticks) >= 20  # the UI thread handled events during the second of work
    assert viewer.layers["big star mask"].data.shape == (4096, 4096)


def test_no_overlay_appears_before_the_user_asks(viewer, dock, star_field, qtbot, wait_idle):
    w = dock(viewer, "Star mask")
    assert w.preview.value is False
    viewer.add_image(star_field((96, 96)), name="field")
    w.dilation.value = 4
    qtbot.wait(2 * _starmask.PREVIEW_DELAY_MS)
    wait_idle(w)
    assert [layer.name for layer in viewer.layers] == ["field"]


def test_a_non_image_choice_is_an_error_notification(viewer, dock, notifications):
    w = dock(viewer, "Star mask")
    w.update_mask()  # no image layer at all
    assert notifications[-1] == ("error", "choose an image layer first")
    assert len(viewer.layers) == 0


def test_mask_of_a_stack_is_one_plane_placed_over_it(viewer, dock, star_field, wait_idle):
    stack = np.stack([star_field((48, 48), seed=s) for s in range(3)])
    viewer.add_image(stack, name="frames", scale=(1.0, -1.0, 2.0), translate=(0.0, 47.0, 5.0))
    w = dock(viewer, "Star mask")
    w.update_mask()
    wait_idle(w)
    mask = viewer.layers["frames star mask"]
    assert mask.data.shape == (48, 48)
    full = world_matrix(viewer.layers["frames"])
    np.testing.assert_array_equal(world_matrix(mask), full[1:, 1:])


def test_saved_mask_records_its_parameters(viewer, dock, star_field, wait_idle, tmp_path):
    from astropy.io import fits

    from napari_astrodenoise._writer import write_fits_layer

    viewer.add_image(star_field((64, 64), n_stars=3), name="field")
    w = dock(viewer, "Star mask")
    w.threshold.value = 6.0
    w.update_mask()
    wait_idle(w)
    layer = viewer.layers["field star mask"]
    path = tmp_path / "mask.fits"
    write_fits_layer(str(path), layer.data, layer.as_layer_data_tuple()[1])
    header = fits.getheader(path)
    assert header["ADSMTHR"] == 6.0 and header["ADNSTARS"] == 3 and header["ADSMDIL"] == 2
