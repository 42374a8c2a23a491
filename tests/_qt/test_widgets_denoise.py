"""The Denoise widget: runs in a thread, makes placed layers with provenance, re-blends."""

from __future__ import annotations

import time

import numpy as np
import pytest
from astropy.io import fits

from napari_astrodenoise._widgets import _models
from napari_astrodenoise._widgets._denoise import DenoiseWidget
from napari_astrodenoise._widgets._models import FROM_FILE
from napari_astrodenoise.core.options import defaults
from napari_astrodenoise.core.predictor import TilePredictor


@pytest.fixture
def widget(viewer, star_field, flip, dock_with_model):
    """A docked Denoise widget on a flipped 96x96 mono image with a FITS header."""
    image = star_field((96, 96))
    header = fits.Header({"OBJECT": "test field"})
    viewer.add_image(
        image,
        name="field",
        metadata={"fits_header": header, "wcs": None, "fits_kind": "mono"},
        **flip(image.shape),
    )
    return dock_with_model(viewer, "Denoise", 64)


@pytest.fixture
def predictor_calls(monkeypatch):
    """Count the network's tile batches (spy on the pipeline's tile predictor)."""
    calls = []
    original = TilePredictor.__call__

    def spy(self, tiles):
        calls.append(len(tiles))
        return original(self, tiles)

    monkeypatch.setattr(TilePredictor, "__call__", spy)
    return calls


@pytest.fixture
def run(wait_idle):
    """Start a run and wait for it."""

    def go(widget):
        widget.run()
        assert widget.task.running
        wait_idle(widget)

    return go


def test_widget_is_the_manifest_contribution(widget):
    assert isinstance(widget, DenoiseWidget)


def test_run_adds_denoised_and_residual_layers_placed_with_provenance(viewer, widget, run):
    source = viewer.layers["field"]
    run(widget)
    denoised, residual = viewer.layers["field denoised"], viewer.layers["field residual"]
    for layer in (denoised, residual):
        assert layer.data.shape == source.data.shape
        assert layer.data.dtype == np.float32
        np.testing.assert_array_equal(layer.scale, source.scale)
        np.testing.assert_array_equal(layer.translate, source.translate)
        assert layer.metadata["fits_header"]["OBJECT"] == "test field"
        cards = layer.metadata["astrodenoise"]["provenance"]
        assert cards["ADMODEL"][0] == "random-test"
        assert cards["ADTILE"][0] == 64
        assert cards["ADFLUXLK"][0] == widget.flux_lock.value == 8.0
        assert cards["ADENSMBL"][0] == widget.ensemble.value == 1
        assert cards["ADCHGLIM"][0] == widget.change_limit.value == 3.0
        assert cards["ADPKCAP"][0] == widget.peak_cap.value == 1
        assert cards["ADLOCKTH"][0] == widget.lock_threshold.value == 1.0
        assert cards["ADREFIT"][0] == widget.star_refit.value == defaults()["star_refit"]
    np.testing.assert_allclose(residual.data, source.data - denoised.data, atol=1e-3)
    assert not np.array_equal(denoised.data, source.data)  # the random model changes pixels
    assert denoised.contrast_limits == pytest.approx(source.contrast_limits)


def test_colour_sample_denoises_as_an_rgb_layer(viewer, dock_with_model, run):
    from napari_astrodenoise._reader import fits_layer_data
    from napari_astrodenoise._sample_data import synthetic_pair

    noisy, _ = synthetic_pair((64, 64))
    data, kwargs, _ = fits_layer_data(noisy)
    viewer.add_image(data, **kwargs)
    w = dock_with_model(viewer, "Denoise", 32)
    run(w)
    out = viewer.layers["synthetic noisy denoised"]
    assert out.rgb and out.data.shape == (64, 64, 3)
    assert out.metadata["fits_kind"] == "rgb"
    assert out.metadata["astrodenoise"]["history"][0].startswith("napari-astrodenoise")


def test_running_again_updates_the_layers_in_place(viewer, widget, run):
    run(widget)
    first = viewer.layers["field denoised"], viewer.layers["field residual"]
    count = len(viewer.layers)
    widget.overlap.value = 0.5
    run(widget)
    assert len(viewer.layers) == count
    assert viewer.layers["field denoised"] is first[0]
    assert viewer.layers["field residual"] is first[1]
    assert first[0].metadata["astrodenoise"]["provenance"]["ADOVERLP"][0] == 0.5


def test_strength_change_reblends_without_the_network(
    viewer, qtbot, widget, run, wait_idle, predictor_calls
):
    run(widget)
    batches = len(predictor_calls)
    assert batches > 0
    widget.strength.value = 0.3
    qtbot.waitUntil(
        lambda: (
            viewer.layers["field denoised"].metadata["astrodenoise"]["provenance"]["ADSTRNTH"][0]
            == 0.3
        ),
        timeout=5000,
    )
    wait_idle(widget)
    assert len(predictor_calls) == batches
    expected = widget.result.output(strength=0.3, star_protection=0.0)
    np.testing.assert_array_equal(viewer.layers["field denoised"].data, expected)


def test_star_mask_layer_protects_the_masked_pixels(viewer, widget, run):
    mask = np.zeros((96, 96), np.float32)
    mask[40:60, 40:60] = 1.0
    viewer.add_image(mask, name="field star mask")
    widget.star_mask.value = viewer.layers["field star mask"]
    widget.star_protection.value = 1.0
    run(widget)
    out, source = viewer.layers["field denoised"].data, viewer.layers["field"].data
    np.testing.assert_array_equal(out[40:60, 40:60], source[40:60, 40:60])
    assert not np.array_equal(out[:30, :30], source[:30, :30])
    history = viewer.layers["field denoised"].metadata["astrodenoise"]["history"]
    assert history[-1] == "star protection mask: napari layer 'field star mask'"


def test_cancel_stops_the_run_and_changes_no_layer(
    viewer, qtbot, widget, wait_idle, monkeypatch, notifications
):
    calls = []
    original = TilePredictor.__call__

    def slow(self, tiles):
        calls.append(1)
        time.sleep(0.15)
        return original(self, tiles)

    monkeypatch.setattr(TilePredictor, "__call__", slow)
    widget.tile_size.value = 32  # 36 tiles, 9 batches
    count = len(viewer.layers)
    widget.run()
    qtbot.waitUntil(lambda: len(calls) >= 1, timeout=5000)
    assert widget.cancel_button.enabled
    widget.cancel_button.clicked.emit()
    wait_idle(widget)
    assert len(calls) < 9
    assert len(viewer.layers) == count
    assert widget.result is None
    assert ("info", "Denoising cancelled; no layer was changed") in notifications
    assert widget.run_button.enabled and not widget.cancel_button.enabled


def test_out_of_memory_is_a_notification(viewer, widget, run, monkeypatch, notifications):
    def oom(self, tiles):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(TilePredictor, "__call__", oom)
    count = len(viewer.layers)
    run(widget)
    errors = [m for s, m in notifications if s == "error"]
    assert errors and "Out of memory" in errors[0]
    assert len(viewer.layers) == count


def test_missing_model_file_and_bad_mask_are_notifications(viewer, widget, notifications):
    widget.picker.model_file.value = ""
    widget.run()
    assert not widget.task.running
    assert notifications[-1][0] == "error" and "model file" in notifications[-1][1]
    widget.picker.model.value = FROM_FILE
    viewer.add_image(np.zeros((10, 10), np.float32), name="small mask")
    widget.star_mask.value = viewer.layers["small mask"]
    widget.run()
    assert not widget.task.running
    assert "shape" in notifications[-1][1]


def test_without_a_shipped_model_the_file_chooser_shows(
    make_napari_viewer, monkeypatch, notifications
):
    monkeypatch.setattr(_models, "_model_choices", lambda: [])
    viewer = make_napari_viewer()
    w = DenoiseWidget(viewer)
    assert w.picker.model.choices == (FROM_FILE,)
    assert not w.picker.model_file.native.isHidden()  # the file chooser is offered
    assert notifications == [("info", _models.NO_MODEL_MESSAGE)]
    w.native.deleteLater()


def test_the_shipped_default_model_is_preselected(make_napari_viewer, monkeypatch):
    monkeypatch.setattr(
        _models, "_model_choices", lambda: [("best (default)", "best"), ("older", "older")]
    )
    viewer = make_napari_viewer()
    w = DenoiseWidget(viewer)
    assert w.picker.model.value == "best"
    assert w.picker.model.choices == ("best", "older", FROM_FILE)
    assert w.picker.spec() == ("best", "auto")
    assert w.picker.model_file.native.isHidden()
    w.native.deleteLater()


def test_a_raw_bayer_frame_is_denoised_by_colour_sub_planes(viewer, dock_with_model, run):
    rng = np.random.default_rng(3)
    raw = rng.normal(100, 5, (64, 64)).astype(np.float32)
    viewer.add_image(raw, name="raw", metadata={"bayer_pattern": "RGGB"})
    w = dock_with_model(viewer, "Denoise", 32)
    w.image.value = viewer.layers["raw"]
    run(w)
    assert w.result.plane_map.bayer and w.result.original.shape == (4, 32, 32)
    assert viewer.layers["raw denoised"].data.shape == (64, 64)


def test_a_stack_of_raw_bayer_frames_is_refused_not_mixed():
    from napari.layers import Image

    from napari_astrodenoise._widgets._common import engine_planes

    raw = Image(np.zeros((8, 8), np.float32), metadata={"bayer_pattern": "RGGB"})
    assert engine_planes(raw) == {"channel_axis": None, "bayer": True}
    stack = Image(np.zeros((3, 8, 8), np.float32), metadata={"bayer_pattern": "RGGB"})
    with pytest.raises(ValueError, match="stack of raw Bayer frames"):
        engine_planes(stack)


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        (None, "choose an image layer first"),
        ("points", "is a Points layer"),
        ("4d", "only 2-D images, colour images and (N, H, W) stacks"),
    ],
)
def test_unsupported_layers_are_explained(layer, message):
    from napari.layers import Image, Points

    from napari_astrodenoise._widgets._common import channel_axis

    layer = {
        None: None,
        "points": Points(np.zeros((1, 2))),
        "4d": Image(np.zeros((2, 2, 8, 8), np.float32)),
    }[layer]
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        channel_axis(layer)


def test_saved_denoised_layer_carries_header_and_provenance(viewer, widget, run, tmp_path):
    from napari_astrodenoise._writer import write_fits_layer

    run(widget)
    layer = viewer.layers["field denoised"]
    path = tmp_path / "out.fits"
    write_fits_layer(str(path), layer.data, layer.as_layer_data_tuple()[1])
    header = fits.getheader(path)
    assert header["OBJECT"] == "test field"
    assert header["ADMODEL"] == "random-test" and header["ADSTRNTH"] == 1.0
    assert any("denoised with model random-test" in str(h) for h in header["HISTORY"])


# ---------------------------------------------------------------- a panel a newcomer reads


def _visible_rows(widget) -> list[str]:
    """Labels or texts of the panel's controls a user sees without opening anything."""
    rows = []
    for child in widget:
        if child.native.isHidden():
            continue
        rows += [c.label for c in child] if child is widget.picker else [child.label or "-"]
    return rows


def test_the_panel_shows_only_the_essentials_and_advanced_is_collapsed(widget):
    assert not widget.advanced_open
    labels = _visible_rows(widget)
    for needed in ("Image", "Model", "Strength", "Star protection"):
        assert needed in labels
    assert {"Run", "Cancel", "▸ Advanced"} <= {b.text for b in widget if hasattr(b, "text")}
    for hidden in ("tile_size", "flux_lock", "change_limit", "ensemble"):
        control = getattr(widget, hidden)
        assert control.label not in labels
        assert any(c is control for c in widget.advanced)
    assert any(c is widget.picker.device for c in widget.advanced)
    assert widget.picker.device not in list(widget.picker)
    assert "defaults are safe" in widget.advanced[0].value
    widget.toggle_advanced()
    assert widget.advanced_open and widget.advanced_button.text.startswith("▾")


def test_every_control_has_a_tooltip_in_words(widget):
    from magicgui.widgets.bases import ValueWidget

    controls = [*widget.picker, *widget.advanced, *widget]
    for control in controls:
        if isinstance(control, ValueWidget) and control.label and control is not widget.status:
            assert control.tooltip and len(control.tooltip) > 20, control.label
    assert widget.run_button.tooltip and widget.compare_button.tooltip


def test_tile_size_snaps_to_a_valid_size(widget):
    widget.tile_size.value = 100
    assert widget.tile_size.value == 96
    widget.tile_size.value = 250
    assert widget.tile_size.value == 256


def test_the_result_is_on_top_and_selected_and_the_residual_hidden(viewer, widget, run):
    from napari_astrodenoise._widgets._common import signed_limits

    viewer.add_image(np.zeros((96, 96), np.float32), name="above", visible=True)
    widget.image.value = viewer.layers["field"]
    run(widget)
    names = [layer.name for layer in viewer.layers]
    assert names[-1] == "field denoised"
    assert names[-2] == "field residual"
    denoised, residual = viewer.layers["field denoised"], viewer.layers["field residual"]
    assert viewer.layers.selection.active is denoised
    assert denoised.visible and not residual.visible
    low, high = residual.contrast_limits
    assert low == -high and (low, high) == pytest.approx(signed_limits(residual.data))
    colours = residual.colormap.map(np.array([0.0, 0.5, 1.0]))
    assert np.allclose(colours[1, :3], 0) and not np.allclose(colours[0], colours[2])
    source = viewer.layers["field"]
    assert denoised.contrast_limits == pytest.approx(source.contrast_limits)
    assert denoised.gamma == source.gamma


def test_before_after_flips_the_denoised_layer(viewer, widget, run, notifications):
    assert not widget.compare_button.enabled
    run(widget)
    assert widget.compare_button.enabled
    assert widget.toggle_before_after() is False  # now before: the input shows
    assert not viewer.layers["field denoised"].visible and viewer.layers["field"].visible
    assert "before" in widget.status.value
    assert widget.toggle_before_after() is True
    assert viewer.layers["field denoised"].visible and "after" in widget.status.value


def test_a_reblend_acts_on_the_image_that_was_run(
    viewer, qtbot, widget, run, wait_idle, star_field
):
    run(widget)
    viewer.add_image(star_field((96, 96), seed=5), name="other")
    widget.image.value = viewer.layers["other"]
    widget.strength.value = 0.4
    wait_idle(widget)
    cards = viewer.layers["field denoised"].metadata["astrodenoise"]["provenance"]
    assert cards["ADSTRNTH"][0] == 0.4
    assert "other denoised" not in [layer.name for layer in viewer.layers]
    assert "'field', the image that was run" in widget.status.value


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (np.random.default_rng(0).normal(0, 1, (8, 8)).astype(np.float32), "only 8 x 8 px"),
        (np.zeros((96, 96), np.float32), "constant"),
        (np.full((96, 96), np.nan, np.float32), "NaN"),
    ],
    ids=["tiny", "all-zero", "all-NaN"],
)
def test_odd_images_warn_and_still_run(viewer, widget, run, notifications, data, words):
    viewer.add_image(data, name="odd")
    widget.image.value = viewer.layers["odd"]
    run(widget)
    warnings = [m for s, m in notifications if s == "warning"]
    assert warnings and words in warnings[0] and warnings[0].startswith("'odd'")


def test_an_error_clears_the_last_runs_status(viewer, widget, run, notifications):
    run(widget)
    assert widget.status.value.startswith("field:")
    widget.picker.model_file.value = ""
    widget.run()
    assert widget.status.value == ""
    assert notifications[-1][0] == "error"


def test_the_progress_line_counts_tiles_and_time_left(monkeypatch):
    from napari_astrodenoise._widgets import _common

    clock = iter([100.0, 110.0])
    monkeypatch.setattr(_common.time, "monotonic", lambda: next(clock))
    line = _common.ProgressLine("tiles")
    line.start()
    assert line.visible
    line.update(12, 36)
    assert line.text.value == "12 / 36 tiles, about 20 s left"
    assert (line.bar.value, line.bar.max) == (12, 36)
    line.stop()
    assert not line.visible


def test_the_panel_scrolls_when_the_dock_is_short(viewer, widget):
    from qtpy.QtWidgets import QScrollArea

    docked = viewer.window.dock_widgets["Denoise (napari-astrodenoise)"]
    assert docked is widget
    assert isinstance(docked.native, QScrollArea)
    assert docked.native.parent().widget() is docked.native  # the dock holds the scroll area


def test_astro_stretch_again_shares_the_display_with_the_denoised_layer(viewer, widget, run):
    run(widget)
    source, denoised = viewer.layers["field"], viewer.layers["field denoised"]
    source.contrast_limits, source.gamma = (0.0, 1000.0), 1.0
    widget.stretch_again()
    assert source.gamma != 1.0
    assert denoised.contrast_limits == pytest.approx(source.contrast_limits)
    assert denoised.gamma == source.gamma


def test_the_display_setting_is_saved(widget):
    from napari_astrodenoise.settings import auto_stretch

    assert widget.auto_stretch.value is True
    widget.auto_stretch.value = False
    assert auto_stretch() is False


def test_a_model_s_own_flux_lock_fills_its_control_and_goes_with_it(widget, own_lock_model):
    lock = widget.controls["flux_lock"]
    assert lock.value == defaults()["flux_lock"]
    widget.picker.refresh(select="own-lock")
    assert widget.picker.model.value == "own-lock"
    assert lock.value == 0.0
    assert "flux lock off" in widget.status.value
    widget.picker.model.value = FROM_FILE  # the random test model: no options of its own
    assert lock.value == defaults()["flux_lock"]
    assert widget.status.value == ""
